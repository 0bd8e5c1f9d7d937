"""The live alerting path, end to end, with real processes: used by tests/integration/test_livepath.py
and bench/detection.py.

On a :class:`~tests.integration.harness.Deployment` it starts

- a real worker (``SLO_STREAM_ALLOWED_LATENESS`` configurable, its web server on a free port);
- the notifier (``python -m streams notifier``) delivering ``slo.alerts`` to a local
  :class:`~streams.demo.pagerduty_receiver.PagerDutyReceiver`;
- a real Prometheus scraping the worker every second, evaluating the rules generated from the SLO specs
  every second, and alerting to
- a real Alertmanager whose config is generated for the same receiver, with routing keys in files;

and a producer thread writing live playback-api traffic (event time = wall clock): every ``interval_s``
one batch message with one pre-aggregated record per placement, healthy until :meth:`LivePath.start_outage`,
then 100% errors for the outage placement. :meth:`LivePath.burn_true` computes, from what was produced,
the moment a page condition of the SLO (Workbook multi-window multi-burn-rate) became true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson
from kafka import KafkaProducer

from streams.adapters.processes import free_port, stop_group
from streams.adapters.specfiles import load_specs
from streams.core import conventions as c
from streams.core.model import Severity, Slo
from streams.demo.pagerduty_receiver import PagerDutyReceiver, Received
from streams.render.alertmanager import RECEIVER_PAGE, RECEIVER_TICKET
from streams.render.outputs import ALERTMANAGER_FILE, RULES_FILE, alert_files
from streams.render.prometheus import DEFAULT_LIVENESS, Liveness
from tests.integration.harness import ROOT, Deployment

SERVICE = "playback-api"
SLO_NAME = "playback-api-availability"
PLACEMENTS: tuple[tuple[str, str, str], ...] = (
    ("eu-west-1", "eu-west", "kubernetes"),
    ("us-east-1", "us-east", "kubernetes"),
    ("dc-ams", "eu-west", "legacy"),
)
OUTAGE = PLACEMENTS[0]
NOTIFIER_KEY = "R0UTING-KEY-notifier-4b1e"
AM_PAGE_KEY = "R0UTING-KEY-am-page-8c2d"
AM_TICKET_KEY = "R0UTING-KEY-am-ticket-0f6a"
# The second Prometheus + Alertmanager (LivePath.production): a common production configuration.
PROD_PAGE_KEY = "R0UTING-KEY-prod-page-51aa"
PROD_TICKET_KEY = "R0UTING-KEY-prod-ticket-77c0"
PROD_SCRAPE_S, PROD_EVALUATION_S, PROD_GROUP_WAIT_S = 15, 60, 30
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def missing_binaries() -> str | None:
    """Why the live path cannot run here, or None."""
    missing = [name for name, path in (("prometheus", PROMETHEUS), ("prometheus-alertmanager", ALERTMANAGER))
               if path is None]
    if missing:
        return (f"{' and '.join(missing)} not installed "
                "(apt-get install -y --no-install-recommends prometheus prometheus-alertmanager)")
    return None


def deployment_or_skip(kafka_bootstrap: str, tmp: Path) -> Deployment:
    """A test's deployment for the live path; the test is skipped where Prometheus or Alertmanager is missing."""
    import pytest

    reason = missing_binaries()
    if reason:
        pytest.skip(reason)
    return Deployment.create(kafka_bootstrap, tmp)


@dataclass(frozen=True)
class Produced:
    ts: float  # event time = wall clock when built
    cluster: str
    region: str
    platform: str
    total: int
    errors: int


@dataclass
class BurnTrue:
    at: float  # event time of the record that made the condition true
    condition: str  # e.g. "1h+5m > 14.4"
    long_ratio: float
    short_ratio: float
    long_events: int


def page_key(placement: tuple[str, str, str] = OUTAGE) -> str:
    return c.dedup_key(c.series_key(SLO_NAME, *placement), "page")


def burn_true(slo: Slo, records: list[Produced], placement: tuple[str, str, str]) -> BurnTrue | None:
    """The first moment a page condition of ``slo`` holds in ``records`` of ``placement``.

    The Workbook's multi-window multi-burn-rate test, as the stream and the generated rules apply it:
    over the long window **and** the short window ending at a record's event time (that record
    included), the error ratio divided by the error budget exceeds the condition's factor, and the long
    window holds at least ``slo.min_events`` events. Records come at discrete times, so the condition
    becomes true at the event time of the record that tips it.
    """
    mine = sorted((r for r in records if (r.cluster, r.region, r.platform) == placement), key=lambda r: r.ts)
    pages = [w for w in slo.policy.windows if w.severity is Severity.PAGE]
    budget = slo.error_budget

    def sums(end: float, window_s: int) -> tuple[int, int]:
        inside = [r for r in mine if end - window_s < r.ts <= end]
        return sum(r.errors for r in inside), sum(r.total for r in inside)

    for rec in mine:
        if rec.errors == 0:
            continue  # no new errors: no condition can become true at this record
        for w in sorted(pages, key=lambda w: (w.long_s, w.factor)):
            bad_l, tot_l = sums(rec.ts, w.long_s)
            bad_s, tot_s = sums(rec.ts, w.short_s)
            if not tot_l or not tot_s:
                continue
            lr, sr = bad_l / tot_l, bad_s / tot_s
            if lr / budget > w.factor and sr / budget > w.factor and tot_l >= slo.min_events:
                cond = f"{_duration(w.long_s)}+{_duration(w.short_s)} > {w.factor:g}"
                return BurnTrue(rec.ts, cond, lr, sr, tot_l)
    return None


def _duration(s: int) -> str:
    return f"{s // 3600}h" if s % 3600 == 0 else f"{s // 60}m"


@dataclass
class LivePath:
    """A context manager: everything started on enter, stopped on exit (reverse order)."""

    dep: Deployment
    allowed_lateness_s: int = 120
    interval_s: float = 0.5
    requests_per_s: int = 2000  # per placement
    placements: tuple[tuple[str, str, str], ...] = PLACEMENTS
    outage: tuple[str, str, str] = OUTAGE
    receiver: PagerDutyReceiver = field(default_factory=PagerDutyReceiver)
    # Scrape the notifier too (its slo_stream_notifier_consuming gauge): with it, Prometheus sees the
    # streaming path alive and the generated Alertmanager config mutes the fallback's burn alerts
    # (docs/fallback.md). Without it (the detection benchmark), both paths page.
    scrape_notifier: bool = False
    # Share of the outage placement's requests that fail (1.0: a total outage; 0.02: a 20x burn at 99.9%).
    outage_ratio: float = 1.0
    # Also a second Prometheus (15 s scrapes, 1 m rule evaluation) and Alertmanager (30 s group_wait),
    # paging with their own routing keys: a common production configuration side by side.
    production: bool = False
    worker_env: dict[str, str] = field(default_factory=dict)
    liveness: Liveness = DEFAULT_LIVENESS
    notifier_port: int = 0
    produced: list[Produced] = field(default_factory=list)
    onset: float | None = None
    started_at: float = 0.0
    worker_port: int = 0
    prom_port: int = 0
    am_port: int = 0
    prod_prom_port: int = 0
    prod_am_port: int = 0
    _procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _outage_on: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _producer_error: BaseException | None = None

    def __post_init__(self) -> None:
        self.tmp = self.dep.tmp
        self.slos = load_specs(ROOT / "alerts" / "slos")
        self.slo = next(s for s in self.slos if s.name == SLO_NAME)

    # ---- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> LivePath:
        reason = missing_binaries()
        if reason:
            raise RuntimeError(reason)
        self.started_at = time.time()
        try:
            self.receiver.start()
            self._start_worker()
            self._start_notifier()
            self._start_alertmanager()
            self._start_prometheus()
            if self.production:
                self.prod_am_port = self._start_alertmanager("prod", PROD_PAGE_KEY, PROD_TICKET_KEY,
                                                             group_wait_s=PROD_GROUP_WAIT_S)
                self.prod_prom_port = self._start_prometheus("prod", self.prod_am_port, scrape_s=PROD_SCRAPE_S,
                                                             evaluation_s=PROD_EVALUATION_S)
            self._thread = threading.Thread(target=self._produce, name="live-producer", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for _name, proc, log in reversed(self._procs):
            stop_group(proc)
            log.close()
        self._procs.clear()
        with contextlib.suppress(AttributeError):  # never started
            self.receiver.stop()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self._procs.append((name, proc, log))
        return proc

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def check_alive(self) -> None:
        for name, proc, _ in self._procs:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
        if self._producer_error is not None:
            raise AssertionError(f"the producer failed: {self._producer_error!r}")

    def _env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.dep.env)
        env.update(extra)
        return env

    def _start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        """A worker of the group (``name`` also names its log and its data directory)."""
        self.worker_port = free_port()
        env = self._env(SLO_STREAM_WEB_PORT=str(self.worker_port),
                        SLO_STREAM_DATADIR=str(self.tmp / f"{name}-data"),
                        SLO_STREAM_ALLOWED_LATENESS=str(self.allowed_lateness_s), **self.worker_env)
        return self._spawn(name, ["timeout", "-k", "10", "900", sys.executable, "-m", "streams", "worker"], env)

    def kill_worker(self) -> None:
        """SIGKILL the worker's process group (no shutdown: what it had not written is lost)."""
        import signal

        for entry in [e for e in self._procs if e[0] == "worker"]:
            os.killpg(entry[1].pid, signal.SIGKILL)
            entry[1].wait()
            entry[2].close()
            self._procs.remove(entry)

    def _start_notifier(self) -> None:
        env = {k: v for k, v in self._env().items() if not k.startswith("SLO_STREAM_PAGERDUTY")}
        self.notifier_port = free_port() if self.scrape_notifier else 0
        env.update(SLO_STREAM_PAGERDUTY_URL=self.receiver.url, SLO_STREAM_PAGERDUTY_ROUTING_KEY=NOTIFIER_KEY,
                   SLO_STREAM_NOTIFIER_METRICS_PORT=str(self.notifier_port), SLO_STREAM_PAGERDUTY_TIMEOUT="2")
        self._spawn("notifier", [sys.executable, "-m", "streams", "notifier"], env)

    def _start_alertmanager(self, name: str = "", page_key: str = AM_PAGE_KEY, ticket_key: str = AM_TICKET_KEY,
                            *, group_wait_s: int | None = None) -> int:
        """An Alertmanager with the generated config (its page route's ``group_wait`` replaced when
        given), paging the receiver with these routing keys; its port."""
        assert ALERTMANAGER is not None
        tag = f"{name}-" if name else ""
        secrets = self.tmp / f"{tag}am-secrets"
        secrets.mkdir(exist_ok=True)
        (secrets / RECEIVER_PAGE).write_text(page_key, encoding="utf-8")
        (secrets / RECEIVER_TICKET).write_text(ticket_key, encoding="utf-8")
        files = alert_files(self.slos, pagerduty_url=f"{self.receiver.url}/v2/enqueue", secrets_dir=str(secrets),
                            liveness=self.liveness)
        text = files[ALERTMANAGER_FILE]
        if group_wait_s is not None:
            assert "group_wait: 10s" in text, "the generated page route's group_wait is no longer 10s"
            text = text.replace("group_wait: 10s", f"group_wait: {group_wait_s}s")
        config = self.tmp / f"{tag}{ALERTMANAGER_FILE}"
        config.write_text(text, encoding="utf-8")
        (self.tmp / RULES_FILE).write_text(files[RULES_FILE], encoding="utf-8")
        port = free_port()
        if not name:
            self.am_port = port
        self._spawn(f"{tag}alertmanager", [ALERTMANAGER, f"--config.file={config}", "--cluster.listen-address=",
                                           f"--web.listen-address=127.0.0.1:{port}",
                                           f"--storage.path={self.tmp / f'{tag}am-data'}"])
        return port

    def _start_prometheus(self, name: str = "", am_port: int | None = None, *, scrape_s: int = 1,
                          evaluation_s: int = 1) -> int:
        """A Prometheus scraping the worker every ``scrape_s`` and evaluating the generated rules every
        ``evaluation_s``, alerting to the Alertmanager on ``am_port``; its port."""
        assert PROMETHEUS is not None
        tag = f"{name}-" if name else ""
        port = free_port()
        if not name:
            self.prom_port = port
        config = self.tmp / f"{tag}prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {scrape_s}s\n  scrape_timeout: 1s\n  evaluation_interval: {evaluation_s}s\n"
            f"rule_files:\n  - {self.tmp / RULES_FILE}\n"
            "alerting:\n  alertmanagers:\n    - static_configs:\n"
            f"        - targets: ['127.0.0.1:{am_port or self.am_port}']\n"
            "scrape_configs:\n  - job_name: slo-stream\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.worker_port}']\n"
            + ("  - job_name: slo-stream-notifier\n    static_configs:\n"
               f"      - targets: ['127.0.0.1:{self.notifier_port}']\n" if self.notifier_port else ""),
            encoding="utf-8",
        )
        self._spawn(f"{tag}prometheus", [PROMETHEUS, f"--config.file={config}",
                                         f"--storage.tsdb.path={self.tmp / f'{tag}tsdb'}",
                                         f"--web.listen-address=127.0.0.1:{port}"])
        return port

    def stop_worker(self) -> None:
        """Stop the worker (the streaming path's evaluations end; the notifier goes on)."""
        for entry in [e for e in self._procs if e[0] == "worker"]:
            stop_group(entry[1])
            entry[2].close()
            self._procs.remove(entry)

    # ---- traffic --------------------------------------------------------------------------------

    def _produce(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.dep.bootstrap, acks="all", linger_ms=0)
        except BaseException as exc:
            self._producer_error = exc
            return
        total = int(self.requests_per_s * self.interval_s)
        n = 0
        t0 = time.time()
        try:
            while not self._stop.is_set():
                outage = self._outage_on.is_set()
                ts = time.time()
                records, rows = [], []
                for cluster, region, platform in self.placements:
                    errors = round(total * self.outage_ratio) if outage and (cluster, region, platform) == \
                        self.outage else 0
                    records.append({"ts": ts, "service": SERVICE, "cluster": cluster, "region": region,
                                    "platform": platform, "total": total, "errors": errors, "latency_ms": 100.0})
                    rows.append(Produced(ts, cluster, region, platform, total, errors))
                producer.send(self.dep.settings.topic_playback, key=SERVICE.encode(),
                              value=orjson.dumps({"schema_version": c.SCHEMA_VERSION, "records": records}))
                producer.flush()
                with self._lock:
                    self.produced.extend(rows)
                    if outage and self.onset is None:
                        self.onset = ts
                n += 1
                self._stop.wait(max(0.0, t0 + n * self.interval_s - time.time()))
        except BaseException as exc:
            self._producer_error = exc
        finally:
            producer.close(timeout=5)

    def start_outage(self, timeout_s: float = 10) -> float:
        """Switch the outage placement to 100% errors; return the onset (event time of the first bad record)."""
        self._outage_on.set()
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            with self._lock:
                if self.onset is not None:
                    return self.onset
            self.check_alive()
            time.sleep(0.02)
        raise AssertionError("no record with errors was produced")

    def records(self) -> list[Produced]:
        with self._lock:
            return list(self.produced)

    def burn_true(self) -> BurnTrue | None:
        return burn_true(self.slo, self.records(), self.outage)

    # ---- observing ------------------------------------------------------------------------------

    def query(self, q: str, port: int | None = None) -> list[Any]:
        """An instant PromQL query (of the Prometheus on ``port``, default the fast one); [] while it starts."""
        url = f"http://127.0.0.1:{port or self.prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = orjson.loads(resp.read())
        except (urllib.error.URLError, ConnectionError):
            return []
        if body.get("status") != "success":
            raise AssertionError(body)
        return list(body["data"]["result"])

    def wait(self, cond: Any, timeout_s: float, what: str) -> Any:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            self.check_alive()
            got = cond()
            if got:
                return got
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n"
                             + "\n".join(f"--- {n}.log\n{self.log(n, 1500)}" for n, _, _ in self._procs))

    def wait_armed(self, timeout_s: float = 60) -> None:
        """Until Prometheus has scraped at least ``min_events`` events of every placement (so the generated
        alert could fire) and the AM is up: the outage may start."""
        expr = (f"sum by (cluster) (increase({c.M_SLI_EVENTS}{{slo=\"{SLO_NAME}\"}}[1h]))"
                f" >= {self.slo.min_events}")

        def armed() -> bool:
            pairs = [(self.prom_port, self.am_port)]
            if self.production:
                pairs.append((self.prod_prom_port, self.prod_am_port))
            for prom, am in pairs:
                if len(self.query(expr, prom)) < len(self.placements):
                    return False
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{am}/-/ready", timeout=2) as r:
                        if r.status != 200:
                            return False
                except (urllib.error.URLError, ConnectionError):
                    return False
            return True

        self.wait(armed, timeout_s, "Prometheus to see min_events for every placement and Alertmanager ready")

    def am_alerts(self, alertname: str, **labels: str) -> list[dict[str, Any]]:
        """Alertmanager's alerts of that name and labels (``status.state``: active, suppressed...)."""
        url = f"http://127.0.0.1:{self.am_port}/api/v2/alerts?" + urllib.parse.urlencode(
            [("filter", f'{k}="{v}"') for k, v in {"alertname": alertname, **labels}.items()])
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return list(orjson.loads(resp.read()))
        except (urllib.error.URLError, ConnectionError):
            return []

    def triggers(self) -> list[Received]:
        with self.receiver._lock:
            return [r for r in self.receiver.received
                    if r.path == "/v2/enqueue" and r.status == 202 and isinstance(r.body, dict)
                    and r.body.get("event_action") == "trigger"]

    def stream_page(self, placement: tuple[str, str, str] | None = None) -> Received | None:
        """The notifier's page trigger (our path) for ``placement`` (default: the outage's), first one."""
        key = page_key(placement or self.outage)
        return next((r for r in self.triggers() if r.body.get("dedup_key") == key), None)

    def am_page(self, placement: tuple[str, str, str] | None = None, *, routing_key: str = AM_PAGE_KEY
                ) -> Received | None:
        """Alertmanager's PagerDuty page trigger for ``placement`` (default: the outage's), first one; from
        the Alertmanager paging with ``routing_key`` (the production one: :data:`PROD_PAGE_KEY`)."""
        cluster, region, platform = placement or self.outage
        for r in self.am_triggers():
            if r.body.get("routing_key") != routing_key:
                continue
            d = r.body.get("payload", {}).get("custom_details") or {}
            if (d.get("slo") == SLO_NAME and d.get("severity") == "page" and d.get("cluster") == cluster
                    and d.get("region") == region and d.get("platform") == platform):
                return r
        return None

    def am_triggers(self) -> list[Received]:
        return [r for r in self.triggers() if not str(r.body.get("dedup_key", "")).startswith("slo-stream/")]

    def stream_triggers(self) -> list[Received]:
        return [r for r in self.triggers() if str(r.body.get("dedup_key", "")).startswith("slo-stream/")]


@dataclass
class Detection:
    allowed_lateness_s: int
    onset: float
    burn: BurnTrue
    stream_at: float  # our page's trigger at the receiver (wall clock)
    am_at: float  # the fast Prometheus + Alertmanager's page at the receiver
    healthy_s: float  # seconds of healthy traffic before the onset
    outage_ratio: float = 1.0
    prod_at: float | None = None  # the production configuration's page (LivePath.production)
    provisional: bool = False  # our first page was a provisional one
    # Our page record on slo.alerts: its Kafka timestamp (the worker's send), for the hops.
    alert_produced_at: float | None = None
    retracted: int = 0  # retractions of ours seen on slo.alerts during the run

    @property
    def stream_s(self) -> float:
        return self.stream_at - self.burn.at

    @property
    def am_s(self) -> float:
        return self.am_at - self.burn.at

    @property
    def prod_s(self) -> float | None:
        return None if self.prod_at is None else self.prod_at - self.burn.at


def alert_records(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[tuple[float, dict[str, Any]]]:
    """Every record on ``topic`` (``slo.alerts``) so far: (Kafka timestamp in seconds, the JSON value)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=int(timeout_s * 1000))
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        consumer.seek_to_beginning(*parts)
        out = []
        deadline = time.time() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.time() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out += [(r.timestamp / 1000, orjson.loads(r.value)) for r in records]
        return sorted(out, key=lambda x: x[0])
    finally:
        consumer.close()


def measure(dep: Deployment, *, allowed_lateness_s: int, timeout_s: float | None = None, outage_ratio: float = 1.0,
            production: bool = False, worker_env: dict[str, str] | None = None) -> Detection:
    """Run the live scenario once and time the pages from the burn condition becoming true: ours, the fast
    Prometheus + Alertmanager's and, with ``production``, the production configuration's."""
    with LivePath(dep, allowed_lateness_s=allowed_lateness_s, outage_ratio=outage_ratio, production=production,
                  worker_env=dict(worker_env or {})) as live:
        live.wait_armed(120 if production else 90)
        onset = live.start_outage()
        wait_s = timeout_s if timeout_s is not None else allowed_lateness_s + 90
        stream = live.wait(live.stream_page, wait_s, "our page at the receiver")
        am = live.wait(live.am_page, 90, "Alertmanager's page at the receiver")
        prod = None
        if production:
            prod = live.wait(lambda: live.am_page(routing_key=PROD_PAGE_KEY),
                             PROD_SCRAPE_S + PROD_EVALUATION_S + PROD_GROUP_WAIT_S + 90,
                             "the production configuration's page at the receiver")
        burn = live.burn_true()
        assert burn is not None, "the produced data never met a page condition"
        first = min(r.ts for r in live.records())
        key = page_key(live.outage)
        ours = [(ts, v) for ts, v in alert_records(dep.bootstrap, dep.settings.topic_alerts)
                if v.get("dedup_key") == key]
        firing = next(((ts, v) for ts, v in ours if v.get("state") == "firing"), None)
        return Detection(allowed_lateness_s, onset, burn, stream.at, am.at, onset - first, outage_ratio=outage_ratio,
                         prod_at=None if prod is None else prod.at,
                         provisional=bool(firing and firing[1].get("provisional")),
                         alert_produced_at=None if firing is None else firing[0],
                         retracted=sum(1 for _, v in ours if v.get("reason") == "retracted"))
