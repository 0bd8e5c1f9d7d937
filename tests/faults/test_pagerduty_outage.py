"""PagerDuty has an outage while pages are due: the receiver answers 500/503 and 429, then stops
answering (stalls past the notifier's timeout), then recovers. The real notifier retries the event
at the head of the queue with backoff, holding the rest; afterwards every trigger, resolve and change
event arrives, in order per dedup key (per deployment for changes), each once, none lost, and no
trigger after its resolve: no second incident. The worker and the notifier never restart.

The script is counted in answers, not seconds, because the notifier backs off exponentially (0.5 s
doubling, capped at 30 s, up to 20 % jitter): seven 500/503/429 answers keep PagerDuty failing for
about 66 s (the last wait reaches the cap), then two answers never come (past the 1 s timeout), then
it recovers: the first 202 about 130 s after the first failure. The long mode
(SLO_STREAM_FAULTS_LONG=1) fails two capped waits longer (about 2 min of 5xx and 429 before the
stalls)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from streams.demo.pagerduty_receiver import PagerDutyReceiver
from tests.faults.support import (
    LONG,
    Uninterrupted,
    burn_scenario,
    chains,
    notifier,
    pd_actions,
    read_json,
    read_topic,
    scenario_messages,
    tail,
    wait_until,
)
from tests.integration.harness import Deployment

TIMEOUT_S = 1.0  # SLO_STREAM_PAGERDUTY_TIMEOUT: a stalled answer costs the notifier this long
STALL = 0  # PagerDutyReceiver: hold the request past any client timeout, then drop it
SCRIPT = ([500, 429, 503, 429, 500, 429, 500, 503, 429, STALL, STALL] if LONG
          else [500, 429, 503, 429, 500, 429, 500, STALL, STALL])
CHANGE_PATH = "/v2/change/enqueue"


def rollout(deployment: str, phase: str, ts: float, revision: int) -> dict[str, object]:
    return {"schema_version": 1, "ts": ts, "cluster": "eu-west-1", "namespace": "playback",
            "deployment": deployment, "service": deployment, "revision": str(revision),
            "previous_revision": str(revision - 1), "images": [f"registry.example/{deployment}:{revision}"],
            "phase": phase}


def test_a_pagerduty_outage_delays_pages_and_changes_but_loses_none_and_opens_no_second_incident(
    kafka_bootstrap: str, tmp_path: Path, fault_report: list[str]
) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path)
    s = dep.settings
    # Two burns, so that pages of two incidents queue up behind the outage with their tickets.
    scenario = burn_scenario(burning=(("playback-api", "eu-west-1"), ("license-service", "us-east-1")))
    produced = scenario_messages(scenario)
    t0 = scenario.start_ts
    changes = [(d, rollout(d, phase, t0 + 60 * i, 7)) for d in ("playback-api", "license-service")
               for i, phase in enumerate(("started", "progressing", "completed"))]
    dep.produce([(f"eu-west-1/playback/{d}".encode(), orjson.dumps(r)) for d, r in changes],
                topic=s.topic_k8s_rollouts)

    receiver = PagerDutyReceiver(script=list(SCRIPT), stall_s=TIMEOUT_S + 2).start()
    log = tmp_path / "notifier.log"
    try:
        with notifier(dep, receiver, log, timeout_s=TIMEOUT_S) as notif, dep.worker("w") as worker:
            alive = {"notifier": notif, "worker": worker}
            pids = {n: p.pid for n, p in alive.items()}
            started = time.time()
            dep.produce(produced)
            clean = Uninterrupted.run(dep, read_topic(kafka_bootstrap, s.topic_playback, s.partitions))
            alerts = wait_until(lambda: (lambda got: got if chains(got) == chains(clean.alerts) else None)(
                                    read_json(kafka_bootstrap, s.topic_alerts, s.partitions)),
                                timeout_s=120, what="the worker's alert changes", alive=alive,
                                logs=lambda: tail(tmp_path / "w.log"), every_s=0.5)
            queued_at = time.time()
            outage_open = len(receiver.script) > 0  # the alerts were out before PagerDuty came back
            expected = {k: ["trigger" if a["state"] == "firing" else "resolve" for a in v]
                        for k, v in chains(alerts).items()}
            expected_changes = {d: [f"Rollout {r['phase']}" for dd, r in changes
                                    if dd == d and r["phase"] != "progressing"]
                                for d in ("playback-api", "license-service")}

            def delivered() -> bool:
                got = {d: [b["payload"]["summary"].split(":")[0] for b in receiver.accepted(CHANGE_PATH)
                           if b["payload"]["custom_details"]["deployment"] == d] for d in expected_changes}
                return pd_actions(receiver) == expected and got == expected_changes

            wait_until(delivered, timeout_s=420 if LONG else 300, what="every event accepted once, in order",
                       alive=alive, logs=lambda: tail(log))
            done = time.time()
            assert {n: p.pid for n, p in alive.items()} == pids and all(p.poll() is None for p in alive.values())
    finally:
        receiver.stop()

    # Every alert change on the topic once: no crash here, so no re-publication either.
    assert len(alerts) == sum(len(v) for v in chains(alerts).values())
    assert len(alerts) >= 4 and outage_open, "pages and resolves queued behind the outage"
    # The outage as scripted, then only acceptances: nothing was answered 202 before PagerDuty recovered.
    received = list(receiver.received)
    assert [r.status for r in received[:len(SCRIPT)]] == SCRIPT
    assert all(r.status == 202 for r in received[len(SCRIPT):])
    # The failed event is the first one accepted: the notifier did not move past it.
    head = received[0].body
    assert received[len(SCRIPT)].body == head
    retries = [line for line in log.read_text(errors="replace").splitlines() if "; retry " in line]
    assert len(retries) == len(SCRIPT), retries  # each failed answer retried once, and logged

    fails = received[:len(SCRIPT)]
    recovered = received[len(SCRIPT)].at
    timeline = ", ".join(f"+{r.at - fails[0].at:.1f}s {r.status or 'stall'}" for r in fails)
    fault_report += [
        f"answers scripted ({'long' if LONG else 'default'} mode): {timeline}; first 202 at "
        f"+{recovered - fails[0].at:.1f}s; notifier timeout {TIMEOUT_S:.0f}s",
        f"queued behind the outage: {len(alerts)} alert changes (published by +{queued_at - started:.0f}s) "
        f"and {sum(len(v) for v in expected_changes.values())} change events; all accepted by "
        f"+{done - fails[0].at:.1f}s",
        "accepted per dedup key, in order: " + "; ".join(f"{k.removeprefix('slo-stream/')}: {', '.join(v)}"
                                                        for k, v in sorted(pd_actions(receiver).items())),
        f"requests: {len(received)} ({len(SCRIPT)} failed, {len(received) - len(SCRIPT)} accepted, 0 duplicates); "
        "worker and notifier: same pids, no restart",
    ]
