"""The engine's read model as the gate reads it: statuses filtered by placement before they are built,
and built once per evaluation (a service with thousands of series made every gate question build
each status again)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streams.core.answer import Question, answer
from streams.core.engine import Engine, EngineConfig
from streams.core.gate import DEFAULT_GATE_CONFIG
from streams.core.wire.status import FIRING, OK
from tests.factories import batch, record, slo
from tests.unit.test_engine import NOW, T0, run

CLUSTERS = ("eu-west-1", "eu-west-2", "us-east-1")


def engine_with_traffic(seconds: int = 120, *, bad_from: int | None = None, **slo_changes: object) -> Engine:
    e = Engine([slo(**slo_changes)], {}, EngineConfig(allowed_lateness_s=0))
    msgs = [batch([record(T0 + s + i / 10, cluster=cl, errors=int(bad_from is not None and s >= bad_from
                                                                    and cl == "eu-west-2"))
                   for cl in CLUSTERS for i in range(10)]) for s in range(seconds)]
    run(e, msgs)
    return e


def statuses(e: Engine, **where: str | None) -> list:
    return e.read.statuses("playback-api", now=NOW, processed_at={0: NOW - 5}, stale=(), **where)


def inputs(e: Engine, q: Question):  # type: ignore[no-untyped-def]
    return e.read.gate_inputs(q, now=NOW, processed_at={0: NOW - 5}, stale=(), configs={},
                              default=DEFAULT_GATE_CONFIG)


def test_statuses_of_a_placement_are_those_of_every_series_that_covers_it() -> None:
    e = engine_with_traffic()
    every = statuses(e)
    assert len(every) == len(CLUSTERS)
    for cluster in (*CLUSTERS, "ap-south-1"):
        got = statuses(e, cluster=cluster)
        assert got == [st for st in every if st.dimensions.cluster == cluster]
    assert statuses(e, platform="kubernetes") == every and statuses(e, platform="legacy") == []


def test_a_series_that_groups_the_cluster_or_platform_away_covers_every_value_of_it() -> None:
    e = engine_with_traffic(group_by=("region", "platform"))
    every = statuses(e)
    assert [st.dimensions.cluster for st in every] == ["*"]
    for cluster in (*CLUSTERS, "ap-south-1"):
        assert statuses(e, cluster=cluster) == every
    assert statuses(e, cluster="eu-west-1", platform="kubernetes") == every
    assert statuses(e, platform="legacy") == []
    e = engine_with_traffic(group_by=("cluster", "region"))
    assert statuses(e, platform="legacy") == statuses(e) and len(statuses(e)) == len(CLUSTERS)


@pytest.mark.parametrize("group_by", [("cluster", "region", "platform"), ("region", "platform"), ("region",)])
def test_the_gate_answers_a_placement_question_as_it_did_from_every_status(group_by: tuple[str, ...]) -> None:
    e = engine_with_traffic(1800, bad_from=300, group_by=group_by)
    for cluster, platform in [(None, None), *((cl, None) for cl in CLUSTERS), ("eu-west-2", "kubernetes"),
                              (None, "legacy"), ("ap-south-1", None)]:
        q = Question("playback-api", cluster=cluster, platform=platform)
        filtered = inputs(e, q)
        full = replace(filtered, statuses=tuple(statuses(e)), others=0)
        assert answer(q, filtered, now=NOW).to_json() == answer(q, full, now=NOW).to_json()
    assert answer(Question("playback-api", cluster="eu-west-2"), inputs(e, Question(
        "playback-api", cluster="eu-west-2")), now=NOW).decision != "proceed"  # the burn is judged


def test_a_placement_no_series_covers_is_unknown_and_the_series_elsewhere_are_counted() -> None:
    e = engine_with_traffic()
    elsewhere = answer(Question("playback-api", cluster="ap-south-1"), inputs(e, Question(
        "playback-api", cluster="ap-south-1")), now=NOW).reasons[0]
    assert elsewhere.message == ("no SLO series of playback-api matches cluster=ap-south-1 (3 series "
                                 "elsewhere): cannot tell")


def test_a_status_is_built_once_per_evaluation_and_follows_what_changes_since() -> None:
    e = engine_with_traffic()
    first = statuses(e)
    again = e.read.statuses("playback-api", now=NOW, processed_at={0: NOW - 5}, stale=())
    assert all(a is b for a, b in zip(first, again, strict=True))  # nothing new: the same objects
    # A later batch processed: the processing time moves, the rest is what was built.
    later = e.read.statuses("playback-api", now=NOW, processed_at={0: NOW - 1}, stale=())
    assert [st.processed_at for st in later] == [NOW - 1] * len(CLUSTERS)
    assert [replace(st, processed_at=NOW - 5) for st in later] == first
    # A new evaluation in which an alert fires: a status built from it, equal to one built afresh.
    msgs = [batch([record(T0 + 120 + s + i / 10, cluster="eu-west-2", errors=1) for i in range(10)])
            for s in range(1800)]
    for i in range(0, len(msgs), 50):
        e.commit(e.process(0, [(k, v, 10_000 + i + j) for j, (k, v) in enumerate(msgs[i:i + 50])], now=NOW))
    now_ = statuses(e, cluster="eu-west-2")
    assert now_[0].alerts["page"].state == FIRING and first[1].alerts["page"].state == OK
    fresh = e.read.status(e.read.current_status(now_[0].series), now=NOW - 5)  # type: ignore[arg-type]
    assert now_[0] == fresh
