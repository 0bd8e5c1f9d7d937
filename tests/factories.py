"""Test factories: build model objects and playback messages; vary them with dataclasses.replace."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

import orjson

from streams.core.changes import ServiceChanges
from streams.core.model import DAY, Indicator, Severity, SliKind, Slo, default_policy
from streams.core.wire.alert import Alert, AlertState
from streams.core.wire.k8s_event import KubeEvent
from streams.core.wire.rollout import Phase, Replicas, RolloutRecord, RolloutRef, Workload
from streams.core.wire.series import Dimensions
from streams.core.wire.status import AlertTrack, Condition, Status
from streams.core.wire.suspect import Note, RolloutSuspect, Timing, WarningSeen, WarningSuspect


def slo(**changes: Any) -> Slo:
    base = Slo(
        name="playback-api-availability",
        service="playback-api",
        objective=0.999,
        window_s=30 * DAY,
        indicator=Indicator("playback-api-errors", SliKind.RATIO),
        policy=default_policy(30 * DAY),
        runbook_url="https://runbooks.example.com/playback-api",
    )
    return replace(base, **changes)


def record(ts: float, **changes: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "ts": ts, "service": "playback-api", "cluster": "eu-west-1", "region": "eu-west",
        "platform": "kubernetes", "total": 1, "errors": 0,
    }
    r.update(changes)
    return r


def batch(records: list[dict[str, Any]], service: str = "playback-api") -> tuple[bytes, bytes]:
    return service.encode(), orjson.dumps({"schema_version": 1, "records": records})


# ---- wire records (streams.core.wire): typed, varied with dataclasses.replace ----------------------

TS = 1_700_000_000.0


def _workload(base: Workload, changes: dict[str, Any]) -> Workload:
    """``cluster``, ``namespace`` and ``deployment`` among ``changes`` vary the workload (popped)."""
    parts = {field: changes.pop(name) for field, name in (("cluster", "cluster"), ("namespace", "namespace"),
                                                          ("name", "deployment")) if name in changes}
    return replace(base, **parts)


def rollout_record(**changes: Any) -> RolloutRecord:
    """A ``k8s.rollouts`` record: playback/playback-api in eu-west-1 starting revision 42 (from 41).
    ``cluster=``, ``namespace=`` and ``deployment=`` vary its workload."""
    base = RolloutRecord(
        ts=TS, workload=Workload("eu-west-1", "playback", "playback-api"), service="playback-api", revision="42",
        phase=Phase.STARTED, previous_revision="41", template_hash="7d9f8c6b5", previous_template_hash="5c4b3a291",
        images=("registry.example.com/playback-api:1.8.0",),
        previous_images=("registry.example.com/playback-api:1.7.3",),
        replicas=Replicas(desired=6, updated=0, ready=6, available=6))
    workload = _workload(base.workload, changes)
    return replace(base, workload=workload, **changes)


def kube_event(**changes: Any) -> KubeEvent:
    """A Warning event: BackOff of a pod of playback-api's revision 42 in eu-west-1."""
    base = KubeEvent(
        api="core/v1", cluster="eu-west-1", namespace="playback", kind="Pod", name="playback-api-7d9f8c6b5-x2x9q",
        object_uid="pod-uid-1", uid="event-uid-1", resource_version="501", reason="BackOff",
        message="Back-off restarting failed container", type="Warning", count=1, first_ts=TS, last_ts=TS,
        source="kubelet")
    return replace(base, **changes)


def rollout_suspect(**changes: Any) -> RolloutSuspect:
    """The top suspect of a burn: the rollout of :func:`rollout_record`, in progress, 4 minutes before the
    onset. ``cluster=``, ``namespace=``, ``deployment=`` and ``revision=`` vary its ref."""
    base = RolloutSuspect(
        score=0.62, summary="rollout of playback/playback-api to revision 42 (playback-api:1.8.0) in eu-west-1, "
                            "started 4m00s before the burn began",
        service="playback-api", ref=RolloutRef(Workload("eu-west-1", "playback", "playback-api"), "42"),
        phase=Phase.PROGRESSING, started_at=TS, same_cluster=True, previous_revision="41",
        template_hash="7d9f8c6b5", images=("registry.example.com/playback-api:1.8.0",),
        previous_images=("registry.example.com/playback-api:1.7.3",),
        evidence=(Timing("rollout started 4m00s before the burn began", 240.0, 0.524),
                  Note("in_progress", "the rollout was still in progress when the burn began", 0.3)),
        rank=1)
    workload = _workload(base.ref.workload, changes)
    ref = RolloutRef(workload, changes.pop("revision", base.ref.revision))
    return replace(base, ref=ref, **changes)


def warning_suspect(**changes: Any) -> WarningSuspect:
    """Warning events of one workload not explained by a rollout: 12x FailedScheduling."""
    base = WarningSuspect(
        score=0.21, summary="12x FailedScheduling on 12 objects of playback/playback-api in eu-west-1",
        cluster="eu-west-1", namespace="playback", workload="playback-api", reason="FailedScheduling", count=12,
        objects=("Pod/playback-api-5c4b3a291-00000",), first_seen=TS - 30, last_seen=TS, same_cluster=True,
        evidence=(Timing("first seen 30s before the burn began, last 0s before the alert"),
                  WarningSeen(reason="FailedScheduling", object="Pod/playback-api-5c4b3a291-00000",
                              namespace="playback", cluster="eu-west-1", count=1, first_seen=TS - 30,
                              last_seen=TS - 30, message="0/6 nodes are available",
                              detail="1x FailedScheduling on Pod/playback-api-5c4b3a291-00000")),
        rank=2)
    return replace(base, **changes)


def alert(**changes: Any) -> Alert:
    """A page firing for playback-api's availability in eu-west-1, with no suspect."""
    base = Alert(
        dedup_key="slo-stream/playback-api-availability/page/cluster=eu-west-1/region=eu-west/platform=kubernetes",
        slo="playback-api-availability", service="playback-api", severity=Severity.PAGE, state=AlertState.FIRING,
        ts=int(TS), started_at=int(TS), dimensions=Dimensions("eu-west-1", "eu-west", "kubernetes"),
        burn_rates=MappingProxyType({"5m": 31.0, "1h": 20.0}), condition="1h+5m > 14.4", threshold=14.4,
        error_budget_remaining=0.93, objective=0.999, burn_onset=int(TS) - 120)
    return replace(base, **changes)


def status(**changes: Any) -> Status:
    """The ``slo.status`` of playback-api's availability in eu-west-1: the page condition met."""
    base = Status(
        series="playback-api-availability|eu-west-1|eu-west|kubernetes", slo="playback-api-availability",
        service="playback-api", dimensions=Dimensions("eu-west-1", "eu-west", "kubernetes"), objective=0.999,
        evaluated_at=int(TS), newest_event_ts=TS + 0.5, processed_at=TS + 2.0,
        burn_rates=MappingProxyType({"5m": 31.0, "1h": 20.0}), error_budget_remaining=0.93,
        good_total=MappingProxyType({"5m": (93, 3000), "1h": (720, 36000)}),
        conditions=(Condition(Severity.PAGE, "1h+5m", 14.4, 20.0, 31.0, met=True, insufficient_data=False),),
        alerts=MappingProxyType({"page": AlertTrack("firing", int(TS) - 60)}))
    return replace(base, **changes)


def changes_of(*records: RolloutRecord | KubeEvent) -> ServiceChanges:
    """A service's change state after these rollout records and events, merged in order."""
    sc = ServiceChanges()
    for r in records:
        if isinstance(r, RolloutRecord):
            sc.apply_rollout(r)
        else:
            sc.apply_warning(r)
    return sc
