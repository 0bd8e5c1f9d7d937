"""Kubernetes objects to ``k8s.rollouts`` and ``k8s.events`` records: the kube bridge's decisions, pure.

The kube bridge (:mod:`streams.adapters.kube_bridge`) hands this module plain dicts, the JSON shape
of Deployments, ReplicaSets and Events as the API serves them (camelCase keys), and publishes what
comes back. Nothing here does I/O or reads a clock: ``now`` is a parameter (epoch seconds).

Rollouts ("detect, then act"): :meth:`RolloutTracker.observe_deployment` and
:meth:`RolloutTracker.observe_replicaset` return an :class:`Observation` (records to publish and the
state they imply) without changing the tracker; the caller publishes the records and then calls
:meth:`RolloutTracker.commit`. A record that could not be published is therefore derived again when
the object is seen again (the watch resumes from the last resourceVersion whose records went out).

Events: :class:`EventDeduper` decides whether an Event (or a new occurrence of it) was already
published. The records themselves, and how they are read back, are the wire types'
(:mod:`streams.core.wire.rollout`, :mod:`streams.core.wire.k8s_event`).

docs/kube-bridge.md describes the phases, when each fires, and the migration annotations.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from streams.core import conventions as c
from streams.core.wire import fields as f
from streams.core.wire.k8s_event import KubeEvent
from streams.core.wire.rollout import Migration, Phase, Replicas, RolloutRecord, Workload

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

# ---- rollouts ---------------------------------------------------------------------------------------


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
        problems.append(f"{annotation}={f.short(raw)} is not a lowercase DNS label")
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
            problems.append(f"{ANN_TRAFFIC_PERCENT}={f.short(raw_pct)} is not a number in 0..100")
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
    return Migration(source, target, percent, step, "; ".join(problems) or None)


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
    containers = f.mapping(f.mapping(template).get("spec")).get("containers")
    if not isinstance(containers, list):
        return ()
    return tuple(img for ctr in containers if isinstance(img := f.mapping(ctr).get("image"), str))


def _service(meta: Mapping[str, Any], template: object, name: str) -> str | None:
    labels = f.mapping(meta.get("labels"))
    tpl_labels = f.mapping(f.mapping(f.mapping(template).get("metadata")).get("labels"))
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
        f.check_cluster(self.cluster)

    # ---- queries ------------------------------------------------------------------------------------

    def state(self, namespace: str, name: str) -> DeploymentState | None:
        return self._states.get((namespace, name))

    def keys(self) -> set[tuple[str, str]]:
        return set(self._states)

    # ---- derivation ---------------------------------------------------------------------------------

    def observe_replicaset(self, obj: Mapping[str, Any], *, now: float) -> Observation:
        """A ReplicaSet feeds its Deployment's revision history (revision, ``pod-template-hash``,
        template); records come from the Deployment, so ``records`` is empty. A ReplicaSet not
        controlled by a Deployment is ignored. Raises :class:`RecordError` for bad names."""
        meta = f.mapping(obj.get("metadata"))
        namespace = f.check_namespace(meta.get("namespace"), "metadata.namespace")
        f.check_k8s_name(meta.get("name"), "metadata.name")
        owner = f.controller(meta)
        if owner is None or owner.get("kind") != "Deployment":
            return Observation(key=(namespace, ""), records=[])
        deployment = f.check_k8s_name(owner.get("name"), "metadata.ownerReferences[].name")
        owner_uid = f.nonempty_str(owner.get("uid")) or f"{namespace}/{deployment}"
        annotations = f.mapping(meta.get("annotations"))
        revision = _revision(annotations)
        if revision is None:
            return Observation(key=(namespace, deployment), records=[])
        template = f.mapping(obj.get("spec")).get("template")
        labels = f.mapping(meta.get("labels"))
        info = RevisionInfo(fingerprint=template_fingerprint(template), images=_images(template),
                            template_hash=f.nonempty_str(labels.get(LABEL_TEMPLATE_HASH)))
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

        An identical resync (a relist) yields nothing. Raises :class:`RecordError` for bad names.
        """
        v = read_deployment(obj)
        key = (v.namespace, v.name)
        hist = dict(self._history.get(v.uid, {}))
        history: tuple[tuple[str, int, RevisionInfo], ...] = ()
        prev = self._states.get(key)
        if prev is not None and prev.uid != v.uid:
            prev = None  # deleted and created again under the same name: a new Deployment
        revision, fingerprint, images = v.revision, v.fingerprint, v.images
        new_revision = revision is not None and prev is not None and (prev.revision is None
                                                                      or revision > prev.revision)
        # The template belongs to the revision annotation once the controller has caught up with
        # the spec: a template edit is seen before the controller bumps the revision.
        if revision is not None and (v.synced or new_revision):
            known = hist.get(revision)
            info = RevisionInfo(fingerprint, images,
                                known.template_hash if known and known.fingerprint == fingerprint
                                else _hash_of(hist, fingerprint))
            if known != info:
                history = ((v.uid, revision, info),)
            hist[revision] = info
        elif prev is not None:
            fingerprint, images = prev.fingerprint, prev.images
        if prev is not None and not new_revision:
            revision = prev.revision  # a missing or lower annotation does not move us back
        previous = prev.previous if prev is not None and not new_revision else _previous(hist, revision, prev)
        back_to = _rolled_back_to(hist, revision, fingerprint, images, prev) \
            if new_revision and prev is not None and revision is not None else None
        phases, in_flight = _transitions(v, prev, revision=revision, new_revision=new_revision, back_to=back_to)
        base = _Base(cluster=self.cluster, namespace=v.namespace, deployment=v.name, service=v.service,
                     replicas=v.counts, migration=v.migration, condition=v.progressing, now=now,
                     floor=prev.last_ts if prev else 0.0)
        records: list[RolloutRecord] = []
        if revision is not None:  # before the controller gives it a revision there is nothing to say
            p_rev, p_fp, p_images = previous
            if prev is not None and not phases and v.migration != prev.migration:
                phase = Phase.PAUSED if v.paused else Phase.PROGRESSING if in_flight else \
                    Phase.FAILED if v.deadline else Phase.COMPLETED
                phases = [(phase, {"reason": REASON_MIGRATION_CHANGED,
                                   "message": "the migration annotations changed"})]
            for phase, kw in phases:
                rec = base.record(phase, revision=revision, template_hash=_hash_of(hist, fingerprint), images=images,
                                  previous_revision=p_rev,
                                  previous_template_hash=_hash_of(hist, p_fp) if p_fp else None,
                                  previous_images=p_images, **kw)
                base.floor = rec.ts
                records.append(rec)
        last = records[-1] if records else None
        state = DeploymentState(
            uid=v.uid, revision=revision, fingerprint=fingerprint, images=images, previous=previous,
            replicas=v.counts, in_flight=in_flight, failed=v.deadline, paused=v.paused, migration=v.migration,
            phase=last.phase if last else (prev.phase if prev else None),
            last_ts=last.ts if last else (prev.last_ts if prev else 0.0))
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


@dataclass(frozen=True)
class DeploymentView:
    """What one version of a Deployment says, read once."""

    namespace: str
    name: str
    uid: str
    revision: int | None
    fingerprint: str
    images: tuple[str, ...]
    synced: bool  # the controller has seen this generation of the spec
    counts: tuple[int, int, int, int]  # desired, updated, ready, available
    progressing: Mapping[str, Any] | None  # the Progressing condition
    deadline: bool  # Progressing=False with ProgressDeadlineExceeded
    paused: bool
    complete: bool
    migration: Migration | None
    service: str | None


def read_deployment(obj: Mapping[str, Any]) -> DeploymentView:
    """Read one Deployment as the API serves it (its JSON); RecordError for bad names."""
    meta = f.mapping(obj.get("metadata"))
    namespace = f.check_namespace(meta.get("namespace"), "metadata.namespace")
    name = f.check_k8s_name(meta.get("name"), "metadata.name")
    spec = f.mapping(obj.get("spec"))
    status = f.mapping(obj.get("status"))
    annotations = f.mapping(meta.get("annotations"))
    template = spec.get("template")
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    synced = not isinstance(generation, int) or (isinstance(observed, int) and observed >= generation)
    desired = f.int_or(spec.get("replicas"), 1)
    updated = f.int_or(status.get("updatedReplicas"))
    counts = (desired, updated, f.int_or(status.get("readyReplicas")), f.int_or(status.get("availableReplicas")))
    progressing = _condition(status, "Progressing")
    return DeploymentView(
        namespace=namespace, name=name, uid=f.nonempty_str(meta.get("uid")) or f"{namespace}/{name}",
        revision=_revision(annotations), fingerprint=template_fingerprint(template), images=_images(template),
        synced=synced, counts=counts, progressing=progressing,
        deadline=progressing is not None and progressing.get("status") == "False"
        and progressing.get("reason") == REASON_DEADLINE_EXCEEDED,
        paused=spec.get("paused") is True,
        complete=synced and updated == desired and counts[3] == desired and f.int_or(status.get("replicas")) == updated,
        migration=parse_migration(annotations), service=_service(meta, template, name),
    )


def _previous(hist: Mapping[int, RevisionInfo], revision: int | None, prev: DeploymentState | None
              ) -> tuple[int | None, str | None, tuple[str, ...]]:
    """The revision a rollout replaces (revision, template fingerprint, images): the one we saw last,
    or at first sight the newest older revision the ReplicaSets told us about."""
    older = [r for r in hist if revision is not None and r < revision]
    before = prev.revision if prev is not None else (max(older) if older else None)
    before_info = hist.get(before) if before is not None else None
    return (before,
            prev.fingerprint if prev is not None else (before_info.fingerprint if before_info else None),
            before_info.images if before_info else (prev.images if prev is not None else ()))


def _transitions(v: DeploymentView, prev: DeploymentState | None, *, revision: int | None, new_revision: bool,
                 back_to: int | None) -> tuple[list[tuple[Phase, dict[str, Any]]], bool]:
    """The phases this version implies, in order with their extra fields, and whether a rollout is in
    flight after it (the rules of :meth:`RolloutTracker.observe_deployment`)."""
    out: list[tuple[Phase, dict[str, Any]]] = []
    in_flight = prev.in_flight if prev else False
    if prev is None:
        in_flight = revision is not None and not v.complete and not v.deadline and not v.paused
        if in_flight:
            out.append((Phase.PROGRESSING, {}))
    elif new_revision:
        if back_to is not None:
            out.append((Phase.ROLLED_BACK, {"rollback_to_revision": back_to,
                                            "message": f"revision {revision} restores the template of revision "
                                                       f"{back_to}"}))
        else:
            out.append((Phase.STARTED, {}))
        in_flight = True
        if v.paused:
            out.append((Phase.PAUSED, {}))
        elif v.deadline:
            out.append((Phase.FAILED, {}))
        elif v.complete:
            out.append((Phase.COMPLETED, {}))
            in_flight = False
    elif v.paused:
        if not prev.paused:
            out.append((Phase.PAUSED, {}))
    elif v.deadline:
        if not prev.failed:
            out.append((Phase.FAILED, {}))
    elif v.complete:
        if in_flight:
            out.append((Phase.COMPLETED, {}))
            in_flight = False
    elif in_flight and (v.counts != prev.replicas or prev.paused or prev.failed):
        out.append((Phase.PROGRESSING, {}))
    return out, in_flight


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
        at = f.time_or_none((self.condition or {}).get("lastUpdateTime")) if self.fits(phase) else None
        if at is None or (phase in (Phase.STARTED, Phase.ROLLED_BACK, Phase.PROGRESSING) and at <= self.floor):
            at = self.now  # a condition older than the last record describes an earlier rollout
        return max(at, self.floor)

    def record(self, phase: Phase, *, revision: int | None, template_hash: str | None, images: tuple[str, ...],
               previous_revision: int | None = None, previous_template_hash: str | None = None,
               previous_images: tuple[str, ...] = (), rollback_to_revision: int | None = None,
               reason: str | None = None, message: str | None = None) -> RolloutRecord:
        cond = self.condition if self.condition is not None and self.fits(phase) else {}
        if reason is None:
            reason = f.nonempty_str(cond.get("reason")) or (REASON_PAUSED if phase is Phase.PAUSED else None)
            if message is None:
                message = f.nonempty_str(cond.get("message"))
        return RolloutRecord(
            ts=self.ts(phase), workload=Workload(self.cluster, self.namespace, self.deployment), service=self.service,
            revision=str(revision) if revision is not None else "", phase=phase,
            previous_revision=str(previous_revision) if previous_revision is not None else None,
            template_hash=template_hash, previous_template_hash=previous_template_hash, images=images,
            previous_images=previous_images, replicas=Replicas(*self.replicas),
            reason=reason[:f.MAX_TEXT_LEN] if reason else None, message=message[:f.MAX_TEXT_LEN] if message else None,
            rollback_to_revision=str(rollback_to_revision) if rollback_to_revision is not None else None,
            migration=self.migration,
        )


# ==== events ========================================================================================


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

    def is_new(self, event: KubeEvent) -> bool:
        seen = self._seen.get(event.uid)
        if seen is None:
            return True
        count, last_ts, rv = seen
        if event.resource_version is not None and event.resource_version == rv:
            return False
        return event.count > count or (event.count == count and event.last_ts > last_ts)

    def remember(self, event: KubeEvent) -> None:
        uid = event.uid
        self._seen[uid] = (event.count, event.last_ts, event.resource_version)
        self._seen.move_to_end(uid)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def forget(self, uid: str) -> None:
        self._seen.pop(uid, None)
