"""A real worker SIGKILLed right after its provisional page reached PagerDuty, the partition then taken
over by another worker (its own data directory: it recovers from the changelog): the new worker finds
the provisional track the first one flushed before the page went out, does not fire it again, and its
final evaluation confirms it; PagerDuty sees one trigger (docs/semantics.md, provisional and final alerts)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.livepath import LivePath, alert_records, deployment_or_skip, page_key

pytestmark = pytest.mark.integration

LATENESS = 30  # shorter than the default, so that the final evaluation comes within the test's minutes


def test_a_worker_killed_after_its_provisional_page_leaves_the_page_to_be_confirmed_by_the_next(
    kafka_bootstrap: str, tmp_path: Path, fault_report: list[str],
) -> None:
    dep = deployment_or_skip(kafka_bootstrap, tmp_path)
    key = page_key()
    with LivePath(dep, allowed_lateness_s=LATENESS) as live:
        live.wait_armed(90)
        onset = live.start_outage()
        page = live.wait(live.stream_page, 60, "our provisional page at the receiver")
        live.kill_worker()
        killed = time.time()
        assert page.body["payload"]["custom_details"].get("provisional") is True
        live._start_worker("worker-2")

        def confirmed() -> list[dict]:
            return [v for _, v in alert_records(dep.bootstrap, dep.settings.topic_alerts, timeout_s=3)
                    if v.get("dedup_key") == key and v.get("state") == "firing" and not v.get("provisional")]

        final = live.wait(confirmed, 180, "the next worker's final FIRING of the page")
        done = time.time()
        time.sleep(2)  # a second trigger, if any, would reach the receiver by now
        records = [v for _, v in alert_records(dep.bootstrap, dep.settings.topic_alerts) if v.get("dedup_key") == key]
        triggers = [r for r in live.stream_triggers() if r.body.get("dedup_key") == key]
        log2 = live.log("worker-2", 20000)
    early = [v for v in records if v.get("provisional") and v["state"] == "firing"]
    # One provisional FIRING: the next worker found its track and did not fire it again.
    assert len(early) == 1, records
    # The confirmation: the final FIRING, not newer than the provisional one; nothing retracted.
    assert final[0]["ts"] <= early[0]["ts"]
    assert not [v for v in records if v.get("reason") == "retracted"]
    # PagerDuty: one trigger for the incident.
    assert len(triggers) == 1, [t.body for t in triggers]
    assert "recovered state for partitions" in log2
    fault_report.append(
        f"provisional page at the receiver {page.at - onset:.1f}s after the outage began; worker SIGKILLed; the next "
        f"worker confirmed it {done - killed:.0f}s later (allowed lateness {LATENESS}s): one provisional FIRING, its "
        f"final FIRING at ts {final[0]['ts'] - early[0]['ts']:+d}s from it, one PagerDuty trigger")
