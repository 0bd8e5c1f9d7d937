"""``slo-stream demo``: a migration story played through the whole product, with a readable timeline.

Starts the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), a local PagerDuty receiver
(unless a real routing key is configured), the worker(s) and the notifier as real processes, then
plays the bundled scenario (streams/demo/scenarios/migration.yaml) in accelerated event time. At each
migration step, rollout and rollback it asks the gate before, and ten minutes of event time after;
it prints alerts with their top suspect as they come and what the notifier sent, then a summary and
a PNG chart (burn rate and budget over time, rollouts and alerts marked). It stops everything it
started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from streams import settings as settings_mod
from streams.adapters import kafka_security
from streams.adapters.processes import free_port, stop_group
from streams.adapters.specfiles import load_specs
from streams.adapters.topics import ensure_topics
from streams.core.model import format_duration
from streams.core.wire.alert import Alert, decode_alert_bytes
from streams.demo.pagerduty_receiver import PagerDutyReceiver
from streams.demo.player import Player
from streams.demo.scenario import Checkpoint, Scenario, parse_scenario, summary, timeline

if TYPE_CHECKING:
    from streams.adapters.broker import EmbeddedBroker

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "migration.yaml"
LATENESS_S = 30  # the workers' allowed lateness in the demo
DEMO_ROUTING_KEY = "demo0000000000000000000000000000"  # 32 characters, like a real one
CHART_SERIES = (
    ("playback-api-availability|eu-west-1|eu-west|kubernetes", "playback-api, eu-west-1 (kubernetes)"),
    ("license-service-availability|us-east-1|*|kubernetes", "license-service, us-east-1 (kubernetes)"),
)


@dataclass
class GateAnswer:
    checkpoint: str
    when: str  # before | after
    ts: float
    service: str
    cluster: str | None
    revision: str | None
    decision: str
    summary: str


@dataclass
class DemoResult:
    """What the demo saw; the summary it prints, and what the end-to-end test asserts."""

    alerts: list[Alert] = field(default_factory=list)
    gate: list[GateAnswer] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)  # what the PagerDuty receiver accepted
    chart: str | None = None
    processes: list[int] = field(default_factory=list)
    exit_code: int = 0


def run_demo(*, specs: str | None, timeout_s: float, scenario: str | None = None, workers: int = 1,
             chart: str | None = None) -> int:
    return play_demo(specs=specs, timeout_s=timeout_s, scenario=scenario, workers=workers, chart=chart).exit_code


def play_demo(*, specs: str | None, timeout_s: float, scenario: str | None = None, workers: int = 1,
              chart: str | None = None) -> DemoResult:
    """Play the story through the product (the module's docstring) and stop everything it started.

    ``exit_code`` is 1 when it stopped early (the play outlasted ``timeout_s``, a process exited, the
    worker was not ready or did not catch up in time) or a process it started still runs at the end.
    """
    run = _prepare(specs=specs, scenario=scenario)
    try:
        _start(run, workers=workers)
        _play(run, timeout_s=timeout_s)
        _conclude(run, chart=chart)
        return run.result
    except TimeoutError as exc:
        run.say("demo", f"stopped: {exc}; logs in {run.logdir}")
        run.result.exit_code = 1
        return run.result
    finally:
        _stop(run)


@dataclass
class _Run:
    """One run of the demo: its story and settings, what it started (stopped at the end), what it saw."""

    say: _Printer
    sc: Scenario
    specs: str
    services: set[str]
    logdir: Path
    start_ts: int  # event time of the story's start: the story ends now
    settings: settings_mod.Settings
    result: DemoResult = field(default_factory=DemoResult)
    broker: EmbeddedBroker | None = None
    receiver: PagerDutyReceiver | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    alerts_thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    bootstrap: str = ""  # the broker's, once started (or the configured one)
    gate: str = ""  # the first worker's HTTP API
    sent_seen: int = 0  # requests of the receiver printed so far


def _prepare(*, specs: str | None, scenario: str | None) -> _Run:
    """Read the story and the SLO specs and print the story; nothing is started yet."""
    say = _Printer(time.time())
    path = Path(scenario) if scenario else SCENARIO
    sc = parse_scenario(str(path), path.read_text())
    base = settings_mod.load()
    specs = specs or base.specs
    slos = load_specs(specs)
    logdir = Path(tempfile.mkdtemp(prefix="slo-stream-demo-"))
    say("demo", f"{len(slos)} SLOs from {specs}; scenario {path.name}; logs in {logdir}")
    for line in summary(sc):
        say("story", line)
    return _Run(say=say, sc=sc, specs=specs, services={s.service for s in slos}, logdir=logdir,
                start_ts=int(time.time()) // 60 * 60 - sc.duration_s,
                settings=replace(base, app_id=f"demo-{os.getpid()}", allowed_lateness_s=LATENESS_S))


def _start(run: _Run, *, workers: int) -> None:
    """The broker (unless one is configured), the topics, the PagerDuty receiver (unless a routing key is
    configured), the worker(s) and the notifier; returns once the first worker is ready."""
    if run.settings.bootstrap:
        security = kafka_security.ready(run.settings)
    else:
        kafka_security.embedded_plaintext(run.settings)
        security = kafka_security.PLAINTEXT
    run.bootstrap = run.settings.bootstrap or _start_broker(run)
    run.settings = replace(run.settings, bootstrap=run.bootstrap)
    ensure_topics(run.bootstrap, run.settings.topics, security=security)
    env = _environment(run)
    _start_receiver(run, env)
    ports = [free_port() for _ in range(workers)]
    for i, port in enumerate(ports):
        wenv = {**env, "SLO_STREAM_WEB_PORT": str(port), "SLO_STREAM_DATADIR": str(run.logdir / f"worker{i + 1}")}
        run.procs.append(_spawn(["worker"], wenv, run.logdir / f"worker{i + 1}.log"))
        run.say("worker", f"worker {i + 1} (pid {run.procs[-1].pid}): metrics and gate on http://127.0.0.1:{port}")
    run.procs.append(_spawn(["notifier"], env, run.logdir / "notifier.log"))
    run.say("notifier", f"notifier (pid {run.procs[-1].pid}): slo.alerts -> PagerDuty, k8s.rollouts -> change events")
    run.result.processes.extend(p.pid for p in run.procs)
    run.gate = f"http://127.0.0.1:{ports[0]}"
    _wait_ready(run.gate, run.procs, timeout_s=90)
    run.say("worker", "ready (tables recovered, partitions assigned)")


def _start_broker(run: _Run) -> str:
    from streams.adapters.broker import EmbeddedBroker

    broker = run.broker = EmbeddedBroker(log_path=str(run.logdir / "broker.log"))
    broker.start()
    bootstrap = broker.bootstrap
    run.result.processes.append(broker.pid or 0)
    run.say("broker", f"embedded Tansu broker on {bootstrap}")
    return bootstrap


def _environment(run: _Run) -> dict[str, str]:
    """The environment of the worker(s) and the notifier."""
    env = dict(os.environ)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": run.bootstrap, "SLO_STREAM_APP_ID": run.settings.app_id,
        "SLO_STREAM_SPECS": run.specs, "SLO_STREAM_ALLOWED_LATENESS": f"{LATENESS_S}s",
        "SLO_STREAM_SESSION_TIMEOUT": env.get("SLO_STREAM_SESSION_TIMEOUT", "2"),
        "SLO_STREAM_HEARTBEAT_INTERVAL": env.get("SLO_STREAM_HEARTBEAT_INTERVAL", "0.5"),
        # The story is history replayed now: its event time trails the wall clock by hours, which
        # live would mean stale data. Let the gate and the staleness timer judge it anyway.
        "SLO_STREAM_GATE_MAX_EVALUATION_LAG": f"{run.sc.duration_s // 3600 + 2}h",
        "SLO_STREAM_GATE_STALE_AFTER": "1h", "SLO_STREAM_STALE_AFTER": "1h",
    })
    return env


def _start_receiver(run: _Run, env: dict[str, str]) -> None:
    """A local PagerDuty receiver, unless a routing key is configured (``env`` then sends pages for real)."""
    if env.get("SLO_STREAM_PAGERDUTY_ROUTING_KEY") or env.get("SLO_STREAM_PAGERDUTY_ROUTING_KEY_FILE"):
        run.say("notifier", "a PagerDuty routing key is configured: pages go to PagerDuty for real")
        return
    run.receiver = PagerDutyReceiver().start()
    env.update({"SLO_STREAM_PAGERDUTY_URL": run.receiver.url, "SLO_STREAM_PAGERDUTY_ROUTING_KEY": DEMO_ROUTING_KEY,
                "SLO_STREAM_NOTIFIER_METRICS_PORT": str(free_port())})
    run.say("notifier", f"local PagerDuty Events API v2 receiver on {run.receiver.url}")


def _play(run: _Run, *, timeout_s: float) -> None:
    """Follow the alerts and play the story, asking the gate at each checkpoint."""
    run.alerts_thread = threading.Thread(target=_follow_alerts, daemon=True, args=(
        run.bootstrap, run.settings, run.result, run.say, run.start_ts, run.stop))
    run.alerts_thread.start()
    deadline = time.time() + timeout_s

    def on_checkpoint(cp: Checkpoint, stats: Any) -> None:
        if time.time() > deadline:
            raise TimeoutError(f"the demo took longer than {timeout_s:.0f}s")
        _checkpoint(run, cp, stats)

    player = Player(run.bootstrap, run.settings, on_checkpoint=on_checkpoint, services=run.services)
    try:
        stats = player.play(timeline(run.sc, run.start_ts))
    finally:
        player.close()
    run.say("replay", f"done: {stats.messages['playback']:,} playback messages ({stats.records:,} records), "
                      f"{stats.messages['rollouts']} rollout records, {stats.messages['events']} Kubernetes events")


def _checkpoint(run: _Run, cp: Checkpoint, stats: Any) -> None:
    """Ask the gate once the worker has evaluated up to the checkpoint; print its answer and what was sent."""
    target = cp.ts - LATENESS_S - 10
    answer = _ask_gate(run.gate, cp, target, run.procs)
    rel = format_duration(int(cp.ts - run.start_ts))
    if cp.when == "before":
        run.say("replay", f"+{rel}: {stats.messages['playback']:,} messages, {stats.records:,} playback records "
                          f"produced so far")
    decision = answer.get("decision", "?")
    run.result.gate.append(GateAnswer(cp.describe(), cp.when, cp.ts, cp.service, cp.cluster, cp.revision,
                                      decision, answer.get("summary", "")))
    run.say("gate", f"{cp.when:6} {cp.describe()}: {decision.upper()}  ({_short(answer.get('summary', ''))})")
    run.sent_seen = _print_sent(run.receiver, run.sent_seen, run.say)


def _conclude(run: _Run, *, chart: str | None) -> None:
    """Let the worker evaluate the end of the story and the notifier deliver what it raised; then the
    summary and the chart."""
    end = run.start_ts + run.sc.duration_s - LATENESS_S - 20
    _wait_evaluated(run.gate, "playback-api", end, run.procs, timeout_s=60)
    _wait_delivered(run.result, run.receiver, timeout_s=15)
    run.sent_seen = _print_sent(run.receiver, run.sent_seen, run.say)
    if run.receiver is not None:
        run.result.sent = run.receiver.accepted() + run.receiver.accepted("/v2/change/enqueue")
    statuses = _read_statuses(run.bootstrap, run.settings)
    run.result.chart = _chart(chart or str(run.logdir / "slo-stream-demo.png"), run.sc, run.start_ts, statuses,
                              run.result)
    _summary(run.result, run.say, run.start_ts, run.receiver is not None)
    if run.result.chart:
        run.say("chart", f"burn rate and budget over time, rollouts and alerts marked: {run.result.chart}")


def _wait_delivered(result: DemoResult, receiver: PagerDutyReceiver | None, *, timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until the receiver accepted every alert seen so far."""
    settle = time.time() + timeout_s
    while time.time() < settle:
        fired = {(a.dedup_key, str(a.state)) for a in result.alerts}
        delivered = {(e.get("dedup_key"), "firing" if e.get("event_action") == "trigger" else "resolved")
                     for e in receiver.accepted()} if receiver else fired
        if fired <= delivered:
            break
        time.sleep(0.3)


def _stop(run: _Run) -> None:
    """Stop everything the run started, and say whether anything is still running."""
    run.stop.set()
    if run.alerts_thread is not None:
        run.alerts_thread.join(timeout=5)
    for p in run.procs:
        stop_group(p, timeout_s=15)
    if run.receiver is not None:
        run.receiver.stop()
    if run.broker is not None:
        run.broker.stop()
    alive = [pid for pid in run.result.processes if pid and _alive(pid)]
    run.say("demo", "stopped the notifier, the worker(s), the PagerDuty receiver and the broker"
                    + (f"; STILL RUNNING: {alive}" if alive else f"; {time.time() - run.say.t0:.0f}s in all"))
    if alive:
        run.result.exit_code = 1


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115
    # `timeout -k`: a worker stuck in a crash loop may ignore SIGTERM (DESIGN.md).
    return subprocess.Popen(["timeout", "-k", "10", "1800", sys.executable, "-m", "streams", *args], env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, OSError, ValueError):
        return 0, {}


def _check_alive(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is not None:
            raise TimeoutError(f"slo-stream {' '.join(str(a) for a in p.args[7:])} exited with {p.returncode}")


def _wait_ready(gate: str, procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        _check_alive(procs)
        if _get(f"{gate}/readyz")[0] == 200:
            return
        time.sleep(0.2)
    raise TimeoutError("the worker did not become ready")


def _evaluated(answer: dict[str, Any]) -> float:
    series = answer.get("series") or []
    return min((float(x.get("evaluated_at") or 0) for x in series), default=0.0)


def _wait_evaluated(gate: str, service: str, target: float, procs: list[subprocess.Popen[bytes]],
                    timeout_s: float) -> dict[str, Any]:
    deadline = time.time() + timeout_s
    answer: dict[str, Any] = {}
    while time.time() < deadline:
        _check_alive(procs)
        _, answer = _get(f"{gate}/v1/gate?{urllib.parse.urlencode({'service': service})}")
        if _evaluated(answer) >= target:
            return answer
        time.sleep(0.1)
    raise TimeoutError(f"the worker did not evaluate {service} up to the checkpoint in {timeout_s:.0f}s")


def _ask_gate(gate: str, cp: Any, target: float, procs: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """The gate's answer once the worker has evaluated the service up to ``target`` (event time)."""
    _wait_evaluated(gate, cp.service, target, procs, timeout_s=60)
    q = {"service": cp.service}
    if cp.cluster:
        q["cluster"] = cp.cluster
    if cp.revision:
        q["revision"] = cp.revision
    if cp.migration:
        q["step"] = "migration"
    time.sleep(1.05)  # past the gate's 1 s answer cache: this answer is made now
    return _get(f"{gate}/v1/gate?{urllib.parse.urlencode(q)}")[1]


def _follow_alerts(bootstrap: str, s: settings_mod.Settings, result: DemoResult, say: Any, start_ts: int,
                   stop: threading.Event) -> None:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=200,
                             **kafka_security.kafka_python(kafka_security.from_settings(s)))
    tps = [TopicPartition(s.topic_alerts, p) for p in range(s.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    early: set[str] = set()  # dedup keys with a provisional FIRING not settled yet
    try:
        while not stop.is_set():
            for msg in consumer:
                a = decode_alert_bytes(msg.value)
                result.alerts.append(a)
                rates = " ".join(f"{w}={a.burn_rates[w]:.1f}x" for w in ("5m", "1h", "6h") if w in a.burn_rates)
                confirms = a.firing and not a.provisional and a.dedup_key in early
                if a.provisional and a.firing:
                    early.add(a.dedup_key)
                else:
                    early.discard(a.dedup_key)
                kind = " (provisional)" if a.provisional and a.firing else " (retracted)" if a.reason else \
                    " (confirms the provisional alert)" if confirms else ""
                say("ALERT", f"{str(a.state).upper():8} {a.severity:6} {a.slo} {_where(a)} at +"
                             f"{format_duration(int(a.ts - start_ts) // 10 * 10)}  {a.condition}  {rates}  "
                             f"budget left {a.error_budget_remaining:.1%}{kind}")
                if a.firing and not confirms:
                    top = a.suspects[0] if a.suspects else None
                    say("suspect", f"{top.summary} (score {top.score:.2f})" if top else
                        "no suspect: no rollout or Kubernetes warning of this service explains the burn")
    finally:
        consumer.close()


def _print_sent(receiver: Any, seen: int, say: Any) -> int:
    if receiver is None:
        return seen
    got = receiver.received[seen:]
    for r in got:
        body = r.body if isinstance(r.body, dict) else {}
        if r.path.endswith("/change/enqueue"):
            what = f"change event: {(body.get('payload') or {}).get('summary', '')}"
        else:
            action = body.get("event_action", "?")
            what = f"{action}: {(body.get('payload') or {}).get('summary', body.get('dedup_key', ''))}"
        say("pagerduty", f"<- {r.status} {_short(what, 150)}")
    return seen + len(got)


def _read_statuses(bootstrap: str, s: settings_mod.Settings) -> list[dict[str, Any]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000,
                             **kafka_security.kafka_python(kafka_security.from_settings(s)))
    tps = [TopicPartition(s.topic_status, p) for p in range(s.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    wanted = {k for k, _ in CHART_SERIES}
    try:
        return [v for v in (orjson.loads(m.value) for m in consumer) if v.get("series") in wanted]
    finally:
        consumer.close()


def _chart(path: str, sc: Any, start_ts: int, statuses: list[dict[str, Any]], result: DemoResult) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(len(CHART_SERIES), 1, figsize=(12, 7), sharex=True)
    for ax, (series, title) in zip(axes, CHART_SERIES, strict=True):
        points = sorted({(st["evaluated_at"], st["burn_rates"].get("1h", 0.0), st["burn_rates"].get("6h", 0.0),
                          st["error_budget_remaining"]) for st in statuses if st["series"] == series
                         and not st.get("stale")})
        hours = [(p[0] - start_ts) / 3600 for p in points]
        floor = 0.05  # a log axis: a burn of zero is drawn at the bottom
        ax.plot(hours, [max(floor, p[1]) for p in points], color="tab:red", label="burn rate, 1h window")
        ax.plot(hours, [max(floor, p[2]) for p in points], color="tab:orange", label="burn rate, 6h window")
        ax.axhline(14.4, color="tab:red", linestyle=":", linewidth=0.8, label="page: 14.4x (1h)")
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=0.8, label="1x: budget spent exactly over 30d")
        ax.set_yscale("log")
        ax.set_ylim(floor, 1000)
        ax.set_ylabel("burn rate (x budget)")
        ax.set_title(title, loc="left", fontsize=10)
        twin = ax.twinx()
        twin.plot(hours, [p[3] * 100 for p in points], color="tab:blue", label="error budget left (%)")
        twin.set_ylabel("budget left (%)", color="tab:blue")
        slo, cluster = series.split("|")[0], series.split("|")[1]
        for e in sc.events:
            if e.kind != "incident" and e.service == slo.removesuffix("-availability"):
                ax.axvline(e.at_s / 3600, color="tab:purple", linestyle="--", linewidth=0.8)
                ax.annotate(e.kind if e.kind != "migrationStep" else f"step {e.to_percent:g}%",
                            (e.at_s / 3600, 1), textcoords="offset points", xytext=(2, 2), fontsize=7,
                            color="tab:purple")
        fired: dict[str, float] = {}
        for a in result.alerts:
            if a.slo != slo or a.dimensions.cluster != cluster:
                continue
            if a.firing:
                fired[a.dedup_key] = a.ts
            elif a.dedup_key in fired:
                t0 = fired.pop(a.dedup_key)
                ax.axvspan((t0 - start_ts) / 3600, (a.ts - start_ts) / 3600, alpha=0.15,
                           color="red" if a.severity == "page" else "gold")
        for dk, t0 in fired.items():
            ax.axvspan((t0 - start_ts) / 3600, sc.duration_s / 3600, alpha=0.15,
                       color="red" if "/page/" in dk else "gold")
        lines, labels = ax.get_legend_handles_labels()
        l2, lb2 = twin.get_legend_handles_labels()
        ax.legend(lines + l2, labels + lb2, loc="upper left", fontsize=7)
    axes[-1].set_xlabel("hours into the story (event time); shaded: alert firing (red page, yellow ticket)")
    fig.suptitle(f"slo-stream demo: {sc.name}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _where(a: Alert) -> str:
    """``eu-west-1/eu-west/kubernetes``, without the dimensions the SLO groups away."""
    return "/".join(v for v in a.dimensions.to_json().values() if v != "*")


def raised(alerts: list[Alert]) -> list[Alert]:
    """The FIRING records that raised an incident: every one but the final FIRING that confirms a
    provisional one still open for its dedup key (docs/semantics.md, provisional and final alerts)."""
    early: set[str] = set()
    out = []
    for a in alerts:
        if a.firing and not (not a.provisional and a.dedup_key in early):
            out.append(a)
        if a.firing and a.provisional:
            early.add(a.dedup_key)
        else:
            early.discard(a.dedup_key)
    return out


def _summary(result: DemoResult, say: Any, start_ts: int, local_pd: bool) -> None:
    up = raised(result.alerts)
    counts = []
    for sev, name in (("page", "page"), ("ticket", "ticket")):
        mine = [a for a in result.alerts if a.severity == sev]
        retracted = sum(1 for a in mine if a.reason == "retracted")
        counts.append(f"{sum(1 for a in up if a.severity == sev)} {name}(s) raised"
                      + (f" ({sum(1 for a in up if a.severity == sev and a.provisional)} provisionally)"
                         if any(a.provisional for a in up if a.severity == sev) else "")
                      + f", {sum(not a.firing for a in mine) - retracted} resolved"
                      + (f", {retracted} retracted" if retracted else ""))
    say("summary", "; ".join(counts))
    for a in up:
        top = a.suspects[0] if a.suspects else None
        blame = f"blamed on {top.summary.split(', started')[0]}" if top else "no suspect"
        at = format_duration(int(a.ts - start_ts) // 10 * 10)
        say("summary", f"  {a.severity:6} {a.slo} {_where(a)} at +{at}: {blame}")
    for g in result.gate:
        say("summary", f"  gate {g.when:6} {g.checkpoint}: {g.decision}")
    if local_pd:
        triggers = sum(1 for e in result.sent if e.get("event_action") == "trigger")
        resolves = sum(1 for e in result.sent if e.get("event_action") == "resolve")
        changes = sum(1 for e in result.sent if "event_action" not in e)
        say("summary", f"  PagerDuty receiver accepted {triggers} trigger(s), {resolves} resolve(s), "
                       f"{changes} change event(s)")


def _short(text: str, n: int = 170) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class _Printer:
    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.lock = threading.Lock()

    def __call__(self, tag: str, text: str) -> None:
        with self.lock:
            print(f"[{time.time() - self.t0:6.1f}s] {tag:9} {text}", flush=True)
