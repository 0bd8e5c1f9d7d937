"""Soak: one real worker held at a steady live rate for N minutes, its memory sampled over time.

    python -m bench.soak [--minutes 10] [--rate 50000] [--interval 10] [--warmup 2]
    make bench-soak

A producer paces batch messages of the benchmark workload (bench/workload.py: 20 services with an
availability and a latency SLO each, 5 clusters x 2 platforms, 500 raw events per message) at
``--rate`` records/s, with event time = wall clock (live traffic), into a 1-partition topic of the
embedded broker (or KAFKA_BOOTSTRAP_SERVERS), gzip-compressed so that the in-memory broker holds
minutes of traffic in little memory. One `slo-stream worker` process consumes it. Every
``--interval`` seconds: the worker's resident memory (VmRSS of /proc/<pid>/status) and how much of it
is the brk heap of glibc malloc, anonymous mappings (pymalloc's 1 MiB arenas, large malloc chunks,
the consumer thread's malloc arena) and mapped files (/proc/<pid>/smaps), the records/s it counted over
the interval (its /metrics ``slo_stream_records_total``), the records/s produced, and its
consumer lag (messages; /metrics ``slo_stream_consumer_lag_messages``, and produced minus taken).

The verdict, over the samples after warm-up: the worker holds the rate when it counted at least 98%
of the records produced (and the producer kept 98% of the target) and its lag grew by less than 10 s
of traffic; memory is flat when the slope of its RSS is under 1 MiB/min (Theil-Sen, the median of
the slopes between every two samples, so that a large batch or a garbage collection caught at one
sample does not decide; the least-squares slope and the first-to-last growth are printed too).

The default rate is the worker target of bench/README.md (>= 50,000 records/s); the workload's
``live_rate`` (250,000 records/s, the event-time rate of `bench.run --only worker`'s backlog replay)
is more than one worker and the producer can do together on this 2-core machine. Run with
``--rate 250000`` to see that.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.run import _specs_yaml, stop, worker_env
from bench.workload import CLUSTERS, Workload, client_security
from streams.adapters import kafka_security

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def vm_rss(pid: int) -> int | None:
    """Resident set size of ``pid`` in bytes (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def mappings(pid: int) -> dict[str, int] | None:
    """Resident bytes of ``pid`` by kind of mapping, from /proc/<pid>/smaps: ``heap`` (the brk heap of
    glibc malloc), ``anon`` (anonymous mmaps: pymalloc arenas, large or per-thread malloc chunks, thread
    stacks), ``file`` (the interpreter, shared libraries and other mapped files) and ``other``; with
    ``anon_n``, the number of anonymous mappings. None once the process is gone."""
    out = {"heap": 0, "anon": 0, "file": 0, "other": 0, "anon_n": 0}
    kind = "other"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 6)
                if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
                    name = head[5].strip() if len(head) > 5 else ""
                    if not name or name.startswith("[anon"):
                        kind = "anon"
                        out["anon_n"] += 1
                    elif name == "[heap]":
                        kind = "heap"
                    elif name.startswith("/"):
                        kind = "file"
                    else:
                        kind = "other"
                elif head and head[0] == "Rss:":
                    out[kind] += int(head[1]) * 1024
    except OSError:
        return None
    return out


def scrape(url: str) -> dict[str, float]:
    """Sums of the worker's counters and gauges this soak reads, by metric name."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


@dataclass
class Producer:
    """Paces batch messages at ``rate`` records/s in a thread; event time is the wall clock."""

    bootstrap: str
    topic: str
    rate: int
    per_message: int
    services: int
    compression: str | None
    sent_messages: int = 0
    sent_records: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Producer:
        self.thread = threading.Thread(target=self._run, name="soak-producer", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        from kafka import KafkaProducer

        rng = random.Random(1)
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=20, batch_size=1 << 20,
                                 max_request_size=8 << 20, compression_type=self.compression,
                                 **kafka_security.kafka_python(client_security()))
        # Records are drawn from a pool (cluster, platform, errors, latency) so that the producer, which
        # shares the machine with the worker, spends its time on JSON and Kafka, not on random().
        pool = []
        for _ in range(4096):
            cluster, region = CLUSTERS[rng.randrange(len(CLUSTERS))]
            pool.append((cluster, region, "kubernetes" if rng.random() < 0.6 else "legacy",
                         1 if rng.random() < 0.001 else 0, round(rng.expovariate(1 / 120), 1)))
        interval = self.per_message / self.rate
        t0 = time.monotonic()
        m = 0
        try:
            while not self._stop.is_set():
                due = t0 + m * interval
                now = time.monotonic()
                if due > now:
                    time.sleep(min(due - now, 0.05))  # pacing the load, not waiting for a condition
                    continue
                svc = f"svc-{m % self.services:03d}"
                ts = time.time()
                start = rng.randrange(len(pool))
                recs = []
                for i in range(self.per_message):
                    cluster, region, platform, errors, latency = pool[(start + i) % len(pool)]
                    recs.append({"ts": round(ts + i / self.rate, 4), "service": svc, "cluster": cluster,
                                 "region": region, "platform": platform, "total": 1, "errors": errors,
                                 "latency_ms": latency})
                value = orjson.dumps({"schema_version": 1, "records": recs})
                producer.send(self.topic, key=svc.encode(), value=value, partition=0)
                m += 1
                self.sent_messages = m
                self.sent_records = m * self.per_message
        except Exception as exc:  # reported in the verdict
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            producer.flush(timeout=30)
            producer.close(timeout=30)


@dataclass
class Sample:
    t: float  # seconds since the worker took its first message
    rss: int
    broker_rss: int | None
    counted: float  # records counted by the worker so far
    taken: float  # messages taken so far
    produced: int  # records produced so far
    lag: float  # the worker's own lag gauge (messages)
    state: float = 0.0  # bytes of the worker's state table (slo_stream_state_bytes)
    maps: dict[str, int] | None = None  # resident bytes by kind of mapping (mappings())


def robust_slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Theil-Sen slope (the median of the slopes between every two points), per minute: a batch or a
    garbage collection caught at one sample does not move it."""
    slopes = sorted((b - a) / (tb - ta) * 60 for i, (ta, a) in enumerate(points) for tb, b in points[i + 1:]
                    if tb > ta)
    if not slopes:
        return float("nan")
    mid = len(slopes) // 2
    return slopes[mid] if len(slopes) % 2 else (slopes[mid - 1] + slopes[mid]) / 2


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (v - my) for t, v in points) / var * 60 if var else float("nan")


_COUNTED_WORKER = """
import collections, gc, json, sys, threading, time
SIZED = (list, dict, set, frozenset, collections.deque, bytearray, bytes)
MODULES = ("faust", "mode", "aiokafka", "streams", "asyncio", "prometheus_client")
def sizes():
    # Containers held in the attributes of the libraries' objects: "len Type.attr" (summed over the
    # instances) and, for a container of containers, "deep Type.attr" (the sum of the inner lengths).
    out = collections.Counter()
    for o in gc.get_objects():
        t = type(o)
        mod = getattr(t, "__module__", None)
        if not isinstance(mod, str) or not mod.startswith(MODULES):
            continue
        try:
            attrs = vars(o)
        except TypeError:
            continue
        for name, v in list(attrs.items()):
            if isinstance(v, SIZED):
                out["len " + t.__qualname__ + "." + name] += len(v)
                inner = v.values() if isinstance(v, dict) else (v if isinstance(v, (list, collections.deque)) else ())
                deep = sum(len(x) for x in list(inner) if isinstance(x, SIZED))
                if deep:
                    out["deep " + t.__qualname__ + "." + name] += deep
    return out
def pymalloc():
    # pymalloc's own figures (sys._debugmallocstats writes them to the C stderr): arenas in use and
    # the bytes in allocated and free blocks, so that arenas kept alive by a few blocks show. A log
    # line the worker writes during those milliseconds lands in the temporary file (diagnosis only).
    import os, re, tempfile
    out = {{}}
    with tempfile.TemporaryFile(mode="w+") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp:
            m = re.match(r"^# (arenas allocated current|arenas highwater mark|bytes in allocated blocks"
                         r"|bytes in available blocks|bytes lost to quantization)\\s*=\\s*([\\d,]+)", line)
            if m:
                out["mem pymalloc " + m.group(1)] = int(m.group(2).replace(",", ""))
    return out
def dump():
    while True:
        time.sleep(60)
        counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        row = dict(counts.most_common(60))
        try:
            row.update(sizes())
        except Exception as exc:  # a diagnosis must not stop the counting
            row["sizes failed: " + repr(exc)[:200]] = 1
        # Where the bytes are: Python's own allocator (blocks in use), and the C heap (glibc mallinfo2:
        # in use, free inside the heap, mmapped) for what C extensions and large buffers hold.
        row["mem python allocated blocks"] = sys.getallocatedblocks()
        try:
            import ctypes
            class MI(ctypes.Structure):
                _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
            libc = ctypes.CDLL("libc.so.6")
            libc.mallinfo2.restype = MI
            mi = libc.mallinfo2()
            row["mem c heap in use"] = mi.uordblks
            row["mem c heap free"] = mi.fordblks
            row["mem c mmapped"] = mi.hblkhd
            row["mem c mmapped chunks"] = mi.hblks
            row["mem c arenas"] = mi.arena
        except (OSError, AttributeError):
            pass
        row.update(pymalloc())
        with open("{path}", "a") as f:
            f.write(json.dumps(row) + "\\n")
threading.Thread(target=dump, daemon=True).start()
from streams.cli import main
raise SystemExit(main(["worker", "--loglevel", "warning"]))
"""

# Diagnosis of where memory stays: Python's allocation tracer started after the warm-up (so that only
# what is allocated from then on is traced), a snapshot every minute: the traced total and the source
# lines holding the most memory, appended to a JSON-lines file.
_TRACED_WORKER = """
import json, threading, time, tracemalloc
def dump():
    time.sleep({warmup_s})
    tracemalloc.start(6)
    while True:
        time.sleep(60)
        snap = tracemalloc.take_snapshot()
        stats = snap.statistics("traceback")
        current, peak = tracemalloc.get_traced_memory()
        top = [[" < ".join(str(f) for f in st.traceback), st.size, st.count] for st in stats[:80]]
        with open("{path}", "a") as f:
            f.write(json.dumps(dict(traced=current, peak=peak, top=top)) + "\\n")
threading.Thread(target=dump, daemon=True).start()
from streams.cli import main
raise SystemExit(main(["worker", "--loglevel", "warning"]))
"""


def compare(path: str, top: int = 20) -> int:
    """Print what grew between the first and the last row of an ``--objects`` or ``--tracemalloc`` file."""
    rows = [orjson.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if rows and "traced" in rows[0]:
        print(f"{len(rows)} snapshots, a minute apart; traced memory "
              + " ".join(f"{r['traced'] / MIB:.1f}" for r in rows) + " MiB")
        sizes = [{line: size for line, size, _ in r["top"]} for r in (rows[0], rows[-1])]
        growth = sorted(((sizes[1].get(k, 0) - sizes[0].get(k, 0), k) for k in set(sizes[0]) | set(sizes[1])),
                        reverse=True)
        print("source lines whose traced memory grew most from the first to the last snapshot:")
        for n, k in growth[:top]:
            was, now = sizes[0].get(k, 0) / 1024, sizes[1].get(k, 0) / 1024
            print(f"  {n / 1024:+10,.1f} KiB  {k}  ({was:,.1f} -> {now:,.1f})")
        return 0
    first, last = rows[0], rows[-1]
    growth = sorted(((last.get(k, 0) - first.get(k, 0), k) for k in set(first) | set(last)), reverse=True)
    print(f"{len(rows)} counts, a minute apart; growth from the first to the last:")
    for n, k in growth[:top]:
        print(f"  {n:+10,d}  {k}  ({first.get(k, 0):,} -> {last.get(k, 0):,})")
    return 0


def soak(*, minutes: float, rate: int, interval_s: float, warmup_min: float, per_message: int,
         compression: str | None, objects: str | None = None, traced: str | None = None) -> int:
    from streams import settings as settings_mod
    from streams.adapters.processes import free_port
    from streams.adapters.topics import ensure_topics

    w = Workload(records_per_message=per_message)
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        from streams.adapters.broker import EmbeddedBroker

        broker = EmbeddedBroker()
        broker.start()
        bootstrap = broker.bootstrap
    tag = f"soak{int(time.time())}"
    tmp = Path(tempfile.mkdtemp(prefix="slo-stream-soak-"))
    (tmp / "slos.yaml").write_text(_specs_yaml(w))
    port = free_port()
    env = worker_env(bootstrap, tag, tmp / "slos.yaml", tmp, port)
    s = settings_mod.load(env)
    ensure_topics(bootstrap, s.topics, security=client_security())
    print(f"soak: {minutes:g} min at {rate:,} records/s ({rate / per_message:,.0f} messages/s of {per_message} "
          f"records, {w.services} services, {w.series()} series, event time = wall clock, "
          f"{compression or 'no'} compression); samples every {interval_s:g}s; warm-up {warmup_min:g} min")
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; broker {bootstrap}; "
          f"log {tmp / 'worker.log'}")
    log = open(tmp / "worker.log", "wb")  # noqa: SIM115
    argv = [sys.executable, "-m", "streams", "worker", "--loglevel", "warning"]
    if objects:
        # Diagnosis: the same worker counting its live Python objects by type every minute (gc),
        # appended to ``objects`` as JSON lines; `python -m bench.soak --compare FILE` says what grew.
        argv = [sys.executable, "-c", _COUNTED_WORKER.format(path=str(Path(objects).resolve()))]
    if traced:
        argv = [sys.executable, "-c", _TRACED_WORKER.format(path=str(Path(traced).resolve()),
                                                            warmup_s=warmup_min * 60 + 30)]
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/metrics"
    producer: Producer | None = None
    samples: list[Sample] = []
    try:
        deadline = time.monotonic() + 120
        while True:  # the worker answers /metrics and owns its partition
            try:
                if scrape(url).get("slo_stream_assigned_partitions", 0) >= 1:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {tmp / 'worker.log'}")
            time.sleep(0.5)
        producer = Producer(bootstrap, s.topic_playback, rate, per_message, w.services, compression).start()
        t0 = time.monotonic()
        end = t0 + minutes * 60
        next_at = t0
        print(f"{'t (s)':>6} {'RSS MiB':>8} {'heap':>6} {'anon':>6} {'file':>6} {'state':>6} {'broker':>7} "
              f"{'counted/s':>10} {'produced/s':>11} {'lag msgs':>9} {'behind':>7}")
        while True:
            now = time.monotonic()
            if now < next_at:
                time.sleep(min(next_at - now, 1.0))  # the sampling period, not a wait for a condition
                continue
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}; see {tmp / 'worker.log'}")
            m = scrape(url)
            smp = Sample(now - t0, vm_rss(proc.pid) or 0, vm_rss(broker.pid) if broker and broker.pid else None,
                         m.get("slo_stream_records_total", 0.0), m.get("slo_stream_messages_total", 0.0),
                         producer.sent_records, m.get("slo_stream_consumer_lag_messages", 0.0),
                         m.get("slo_stream_state_bytes", 0.0), mappings(proc.pid))
            prev = samples[-1] if samples else None
            samples.append(smp)
            if prev is not None:
                dt = smp.t - prev.t
                behind = producer.sent_messages - smp.taken
                print(f"{smp.t:6.0f} {smp.rss / MIB:8.1f} {_maps(smp)} {smp.state / MIB:6.1f} "
                      f"{(smp.broker_rss or 0) / MIB:7.0f} {(smp.counted - prev.counted) / dt:10,.0f} "
                      f"{(smp.produced - prev.produced) / dt:11,.0f} "
                      f"{smp.lag:9.0f} {behind:7.0f}", flush=True)
            else:
                print(f"{smp.t:6.0f} {smp.rss / MIB:8.1f} {_maps(smp)} {smp.state / MIB:6.1f} "
                      f"{(smp.broker_rss or 0) / MIB:7.0f}",
                      flush=True)
            if now >= end:
                break
            next_at += interval_s
    finally:
        if producer is not None:
            producer.stop()
        stop(proc)
        log.close()
        if broker is not None:
            broker.stop()
    return verdict(samples, warmup_s=warmup_min * 60, rate=rate, per_message=per_message,
                   errors=producer.errors if producer else [])


def _maps(smp: Sample) -> str:
    m = smp.maps or {}
    return " ".join(f"{m.get(k, 0) / MIB:6.1f}" for k in ("heap", "anon", "file"))


def verdict(samples: list[Sample], *, warmup_s: float, rate: int, per_message: int, errors: list[str]) -> int:
    after = [x for x in samples if x.t >= warmup_s] or samples
    first, last = after[0], after[-1]
    span = last.t - first.t
    counted = (last.counted - first.counted) / span if span else float("nan")
    produced = (last.produced - first.produced) / span if span else float("nan")
    rss_points = [(x.t, x.rss / MIB) for x in after]
    rss_slope = robust_slope_per_minute(rss_points)
    rss_ls = slope_per_minute(rss_points)
    lag_slope = slope_per_minute([(x.t, x.lag) for x in after])
    peak = max(x.rss for x in samples) / MIB
    # Holding the rate: counting what is produced, and the backlog not growing by more than 10 s of traffic.
    holds = (counted >= 0.98 * produced and produced >= 0.98 * rate
             and last.lag - first.lag <= 10 * rate / per_message)
    flat = rss_slope < 1.0
    print(f"after the {warmup_s / 60:g} min warm-up ({len(after)} samples over {span / 60:.1f} min):")
    print(f"  rate      produced {produced:,.0f} records/s (target {rate:,}), counted {counted:,.0f} records/s "
          f"({counted / produced:.1%} of produced); lag {first.lag:.0f} -> {last.lag:.0f} messages "
          f"(slope {lag_slope:+.1f}/min)")
    state_slope = robust_slope_per_minute([(x.t, x.state / MIB) for x in after])
    print(f"  memory    worker RSS {first.rss / MIB:.1f} -> {last.rss / MIB:.1f} MiB "
          f"({(last.rss - first.rss) / MIB:+.1f} MiB), slope {rss_slope:+.2f} MiB/min (Theil-Sen; least squares "
          f"{rss_ls:+.2f}), peak {peak:.1f} MiB over the whole run")
    print(f"  state     {first.state / MIB:.1f} -> {last.state / MIB:.1f} MiB of keys and values "
          f"(slope {state_slope:+.2f} MiB/min; it grows with event time until each bucket level's retention)")
    if first.maps and last.maps:
        def kind_slope(k: str) -> float:
            return robust_slope_per_minute([(x.t, (x.maps or {}).get(k, 0) / MIB) for x in after])

        kinds = ", ".join(f"{k} {first.maps[k] / MIB:.1f} -> {last.maps[k] / MIB:.1f} (slope {kind_slope(k):+.2f})"
                          for k in ("heap", "anon", "file", "other"))
        print(f"  mappings  resident MiB by kind: {kinds}; {first.maps['anon_n']} -> {last.maps['anon_n']} "
              f"anonymous mappings")
    if errors:
        print(f"  producer  errors: {errors}")
    print(f"verdict: the worker {'holds' if holds else 'does NOT hold'} the rate; memory is "
          f"{'flat' if flat else 'NOT flat'} (slope threshold 1 MiB/min)")
    return 0 if holds and flat and not errors else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to hold the rate (default 10)")
    ap.add_argument("--rate", type=int, default=50_000, help="records/s (default 50,000)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the verdict (default 2)")
    ap.add_argument("--records-per-message", type=int, default=500)
    ap.add_argument("--compression", choices=["gzip", "none"], default="gzip",
                    help="producer compression (default gzip: the in-memory broker keeps minutes of traffic)")
    ap.add_argument("--objects", metavar="FILE", help="diagnosis: the worker appends its live Python objects by "
                    "type, the sizes of the containers its libraries' objects hold, pymalloc's arenas and "
                    "blocks and glibc's heap (mallinfo2) to FILE every minute")
    ap.add_argument("--tracemalloc", metavar="FILE", help="diagnosis: after the warm-up the worker traces its "
                    "allocations and appends, every minute, the source lines holding most memory to FILE "
                    "(slows the worker down)")
    ap.add_argument("--compare", metavar="FILE", help="print what grew in an --objects or --tracemalloc FILE")
    args = ap.parse_args()
    if args.compare:
        return compare(args.compare)
    return soak(minutes=args.minutes, rate=args.rate, interval_s=args.interval,
                warmup_min=min(args.warmup, args.minutes / 2), per_message=args.records_per_message,
                compression=None if args.compression == "none" else args.compression, objects=args.objects,
                traced=args.tracemalloc)


if __name__ == "__main__":
    raise SystemExit(main())
