"""The engine's read model as the gate reads it: statuses filtered by placement before they are built,
and built once per evaluation (a service with thousands of series made every gate question build
each status again)."""

from __future__ import annotations

from dataclasses import replace

from streams.core.answer import Question, answer
from streams.core.engine import Engine, EngineConfig
from streams.core.gate import DEFAULT_GATE_CONFIG
from streams.core.wire.status import FIRING, OK
from tests.factories import batch, record, slo
from tests.unit.test_engine import NOW, T0, run

CLUSTERS = ("eu-west-1", "eu-west-2", "us-east-1")


def engine_with_traffic(seconds: int = 120, *, bad_from: int | None = None) -> Engine:
    e = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0))
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


def test_the_gate_answers_a_placement_question_as_it_did_from_every_status() -> None:
    e = engine_with_traffic(600, bad_from=300)
    for cluster in (None, *CLUSTERS):
        q = Question("playback-api", cluster=cluster)
        filtered = inputs(e, q)
        full = replace(filtered, statuses=tuple(statuses(e)), others=0)
        assert answer(q, filtered, now=NOW).to_json() == answer(q, full, now=NOW).to_json()
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
