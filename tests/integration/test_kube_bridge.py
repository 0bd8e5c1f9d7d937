"""The kube bridge against a fake Kubernetes API server (tests/fake_kube.py) and the real broker.

The bridge runs the real ``kubernetes`` client (through a generated kubeconfig with a bearer token)
and a real kafka-python producer; the topics are read back with kafka-python consumers. One test runs
``python -m streams kube-bridge`` as a process; the others run its loop in a thread, so that they can
wait until each change is published before the controller writes the next one (the order the real
controller writes in, delivered by separate watches)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.adapters.kube_bridge import KubeBridge, load_api_client
from streams.adapters.processes import stop_group
from streams.core.wire.k8s_event import decode_event
from streams.core.wire.rollout import decode_rollout
from tests.fake_kube import Controller, FakeKube, core_event, now_iso, template_hash
from tests.integration.harness import ROOT, Deployment
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

CLUSTER = "eu-west-1"
NS = "playback"
TOKEN = "s3cr3t-bearer-token-4f9a"


def reading(dep: Deployment, topic: str) -> Iterator[Reader]:
    """A :class:`Reader` of one of the deployment's topics, closed after use (for fixtures)."""
    r = Reader(dep.bootstrap, topic, dep.settings.partitions)
    yield r
    r.close()


class Reader:
    """Everything a topic holds, read from the beginning; :meth:`until` polls for more with a deadline."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.messages: list[tuple[str, dict[str, Any]]] = []

    @property
    def values(self) -> list[dict[str, Any]]:
        return [v for _, v in self.messages]

    def poll(self) -> None:
        for records in self.consumer.poll(timeout_ms=100).values():
            self.messages += [(r.key.decode(), orjson.loads(r.value)) for r in records]

    def until(self, cond: Callable[[list[dict[str, Any]]], bool], what: str, timeout_s: float = 30.0,
              proc: subprocess.Popen[bytes] | None = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll()
            if cond(self.values):
                return self.values
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the bridge exited with {proc.returncode} before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; have {self.values}")

    def close(self) -> None:
        self.consumer.close()


def phases(values: list[dict[str, Any]], deployment: str = "playback-api") -> list[str]:
    return [v["phase"] for v in values if v["deployment"] == deployment]


@pytest.fixture
def dep(kafka_bootstrap: str, tmp_path: Path) -> Deployment:
    # One partition per topic: what the bridge published in one thread is read back in that order.
    return Deployment.create(kafka_bootstrap, tmp_path, partitions=1)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(token=TOKEN) as k:
        yield k


@pytest.fixture
def rollouts(dep: Deployment) -> Iterator[Reader]:
    yield from reading(dep, dep.settings.topic_k8s_rollouts)


@pytest.fixture
def events(dep: Deployment) -> Iterator[Reader]:
    yield from reading(dep, dep.settings.topic_k8s_events)


@contextlib.contextmanager
def running(dep: Deployment, kube: FakeKube, tmp_path: Path, *, token: str | None = None,
            namespaces: list[str] | None = None, **settings: Any) -> Iterator[KubeBridge]:
    """The bridge's loops (and its enforcer, when on) in a thread, until the block ends (then stopped
    and joined); ``token``: the bearer token of its kubeconfig (default: the fake server's)."""
    s = replace(dep.settings, kube_backoff_max_s=1.0, **settings)
    api = load_api_client(kubeconfig=kube.kubeconfig(tmp_path / f"kubeconfig-{token}", token=token), environ={})
    bridge = KubeBridge(s, cluster=CLUSTER, api_client=api, namespaces=namespaces or ())
    thread = threading.Thread(target=bridge.run, name="kube-bridge", daemon=True)
    thread.start()
    try:
        assert bridge.ready.wait(30), "the initial lists were not published"
        yield bridge
    finally:
        bridge.stop()
        thread.join(30)
        api.close()
        assert not thread.is_alive(), "the bridge did not stop"


def in_step(ctl: Controller, bridge: KubeBridge, timeout_s: float = 20.0) -> None:
    """After each write, wait until the bridge has published it (its resourceVersion is past it)."""

    def wait(resource: str, obj: dict[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        deadline = time.monotonic() + timeout_s
        while int(bridge.resource_version(resource) or 0) < rv:
            if time.monotonic() > deadline:
                raise AssertionError(f"the bridge did not publish {resource} at resourceVersion {rv}")
            time.sleep(0.005)

    ctl.on_apply = wait


def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    wait_for(cond, what, timeout_s, every_s=0.01)


# ---- the process ----------------------------------------------------------------------------------


def test_the_kube_bridge_process_publishes_a_rollout_that_starts_progresses_and_completes(
        dep: Deployment, kube: FakeKube, rollouts: Reader, events: Reader, tmp_path: Path) -> None:
    ctl = Controller(kube, NS)
    ctl.create("playback-api", "registry.example/playback-api:1.0")
    Controller(kube, "other-team").create("batch-job", "registry.example/batch:1")  # not watched
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env.update(dep.env)
    env["SLO_STREAM_KUBE_WATCH_TIMEOUT"] = "5"
    log_path = tmp_path / "bridge.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["timeout", "-k", "10", "120", sys.executable, "-m", "streams", "kube-bridge", "--cluster", CLUSTER,
             "--namespace", NS, "--kubeconfig", kube.kubeconfig(tmp_path / "kubeconfig"), "--loglevel", "debug"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            kube.wait_for(lambda: {r.resource for r in kube.requests if r.watch} >= {"deployments", "replicasets",
                                                                                    "events.k8s.io"},
                          "the bridge's three watches", timeout_s=60)
            new_hash = ctl.set_image("playback-api", "registry.example/playback-api:2.0")
            ctl.progress("playback-api", updated=2, available=3)
            ctl.progress("playback-api", updated=2, available=3)  # a resync: nothing new
            ctl.progress("playback-api", updated=3, available=3, total=4)
            ctl.complete("playback-api")
            kube.apply("events", core_event(namespace=NS, kind="Pod", name=f"playback-api-{new_hash}-q7x2k",
                                            reason="Started", message="Started container playback-api",
                                            type="Normal"))
            got = rollouts.until(lambda v: "completed" in phases(v), "the completed record", proc=proc)
            events.until(lambda v: len(v) == 1, "the event", proc=proc)
        finally:
            code = stop_group(proc)
    text = log_path.read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert phases(got) == ["started", "progressing", "progressing", "completed"]
    assert {v["deployment"] for v in got} == {"playback-api"}, "only the namespaces asked for"
    started, *_, completed = got
    assert rollouts.messages[0][0] == f"{CLUSTER}/{NS}/playback-api"
    assert (started["revision"], started["previous_revision"]) == ("2", "1")
    assert started["images"] == ["registry.example/playback-api:2.0"]
    assert started["template_hash"] in (new_hash, None), "known once the ReplicaSet's watch delivered it"
    assert completed["replicas"] == {"desired": 3, "updated": 3, "ready": 3, "available": 3}
    assert all(decode_rollout(v).to_json() == v for v in got)
    prefixes = tuple(f"{api}/namespaces/{NS}/" for api in ("/api/v1", "/apis/apps/v1", "/apis/events.k8s.io/v1"))
    assert all(r.path.startswith(prefixes) or r.path.rstrip("/") in ("/apis", "/api") for r in kube.requests), \
        "namespaced requests only"
    assert TOKEN not in text, "the bearer token appears in no log line"
    assert "kube bridge stopped" in text


# ---- rollouts -------------------------------------------------------------------------------------


def test_a_rollout_that_starts_progresses_and_completes_in_order(
        dep: Deployment, kube: FakeKube, rollouts: Reader, tmp_path: Path) -> None:
    ctl = Controller(kube, NS)
    ctl.create("playback-api", "registry.example/playback-api:1.0",
               annotations={"slo-stream.io/migration-from": "legacy", "slo-stream.io/migration-to": "kubernetes",
                            "slo-stream.io/traffic-percent": "10"})
    with running(dep, kube, tmp_path) as bridge:
        in_step(ctl, bridge)
        old_hash = template_hash(ctl.deployment("playback-api")["spec"]["template"])
        new_hash = ctl.set_image("playback-api", "registry.example/playback-api:2.0")
        ctl.progress("playback-api", updated=2, available=3)
        ctl.complete("playback-api")
        got = rollouts.until(lambda v: phases(v)[-1:] == ["completed"], "the completed record")
    assert phases(got) == ["started", "progressing", "completed"]
    for v in got:
        assert v["template_hash"] == new_hash and v["previous_template_hash"] == old_hash
        assert v["migration"] == {"from": "legacy", "to": "kubernetes", "traffic_percent": 10, "step": None,
                                  "reason": None}
        assert v["service"] == "playback-api" and v["cluster"] == CLUSTER
    assert got[1]["replicas"] == {"desired": 3, "updated": 2, "ready": 3, "available": 3}


def test_a_rollout_that_exceeds_its_progress_deadline_is_published_as_failed(
        dep: Deployment, kube: FakeKube, rollouts: Reader, tmp_path: Path) -> None:
    ctl = Controller(kube, NS)
    ctl.create("playback-api", "registry.example/playback-api:1.0")
    with running(dep, kube, tmp_path) as bridge:
        in_step(ctl, bridge)
        ctl.set_image("playback-api", "registry.example/playback-api:2.0-crashing")
        deadline_at = now_iso(5)
        ctl.fail("playback-api", at=deadline_at)
        got = rollouts.until(lambda v: "failed" in phases(v), "the failed record")
    assert phases(got) == ["started", "failed"]
    failed = got[1]
    assert failed["reason"] == "ProgressDeadlineExceeded" and "timed out progressing" in failed["message"]
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(failed["ts"])) == deadline_at, \
        "the time the controller declared it"


def test_a_rollback_is_published_as_rolled_back(
        dep: Deployment, kube: FakeKube, rollouts: Reader, tmp_path: Path) -> None:
    ctl = Controller(kube, NS)
    ctl.create("playback-api", "registry.example/playback-api:1.0")
    v1_hash = template_hash(ctl.deployment("playback-api")["spec"]["template"])
    ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    ctl.complete("playback-api")  # revision 2, before the bridge starts: it learns revision 1 from the ReplicaSets
    with running(dep, kube, tmp_path) as bridge:
        in_step(ctl, bridge)
        assert ctl.undo("playback-api", to_revision=1) == v1_hash
        ctl.complete("playback-api")
        got = rollouts.until(lambda v: "completed" in phases(v), "the completed record")
    assert phases(got) == ["rolled_back", "completed"]
    rb = got[0]
    assert (rb["revision"], rb["previous_revision"], rb["rollback_to_revision"]) == ("3", "2", "1")
    assert rb["template_hash"] == v1_hash and rb["images"] == ["registry.example/playback-api:1.0"]
    assert rb["previous_images"] == ["registry.example/playback-api:2.0"]


# ---- events ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("events_v1", [True, False],
                         ids=["from events.k8s.io/v1 when the server has it", "from core/v1 when it has not"])
def test_an_event_is_published_again_each_time_its_count_grows(
        dep: Deployment, events: Reader, tmp_path: Path, events_v1: bool) -> None:
    with FakeKube(token=TOKEN, events_v1=events_v1) as kube, running(dep, kube, tmp_path) as bridge:
        kube.apply("events", core_event(namespace=NS, kind="Pod", name="playback-api-0", reason="Odd",
                                        message="a type Kubernetes does not allow", type="Critical"))
        ev = core_event(namespace=NS, kind="Pod", name="playback-api-7d9f8-x2k4q", reason="BackOff",
                        message="Back-off restarting failed container")
        for count in (1, 2, 3):
            ev["count"] = count
            ev["lastTimestamp"] = now_iso()
            kube.apply("events", ev)
            ev = kube.get("events", NS, ev["metadata"]["name"])
        got = events.until(lambda v: len(v) >= 3, "three occurrences")
        assert len(got) == 3 and bridge.stats.get("skipped_events_bad_field") == 1, \
            "an Event that cannot be read is skipped (and counted), the stream goes on"
        wanted = "events.k8s.io" if events_v1 else "events"
        assert {r.resource for r in kube.requests if r.resource in ("events", "events.k8s.io")} == {wanted}, \
            "one Events API only: each Event is published once per occurrence"
        assert bridge.events_api == ("events.k8s.io/v1" if events_v1 else "core/v1")
    assert [decode_event(v, default_cluster=None).count for v in got] == [1, 2, 3]
    assert {k for k, _ in events.messages} == {f"{CLUSTER}/{NS}/Pod/playback-api-7d9f8-x2k4q"}
    assert all(v["cluster"] == CLUSTER and v["involvedObject"]["name"] == "playback-api-7d9f8-x2k4q"
               and v["reason"] == "BackOff" and "managedFields" not in v["metadata"] for v in got)


# ---- resume, bookmarks, 410 -------------------------------------------------------------------------


def test_a_dropped_connection_resumes_from_the_last_resource_version(
        dep: Deployment, kube: FakeKube, rollouts: Reader, tmp_path: Path) -> None:
    ctl = Controller(kube, NS)
    ctl.create("playback-api", "registry.example/playback-api:1.0")
    with running(dep, kube, tmp_path) as bridge:
        in_step(ctl, bridge)
        ctl.set_image("playback-api", "registry.example/playback-api:2.0")
        rv = bridge.resource_version("deployments")
        assert rv is not None
        lists = len(kube.requests_for("deployments", watch=False))
        watches = len(kube.requests_for("deployments", watch=True))
        kube.wait_for(lambda: kube.open_watches == 3, "three open watches")
        kube.drop_watches("deployments")
        kube.wait_for(lambda: len(kube.requests_for("deployments", watch=True)) > watches, "a new watch")
        resumed = kube.requests_for("deployments", watch=True)[watches]
        assert resumed.resource_version == rv and resumed.query["allowWatchBookmarks"] == "true"
        # a bookmark moves the resourceVersion on; the next resume starts from it
        kube.apply("events", core_event(namespace=NS, kind="Pod", name="p", reason="Pulled", message="m",
                                        type="Normal"))
        kube.wait_for(lambda: kube.open_watches == 3, "three open watches")
        kube.send_bookmarks()
        wait_until(lambda: bridge.resource_version("deployments") == str(kube.resource_version), "the bookmark")
        watches = len(kube.requests_for("deployments", watch=True))
        kube.drop_watches("deployments")
        kube.wait_for(lambda: len(kube.requests_for("deployments", watch=True)) > watches, "a new watch")
        assert kube.requests_for("deployments", watch=True)[watches].resource_version == str(kube.resource_version)
        ctl.complete("playback-api")
        got = rollouts.until(lambda v: "completed" in phases(v), "the completed record")
        assert len(kube.requests_for("deployments", watch=False)) == lists, "resumed, never relisted"
        assert bridge.stats.get("relists_deployments") == 0
    assert phases(got) == ["started", "completed"], "each record once"


@pytest.mark.parametrize("gone", ["event", "http"],
                         ids=["410 Gone as an ERROR watch event", "410 Gone as the watch's HTTP status"])
def test_a_relist_after_410_gone_publishes_what_changed_and_nothing_twice(
        dep: Deployment, rollouts: Reader, events: Reader, tmp_path: Path, gone: str) -> None:
    with FakeKube(token=TOKEN, gone=gone) as kube:
        ctl = Controller(kube, NS)
        ctl.create("playback-api", "registry.example/playback-api:1.0")
        ctl.create("playback-web", "registry.example/playback-web:1.0")
        e1 = kube.apply("events", core_event(namespace=NS, kind="Pod", name="playback-api-a", reason="BackOff",
                                             message="Back-off restarting failed container"))
        kube.apply("events", core_event(namespace=NS, kind="Pod", name="playback-web-b", reason="Pulled",
                                        message="Successfully pulled image", type="Normal"))
        with running(dep, kube, tmp_path) as bridge:
            in_step(ctl, bridge)
            ctl.set_image("playback-api", "registry.example/playback-api:2.0")
            ctl.complete("playback-api")
            events.until(lambda v: len(v) == 2, "the listed events")
            rollouts.until(lambda v: phases(v) == ["started", "completed"], "the first rollout")
            lists = {res: len(kube.requests_for(res, watch=False)) for res in ("deployments", "replicasets",
                                                                               "events.k8s.io")}
            # An outage: the watches stall, changes pile up, the server compacts its history.
            ctl.on_apply = None
            kube.wait_for(lambda: kube.open_watches == 3, "three open watches")
            kube.hold_watches()
            ctl.set_image("playback-web", "registry.example/playback-web:2.0")
            e1["count"], e1["lastTimestamp"] = 2, now_iso()
            kube.apply("events", e1)
            kube.apply("events", core_event(namespace=NS, kind="Pod", name="playback-web-c", reason="Unhealthy",
                                            message="Readiness probe failed"))
            kube.compact()
            kube.drop_watches()
            kube.hold_watches(False)
            kube.wait_for(lambda: all(len(kube.requests_for(res, watch=False)) > n for res, n in lists.items()),
                          "a relist of every resource")
            # Whatever the relist published went out before the watches restarted; these come after.
            in_step(ctl, bridge)
            ctl.complete("playback-web")
            kube.apply("events", core_event(namespace=NS, kind="Pod", name="playback-api-d", reason="Killing",
                                            message="Stopping container", type="Normal"))
            got_rollouts = rollouts.until(lambda v: "completed" in phases(v, "playback-web"), "the web rollout")
            got_events = events.until(lambda v: any(e["reason"] == "Killing" for e in v), "the last event")
            assert bridge.stats.get("relists_deployments") >= 1 and bridge.stats.get("relists_events") >= 1
            assert bridge.stats.get("events_already_published") >= 1, "the relist served e1 (count 1) again"
    occurrences = [(e["involvedObject"]["name"], e["count"]) for e in got_events]
    assert occurrences == [("playback-api-a", 1), ("playback-web-b", 1),  # the first list
                           ("playback-api-a", 2), ("playback-web-c", 1),  # the relist: only what changed
                           ("playback-api-d", 1)]                          # the watch after it
    assert [(v["deployment"], v["phase"]) for v in got_rollouts] == [
        ("playback-api", "started"), ("playback-api", "completed"),
        ("playback-web", "started"),  # seen by the relist
        ("playback-web", "completed"),
    ]
