"""Series admission at the limit (streams.core.series): a burst of junk placements cannot lock real ones
out for the SLO window, and the state it leaves is bounded."""

from __future__ import annotations

from streams.core import conventions as c
from streams.core.changes import ServiceChanges
from streams.core.engine import Engine, EngineConfig
from streams.core.model import HOUR
from streams.core.series import REFUSED_SAMPLE
from tests.factories import batch, record, rollout_record, slo
from tests.unit.test_engine import NOW, T0

LIMIT = 20
IDLE_S = HOUR


def engine(**cfg: object) -> Engine:
    return Engine([slo()], {}, EngineConfig(allowed_lateness_s=0, max_series_per_slo=LIMIT, series_idle_s=IDLE_S,
                                            **cfg))  # type: ignore[arg-type]


class Feeder:
    """Feeds an engine batch by batch on partition 0, with increasing offsets."""

    def __init__(self, e: Engine) -> None:
        self.e = e
        self.offset = 0

    def __call__(self, records: list[dict]) -> list:
        msgs = [batch([r]) for r in records]
        res = self.e.process(0, [(k, v, self.offset + i) for i, (k, v) in enumerate(msgs)], now=NOW)
        self.offset += len(msgs)
        self.e.commit(res)
        return res.rejected


def junk(ts: float, n: int, tag: str = "junk") -> list[dict]:
    return [record(ts + i / 1000, cluster=f"{tag}-{i}") for i in range(n)]


def counted(e: Engine, cluster: str) -> int:
    series = f"playback-api-availability|{cluster}|eu-west|kubernetes"
    return e.series.sli_totals.get(series, [0, 0])[1]


def test_a_fresh_junk_burst_at_the_limit_refuses_new_untrusted_placements_and_samples_them() -> None:
    e = engine()
    feed = Feeder(e)
    assert not feed(junk(T0, LIMIT))
    refused = feed([record(T0 + 60, cluster="us-east-1"), *junk(T0 + 61, 30, "more")])
    assert {r.reason for r in refused} == {c.REASON_SERIES_LIMIT} and len(refused) == 31
    assert e.counters.series_count() == LIMIT and counted(e, "us-east-1") == 0
    got = e.series.refusals["playback-api-availability"]
    assert got.count == 31
    # The most recent placements refused, bounded.
    assert len(got.sample) == REFUSED_SAMPLE
    assert list(got.sample)[-1] == ("more-29", "eu-west", "kubernetes")


def test_after_the_junk_has_been_idle_a_real_placement_takes_the_place_of_the_oldest_and_is_counted_exactly() -> None:
    e = engine()
    feed = Feeder(e)
    feed(junk(T0, LIMIT))
    # Within the idle time: refused. After it: admitted, in place of the junk fed longest ago.
    assert feed([record(T0 + IDLE_S - 60, cluster="us-east-1")])
    real = [record(T0 + IDLE_S + 10 + i, cluster="us-east-1", total=3) for i in range(50)]
    assert not feed(real)
    assert counted(e, "us-east-1") == 150
    assert e.counters.series_count() == LIMIT
    assert not e.counters.has_series("playback-api-availability|junk-0|eu-west|kubernetes")
    assert e.series.evicted["playback-api-availability"] == 1
    # Junk arriving now cannot take the place of the real placement, which keeps being fed.
    more = junk(T0 + IDLE_S + 100, 3 * LIMIT, "later")
    feed([*more, record(T0 + IDLE_S + 101, cluster="us-east-1")])
    assert counted(e, "us-east-1") == 151
    assert e.counters.series_count() == LIMIT


def test_an_allow_listed_placement_is_admitted_at_once_and_junk_never_displaces_it() -> None:
    e = engine(series_allow=(("cluster", "us-*"),))
    feed = Feeder(e)
    feed(junk(T0, LIMIT))
    assert not feed([record(T0 + 60 + i, cluster="us-east-1") for i in range(5)])
    assert counted(e, "us-east-1") == 5
    # Hours later, with the real placement quiet, junk recycles only junk.
    late = T0 + 5 * IDLE_S
    feed(junk(late, 3 * LIMIT, "later"))
    assert e.counters.has_series("playback-api-availability|us-east-1|eu-west|kubernetes")
    assert e.counters.series_count() == LIMIT


def test_a_cluster_the_kubernetes_bridge_reported_for_the_service_is_trusted() -> None:
    sc = ServiceChanges()
    sc.apply_rollout(rollout_record(cluster="prod-gke-2", ts=T0))
    e = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0, max_series_per_slo=LIMIT, series_idle_s=IDLE_S),
               changes={"playback-api": sc.to_bytes()})
    feed = Feeder(e)
    feed(junk(T0, LIMIT))
    assert not feed([record(T0 + 60, cluster="prod-gke-2")])
    assert feed([record(T0 + 61, cluster="prod-gke-3")])  # not reported: refused
    assert counted(e, "prod-gke-2") == 1
    # The clusters survive the table's round trip (the changes table holds them across restarts).
    assert ServiceChanges.from_bytes(sc.to_bytes()).clusters == {"prod-gke-2": T0}


def test_a_series_with_an_alert_firing_is_never_displaced() -> None:
    e = engine()
    feed = Feeder(e)
    # One series pages (a total outage after enough traffic), the others are junk fed later.
    feed([record(T0 + s + i / 10, cluster="burning", errors=1 if s >= 1800 else 0) for s in range(1900)
          for i in range(10)])
    assert any(on for _, on in e.read.committed_alerts("playback-api-availability|burning|eu-west|kubernetes"))
    feed(junk(T0 + 1900, LIMIT - 1))
    # Much later everything is idle: the junk gives way, the alerting series does not.
    later = T0 + 1900 + 2 * IDLE_S
    feed(junk(later, 2 * LIMIT, "later"))
    assert e.counters.has_series("playback-api-availability|burning|eu-west|kubernetes")


def test_a_displaced_series_leaves_no_chunk_in_the_store() -> None:
    store: dict[str, bytes] = {}
    e = Engine([slo()], store, EngineConfig(allowed_lateness_s=0, max_series_per_slo=LIMIT, series_idle_s=IDLE_S))
    feed = Feeder(e)
    feed(junk(T0, LIMIT))
    entries = len(store)
    for k in range(5):
        feed(junk(T0 + (k + 1) * 2 * IDLE_S, LIMIT, f"wave{k}"))
    series_keys = {key.rsplit("|", 2)[0] for key in store if not key.startswith("~")}
    assert len(series_keys) == LIMIT
    assert all(s.split("|")[1].startswith("wave4") for s in series_keys)
    assert len(store) <= entries + 5  # the partition's meta and revision records, not 100 series' chunks


def test_a_series_grouped_away_is_trusted_by_its_kept_dimensions_only() -> None:
    grouped = slo(group_by=("region",))
    e = Engine([grouped], {}, EngineConfig(allowed_lateness_s=0, max_series_per_slo=2, series_idle_s=IDLE_S,
                                           series_allow=(("cluster", "us-*"),)))
    feed = Feeder(e)
    feed([record(T0, region="r1"), record(T0 + 1, region="r2")])
    # The cluster is grouped away: an allow-listed cluster does not make the region's series trusted.
    assert feed([record(T0 + 2, region="r3", cluster="us-east-1")])
    e2 = Engine([grouped], {}, EngineConfig(allowed_lateness_s=0, max_series_per_slo=2, series_idle_s=IDLE_S,
                                            series_allow=(("region", "us-*"),)))
    feed2 = Feeder(e2)
    feed2([record(T0, region="r1"), record(T0 + 1, region="r2")])
    assert not feed2([record(T0 + 2, region="us-east")])
    assert e2.counters.series_count() == 2


def test_admission_is_all_or_nothing_over_the_slos_of_a_service() -> None:
    # Two SLOs of one service: "a" keeps the cluster, "b" groups it away (one series per region). Both
    # full. An allow-listed cluster in a new region could displace a series of "a", but "b" has no
    # room for the new region: the record is refused and nothing is displaced or added.
    a = slo(name="playback-api-a", group_by=("cluster", "region", "platform"))
    b = slo(name="playback-api-b", group_by=("region",))
    e = Engine([a, b], {}, EngineConfig(allowed_lateness_s=0, max_series_per_slo=2, series_idle_s=IDLE_S,
                                        series_allow=(("cluster", "us-*"),)))
    feed = Feeder(e)
    feed([record(T0, cluster="c1", region="r1"), record(T0 + 1, cluster="c2", region="r2")])
    before = set(e.counters.all_series())
    assert feed([record(T0 + 2, cluster="us-1", region="r3")])
    assert set(e.counters.all_series()) == before
    assert e.series.series_count("playback-api-a") == e.series.series_count("playback-api-b") == 2
    assert not e.series.evicted


def test_a_series_with_an_evaluation_still_due_is_not_displaced_and_its_alerts_come() -> None:
    # "zburn" starts failing; an allow-listed newcomer arrives at the end of the same batch. With the
    # evaluations spread over calls (a budget of 1), the alerts are those of the batch at once.
    def run(budget: int | None) -> tuple[list, set[str]]:
        e = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0, max_series_per_slo=2, series_idle_s=IDLE_S,
                                             series_allow=(("cluster", "us-*"),)))
        end = 7 * HOUR
        recs = [record(T0 + s, cluster="busy", total=50) for s in range(0, end, 5)]
        recs += [record(T0 + s, cluster="zburn", total=5, errors=5 if s >= end - 600 else 0) for s in range(0, end, 5)]
        recs.sort(key=lambda r: r["ts"])
        recs.append(record(T0 + end, cluster="us-east-1"))
        msgs = [(k, v, i) for i, (k, v) in enumerate(batch(recs[j:j + 100]) for j in range(0, len(recs), 100))]
        res = e.process(0, msgs, now=NOW, max_evaluations=budget)
        while e.due(0):
            res.absorb(e.evaluate_due(0, budget))
        e.commit(res)
        return [(a.dedup_key, a.state) for a in res.alerts], set(e.counters.all_series())

    at_once, spread = run(None), run(1)
    assert at_once[0] and spread[0] == at_once[0]
    assert "playback-api-availability|zburn|eu-west|kubernetes" in spread[1]


def test_a_displaced_series_leaves_no_prometheus_counters_and_no_status() -> None:
    e = engine()
    feed = Feeder(e)
    feed(junk(T0, LIMIT))
    feed([record(T0 + 2 * IDLE_S + i, cluster="real") for i in range(20)])
    gone = "playback-api-availability|junk-0|eu-west|kubernetes"
    assert e.series.evicted["playback-api-availability"] == 1
    assert gone not in e.series.sli_totals and gone not in e.read.last_status
    assert len(e.series.sli_totals) == LIMIT


def test_a_batch_in_parts_ranks_the_candidates_once_as_at_once() -> None:
    """The adapter hands a batch in parts; the ranking of the series that could give way (every
    candidate looked at and sorted) is made once for the batch, not once per part (a burst of junk
    made it again for every part), and what is admitted or refused is the same as at once."""
    def run(parts: int) -> tuple[int, list[int], int]:
        e = engine()
        feed = Feeder(e)
        feed(junk(T0, LIMIT))
        msgs = [batch([r]) for r in junk(T0 + IDLE_S + 10, 3 * LIMIT, "late")]
        offered = [(k, v, feed.offset + i) for i, (k, v) in enumerate(msgs)]
        rankings = 0
        candidates_of = e.series._candidates_of

        def counting(slo_name: str) -> list[str]:
            nonlocal rankings
            rankings += 1
            return candidates_of(slo_name)

        e.series._candidates_of = counting  # type: ignore[method-assign]
        size = len(offered) // parts
        res = e.process(0, offered[:size], now=NOW)
        for i in range(1, parts):
            res.absorb(e.process(0, offered[i * size:(i + 1) * size], now=NOW))
        e.commit(res)
        return rankings, sorted(r.offset for r in res.rejected), e.counters.series_count()

    at_once, in_parts = run(1), run(6)
    assert at_once[0] == 1 and in_parts[0] == 1
    assert in_parts[1:] == at_once[1:]
    assert len(at_once[1]) == 2 * LIMIT and at_once[2] == LIMIT
