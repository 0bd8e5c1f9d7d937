"""Detection latency of a live outage: our stream + notifier against Prometheus + Alertmanager.

    python -m bench.run --only detection [--quick]

Runs the live path of tests/livepath.py (a real worker, the notifier, Prometheus scraping and
evaluating the generated rules every second, Alertmanager with the generated config, one local
PagerDuty receiver): live playback-api traffic (event time = wall clock, 2,000 requests/s per
placement), healthy, then 100% errors in one placement. The clock starts when a page condition
becomes true in the produced data (computed from the records, Workbook formula) and stops when each
path's page trigger reaches the receiver. The stream evaluates when the watermark (newest event
time - allowed lateness) crosses a 10 s step, so its figure includes the allowed lateness.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.integration.harness import Deployment
from tests.livepath import Detection, measure, missing_binaries


def bench_detection(bootstrap: str, lateness: list[int]) -> list[Detection] | str:
    """One live run per allowed lateness; or why it cannot run here."""
    reason = missing_binaries()
    if reason:
        return reason
    out = []
    for seconds in lateness:
        tmp = Path(tempfile.mkdtemp(prefix=f"slo-stream-bench-detection-{seconds}s-"))
        dep = Deployment.create(bootstrap, tmp)
        out.append(measure(dep, allowed_lateness_s=seconds))
    return out


def report(d: Detection) -> str:
    return (f"detection allowed lateness {d.allowed_lateness_s:>3}s: burn condition ({d.burn.condition}) true "
            f"{d.burn.at - d.onset:.2f}s after onset ({d.healthy_s:.1f}s of healthy traffic before); "
            f"our page +{d.stream_s:.1f}s, Alertmanager page +{d.am_s:.1f}s; "
            f"ratio ours / Alertmanager = {d.stream_s / d.am_s:.2f}")
