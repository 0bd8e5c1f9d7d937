"""The live alerting path with real processes: a worker, the notifier, Prometheus on the generated rules
and Alertmanager on the generated config, both paths paging a local PagerDuty receiver. Live traffic
(event time = wall clock), healthy, then 100% errors for one placement (tests/livepath.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.livepath import (
    AM_PAGE_KEY,
    NOTIFIER_KEY,
    OUTAGE,
    SLO_NAME,
    LivePath,
    deployment_or_skip,
)

pytestmark = pytest.mark.integration

LATENESS = 120  # the default: our page comes from the provisional evaluation, ahead of the watermark


def test_a_live_outage_pages_through_the_stream_and_through_prometheus_and_alertmanager(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    dep = deployment_or_skip(kafka_bootstrap, tmp_path)
    cluster, region, platform = OUTAGE
    with LivePath(dep, allowed_lateness_s=LATENESS) as live:
        live.wait_armed(60)
        onset = live.start_outage()
        stream = live.wait(live.stream_page, 60, "our page at the receiver")
        am = live.wait(live.am_page, 45, "Alertmanager's page at the receiver")
        firing = live.wait(
            lambda: live.query('ALERTS{alertname="SloErrorBudgetBurn",severity="page",alertstate="firing"}'),
            10, "the page in Prometheus' ALERTS")
        # Nothing for the healthy placements, ever, in Prometheus (not even pending). (The streaming path's
        # own SloStreamDown has no cluster: it is pending while the worker starts, for minutes before it pages.)
        others = live.query(f'count_over_time(ALERTS{{cluster!="{cluster}",cluster!=""}}[10m])')
        burn = live.burn_true()
        time.sleep(1)  # anything late for the healthy placements would show in the receiver by now
        stream_triggers, am_triggers = live.stream_triggers(), live.am_triggers()

    # Our path: the worker's page, delivered by the notifier: provisional, and first.
    assert stream.body["routing_key"] == NOTIFIER_KEY
    assert stream.body["payload"]["custom_details"]["provisional"] is True
    assert "PROVISIONAL" in stream.body["payload"]["summary"]
    assert stream.at < am.at, (stream.at, am.at)
    assert stream.body["payload"]["severity"] == "critical"
    assert stream.body["payload"]["custom_details"]["burn_rates"]["5m"] > 14.4
    # Prometheus: the generated page alert fires for the outage placement only.
    assert {(a["metric"]["slo"], a["metric"]["cluster"], a["metric"]["region"], a["metric"]["platform"])
            for a in firing} == {(SLO_NAME, cluster, region, platform)}, firing
    assert others == [], others
    # Alertmanager: a PagerDuty trigger with the page routing key from its file, critical, the SLO in details.
    body = am.body
    assert body["event_action"] == "trigger"
    assert body["routing_key"] == AM_PAGE_KEY
    assert body["payload"]["severity"] == "critical"
    details = body["payload"]["custom_details"]
    assert details["slo"] == SLO_NAME and details["cluster"] == cluster and details["severity"] == "page"
    # The healthy placements raised nothing on either path.
    assert {t.body["payload"]["custom_details"]["dimensions"]["cluster"] for t in stream_triggers} == {cluster}
    assert {t.body["payload"]["custom_details"]["cluster"] for t in am_triggers} == {cluster}
    # Both pages come after the burn condition became true in the data, and that is right at the onset.
    assert burn is not None
    assert onset <= burn.at <= onset + 2, (onset, burn)
    assert stream.at > burn.at and am.at > burn.at
