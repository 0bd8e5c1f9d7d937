"""One page per burn (issue 16, item 4; docs/fallback.md): both alerting paths live against ONE PagerDuty
receiver. A real worker, the notifier, Prometheus scraping both every second and evaluating the generated
rules, Alertmanager on the generated config (tests/livepath.py), short liveness timings.

While the worker runs, a burn opens one incident, the streaming path's: the fallback's page alert reaches
Alertmanager and is inhibited by the heartbeat of its series. Once the worker stops, the heartbeat ends,
and the fallback's page and the "streaming path down" page arrive. Assertions are on what the receiver
got (routing keys, dedup keys), never on how fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.demo.pagerduty_receiver import Received
from streams.render.prometheus import Liveness
from streams.render.promql import ALERT_NAME, DOWN_ALERT, HEARTBEAT_ALERT
from tests.livepath import AM_PAGE_KEY, NOTIFIER_KEY, OUTAGE, SLO_NAME, LivePath, deployment_or_skip, page_key

pytestmark = pytest.mark.integration

# Evaluations are fresh for a minute (the worker's lateness is 5 s), a heartbeat outlives its series by
# 5 s, the streaming path is down after 10 s without workers.
LIVENESS = Liveness(fresh_s=60, grace_s=5, down_for_s=10)
PAGE_GROUP_WAIT_S = 10  # streams.render.alertmanager: a page group's first notification


def _incidents(triggers: list[Received]) -> dict[str, set[str]]:
    """Routing key -> the dedup keys (incidents) triggered with it."""
    out: dict[str, set[str]] = {}
    for t in triggers:
        out.setdefault(t.body["routing_key"], set()).add(t.body["dedup_key"])
    return out


def _down_pages(live: LivePath) -> list[Received]:
    return [t for t in live.am_triggers() if "streaming path is down" in t.body["payload"]["summary"]]


def test_one_page_per_burn_while_the_workers_run_and_the_fallback_pages_once_they_stop(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    dep = deployment_or_skip(kafka_bootstrap, tmp_path)
    cluster, region, platform = OUTAGE
    series = {"slo": SLO_NAME, "cluster": cluster, "region": region, "platform": platform}
    with LivePath(dep, allowed_lateness_s=5, scrape_notifier=True, liveness=LIVENESS) as live:
        live.wait_armed(60)
        live.wait(lambda: live.am_alerts(HEARTBEAT_ALERT, **series), 30, "the outage series' heartbeat in Alertmanager")
        live.start_outage()
        stream = live.wait(live.stream_page, 60, "the streaming path's page at the receiver")
        muted = live.wait(
            lambda: [a for a in live.am_alerts(ALERT_NAME, severity="page", **series)
                     if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]],
            60, "the fallback's page alert in Alertmanager, inhibited")
        # Alertmanager would have notified the page group after its group_wait: let that pass, twice.
        seen = time.time()
        live.wait(lambda: time.time() > seen + 2 * PAGE_GROUP_WAIT_S, 3 * PAGE_GROUP_WAIT_S, "Alertmanager's flush")
        still_muted = [a["status"]["state"] for a in live.am_alerts(ALERT_NAME, severity="page", **series)]
        running = live.triggers()

        live.stop_worker()
        fallback = live.wait(live.am_page, 150, "the fallback's page once the worker stopped")
        down = live.wait(lambda: _down_pages(live), 60, "the streaming path down page")
        stopped = live.triggers()

    # While the worker ran: one incident, the stream's (its page, and the ticket of the same burn under
    # its own dedup key); nothing at all from Alertmanager, whose page alert for the series was muted.
    assert stream.body["routing_key"] == NOTIFIER_KEY
    assert muted and still_muted == ["suppressed"], still_muted
    assert {t.body["routing_key"] for t in running} == {NOTIFIER_KEY}, [t.body for t in running]
    stream_pages = {t.body["dedup_key"] for t in running if t.body["payload"]["severity"] == "critical"}
    assert stream_pages == {page_key()}
    # Once the worker stopped: the fallback's page of the same series, and the streaming path down page,
    # both with the page routing key; the stream opened nothing more.
    assert fallback.body["routing_key"] == AM_PAGE_KEY
    assert fallback.body["payload"]["custom_details"]["cluster"] == cluster
    assert down[0].body["routing_key"] == AM_PAGE_KEY
    assert "(workers_absent)" in down[0].body["payload"]["summary"]
    incidents = _incidents(stopped)
    assert {k for k in incidents[NOTIFIER_KEY] if k.split("/")[2] == "page"} == {page_key()}
    am_pages = incidents[AM_PAGE_KEY]
    assert am_pages == {fallback.body["dedup_key"], down[0].body["dedup_key"]}, stopped
    assert DOWN_ALERT in down[0].body["payload"]["custom_details"]["firing"]
    print(f"\nincidents while running: {_incidents(running)}\nincidents after the stop: {incidents}")
