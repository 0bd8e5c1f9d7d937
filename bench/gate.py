"""Gate API latency under load: ``GET /v1/gate`` at a fixed request rate from a second process.

A real worker on the embedded broker holds a few hours of playback history for the bundled SLOs
(alerts/slos, so the gate judges every series of the service), one worker answers; a separate process
(``python -m bench.gate --load ...``) sends requests open-loop at the target rate over several
connections and measures each latency from the moment the request was *due*, so a stall of the
server is not hidden by the client waiting for it (no coordinated omission).

    python -m bench.gate [--rate 500] [--seconds 20] [--two-workers] [--burst N]

``--two-workers`` asks the worker that does *not* own the service: every request is forwarded.
``--burst N`` measures twice in one run, side by side: quiet, then while N records of N new placements
(distinct clusters of license-service, each a new series: up to the series limit admitted, the rest
dead-lettered) reach the worker two seconds into the load (issue 19: the gate keeps its latency).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


async def _load(url: str, rate: float, seconds: float, connections: int) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    decisions: dict[str, int] = {}
    n = int(rate * seconds)
    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as session:
        # Warm the connections (and the worker's caches) before measuring.
        for _ in range(min(50, n)):
            async with session.get(url) as r:
                await r.read()
        # The client must not be what stalls: no garbage collection during the run, and one task
        # per request created when it is due (not thousands waiting up front).
        gc.collect()
        gc.disable()
        start = time.perf_counter() + 0.05

        async def one(due: float) -> None:
            try:
                async with session.get(url) as r:
                    body = await r.read()
                    status = r.status
            except aiohttp.ClientError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            latencies.append(time.perf_counter() - due)
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
            else:
                d = json.loads(body).get("decision", "none") if body.startswith(b"{") else "none"
                decisions[d] = decisions.get(d, 0) + 1

        t0 = time.perf_counter()
        pending = set()
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        elapsed = time.perf_counter() - t0
        gc.enable()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else float("nan")

    return {"requests": n, "answered": len(latencies), "seconds": elapsed, "achieved_rate": len(latencies) / elapsed,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "errors": errors, "decisions": decisions}  # type: ignore[dict-item]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, OSError):
        return 0, {}


def _evaluated_to(port: int, service: str) -> float:
    """The oldest latest-evaluation time (event time) of the service's series, 0 when unknown."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/gate?service={service}", timeout=5) as resp:
            series = json.loads(resp.read()).get("series") or []
    except (urllib.error.URLError, OSError, ValueError):
        return 0.0
    return min((float(x.get("evaluated_at") or 0) for x in series), default=0.0)


def _burst_messages(n: int, at: float) -> list[tuple[bytes, bytes]]:
    """``n`` records of ``n`` new clusters of license-service at event time ``at``, 500 per message."""
    recs = [{"ts": at + i / n, "service": "license-service", "cluster": f"burst-{i}", "region": "eu-west",
             "platform": "kubernetes", "total": 10, "errors": 0, "revision": f"r{i}"} for i in range(n)]
    return [(b"license-service", json.dumps({"schema_version": 1, "records": recs[i:i + 500]}).encode())
            for i in range(0, n, 500)]


def _run_load(url: str, rate: float, seconds: float, *, burst: list[tuple[bytes, bytes]] | None = None,
              produce: Any = None) -> dict[str, object]:
    """The load from a second process; with ``burst``, ``produce(burst)`` two seconds in."""
    load = subprocess.Popen([sys.executable, "-m", "bench.gate", "--load", url, "--rate", str(rate),
                             "--seconds", str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if burst:
        time.sleep(2.0)
        produce(burst)
    out, err = load.communicate(timeout=600)
    if load.returncode != 0:
        return {"error": err[-2000:]}
    result: dict[str, object] = json.loads(out)
    return result


def bench_gate(bootstrap: str, *, rate: float, seconds: float, two_workers: bool, burst: int = 0
               ) -> dict[str, object]:
    from kafka import KafkaProducer

    from bench.workload import client_security
    from streams import settings as settings_mod
    from streams.adapters import kafka_security
    from streams.adapters.processes import free_port, stop_group
    from streams.adapters.topics import ensure_topics
    from streams.demo.traffic import TrafficPlan

    tmp = Path(tempfile.mkdtemp(prefix="slo-stream-bench-gate-"))
    app_id = f"bench-gate-{os.getpid()}"
    env = dict(os.environ)
    env.update({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SLO_STREAM_APP_ID": app_id, "SLO_STREAM_PARTITIONS": "2",
                "SLO_STREAM_SESSION_TIMEOUT": "2", "SLO_STREAM_HEARTBEAT_INTERVAL": "0.5",
                # History replayed now is hours behind the wall clock: let the gate judge it.
                "SLO_STREAM_GATE_MAX_EVALUATION_LAG": "12h", "SLO_STREAM_GATE_STALE_AFTER": "12h",
                "SLO_STREAM_STALE_AFTER": "12h"})
    s = settings_mod.load(env)
    security = client_security()
    ensure_topics(bootstrap, s.topics, security=security)
    ports = [free_port() for _ in range(2 if two_workers else 1)]
    procs = []
    try:
        for i, port in enumerate(ports):
            wenv = {**env, "SLO_STREAM_WEB_PORT": str(port), "SLO_STREAM_DATADIR": str(tmp / f"w{i}")}
            log = open(tmp / f"w{i}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(["timeout", "-k", "10", "900", sys.executable, "-m", "streams", "worker"],
                                          env=wenv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        start = int(time.time()) // 60 * 60 - 4 * 3600
        scenario = TrafficPlan(start_ts=start, duration_s=4 * 3600 - 60)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                 **kafka_security.kafka_python(security))
        for _, key, value in scenario.messages():
            producer.send(s.topic_playback, key=key, value=value)
        producer.flush()
        producer.close()
        service = "playback-api"
        # The worker to ask: the owner, or (two workers) the other one, so that every request is forwarded.
        deadline = time.time() + 120
        target = None
        while time.time() < deadline and target is None:
            owners = {}
            for port in ports:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/gate?service={service}")
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        body = json.loads(resp.read())
                        owners[port] = (resp.headers.get("X-Slo-Stream-Answered-By"), body.get("decision"))
                except (urllib.error.URLError, OSError):
                    pass
            # Caught up: the service's evaluations have reached the end of the history (a worker still
            # replaying it spends its event loop on that, not on the gate).
            caught_up = _evaluated_to(ports[0], service) >= scenario.start_ts + scenario.duration_s - 140
            if caught_up and len(owners) == len(ports) and all(d not in (None, "unknown")
                                                               for _, d in owners.values()):
                if not two_workers:
                    target = ports[0]
                else:
                    owner_url = next(iter(owners.values()))[0]
                    others = [p for p in ports if not (owner_url or "").endswith(f":{p}")]
                    if len({o for o, _ in owners.values()}) == 1 and others:
                        target = others[0]
            if target is None:
                time.sleep(0.5)
        if target is None:
            return {"error": f"the gate never answered for {service}; logs in {tmp}"}
        url = f"http://127.0.0.1:{target}/v1/gate?service={service}"
        result = _run_load(url, rate, seconds)
        if "error" in result:
            return result
        if burst:

            def produce(messages: list[tuple[bytes, bytes]]) -> None:
                p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                  max_request_size=16 * 1024 * 1024, **kafka_security.kafka_python(security))
                for key, value in messages:
                    p.send(s.topic_playback, key=key, value=value)
                p.flush()
                p.close()

            at = scenario.start_ts + scenario.duration_s - 30
            during = _run_load(url, rate, seconds, burst=_burst_messages(burst, at), produce=produce)
            if "error" in during:
                return during
            result["burst"] = burst
            result["during"] = during
        result["forwarded"] = two_workers
        result["logs"] = str(tmp)
        return result
    finally:
        for p in procs:
            stop_group(p, timeout_s=15)


def report(r: dict[str, object]) -> str:
    if "error" in r:
        return f"gate      skipped: {r['error']}"
    via = "every request forwarded to the owning worker" if r["forwarded"] else "asking the owning worker"
    line = (f"gate      p50 {r['p50_ms']:.2f} ms  p90 {r['p90_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
            f"max {r['max_ms']:.1f} ms at {r['achieved_rate']:.0f} requests/s ({r['answered']:,} answered, "
            f"errors {r['errors'] or 'none'}, decisions {r['decisions']}; {via}; from a second process)")
    d = r.get("during")
    if isinstance(d, dict):
        line += (f"\ngate      during a burst of {r['burst']:,} new series: p50 {d['p50_ms']:.2f} ms  p99 "
                 f"{d['p99_ms']:.2f} ms  max {d['max_ms']:.1f} ms ({d['answered']:,} of {d['requests']:,} answered, "
                 f"errors {d['errors'] or 'none'}); p99 burst / quiet = {d['p99_ms'] / r['p99_ms']:.1f}")
    return line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=500.0, help="requests per second (default 500)")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to send (default 20)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--two-workers", action="store_true", help="ask the worker that does not own the service")
    ap.add_argument("--burst", type=int, default=0, metavar="N",
                    help="measure again while N records of N new series arrive (default: no burst)")
    ap.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # the second process
    args = ap.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(_load(args.load, args.rate, args.seconds, args.connections))))
        return 0
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    if not bootstrap:
        from streams.adapters.broker import EmbeddedBroker

        broker = EmbeddedBroker()
        broker.start()
        bootstrap = broker.bootstrap
    try:
        print(report(bench_gate(bootstrap, rate=args.rate, seconds=args.seconds, two_workers=args.two_workers,
                                burst=args.burst)))
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
