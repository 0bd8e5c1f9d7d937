"""Enforcement against the fake Kubernetes API server (tests/fake_kube.py) and the real broker.

The kube bridge runs with the real ``kubernetes`` client, as a process (``python -m streams
kube-bridge`` with ``SLO_STREAM_ENFORCE=pause``) or its loop in a thread. Page alerts are published
to ``slo.alerts`` as the workers publish them; the fake records every request with its verb, body,
content type and bearer token, and authorizes them with a fake RBAC built from the manifests
themselves: the bridge's read role (docs/kube-bridge.md) and the enforcement role
(deploy/enforcement/rbac.yaml). Nothing waits with a sleep: each step polls with a deadline, and
"the enforcer has handled alert N" is read from its consumer group's committed offset (it commits
after acting and recording)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.adapters.enforcer import enforcer_group
from streams.adapters.kube_bridge import KubeBridge
from streams.adapters.processes import stop_group
from tests.fake_kube import Controller, FakeKube, Grant, rules_of
from tests.integration.harness import ROOT, Deployment, committed_offsets
from tests.integration.test_kube_bridge import Reader, reading
from tests.integration.test_kube_bridge import running as bridge_running
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

CLUSTER = "eu-west-1"
NS = "playback"
READER = "reader-token-0c7e51"  # the bridge's read role only
ENFORCER = "enforcer-token-9b2d44"  # read role + the enforcement role
PAUSE_BODY = {"spec": {"paused": True}}


def _yaml_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def read_role() -> set[Grant]:
    """The bridge's read-only ClusterRole, as docs/kube-bridge.md gives it."""
    text = (ROOT / "docs" / "kube-bridge.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        for doc in _yaml_docs(block):
            if doc.get("kind") == "ClusterRole" and doc["metadata"]["name"] == "slo-stream-kube-bridge":
                return rules_of(doc)
    raise AssertionError("docs/kube-bridge.md has no slo-stream-kube-bridge ClusterRole")


def enforcement_role() -> set[Grant]:
    docs = _yaml_docs((ROOT / "deploy" / "enforcement" / "rbac.yaml").read_text())
    roles = [d for d in docs if d["kind"] == "ClusterRole"]
    assert len(roles) == 1
    return rules_of(roles[0])


@pytest.fixture
def dep(kafka_bootstrap: str, tmp_path: Path) -> Deployment:
    # One partition: alerts are handled in the order they were published.
    return Deployment.create(kafka_bootstrap, tmp_path, partitions=1)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    read = read_role()
    with FakeKube(token=ENFORCER, grants={READER: read, ENFORCER: read | enforcement_role()}) as k:
        yield k


@pytest.fixture
def gates(dep: Deployment) -> Iterator[Reader]:
    yield from reading(dep, dep.settings.topic_rollout_gates)


# ---- helpers ----------------------------------------------------------------------------------------


def rollout_suspect(**changes: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "kind": "rollout", "score": 0.93, "rank": 1, "service": "playback-api", "cluster": CLUSTER,
        "namespace": NS, "deployment": "playback-api", "revision": "2", "previous_revision": "1",
        "images": ["registry.example/playback-api:2.0"], "previous_images": ["registry.example/playback-api:1.0"],
        "phase": "started", "rollback": False, "started_at": time.time() - 300, "same_cluster": True,
        "summary": "rollout of playback/playback-api to revision 2 (playback-api:2.0) in eu-west-1, started 4m "
                   "before the burn began; revision 2 errors 14.0% vs 0.1% on revision 1",
        "evidence": [{"type": "timing", "detail": "rollout started 4m00s before the burn began", "strength": 0.53},
                     {"type": "revision_error_ratio", "strength": 0.9,
                      "detail": "new revision 2 fails 14.00% of requests during the burn, previous 1 0.10%"}],
    }
    s.update(changes)
    return s


def page(*suspects: dict[str, Any], service: str = "playback-api", **changes: Any) -> dict[str, Any]:
    """A firing page on slo.alerts, as Alert.to_json() writes it."""
    cluster = changes.pop("burn_cluster", CLUSTER)
    severity = changes.get("severity", "page")
    a: dict[str, Any] = {
        "schema_version": 1, "slo": f"{service}-availability", "service": service,
        "dedup_key": f"slo-stream/{service}-availability/{severity}/cluster={cluster}/region=eu-west/"
                     "platform=kubernetes",
        "severity": "page", "state": "firing", "ts": int(time.time()) - 20, "started_at": int(time.time()) - 20,
        "dimensions": {"cluster": cluster, "region": "eu-west", "platform": "kubernetes"},
        "burn_rates": {"5m": 43.2, "1h": 28.8}, "condition": "1h+5m > 14.4", "threshold": 14.4,
        "error_budget_remaining": 0.8, "objective": 0.999, "links": {},
        "suspects": list(suspects) or [rollout_suspect()],
    }
    a.update(changes)
    return a


class Alerts:
    """Publishes slo.alerts records and tells when the enforcer has handled them all."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.sent = 0

    def publish(self, *alerts: dict[str, Any]) -> None:
        self.dep.produce([(a["dedup_key"].encode(), orjson.dumps(a)) for a in alerts],
                         topic=self.dep.settings.topic_alerts)
        self.sent += len(alerts)

    def wait_handled(self, what: str, timeout_s: float = 45.0,
                     proc: subprocess.Popen[bytes] | None = None) -> None:
        group = enforcer_group(self.dep.settings, CLUSTER)

        def done() -> bool:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the bridge exited with {proc.returncode} before {what}")
            got = committed_offsets(self.dep.bootstrap, group, self.dep.settings.topic_alerts, 1)
            return got[0] >= self.sent

        wait_until(done, what, timeout_s)


def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    wait_for(cond, what, timeout_s, every_s=0.05)


def running(dep: Deployment, kube: FakeKube, tmp_path: Path, *, token: str = ENFORCER,
            **settings: Any) -> contextlib.AbstractContextManager[KubeBridge]:
    """The bridge's loops (and its enforcer, when on) in a thread, until the block ends."""
    return bridge_running(dep, kube, tmp_path, token=token, namespaces=[NS], **settings)


@contextlib.contextmanager
def bridge_process(dep: Deployment, kube: FakeKube, tmp_path: Path, name: str,
                   **env_extra: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env.update(dep.env)
    env.update(env_extra)
    with open(tmp_path / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(
            ["timeout", "-k", "10", "180", sys.executable, "-m", "streams", "kube-bridge", "--cluster", CLUSTER,
             "--namespace", NS, "--kubeconfig", kube.kubeconfig(tmp_path / "kubeconfig", token=ENFORCER)],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            code = stop_group(proc)
            assert code == 0, (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]


def rolling_out(kube: FakeKube, *names: str) -> Controller:
    """Deployments at revision 1, then a rollout to revision 2 under way (1 of 3 pods updated)."""
    ctl = Controller(kube, NS)
    for name in names:
        ctl.create(name, f"registry.example/{name}:1.0")
        ctl.set_image(name, f"registry.example/{name}:2.0")
    return ctl


def beyond_read(kube: FakeKube, token: str) -> set[tuple[str, str]]:
    """(verb, resource) of every request ``token`` made that the read role alone would not need."""
    return {(r.verb, r.resource or "") for r in kube.requests
            if r.token == token and r.verb not in ("", "list", "watch")}


# ---- the whole path, as processes ---------------------------------------------------------------------


def test_a_page_blaming_a_rollout_in_progress_pauses_it_once_with_least_privilege(
        dep: Deployment, kube: FakeKube, gates: Reader, tmp_path: Path) -> None:
    ctl = rolling_out(kube, "playback-api")
    alerts = Alerts(dep)
    alert = page()
    with bridge_process(dep, kube, tmp_path, "bridge-1", SLO_STREAM_ENFORCE="pause") as proc:
        alerts.publish(alert)
        got = gates.until(lambda v: len(v) >= 1, "the rollout.gates record", timeout_s=60, proc=proc)
        alerts.wait_handled("the alert", proc=proc)
        alerts.publish(alert)  # delivered again (at least once): no second PATCH
        alerts.wait_handled("the same alert again", proc=proc)
    assert ctl.deployment("playback-api")["spec"]["paused"] is True
    patches = kube.patches()
    assert len(patches) == 1, patches
    p = patches[0]
    assert (p.path, p.status) == (f"/apis/apps/v1/namespaces/{NS}/deployments/playback-api", 200)
    assert p.body == PAUSE_BODY, "the body touches spec.paused and nothing else"
    assert p.content_type == "application/merge-patch+json"
    assert p.query.get("fieldManager") == "slo-stream-enforcer"
    assert p.token == ENFORCER
    reads = [r for r in kube.requests if r.verb == "get"]
    assert len(reads) == 1 and reads[0].at < p.at, "the Deployment is re-read once, before the PATCH"
    assert beyond_read(kube, ENFORCER) == {("get", "deployments"), ("patch", "deployments")}
    assert all(r.status not in (401, 403) for r in kube.requests), "nothing outside the two roles was asked"
    [(key, record)] = gates.messages
    assert key == f"{CLUSTER}/{NS}/playback-api@2"
    assert record["action"] == "paused" and record["alert"] == alert["dedup_key"]
    assert (record["cluster"], record["namespace"], record["deployment"], record["revision"]) == (
        CLUSTER, NS, "playback-api", "2")
    assert record["suspect"]["score"] == 0.93 and "14.0% vs 0.1%" in record["suspect"]["summary"]
    assert record["reasons"] and record["patch"] == PAUSE_BODY and abs(record["ts"] - time.time()) < 120
    assert got == [record]

    # A restart learns what was done from rollout.gates: the alert delivered a third time acts on nothing.
    requests_before = len(kube.requests)
    with bridge_process(dep, kube, tmp_path, "bridge-2", SLO_STREAM_ENFORCE="pause") as proc:
        alerts.publish(alert)
        alerts.wait_handled("the alert after the restart", proc=proc)
    assert len(kube.patches()) == 1, "no second PATCH after a restart"
    assert not [r for r in kube.requests[requests_before:] if r.verb == "get"], \
        "known from the ledger: not even re-read"
    gates.poll()
    assert len(gates.messages) == 1
    for name in ("bridge-1", "bridge-2"):
        text = (tmp_path / f"{name}.log").read_text(errors="replace")
        assert ENFORCER not in text, "the bearer token appears in no log line"
    assert "PAUSED Deployment playback/playback-api" in (tmp_path / "bridge-1.log").read_text()


# ---- what must not pause -------------------------------------------------------------------------------


def test_a_ticket_a_low_score_another_clusters_rollout_or_burn_sends_no_patch(
        dep: Deployment, kube: FakeKube, gates: Reader, tmp_path: Path) -> None:
    ctl = rolling_out(kube, "playback-api", "playback-web")
    alerts = Alerts(dep)
    with running(dep, kube, tmp_path, enforce="pause") as bridge:
        alerts.publish(
            page(severity="ticket", dedup_key="slo-stream/playback-api-availability/ticket/x"),
            page(rollout_suspect(score=0.62)),
            page(rollout_suspect(cluster="us-east-1"), burn_cluster="us-east-1"),
            page(burn_cluster="us-east-1"),
            page(state="resolved"),
        )
        # Then one that does pause (another Deployment): when it is done, the five before it are too.
        alerts.publish(page(rollout_suspect(deployment="playback-web", service="playback-web"),
                            service="playback-web"))
        gates.until(lambda v: len(v) >= 1, "the playback-web record")
        alerts.wait_handled("all six alerts")
        counts = bridge.stats.snapshot()
    assert [(p.path.rsplit("/", 1)[-1], p.body) for p in kube.patches()] == [("playback-web", PAUSE_BODY)]
    assert ctl.deployment("playback-api")["spec"].get("paused") is None
    assert [v["deployment"] for v in gates.values] == ["playback-web"], "decisions from the alert alone: no record"
    assert {k: v for k, v in counts.items() if k.startswith("enforce_ignored")} == {
        "enforce_ignored_not_a_page": 1, "enforce_ignored_below_score": 1, "enforce_ignored_other_cluster": 1,
        "enforce_ignored_burn_in_other_cluster": 1, "enforce_ignored_not_firing": 1}


def test_with_enforcement_off_the_bridge_reads_no_alert_and_sends_no_patch(
        dep: Deployment, kube: FakeKube, gates: Reader, tmp_path: Path) -> None:
    rolling_out(kube, "playback-api")
    alerts = Alerts(dep)
    alerts.publish(page())
    assert dep.settings.enforce == "off", "off by default"
    with running(dep, kube, tmp_path) as bridge:
        assert bridge.enforcer is None
        assert not [t for t in threading.enumerate() if t.name == "kube-enforcer"]
        kube.wait_for(lambda: kube.open_watches == 3, "the bridge's watches")
    group = enforcer_group(dep.settings, CLUSTER)
    assert committed_offsets(dep.bootstrap, group, dep.settings.topic_alerts, 1) == {0: 0}, "slo.alerts unread"
    assert kube.patches() == [] and all(r.method == "GET" and r.verb != "get" for r in kube.requests)
    # The same alert, with enforcement switched on: it was actionable all along.
    with running(dep, kube, tmp_path, enforce="pause"):
        gates.until(lambda v: len(v) >= 1, "the record")
    assert len(kube.patches()) == 1 and gates.values[0]["action"] == "paused"


# ---- skipped, with the reason -----------------------------------------------------------------------------


def test_with_the_read_role_only_the_patch_is_forbidden_and_recorded_as_skipped(
        dep: Deployment, kube: FakeKube, gates: Reader, tmp_path: Path) -> None:
    ctl = rolling_out(kube, "playback-api")
    alerts = Alerts(dep)
    with running(dep, kube, tmp_path, token=READER, enforce="pause"):
        alerts.publish(page())
        [record] = gates.until(lambda v: len(v) >= 1, "the skipped record")
        alerts.wait_handled("the alert")
    assert [p.status for p in kube.patches()] == [403]
    assert ctl.deployment("playback-api")["spec"].get("paused") is None
    assert record["action"] == "skipped" and record["skip_reason"] == "forbidden"
    assert "deploy/enforcement/rbac.yaml" in record["detail"] and record["patch"] is None


def test_a_deployment_already_paused_or_moved_on_is_skipped_with_the_reason(
        dep: Deployment, kube: FakeKube, gates: Reader, tmp_path: Path) -> None:
    ctl = rolling_out(kube, "playback-api", "playback-web")
    kube.merge_patch("deployments", NS, "playback-api", {"spec": {"paused": True}})  # a human was faster
    ctl.set_image("playback-web", "registry.example/playback-web:3.0")  # revision 3 replaced the suspect
    alerts = Alerts(dep)
    with running(dep, kube, tmp_path, enforce="pause"):
        alerts.publish(page(), page(rollout_suspect(deployment="playback-web", service="playback-web"),
                                    service="playback-web"))
        got = gates.until(lambda v: len(v) >= 2, "two skipped records")
        alerts.wait_handled("both alerts")
    assert kube.patches() == [], "nothing to patch: each was found so on the re-read"
    assert [(v["deployment"], v["action"], v["skip_reason"]) for v in got] == [
        ("playback-api", "skipped", "already_paused"), ("playback-web", "skipped", "revision_changed")]
    assert "revision 3" in got[1]["detail"]
