"""Detection latency of a live burn: our stream + notifier against Prometheus + Alertmanager.

    python -m bench.detection [--runs 5] [--lateness 120] [--json FILE]
    python -m bench.run --only detection [--quick]

Each run is the live path of tests/livepath.py with default worker settings: a real worker, the
notifier, and two Prometheus + Alertmanager pairs on the generated rules and config, all paging one
local PagerDuty receiver:

- **fast**: 1 s scrapes and rule evaluations, the generated Alertmanager config (page ``group_wait`` 10 s);
- **production**: 15 s scrapes, 1 m rule evaluation, page ``group_wait`` 30 s.

Live playback-api traffic (event time = wall clock, 2,000 requests/s per placement, one message every
0.5 s), healthy, then errors in ``eu-west-1``: 100% (a total outage) or 2% (a 20x burn at 99.9%). The
clock starts when a page condition becomes true in the produced data (the record that tips it, Workbook
formula, tests/livepath.py ``burn_true``) and stops when each path's page trigger reaches the receiver.
Our figure is split into its hops: record produced -> our alert record on ``slo.alerts`` (its Kafka
timestamp: the batch wait, the evaluation, the changelog flush and the produce) -> the receiver (the
notifier's fetch and the HTTP send).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from tests.integration.harness import Deployment
from tests.livepath import Detection, measure, missing_binaries

BURNS = {"total outage (100% errors)": 1.0, "20x burn (2% errors at 99.9%)": 0.02}


def bench_detection(bootstrap: str, lateness: list[int], *, production: bool = False,
                    outage_ratio: float = 1.0, worker_env: dict[str, str] | None = None) -> list[Detection] | str:
    """One live run per allowed lateness; or why it cannot run here."""
    reason = missing_binaries()
    if reason:
        return reason
    out = []
    for seconds in lateness:
        tmp = Path(tempfile.mkdtemp(prefix=f"slo-stream-bench-detection-{seconds}s-"))
        dep = Deployment.create(bootstrap, tmp)
        out.append(measure(dep, allowed_lateness_s=seconds, production=production, outage_ratio=outage_ratio,
                           worker_env=worker_env))
    return out


def report(d: Detection) -> str:
    prod = f", production config +{d.prod_s:.1f}s (ratio {d.stream_s / d.prod_s:.3f})" if d.prod_s else ""
    hop = ""
    if d.alert_produced_at is not None:
        hop = (f" [record -> slo.alerts {d.alert_produced_at - d.burn.at:.2f}s, -> receiver "
               f"{d.stream_at - d.alert_produced_at:.2f}s]")
    kind = "provisional" if d.provisional else "final"
    return (f"detection allowed lateness {d.allowed_lateness_s:>3}s, {d.outage_ratio:.0%} errors: burn condition "
            f"({d.burn.condition}) true {d.burn.at - d.onset:.2f}s after onset ({d.healthy_s:.1f}s healthy "
            f"before); our {kind} page +{d.stream_s:.2f}s{hop}, Alertmanager (1s) +{d.am_s:.1f}s (ratio "
            f"{d.stream_s / d.am_s:.3f}){prod}; retractions {d.retracted}")


def _median_max(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f}s, max {max(xs):.2f}s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per burn size (default 5)")
    ap.add_argument("--lateness", type=int, default=120, help="SLO_STREAM_ALLOWED_LATENESS (default 120: the default)")
    ap.add_argument("--only", choices=["total", "20x"], help="one burn size only")
    ap.add_argument("--json", help="write every run's figures here")
    ap.add_argument("--no-provisional", action="store_true",
                    help="the workers with SLO_STREAM_PROVISIONAL=false (final alerts only: the reference before)")
    args = ap.parse_args()
    reason = missing_binaries()
    if reason:
        print(f"detection skipped: {reason}")
        return 0
    from streams.adapters.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    broker.start()
    results: dict[str, list[Detection]] = {}
    try:
        for name, ratio in BURNS.items():
            if args.only and (args.only == "total") != (ratio == 1.0):
                continue
            runs = results[name] = []
            for i in range(args.runs):
                found = bench_detection(broker.bootstrap, [args.lateness], production=True, outage_ratio=ratio,
                                        worker_env={"SLO_STREAM_PROVISIONAL": "false"} if args.no_provisional else None)
                assert not isinstance(found, str)
                runs.append(found[0])
                print(f"{name}, run {i + 1}: {report(found[0])}", flush=True)
    finally:
        broker.stop()
    print()
    print("| burn | runs | ours (record -> receiver) | fast Prometheus + AM | ratio | production Prometheus + AM "
          "| ratio | our pages provisional | retractions |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, runs in results.items():
        ours = [d.stream_s for d in runs]
        fast = [d.am_s for d in runs]
        prod = [d.prod_s for d in runs if d.prod_s is not None]
        r_fast = [d.stream_s / d.am_s for d in runs]
        r_prod = [d.stream_s / d.prod_s for d in runs if d.prod_s]
        print(f"| {name} | {len(runs)} | {_median_max(ours)} | {_median_max(fast)} | median "
              f"{statistics.median(r_fast):.3f}, max {max(r_fast):.3f} | {_median_max(prod)} | median "
              f"{statistics.median(r_prod):.3f}, max {max(r_prod):.3f} | {sum(d.provisional for d in runs)}/"
              f"{len(runs)} | {sum(d.retracted for d in runs)} |")
    hops = [(d.alert_produced_at - d.burn.at, d.stream_at - d.alert_produced_at)
            for runs in results.values() for d in runs if d.alert_produced_at is not None]
    if hops:
        print(f"hops (all runs): record -> our alert on slo.alerts median {statistics.median(h[0] for h in hops):.2f}s "
              f"(max {max(h[0] for h in hops):.2f}s); slo.alerts -> receiver median "
              f"{statistics.median(h[1] for h in hops):.2f}s (max {max(h[1] for h in hops):.2f}s)")
    if args.json:
        Path(args.json).write_text(json.dumps({k: [asdict(d) for d in v] for k, v in results.items()}, indent=1,
                                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
