"""Every query of every generated dashboard, run against a real Prometheus that scrapes a real worker
and a real notifier, returns data.

The scenario (on the embedded broker): three services with traffic on kubernetes and legacy, a rollout
of each in eu-west-1 four minutes before an outage there (so each service pages, with the rollout as
its top suspect), malformed records and a late one (dead letters), gate requests (gate decisions), and
the notifier delivering the pages and rollout change events to a local PagerDuty receiver that answers
the first request with a 429 (a retry). Prometheus (the Debian package) scrapes the worker and the
notifier every second from before the first record.

Each dashboard's variables are resolved the way Grafana does it (``label_values`` against Prometheus,
values regex-escaped for multi-value variables) and each panel query, annotation and variable query
is run with them: once with real values (the outage's service, cluster and platform) and once with
"All". Range queries run over the whole test; instant ones at the end. A query passes when it returns
at least one series with a finite value. Then a few values that the on-call reader relies on are
checked: the page shows as PAGE, the rollout is the top suspect, annotations sit at the rollout's start.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.adapters.processes import free_port, stop_group
from streams.adapters.specfiles import load_specs
from streams.core import conventions as c
from streams.demo.traffic import Outage, TrafficPlan
from streams.render import dashboards as gen
from streams.render.grafana import ALL_VALUE
from tests.integration.harness import ROOT, Deployment, changelog_state
from tests.integration.test_gate_api import call, wait_ready
from tests.integration.test_metrics import poll, value
from tests.integration.test_notifier import PagerDutyReceiver, notifier
from tests.integration.test_spine import BAD_MESSAGES
from tests.integration.test_suspects import rollout

pytestmark = pytest.mark.integration

HOUR = 3600
SERVICES = ("license-service", "playback-api", "stream-router")
CLUSTER, REGION, PLATFORM = "eu-west-1", "eu-west", "kubernetes"
SCRAPE_S = 1
# Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval).
RATE_INTERVAL = f"{4 * SCRAPE_S}s"
# Values to pick for a variable when Prometheus offers them (else its first value).
PREFERRED = {"service": "playback-api", "cluster": CLUSTER, "platform": PLATFORM,
             "slo": "playback-api-availability"}
SPECS = load_specs(ROOT / "alerts" / "slos")


# -- a real Prometheus ---------------------------------------------------------------------------------


@dataclass
class Prometheus:
    port: int
    started: float

    def get(self, path: str, params: list[tuple[str, str]]) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400: the PromQL does not parse, and says why
            raise AssertionError(f"{path} {params}: HTTP {exc.code} {exc.read()[:500]!r}") from exc
        assert body["status"] == "success", body
        return body["data"]

    def instant(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", [("query", expr)])["result"])

    def range(self, expr: str) -> list[dict[str, Any]]:
        end = time.time()
        return list(self.get("/api/v1/query_range", [("query", expr), ("start", f"{self.started:.3f}"),
                                                     ("end", f"{end:.3f}"), ("step", f"{SCRAPE_S}s")])["result"])

    def label_values(self, label: str, selector: str) -> list[str]:
        return list(self.get(f"/api/v1/label/{label}/values", [("match[]", selector),
                                                                ("start", f"{self.started:.3f}"),
                                                                ("end", f"{time.time():.3f}")]))

    def metric_names(self) -> set[str]:
        return set(self.get("/api/v1/label/__name__/values", []))


@contextlib.contextmanager
def prometheus(tmp: Path, targets: dict[str, int]) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    port = free_port()
    jobs = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{p}']\n"
                   for job, p in targets.items())
    config = tmp / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: {SCRAPE_S}s\n  scrape_timeout: {SCRAPE_S}s\n"
                      f"scrape_configs:\n{jobs}")
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            prom = Prometheus(port, time.time())
            deadline = time.time() + 30
            while True:
                assert proc.poll() is None, (tmp / "prometheus.log").read_text(errors="replace")[-3000:]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError):
                    pass
                assert time.time() < deadline, "Prometheus never became ready"
                time.sleep(0.2)
            yield prom
        finally:
            stop_group(proc)


# -- dashboards as Grafana runs them ----------------------------------------------------------------------


@dataclass
class Query:
    dashboard: str
    panel: str
    kind: str  # "panel", "annotation", "variable"
    expr: str
    instant: bool = False


@dataclass
class Checked:
    queries: list[Query] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def grafana_escape(text: str) -> str:
    """How Grafana's Prometheus datasource escapes the value of a multi-value variable inside a regex
    matcher (prometheusSpecialRegexEscape): a backslash before each regex special character, doubled
    because it sits in a PromQL string."""
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", text.replace("\\", "\\\\\\\\"))


def substitute(expr: str, values: dict[str, str], range_s: int) -> str:
    out = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", f"{range_s}s")
    for name in sorted(values, key=len, reverse=True):
        out = out.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    assert "$" not in out, f"a variable was not substituted: {out}"
    return out


LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$", re.S)


def resolve_variables(prom: Prometheus, board: dict[str, Any], *, pick_all: bool,
                      fixed: dict[str, str], checked: Checked) -> dict[str, str]:
    """Each variable's options from its own query (earlier variables substituted), as Grafana does;
    the value used is the preferred one (which must be among the options), or All."""
    values: dict[str, str] = {}
    for var in board["templating"].get("list", []):
        m = LABEL_VALUES.match(var["query"])
        assert m, var["query"]
        selector = substitute(m["selector"], values, 60)
        checked.queries.append(Query(board["title"], f"variable {var['name']}", "variable", selector))
        options = prom.label_values(m["label"], selector)
        assert options, f"{board['title']}: variable {var['name']} has no option ({selector})"
        wanted = fixed.get(var["name"]) or PREFERRED.get(var["name"]) or options[0]
        assert wanted in options, f"{board['title']}: {var['name']}={wanted} not among {options}"
        values[var["name"]] = var["allValue"] if pick_all else grafana_escape(wanted)
    return values


def has_data(result: list[dict[str, Any]]) -> bool:
    for series in result:
        samples = series.get("values") or [series.get("value")]
        if any(s is not None and math.isfinite(float(s[1])) for s in samples):
            return True
    return False


def run_dashboard(prom: Prometheus, board: dict[str, Any], *, pick_all: bool, fixed: dict[str, str],
                  checked: Checked) -> None:
    values = resolve_variables(prom, board, pick_all=pick_all, fixed=fixed, checked=checked)
    range_s = int(time.time() - prom.started) + 1
    queries = [Query(board["title"], p["title"], "panel", t["expr"], bool(t.get("instant")))
               for p in board.get("panels", []) for t in p.get("targets", [])]
    queries += [Query(board["title"], a["name"], "annotation", a["expr"])
                for a in board["annotations"].get("list", [])]
    for q in queries:
        expr = substitute(q.expr, values, range_s)
        result = prom.instant(expr) if q.instant else prom.range(expr)
        checked.queries.append(q)
        if not has_data(result):
            checked.failures.append(f"{q.dashboard} / {q.panel} ({q.kind}, {values}): no data for {expr}")


def check_every_query(prom: Prometheus, boards: dict[str, dict[str, Any]], worker_instance: str) -> Checked:
    checked = Checked()
    for name, board in boards.items():
        runs: list[dict[str, str]] = [{}]
        if name == gen.MIGRATION_FILE:  # its row repeats per service: each service's panels, for real
            runs = [{"service": s, "slo": f"{s}-availability"} for s in SERVICES]
        if name == gen.PIPELINE_FILE:
            runs = [{"instance": worker_instance}]
        for fixed in runs:
            run_dashboard(prom, board, pick_all=False, fixed=fixed, checked=checked)
        run_dashboard(prom, board, pick_all=True, fixed={}, checked=checked)
    return checked


# -- the scenario --------------------------------------------------------------------------------------


def late_record(service: str, ts: float, cluster: str = CLUSTER) -> tuple[bytes, bytes]:
    rec = {"ts": ts, "service": service, "cluster": cluster, "region": REGION, "platform": PLATFORM,
           "total": 10, "errors": 0}
    return service.encode(), orjson.dumps({"schema_version": c.SCHEMA_VERSION, "records": [rec]})


def test_every_dashboard_query_returns_data_from_a_real_worker_and_notifier(kafka_bootstrap: str,
                                                                            tmp_path: Path) -> None:
    t_start = time.time()
    # The traffic plan's three placements fill each SLO's series limit: one more is refused (admission panels).
    dep = Deployment.create(kafka_bootstrap, tmp_path, SLO_STREAM_ALLOWED_LATENESS="20",
                            SLO_STREAM_MAX_SERIES_PER_SLO="3", SLO_STREAM_SERIES_IDLE="30d")
    start = int(time.time()) // 60 * 60 - 4 * HOUR
    onset_s = 2 * HOUR
    onset = start + onset_s
    scenario = TrafficPlan(start_ts=start, duration_s=3 * HOUR, requests_per_10s=100, outages=tuple(
        Outage(s, start_s=onset_s, end_s=onset_s + 600, cluster=CLUSTER, platform=PLATFORM) for s in SERVICES))
    cut = onset + 300  # five minutes into the outages: every page is firing when the queries run
    traffic = [(k, v) for ts, k, v in scenario.messages() if ts < cut]
    for i, bad in enumerate(BAD_MESSAGES.values()):
        traffic.insert(100 + 50 * i, bad)
    rollouts = [rollout(onset - 240, s, CLUSTER, "12", "5f6d7c8b9a", "1.4.0") for s in SERVICES]
    boards = gen.dashboards(SPECS)

    port, notifier_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    receiver = PagerDutyReceiver(script=[429]).start()  # PagerDuty rate-limits the first request
    try:
        with prometheus(tmp_path, {"slo-stream-worker": port, "slo-stream-notifier": notifier_port}) as prom, \
                dep.worker("w1", SLO_STREAM_WEB_PORT=str(port)) as proc, \
                notifier(dep, receiver, tmp_path / "notifier.log", notifier_port):
            wait_ready(base, proc, dep.log_text)
            status, body, _ = call(f"{base}/v1/gate?service=playback-api")  # before any record: unknown
            assert status == 200 and body["decision"] == "unknown", body

            dep.produce(rollouts, topic=dep.settings.topic_k8s_rollouts)
            deadline = time.time() + 60
            while not set(SERVICES) <= set(changelog_state(dep)):
                assert proc.poll() is None and time.time() < deadline, dep.log_text()[-3000:]
                time.sleep(0.3)

            dep.produce(traffic)
            pages = {s: {"slo": f"{s}-availability", "cluster": CLUSTER, "platform": PLATFORM, "severity": "page"}
                     for s in SERVICES}
            poll(port, lambda samples: all(value(samples, c.M_ALERT_FIRING, **p) == 1 for p in pages.values()),
                 timeout_s=120, what="every service paging", proc=proc, log=dep.log_text)
            dep.produce([late_record("playback-api", cut - HOUR), late_record("playback-api", cut, "junk-1")])
            for s in SERVICES:
                for query in (f"service={s}", f"service={s}&cluster={CLUSTER}", f"service={s}&platform=legacy"):
                    status, body, _ = call(f"{base}/v1/gate?{query}")
                    assert "decision" in body, (status, body)

            # Every query, until each returns data (Prometheus scrapes once a second) or the deadline.
            deadline = time.time() + 90
            while True:
                assert proc.poll() is None, dep.log_text()[-3000:]
                checked = check_every_query(prom, boards, f"127.0.0.1:{port}")
                if not checked.failures or time.time() > deadline:
                    break
                time.sleep(1)
            assert not checked.failures, "\n".join(checked.failures)

            # No panel names a metric Prometheus has never seen.
            seen = prom.metric_names()
            named = {m for q in checked.queries for m in re.findall(r"\bslo_stream_[a-z0-9_]+", q.expr)}
            assert named and named <= seen, sorted(named - seen)

            # What the on-call reader relies on, in the numbers behind the panels.
            overview = boards[gen.OVERVIEW_FILE]
            table = next(p for p in overview["panels"] if p["type"] == "table")
            alert = next(t["expr"] for t in table["targets"] if t["refId"] == "alert")
            state = prom.instant(substitute(alert, {"service": ALL_VALUE, "cluster": ALL_VALUE,
                                                    "platform": ALL_VALUE}, 60))
            paging = {(r["metric"]["service"], r["metric"]["cluster"]) for r in state if r["value"][1] == "2"}
            assert {(s, CLUSTER) for s in SERVICES} <= paging, state
            for s in SERVICES:
                detail = boards[gen.detail_file(s)]
                suspects = next(p for p in detail["panels"] if p["title"].startswith("Suspects"))["targets"][0]
                top = [r for r in prom.instant(substitute(suspects["expr"], {"cluster": CLUSTER,
                                                                             "platform": PLATFORM}, 60))
                       if r["metric"]["rank"] == "1" and r["metric"]["severity"] == "page"]
                assert top and top[0]["metric"]["suspect"] == f"rollout shop/{s}@12 {CLUSTER}", top
                (anno,) = detail["annotations"]["list"]
                marks = prom.range(substitute(anno["expr"], {"cluster": ALL_VALUE}, 60))
                assert {float(v[1]) for r in marks for v in r["values"]} == {(onset - 240) * 1000.0}, marks
            assert receiver.accepted("/v2/change/enqueue") and any(
                b["event_action"] == "trigger" for b in receiver.accepted()), "the notifier delivered nothing"
    finally:
        receiver.stop()

    panels = sum(1 for b in boards.values() for p in b["panels"] if p["type"] not in ("row", "text"))
    print(f"\n{len(boards)} dashboards, {panels} panels with queries; {len(checked.queries)} queries run "
          f"(variables, panels, annotations; real values and All) all returning data; "
          f"{len(named)} metric names; {time.time() - t_start:.1f}s")
