"""The spine on the embedded broker with a real worker process: outage -> one page -> resolved."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from streams.core import conventions as c
from streams.demo.traffic import Outage, TrafficPlan
from tests.integration.harness import Deployment

pytestmark = pytest.mark.integration

HOUR = 3600
BAD_MESSAGES = {
    c.REASON_BAD_JSON: (b"playback-api", b"{not json"),
    c.REASON_MISSING_FIELD: (b"playback-api", orjson.dumps({"schema_version": 1, "service": "playback-api"})),
    c.REASON_BAD_COUNTS: (b"playback-api", orjson.dumps({
        "schema_version": 1, "ts": "2026-01-01T00:00:00Z", "service": "playback-api", "cluster": "eu-west-1",
        "region": "eu-west", "platform": "kubernetes", "total": 2, "errors": 3})),
    c.REASON_BAD_SCHEMA_VERSION: (b"playback-api", orjson.dumps({"schema_version": 42, "records": []})),
    c.REASON_TOO_LARGE: (b"playback-api", b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
}


def outage_scenario() -> tuple[TrafficPlan, Outage]:
    outage = Outage("playback-api", start_s=2 * HOUR, end_s=2 * HOUR + 600, cluster="eu-west-1",
                    platform="kubernetes")
    start = int(time.time()) // 10 * 10 - 4 * HOUR
    return TrafficPlan(start_ts=start, duration_s=3 * HOUR, outages=(outage,), requests_per_10s=100), outage


def test_an_outage_pages_once_then_resolves_other_services_stay_quiet_and_bad_records_dead_letter(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path, SLO_STREAM_STALE_AFTER="3")
    scenario, outage = outage_scenario()
    messages = [(k, v) for _, k, v in scenario.messages()]
    # Malformed records interleaved with the good ones, a count-bearing one among them.
    for i, bad in enumerate(BAD_MESSAGES.values()):
        messages.insert(100 + 50 * i, bad)
    page_key = c.dedup_key(c.series_key("playback-api-availability", "eu-west-1", "eu-west", "kubernetes"), "page")

    def resolved(alerts: list[dict]) -> bool:
        return any(a["dedup_key"] == page_key and a["state"] == "resolved" for a in alerts)

    with dep.worker() as proc:
        dep.produce(messages)
        alerts = dep.consume(dep.settings.topic_alerts, until=resolved, timeout_s=120, proc=proc)
        dead = dep.consume(dep.settings.topic_dead_letter, until=lambda v: len(v) >= len(BAD_MESSAGES),
                           timeout_s=30)
        # Traffic has stopped: the wall-clock timer marks the series stale.
        status = dep.consume(dep.settings.topic_status, until=lambda v: any(x.get("stale") for x in v),
                             timeout_s=20)
    log = dep.log_text()
    pages = [a for a in alerts if a["severity"] == "page"]
    assert [(a["dedup_key"], a["state"]) for a in pages] == [(page_key, "firing"), (page_key, "resolved")], log
    fired = pages[0]
    onset = scenario.start_ts + outage.start_s
    assert 0 < fired["ts"] - onset <= 120
    assert fired["service"] == "playback-api"
    assert fired["dimensions"] == {"cluster": "eu-west-1", "region": "eu-west", "platform": "kubernetes"}
    assert fired["burn_rates"]["5m"] > 6 and fired["error_budget_remaining"] < 1
    assert all(a["service"] == "playback-api" for a in alerts)
    assert sorted(d["reason"] for d in dead) == sorted(BAD_MESSAGES)
    for d in dead:
        assert d["source"]["topic"] == dep.settings.topic_playback and d["detail"]
    huge = next(d for d in dead if d["reason"] == c.REASON_TOO_LARGE)
    assert huge["truncated"] is True and huge["original_size"] > 2 * 1024 * 1024
    assert status and {"burn_rates", "error_budget_remaining", "evaluated_at", "good_total"} <= set(status[0])
    stale = [x for x in status if x.get("stale")]
    assert stale and "no records" in stale[0]["stale_reason"]
