"""The engine end to end in memory: detection timing, lateness, dead-letter reasons, replays."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from streams.core import conventions as c
from streams.core.engine import Engine, EngineConfig
from streams.core.model import HOUR, Severity
from streams.core.revisions import REV_PREFIX
from streams.core.wire.alert import AlertState, decode_alert
from streams.core.wire.status import decode_status
from tests.factories import batch, record, slo

T0 = 1_700_000_000 // 3600 * 3600
NOW = T0 + 10 * 24 * HOUR  # wall clock well after every event time


def feed(engine: Engine, messages: list[tuple[bytes | None, bytes | None]], *, first_offset: int = 0,
         partition: int = 0) -> list:
    res = engine.process(partition, [(k, v, first_offset + i) for i, (k, v) in enumerate(messages)], now=NOW)
    engine.commit(res)
    return res


def steady_then_outage(seconds_healthy: int, seconds_outage: int, seconds_after: int = 0,
                       per_second: int = 10) -> list[tuple[bytes, bytes]]:
    msgs = []
    for s in range(seconds_healthy + seconds_outage + seconds_after):
        bad = seconds_healthy <= s < seconds_healthy + seconds_outage
        recs = [record(T0 + s + i / per_second, errors=1 if bad else 0) for i in range(per_second)]
        msgs.append(batch(recs))
    return msgs


def run(engine: Engine, msgs: list[tuple[bytes, bytes]], chunk: int = 50) -> list:
    alerts = []
    for i in range(0, len(msgs), chunk):
        res = feed(engine, msgs[i:i + chunk], first_offset=i)
        alerts.extend(res.alerts)
    return alerts


def test_a_full_outage_after_steady_traffic_pages_after_about_52_seconds_not_earlier() -> None:
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0))
    alerts = run(engine, steady_then_outage(7 * HOUR, 120))
    pages = [a for a in alerts if a.severity is Severity.PAGE]
    assert len(pages) == 1
    onset = T0 + 7 * HOUR
    # 1h burn passes 14.4 at 51.84 s of full errors; evaluations are every 10 s.
    assert pages[0].ts - onset == 60
    assert pages[0].burn_rates["1h"] > 14.4 and pages[0].burn_rates["5m"] > 14.4
    assert pages[0].condition == "1h+5m > 14.4"
    assert pages[0].state is AlertState.FIRING
    # An alert the engine makes is exactly what travels on slo.alerts: it reads back equal.
    assert [decode_alert(orjson.loads(a.encode())) for a in alerts] == alerts


def test_replay_speed_does_not_change_alert_times() -> None:
    msgs = steady_then_outage(2 * HOUR, 600, 3600)
    slow = run(Engine([slo()], {}, EngineConfig(allowed_lateness_s=30)), msgs, chunk=1)
    fast = run(Engine([slo()], {}, EngineConfig(allowed_lateness_s=30)), msgs, chunk=5000)
    assert [(a.dedup_key, a.state, a.ts) for a in slow] == [(a.dedup_key, a.state, a.ts) for a in fast]
    assert any(a.state is AlertState.RESOLVED and a.severity is Severity.PAGE for a in fast)


def test_resolves_only_after_the_hold_time() -> None:
    policy = replace(slo().policy, hold_s=600)
    engine = Engine([slo(policy=policy)], {}, EngineConfig(allowed_lateness_s=0))
    alerts = run(engine, steady_then_outage(2 * HOUR, 600, 2 * HOUR))
    page = [a for a in alerts if a.severity is Severity.PAGE]
    assert [a.state for a in page] == [AlertState.FIRING, AlertState.RESOLVED]
    # The 6h+30m condition stays true until the outage leaves the 30m window; then 10 min of hold.
    outage_end = T0 + 2 * HOUR + 600
    assert page[1].ts >= outage_end + 1800 - 60 + 600
    assert page[1].started_at == page[0].ts


def test_dedup_key_is_stable_per_slo_severity_and_dimensions() -> None:
    s1 = c.series_key("playback-api-availability", "eu-west-1", "eu-west", "kubernetes")
    assert c.dedup_key(s1, "page") == c.dedup_key(s1, "page")
    assert c.dedup_key(s1, "page") != c.dedup_key(s1, "ticket")
    s2 = c.series_key("playback-api-availability", "us-east-1", "eu-west", "kubernetes")
    assert c.dedup_key(s1, "page") != c.dedup_key(s2, "page")
    assert len(c.dedup_key(s1, "page")) <= 255


def test_a_restart_that_replays_a_batch_reopens_no_incident_and_counts_nothing_twice() -> None:
    msgs = steady_then_outage(2 * HOUR, 600, 10)
    store: dict[str, bytes] = {}
    first = Engine([slo()], store, EngineConfig(allowed_lateness_s=30))
    first.assign({0})
    cut = 2 * HOUR + 300
    before = run(first, msgs[:cut])
    assert any(a.severity is Severity.PAGE for a in before)
    # Crash: a new engine on the same (recovered) store re-reads from an older committed offset.
    second = Engine([slo()], store, EngineConfig(allowed_lateness_s=30))
    second.assign({0})
    res = feed(second, msgs[cut - 200:], first_offset=cut - 200)
    assert res.replay_skipped == 200 * 10
    assert not [a for a in res.alerts if a.state is AlertState.FIRING and a.severity is Severity.PAGE]
    # Counts equal an uninterrupted run.
    clean = Engine([slo()], {}, EngineConfig(allowed_lateness_s=30))
    run(clean, msgs)
    series = c.series_key("playback-api-availability", "eu-west-1", "eu-west", "kubernetes")
    at = clean.meta(0).evaluated_to
    assert second.meta(0).evaluated_to == at
    for w in (300, 3600, 6 * HOUR, 30 * 86400):
        assert second.counters.window(series, at, w) == clean.counters.window(series, at, w)


def test_late_records_are_dead_lettered_and_out_of_order_ones_within_lateness_count() -> None:
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=60))
    res = feed(engine, [
        batch([record(T0 + 1000)]),
        batch([record(T0 + 950)]),  # 50 s out of order: fine
        batch([record(T0 + 900)]),  # 100 s behind the newest: late
    ])
    assert [r.reason for r in res.rejected] == [c.REASON_LATE]
    assert res.rejected[0].offset == 2
    series = c.series_key("playback-api-availability", "eu-west-1", "eu-west", "kubernetes")
    assert engine.counters.window(series, T0 + 1010, 300) == (0, 2)


def test_a_late_or_future_record_of_a_batch_is_dead_lettered_as_parsed_with_its_position_not_its_message() -> None:
    from streams.core.wire.deadletter import decode_dead_letter, refused

    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=60))
    ahead = batch([record(T0 + 1000), record(NOW + 3600)])
    res = feed(engine, [ahead], first_offset=9)
    assert [(r.reason, r.offset, r.index) for r in res.rejected] == [(c.REASON_FUTURE, 9, 1)]
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=60))
    late = batch([record(T0 + 1000 + i / 10) for i in range(3)] + [record(T0 + 900)] + [record(T0 + 1001)])
    res = feed(engine, [batch([record(T0 + 1000)]), late])
    assert [(r.reason, r.offset, r.index) for r in res.rejected] == [(c.REASON_LATE, 1, 3)]
    assert res.records == 5
    dead = refused(res.rejected[0], topic="playback.events", partition=0, original=late[1])
    letter = orjson.loads(dead.encode())
    # It reads back as it was made, less the message: a record's letter does not carry its whole batch.
    assert decode_dead_letter(letter) == replace(dead, original=None)
    assert letter["index"] == 3 and letter["record"]["ts"] == T0 + 900 and letter["record"]["index"] == 3
    assert "value" not in letter and "original_size" not in letter  # not 500 copies of a 500-record message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(b"{not json", c.REASON_BAD_JSON, id="bad JSON"),
        pytest.param(b"[1, 2]", c.REASON_BAD_JSON, id="a JSON array"),
        pytest.param(orjson.dumps({k: v for k, v in record(T0).items() if k != "total"} | {"schema_version": 1}),
                     c.REASON_MISSING_FIELD, id="missing total"),
        pytest.param(orjson.dumps(record(T0, total=3, errors=4) | {"schema_version": 1}), c.REASON_BAD_COUNTS,
                     id="errors greater than total"),
        pytest.param(orjson.dumps(record(T0, total=-3) | {"schema_version": 1}), c.REASON_BAD_COUNTS,
                     id="negative total"),
        pytest.param(orjson.dumps(record(T0, errors="1") | {"schema_version": 1}), c.REASON_BAD_COUNTS,
                     id="errors as a string"),
        pytest.param(orjson.dumps(record(T0) | {"schema_version": 9}), c.REASON_BAD_SCHEMA_VERSION,
                     id="unknown schema_version"),
        pytest.param(orjson.dumps(record(T0)), c.REASON_MISSING_FIELD, id="no schema_version"),
        pytest.param(b"{" + b" " * (5 * 1024 * 1024) + b"}", c.REASON_TOO_LARGE, id="huge payload"),
        pytest.param(orjson.dumps(record(T0, platform="mesos") | {"schema_version": 1}), c.REASON_BAD_FIELD,
                     id="unknown platform"),
        pytest.param(orjson.dumps(record(T0, cluster='eu"}or vector(1)') | {"schema_version": 1}),
                     c.REASON_BAD_FIELD, id="label value that would inject into PromQL"),
        pytest.param(orjson.dumps(record("yesterday") | {"schema_version": 1}), c.REASON_BAD_FIELD,
                     id="timestamp not RFC 3339"),
        pytest.param(orjson.dumps(record(NOW + 3600) | {"schema_version": 1}), c.REASON_FUTURE,
                     id="timestamp an hour in the future"),
        pytest.param(orjson.dumps(record(T0, service="stream-router") | {"schema_version": 1}), c.REASON_WRONG_KEY,
                     id="record of another service than the key"),
        pytest.param(b"\xff\xfe{}", c.REASON_BAD_JSON, id="invalid UTF-8"),
        pytest.param(orjson.dumps(record(T0, service=["x"]) | {"schema_version": 1}), c.REASON_BAD_FIELD,
                     id="service as a list"),
        pytest.param(orjson.dumps(record(T0, cluster={}) | {"schema_version": 1}), c.REASON_BAD_FIELD,
                     id="cluster as an object"),
        pytest.param(orjson.dumps(record(T0, cluster="eu-west-1\n") | {"schema_version": 1}), c.REASON_BAD_FIELD,
                     id="label value with a trailing newline"),
        pytest.param(orjson.dumps(record("1970-01-01T00:00:00Z") | {"schema_version": 1}), c.REASON_BAD_FIELD,
                     id="RFC 3339 time at the epoch"),
    ],
)
def test_malformed_records_are_rejected_with_a_reason_while_good_ones_count(value: bytes, reason: str) -> None:
    engine = Engine([slo()], {}, EngineConfig())
    good = batch([record(T0 + 1), record(T0 + 2, errors=1)])
    res = feed(engine, [good, (b"playback-api", value), good])
    assert [r.reason for r in res.rejected] == [reason]
    assert res.rejected[0].offset == 1
    assert res.records == 4


@pytest.mark.parametrize("bad", [b"1e400", b"-1e400", b"9" * 400])
def test_a_number_beyond_a_double_rejects_its_record_not_its_batch(bad: bytes) -> None:
    engine = Engine([slo()], {}, EngineConfig())
    good = orjson.dumps(record(T0 + 1))
    value = (b'{"schema_version": 1, "records": [' + good + b', {"ts": ' + bad
             + b', "service": "playback-api", "cluster": "eu-west-1", "region": "eu-west", '
             + b'"platform": "kubernetes", "total": 1, "errors": 0}, ' + good + b"]}")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(value)
    res = feed(engine, [(b"playback-api", value)])
    assert res.records == 2
    assert [(r.reason, r.index) for r in res.rejected] == [(c.REASON_BAD_FIELD, 1)]


@pytest.mark.parametrize("bad", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_not_json(bad: bytes) -> None:
    engine = Engine([slo()], {}, EngineConfig())
    good = orjson.dumps(record(T0 + 1))
    value = b'{"schema_version": 1, "records": [' + good + b', {"ts": ' + bad + b"}]}"
    res = feed(engine, [(b"playback-api", value)])
    assert res.records == 0
    assert [(r.reason, r.index) for r in res.rejected] == [(c.REASON_BAD_JSON, None)]


def test_a_bad_record_inside_a_batch_is_rejected_alone() -> None:
    engine = Engine([slo()], {}, EngineConfig())
    res = feed(engine, [batch([record(T0 + 1), record(T0 + 2, errors=5), record(T0 + 3)])])
    assert res.records == 2
    assert [(r.reason, r.index) for r in res.rejected] == [(c.REASON_BAD_COUNTS, 1)]
    assert res.rejected[0].record["errors"] == 5


def test_rfc3339_timestamps_are_event_time() -> None:
    engine = Engine([slo()], {}, EngineConfig())
    res = feed(engine, [batch([record("2023-11-14T22:13:20Z"), record("2023-11-14T23:13:20+01:00")])])
    assert res.records == 2 and not res.rejected


def test_series_beyond_the_limit_per_slo_are_dead_lettered_not_stored() -> None:
    engine = Engine([slo()], {}, EngineConfig(max_series_per_slo=2))
    res = feed(engine, [batch([record(T0 + i, cluster=f"c{i}") for i in range(4)])])
    assert [(r.reason, r.index, r.record["cluster"]) for r in res.rejected] == \
        [(c.REASON_SERIES_LIMIT, 2, "c2"), (c.REASON_SERIES_LIMIT, 3, "c3")]
    assert engine.counters.series_count() == 2


def test_other_services_stay_quiet() -> None:
    other = slo(name="stream-router-availability", service="stream-router")
    engine = Engine([slo(), other], {}, EngineConfig(allowed_lateness_s=0))
    msgs = steady_then_outage(2 * HOUR, 600)
    quiet = [batch([record(T0 + s, service="stream-router")], "stream-router") for s in range(2 * HOUR + 600)]
    mixed = [m for pair in zip(msgs, quiet, strict=True) for m in pair]
    alerts = run(engine, mixed)
    assert alerts and all(a.service == "playback-api" for a in alerts)


def test_low_traffic_does_not_page_and_says_not_enough_data() -> None:
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0))
    # One request every 5 minutes: a single failure is a huge burn, but 6h hold only 72 events (< 100).
    msgs = [batch([record(T0 + 300 * i, errors=1 if i == 73 else 0)]) for i in range(75)]
    alerts = run(engine, msgs)
    assert not [a for a in alerts if a.severity is Severity.PAGE]
    (ev,) = engine.read.last_status.values()
    flagged = [cr.window.name for cr in ev.conditions if cr.insufficient_data]
    assert "1h+5m" in flagged and "6h+30m" in flagged
    status = engine.read.status(ev, now=NOW)
    assert any(cond.insufficient_data for cond in status.conditions)
    assert decode_status(orjson.loads(status.encode())) == status


def test_a_message_without_a_key_is_rejected_because_its_partition_is_arbitrary() -> None:
    engine = Engine([slo()], {}, EngineConfig())
    _, value = batch([record(T0 + 1)])
    res = feed(engine, [(None, value), (b"", value)])
    assert [r.reason for r in res.rejected] == [c.REASON_WRONG_KEY] * 2


def test_a_producer_clock_running_ahead_does_not_make_on_time_records_late() -> None:
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=120, max_future_s=300))
    res = engine.process(0, [(*batch([record(NOW + 250)]), 0), (*batch([record(NOW - 10)]), 1)], now=NOW)
    assert not res.rejected
    assert engine.meta(0).max_ts == NOW


def test_a_replayed_batch_does_not_count_what_was_rejected_as_late_the_first_time() -> None:
    store: dict[str, bytes] = {}
    first = Engine([slo()], store, EngineConfig(allowed_lateness_s=60))
    msgs = [batch([record(T0 + 1000)]), batch([record(T0 + 900)])]
    res = feed(first, msgs)
    assert [r.reason for r in res.rejected] == [c.REASON_LATE]
    second = Engine([slo()], store, EngineConfig(allowed_lateness_s=60))
    second.assign({0})
    res = feed(second, msgs)
    assert res.replay_skipped == 2 and not res.rejected
    series = c.series_key("playback-api-availability", "eu-west-1", "eu-west", "kubernetes")
    assert second.counters.window(series, T0 + 1010, 300) == (0, 1)


def test_resolved_tracks_leave_no_state_behind() -> None:
    store: dict[str, bytes] = {}
    engine = Engine([slo()], store, EngineConfig(allowed_lateness_s=0))
    run(engine, steady_then_outage(2 * HOUR, 600, 2 * HOUR))
    assert not [k for k in store if k.startswith("~track|") and "/page/" in k]


def test_a_gap_in_event_time_is_caught_up_cheaply() -> None:
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0))
    run(engine, steady_then_outage(HOUR, 0))
    res = feed(engine, [batch([record(T0 + 3 * 86400)])], first_offset=10_000)
    # The gap is longer than the catch-up and every short window: quiet series are skipped.
    assert res.steps == 360 and res.evaluations == 0


def test_a_batch_holds_one_message_of_records_at_a_time_not_the_whole_batch() -> None:
    # A backlog batch is hundreds of messages of hundreds of records. Parsing them all before
    # counting kept every record object of the batch alive at once; those peaks left Python's
    # allocator with arenas it could not give back and the worker's memory grew under steady load.
    import tracemalloc

    engine = Engine([slo()], {}, EngineConfig())
    messages = [batch([record(T0 + m + i / 500) for i in range(500)]) for m in range(200)]
    payload = sum(len(v) for _, v in messages)
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing (PYTHONTRACEMALLOC): the peak would include the rest")
    tracemalloc.start()
    try:
        res = engine.process(0, [(k, v, i) for i, (k, v) in enumerate(messages)], now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.records == 100_000 and not res.rejected
    # The 100,000 records as objects take more than 20 MB; one message of them well under 1 MB.
    assert peak < 4 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while counting {payload / 2**20:.1f} MiB of messages"


def test_the_dimension_tuples_remembered_stay_bounded_when_an_slo_groups_the_dimension_away() -> None:
    """An SLO that groups regions away makes one series of a million regions: the series limit does not
    bound the tuples remembered, their own limit does, and every record still counts."""
    e = Engine([slo(group_by=("cluster", "platform"))], {}, EngineConfig(allowed_lateness_s=0))
    e.series.max_dimension_tuples = 50
    recs = [record(T0 + i / 10, region=f"r{i}") for i in range(500)]
    res = feed(e, [batch(recs[i:i + 100]) for i in range(0, 500, 100)])
    assert len(e.series.dim_series) <= 50
    assert res.records == 500 and not res.rejected
    assert e.series.sli_totals == {"playback-api-availability|eu-west-1|*|kubernetes": [0, 500]}


@pytest.mark.parametrize("parts", [2, 3, 17])
def test_a_batch_processed_in_parts_before_one_commit_equals_the_batch_at_once(parts: int) -> None:
    msgs = steady_then_outage(HOUR, 600, 1200)
    msgs.insert(500, batch([record(T0 + 1, cluster="late-1")]))  # late: a dead letter mid-batch
    whole, split = Engine([slo()], {}, EngineConfig(allowed_lateness_s=30)), \
        Engine([slo()], {}, EngineConfig(allowed_lateness_s=30))
    states = set()
    for first in range(0, len(msgs), 1000):
        chunk = [(k, v, first + i) for i, (k, v) in enumerate(msgs[first:first + 1000])]
        a = whole.process(0, chunk, now=NOW)
        states |= {x.state for x in a.alerts}
        whole.commit(a)
        step = -(-len(chunk) // parts)
        b = split.process(0, chunk[:step], now=NOW)
        for i in range(step, len(chunk), step):
            b.absorb(split.process(0, chunk[i:i + step], now=NOW))
        split.commit(b)
        assert [x.encode() for x in b.alerts] == [x.encode() for x in a.alerts]
        assert [(r.reason, r.offset) for r in b.rejected] == [(r.reason, r.offset) for r in a.rejected]
        assert (b.records, b.evaluations, b.steps, b.max_offset) == (a.records, a.evaluations, a.steps, a.max_offset)
        assert b.statuses == a.statuses
    assert whole.store == split.store
    assert AlertState.FIRING in states  # the parts crossed the firing of a page


@pytest.mark.parametrize("budget", [1, 3, 50])
def test_evaluations_spread_over_calls_by_a_budget_equal_the_evaluations_at_once(budget: int) -> None:
    # Five clusters, one of them in a total outage (pages, then resolves); batches of 20 minutes, each
    # crossing many steps: with a budget the steps' evaluations wait for later calls, in order.
    clusters = [f"c{i}" for i in range(5)]
    msgs = [batch([record(T0 + s + i / 10, cluster=cl, errors=1 if cl == "c2" and 3600 <= s < 4200 else 0)
                   for cl in clusters for i in range(10)]) for s in range(3 * HOUR)]
    whole = Engine([slo()], {}, EngineConfig(allowed_lateness_s=30))
    spread = Engine([slo()], {}, EngineConfig(allowed_lateness_s=30))
    seen, calls = [], 0
    for first in range(0, len(msgs), 1200):
        chunk = [(k, v, first + i) for i, (k, v) in enumerate(msgs[first:first + 1200])]
        a = whole.process(0, chunk, now=NOW)
        whole.commit(a)
        b = spread.process(0, chunk, now=NOW, max_evaluations=budget)
        assert b.evaluations <= budget
        while spread.due(0):
            more = spread.evaluate_due(0, budget)
            assert 0 < more.evaluations <= budget
            b.absorb(more)
            calls += 1
        spread.commit(b)
        assert [x.encode() for x in b.alerts] == [x.encode() for x in a.alerts]
        assert (b.evaluations, b.steps) == (a.evaluations, a.steps)
        assert b.statuses == a.statuses
        seen += a.alerts
    assert whole.store == spread.store
    assert {x.state for x in seen} == {AlertState.FIRING, AlertState.RESOLVED}
    assert calls > 0


def test_a_batch_with_evaluations_still_due_cannot_be_committed() -> None:
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0))
    res = engine.process(0, [(k, v, i) for i, (k, v) in enumerate(steady_then_outage(600, 0))], now=NOW,
                         max_evaluations=0)
    assert engine.due(0) > 0
    with pytest.raises(RuntimeError, match="still due"):
        engine.commit(res)


def test_a_commit_in_steps_writes_what_commit_writes_and_a_reader_at_a_pause_counts_each_series_once() -> None:
    clusters = [f"c{i}" for i in range(30)]
    msgs = [batch([record(T0 + s + i / 10, cluster=cl, errors=i % 2) for cl in clusters for i in range(10)])
            for s in range(600)]
    chunk = [(k, v, i) for i, (k, v) in enumerate(msgs)]
    at_once, stepped = Engine([slo()], {}, EngineConfig()), Engine([slo()], {}, EngineConfig())
    at_once.commit(at_once.process(0, chunk, now=NOW))
    res = stepped.process(0, chunk, now=NOW)
    series = stepped.counters.series(0)
    end = T0 + 600
    want = {s: stepped.counters.window(s, end, 3600) for s in series}
    pauses = 0
    for _ in stepped.commit_steps(res, every=2):
        pauses += 1
        assert {s: stepped.counters.window(s, end, 3600) for s in series} == want
    assert pauses >= len(series) // 2 - 1
    assert stepped.store == at_once.store
    assert want[series[0]] == (3000, 6000)


def test_a_commit_in_steps_pauses_between_per_revision_writes_too_and_writes_what_commit_writes() -> None:
    """A burst of new clusters dirties a per-revision entry per cluster: those writes are paced like
    the chunk writes (each pause leaves a prefix of commit's writes)."""
    clusters = [f"c{i}" for i in range(40)]
    msgs = [batch([record(T0 + i, cluster=cl, revision=f"r-{cl}") for cl in clusters]) for i in range(5)]
    chunk = [(k, v, i) for i, (k, v) in enumerate(msgs)]
    at_once, stepped = Engine([slo()], {}, EngineConfig()), Engine([slo()], {}, EngineConfig())
    at_once.commit(at_once.process(0, chunk, now=NOW))
    res = stepped.process(0, chunk, now=NOW)
    revision_keys_at_pauses = []
    for _ in stepped.commit_steps(res, every=4):
        revision_keys_at_pauses.append(sum(1 for k in stepped.store if k.startswith(REV_PREFIX)))
    assert stepped.store == at_once.store
    assert sum(1 for k in at_once.store if k.startswith(REV_PREFIX)) == len(clusters)
    # Paused every 4 revision writes: 4, 8, ... before the chunk writes start.
    assert revision_keys_at_pauses[:len(clusters) // 4] == list(range(4, len(clusters) + 1, 4))
    assert stepped.revisions.counts("playback-api", "c7", T0, T0 + 60) == {"r-c7": (0, 5)}
