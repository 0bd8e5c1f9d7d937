"""Engine.series.sli_totals: cumulative (bad, total) per SLO series since the worker started, the source of
the Prometheus counters slo_stream_sli_events_total / slo_stream_sli_bad_events_total."""

from __future__ import annotations

from streams.core import conventions as c
from streams.core.engine import Engine, EngineConfig
from streams.core.model import HOUR, Indicator, SliKind
from tests.factories import batch, record, slo

T0 = 1_700_000_000 // 3600 * 3600
NOW = T0 + 10 * 24 * HOUR

AVAIL = c.series_key("playback-api-availability", "eu-west-1", "eu-west", "kubernetes")
LATENCY = c.series_key("playback-api-latency", "eu-west-1", "eu-west", "kubernetes")


def engine(**config: int) -> Engine:
    latency = slo(name="playback-api-latency",
                  indicator=Indicator("playback-api-latency", SliKind.THRESHOLD, latency_threshold_ms=500))
    return Engine([slo(), latency], {}, EngineConfig(**config))


def feed(e: Engine, messages: list[tuple[bytes, bytes]], first_offset: int, partition: int = 0) -> None:
    res = e.process(partition, [(k, v, first_offset + i) for i, (k, v) in enumerate(messages)], now=NOW)
    e.commit(res)


def test_totals_add_up_every_counted_record_across_batches_and_evaluation_steps() -> None:
    e = engine()
    messages = []
    for s in range(0, 1800, 5):  # half an hour: many evaluation steps, so many mid-batch pushes
        recs = [record(T0 + s, total=10, errors=s % 3, latency_ms=100.0 + s),
                record(T0 + s + 1, total=4, errors=0),  # no latency: not counted by the latency SLI
                record(T0 + s + 2, total=2, errors=2, latency_ms=900.0)]
        messages.append(batch(recs))
    for i in range(0, len(messages), 37):
        feed(e, messages[i:i + 37], first_offset=i)
    seconds = range(0, 1800, 5)
    assert e.series.sli_totals[AVAIL] == [sum(s % 3 for s in seconds) + 2 * len(seconds), 16 * len(seconds)]
    slow = sum(10 for s in seconds if 100.0 + s > 500) + 2 * len(seconds)
    assert e.series.sli_totals[LATENCY] == [slow, 12 * len(seconds)]


def test_series_are_kept_apart_and_grouped_away_dimensions_are_aggregated() -> None:
    regional = slo(name="playback-api-regional", group_by=("region",))
    e = Engine([slo(), regional], {}, EngineConfig())
    feed(e, [batch([record(T0, total=5, errors=1),
                    record(T0 + 1, cluster="eu-west-2", total=7, errors=3),
                    record(T0 + 2, cluster="us-east-1", region="us-east", total=11, errors=0)])], 0)
    assert e.series.sli_totals == {
        AVAIL: [1, 5],
        c.series_key("playback-api-availability", "eu-west-2", "eu-west", "kubernetes"): [3, 7],
        c.series_key("playback-api-availability", "us-east-1", "us-east", "kubernetes"): [0, 11],
        c.series_key("playback-api-regional", "*", "eu-west", "*"): [4, 12],
        c.series_key("playback-api-regional", "*", "us-east", "*"): [0, 11],
    }


def test_late_rejected_and_already_committed_records_are_not_counted() -> None:
    e = engine(allowed_lateness_s=60)
    feed(e, [batch([record(T0 + 600, total=3, errors=1)])], 0)
    # Late (older than the watermark), bad counts, then a replay of offset 0 after a restart.
    feed(e, [batch([record(T0, total=100, errors=100)]),
             batch([record(T0 + 600, total=1, errors=2)])], 1)
    feed(e, [batch([record(T0 + 600, total=3, errors=1)])], 0)
    assert e.series.sli_totals[AVAIL] == [1, 3]
    assert LATENCY not in e.series.sli_totals  # no record with a latency yet


def test_totals_survive_a_partition_leaving_the_worker() -> None:
    e = engine()
    feed(e, [batch([record(T0, total=9, errors=2, latency_ms=800.0)])], 0, partition=1)
    e.revoke({1})
    feed(e, [batch([record(T0 + 5, cluster="us-east-1", total=4, errors=1)])], 0, partition=0)
    assert e.series.sli_totals[AVAIL] == [2, 9]
    assert e.series.sli_totals[LATENCY] == [9, 9]
    us_east = c.series_key("playback-api-availability", "us-east-1", "eu-west", "kubernetes")
    assert e.series.sli_totals[us_east] == [1, 4]
