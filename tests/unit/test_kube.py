"""Rollout derivation (streams.core.kube) and event reading (streams.core.wire.k8s_event), decided purely.

Objects come from tests/fake_kube.py's Controller, which writes Deployments and ReplicaSets in the
order the real deployment controller does; here its change log is fed straight to the tracker (no
server), in order or in other orders that separate watches can deliver."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pytest

from streams.core.errors import RecordError
from streams.core.kube import EventDeduper, RolloutTracker, parse_migration
from streams.core.wire.k8s_event import KubeEvent, decode_event, event_record
from streams.core.wire.rollout import Migration, Replicas, RolloutRecord, decode_rollout
from tests.fake_kube import Controller, FakeKube, core_event, template_hash, to_events_v1

NOW = 1_800_000_000.0
NS = "playback"


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Sim:
    """A Controller over an unstarted FakeKube (an in-memory store) and a tracker fed its changes."""

    def __init__(self, *, cluster: str = "eu-west-1") -> None:
        self.kube = FakeKube()
        self.ctl = Controller(self.kube, NS)
        self.tracker = RolloutTracker(cluster=cluster)
        self.seen = 0
        self.now = NOW

    def feed(self, order: str = "as-written") -> list[dict[str, Any]]:
        """Feed every change since the last feed; ``order`` "replicasets-first" / "deployments-first"
        deliver one watch's changes before the other's, as two watch threads may."""
        changes = self.kube.changes(self.seen)
        if changes:
            self.seen = changes[-1][0]
        if order == "replicasets-first":
            changes.sort(key=lambda e: (e[1] != "replicasets", e[0]))
        elif order == "deployments-first":
            changes.sort(key=lambda e: (e[1] != "deployments", e[0]))
        records: list[RolloutRecord] = []
        for _, resource, kind, obj in changes:
            self.now += 1
            if kind == "DELETED":
                if resource == "deployments":
                    self.tracker.forget(obj["metadata"]["namespace"], obj["metadata"]["name"])
                continue
            if resource == "deployments":
                records += self.tracker.apply_deployment(obj, now=self.now)
            else:
                records += self.tracker.apply_replicaset(obj, now=self.now)
        for r in records:
            assert decode_rollout(r.to_json()) == r, "every record the tracker makes is a valid k8s.rollouts value"
        return as_json(records)


def as_json(records: list[RolloutRecord]) -> list[dict[str, Any]]:
    """The records as they travel on k8s.rollouts."""
    return [r.to_json() for r in records]


def phases(records: list[dict[str, Any]]) -> list[str]:
    return [r["phase"] for r in records]


@pytest.fixture
def sim() -> Sim:
    s = Sim()
    s.ctl.create("playback-api", "registry.example/playback-api:1.0")
    return s


# ---- rollouts: phases ----------------------------------------------------------------------------


def test_first_sight_of_a_rolled_out_deployment_publishes_nothing(sim: Sim) -> None:
    assert sim.feed() == []
    state = sim.tracker.state(NS, "playback-api")
    assert state is not None and state.revision == 1 and not state.in_flight


def test_first_sight_of_a_deployment_mid_rollout_publishes_progressing() -> None:
    s = Sim()
    s.ctl.create("playback-api", "registry.example/playback-api:1.0")
    s.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    # the bridge starts now: it lists the current objects only
    made: list[RolloutRecord] = []
    for rs in s.ctl.replicasets("playback-api"):
        made += s.tracker.apply_replicaset(rs, now=NOW)
    made += s.tracker.apply_deployment(s.ctl.deployment("playback-api"), now=NOW)
    records = as_json(made)
    assert phases(records) == ["progressing"]
    r = records[0]
    assert r["revision"] == "2" and r["previous_revision"] == "1", "the previous revision comes from the old ReplicaSet"
    assert r["previous_images"] == ["registry.example/playback-api:1.0"]
    assert r["replicas"] == {"desired": 3, "updated": 1, "ready": 3, "available": 3}


@pytest.mark.parametrize("order", ["as-written", "replicasets-first", "deployments-first"],
                         ids=lambda o: f"watches deliver {o.replace('-', ' ')}")
def test_a_rollout_starts_progresses_on_each_change_of_counts_and_completes(sim: Sim, order: str) -> None:
    sim.feed()
    new_hash = sim.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    sim.ctl.progress("playback-api", updated=2, available=3)
    sim.ctl.progress("playback-api", updated=2, available=3)  # a resync of the same counts
    sim.ctl.progress("playback-api", updated=3, available=3, total=4)
    sim.ctl.complete("playback-api")
    records = sim.feed(order)
    assert phases(records) == ["started", "progressing", "progressing", "completed"]
    started = records[0]
    assert started["revision"] == "2" and started["previous_revision"] == "1"
    assert started["images"] == ["registry.example/playback-api:2.0"]
    assert started["previous_images"] == ["registry.example/playback-api:1.0"]
    assert started["service"] == "playback-api" and started["cluster"] == "eu-west-1"
    assert started["reason"] == "ReplicaSetUpdated" and started["migration"] is None
    if order != "deployments-first":
        assert started["template_hash"] == new_hash, "the new ReplicaSet's pod-template-hash"
    assert records[-1]["template_hash"] == (new_hash if order != "deployments-first" else None)
    assert records[-1]["replicas"] == {"desired": 3, "updated": 3, "ready": 3, "available": 3}
    assert all(r["previous_revision"] == "1" for r in records), "every record of the rollout names what it replaced"
    ts = [r["ts"] for r in records]
    assert ts == sorted(ts), "records of one deployment never go back in time"


def test_an_identical_resync_or_relist_publishes_nothing(sim: Sim) -> None:
    sim.feed()
    sim.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    assert phases(sim.feed()) == ["started"]
    for rs in sim.ctl.replicasets("playback-api"):
        assert sim.tracker.apply_replicaset(rs, now=NOW + 99) == []
    assert sim.tracker.apply_deployment(sim.ctl.deployment("playback-api"), now=NOW + 99) == []


def test_a_template_edit_is_not_a_start_until_the_controller_gives_it_a_revision(sim: Sim) -> None:
    sim.feed()
    dep = sim.ctl.deployment("playback-api")
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/playback-api:2.0"
    dep["metadata"]["generation"] += 1
    assert sim.tracker.apply_deployment(dep, now=NOW) == []
    state = sim.tracker.state(NS, "playback-api")
    assert state is not None and state.images == ("registry.example/playback-api:1.0",), \
        "revision 1 keeps its own images"


def test_a_scale_change_of_a_rolled_out_deployment_is_not_a_rollout(sim: Sim) -> None:
    sim.feed()
    dep = sim.ctl.deployment("playback-api")
    dep["spec"]["replicas"] = 5
    dep["metadata"]["generation"] += 1
    dep["status"].update({"observedGeneration": dep["metadata"]["generation"], "updatedReplicas": 3,
                          "availableReplicas": 3})
    sim.kube.apply("deployments", dep)
    dep["status"].update({"updatedReplicas": 5, "availableReplicas": 5, "readyReplicas": 5, "replicas": 5})
    dep["spec"]["replicas"] = 5
    sim.kube.apply("deployments", dep)
    assert sim.feed() == []


def test_a_progress_deadline_exceeded_publishes_failed_at_the_conditions_time(sim: Sim) -> None:
    sim.feed()
    sim.ctl.set_image("playback-api", "registry.example/playback-api:2.0-broken")
    sim.ctl.fail("playback-api", at="2027-01-15T08:00:00Z")
    sim.ctl.fail("playback-api", at="2027-01-15T08:00:00Z")  # resync
    records = sim.feed()
    assert phases(records) == ["started", "failed"]
    failed = records[1]
    assert failed["ts"] == at("2027-01-15T08:00:00Z"), "when the controller declared the deadline exceeded"
    assert failed["reason"] == "ProgressDeadlineExceeded"
    rs_name = f'playback-api-{template_hash(sim.ctl.deployment("playback-api")["spec"]["template"])}'
    assert failed["message"] == f'ReplicaSet "{rs_name}" has timed out progressing.'


def test_failed_takes_the_conditions_time_when_it_is_later_than_the_start() -> None:
    s = Sim()
    s.ctl.create("playback-api", "registry.example/playback-api:1.0")
    s.feed()
    s.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    s.feed()
    s.ctl.fail("playback-api", at="2030-01-01T00:00:00Z")
    (failed,) = s.feed()
    assert failed["phase"] == "failed" and failed["ts"] == at("2030-01-01T00:00:00Z")


def test_a_failed_rollout_that_recovers_completes(sim: Sim) -> None:
    sim.feed()
    sim.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    sim.ctl.fail("playback-api")
    sim.ctl.complete("playback-api")
    assert phases(sim.feed()) == ["started", "failed", "completed"]


def test_pausing_a_rollout_publishes_paused_and_resuming_it_progressing(sim: Sim) -> None:
    sim.feed()
    sim.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    dep = sim.ctl.deployment("playback-api")
    dep["spec"]["paused"] = True
    sim.kube.apply("deployments", dep)
    sim.kube.apply("deployments", dep)  # resync while paused
    dep["spec"]["paused"] = False
    sim.kube.apply("deployments", dep)
    sim.ctl.complete("playback-api")
    records = sim.feed()
    assert phases(records) == ["started", "paused", "progressing", "completed"]
    assert records[1]["reason"] == "DeploymentPaused"


# ---- rollouts: rollbacks -------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["as-written", "replicasets-first", "deployments-first"],
                         ids=lambda o: f"rollout undo is rolled_back when watches deliver {o.replace('-', ' ')}")
def test_undo_to_an_earlier_revision_publishes_rolled_back(sim: Sim, order: str) -> None:
    sim.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    sim.ctl.complete("playback-api")
    sim.feed(order)
    old_hash = sim.ctl.undo("playback-api", to_revision=1)
    sim.ctl.complete("playback-api")
    records = sim.feed(order)
    assert phases(records) == ["rolled_back", "completed"]
    rb = records[0]
    assert rb["revision"] == "3" and rb["previous_revision"] == "2" and rb["rollback_to_revision"] == "1"
    assert rb["images"] == ["registry.example/playback-api:1.0"]
    assert rb["previous_images"] == ["registry.example/playback-api:2.0"]
    assert rb["template_hash"] == old_hash, "the old ReplicaSet, relabelled with the new revision"
    assert rb["message"] == "revision 3 restores the template of revision 1"


def test_a_rollback_is_recognised_after_a_restart_from_the_old_replicasets_alone(sim: Sim) -> None:
    sim.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    sim.ctl.complete("playback-api")
    # a new bridge: it lists the ReplicaSets (revisions 1 and 2) and the Deployment (revision 2)
    fresh = RolloutTracker(cluster="eu-west-1")
    for rs in sim.ctl.replicasets("playback-api"):
        assert fresh.apply_replicaset(rs, now=NOW) == []
    assert fresh.apply_deployment(sim.ctl.deployment("playback-api"), now=NOW) == []
    sim.seen = sim.kube.resource_version
    sim.tracker = fresh
    sim.ctl.undo("playback-api", to_revision=1)
    assert phases(sim.feed())[0] == "rolled_back"


def test_a_change_of_configuration_alone_is_a_start_not_a_rollback(sim: Sim) -> None:
    sim.feed()
    sim.ctl.set_image("playback-api", "registry.example/playback-api:1.0", env={"LOG_LEVEL": "debug"})
    sim.ctl.complete("playback-api")
    sim.ctl.set_image("playback-api", "registry.example/playback-api:1.0", env={"LOG_LEVEL": "info"})
    records = sim.feed()
    assert phases(records) == ["started", "completed", "started"]


def test_the_images_of_an_earlier_revision_with_other_configuration_are_a_rollback(sim: Sim) -> None:
    sim.feed()
    sim.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    sim.ctl.complete("playback-api")
    sim.ctl.set_image("playback-api", "registry.example/playback-api:1.0", env={"FEATURE_X": "off"})
    records = sim.feed()
    assert phases(records) == ["started", "completed", "rolled_back"]
    assert records[-1]["rollback_to_revision"] == "1"


def test_a_deployment_deleted_and_created_again_is_seen_for_the_first_time(sim: Sim) -> None:
    sim.feed()
    sim.kube.delete("deployments", NS, "playback-api")
    sim.feed()
    assert sim.tracker.state(NS, "playback-api") is None
    sim.ctl.create("playback-api", "registry.example/playback-api:9.0")
    assert sim.feed() == []


def test_an_unpublished_observation_is_derived_again() -> None:
    s = Sim()
    s.ctl.create("playback-api", "registry.example/playback-api:1.0")
    s.feed()
    s.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    dep = s.ctl.deployment("playback-api")
    first = s.tracker.observe_deployment(dep, now=NOW)  # publishing failed: not committed
    again = s.tracker.observe_deployment(dep, now=NOW)
    assert phases(as_json(first.records)) == ["started"] and again.records == first.records
    s.tracker.commit(again)
    assert s.tracker.observe_deployment(dep, now=NOW).records == []


def test_retain_after_a_relist_forgets_deployments_that_are_gone(sim: Sim) -> None:
    sim.feed()
    assert sim.tracker.retain([], namespace="other") == []
    assert sim.tracker.retain([], namespace=NS) == [(NS, "playback-api")]
    assert sim.tracker.state(NS, "playback-api") is None


def test_the_revision_history_is_bounded() -> None:
    s = Sim()
    s.tracker = RolloutTracker(cluster="c1", max_revisions=4)
    s.ctl.create("playback-api", "registry.example/playback-api:0")
    for i in range(1, 10):
        s.ctl.set_image("playback-api", f"registry.example/playback-api:{i}")
        s.ctl.complete("playback-api")
    s.feed()
    (history,) = s.tracker._history.values()
    assert sorted(history) == [7, 8, 9, 10]


# ---- rollouts: service, names, migration ----------------------------------------------------------


@pytest.mark.parametrize(("labels", "service"), [
    ({"app.kubernetes.io/name": "playback-api", "app": "other"}, "playback-api"),
    ({"app": "playback-edge"}, "playback-edge"),
    ({}, "playback-api"),
    ({"app.kubernetes.io/name": "Not_A_Name"}, "playback-api"),
], ids=["the app.kubernetes.io/name label names the service", "else the app label",
        "else the template's labels or the deployment's name", "an invalid label value is passed over"])
def test_the_service_of_a_rollout(labels: dict[str, str], service: str) -> None:
    s = Sim()
    s.ctl.create("playback-api", "registry.example/playback-api:1.0", labels=labels)
    s.feed()
    s.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    s.feed()  # the template labels are the deployment name's, so the last fallback is exercised too
    dep = s.ctl.deployment("playback-api")
    dep["spec"]["template"]["metadata"]["labels"] = {}
    dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "7"
    (rec,) = s.tracker.apply_deployment(dep, now=NOW + 50)
    assert rec.service == service


@pytest.mark.parametrize(("field", "value"), [
    ("namespace", "Bad_Namespace"),
    ("name", "bad/name"),
    ("name", ""),
    ("namespace", None),
], ids=["an invalid namespace is refused", "a name with a slash is refused", "an empty name is refused",
        "a missing namespace is refused"])
def test_objects_whose_names_cannot_be_keys_are_refused_with_a_reason(sim: Sim, field: str, value: Any) -> None:
    dep = sim.ctl.deployment("playback-api")
    dep["metadata"][field] = value
    with pytest.raises(RecordError) as exc:
        sim.tracker.observe_deployment(dep, now=NOW)
    assert exc.value.reason in ("bad_field", "missing_field") and f"metadata.{field}" in exc.value.detail


def test_an_invalid_cluster_name_is_refused() -> None:
    with pytest.raises(RecordError):
        RolloutTracker(cluster="eu west 1")


MIGRATION = {"slo-stream.io/migration-from": "legacy", "slo-stream.io/migration-to": "kubernetes",
             "slo-stream.io/traffic-percent": "25", "slo-stream.io/migration-step": "canary 2 of 5"}


@pytest.mark.parametrize(("annotations", "expected"), [
    ({}, None),
    (MIGRATION, Migration(source="legacy", target="kubernetes", traffic_percent=25, step="canary 2 of 5")),
    ({**MIGRATION, "slo-stream.io/traffic-percent": "12.5%"},
     Migration(source="legacy", target="kubernetes", traffic_percent=12.5, step="canary 2 of 5")),
    ({"slo-stream.io/migration-to": "kubernetes"}, Migration(target="kubernetes")),
    ({**MIGRATION, "slo-stream.io/traffic-percent": "150"},
     Migration(source="legacy", target="kubernetes", step="canary 2 of 5",
               reason="slo-stream.io/traffic-percent='150' is not a number in 0..100")),
    ({**MIGRATION, "slo-stream.io/traffic-percent": "nan", "slo-stream.io/migration-from": "Legacy DC"},
     Migration(target="kubernetes", step="canary 2 of 5",
               reason="slo-stream.io/migration-from='Legacy DC' is not a lowercase DNS label; "
                      "slo-stream.io/traffic-percent='nan' is not a number in 0..100")),
    ({**MIGRATION, "slo-stream.io/migration-step": "line one\nline two"},
     Migration(source="legacy", target="kubernetes", traffic_percent=25, step="line one line two")),
], ids=["no migration annotation: no migration", "a full migration step", "a fractional percent with a % sign",
        "only the target", "a percent above 100 is dropped with a reason",
        "every bad value is dropped and explained", "the step is one line"])
def test_migration_annotations(annotations: dict[str, str], expected: Migration | None) -> None:
    got = parse_migration(annotations)
    assert got == expected
    if got is not None:
        assert Migration.from_json(got.to_json()) == got, "it travels on k8s.rollouts as it was parsed"


def test_a_too_long_migration_step_is_cut_with_a_reason() -> None:
    m = parse_migration({"slo-stream.io/migration-step": "x" * 1000})
    assert m is not None and m.step == "x" * 256
    assert m.reason == "slo-stream.io/migration-step cut to 256 characters"


def test_a_migration_step_rides_on_rollout_records_and_a_traffic_shift_alone_publishes_one(sim: Sim) -> None:
    sim.feed()
    sim.ctl.annotate("playback-api", MIGRATION)
    sim.ctl.set_image("playback-api", "registry.example/playback-api:2.0")
    sim.ctl.complete("playback-api")
    sim.ctl.annotate("playback-api", {"slo-stream.io/traffic-percent": "50"})
    sim.ctl.annotate("playback-api", {"slo-stream.io/traffic-percent": "50"})  # resync
    records = sim.feed()
    assert phases(records) == ["completed", "started", "completed", "completed"]
    first = records[0]
    migration = parse_migration(MIGRATION)
    assert migration is not None
    assert first["reason"] == "MigrationStepChanged" and first["migration"] == migration.to_json()
    assert records[1]["migration"]["traffic_percent"] == 25
    shift = records[-1]
    assert shift["reason"] == "MigrationStepChanged" and shift["migration"]["traffic_percent"] == 50
    assert shift["revision"] == "2"


# ---- k8s.rollouts records --------------------------------------------------------------------------


def rollout(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "schema_version": 1, "ts": NOW, "cluster": "eu-west-1", "namespace": NS, "deployment": "playback-api",
        "service": "playback-api", "revision": "2", "previous_revision": "1", "template_hash": "abc",
        "previous_template_hash": None, "images": ["r/a:2"], "previous_images": ["r/a:1"], "phase": "started",
        "replicas": {"desired": 3, "updated": 1, "ready": 3, "available": 3}, "reason": None, "message": None,
        "rollback_to_revision": None, "migration": None,
    }
    r.update(over)
    return r


def test_a_rollout_record_parses_to_itself() -> None:
    assert decode_rollout(rollout()).to_json() == rollout()


def test_an_older_writers_record_with_integer_revisions_and_fewer_fields_is_read() -> None:
    older = {"schema_version": 1, "ts": 60, "cluster": "eu-west-1", "namespace": "playback",
             "deployment": "playback-api", "service": "playback-api", "revision": 42, "previous_revision": 41,
             "images": ["registry.example/playback-api:42"], "phase": "completed"}
    parsed = decode_rollout(older)
    assert parsed.revision == "42" and parsed.previous_revision == "41" and parsed.ts == 60.0
    assert parsed.replicas == Replicas(desired=0, updated=0, ready=0, available=0)
    assert parsed.migration is None and parsed.template_hash is None


@pytest.mark.parametrize(("over", "reason", "field"), [
    ({"phase": "exploded"}, "bad_field", "phase"),
    ({"phase": None}, "missing_field", "phase"),
    ({"ts": "yesterday"}, "bad_field", "ts"),
    ({"ts": True}, "bad_field", "ts"),
    ({"schema_version": 2}, "unknown_schema_version", "schema_version"),
    ({"namespace": "Playback"}, "bad_field", "namespace"),
    ({"deployment": "a/b"}, "bad_field", "deployment"),
    ({"cluster": ""}, "missing_field", "cluster"),
    ({"cluster": 7}, "bad_field", "cluster"),
    ({"namespace": ["playback"]}, "bad_field", "namespace"),
    ({"deployment": {"name": "x"}}, "bad_field", "deployment"),
    ({"revision": None}, "missing_field", "revision"),
    ({"revision": ["2"]}, "bad_field", "revision"),
    ({"images": "r/a:2"}, "bad_field", "images"),
    ({"replicas": {"desired": -1}}, "bad_field", "replicas.desired"),
    ({"migration": {"from": "legacy", "to": "kubernetes", "traffic_percent": 101}}, "bad_field",
     "migration.traffic_percent"),
    ({"migration": "legacy->kubernetes"}, "bad_field", "migration"),
], ids=["an unknown phase", "no phase", "a ts that is not a number", "a boolean ts", "a later schema version",
        "an uppercase namespace", "a deployment name with a slash", "an empty cluster", "a number as cluster",
        "a list as namespace", "an object as deployment", "no revision",
        "a revision that is a list", "images that are not a list", "a negative replica count",
        "a migration percent above 100", "a migration that is not an object"])
def test_an_invalid_rollout_record_is_refused_naming_the_field(over: dict[str, Any], reason: str, field: str) -> None:
    with pytest.raises(RecordError) as exc:
        decode_rollout(rollout(**over))
    assert exc.value.reason == reason and field in exc.value.detail
    assert isinstance(exc.value, ValueError)


# ---- events ------------------------------------------------------------------------------------------


def backoff(**over: Any) -> dict[str, Any]:
    ev = core_event(namespace=NS, kind="Pod", name="playback-api-7d9f8-x2k4q", reason="BackOff",
                    message="Back-off restarting failed container", count=3,
                    first="2027-01-15T08:00:00Z", last="2027-01-15T08:05:00Z", uid="e-uid-1")
    ev["metadata"]["resourceVersion"] = "501"
    ev.update(over)
    return ev


def exporter_record() -> dict[str, Any]:
    """What kubernetes-event-exporter's Kafka sink writes: the core/v1 Event (no managedFields) plus
    clusterName, involvedObject extended by labels, annotations and ownerReferences."""
    ev = backoff()
    del ev["metadata"]["managedFields"]
    ev["clusterName"] = "us-east-2"
    ev["involvedObject"].update({
        "labels": {"app.kubernetes.io/name": "playback-api", "pod-template-hash": "7d9f8"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2027-01-15T07:00:00Z"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "playback-api-7d9f8",
                             "uid": "rs-uid", "controller": True, "blockOwnerDeletion": True}],
    })
    return ev


def events_v1(**over: Any) -> dict[str, Any]:
    """An events.k8s.io/v1 Event written through the new API: series, note, regarding, no count."""
    ev: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "playback-api-7d9f8-x2k4q.18a", "namespace": NS, "uid": "e-uid-2",
                     "resourceVersion": "777", "creationTimestamp": "2027-01-15T08:00:00Z",
                     "managedFields": [{"manager": "kubelet"}]},
        "eventTime": "2027-01-15T08:00:00.123456Z",
        "series": {"count": 7, "lastObservedTime": "2027-01-15T08:09:00.500000Z"},
        "reportingController": "kubelet", "reportingInstance": "node-1", "action": "Killing",
        "reason": "Unhealthy", "type": "Warning",
        "regarding": {"kind": "Pod", "namespace": NS, "name": "playback-api-7d9f8-x2k4q", "uid": "pod-uid",
                      "apiVersion": "v1", "fieldPath": "spec.containers{playback-api}"},
        "note": "Liveness probe failed: HTTP probe failed with statuscode: 500",
    }
    ev.update(over)
    return ev


def test_a_core_v1_event_is_published_whole_without_managed_fields_keyed_by_its_object() -> None:
    ev = backoff()
    key, value, norm = event_record(ev, cluster="eu-west-1")
    assert key == "eu-west-1/playback/Pod/playback-api-7d9f8-x2k4q"
    assert "managedFields" not in value["metadata"] and value["metadata"]["uid"] == "e-uid-1"
    assert value["cluster"] == "eu-west-1" and value["schema_version"] == 1
    assert {k: v for k, v in value.items() if k not in ("metadata", "cluster", "schema_version")} == \
        {k: v for k, v in ev.items() if k != "metadata"}, "otherwise the Event as the API served it"
    assert norm.count == 3 and norm.last_ts == at("2027-01-15T08:05:00Z")


def test_an_events_k8s_io_v1_event_also_carries_the_core_v1_names() -> None:
    key, value, _ = event_record(events_v1(), cluster="eu-west-1")
    assert key == "eu-west-1/playback/Pod/playback-api-7d9f8-x2k4q"
    assert value["involvedObject"] == events_v1()["regarding"] and value["regarding"] == events_v1()["regarding"]
    assert value["message"] == value["note"] == "Liveness probe failed: HTTP probe failed with statuscode: 500"
    assert value["count"] == 7 and value["lastTimestamp"] == "2027-01-15T08:09:00Z"
    assert value["reason"] == "Unhealthy" and value["type"] == "Warning"
    assert "managedFields" not in value["metadata"]


@pytest.mark.parametrize("writer", ["our bridge, core/v1", "our bridge, events.k8s.io/v1", "a raw core/v1 Event",
                                    "a raw events.k8s.io/v1 Event", "kubernetes-event-exporter"])
def test_every_writers_event_normalises_to_the_same_shape(writer: str) -> None:
    doc = {
        "our bridge, core/v1": lambda: event_record(backoff(), cluster="eu-west-1")[1],
        "our bridge, events.k8s.io/v1": lambda: event_record(to_events_v1(backoff()), cluster="eu-west-1")[1],
        "a raw core/v1 Event": backoff,
        "a raw events.k8s.io/v1 Event": lambda: to_events_v1(backoff()),
        "kubernetes-event-exporter": exporter_record,
    }[writer]()
    n = decode_event(doc, default_cluster="eu-west-1")
    assert n.cluster == ("us-east-2" if writer == "kubernetes-event-exporter" else "eu-west-1")
    assert (n.namespace, n.kind, n.name) == (NS, "Pod", "playback-api-7d9f8-x2k4q")
    assert (n.uid, n.reason, n.type, n.count) == ("e-uid-1", "BackOff", "Warning", 3)
    assert n.message == "Back-off restarting failed container"
    assert n.last_ts - n.first_ts == 300.0
    assert n.source == "kubelet" and n.resource_version == "501"
    assert n.api == ("events.k8s.io/v1" if "events.k8s.io" in writer else "core/v1")


def test_the_exporters_labels_and_owner_reach_the_normalised_event() -> None:
    n = decode_event(exporter_record(), default_cluster=None)
    assert dict(n.labels) == {"app.kubernetes.io/name": "playback-api", "pod-template-hash": "7d9f8"}
    assert (n.owner_kind, n.owner_name) == ("ReplicaSet", "playback-api-7d9f8")
    assert n.key == "us-east-2/playback/Pod/playback-api-7d9f8-x2k4q"


def test_an_events_k8s_io_v1_series_gives_count_and_last_time() -> None:
    n = decode_event(events_v1(), default_cluster="eu-west-1")
    assert n.count == 7 and n.api == "events.k8s.io/v1"
    assert n.first_ts == at("2027-01-15T08:00:00.123456Z"), "eventTime"
    assert n.last_ts == at("2027-01-15T08:09:00.500000Z"), "series.lastObservedTime"
    assert n.message.startswith("Liveness probe failed") and dict(n.labels) == {} and n.owner_kind is None


def test_a_core_event_written_through_the_new_api_gets_count_and_last_timestamp() -> None:
    ev = backoff(count=None, firstTimestamp=None, lastTimestamp=None, eventTime="2027-01-15T08:00:00.250000Z",
                 series={"count": 4, "lastObservedTime": "2027-01-15T08:01:00.000000Z"})
    _, value, norm = event_record(ev, cluster="c1")
    assert value["count"] == 4 and norm.count == 4
    assert value["firstTimestamp"] == "2027-01-15T08:00:00Z" and value["lastTimestamp"] == "2027-01-15T08:01:00Z"


def test_an_event_about_a_cluster_scoped_object_has_an_empty_namespace_in_its_key() -> None:
    ev = backoff()
    ev["involvedObject"] = {"kind": "Node", "name": "ip-10-0-0-1.eu-west-1.compute.internal", "uid": "n"}
    key, _, norm = event_record(ev, cluster="c1")
    assert key == "c1//Node/ip-10-0-0-1.eu-west-1.compute.internal" and norm.namespace == ""


@pytest.mark.parametrize(("mutate", "reason", "field"), [
    (lambda e: e.pop("involvedObject"), "missing_field", "involvedObject"),
    (lambda e: e["involvedObject"].update(name="a/b"), "bad_field", "involvedObject.name"),
    (lambda e: e["involvedObject"].update(namespace="Bad NS"), "bad_field", "involvedObject.namespace"),
    (lambda e: e["involvedObject"].pop("kind"), "missing_field", "involvedObject.kind"),
    (lambda e: e.update(type="Critical"), "bad_field", "type"),
    (lambda e: e.update(type=None), "missing_field", "type"),
    (lambda e: e.update(lastTimestamp="last tuesday"), "bad_field", "lastTimestamp"),
    (lambda e: e.update(schema_version=3), "unknown_schema_version", "schema_version"),
    (lambda e: e.update(cluster="bad cluster"), "bad_field", "cluster"),
    (lambda e: e["metadata"].clear(), "missing_field", "metadata.uid"),
], ids=["no involved object", "an object name with a slash", "an invalid namespace", "no kind",
        "a type other than Normal or Warning", "no type", "a timestamp that is not a time",
        "a later schema version", "an invalid cluster", "no uid nor name"])
def test_an_unusable_event_is_refused_with_the_reason(mutate: Any, reason: str, field: str) -> None:
    ev = backoff()
    mutate(ev)
    with pytest.raises(RecordError) as exc:
        decode_event(ev, default_cluster="c1")
    assert exc.value.reason == reason and field in exc.value.detail


def test_an_event_without_any_cluster_is_refused() -> None:
    with pytest.raises(ValueError, match="cluster is missing"):
        decode_event(backoff(), default_cluster=None)


def test_a_value_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(RecordError, match="JSON object"):
        decode_event(["not", "an", "event"], default_cluster="c1")


# ---- event dedup -------------------------------------------------------------------------------------


def norm(ev: dict[str, Any]) -> KubeEvent:
    return decode_event(ev, default_cluster="c1")


def test_an_event_is_new_until_published_and_again_each_time_it_repeats() -> None:
    d = EventDeduper()
    first = norm(backoff())
    assert d.is_new(first)
    d.remember(first)
    assert not d.is_new(first), "the same Event again (a relist after 410 Gone) is not new"
    repeated = norm(backoff(count=4, lastTimestamp="2027-01-15T08:06:00Z",
                            metadata={**backoff()["metadata"], "resourceVersion": "502"}))
    assert d.is_new(repeated), "count 3 -> 4 is a new occurrence"
    d.remember(repeated)
    assert not d.is_new(norm(backoff())), "an older version seen late is not new"
    later = norm(events_v1())
    assert d.is_new(later)
    d.remember(later)
    assert not d.is_new(norm(events_v1()))
    assert d.is_new(norm(events_v1(series={"count": 8, "lastObservedTime": "2027-01-15T08:10:00Z"},
                                   metadata={**events_v1()["metadata"], "resourceVersion": "778"}))), \
        "series.count 7 -> 8 is a new occurrence"


def test_the_deduper_is_bounded_and_forgets_deleted_events() -> None:
    d = EventDeduper(max_entries=3)
    events = []
    for i in range(5):
        ev = backoff()
        ev["metadata"] = {**ev["metadata"], "uid": f"u{i}"}
        events.append(norm(ev))
        d.remember(events[-1])
    assert len(d) == 3 and d.is_new(events[0]) and not d.is_new(events[4])
    d.forget("u4")
    assert d.is_new(events[4])


def test_deep_copies_are_not_needed_by_callers() -> None:
    ev = backoff()
    snapshot = copy.deepcopy(ev)
    event_record(ev, cluster="c1")
    assert ev == snapshot, "event_record does not change the object it is given"


# ---- settings -----------------------------------------------------------------------------------------


def test_the_kube_bridge_settings_come_from_the_environment() -> None:
    from streams import settings as settings_mod

    s = settings_mod.load({"SLO_STREAM_KUBE_NAMESPACES": "playback, edge", "SLO_STREAM_KUBE_WATCH_TIMEOUT": "2m",
                           "SLO_STREAM_KUBE_EVENT_MAX_AGE": "0", "SLO_STREAM_KUBE_EVENTS_API": "core/v1"})
    assert settings_mod.kube_namespaces(s) == ["playback", "edge"]
    assert (s.kube_watch_timeout_s, s.kube_event_max_age_s, s.kube_events_api) == (120, 0, "core/v1")
    assert settings_mod.kube_namespaces(settings_mod.load({})) == [], "every namespace by default"


@pytest.mark.parametrize(("name", "value"), [
    ("SLO_STREAM_KUBE_NAMESPACES", "playback,Not_A_Namespace"),
    ("SLO_STREAM_KUBE_EVENTS_API", "events/v2"),
    ("SLO_STREAM_KUBE_WATCH_TIMEOUT", "2h"),
    ("SLO_STREAM_KUBE_EVENT_CACHE", "10"),
], ids=["an invalid namespace", "an unknown events API", "a watch timeout above an hour", "a tiny event cache"])
def test_bad_kube_bridge_settings_are_refused_naming_the_variable(name: str, value: str) -> None:
    from streams import settings as settings_mod
    from streams.core.errors import ConfigError

    with pytest.raises(ConfigError, match=name):
        settings_mod.load({name: value})
