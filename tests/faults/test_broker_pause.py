"""The broker stops answering for 30 s (SIGSTOP, then SIGCONT) in the middle of an outage and a rollout.
The worker, the notifier and the kube bridge (watching a fake Kubernetes API server) carry on without a
restart: the same processes, no crash loop. Nothing is lost: the counts equal the ground truth and
the alerts an uninterrupted run's, the page reaches PagerDuty and resolves, and the rollout records
and the Warning event that the API server showed during the pause are published after it.

The test starts a broker of its own (not the session's): pausing the shared one would stall whatever
else runs on it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from streams.adapters.broker import BrokerNotInstalledError, EmbeddedBroker
from streams.adapters.processes import free_port
from streams.demo.pagerduty_receiver import PagerDutyReceiver
from tests.fake_kube import Controller, FakeKube, core_event
from tests.faults.support import (
    GroupOffsets,
    Uninterrupted,
    burn_scenario,
    chains,
    expected_actions,
    ground_truth,
    incidents,
    kube_bridge,
    notifier,
    page_key,
    partitions_of,
    pd_actions,
    pick,
    processed_all,
    read_json,
    read_topic,
    specs,
    statuses_caught_up,
    tail,
    wait_until,
)
from tests.integration.harness import Deployment

PAUSE_S = 30.0
CLUSTER, NS = "eu-west-1", "playback"
OUTAGE_AT = 65 * 60  # burn_scenario's healthy hour (and 5 min)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    try:
        broker = EmbeddedBroker(log_path=tmp_path / "broker.log", keep_log=True).start()
    except BrokerNotInstalledError as exc:
        pytest.skip(f"the embedded broker is not installed: {exc}")
    try:
        yield broker
    finally:
        if broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)  # never leave it stopped (a failed test, an interrupt)
        broker.stop()


def test_a_paused_broker_is_survived_without_a_restart_and_nothing_is_lost(
    own_broker: EmbeddedBroker, tmp_path: Path, fault_report: list[str]
) -> None:
    bootstrap = own_broker.bootstrap
    assert own_broker.pid is not None
    dep = Deployment.create(bootstrap, tmp_path)
    s = dep.settings
    scenario = burn_scenario()
    timed = list(scenario.messages())
    # Before the pause: the healthy hour and the first 2 minutes of the outage; the rest is sent into
    # the stopped broker (buffered by the producer) and arrives after it.
    cut = scenario.start_ts + OUTAGE_AT + 120
    first = [(k, v) for ts, k, v in timed if ts < cut]
    rest = [(k, v) for ts, k, v in timed if ts >= cut]
    produced = first + rest

    kube = FakeKube(token="fault-suite-token").start()
    ctl = Controller(kube, NS)
    ctl.create("playback-api", "registry.example/playback-api:1.0")
    receiver = PagerDutyReceiver().start()
    port = free_port()
    offsets = GroupOffsets(bootstrap, s.app_id, s.topic_playback, s.partitions)
    try:
        with dep.worker("w", SLO_STREAM_WEB_PORT=str(port)) as worker, \
                notifier(dep, receiver, tmp_path / "notifier.log") as notif, \
                kube_bridge(dep, kube.kubeconfig(tmp_path / "kubeconfig"), tmp_path / "bridge.log", cluster=CLUSTER,
                            namespace=NS, SLO_STREAM_KUBE_BACKOFF_MAX="2") as bridge:
            procs = {"worker": worker, "notifier": notif, "kube bridge": bridge}
            pids = {n: p.pid for n, p in procs.items()}

            def logs() -> str:
                return "".join(f"--- {n}.log\n{tail(tmp_path / f'{n}.log', 2000)}\n"
                               for n in ("w", "notifier", "bridge"))

            kube.wait_for(lambda: {r.resource for r in kube.requests if r.watch} >= {"deployments", "replicasets"},
                          "the bridge's watches", timeout_s=60)
            dep.produce(first)
            wait_until(lambda: offsets.total() >= len(first), timeout_s=120, what="the first part committed",
                       alive=procs, logs=logs)
            new_hash = ctl.set_image("playback-api", "registry.example/playback-api:2.0")
            wait_until(lambda: "started" in phases(bootstrap, s), timeout_s=60, what="the rollout's start",
                       alive=procs, logs=logs)

            # The traffic source, not under test: a request timeout longer than the pause, so that it
            # waits rather than retries.
            producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                     max_in_flight_requests_per_connection=1, linger_ms=5,
                                     request_timeout_ms=90_000)
            os.kill(own_broker.pid, signal.SIGSTOP)
            paused = time.monotonic()
            # While the broker is stopped: live traffic buffers in the producer, the rollout goes on
            # in the API server and a new pod crash-loops.
            for key, value in rest:
                producer.send(s.topic_playback, key=key, value=value)
            ctl.progress("playback-api", updated=2, available=3)
            ctl.complete("playback-api")
            kube.apply("events", core_event(namespace=NS, kind="Pod", name=f"playback-api-{new_hash}-x1",
                                            reason="BackOff", message="Back-off restarting failed container"))
            time.sleep(max(0.0, paused + PAUSE_S - time.monotonic()))  # the pause itself
            os.kill(own_broker.pid, signal.SIGCONT)
            resumed = time.monotonic()
            paused_s = resumed - paused
            producer.flush(timeout=120)
            producer.close()

            commit_back = wait_until(lambda: offsets.total() > len(first) and time.monotonic(), timeout_s=120,
                                     what="the worker's first commit after the pause", alive=procs, logs=logs)
            wait_until(lambda: processed_all(port, s.partitions), timeout_s=180, what="everything processed",
                       alive=procs, logs=logs)
            rollouts_back = wait_until(lambda: "completed" in phases(bootstrap, s) and time.monotonic(),
                                       timeout_s=120, what="the completed rollout published", alive=procs,
                                       logs=logs)
            warning = wait_until(lambda: [e for e in read_json(bootstrap, s.topic_k8s_events, s.partitions)
                                          if e.get("reason") == "BackOff"], timeout_s=60,
                                 what="the Warning event published", alive=procs, logs=logs)

            back = read_topic(bootstrap, s.topic_playback, s.partitions)
            assert [(m.key, m.value) for m in back] == produced, "the topic holds what was produced, once"
            clean = Uninterrupted.run(dep, back)
            expected = {k: expected_actions(v) for k, v in chains(clean.alerts).items()}
            wait_until(lambda: {k: incidents(v) for k, v in pd_actions(receiver).items()} == expected,
                       timeout_s=120, what=f"PagerDuty to hold {expected}", alive=procs, logs=logs)
            changes = wait_until(lambda: [b["payload"]["summary"] for b in receiver.accepted("/v2/change/enqueue")]
                                 if len(receiver.accepted("/v2/change/enqueue")) >= 2 else None,
                                 timeout_s=60, what="the change events", alive=procs, logs=logs)

            def statuses_final() -> dict[str, dict] | None:
                return statuses_caught_up(bootstrap, s.topic_status, s.partitions, clean.statuses)

            statuses = wait_until(statuses_final, timeout_s=60, what="the final statuses", alive=procs, every_s=1.0)
            assigned = partitions_of(port)
            # The same three processes all along, still running.
            assert {n: p.pid for n, p in procs.items()} == pids
            assert all(p.poll() is None for p in procs.values())
            worker_log = (tmp_path / "w.log").read_text(errors="replace")
    finally:
        offsets.close()
        receiver.stop()
        kube.stop()

    starts = worker_log.count("SLOs from")  # one line per worker start (streams/cli.py)
    assert starts == 1, "the worker started once"
    slos = specs()
    for series, status in statuses.items():
        assert pick(status) == pick(clean.statuses[series]), series
        got = status["good_total"]["30d"]
        assert (got["bad"], got["total"]) == ground_truth(slos, produced, series, status["evaluated_at"]), series
    alerts = read_json(bootstrap, s.topic_alerts, s.partitions)
    assert chains(alerts) == chains(clean.alerts)
    page = page_key()
    assert [a["state"] for a in chains(alerts)[page]] == ["firing", "resolved"]
    assert [c.split(":")[0] for c in changes] == ["Rollout started", "Rollout completed"]
    rollouts = phases(bootstrap, s)
    assert rollouts[0] == "started" and "completed" in rollouts

    fault_report += [
        f"broker (pid {own_broker.pid}) stopped for {paused_s:.1f}s with {len(rest)} playback messages sent into "
        f"it, a rollout progressing and completing and a BackOff Warning in the API server meanwhile",
        f"after SIGCONT: worker committed again in {commit_back - resumed:.1f}s, the completed rollout was on "
        f"k8s.rollouts in {rollouts_back - resumed:.1f}s; rollout records {rollouts}; warning events {len(warning)}",
        f"worker, notifier, kube bridge: same pids {sorted(pids.values())}, one start each; the worker holds "
        f"{assigned[0] if assigned else '?'} partitions; "
        f"{worker_log.count('recovered state for partitions')} table recoveries logged (rejoining the group)",
        f"counts of {len(statuses)} series equal to the ground truth; alerts equal to the uninterrupted run; "
        "PagerDuty: " + "; ".join(f"{k.removeprefix('slo-stream/')}: {', '.join(v)}"
                                  for k, v in sorted(pd_actions(receiver).items())) + f"; changes {changes}",
    ]


def phases(bootstrap: str, s: object) -> list[str]:
    return [r["phase"] for r in read_json(bootstrap, s.topic_k8s_rollouts, s.partitions)  # type: ignore[attr-defined]
            if r.get("deployment") == "playback-api"]
