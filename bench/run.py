"""Benchmarks: the core alone, a bare consumer (the physical limit), a real worker end to end, the
detection latency of a live outage (our page vs Prometheus + Alertmanager's), and the gate API's
latency at 500 requests/s (bench/gate.py).

    python -m bench.run [--quick] [--only core|bare|worker|detection|gate]

Prints records/s for each and the ratio worker / bare consumer; for detection, seconds from the burn
condition becoming true to each page (allowed lateness 5 s, and the default 120 s unless --quick).
Figures are this machine's; the targets are in ../shared/DESIGN.md (core >= 300k records/s per core,
worker >= 50k/s, >= 0.5 of bare).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.workload import Workload, client_security
from streams.adapters import kafka_security

ROOT = Path(__file__).resolve().parents[1]


def bench_core(w: Workload, msgs: list[tuple[bytes, bytes]], *, repeat: int = 3) -> dict[str, float]:
    """Parse + aggregate + evaluate + commit in memory, ``repeat`` times; the median run is reported."""
    from streams.core.engine import Engine, EngineConfig

    runs = []
    for _ in range(repeat):
        engine = Engine(w.slos(), {}, EngineConfig(allowed_lateness_s=10))
        engine.assign({0})
        batch = 20  # messages per batch, as a worker would take them
        gc.collect()
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        evaluations = records = 0
        for i in range(0, len(msgs), batch):
            part = [(k, v, i + j) for j, (k, v) in enumerate(msgs[i:i + batch])]
            res = engine.process(0, part, now=w.start_ts + 10 * 86400)
            engine.commit(res)
            evaluations += res.evaluations
            records += res.records
        runs.append((time.perf_counter() - t0, time.process_time() - cpu0, records, evaluations, engine))
    runs.sort(key=lambda r: r[0])
    wall, cpu, records, evaluations, engine = runs[len(runs) // 2]
    # Evaluation alone: every series at the next boundary, cold (first read of each chunk) then warm.
    at = engine.meta(0).evaluated_to + 10
    series = engine.counters.series(0)
    cost = []
    for _ in range(2):
        t1 = time.perf_counter()
        for s in series:
            slo = engine.slos[s.split("|", 1)[0]]
            for win in slo.windows_s:
                engine.counters.window(s, at, win)
        cost.append((time.perf_counter() - t1) / max(1, len(series)) * 1e6)
    return {"records": records, "wall_s": wall, "records_per_s": records / wall,
            "records_per_cpu_s": records / cpu, "evaluations": evaluations, "series": len(series),
            "eval_us_cold": cost[0], "eval_us_warm": cost[1],
            "state_bytes": sum(len(v) for v in engine.store.values())}


def produce(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=1 << 20,
                      max_request_size=8 << 20, **kafka_security.kafka_python(client_security()))
    for k, v in msgs:
        p.send(topic, key=k, value=v, partition=0)
    p.flush()
    p.close()


async def _bare(bootstrap: str, topic: str, n_msgs: int) -> tuple[int, float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20,
                         **kafka_security.aiokafka(client_security()))
    await c.start()
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    await c.seek_to_beginning(tp)
    seen = records = 0
    t0 = None
    while seen < n_msgs:
        batch = await c.getmany(tp, timeout_ms=1000, max_records=5000)
        for msgs in batch.values():
            if t0 is None:
                t0 = time.perf_counter()
            for m in msgs:
                records += len(orjson.loads(m.value)["records"])
            seen += len(msgs)
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    await c.stop()
    return records, elapsed


def bench_bare(bootstrap: str, msgs: list[tuple[bytes, bytes]]) -> dict[str, float]:
    from streams.adapters.topics import ensure_topics

    topic = f"bench-bare-{os.getpid()}-{int(time.time())}"
    ensure_topics(bootstrap, {topic: 1}, security=client_security())
    produce(bootstrap, topic, msgs)
    records, elapsed = asyncio.run(_bare(bootstrap, topic, len(msgs)))
    return {"records": records, "wall_s": elapsed, "records_per_s": records / elapsed}


def bench_worker(bootstrap: str, w: Workload, msgs: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """Produce everything first, then start a worker and time it from its first to its last commit."""
    from kafka import KafkaAdminClient, TopicPartition

    from streams import settings as settings_mod
    from streams.adapters.processes import free_port
    from streams.adapters.topics import ensure_topics

    tag = f"bench{int(time.time())}"
    tmp = Path(tempfile.mkdtemp(prefix="slo-stream-bench-"))
    spec = tmp / "slos.yaml"
    spec.write_text(_specs_yaml(w))
    env = worker_env(bootstrap, tag, spec, tmp, free_port(), SLO_STREAM_ALLOWED_LATENESS="10")
    s = settings_mod.load(env)
    ensure_topics(bootstrap, s.topics, security=client_security())
    produce(bootstrap, s.topic_playback, msgs)
    total_records = sum(len(orjson.loads(v)["records"]) for _, v in msgs)
    log = open(tmp / "worker.log", "wb")  # noqa: SIM115
    loglevel = os.environ.get("BENCH_LOGLEVEL", "warning")
    proc = subprocess.Popen([sys.executable, "-m", "streams", "worker", "--loglevel", loglevel], env=env,
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security.kafka_python(client_security()))
    tp = TopicPartition(s.topic_playback, 0)
    samples: list[tuple[float, int]] = []
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            try:
                offsets = admin.list_group_offsets({tag: [tp]}).get(tag, {})
            except Exception:  # the group does not exist until the worker joins
                offsets = {}
            off = offsets[tp].offset if tp in offsets and offsets[tp].offset >= 0 else 0
            samples.append((time.perf_counter(), off))
            if off >= len(msgs):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"worker died; see {log.name}")
            time.sleep(0.2)
    finally:
        stop(proc)
        admin.close()
    moving = [(t, o) for t, o in samples if o > 0]
    (t_a, o_a), (t_b, o_b) = moving[0], moving[-1]
    per_msg = total_records / len(msgs)
    rate = (o_b - o_a) * per_msg / (t_b - t_a) if t_b > t_a else float("nan")
    return {"records": total_records, "records_per_s": rate, "messages_per_s": (o_b - o_a) / (t_b - t_a),
            "wall_s": t_b - t_a, "log": str(tmp / "worker.log")}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a worker, SIGKILL it if it has not exited after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def worker_env(bootstrap: str, tag: str, spec: Path, tmp: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's worker: one partition, topics of its own (prefixed ``tag``),
    quick group timeouts, its web port and data directory."""
    env = dict(os.environ)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SLO_STREAM_APP_ID": tag, "SLO_STREAM_PARTITIONS": "1",
        "SLO_STREAM_TOPIC_PLAYBACK": f"{tag}.playback", "SLO_STREAM_TOPIC_ALERTS": f"{tag}.alerts",
        "SLO_STREAM_TOPIC_STATUS": f"{tag}.status", "SLO_STREAM_TOPIC_DEAD_LETTER": f"{tag}.dlq",
        "SLO_STREAM_TOPIC_K8S_EVENTS": f"{tag}.k8s-events", "SLO_STREAM_TOPIC_K8S_ROLLOUTS": f"{tag}.k8s-rollouts",
        "SLO_STREAM_TOPIC_ROLLOUT_GATES": f"{tag}.gates", "SLO_STREAM_SPECS": str(spec),
        "SLO_STREAM_SESSION_TIMEOUT": "2", "SLO_STREAM_HEARTBEAT_INTERVAL": "0.5", "SLO_STREAM_WEB_PORT": str(port),
        "SLO_STREAM_DATADIR": str(tmp / "data"), **extra,
    })
    return env


def _specs_yaml(w: Workload) -> str:
    docs = []
    for i in range(w.services):
        svc = f"svc-{i:03d}"
        docs.append(f"""apiVersion: openslo/v1
kind: Service
metadata: {{name: {svc}}}
spec: {{description: bench service}}
---
apiVersion: openslo/v1
kind: SLO
metadata: {{name: {svc}-availability}}
spec:
  service: {svc}
  indicator:
    metadata: {{name: {svc}-errors}}
    spec:
      ratioMetric:
        counter: true
        bad: {{metricSource: {{type: playback, spec: {{field: errors}}}}}}
        total: {{metricSource: {{type: playback, spec: {{field: total}}}}}}
  timeWindow: [{{duration: 30d, isRolling: true}}]
  budgetingMethod: Occurrences
  objectives: [{{target: 0.999}}]
---
apiVersion: openslo/v1
kind: SLO
metadata: {{name: {svc}-latency}}
spec:
  service: {svc}
  indicator:
    metadata: {{name: {svc}-latency}}
    spec:
      thresholdMetric: {{metricSource: {{type: playback, spec: {{field: latency_ms}}}}}}
  timeWindow: [{{duration: 30d, isRolling: true}}]
  budgetingMethod: Occurrences
  objectives: [{{target: 0.99, op: lte, value: 300}}]
""")
    return "---\n".join(docs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small run (a few seconds)")
    ap.add_argument("--only", choices=["core", "bare", "worker", "detection", "gate"], action="append")
    ap.add_argument("--messages", type=int, help="messages of the workload (default 2,000; 300 with --quick)")
    args = ap.parse_args()
    w = Workload(messages=args.messages or (300 if args.quick else 2000))
    only = set(args.only or ["core", "bare", "worker", "detection", "gate"])
    t = time.perf_counter()
    msgs = w.build()
    print(f"workload: {len(msgs):,} messages x {w.records_per_message} records, {w.services} services, "
          f"{w.series()} series, event time at {w.live_rate:,} records/s (built in {time.perf_counter() - t:.1f}s)")
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    out: dict[str, dict[str, float]] = {}
    if "core" in only:
        r = out["core"] = bench_core(w, msgs, repeat=5)
        print(f"core      {r['records_per_s']:>12,.0f} records/s  (median of 5; {r['records_per_cpu_s']:,.0f} per "
              f"CPU-second; live event time: {r['evaluations']:,} series evaluations; state "
              f"{r['state_bytes'] / 1024:.0f} KiB for {r['series']} series)")
        print(f"          evaluating one series at one step: {r['eval_us_cold']:.0f} us cold, "
              f"{r['eval_us_warm']:.0f} us warm (8 windows)")
        fast = Workload(messages=w.messages, live_rate=w.live_rate // 100)
        r = out["core_replay"] = bench_core(fast, fast.build(), repeat=1)
        print(f"core      {r['records_per_s']:>12,.0f} records/s  replaying at 100x live speed "
              f"({r['evaluations']:,} series evaluations)")
    broker = None
    if only & {"bare", "worker", "detection", "gate"}:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            from streams.adapters.broker import EmbeddedBroker

            broker = EmbeddedBroker()
            broker.start()
            bootstrap = broker.bootstrap
        try:
            if "bare" in only:
                r = out["bare"] = bench_bare(bootstrap, msgs)
                print(f"bare      {r['records_per_s']:>12,.0f} records/s  (aiokafka getmany + orjson, 1 partition)")
            if "worker" in only:
                r = out["worker"] = bench_worker(bootstrap, w, msgs)
                print(f"worker    {r['records_per_s']:>12,.0f} records/s  ({r['messages_per_s']:,.0f} messages/s, "
                      f"1 partition, 1 worker, steady state from committed offsets; log {r['log']})")
            if "detection" in only:
                from bench.detection import bench_detection, report

                found = bench_detection(bootstrap, [5] if args.quick else [5, 120])
                if isinstance(found, str):
                    print(f"detection skipped: {found}")
                else:
                    for d in found:
                        print(report(d))
            if "gate" in only:
                from bench.gate import bench_gate
                from bench.gate import report as gate_report

                for two in (False, True):
                    print(gate_report(bench_gate(bootstrap, rate=500, seconds=5 if args.quick else 20,
                                                 two_workers=two)))
        finally:
            if broker is not None:
                broker.stop()
    if "bare" in out and "worker" in out:
        print(f"ratio     worker / bare consumer = {out['worker']['records_per_s'] / out['bare']['records_per_s']:.2f}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
