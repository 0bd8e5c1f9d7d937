"""What provisional alerts cost and how often they are wrong (issue 17), in process on the engine.

    python -m bench.provisional [--repeat 5] [--hours 2] [--seed 1]

1. **Cost**: the core benchmark's workload (bench/workload.py: 20 services, 160 series, 500 records per
   message, 20 messages per batch) fed *live* (the wall clock just after each batch's newest event time,
   so every batch is on a live partition) with provisional evaluation on and off, runs interleaved
   (off, on, off, on...); the medians and their ratio (target >= 0.8).
2. **Retractions**: 30 series (10 services x 3 clusters, 200 requests/s each, 0.05% errors) with 8 hours of
   history replayed, then ``--hours`` of live traffic with random incidents (0.5% to 100% errors for 30 s
   to 10 min), fed one message per service and second. Once with every record in order, once with 5% of
   the records arriving late by up to the allowed lateness (uniform in 1..115 s of 120 s), and once with
   5% of the records' successes late that way while their errors arrive on time (the case that makes the
   provisional evaluation see too many errors): provisional alerts fired, confirmed and retracted, and
   the final pages (the same in every run: all late records arrive within the allowed lateness).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections import Counter

import orjson

from bench.workload import Workload
from streams.core import conventions as c
from streams.core.engine import Engine, EngineConfig
from streams.core.model import DAY, HOUR, Indicator, Severity, SliKind, Slo, default_policy
from streams.core.provisional import Outcome
from streams.core.wire.alert import Alert

LATENESS = 120


def core_live(w: Workload, msgs: list[tuple[bytes, bytes]], *, provisional: bool) -> dict[str, float]:
    """One run of the core workload fed live; records/s and evaluations."""
    engine = Engine(w.slos(), {}, EngineConfig(allowed_lateness_s=10, provisional=provisional))
    engine.assign({0})
    newest = [max(r["ts"] for r in orjson.loads(v)["records"]) for _, v in msgs]
    batch = 20
    gc.collect()
    t0 = time.perf_counter()
    records = evaluations = early = 0
    for i in range(0, len(msgs), batch):
        part = [(k, v, i + j) for j, (k, v) in enumerate(msgs[i:i + batch])]
        now = max(newest[i:i + batch]) + 0.5
        res = engine.process(0, part, now=now)
        res.absorb(engine.provisional(0, now=now))
        engine.commit(res)
        records += res.records
        evaluations += res.evaluations
        early += res.provisional[Outcome.FIRED]
    wall = time.perf_counter() - t0
    return {"records_per_s": records / wall, "evaluations": evaluations, "provisional_fired": early}


def bench_cost(repeat: int) -> None:
    w = Workload()
    msgs = w.build()
    off: list[dict[str, float]] = []
    on: list[dict[str, float]] = []
    for _ in range(repeat):
        off.append(core_live(w, msgs, provisional=False))
        on.append(core_live(w, msgs, provisional=True))
    r_off = statistics.median(x["records_per_s"] for x in off)
    r_on = statistics.median(x["records_per_s"] for x in on)
    print(f"cost: core workload fed live ({len(msgs):,} messages x {w.records_per_message} records, {w.series()} "
          f"series), median of {repeat} interleaved runs each")
    print(f"  provisional off {r_off:>12,.0f} records/s ({off[0]['evaluations']:,.0f} evaluations)")
    print(f"  provisional on  {r_on:>12,.0f} records/s ({on[0]['evaluations']:,.0f} evaluations, "
          f"{on[0]['provisional_fired']:,.0f} provisional alerts fired)")
    pairs = ", ".join(f"{a['records_per_s'] / b['records_per_s']:.2f}" for a, b in zip(on, off, strict=True))
    print(f"  ratio on / off = {r_on / r_off:.3f}  (per interleaved pair: {pairs})")


# ---- retractions -----------------------------------------------------------------------------------

SERVICES = [f"svc-{i:02d}" for i in range(10)]
CLUSTERS = [("eu-west-1", "eu-west"), ("us-east-1", "us-east"), ("ap-south-1", "ap-south")]
RATE = 200  # requests per second per series
BASE_ERRORS = 0.0005
RATIOS = [0.005, 0.01, 0.02, 0.05, 0.2, 1.0]
DURATIONS = [30, 60, 120, 300, 600]


def slos() -> list[Slo]:
    return [Slo(name=f"{s}-availability", service=s, objective=0.999, window_s=30 * DAY,
                indicator=Indicator(f"{s}-errors", SliKind.RATIO), policy=default_policy(30 * DAY)) for s in SERVICES]


def traffic(rng: random.Random, start: int, seconds: int, incidents: int
            ) -> tuple[dict[tuple[str, str], list[tuple[int, int, float]]], list[tuple[str, str, int, int, float]]]:
    """Per (service, cluster): each second's (total, errors, ts); and the incidents placed."""
    placed = []
    for _ in range(incidents):
        s, (cl, _) = rng.choice(SERVICES), rng.choice(CLUSTERS)
        placed.append((s, cl, start + rng.randrange(seconds), rng.choice(DURATIONS), rng.choice(RATIOS)))
    out: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
    for s in SERVICES:
        for cl, _ in CLUSTERS:
            mine = [(t0, d, r) for (ps, pc, t0, d, r) in placed if (ps, pc) == (s, cl)]
            rows = []
            for t in range(start, start + seconds):
                ratio = BASE_ERRORS
                for t0, d, r in mine:
                    if t0 <= t < t0 + d:
                        ratio = max(ratio, r)
                errors = sum(1 for _ in range(RATE) if rng.random() < ratio) if ratio < 0.05 else \
                    round(RATE * ratio)
                rows.append((RATE, errors, t + rng.random() * 0.9))
            out[(s, cl)] = rows
    return out, placed


def messages(rows: dict[tuple[str, str], list[tuple[int, int, float]]], start: int, seconds: int,
             late: float, rng: random.Random, *, successes_only: bool = False) -> list[tuple[int, bytes, bytes]]:
    """One message per service and second of arrival: (arrival second, key, value); with ``late`` of the
    records delayed by 1..LATENESS-5 s (``successes_only``: of those, only the successes are delayed, the
    errors of the same second arrive on time: the case that makes a provisional evaluation see too many)."""
    arrive: dict[tuple[int, str], list[dict[str, object]]] = {}
    region = dict(CLUSTERS)
    for (s, cl), rs in rows.items():
        for i, (total, errors, ts) in enumerate(rs):
            t = start + i
            rec = {"ts": ts, "service": s, "cluster": cl, "region": region[cl], "platform": "kubernetes"}
            if late and rng.random() < late:
                delay = rng.randint(1, LATENESS - 5)
                if successes_only:
                    if errors:
                        arrive.setdefault((t, s), []).append({**rec, "total": errors, "errors": errors})
                    if total > errors:
                        arrive.setdefault((t + delay, s), []).append({**rec, "total": total - errors, "errors": 0})
                    continue
                t += delay
            arrive.setdefault((t, s), []).append({**rec, "total": total, "errors": errors})
    out = []
    for (t, s) in sorted(arrive):
        recs = arrive[(t, s)]
        out.append((t, s.encode(), orjson.dumps({"schema_version": c.SCHEMA_VERSION, "records": recs})))
    return out


def run_live(history: list[tuple[int, bytes, bytes]], live: list[tuple[int, bytes, bytes]]
             ) -> tuple[Counter[str], list[Alert]]:
    engine = Engine(slos(), {}, EngineConfig(allowed_lateness_s=LATENESS))
    engine.assign({0})
    off = 0
    far = history[-1][0] + 30 * DAY
    for i in range(0, len(history), 2000):
        part = history[i:i + 2000]
        res = engine.process(0, [(k, v, off + j) for j, (_, k, v) in enumerate(part)], now=far)
        engine.commit(res)
        off += len(part)
    outcomes: Counter[str] = Counter()
    alerts: list[Alert] = []
    by_second: dict[int, list[tuple[bytes, bytes]]] = {}
    for t, k, v in live:
        by_second.setdefault(t, []).append((k, v))
    for t in sorted(by_second):
        part = by_second[t]
        now = t + 1.0
        res = engine.process(0, [(k, v, off + j) for j, (k, v) in enumerate(part)], now=now)
        res.absorb(engine.provisional(0, now=now))
        engine.commit(res)
        off += len(part)
        outcomes.update(res.provisional)
        alerts += res.alerts
    return outcomes, alerts


def bench_retractions(hours: float, seed: int) -> None:
    rng = random.Random(seed)
    start = 1_700_000_000 // 3600 * 3600
    hist_s, live_s = 8 * HOUR, int(hours * HOUR)
    hist_rows, _ = traffic(rng, start, hist_s, 0)
    live_rows, placed = traffic(rng, start + hist_s, live_s, incidents=int(40 * hours))
    history = messages(hist_rows, start, hist_s, 0.0, rng)
    print(f"retractions: {len(SERVICES) * len(CLUSTERS)} series, {hist_s // 3600} h of history, {hours:g} h live with "
          f"{len(placed)} incidents, allowed lateness {LATENESS}s")
    finals: list[list[tuple[str, str, int]]] = []
    for name, late, biased in (("in order", 0.0, False), ("5% late by up to the allowed lateness", 0.05, False),
                               ("5% late, only their successes (errors on time)", 0.05, True)):
        live = messages(live_rows, start + hist_s, live_s, late, random.Random(seed + 1), successes_only=biased)
        t0 = time.perf_counter()
        outcomes, alerts = run_live(history, live)
        final = [(a.dedup_key, str(a.state), a.ts) for a in alerts if not a.provisional]
        finals.append(final)
        pages = [a for a in alerts if a.severity is Severity.PAGE]
        prov_pages = [a for a in pages if a.provisional and a.reason is None]
        retracted_pages = [a for a in pages if a.reason == "retracted"]
        print(f"  {name}: provisional alerts fired {outcomes[Outcome.FIRED]}, confirmed "
              f"{outcomes[Outcome.CONFIRMED]}, retracted {outcomes[Outcome.RETRACTED]}; of them pages: fired "
              f"{len(prov_pages)}, retracted {len(retracted_pages)}; final pages "
              f"{sum(1 for a in pages if not a.provisional and a.firing)} ({time.perf_counter() - t0:.0f}s)")
    same = all(f == finals[0] for f in finals)
    print(f"  final alerts identical in every run: {same}" + ("" if same else
          f" ({', '.join(str(len(f)) for f in finals)}; records arriving behind a final step change it: expected)"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs of the cost benchmark (default 5)")
    ap.add_argument("--hours", type=float, default=2.0, help="live hours of the retraction benchmark (default 2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=["cost", "retractions"])
    args = ap.parse_args()
    if args.only != "retractions":
        bench_cost(args.repeat)
    if args.only != "cost":
        bench_retractions(args.hours, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
