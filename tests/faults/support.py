"""What the fault tests share: real processes (worker, notifier, kube bridge), polling with deadlines,
Kafka read-backs, the ground truth and the uninterrupted run they are compared with.

The "uninterrupted run" is the pure :class:`~streams.core.engine.Engine` fed in-process with the very
messages the broker holds (read back per partition, with their offsets): the same code a worker runs,
minus Kafka, Faust, crashes and restarts. A worker that survived faults must end where it ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.adapters.processes import stop_group
from streams.adapters.specfiles import load_specs
from streams.core import conventions as c
from streams.core.burnrate import BurnEvaluation
from streams.core.engine import Engine, EngineConfig
from streams.core.model import SliKind, Slo
from streams.demo.pagerduty_receiver import PagerDutyReceiver
from streams.demo.traffic import Outage, TrafficPlan
from tests.integration.harness import ROOT, Deployment

T = TypeVar("T")

LONG = os.environ.get("SLO_STREAM_FAULTS_LONG", "").strip() not in ("", "0")
ROUTING_KEY = "R0UTING-KEY-faults-5e1d"
SLO_PAGE = "playback-api-availability"
HOUR = 3600


def run_seed() -> int:
    """The run's seed: ``SLO_STREAM_FAULTS_SEED`` to replay a run, else fresh each run (printed in the
    report, so any run can be replayed)."""
    raw = os.environ.get("SLO_STREAM_FAULTS_SEED", "").strip()
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)


# ---- the report -----------------------------------------------------------------------------------------

REPORT_PATH = ROOT / "build" / "faults-report.txt"


@dataclass
class Report:
    """Figures each fault test records (kills, recovery times, counts compared, timelines), printed at
    the end of the session and written to ``build/faults-report.txt`` (rewritten after every test,
    so an interrupted run keeps what it measured)."""

    sections: dict[str, list[str]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def section(self, title: str) -> list[str]:
        return self.sections.setdefault(title, [])

    def text(self) -> str:
        head = [f"slo-stream fault suite, {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.started))}, "
                f"mode {'long' if LONG else 'default'} (SLO_STREAM_FAULTS_LONG), "
                f"{time.time() - self.started:.0f}s so far"]
        body = [f"\n== {title}\n" + "\n".join(f"  {line}" for line in lines)
                for title, lines in self.sections.items()]
        return "\n".join(head + body) + "\n"

    def write(self) -> Path:
        REPORT_PATH.parent.mkdir(exist_ok=True)
        REPORT_PATH.write_text(self.text(), encoding="utf-8")
        return REPORT_PATH


REPORT = Report()


# ---- polling ------------------------------------------------------------------------------------------


def wait_until(cond: Callable[[], T], *, timeout_s: float, what: str,
               alive: Mapping[str, subprocess.Popen[bytes]] | None = None,
               logs: Callable[[], str] | None = None, every_s: float = 0.1) -> T:
    """Poll ``cond`` until it returns something truthy (returned) or ``timeout_s`` passes (fails,
    naming ``what``). A process of ``alive`` that exits meanwhile fails at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = cond()
        if got:
            return got
        for name, proc in (alive or {}).items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} while waiting for {what}\n"
                                     + (logs() if logs else ""))
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n" + (logs() if logs else ""))
        time.sleep(every_s)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


# ---- Kafka read-backs -----------------------------------------------------------------------------------


class GroupOffsets:
    """Committed offsets of a consumer group, through one admin connection kept open."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.group = group
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> dict[int, int]:
        try:
            got = self.admin.list_group_offsets({self.group: self.tps}).get(self.group, {})
        except Exception:  # no such group yet, or a rebalance in progress: nothing committed to show
            got = {}
        return {tp.partition: max(0, got[tp].offset) if tp in got else 0 for tp in self.tps}

    def total(self) -> int:
        return sum(self.committed().values())

    def close(self) -> None:
        self.admin.close()


@dataclass(frozen=True)
class Msg:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def read_topic(bootstrap: str, topic: str, partitions: int, *, timeout_s: float = 30.0) -> list[Msg]:
    """Everything ``topic`` holds now (per partition, in offset order).

    Tansu 0.6 answers a ListOffsets for the log end with the base offset of the last record batch
    plus one, not the last offset plus one (measured: 5 records in 2 batches, end offset 2). So the
    reported end is only a lower bound: read to it, then on until a fetch brings nothing more.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=64 * 1024 * 1024)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Msg] = []
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {timeout_s:.0f}s")
            at_end = all(consumer.position(tp) >= ends[tp] for tp in tps)
            got = consumer.poll(timeout_ms=1000 if at_end else 300)
            for tp, records in got.items():
                out += [Msg(tp.partition, r.offset, r.key, r.value) for r in records]
            if at_end and not got:
                break
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()


def read_json(bootstrap: str, topic: str, partitions: int) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in read_topic(bootstrap, topic, partitions)]


class PacedProducer(threading.Thread):
    """Produces ``messages`` in order at ``per_second``, in a thread (one request in flight: a retry
    cannot reorder). With ``gated``, only as far as :meth:`release` allows (pacing restarts at each
    release); :attr:`sent` counts what has been flushed to the broker."""

    def __init__(self, bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]], *,
                 per_second: float, gated: bool = False) -> None:
        super().__init__(name="paced-producer", daemon=True)
        self.bootstrap, self.topic, self.messages, self.per_second = bootstrap, topic, messages, per_second
        self.allowed = 0 if gated else len(messages)
        self.sent = 0
        self.error: BaseException | None = None
        self.finished_at: float | None = None
        self._gate = threading.Condition()
        self._stopped = False

    def release(self, upto: int) -> None:
        with self._gate:
            self.allowed = max(self.allowed, min(upto, len(self.messages)))
            self._gate.notify_all()

    def stop(self) -> None:
        with self._gate:
            self._stopped = True
            self._gate.notify_all()

    def run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                     max_in_flight_requests_per_connection=1, max_request_size=16 * 1024 * 1024)
            t0, n = time.monotonic(), 0
            for i, (key, value) in enumerate(self.messages):
                if i >= self.allowed:
                    producer.flush()
                    self.sent = i
                    with self._gate:
                        self._gate.wait_for(lambda i=i: self.allowed > i or self._stopped)
                    if self._stopped:
                        break
                    t0, n = time.monotonic(), 0
                producer.send(self.topic, key=key, value=value)
                n += 1
                if n % 5 == 0:
                    producer.flush()
                    self.sent = i + 1
                    time.sleep(max(0.0, t0 + n / self.per_second - time.monotonic()))
            producer.flush()
            self.sent = len(self.messages) if not self._stopped else self.sent
            producer.close()
            self.finished_at = time.monotonic()
        except BaseException as exc:
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the producer failed: {self.error!r}")


# ---- metrics ----------------------------------------------------------------------------------------------


def scrape(port: int) -> list[Any] | None:
    """The samples of a worker's /metrics; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def partitions_of(port: int) -> tuple[int, set[int]] | None:
    """A worker's ``slo_stream_assigned_partitions`` and the partitions its lag gauge names (those
    assigned and fetched at least once); None while it does not answer."""
    samples = scrape(port)
    if samples is None:
        return None
    assigned = [int(s.value) for s in samples if s.name == c.M_ASSIGNED_PARTITIONS]
    lagging = {int(s.labels[c.L_PARTITION]) for s in samples if s.name == c.M_CONSUMER_LAG}
    return (assigned[0] if assigned else 0), lagging


def processed_all(port: int, partitions: int) -> bool:
    """The worker behind ``port`` has every playback partition and has processed each as far as its
    last fetch showed: its lag gauge (log end minus the engine's meta offset + 1, i.e. counted and
    written) is 0 on all. A wait before the real check (the final statuses), not instead of it: the
    log end is the worker's last view. Not the group's committed offsets either: after an offset hole
    Faust's commits can crawl behind, one offset per commit interval, long after all is processed."""
    samples = scrape(port)
    if samples is None:
        return False
    lags = {s.labels[c.L_PARTITION]: s.value for s in samples if s.name == c.M_CONSUMER_LAG}
    return len(lags) == partitions and not any(lags.values())


# ---- processes -----------------------------------------------------------------------------------------


def env_for(dep: Deployment, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLO_STREAM_PAGERDUTY") and k != "KUBERNETES_SERVICE_HOST"}
    env.update(dep.env)
    env.update(extra)
    return env


@contextlib.contextmanager
def notifier(dep: Deployment, receiver: PagerDutyReceiver, log: Path, *,
             timeout_s: float = 2.0) -> Iterator[subprocess.Popen[bytes]]:
    """The real notifier process (``python -m streams notifier``) delivering to ``receiver``."""
    env = env_for(dep, SLO_STREAM_PAGERDUTY_URL=receiver.url, SLO_STREAM_PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
                  SLO_STREAM_PAGERDUTY_TIMEOUT=str(timeout_s), SLO_STREAM_NOTIFIER_METRICS_PORT="0")
    with open(log, "ab") as out:
        proc = subprocess.Popen(["timeout", "-k", "10", "900", sys.executable, "-m", "streams", "notifier"],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)


@contextlib.contextmanager
def kube_bridge(dep: Deployment, kubeconfig: str, log: Path, *, cluster: str, namespace: str,
                **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """The real kube bridge process (``python -m streams kube-bridge``) against a (fake) API server."""
    env = env_for(dep, **extra)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["timeout", "-k", "10", "900", sys.executable, "-m", "streams", "kube-bridge", "--cluster", cluster,
             "--namespace", namespace, "--kubeconfig", kubeconfig],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)


# ---- scenarios -----------------------------------------------------------------------------------------


def burn_scenario(*, healthy_before_s: int = 65 * 60, outage_s: int = 10 * 60, after_s: int = 40 * 60,
                  ago_s: int = 3 * HOUR, burning: tuple[tuple[str, str], ...] = (("playback-api", "eu-west-1"),),
                  ) -> TrafficPlan:
    """An hour of healthy traffic (enough events for the 1h window to page), a 100% outage of each of
    ``burning`` (service, Kubernetes cluster; default playback-api in eu-west-1), then healthy again
    long enough for the page to resolve: the 6h+30m condition holds until the 30m window has cleared,
    then the 5 min hold, then the 2 min allowed lateness (the page fires 30 s into a 10 min outage
    and resolves 35 min after it ends; the ticket, 1d+2h, stays open). Event time in the past
    (``ago_s`` before now), so nothing waits on the wall clock."""
    start = int(time.time()) // 10 * 10 - ago_s
    outages = tuple(Outage(service, start_s=healthy_before_s, end_s=healthy_before_s + outage_s,
                           cluster=cluster, platform="kubernetes") for service, cluster in burning)
    return TrafficPlan(start_ts=start, duration_s=healthy_before_s + outage_s + after_s, outages=outages,
                    requests_per_10s=100)


def scenario_messages(scenario: TrafficPlan) -> list[tuple[bytes, bytes]]:
    return [(k, v) for _, k, v in scenario.messages()]


def page_key(cluster: str = "eu-west-1", region: str = "eu-west", platform: str = "kubernetes", *,
             slo: str = SLO_PAGE) -> str:
    return c.dedup_key(c.series_key(slo, cluster, region, platform), "page")


# ---- the uninterrupted run and the ground truth -----------------------------------------------------------


@functools.cache
def _specs() -> tuple[Slo, ...]:
    return tuple(load_specs(ROOT / "alerts" / "slos"))


def specs() -> list[Slo]:
    """The SLOs of alerts/slos (parsed once per session)."""
    return list(_specs())


@dataclass
class Uninterrupted:
    """The pure engine over the messages the broker holds: the alerts and final statuses a worker
    that never failed would publish."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)  # series -> status record

    @classmethod
    def run(cls, dep: Deployment, messages: list[Msg], *, batch: int = 50) -> Uninterrupted:
        s = dep.settings
        engine = Engine(specs(), {}, EngineConfig(step_s=s.step_s, allowed_lateness_s=s.allowed_lateness_s,
                                                   max_future_s=s.max_future_s,
                                                   max_series_per_slo=s.max_series_per_slo))
        out = cls()
        last: dict[str, BurnEvaluation] = {}
        now = time.time()
        for p in sorted({m.partition for m in messages}):
            mine = [(m.key, m.value, m.offset) for m in messages if m.partition == p]
            engine.assign({p})
            for i in range(0, len(mine), batch):
                res = engine.process(p, mine[i:i + batch], now=now)
                out.alerts += [a.to_json() for a in res.alerts]
                engine.commit(res)
                last.update(res.statuses)
        out.statuses = {series: engine.read.status(ev, now=now).to_json() for series, ev in last.items()}
        return out


# Fields of a status record that follow from the data alone (not when or by whom it was published).
STATUS_FIELDS = ("evaluated_at", "good_total", "burn_rates", "error_budget_remaining", "conditions", "alerts")


def statuses_caught_up(bootstrap: str, topic: str, partitions: int,
                       expected: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]] | None:
    """The final statuses on ``topic`` once every series of ``expected`` (the uninterrupted run's)
    has one evaluated at least as far; None before."""
    got = final_statuses(read_json(bootstrap, topic, partitions))
    done = set(got) == set(expected) and all(got[k]["evaluated_at"] >= expected[k]["evaluated_at"] for k in got)
    return got if done else None


def final_statuses(values: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest evaluation per series on ``slo.status`` (published at least once: every copy of
    it must say the same)."""
    newest: dict[str, dict[str, Any]] = {}
    for v in values:
        cur = newest.get(v["series"])
        if cur is None or v["evaluated_at"] > cur["evaluated_at"]:
            newest[v["series"]] = v
    for v in values:
        cur = newest[v["series"]]
        if v["evaluated_at"] == cur["evaluated_at"]:
            assert pick(v) == pick(cur), f"two different statuses of {v['series']} at {v['evaluated_at']}"
    return newest


def pick(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: status[k] for k in STATUS_FIELDS}


def ground_truth(slos: list[Slo], produced: list[tuple[bytes, bytes]], series: str, before: int) -> tuple[int, int]:
    """(bad, total) of ``series`` over every produced record with event time before ``before``, summed
    straight from the scenario's records (the 30-day window holds the whole scenario)."""
    name, cluster, region, platform = c.split_series_key(series)
    slo = next(s for s in slos if s.name == name)
    want = {"cluster": cluster, "region": region, "platform": platform}
    bad = total = 0
    for _, value in produced:
        for r in orjson.loads(value)["records"]:
            if r["service"] != slo.service or r["ts"] >= before:
                continue
            if any(d in slo.group_by and r[d] != want[d] for d in c.DIMENSIONS):
                continue
            total += r["total"]
            if slo.indicator.kind is SliKind.THRESHOLD:
                assert slo.indicator.latency_threshold_ms is not None
                bad += r["total"] if r["latency_ms"] > slo.indicator.latency_threshold_ms else 0
            else:
                bad += r["errors"]
    return bad, total


def chains(alerts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Alert records per dedup key, in topic order, with re-publications of the same change
    (at-least-once: byte-identical, back to back) folded into one."""
    out: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        mine = out.setdefault(a["dedup_key"], [])
        if not mine or mine[-1] != a:
            mine.append(a)
    return out


def pd_actions(receiver: PagerDutyReceiver) -> dict[str, list[str]]:
    """Accepted PagerDuty events per dedup key, in arrival order."""
    out: dict[str, list[str]] = {}
    for body in receiver.accepted():
        out.setdefault(body["dedup_key"], []).append(body["event_action"])
    return out


def incidents(actions: list[str]) -> list[str]:
    """Fold repeats: ``trigger, trigger, resolve`` is one incident (PagerDuty dedups a trigger on an
    open incident and a resolve of a resolved one); a trigger after a resolve opens a second."""
    out: list[str] = []
    for a in actions:
        if not out or out[-1] != a:
            out.append(a)
    return out


def expected_actions(chain: list[dict[str, Any]]) -> list[str]:
    return ["trigger" if a["state"] == "firing" else "resolve" for a in chain]
