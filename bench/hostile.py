"""A hostile producer against one real worker, with the default limits (issue 19's attacks 1-3).

    python -m bench.hostile [--junk 100000]

One worker on the embedded broker (or ``KAFKA_BOOTSTRAP_SERVERS``), two real placements of
license-service (an SLO that keeps the cluster: a new cluster is a new series) sending throughout. Then,
in event time:

1. **memory**: ``--junk`` valid records of as many distinct clusters, each with a revision, in batch
   messages of 500: the worker's RSS and state entries before and after;
2. **stall**: meanwhile ``GET /v1/gate`` and ``/metrics`` every 100 ms from a thread: latencies and
   failures during the burst;
3. **lockout**: a new placement (not allow-listed) sends one hour and two minutes of event time after the
   junk (longer than the default idle time of 1 h): counted, or dead-lettered ``series_limit``;
4. the worker restarted: seconds until ``/readyz`` answers 200 (the changelog recovered).

Only metrics every version exports are read, so that the same file measures an older checkout side by
side (``cd <checkout> && python -m bench.hostile``: the worker is ``python -m streams`` of the current
directory).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "license-service"
REAL = (("eu-west-1", "kubernetes"), ("dc-ams", "legacy"))


def _rec(ts: float, cluster: str, platform: str = "kubernetes", *, revision: str | None = None) -> dict:
    r = {"ts": ts, "service": SERVICE, "cluster": cluster, "region": "eu-west", "platform": platform,
         "total": 10, "errors": 0}
    if revision is not None:
        r["revision"] = revision
    return r


def _messages(records: list[dict], per: int = 500) -> list[tuple[bytes, bytes]]:
    return [(SERVICE.encode(), json.dumps({"schema_version": 1, "records": records[i:i + per]}).encode())
            for i in range(0, len(records), per)]


def _real(t0: float, t1: float) -> list[dict]:
    return [_rec(t, cl, pf) for t in range(int(t0), int(t1), 10) for cl, pf in REAL]


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class Prober(threading.Thread):
    """Asks a worker for the gate of license-service and for /metrics in turn, every 100 ms, until
    ``stop`` is set; remembers every latency (gate and /metrics apart) and every failure."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.latencies: list[float] = []  # of the gate
        self.scrapes: list[float] = []  # of /metrics
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        paths = (f"/v1/gate?service={SERVICE}", "/metrics")
        i = 0
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(self.base + paths[i % 2], timeout=10) as resp:
                    resp.read()
                (self.latencies if i % 2 == 0 else self.scrapes).append(time.perf_counter() - t)
            except OSError as exc:
                self.failures.append(f"{paths[i % 2]}: {type(exc).__name__}: {exc}")
            i += 1
            self.stop.wait(0.1)


def _wait(cond, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def attack(bootstrap: str, junk: int) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from tests.faults.helpers_input import child_pid, total, try_scrape
    from tests.integration.harness import Deployment

    tmp = Path(tempfile.mkdtemp(prefix="slo-stream-bench-hostile-"))
    dep = Deployment.create(bootstrap, tmp, partitions=1)
    from streams.adapters.processes import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"SLO_STREAM_WEB_PORT": str(port), "SLO_STREAM_STALE_AFTER": "1h",
           "SLO_STREAM_GATE_STALE_AFTER": "12h", "SLO_STREAM_GATE_MAX_EVALUATION_LAG": "12h"}
    t0 = int(time.time()) // 60 * 60 - 4 * 3600
    junk_at = t0 + 1800
    out: dict[str, object] = {"junk": junk, "checkout": str(ROOT)}
    with dep.worker(**env) as proc:
        pid = child_pid(proc)
        _wait(lambda: try_scrape(f"{base}/metrics"), 120, "the worker")
        before = _real(t0, junk_at)
        dep.produce(_messages(before, 300))
        _wait(lambda: total(try_scrape(f"{base}/metrics") or {}, "slo_stream_records_total") >= len(before), 120,
              "the real traffic")
        s0 = try_scrape(f"{base}/metrics") or {}
        out["rss_before_mib"], out["entries_before"] = rss_mib(pid), total(s0, "slo_stream_state_entries")
        records = [_rec(junk_at + i / junk, f"junk-{i}", revision=f"r{i}") for i in range(junk)]
        records[junk // 2:junk // 2] = _real(junk_at, junk_at + 30)
        prober = Prober(base)
        prober.start()
        t_burst = time.time()
        dep.produce(_messages(records))
        after_at = junk_at + 30 + 3600 + 120
        later = _real(after_at, after_at + 60) + [_rec(after_at + i, "us-west-2") for i in range(10)]
        sent = len(before) + len(records)

        def taken(n: int):
            got = try_scrape(f"{base}/metrics")
            if got and total(got, "slo_stream_records_total") + total(got, "slo_stream_dead_letters_total") >= n:
                return got
            return None

        s1 = _wait(lambda: taken(sent), 900, "the burst taken")
        out["burst_s"] = time.time() - t_burst
        prober.stop.set()
        prober.join(15)
        out["rss_after_mib"], out["entries_after"] = rss_mib(pid), total(s1, "slo_stream_state_entries")
        lat, scrapes = sorted(prober.latencies), sorted(prober.scrapes)
        out["probes"], out["probe_failures"] = len(lat) + len(scrapes), len(prober.failures)
        out["gate_p99_ms"] = lat[int(0.99 * (len(lat) - 1))] * 1e3 if lat else float("nan")
        out["gate_max_ms"] = lat[-1] * 1e3 if lat else float("nan")
        out["scrape_max_ms"] = scrapes[-1] * 1e3 if scrapes else float("nan")
        dep.produce(_messages(later))
        s2 = _wait(lambda: taken(sent + len(later)), 300, "the later traffic")
        out["new_placement_counted"] = total(s2, "slo_stream_sli_events_total", cluster="us-west-2")
        out["new_placement_sent"] = 10 * 10
        out["series_limit_dead_letters"] = total(s2, "slo_stream_dead_letters_total", reason="series_limit")
    t_restart = time.time()
    with dep.worker(**env) as proc:
        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=5) as resp:
                    return resp.status == 200
            except OSError:
                return False

        _wait(ready, 300, "readiness after a restart")
        out["ready_after_restart_s"] = time.time() - t_restart
    return out


def report(r: dict[str, object]) -> str:
    return (f"hostile   {r['junk']:,} junk clusters: RSS {r['rss_before_mib']:.0f} -> {r['rss_after_mib']:.0f} "
            f"MiB, state entries {r['entries_before']:.0f} -> {r['entries_after']:.0f}, burst taken in "
            f"{r['burst_s']:.1f} s; during it {r['probes']} probes answered: the gate p99 {r['gate_p99_ms']:.0f} ms, "
            f"max {r['gate_max_ms']:.0f} ms, /metrics max {r['scrape_max_ms']:.0f} ms, "
            f"{r['probe_failures']} failed; a new placement 1 h after the junk: {r['new_placement_counted']:.0f} of "
            f"{r['new_placement_sent']} events counted ({r['series_limit_dead_letters']:.0f} series_limit dead "
            f"letters in all); ready {r['ready_after_restart_s']:.1f} s after a restart  [{r['checkout']}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--junk", type=int, default=100_000, help="distinct junk clusters (default 100000)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    if not bootstrap:
        from streams.adapters.broker import EmbeddedBroker

        broker = EmbeddedBroker()
        broker.start()
        bootstrap = broker.bootstrap
    try:
        r = attack(bootstrap, args.junk)
        print(json.dumps(r) if args.json else report(r))
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
