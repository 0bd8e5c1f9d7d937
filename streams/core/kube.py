"""Kubernetes objects to ``k8s.rollouts`` and ``k8s.events`` records: derivation and normalisation, pure.

The kube bridge (:mod:`streams.adapters.kube_bridge`) hands this module plain dicts, the JSON shape
of Deployments, ReplicaSets and Events as the API serves them (camelCase keys), and publishes what
comes back. Nothing here does I/O or reads a clock: ``now`` is a parameter (epoch seconds).

Rollouts ("detect, then act"): :meth:`RolloutTracker.observe_deployment` and
:meth:`RolloutTracker.observe_replicaset` return an :class:`Observation` (records to publish and the
state they imply) without changing the tracker; the caller publishes the records and then calls
:meth:`RolloutTracker.commit`. A record that could not be published is therefore derived again when
the object is seen again (the watch resumes from the last resourceVersion whose records went out).

Events: :func:`event_record` builds the published value of one Event (core/v1 or events.k8s.io/v1),
:class:`EventDeduper` decides whether an Event (or a new occurrence of it) was already published, and
:func:`normalise_event` reads any ``k8s.events`` value (ours, a raw Event of either API, or the
kubernetes-event-exporter Kafka sink's) into one flat shape for consumers. :func:`parse_rollout`
validates a ``k8s.rollouts`` value.

docs/kube-bridge.md describes the phases, when each fires, and the migration annotations.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, TypedDict

from streams.core import conventions as c

# ---- names the API uses ----------------------------------------------------------------------------

ANN_REVISION: Final = "deployment.kubernetes.io/revision"
ANN_REVISION_HISTORY: Final = "deployment.kubernetes.io/revision-history"
LABEL_TEMPLATE_HASH: Final = "pod-template-hash"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_APP: Final = "app"

# Progressing condition reasons (k8s.io/kubernetes pkg/controller/deployment/util).
REASON_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
REASON_NEW_RS_AVAILABLE: Final = "NewReplicaSetAvailable"
REASON_PAUSED: Final = "DeploymentPaused"
_PROGRESS_REASONS: Final = frozenset({"ReplicaSetUpdated", "NewReplicaSetCreated", "FoundNewReplicaSet",
                                      "DeploymentResumed"})

# ---- migration annotations (ours; docs/kube-bridge.md) ---------------------------------------------

ANN_MIGRATION_FROM: Final = "slo-stream.io/migration-from"  # e.g. legacy
ANN_MIGRATION_TO: Final = "slo-stream.io/migration-to"  # e.g. kubernetes
ANN_TRAFFIC_PERCENT: Final = "slo-stream.io/traffic-percent"  # 0..100, share of traffic on `to`
ANN_MIGRATION_STEP: Final = "slo-stream.io/migration-step"  # free text, optional
MIGRATION_ANNOTATIONS: Final = (ANN_MIGRATION_FROM, ANN_MIGRATION_TO, ANN_TRAFFIC_PERCENT, ANN_MIGRATION_STEP)
MAX_STEP_LEN: Final = 256
REASON_MIGRATION_CHANGED: Final = "MigrationStepChanged"

# ---- validation ------------------------------------------------------------------------------------

# A DNS-1123 subdomain: the names of Deployments and ReplicaSets (dots allowed, up to 253 characters).
K8S_NAME_RE: Final = re.compile(r"^(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
# The object an Event is about may be any kind, whose names need only be a valid path segment.
_OBJECT_NAME_RE: Final = re.compile(r"^[^/%\s]{1,253}\Z")
_KIND_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}\Z")
EVENT_TYPES: Final = frozenset({"Normal", "Warning"})
MAX_REVISION_LEN: Final = 128
MAX_TEXT_LEN: Final = 4096


class Phase(StrEnum):
    STARTED = "started"
    PROGRESSING = "progressing"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"


PHASES: Final = frozenset(p.value for p in Phase)


class KubeObjectError(ValueError):
    """An object or record that cannot be used: ``reason`` is a short code (the dead-letter reasons of
    :mod:`streams.core.conventions`), ``detail`` says what is wrong. Permanent: the same input fails
    the same way, so retrying cannot help; skip it (and say why)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _missing(what: str) -> KubeObjectError:
    return KubeObjectError(c.REASON_MISSING_FIELD, f"{what} is missing")


def _bad(what: str, value: object, why: str) -> KubeObjectError:
    return KubeObjectError(c.REASON_BAD_FIELD, f"{what}={_short(value)}: {why}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def parse_time(value: object) -> float | None:
    """Epoch seconds of an RFC 3339 time (``Time`` or ``MicroTime``) or None when absent.

    Raises ValueError for a string that is not a time."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a time: {_short(value)}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {_short(value)}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _time_or_none(value: object) -> float | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def _check_namespace(value: object, what: str) -> str:
    if value is None or value == "":
        raise _missing(what)
    if not isinstance(value, str):
        raise _bad(what, value, "must be a string")
    if not c.NAME_RE.match(value):
        raise _bad(what, value, "not a DNS-1123 label")
    return value


def _check_k8s_name(value: object, what: str) -> str:
    if value is None or value == "":
        raise _missing(what)
    if not isinstance(value, str):
        raise _bad(what, value, "must be a string")
    if not K8S_NAME_RE.match(value):
        raise _bad(what, value, "not a DNS-1123 subdomain")
    return value


def check_cluster(value: object, what: str = "cluster") -> str:
    """A cluster name as used in Kafka keys and playback records (:data:`conventions.LABEL_VALUE_RE`)."""
    if value is None or value == "":
        raise _missing(what)
    if not isinstance(value, str):
        raise _bad(what, value, "must be a string")
    if not c.LABEL_VALUE_RE.match(value):
        raise _bad(what, value, f"must match {c.LABEL_VALUE_RE.pattern}")
    return value


# ==== rollouts ======================================================================================


class Replicas(TypedDict):
    desired: int
    updated: int
    ready: int
    available: int


Migration = TypedDict(
    "Migration",
    {"from": str | None, "to": str | None, "traffic_percent": int | float | None, "step": str | None,
     "reason": str | None},
)


class RolloutRecord(TypedDict):
    """A ``k8s.rollouts`` value (DESIGN.md, "Topic contracts"); key ``cluster/namespace/deployment``."""

    schema_version: int
    ts: float
    cluster: str
    namespace: str
    deployment: str
    service: str | None
    revision: str
    previous_revision: str | None
    template_hash: str | None
    previous_template_hash: str | None
    images: list[str]
    previous_images: list[str]
    phase: str
    replicas: Replicas
    reason: str | None
    message: str | None
    rollback_to_revision: str | None
    migration: Migration | None


def rollout_key(record: Mapping[str, Any]) -> str:
    return f"{record['cluster']}/{record['namespace']}/{record['deployment']}"


def parse_migration(annotations: Mapping[str, Any]) -> Migration | None:
    """The migration step a Deployment's annotations declare, or None when it carries none of
    :data:`MIGRATION_ANNOTATIONS`. A bad value is dropped (None) and explained in ``reason``;
    never raises."""
    if not any(a in annotations for a in MIGRATION_ANNOTATIONS):
        return None
    problems: list[str] = []

    def name(annotation: str) -> str | None:
        raw = annotations.get(annotation)
        if raw is None:
            return None
        value = raw.strip() if isinstance(raw, str) else raw
        if isinstance(value, str) and c.NAME_RE.match(value):
            return value
        problems.append(f"{annotation}={_short(raw)} is not a lowercase DNS label")
        return None

    source, target = name(ANN_MIGRATION_FROM), name(ANN_MIGRATION_TO)
    percent: int | float | None = None
    raw_pct = annotations.get(ANN_TRAFFIC_PERCENT)
    if raw_pct is not None:
        try:
            text = str(raw_pct).strip().removesuffix("%").strip()
            value = float(text)
            if not math.isfinite(value) or not 0 <= value <= 100:
                raise ValueError
            percent = int(value) if value.is_integer() else round(value, 3)
        except ValueError:
            problems.append(f"{ANN_TRAFFIC_PERCENT}={_short(raw_pct)} is not a number in 0..100")
    step: str | None = None
    raw_step = annotations.get(ANN_MIGRATION_STEP)
    if raw_step is not None:
        if not isinstance(raw_step, str):
            problems.append(f"{ANN_MIGRATION_STEP} is not text")
        else:
            step = " ".join(raw_step.split()) or None  # no control characters or newlines in records
            if step is not None and len(step) > MAX_STEP_LEN:
                step = step[:MAX_STEP_LEN]
                problems.append(f"{ANN_MIGRATION_STEP} cut to {MAX_STEP_LEN} characters")
    return {"from": source, "to": target, "traffic_percent": percent, "step": step,
            "reason": "; ".join(problems) or None}


def template_fingerprint(template: object) -> str:
    """A digest of a pod template that is equal for a Deployment's template and its ReplicaSet's.

    The deployment controller copies the template into the ReplicaSet and adds only the
    ``pod-template-hash`` label, which is left out here; Kubernetes' own hash cannot be recomputed
    outside Go, so this is how a Deployment revision is matched to a ReplicaSet and to earlier
    revisions without depending on which watch delivers first."""
    tpl = json.loads(json.dumps(template if isinstance(template, Mapping) else {}, default=str))
    labels = tpl.get("metadata", {}).get("labels") if isinstance(tpl.get("metadata"), dict) else None
    if isinstance(labels, dict):
        labels.pop(LABEL_TEMPLATE_HASH, None)
        if not labels:
            tpl["metadata"].pop("labels")
    if isinstance(tpl.get("metadata"), dict) and not tpl["metadata"]:
        tpl.pop("metadata")
    blob = json.dumps(tpl, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _images(template: object) -> tuple[str, ...]:
    containers = _mapping(_mapping(template).get("spec")).get("containers")
    if not isinstance(containers, list):
        return ()
    return tuple(img for ctr in containers if isinstance(img := _mapping(ctr).get("image"), str))


def _service(meta: Mapping[str, Any], template: object, name: str) -> str | None:
    labels = _mapping(meta.get("labels"))
    tpl_labels = _mapping(_mapping(_mapping(template).get("metadata")).get("labels"))
    for candidate in (labels.get(LABEL_NAME), labels.get(LABEL_APP), tpl_labels.get(LABEL_NAME),
                      tpl_labels.get(LABEL_APP), name):
        if isinstance(candidate, str) and c.NAME_RE.match(candidate):
            return candidate
    return None


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    conditions = status.get("conditions")
    if isinstance(conditions, list):
        for cond in conditions:
            if isinstance(cond, Mapping) and cond.get("type") == kind:
                return cond
    return None


def _revision(annotations: Mapping[str, Any]) -> int | None:
    raw = annotations.get(ANN_REVISION)
    if isinstance(raw, str) and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


@dataclass(frozen=True)
class RevisionInfo:
    """What we know of one revision of a Deployment: its template (fingerprint, images) and, once its
    ReplicaSet was seen, Kubernetes' ``pod-template-hash``."""

    fingerprint: str
    images: tuple[str, ...]
    template_hash: str | None = None


@dataclass(frozen=True)
class DeploymentState:
    """The tracker's memory of one Deployment (all it needs to tell a change from a resync)."""

    uid: str
    revision: int | None
    fingerprint: str
    images: tuple[str, ...]
    # The revision the current (or last) rollout replaced: revision, template fingerprint, images.
    previous: tuple[int | None, str | None, tuple[str, ...]]
    replicas: tuple[int, int, int, int]  # desired, updated, ready, available
    in_flight: bool  # a rollout started (or was under way at first sight) and has not completed
    failed: bool  # Progressing=False with ProgressDeadlineExceeded
    paused: bool
    migration: Migration | None
    phase: str | None  # the phase of the last record published, None before the first
    last_ts: float  # ts of the last record published (records of one Deployment never go back in time)


@dataclass(frozen=True)
class Observation:
    """What one object implies: ``records`` to publish, then :meth:`RolloutTracker.commit` the rest."""

    key: tuple[str, str]  # namespace, deployment
    records: list[RolloutRecord]
    state: DeploymentState | None = None  # None: the Deployment's state does not change
    history: tuple[tuple[str, int, RevisionInfo], ...] = ()  # (deployment uid, revision, info)


@dataclass
class RolloutTracker:
    """Derives ``k8s.rollouts`` records from one cluster's Deployments and ReplicaSets.

    State per Deployment: the last revision, template, images, replica counts, phase; and per
    Deployment uid a bounded history ``revision -> template`` fed by both the Deployment and its
    ReplicaSets (old ReplicaSets keep their template, so a rollback to a revision older than the
    bridge itself is recognised too). Memory: ``max_revisions`` entries per Deployment, at most
    ``max_deployments`` histories (least recently used dropped first).
    """

    cluster: str
    max_revisions: int = 32
    max_deployments: int = 10_000
    _states: dict[tuple[str, str], DeploymentState] = field(default_factory=dict, repr=False)
    _history: OrderedDict[str, dict[int, RevisionInfo]] = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        check_cluster(self.cluster)

    # ---- queries ------------------------------------------------------------------------------------

    def state(self, namespace: str, name: str) -> DeploymentState | None:
        return self._states.get((namespace, name))

    def keys(self) -> set[tuple[str, str]]:
        return set(self._states)

    # ---- derivation ---------------------------------------------------------------------------------

    def observe_replicaset(self, obj: Mapping[str, Any], *, now: float) -> Observation:
        """A ReplicaSet feeds its Deployment's revision history (revision, ``pod-template-hash``,
        template); records come from the Deployment, so ``records`` is empty. A ReplicaSet not
        controlled by a Deployment is ignored. Raises :class:`KubeObjectError` for bad names."""
        meta = _mapping(obj.get("metadata"))
        namespace = _check_namespace(meta.get("namespace"), "metadata.namespace")
        _check_k8s_name(meta.get("name"), "metadata.name")
        owner = _controller(meta)
        if owner is None or owner.get("kind") != "Deployment":
            return Observation(key=(namespace, ""), records=[])
        deployment = _check_k8s_name(owner.get("name"), "metadata.ownerReferences[].name")
        owner_uid = _str(owner.get("uid")) or f"{namespace}/{deployment}"
        annotations = _mapping(meta.get("annotations"))
        revision = _revision(annotations)
        if revision is None:
            return Observation(key=(namespace, deployment), records=[])
        template = _mapping(obj.get("spec")).get("template")
        labels = _mapping(meta.get("labels"))
        info = RevisionInfo(fingerprint=template_fingerprint(template), images=_images(template),
                            template_hash=_str(labels.get(LABEL_TEMPLATE_HASH)))
        revisions = [revision]
        # After a rollback the controller gives the old ReplicaSet a new revision and lists the
        # revisions it had before here: they were this same template.
        history = annotations.get(ANN_REVISION_HISTORY)
        if isinstance(history, str):
            revisions += [int(r) for r in history.split(",") if r.strip().isdigit() and len(r.strip()) <= 18]
        return Observation(key=(namespace, deployment), records=[],
                           history=tuple((owner_uid, r, info) for r in revisions))

    def observe_deployment(self, obj: Mapping[str, Any], *, now: float) -> Observation:
        """Records this version of a Deployment implies, given what was seen before (docs/kube-bridge.md):

        - first sight: nothing, unless a rollout is under way (then ``progressing``);
        - the revision annotation increases: ``started``, or ``rolled_back`` when the new template is
          an earlier revision's (same template, same ``pod-template-hash``, or the images of an
          earlier revision that differ from the previous one's); ``completed`` or ``failed`` may follow
          in the same observation;
        - same revision: ``paused`` when ``spec.paused`` turns true; ``failed`` when Progressing turns
          False with ProgressDeadlineExceeded; ``completed`` when a rollout in flight is done;
          ``progressing`` when a rollout in flight changes its replica counts;
        - only the migration annotations changed: one record with the current phase and reason
          ``MigrationStepChanged``.

        An identical resync (a relist) yields nothing. Raises :class:`KubeObjectError` for bad names.
        """
        meta = _mapping(obj.get("metadata"))
        namespace = _check_namespace(meta.get("namespace"), "metadata.namespace")
        name = _check_k8s_name(meta.get("name"), "metadata.name")
        key = (namespace, name)
        uid = _str(meta.get("uid")) or f"{namespace}/{name}"
        spec = _mapping(obj.get("spec"))
        status = _mapping(obj.get("status"))
        annotations = _mapping(meta.get("annotations"))
        template = spec.get("template")
        revision = _revision(annotations)
        fingerprint = template_fingerprint(template)
        images = _images(template)
        generation = meta.get("generation")
        observed = status.get("observedGeneration")
        synced = not isinstance(generation, int) or (isinstance(observed, int) and observed >= generation)
        desired = _int(spec.get("replicas"), 1)
        updated = _int(status.get("updatedReplicas"))
        counts = (desired, updated, _int(status.get("readyReplicas")), _int(status.get("availableReplicas")))
        progressing = _condition(status, "Progressing")
        deadline = progressing is not None and progressing.get("status") == "False" and \
            progressing.get("reason") == REASON_DEADLINE_EXCEEDED
        paused = spec.get("paused") is True
        complete = synced and updated == desired and counts[3] == desired and \
            _int(status.get("replicas")) == updated
        migration = parse_migration(annotations)
        service = _service(meta, template, name)

        hist = dict(self._history.get(uid, {}))
        history: tuple[tuple[str, int, RevisionInfo], ...] = ()
        prev = self._states.get(key)
        if prev is not None and prev.uid != uid:
            prev = None  # deleted and created again under the same name: a new Deployment
        new_revision = revision is not None and prev is not None and (prev.revision is None
                                                                      or revision > prev.revision)
        # The template belongs to the revision annotation once the controller has caught up with
        # the spec: a template edit is seen before the controller bumps the revision.
        if revision is not None and (synced or new_revision):
            known = hist.get(revision)
            info = RevisionInfo(fingerprint, images,
                                known.template_hash if known and known.fingerprint == fingerprint
                                else _hash_of(hist, fingerprint))
            if known != info:
                history = ((uid, revision, info),)
            hist[revision] = info
        elif prev is not None:
            fingerprint, images = prev.fingerprint, prev.images
        if prev is not None and not new_revision:
            revision = prev.revision  # a missing or lower annotation does not move us back

        base = _Base(cluster=self.cluster, namespace=namespace, deployment=name, service=service,
                     replicas=counts, migration=migration, condition=progressing, now=now,
                     floor=prev.last_ts if prev else 0.0)
        if prev is None or new_revision:
            # The revision this rollout replaces: the one we saw last, or at first sight the newest
            # older revision the ReplicaSets told us about.
            older = [r for r in hist if revision is not None and r < revision]
            before = prev.revision if prev is not None else (max(older) if older else None)
            before_info = hist.get(before) if before is not None else None
            previous: tuple[int | None, str | None, tuple[str, ...]] = (
                before,
                prev.fingerprint if prev is not None else (before_info.fingerprint if before_info else None),
                before_info.images if before_info else (prev.images if prev is not None else ()))
        else:
            previous = prev.previous
        records: list[RolloutRecord] = []

        def emit(phase: Phase, **kw: Any) -> None:
            if revision is None:
                return  # the controller has not given it a revision yet: nothing to say
            p_rev, p_fp, p_images = previous
            rec = base.record(phase, revision=revision, template_hash=_hash_of(hist, fingerprint), images=images,
                              previous_revision=p_rev,
                              previous_template_hash=_hash_of(hist, p_fp) if p_fp else None,
                              previous_images=p_images, **kw)
            base.floor = rec["ts"]
            records.append(rec)

        in_flight = prev.in_flight if prev else False
        if prev is None:
            in_flight = revision is not None and not complete and not deadline and not paused
            if in_flight:
                emit(Phase.PROGRESSING)
        elif new_revision:
            assert revision is not None
            back_to = _rolled_back_to(hist, revision, fingerprint, images, prev)
            if back_to is not None:
                emit(Phase.ROLLED_BACK, rollback_to_revision=back_to,
                     message=f"revision {revision} restores the template of revision {back_to}")
            else:
                emit(Phase.STARTED)
            in_flight = True
            if paused:
                emit(Phase.PAUSED)
            elif deadline:
                emit(Phase.FAILED)
            elif complete:
                emit(Phase.COMPLETED)
                in_flight = False
        elif paused:
            if not prev.paused:
                emit(Phase.PAUSED)
        elif deadline:
            if not prev.failed:
                emit(Phase.FAILED)
        elif complete:
            if in_flight:
                emit(Phase.COMPLETED)
                in_flight = False
        elif in_flight and (counts != prev.replicas or prev.paused or prev.failed):
            emit(Phase.PROGRESSING)

        if prev is not None and not records and migration != prev.migration:
            phase = Phase.PAUSED if paused else Phase.PROGRESSING if in_flight else \
                Phase.FAILED if deadline else Phase.COMPLETED
            emit(phase, reason=REASON_MIGRATION_CHANGED, message="the migration annotations changed")

        last = records[-1] if records else None
        state = DeploymentState(
            uid=uid, revision=revision, fingerprint=fingerprint, images=images, previous=previous,
            replicas=counts, in_flight=in_flight, failed=deadline, paused=paused, migration=migration,
            phase=last["phase"] if last else (prev.phase if prev else None),
            last_ts=last["ts"] if last else (prev.last_ts if prev else 0.0))
        return Observation(key=key, records=records, state=state if state != prev else None, history=history)

    # ---- effects ------------------------------------------------------------------------------------

    def commit(self, obs: Observation) -> None:
        """Apply an observation once its records are published."""
        for uid, revision, info in obs.history:
            hist = self._history.get(uid)
            if hist is None:
                hist = self._history[uid] = {}
                while len(self._history) > self.max_deployments:
                    self._history.popitem(last=False)
            self._history.move_to_end(uid)
            known = hist.get(revision)
            if known is not None and known.template_hash and not info.template_hash \
                    and known.fingerprint == info.fingerprint:
                continue  # keep the hash a ReplicaSet told us
            hist[revision] = info
            while len(hist) > self.max_revisions:
                del hist[min(hist)]
        if obs.state is not None:
            self._states[obs.key] = obs.state

    def apply_deployment(self, obj: Mapping[str, Any], *, now: float) -> list[RolloutRecord]:
        """:meth:`observe_deployment` and :meth:`commit` at once (when publishing cannot fail)."""
        obs = self.observe_deployment(obj, now=now)
        self.commit(obs)
        return obs.records

    def apply_replicaset(self, obj: Mapping[str, Any], *, now: float) -> list[RolloutRecord]:
        obs = self.observe_replicaset(obj, now=now)
        self.commit(obs)
        return obs.records

    def forget(self, namespace: str, name: str) -> None:
        """The Deployment was deleted."""
        state = self._states.pop((namespace, name), None)
        if state is not None:
            self._history.pop(state.uid, None)

    def retain(self, present: Iterable[tuple[str, str]], *, namespace: str | None = None) -> list[tuple[str, str]]:
        """After a relist: forget Deployments (of ``namespace``, or all) that are gone; return them."""
        keep = set(present)
        gone = [k for k in self._states if k not in keep and (namespace is None or k[0] == namespace)]
        for ns, name in gone:
            self.forget(ns, name)
        return gone


def _controller(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    owners = meta.get("ownerReferences")
    if not isinstance(owners, list):
        return None
    for owner in owners:
        if isinstance(owner, Mapping) and owner.get("controller") is True:
            return owner
    return None


def _hash_of(hist: Mapping[int, RevisionInfo], fingerprint: str) -> str | None:
    """The ``pod-template-hash`` of the ReplicaSet whose template has this fingerprint, if seen."""
    for rev in sorted(hist, reverse=True):
        info = hist[rev]
        if info.fingerprint == fingerprint and info.template_hash:
            return info.template_hash
    return None


def _rolled_back_to(hist: Mapping[int, RevisionInfo], revision: int, fingerprint: str,
                    images: tuple[str, ...], prev: DeploymentState) -> int | None:
    """The most recent earlier revision whose template the new revision brings back, if any.

    Same template (fingerprint) or same ``pod-template-hash`` is a rollback. Same images as an earlier
    revision is one only when they differ from the previous revision's images: a change of
    configuration alone (same images as before) is a new rollout, not a return to the past."""
    new_hash = _hash_of({r: i for r, i in hist.items() if r == revision}, fingerprint)
    prev_images = prev.images
    for rev in sorted(hist, reverse=True):
        if rev >= revision or rev == prev.revision:
            continue
        info = hist[rev]
        if info.fingerprint == fingerprint or (new_hash is not None and info.template_hash == new_hash):
            return rev
        if images and info.images == images and images != prev_images:
            return rev
    return None


@dataclass
class _Base:
    """The fields every record of one observation shares."""

    cluster: str
    namespace: str
    deployment: str
    service: str | None
    replicas: tuple[int, int, int, int]
    migration: Migration | None
    condition: Mapping[str, Any] | None
    now: float
    floor: float

    def fits(self, phase: Phase) -> bool:
        """Whether the Progressing condition describes this phase (and not an earlier state)."""
        reason = (self.condition or {}).get("reason")
        return (phase is Phase.FAILED and reason == REASON_DEADLINE_EXCEEDED) or \
            (phase is Phase.COMPLETED and reason == REASON_NEW_RS_AVAILABLE) or \
            (phase is Phase.PAUSED and reason == REASON_PAUSED) or \
            (phase in (Phase.STARTED, Phase.ROLLED_BACK, Phase.PROGRESSING) and reason in _PROGRESS_REASONS)

    def ts(self, phase: Phase) -> float:
        """Event time: the Progressing condition's lastUpdateTime when it describes this phase,
        else ``now``; never before the Deployment's previous record."""
        at = _time_or_none((self.condition or {}).get("lastUpdateTime")) if self.fits(phase) else None
        if at is None or (phase in (Phase.STARTED, Phase.ROLLED_BACK, Phase.PROGRESSING) and at <= self.floor):
            at = self.now  # a condition older than the last record describes an earlier rollout
        return max(at, self.floor)

    def record(self, phase: Phase, *, revision: int | None, template_hash: str | None, images: tuple[str, ...],
               previous_revision: int | None = None, previous_template_hash: str | None = None,
               previous_images: tuple[str, ...] = (), rollback_to_revision: int | None = None,
               reason: str | None = None, message: str | None = None) -> RolloutRecord:
        cond = self.condition if self.condition is not None and self.fits(phase) else {}
        if reason is None:
            reason = _str(cond.get("reason")) or (REASON_PAUSED if phase is Phase.PAUSED else None)
            if message is None:
                message = _str(cond.get("message"))
        desired, updated, ready, available = self.replicas
        return {
            "schema_version": c.SCHEMA_VERSION,
            "ts": self.ts(phase),
            "cluster": self.cluster,
            "namespace": self.namespace,
            "deployment": self.deployment,
            "service": self.service,
            "revision": str(revision) if revision is not None else "",
            "previous_revision": str(previous_revision) if previous_revision is not None else None,
            "template_hash": template_hash,
            "previous_template_hash": previous_template_hash,
            "images": list(images),
            "previous_images": list(previous_images),
            "phase": phase.value,
            "replicas": {"desired": desired, "updated": updated, "ready": ready, "available": available},
            "reason": reason[:MAX_TEXT_LEN] if reason else None,
            "message": message[:MAX_TEXT_LEN] if message else None,
            "rollback_to_revision": str(rollback_to_revision) if rollback_to_revision is not None else None,
            "migration": dict(self.migration) if self.migration is not None else None,  # type: ignore[typeddict-item]
        }


def parse_rollout(doc: object) -> RolloutRecord:
    """Validate a ``k8s.rollouts`` value and return it in canonical form (revisions as strings,
    ``ts`` as a float). Raises :class:`KubeObjectError` naming the field. Accepts integer revisions
    (older writers) and records without the optional fields of later versions."""
    if not isinstance(doc, Mapping):
        raise KubeObjectError(c.REASON_BAD_FIELD, "a rollout record must be a JSON object")
    if doc.get("schema_version", c.SCHEMA_VERSION) != c.SCHEMA_VERSION:
        raise KubeObjectError(c.REASON_BAD_SCHEMA_VERSION, f"schema_version={_short(doc.get('schema_version'))}")
    ts = doc.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) or not 0 < ts < 1e11:
        raise (_missing("ts") if ts is None else _bad("ts", ts, "must be epoch seconds"))
    phase = doc.get("phase")
    if not isinstance(phase, str) or phase not in PHASES:
        raise (_missing("phase") if phase is None else _bad("phase", phase, f"must be one of {sorted(PHASES)}"))

    def revision(name: str, *, required: bool) -> str | None:
        value = doc.get(name)
        if value is None:
            if required:
                raise _missing(name)
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if isinstance(value, str) and 0 < len(value) <= MAX_REVISION_LEN:
            return value
        raise _bad(name, value, "must be a revision (string)")

    def opt_str(name: str, limit: int = MAX_TEXT_LEN) -> str | None:
        value = doc.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise _bad(name, value, f"must be a string of at most {limit} characters")
        return value

    def image_list(name: str) -> list[str]:
        value = doc.get(name, [])
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(i, str) and i for i in value):
            raise _bad(name, value, "must be a list of image references")
        return list(value)

    service = doc.get("service")
    if service is not None and (not isinstance(service, str) or not c.NAME_RE.match(service)):
        raise _bad("service", service, "not a service name")
    replicas_in = doc.get("replicas", {})
    replicas: Replicas = {"desired": 0, "updated": 0, "ready": 0, "available": 0}
    if replicas_in is not None:
        if not isinstance(replicas_in, Mapping):
            raise _bad("replicas", replicas_in, "must be an object")
        for k in ("desired", "updated", "ready", "available"):
            v = replicas_in.get(k, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _bad(f"replicas.{k}", v, "must be an integer >= 0")
            replicas[k] = v
    return {
        "schema_version": c.SCHEMA_VERSION,
        "ts": float(ts),
        "cluster": check_cluster(doc.get("cluster")),
        "namespace": _check_namespace(doc.get("namespace"), "namespace"),
        "deployment": _check_k8s_name(doc.get("deployment"), "deployment"),
        "service": service,
        "revision": revision("revision", required=True) or "",
        "previous_revision": revision("previous_revision", required=False),
        "template_hash": opt_str("template_hash", 63),
        "previous_template_hash": opt_str("previous_template_hash", 63),
        "images": image_list("images"),
        "previous_images": image_list("previous_images"),
        "phase": str(phase),
        "replicas": replicas,
        "reason": opt_str("reason"),
        "message": opt_str("message"),
        "rollback_to_revision": revision("rollback_to_revision", required=False),
        "migration": _parse_migration_field(doc.get("migration")),
    }


def _parse_migration_field(value: object) -> Migration | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _bad("migration", value, "must be an object or null")
    out: Migration = {"from": None, "to": None, "traffic_percent": None, "step": None, "reason": None}
    for k in ("from", "to"):
        v = value.get(k)
        if v is not None and (not isinstance(v, str) or not c.NAME_RE.match(v)):
            raise _bad(f"migration.{k}", v, "must be a lowercase DNS label or null")
        out[k] = v
    pct = value.get("traffic_percent")
    if pct is not None and (isinstance(pct, bool) or not isinstance(pct, int | float)
                            or not math.isfinite(pct) or not 0 <= pct <= 100):
        raise _bad("migration.traffic_percent", pct, "must be a number in 0..100 or null")
    out["traffic_percent"] = pct
    for k in ("step", "reason"):
        v = value.get(k)
        if v is not None and (not isinstance(v, str) or len(v) > MAX_TEXT_LEN):
            raise _bad(f"migration.{k}", v, "must be a string or null")
        out[k] = v  # type: ignore[literal-required]
    return out


# ==== events ========================================================================================


class NormalisedEvent(TypedDict):
    """One Kubernetes Event, whoever wrote it, in the shape consumers read (:func:`normalise_event`)."""

    schema_version: int
    api: str  # "core/v1" or "events.k8s.io/v1": the shape it came in
    cluster: str
    namespace: str  # of the involved object; "" for a cluster-scoped object (a Node)
    kind: str
    name: str
    object_uid: str | None
    uid: str  # the Event's own uid (its name when a writer left the uid out)
    resource_version: str | None
    reason: str
    message: str
    type: str  # Normal | Warning
    count: int  # occurrences so far (>= 1)
    first_ts: float
    last_ts: float
    source: str | None  # the reporting component (kubelet, deployment-controller, ...)
    labels: dict[str, str]  # of the involved object, when the writer added them (event-exporter)
    owner_kind: str | None  # the involved object's controller, when the writer added ownerReferences
    owner_name: str | None


def _is_events_v1(doc: Mapping[str, Any]) -> bool:
    api = doc.get("apiVersion")
    return (isinstance(api, str) and api.startswith("events.k8s.io/")) or "regarding" in doc


# Kubernetes counts are int32; a larger one is clamped (sums of them must stay JSON-encodable).
MAX_EVENT_COUNT = 2**31 - 1


def _count(doc: Mapping[str, Any], v1: bool) -> int:
    series = _mapping(doc.get("series"))
    candidates = (series.get("count"), doc.get("deprecatedCount"), doc.get("count")) if v1 else \
        (doc.get("count"), series.get("count"))
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return min(value, MAX_EVENT_COUNT)
    return 1


def _times(doc: Mapping[str, Any], v1: bool) -> tuple[float, float]:
    meta = _mapping(doc.get("metadata"))
    series = _mapping(doc.get("series"))
    if v1:
        firsts = ("deprecatedFirstTimestamp", "eventTime", "firstTimestamp")
        lasts = ("deprecatedLastTimestamp", "lastTimestamp", "eventTime")
    else:
        firsts = ("firstTimestamp", "eventTime", "deprecatedFirstTimestamp")
        lasts = ("lastTimestamp", "eventTime", "deprecatedLastTimestamp")

    def first_of(names: Iterable[str], source: Mapping[str, Any]) -> float | None:
        for name in names:
            try:
                value = parse_time(source.get(name))
            except ValueError as exc:
                raise _bad(name, source.get(name), str(exc)) from None
            if value is not None:
                return value
        return None

    created = first_of(("creationTimestamp",), meta)
    first = first_of(firsts, doc) or created
    last = first_of(("lastObservedTime",), series) or first_of(lasts, doc) or first
    if first is None or last is None:
        raise _missing("lastTimestamp (or eventTime, series.lastObservedTime)")
    return first, max(first, last)


def normalise_event(doc: object, *, default_cluster: str | None) -> NormalisedEvent:
    """Read one ``k8s.events`` value, whatever wrote it: our bridge (core/v1 or events.k8s.io/v1
    shape plus ``cluster``), a raw Event of either API, or kubernetes-event-exporter's Kafka sink
    (core/v1 plus ``clusterName``, ``involvedObject`` with ``labels``, ``annotations``,
    ``ownerReferences``). The cluster is ``cluster``, else ``clusterName``, else ``default_cluster``.

    Times are epoch seconds: ``first_ts`` from firstTimestamp/eventTime, ``last_ts`` from
    series.lastObservedTime/lastTimestamp/eventTime (never before ``first_ts``). Raises
    :class:`KubeObjectError` (a ValueError) with the reason when the value cannot be used.
    """
    if not isinstance(doc, Mapping):
        raise KubeObjectError(c.REASON_BAD_FIELD, "an event must be a JSON object")
    if doc.get("schema_version", c.SCHEMA_VERSION) != c.SCHEMA_VERSION:
        raise KubeObjectError(c.REASON_BAD_SCHEMA_VERSION, f"schema_version={_short(doc.get('schema_version'))}")
    v1 = _is_events_v1(doc)
    cluster = check_cluster(_str(doc.get("cluster")) or _str(doc.get("clusterName")) or default_cluster)
    involved_raw = doc.get("regarding") if v1 and isinstance(doc.get("regarding"), Mapping) else \
        doc.get("involvedObject")
    if not isinstance(involved_raw, Mapping):
        raise _missing("regarding" if v1 else "involvedObject")
    involved: Mapping[str, Any] = involved_raw
    kind = involved.get("kind")
    if not isinstance(kind, str) or not kind:
        raise _missing("involvedObject.kind")
    if not _KIND_RE.match(kind):
        raise _bad("involvedObject.kind", kind, "not a kind")
    name = involved.get("name")
    if not isinstance(name, str) or not name:
        raise _missing("involvedObject.name")
    if not _OBJECT_NAME_RE.match(name) or name in (".", ".."):
        raise _bad("involvedObject.name", name, "not an object name")
    namespace = involved.get("namespace") or ""
    if namespace:
        _check_namespace(namespace, "involvedObject.namespace")
    meta = _mapping(doc.get("metadata"))
    uid = _str(meta.get("uid")) or _str(meta.get("name"))
    if uid is None:
        raise _missing("metadata.uid")
    etype = doc.get("type")
    if etype is None:
        raise _missing("type")
    if not isinstance(etype, str) or etype not in EVENT_TYPES:
        raise _bad("type", etype, "must be Normal or Warning")
    reason = doc.get("reason") or ""
    message = (doc.get("note") if v1 else doc.get("message")) or doc.get("message") or doc.get("note") or ""
    if not isinstance(reason, str) or not isinstance(message, str):
        raise _bad("reason" if not isinstance(reason, str) else "message", reason, "must be a string")
    first_ts, last_ts = _times(doc, v1)
    labels_raw = _mapping(involved.get("labels"))
    labels = {k: v for k, v in labels_raw.items() if isinstance(k, str) and isinstance(v, str)}
    owner = _controller(involved) or _first_owner(involved)
    source = _str(doc.get("reportingController")) or _str(doc.get("reportingComponent")) or \
        _str(_mapping(doc.get("source")).get("component")) or \
        _str(_mapping(doc.get("deprecatedSource")).get("component"))
    rv = meta.get("resourceVersion")
    return {
        "schema_version": c.SCHEMA_VERSION,
        "api": "events.k8s.io/v1" if v1 else "core/v1",
        "cluster": cluster,
        "namespace": namespace,
        "kind": kind,
        "name": name,
        "object_uid": _str(involved.get("uid")),
        "uid": uid,
        "resource_version": rv if isinstance(rv, str) and rv else None,
        "reason": reason[:MAX_TEXT_LEN],
        "message": message[:MAX_TEXT_LEN],
        "type": str(etype),
        "count": _count(doc, v1),
        "first_ts": first_ts,
        "last_ts": last_ts,
        "source": source,
        "labels": labels,
        "owner_kind": _str(owner.get("kind")) if owner else None,
        "owner_name": _str(owner.get("name")) if owner else None,
    }


def _first_owner(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    owners = obj.get("ownerReferences")
    if isinstance(owners, list) and owners and isinstance(owners[0], Mapping):
        return owners[0]
    return None


def event_key(event: Mapping[str, Any]) -> str:
    """``cluster/namespace/kind/name`` of the involved object (a normalised event); the namespace is
    empty for cluster-scoped objects."""
    return f"{event['cluster']}/{event['namespace']}/{event['kind']}/{event['name']}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_record(obj: Mapping[str, Any], *, cluster: str) -> tuple[str, dict[str, Any], NormalisedEvent]:
    """The ``k8s.events`` message for one Event as the API served it: ``(key, value, normalised)``.

    The value is the Event JSON without ``metadata.managedFields``, plus ``cluster`` and
    ``schema_version``. An events.k8s.io/v1 Event also gets the core/v1 names a consumer may read
    (``involvedObject``, ``message``, ``count``, ``firstTimestamp``, ``lastTimestamp``); a core/v1 Event
    written through the new API (``count`` and ``lastTimestamp`` null) gets them filled in. Raises
    :class:`KubeObjectError` when the Event cannot be keyed or read."""
    norm = normalise_event({**obj, "cluster": cluster}, default_cluster=cluster)
    value = dict(obj)
    meta = dict(_mapping(obj.get("metadata")))
    meta.pop("managedFields", None)
    value["metadata"] = meta
    if norm["api"] == "events.k8s.io/v1":
        value.setdefault("involvedObject", obj.get("regarding"))
        if value.get("message") is None:
            value["message"] = norm["message"]
    if not isinstance(value.get("count"), int) or isinstance(value.get("count"), bool) or value["count"] < 1:
        value["count"] = norm["count"]
    if not value.get("firstTimestamp"):
        value["firstTimestamp"] = _iso(norm["first_ts"])
    if not value.get("lastTimestamp"):
        value["lastTimestamp"] = _iso(norm["last_ts"])
    value["cluster"] = cluster
    value["schema_version"] = c.SCHEMA_VERSION
    return event_key(norm), value, norm


@dataclass
class EventDeduper:
    """Which Events were already published: uid -> (count, last_ts, resourceVersion), bounded (LRU).

    An Event is new when its uid was not published yet, or it occurred again (``count`` grew, or the
    same count with a later ``last_ts``). A relist after ``410 Gone`` serves the same Events again
    with the same resourceVersion and count: nothing is new. Check with :meth:`is_new`, publish,
    then :meth:`remember`. A uid evicted from a full cache would be published again (at-least-once).
    """

    max_entries: int = 50_000
    _seen: OrderedDict[str, tuple[int, float, str | None]] = field(default_factory=OrderedDict, repr=False)

    def __len__(self) -> int:
        return len(self._seen)

    def is_new(self, event: NormalisedEvent) -> bool:
        seen = self._seen.get(event["uid"])
        if seen is None:
            return True
        count, last_ts, rv = seen
        if event["resource_version"] is not None and event["resource_version"] == rv:
            return False
        return event["count"] > count or (event["count"] == count and event["last_ts"] > last_ts)

    def remember(self, event: NormalisedEvent) -> None:
        uid = event["uid"]
        self._seen[uid] = (event["count"], event["last_ts"], event["resource_version"])
        self._seen.move_to_end(uid)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def forget(self, uid: str) -> None:
        self._seen.pop(uid, None)
