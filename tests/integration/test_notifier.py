"""The notifier against a real broker and a real HTTP PagerDuty receiver: triggers, resolves and
change events with their exact payloads; 429/500/a stalled answer retried until accepted, none lost,
no second incident; an invalid event dead-lettered with PagerDuty's answer; the routing key in no log."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.adapters.processes import free_port, stop_group
from streams.demo.pagerduty_receiver import PagerDutyReceiver
from tests import waiting
from tests.integration.harness import ROOT, Deployment, committed_offsets

pytestmark = pytest.mark.integration

SECRET = "R0UTING-KEY-page-7f3a9c"
TICKET_SECRET = "R0UTING-KEY-ticket-51d2"
CHANGE_SECRET = "R0UTING-KEY-change-99e0"


def alert(dk: str, severity: str, state: str, ts: int, slo: str = "playback-api-availability") -> dict[str, Any]:
    return {
        "schema_version": 1, "dedup_key": dk, "slo": slo, "service": "playback-api", "severity": severity,
        "state": state, "ts": ts, "started_at": 1_795_000_000,
        "dimensions": {"cluster": "eu-west-1", "region": "eu-west", "platform": "kubernetes"},
        "burn_rates": {"5m": 200.3, "1h": 16.9, "30m": 33.6, "6h": 3.0}, "condition": "1h+5m > 14.4",
        "threshold": 14.4, "error_budget_remaining": -0.25, "objective": 0.999,
        "links": {"runbook": "https://runbooks.example/playback-api", "dashboard": "https://grafana.example/d/x"},
        "suspects": [{"kind": "rollout", "summary": "deployment playback/playback-api revision 42 in eu-west-1",
                      "score": 0.91}],
    }


def rollout(phase: str, ts: int) -> dict[str, Any]:
    return {"schema_version": 1, "ts": ts, "cluster": "eu-west-1", "namespace": "playback",
            "deployment": "playback-api", "service": "playback-api", "revision": 42, "previous_revision": 41,
            "images": ["registry.example/playback-api:42"], "phase": phase}


@contextlib.contextmanager
def notifier(dep: Deployment, receiver: PagerDutyReceiver, log: Path,
             metrics_port: int = 0) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    env.update(dep.env)
    env.update({
        "SLO_STREAM_NOTIFIER_METRICS_PORT": str(metrics_port),
        "SLO_STREAM_PAGERDUTY_URL": receiver.url,
        "SLO_STREAM_PAGERDUTY_TIMEOUT": "1",
        "SLO_STREAM_PAGERDUTY_ROUTING_KEY": SECRET,
        "SLO_STREAM_PAGERDUTY_ROUTING_KEY_TICKET": TICKET_SECRET,
        "SLO_STREAM_PAGERDUTY_ROUTING_KEY_CHANGE": CHANGE_SECRET,
    })
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "notifier", "--loglevel", "debug"], env=env,
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)


def wait_for(cond: Any, timeout_s: float, what: str) -> None:
    waiting.wait_for(cond, what, timeout_s, every_s=0.1)


def test_notifier_delivers_retries_dead_letters_and_never_logs_the_key(kafka_bootstrap: str, tmp_path: Path) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path)
    s = dep.settings
    page, ticket = "slo-stream/playback-api-availability/page/x", "slo-stream/playback-api-availability/ticket/x"
    rejected_dk = "slo-stream/reject-me/page/x"
    alerts = [
        (page, alert(page, "page", "firing", 1_795_000_060)),
        (ticket, alert(ticket, "ticket", "firing", 1_795_000_030)),
        ("broken", {"schema_version": 1, "dedup_key": "broken", "severity": "page", "state": "exploded"}),
        # Valid JSON of the wrong shapes: dead-lettered too, never a crash that blocks the stream.
        ("odd", {**alert("odd", "page", "firing", 1_795_000_000), "dimensions": ["eu-west-1"], "ts": 1e20}),
        (rejected_dk, alert(rejected_dk, "page", "firing", 1_795_000_070, slo="reject-me")),
        (page, alert(page, "page", "resolved", 1_795_002_690)),
    ]
    dep.produce([(k.encode(), orjson.dumps(v)) for k, v in alerts], topic=s.topic_alerts)
    rollouts = [rollout("started", 1_795_000_000), rollout("progressing", 1_795_000_010),
                rollout("completed", 1_795_000_100)]
    dep.produce([(b"eu-west-1/playback/playback-api", orjson.dumps(r)) for r in rollouts], topic=s.topic_k8s_rollouts)

    # PagerDuty has a bad minute: rate limited, errors, an answer that never comes; then it recovers.
    receiver = PagerDutyReceiver(script=[429, 500, 503, 0], stall_s=3.0,
                                 reject=lambda b: "reject-me" in str(b.get("dedup_key", ""))).start()
    log = tmp_path / "notifier.log"
    try:
        metrics_port = free_port()
        with notifier(dep, receiver, log, metrics_port):
            wait_for(lambda: len(receiver.accepted()) >= 3 and len(receiver.accepted("/v2/change/enqueue")) >= 2,
                     60, "3 events and 2 change events accepted")
            group = f"{s.app_id}-notifier"
            wait_for(lambda: sum(committed_offsets(kafka_bootstrap, group, s.topic_alerts, s.partitions).values())
                     == len(alerts), 30, "every alert record committed")
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
                metrics_text = resp.read().decode()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(metrics_text) for s in fam.samples
                   if s.name.startswith("slo_stream_notifier") and s.name.endswith("_total")}
        deliveries = {dict(k[1])["kind"] + "/" + dict(k[1])["outcome"]: v for k, v in samples.items()
                      if k[0] == "slo_stream_notifier_deliveries_total"}
        assert deliveries == {"trigger/accepted": 2, "resolve/accepted": 1, "change/accepted": 2,
                              "trigger/rejected": 1}
        assert sum(v for k, v in samples.items() if k[0] == "slo_stream_notifier_retries_total") == 4
        accepted = receiver.accepted()
        # Exactly one accepted trigger per incident, and the resolve after its trigger.
        by_key: dict[str, list[str]] = {}
        for body in accepted:
            by_key.setdefault(body["dedup_key"], []).append(body["event_action"])
        assert by_key == {page: ["trigger", "resolve"], ticket: ["trigger"]}
        trigger = next(b for b in accepted if b["dedup_key"] == page and b["event_action"] == "trigger")
        assert trigger["routing_key"] == SECRET
        p = trigger["payload"]
        assert p["severity"] == "critical" and p["source"] == "slo-stream/eu-west-1"
        assert p["class"] == "playback-api-availability" and p["component"] == "playback-api"
        assert p["group"] == "eu-west-1" and p["timestamp"] == "2026-11-18T11:07:40Z"
        assert p["summary"] == ("[PAGE FIRING] playback-api-availability in eu-west-1/eu-west/kubernetes burning "
                                "16.9x over 1h (1h+5m > 14.4), budget left -25.0%; top suspect: deployment "
                                "playback/playback-api revision 42 in eu-west-1 (score 0.91)")
        assert p["custom_details"]["burn_rates"]["5m"] == 200.3
        assert p["custom_details"]["suspects"][0]["score"] == 0.91
        assert trigger["links"] == [{"href": "https://grafana.example/d/x", "text": "Dashboard"},
                                    {"href": "https://runbooks.example/playback-api", "text": "Runbook"}]
        resolve = next(b for b in accepted if b["event_action"] == "resolve")
        assert resolve == {"routing_key": SECRET, "event_action": "resolve", "dedup_key": page}
        ticket_body = next(b for b in accepted if b["dedup_key"] == ticket)
        assert ticket_body["routing_key"] == TICKET_SECRET and ticket_body["payload"]["severity"] == "warning"

        changes = receiver.accepted("/v2/change/enqueue")
        assert [c["payload"]["summary"] for c in changes] == [
            "Rollout started: playback/playback-api in eu-west-1 revision 41 -> 42",
            "Rollout completed: playback/playback-api in eu-west-1 revision 41 -> 42",
        ]
        assert all(c["routing_key"] == CHANGE_SECRET for c in changes)

        # The scripted failures were retried (4 failed answers, then the same event accepted).
        assert [r.status for r in receiver.received[:4]] == [429, 500, 503, 0]

        # Dead letters: the malformed record and the one PagerDuty refused, with its answer.
        letters = dep.consume(s.topic_dead_letter, until=lambda v: len(v) >= 3, timeout_s=20)
        reasons = sorted(v["reason"] for v in letters)
        assert reasons == ["bad_alert", "bad_alert", "pagerduty_rejected"]
        refused = next(v for v in letters if v["reason"] == "pagerduty_rejected")
        assert "HTTP 400" in refused["detail"] and "rejected by the test" in refused["detail"]
        assert "routing_key" not in refused["event"]

        # A restart sends nothing again: everything was committed after acceptance.
        before = len(receiver.received)
        with notifier(dep, receiver, log):
            time.sleep(4)
        assert len(receiver.received) == before

        # A worker's replay of a batch that held the whole page incident publishes its trigger and
        # resolve again after both went out (docs/semantics.md): a new notifier process reads the
        # partition back and does not send them (a trigger after its resolve would be a second
        # incident); the next incident of the same dedup key goes out.
        replay = [alert(page, "page", "firing", 1_795_000_060), alert(page, "page", "resolved", 1_795_002_690),
                  alert(page, "page", "firing", 1_795_009_000)]
        dep.produce([(page.encode(), orjson.dumps(v)) for v in replay], topic=s.topic_alerts)
        with notifier(dep, receiver, log):
            wait_for(lambda: sum(committed_offsets(kafka_bootstrap, group, s.topic_alerts, s.partitions).values())
                     == len(alerts) + len(replay), 30, "the replayed alert records committed")
        sent = [(r.body["dedup_key"], r.body["event_action"], r.body.get("payload", {}).get("timestamp"))
                for r in receiver.received[before:]]
        assert sent == [(page, "trigger", "2026-11-18T13:36:40Z")]
        assert log.read_text().count("already delivered") == 2

        text = log.read_text(errors="replace") + orjson.dumps(letters).decode() + metrics_text
        for secret in (SECRET, TICKET_SECRET, CHANGE_SECRET):
            assert secret not in text
        assert "retry 1" in text  # the retries were logged (without the key)
    finally:
        receiver.stop()


def test_notifier_refuses_to_start_without_a_routing_key(kafka_bootstrap: str, tmp_path: Path) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLO_STREAM_PAGERDUTY")}
    env.update(dep.env)
    out = subprocess.run([sys.executable, "-m", "streams", "notifier"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "no PagerDuty routing key for pages" in out.stderr
