"""A producer with a bug, or an attacker, against one real worker on the real broker (issue 19's attacks 1-3).

One worker, a series limit of 1,000 per SLO and an idle time of 10 minutes (the defaults are 5,000 and
1 hour; smaller here to keep the test short), ``cluster=prod-*`` allow-listed. Real placements send
traffic throughout; then, in event time:

1. **memory**: 30,000 valid records of 30,000 distinct junk clusters, every one with a revision (the
   per-revision state grew without bound before), in batch messages;
2. **stall**: while the worker takes that burst, a thread asks ``/v1/gate`` and ``/metrics`` every
   100 ms: every request is answered (the latencies are reported; the p99 target is measured in bench/);
3. **lockout**: a new real placement arrives during the junk (allow-listed ``prod-us-2``: counted at
   once) and one not allow-listed (``edge-1``): refused while the junk is fresh, counted once the junk has
   been idle for the idle time.

Asserted from the worker's own metrics: state entries and RSS bounded, the refusals counted
(``series_limit`` dead letters = refused), a ticket-worthy refusal sample, the real placements counted
exactly (ground truth), and the worker still the same process.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from bench.hostile import Prober, rss_mib
from streams.adapters.processes import free_port
from streams.core import conventions as c
from tests.faults.helpers_input import alive, child_pid, report, scrape, total, try_scrape, wait_until
from tests.integration.harness import Deployment

pytestmark = pytest.mark.integration

LIMIT = 1000
IDLE_S = 600
JUNK = 30_000
PER_MESSAGE = 500
SLO = "license-service-availability"  # keeps cluster and platform: a new cluster is a new series
SERVICE = "license-service"
REAL = (("eu-west-1", "eu-west", "kubernetes"), ("dc-ams", "eu-west", "legacy"))


def message(records: list[dict]) -> tuple[bytes, bytes]:
    return SERVICE.encode(), orjson.dumps({"schema_version": c.SCHEMA_VERSION, "records": records})


def rec(ts: float, cluster: str, region: str = "eu-west", platform: str = "kubernetes", *, total: int = 10,
        errors: int = 0, revision: str | None = None) -> dict:
    r = {"ts": ts, "service": SERVICE, "cluster": cluster, "region": region, "platform": platform,
         "total": total, "errors": errors}
    if revision is not None:
        r["revision"] = revision
    return r


def real_traffic(t0: float, t1: float) -> list[dict]:
    """The real placements: one record of 10 requests per placement every 10 s of event time."""
    return [rec(t, cl, rg, pf) for t in range(int(t0), int(t1), 10) for cl, rg, pf in REAL]


def test_a_junk_burst_leaves_bounded_state_no_stall_and_no_lockout_of_real_placements(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path, partitions=1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = int(time.time()) // 60 * 60 - 3 * 3600  # event time: three hours ago, well behind the wall clock
    junk_at = t0 + 1800
    env = {"SLO_STREAM_WEB_PORT": str(port), "SLO_STREAM_MAX_SERIES_PER_SLO": str(LIMIT),
           "SLO_STREAM_SERIES_IDLE": str(IDLE_S), "SLO_STREAM_SERIES_ALLOW": "cluster=prod-*",
           "SLO_STREAM_STALE_AFTER": "1h", "SLO_STREAM_GATE_STALE_AFTER": "12h",
           "SLO_STREAM_GATE_MAX_EVALUATION_LAG": "12h"}
    with dep.worker(**env) as proc:
        pid = child_pid(proc)
        wait_until(lambda: try_scrape(f"{base}/metrics"), 90, "the worker's metrics", proc, dep.log_text)
        # The real placements for half an hour of event time.
        before = real_traffic(t0, junk_at)
        dep.produce([message(before[i:i + 300]) for i in range(0, len(before), 300)])
        wait_until(lambda: total(scrape(f"{base}/metrics")[1], c.M_RECORDS) >= len(before), 120,
                   "the real traffic counted", proc, dep.log_text)
        _, samples = scrape(f"{base}/metrics")
        rss0, entries0 = rss_mib(pid), total(samples, c.M_STATE_ENTRIES)

        # 1 + 2 + 3a: the junk burst (30 s of event time), with the real placements and a new
        # allow-listed and a new unlisted one in its midst, while the prober asks.
        junk = [rec(junk_at + i / 1000, f"junk-{i}", revision=f"r{i}") for i in range(JUNK)]
        during = real_traffic(junk_at, junk_at + 30)
        during += [rec(junk_at + 5 + i, "prod-us-2", "us-west", total=7) for i in range(20)]
        during += [rec(junk_at + 6 + i, "edge-1", "us-west", total=3) for i in range(20)]
        records = junk[:JUNK // 2] + during + junk[JUNK // 2:]
        prober = Prober(base)
        prober.start()
        t_burst = time.time()
        dep.produce([message(records[i:i + PER_MESSAGE]) for i in range(0, len(records), PER_MESSAGE)])
        sent = len(before) + len(records)

        def settled() -> dict | None:
            got = try_scrape(f"{base}/metrics")
            if got is None or total(got, c.M_RECORDS) + total(got, c.M_DEAD_LETTERS) < sent:
                return None
            return got

        samples = wait_until(settled, 300, "the burst taken", proc, dep.log_text)
        burst_s = time.time() - t_burst
        prober.stop.set()
        prober.join(15)
        rss1, entries1 = rss_mib(pid), total(samples, c.M_STATE_ENTRIES)
        refused = total(samples, c.M_SERIES_REFUSED, slo=SLO)
        series = total(samples, c.M_SERIES, slo=SLO)

        # 3b: the junk idle for longer than the idle time: the unlisted placement is counted now.
        after_at = junk_at + 30 + IDLE_S + 60
        after = real_traffic(after_at, after_at + 60) + [rec(after_at + i, "edge-1", "us-west", total=3)
                                                          for i in range(10)]
        dep.produce([message(after)])
        sent += len(after)
        samples = wait_until(settled, 120, "the later traffic taken", proc, dep.log_text)
        assert alive(pid) and child_pid(proc) == pid, "the worker restarted"

    def events(cluster: str, region: str, platform: str) -> float:
        return total(samples, c.M_SLI_EVENTS, slo=SLO, cluster=cluster, region="*", platform=platform)

    lat, scrapes = sorted(prober.latencies), sorted(prober.scrapes)
    p99 = lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")
    report(request,
           f"hostile producer: {JUNK:,} junk clusters in {burst_s:.1f} s; state entries {entries0:.0f} -> "
           f"{entries1:.0f}; RSS {rss0:.0f} -> {rss1:.0f} MiB; {series:.0f} series of {SLO} (limit {LIMIT}); "
           f"{refused:.0f} records refused; during the burst {len(lat)} gate requests answered, "
           f"p99 {p99 * 1e3:.0f} ms, "
           f"max {lat[-1] * 1e3 if lat else float('nan'):.0f} ms; {len(scrapes)} /metrics scrapes, max "
           f"{scrapes[-1] * 1e3 if scrapes else float('nan'):.0f} ms; {len(prober.failures)} failed")

    # Bounded: at most the limit's series (three bucket levels each, plus a chunk boundary), and the
    # revisions of refused records leave nothing behind.
    assert series <= LIMIT
    assert entries1 - entries0 <= 4 * LIMIT, (entries0, entries1)
    assert rss1 - rss0 < 150, (rss0, rss1)
    # Refused = dead-lettered series_limit, and the worker says which placements knock.
    assert refused == total(samples, c.M_DEAD_LETTERS, reason=c.REASON_SERIES_LIMIT) > 0
    assert total(samples, c.M_SERIES_REFUSED_RECENT, slo=SLO) > 0
    # No stall: every probe during the burst was answered.
    assert not prober.failures, prober.failures[:5]
    assert lat, "no probe ran during the burst"
    # No lockout, and exact counts for the real placements (ground truth).
    for cl, rg, pf in REAL:
        want = sum(r["total"] for r in before + during + after if r["cluster"] == cl)
        assert events(cl, rg, pf) == want, cl
    assert events("prod-us-2", "us-west", "kubernetes") == 7 * 20  # allow-listed: counted during the junk
    assert events("edge-1", "us-west", "kubernetes") == 3 * 10  # refused while the junk was fresh, then counted
