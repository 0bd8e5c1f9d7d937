"""``slo-stream demo``: a playback outage replayed on the embedded broker, alerts shown as they come.

Starts the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), a real worker process, replays
8 hours of event time in seconds (7 hours of healthy traffic, a 10-minute outage of playback-api in
one Kubernetes cluster, recovery), prints every alert state change from ``slo.alerts`` and a summary,
then stops everything it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import orjson

from streams import settings as settings_mod
from streams.adapters.processes import free_port, stop_group
from streams.scenario import Outage, Scenario

HOUR = 3600


def demo_scenario(now: float) -> tuple[Scenario, Outage]:
    """7 hours of healthy history (so the 1h and 6h windows are full), a 10-minute outage, recovery."""
    outage = Outage(service="playback-api", start_s=7 * HOUR, end_s=7 * HOUR + 600,
                    error_ratio=1.0, cluster="eu-west-1", platform="kubernetes")
    duration = 8 * HOUR
    start = int(now // 10 * 10) - duration - 600  # all event times in the past
    return Scenario(start_ts=start, duration_s=duration, outages=(outage,)), outage


def run_demo(*, specs: str | None, timeout_s: float) -> int:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from streams.adapters.specfiles import load_specs
    from streams.adapters.topics import ensure_topics

    s = settings_mod.load()
    specs = specs or s.specs
    slos = load_specs(specs)
    started = time.time()
    say = _Printer(started)
    say("demo", f"{len(slos)} SLOs from {specs}: " + ", ".join(x.name for x in slos))
    broker = None
    worker: subprocess.Popen[bytes] | None = None
    logdir = tempfile.mkdtemp(prefix="slo-stream-demo-")
    try:
        bootstrap = s.bootstrap
        if not bootstrap:
            from streams.adapters.broker import EmbeddedBroker

            broker = EmbeddedBroker(log_path=os.path.join(logdir, "broker.log"))
            broker.start()
            bootstrap = broker.bootstrap
            say("broker", f"embedded Tansu broker on {bootstrap} (pid {broker.pid})")
        ensure_topics(bootstrap, s.topics)
        say("broker", "topics: " + ", ".join(f"{t}({n})" for t, n in s.topics.items()))

        env = dict(os.environ)
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SLO_STREAM_SPECS": specs,
            "SLO_STREAM_WEB_PORT": str(free_port()),
            "SLO_STREAM_SESSION_TIMEOUT": env.get("SLO_STREAM_SESSION_TIMEOUT", "2"),
            "SLO_STREAM_HEARTBEAT_INTERVAL": env.get("SLO_STREAM_HEARTBEAT_INTERVAL", "0.5"),
            "SLO_STREAM_DATADIR": os.path.join(logdir, "worker-data"),
        })
        worker_log = open(os.path.join(logdir, "worker.log"), "wb")  # noqa: SIM115
        worker = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env,
                                  stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
        say("worker", f"started (pid {worker.pid}), log {worker_log.name}")

        scenario, outage = demo_scenario(time.time())
        t_outage = scenario.start_ts + outage.start_s
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        # The change that breaks it: a rollout of playback-api in the same cluster 4 minutes before,
        # whose new pods crash-loop; and an unrelated rollout of stream-router at the same moment.
        for key, value in demo_changes(t_outage):
            topic = s.topic_k8s_rollouts if b"/Pod/" not in key else s.topic_k8s_events
            producer.send(topic, key=key, value=value)
        producer.flush()
        if _wait_for_changes(bootstrap, s, {"playback-api", "stream-router"}, timeout_s=60):
            say("replay", "rollouts: playback-api 1.8.0 in eu-west-1 (4 min before the outage), "
                          "stream-router 2.3.1 in eu-west-1 (unrelated); 6 CrashLoopBackOff warnings")
        else:
            say("replay", "the worker did not take the rollout records within 60s; carrying on without them")
        n_msgs = n_recs = 0
        t0 = time.time()
        for _, key, value in scenario.messages():
            producer.send(s.topic_playback, key=key, value=value)
            n_msgs += 1
            n_recs += len(scenario.placements)
        producer.flush()
        producer.close()
        say("replay", f"{len(scenario.services)} services x {len(scenario.placements)} placements, "
                      f"{scenario.duration_s // HOUR}h of event time: {n_recs:,} records in {n_msgs:,} "
                      f"messages, produced in {time.time() - t0:.1f}s")
        say("replay", f"outage: {outage.service} in {outage.cluster}/{outage.platform}, 100% errors for "
                      f"{(outage.end_s - outage.start_s) // 60} min at {_clock(t_outage)} (event time)")

        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 consumer_timeout_ms=500)
        parts = [TopicPartition(s.topic_alerts, p) for p in range(s.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        alerts = []
        deadline = time.time() + timeout_s
        resolved_page = False
        while time.time() < deadline and not resolved_page:
            if worker.poll() is not None:
                say("worker", f"exited early with code {worker.returncode}; see {worker_log.name}")
                return 1
            for msg in consumer:
                a = orjson.loads(msg.value)
                alerts.append(a)
                rel = a["ts"] - t_outage
                dims = " ".join(f"{k}={v}" for k, v in a["dimensions"].items())
                rates = " ".join(f"{w}={a['burn_rates'][w]:.1f}x" for w in ("5m", "1h", "30m", "6h")
                                 if w in a["burn_rates"])
                say("ALERT", f"{a['state'].upper():8} {a['severity']:6} {a['slo']} {dims}\n"
                             f"{'':21}event time {_clock(a['ts'])} (outage {rel:+.0f}s)  "
                             f"condition {a['condition']}  burn {rates}  "
                             f"budget left {a['error_budget_remaining']:.1%}")
                if a["state"] == "firing":
                    top = (a.get("suspects") or [None])[0]
                    say("suspect", f"{top['summary']} (score {top['score']:.2f})" if top else "no suspect")
                if a["severity"] == "page" and a["state"] == "resolved":
                    resolved_page = True
        consumer.close()
        pages = [a for a in alerts if a["severity"] == "page"]
        say("summary", f"{len(alerts)} alert changes: "
                       f"{sum(a['state'] == 'firing' for a in pages)} page firing, "
                       f"{sum(a['state'] == 'resolved' for a in pages)} page resolved, "
                       f"{sum(a['severity'] == 'ticket' for a in alerts)} ticket changes; "
                       f"services other than {outage.service}: "
                       f"{sum(a['service'] != outage.service for a in alerts)} alerts")
        fired = next((a for a in pages if a["state"] == "firing"), None)
        if fired:
            say("summary", f"page raised {fired['ts'] - t_outage:.0f}s of event time after the outage began "
                           f"(the Workbook's 1h/14.4x threshold is crossed after ~52s); "
                           f"wall clock {time.time() - started:.1f}s for the whole demo")
        if not resolved_page:
            say("summary", f"no resolved page within {timeout_s:.0f}s; worker log: {worker_log.name}")
            return 1
        return 0
    finally:
        if worker is not None:
            stop_group(worker, timeout_s=15)
        if broker is not None:
            broker.stop()
        say("demo", "stopped the worker and the broker")


def demo_changes(t_outage: float) -> list[tuple[bytes, bytes]]:
    """The rollout records and Kubernetes events the demo replays with its outage."""

    def rollout(ts: float, svc: str, rev: str, tag: str, old_tag: str, h: str, phase: str) -> tuple[bytes, bytes]:
        return f"eu-west-1/streaming/{svc}".encode(), orjson.dumps({
            "schema_version": 1, "ts": ts, "cluster": "eu-west-1", "namespace": "streaming", "deployment": svc,
            "service": svc, "revision": rev, "previous_revision": str(int(rev) - 1), "template_hash": h,
            "previous_template_hash": None, "images": [f"registry.example.com/{svc}:{tag}"],
            "previous_images": [f"registry.example.com/{svc}:{old_tag}"], "phase": phase,
            "replicas": {"desired": 12, "updated": 3, "ready": 9, "available": 9}, "reason": None,
            "message": None, "migration": None})

    out = [rollout(t_outage - 240, "playback-api", "42", "1.8.0", "1.7.3", "7d9f8c6b5", "started"),
           rollout(t_outage - 200, "playback-api", "42", "1.8.0", "1.7.3", "7d9f8c6b5", "progressing"),
           rollout(t_outage - 220, "stream-router", "17", "2.3.1", "2.3.0", "5c4b3a291", "started")]
    for i in range(6):
        pod = f"playback-api-7d9f8c6b5-{'abcdef'[i]}{i}x9q"
        out.append((f"eu-west-1/streaming/Pod/{pod}".encode(), orjson.dumps({
            "schema_version": 1, "cluster": "eu-west-1", "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{pod}.1", "namespace": "streaming", "uid": f"demo-{pod}"},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": "streaming", "apiVersion": "v1"},
            "reason": "BackOff", "message": "Back-off restarting failed container playback-api",
            "type": "Warning", "count": 5 + i, "firstTimestamp": _rfc3339(t_outage - 150),
            "lastTimestamp": _rfc3339(t_outage + 30 + i)})))
    return out


def _wait_for_changes(bootstrap: str, s: settings_mod.Settings, services: set[str], *, timeout_s: float) -> bool:
    """Wait until the worker's ``changes`` table holds rollouts of ``services`` (its changelog shows
    them): a replay compresses minutes into milliseconds, live the rollout comes minutes first."""
    from kafka import KafkaConsumer, TopicPartition

    topic = f"{s.app_id}-changes-changelog"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=300)
        tps = [TopicPartition(topic, p) for p in range(s.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        latest = {orjson.loads(m.key): orjson.loads(m.value) for m in consumer}
        consumer.close()
        if services <= set(latest) and len(latest["playback-api"].get("w") or {}) >= 6:
            return True
        time.sleep(0.3)
    return False


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


class _Printer:
    def __init__(self, t0: float) -> None:
        self.t0 = t0

    def __call__(self, tag: str, text: str) -> None:
        print(f"[{time.time() - self.t0:6.1f}s] {tag:8} {text}", flush=True)
