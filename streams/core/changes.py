"""What changed around a service: its recent rollouts, the Warning events of its objects and its change
freezes (pure). One :class:`ServiceChanges` per service, kept in the worker's ``changes`` table
(co-partitioned with the service's playback records) and read when an alert fires (correlation) and
when the gate is asked.

Merging is idempotent (a record delivered twice, at-least-once, leaves the state as once) and order
tolerant (a late record of an earlier phase does not move a rollout back). The state is bounded in
number and age (:class:`ChangeLimits`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core import conventions as c
from streams.core.errors import RecordError
from streams.core.freezes import FreezeBook, Order
from streams.core.wire.change import Change
from streams.core.wire.k8s_event import KubeEvent, decode_event
from streams.core.wire.rollout import (
    Migration,
    OfRollout,
    Phase,
    Replicas,
    RolloutRecord,
    RolloutRef,
    Workload,
    decode_rollout,
)

MAX_K8S_MESSAGE_BYTES = 1024 * 1024
KEEP = "keep"
IGNORE = "ignore"


@dataclass(frozen=True)
class ChangeLimits:
    """How much change state one service keeps (docs/correlation.md)."""

    max_rollouts: int = 32  # newest kept
    max_warnings: int = 64  # newest kept
    max_uids_per_warning: int = 16
    retention_s: int = 2 * 86400  # state older than this (event time) is dropped
    # Clusters the Kubernetes bridge reported for the service (trusted placements, streams.core.series):
    # the most recently seen kept, each for this long after it was last seen.
    max_clusters: int = 256
    cluster_retention_s: int = 35 * 86400


DEFAULT_LIMITS = ChangeLimits()


@dataclass(slots=True)
class TrackedRollout(OfRollout):
    """One revision of one workload, merged from its ``k8s.rollouts`` records."""

    ref: RolloutRef
    service: str | None
    previous_revision: str | None
    template_hash: str | None
    previous_template_hash: str | None
    images: tuple[str, ...]
    previous_images: tuple[str, ...]
    started_ts: float  # the ``started`` record's time, else the earliest record's
    started_seen: bool
    phase: Phase  # the latest record's
    phase_ts: float
    rollback: bool
    migration: Migration | None
    replicas: Replicas | None
    completed_ts: float | None = None
    failed_ts: float | None = None
    paused_ts: float | None = None
    superseded_ts: float | None = None  # a newer revision of the workload started then

    @property
    def phase_now(self) -> Phase:
        """The phase as of the latest record: ``superseded`` once a newer revision started."""
        return Phase.SUPERSEDED if self.superseded_ts is not None else self.phase

    def to_json(self) -> dict[str, Any]:
        """The table value (key order as stored since the first version of this state)."""
        w = self.ref.workload
        out: dict[str, Any] = {"cluster": w.cluster, "namespace": w.namespace, "deployment": w.name,
                               "service": self.service, "revision": self.ref.revision}
        out.update((name, getattr(self, name)) for name in _STORED_AS_IS)
        out.update(images=list(self.images), previous_images=list(self.previous_images))
        out.update((name, getattr(self, name)) for name in _STORED_TIMES)
        out.update(phase=str(self.phase), phase_ts=self.phase_ts, completed_ts=self.completed_ts,
                   failed_ts=self.failed_ts, paused_ts=self.paused_ts, rollback=self.rollback,
                   migration=None if self.migration is None else self.migration.to_json(),
                   replicas=None if self.replicas is None else self.replicas.to_json())
        if self.superseded_ts is not None:
            out["superseded_ts"] = self.superseded_ts
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TrackedRollout:
        rep = d.get("replicas")
        prev = d.get("previous_revision")
        return cls(
            ref=RolloutRef(Workload(str(d["cluster"]), str(d["namespace"]), str(d["deployment"])), str(d["revision"])),
            service=d.get("service"), previous_revision=None if prev is None else str(prev),
            template_hash=d.get("template_hash"), previous_template_hash=d.get("previous_template_hash"),
            images=tuple(d.get("images") or ()), previous_images=tuple(d.get("previous_images") or ()),
            started_ts=float(d["started_ts"]), started_seen=bool(d["started_seen"]), phase=Phase(d["phase"]),
            phase_ts=float(d["phase_ts"]), rollback=bool(d.get("rollback")),
            migration=Migration.from_json(d.get("migration")),
            replicas=None if not isinstance(rep, Mapping) else Replicas(**{k: int(v) for k, v in rep.items()}),
            completed_ts=_opt_float(d.get("completed_ts")), failed_ts=_opt_float(d.get("failed_ts")),
            paused_ts=_opt_float(d.get("paused_ts")), superseded_ts=_opt_float(d.get("superseded_ts")))

    @classmethod
    def first(cls, r: RolloutRecord) -> TrackedRollout:
        return cls(
            ref=r.ref, service=r.service, previous_revision=r.previous_revision, template_hash=r.template_hash,
            previous_template_hash=r.previous_template_hash, images=r.images, previous_images=r.previous_images,
            started_ts=r.ts, started_seen=r.phase is Phase.STARTED, phase=r.phase, phase_ts=r.ts,
            rollback=r.phase is Phase.ROLLED_BACK, migration=r.migration, replicas=r.replicas)

    def merge(self, r: RolloutRecord) -> None:
        """Another record of the same rollout (any order, any number of times)."""
        ts, phase = r.ts, r.phase
        if phase is Phase.STARTED or (phase is Phase.ROLLED_BACK and not self.started_seen):
            if not self.started_seen or ts < self.started_ts:
                self.started_ts = ts
            self.started_seen = True
        elif ts < self.started_ts and not self.started_seen:
            self.started_ts = ts  # an earlier progress record arrived late
        for name in _FIRST_KNOWN:
            if getattr(r, name) and not getattr(self, name):
                setattr(self, name, getattr(r, name))
        if ts >= self.phase_ts:
            self.phase, self.phase_ts = phase, ts
            if r.replicas is not None:
                self.replicas = r.replicas

    def note_phase_time(self, r: RolloutRecord) -> None:
        """The earliest time of each phase that ends or stops a rollout (and that it was a rollback)."""
        if r.phase is Phase.ROLLED_BACK:
            self.rollback = True
        when = _PHASE_TIMES.get(r.phase)
        if when is not None and (getattr(self, when) is None or r.ts < getattr(self, when)):
            setattr(self, when, r.ts)


# Fields a later record may fill in when the first did not know them (the first value known stays).
_FIRST_KNOWN = ("template_hash", "previous_template_hash", "previous_revision", "migration", "images",
                "previous_images")
_STORED_AS_IS = ("previous_revision", "template_hash", "previous_template_hash")
_STORED_TIMES = ("started_ts", "started_seen")
# The phases whose (earliest) time a tracked rollout remembers, and where.
_PHASE_TIMES = {Phase.COMPLETED: "completed_ts", Phase.FAILED: "failed_ts", Phase.PAUSED: "paused_ts"}


def _opt_float(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]


@dataclass(slots=True)
class TrackedWarning:
    """Warning events of one reason on one object, merged over their repeats and recreations."""

    cluster: str
    namespace: str
    kind: str
    name: str
    reason: str
    message: str
    owner_kind: str | None
    owner_name: str | None
    first_ts: float
    last_ts: float
    uids: dict[str, int] = field(default_factory=dict)  # Event uid -> its cumulative count
    node: str | None = None  # the node it was last seen on (KubeEvent.node)

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.kind}/{self.name}/{self.reason}"

    @property
    def count(self) -> int:
        return sum(self.uids.values()) or 1

    def to_json(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "namespace": self.namespace, "kind": self.kind, "name": self.name,
                "reason": self.reason, "message": self.message, "owner_kind": self.owner_kind,
                "owner_name": self.owner_name, "first_ts": self.first_ts, "last_ts": self.last_ts,
                "uids": dict(self.uids), **({"node": self.node} if self.node else {})}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TrackedWarning:
        return cls(cluster=d["cluster"], namespace=d["namespace"], kind=d["kind"], name=d["name"], reason=d["reason"],
                   message=d.get("message") or "", owner_kind=d.get("owner_kind"), owner_name=d.get("owner_name"),
                   first_ts=float(d["first_ts"]), last_ts=float(d["last_ts"]),
                   uids={str(k): int(v) for k, v in (d.get("uids") or {}).items()},
                   node=d.get("node") or None)


def warning_key(ev: KubeEvent) -> str:
    return f"{ev.cluster}/{ev.namespace}/{ev.kind}/{ev.name}/{ev.reason}"


class ServiceChanges:
    """The recent rollouts, Warning events and change freezes of one service."""

    __slots__ = ("clusters", "freezes", "newest_ts", "rollouts", "warnings")

    def __init__(self) -> None:
        self.rollouts: dict[str, TrackedRollout] = {}  # by RolloutRef.key
        self.warnings: dict[str, TrackedWarning] = {}  # by TrackedWarning.key
        self.clusters: dict[str, float] = {}  # cluster -> event time it was last reported
        self.freezes = FreezeBook()
        self.newest_ts = 0.0

    # -- serialisation (the table value) --
    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {"r": {k: r.to_json() for k, r in self.rollouts.items()},
                                "w": {k: w.to_json() for k, w in self.warnings.items()}, "t": self.newest_ts}
        if self.freezes:
            body["f"] = self.freezes.to_json()
        if self.clusters:
            body["c"] = self.clusters
        return orjson.dumps(body)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> ServiceChanges:
        sc = cls()
        if raw:
            d = orjson.loads(raw)
            sc.rollouts = {k: TrackedRollout.from_json(v) for k, v in (d.get("r") or {}).items()}
            sc.warnings = {k: TrackedWarning.from_json(v) for k, v in (d.get("w") or {}).items()}
            sc.freezes = FreezeBook.from_json(d.get("f"))
            sc.newest_ts = float(d.get("t") or 0.0)
            sc.clusters = {str(k): float(v) for k, v in (d.get("c") or {}).items()}
        return sc

    # -- merging --
    def apply_freeze(self, order: Order) -> None:
        self.freezes.apply(order)

    def apply_rollout(self, r: RolloutRecord, cfg: ChangeLimits = DEFAULT_LIMITS) -> None:
        """Merge one ``k8s.rollouts`` record."""
        key = r.ref.key
        cur = self.rollouts.get(key)
        if cur is None:
            cur = self.rollouts[key] = TrackedRollout.first(r)
        else:
            cur.merge(r)
        cur.note_phase_time(r)
        # A newer revision of the same workload (a rollout, a rollback) ends the older ones.
        for other in self.rollouts.values():
            if (other is not cur and other.workload == cur.workload and revision_lt(other.revision, cur.revision)
                    and (other.superseded_ts is None or r.ts < other.superseded_ts) and other.started_ts <= r.ts):
                other.superseded_ts = r.ts
        self.newest_ts = max(self.newest_ts, r.ts)
        self._saw(r.workload.cluster, r.ts)
        self.prune(cfg)

    def _saw(self, cluster: str, ts: float) -> None:
        if ts > self.clusters.get(cluster, 0.0):
            self.clusters[cluster] = ts

    def apply_warning(self, ev: KubeEvent, cfg: ChangeLimits = DEFAULT_LIMITS) -> None:
        """Merge one Warning event. An Event's ``count`` is cumulative per uid, so repeats and
        redeliveries keep the highest count."""
        key = warning_key(ev)
        last = ev.last_ts or ev.first_ts or 0.0
        first = ev.first_ts or last
        count = min(max(1, ev.count or 1), 2**31 - 1)
        cur = self.warnings.get(key)
        if cur is None:
            cur = self.warnings[key] = TrackedWarning(
                cluster=ev.cluster, namespace=ev.namespace, kind=ev.kind, name=ev.name, reason=ev.reason,
                message=(ev.message or "")[:300], owner_kind=ev.owner_kind, owner_name=ev.owner_name,
                first_ts=first, last_ts=last, node=ev.node)
        uid = ev.uid or ""
        if count > cur.uids.get(uid, 0):
            cur.uids[uid] = count
        if len(cur.uids) > cfg.max_uids_per_warning:
            # Keep the largest counts; the dropped uids are old recreations of the same Event.
            for k in sorted(cur.uids, key=lambda u: (cur.uids[u], u))[: len(cur.uids) - cfg.max_uids_per_warning]:
                del cur.uids[k]
        if first < cur.first_ts:
            cur.first_ts = first
        if last >= cur.last_ts:
            newer = last > cur.last_ts
            cur.last_ts = last
            if ev.message:
                cur.message = ev.message[:300]
            if ev.node and (newer or cur.node is None or ev.node < cur.node):
                cur.node = ev.node  # the latest; on a tie, the same whatever the order
        self.newest_ts = max(self.newest_ts, last)
        self._saw(ev.cluster, last)
        self.prune(cfg)

    def prune(self, cfg: ChangeLimits = DEFAULT_LIMITS) -> None:
        """Bound the state: drop what is older than the retention, then the oldest beyond the caps."""
        horizon = self.newest_ts - cfg.retention_s
        for k in [k for k, r in self.rollouts.items() if r.phase_ts < horizon]:
            del self.rollouts[k]
        for k in [k for k, w in self.warnings.items() if w.last_ts < horizon]:
            del self.warnings[k]
        _cap(self.rollouts, cfg.max_rollouts, lambda k: (self.rollouts[k].phase_ts, k))
        _cap(self.warnings, cfg.max_warnings, lambda k: (self.warnings[k].last_ts, k))
        gone = self.newest_ts - cfg.cluster_retention_s
        for k in [k for k, ts in self.clusters.items() if ts < gone]:
            del self.clusters[k]
        _cap(self.clusters, cfg.max_clusters, lambda k: (self.clusters[k], k))

    def rollout(self, ref: RolloutRef) -> TrackedRollout | None:
        return self.rollouts.get(ref.key)

    def apply(self, change: Change, limits: ChangeLimits = DEFAULT_LIMITS) -> None:
        """Merge one record of the changes topic."""
        what = change.what
        if isinstance(what, RolloutRecord):
            self.apply_rollout(what, limits)
        elif isinstance(what, KubeEvent):
            self.apply_warning(what, limits)
        else:
            self.apply_freeze(what)


def _cap(d: dict[str, Any], limit: int, order: Any) -> None:
    if len(d) > limit:
        for k in sorted(d, key=order)[: len(d) - limit]:
            del d[k]


def revision_lt(a: str, b: str) -> bool:
    """Deployment revisions are integers; anything else compares as text."""
    try:
        return int(a) < int(b)
    except (TypeError, ValueError):
        return a < b


# ---- which service an object belongs to -----------------------------------------------------------


def service_of_event(ev: KubeEvent, services: Iterable[str]) -> str | None:
    """The service an event belongs to: the object's labels ``app.kubernetes.io/name`` or ``app``
    (kubernetes-event-exporter sends them), else the longest known service name that the owning
    workload's or the object's name starts with (``playback-api-7d9f8c-x2x`` -> ``playback-api``).
    None when nothing matches: such events are not kept."""
    known = set(services)
    for label in ("app.kubernetes.io/name", "app"):
        v = ev.labels.get(label)
        if v is not None and v in known:
            return v
    best: str | None = None
    for name in (ev.owner_name, ev.name):
        if name is None:
            continue
        for s in known:
            if (name == s or name.startswith(s + "-")) and (best is None or len(s) > len(best)):
                best = s
        if best is not None:
            return best
    return None


# ---- what to do with a k8s.rollouts or k8s.events record --------------------------------------------


@dataclass(frozen=True)
class Classified:
    """``outcome``: :data:`KEEP` (``change`` is set: forward it), :data:`IGNORE` (a Normal event, a
    service without an SLO) or a dead-letter reason; ``detail`` says why."""

    outcome: str
    change: Change | None = None
    detail: str = ""


def classify(value: bytes | None, *, rollouts: bool, services: frozenset[str], now: float,
             max_future_s: int, default_cluster: str | None = None) -> Classified:
    """What to do with one ``k8s.rollouts`` (``rollouts``) or ``k8s.events`` value. Never raises:
    anything unexpected in a record is a dead letter (``bad_field``), never a stopped agent.
    ``default_cluster``: the cluster of an event whose writer names none (kubernetes-event-exporter's
    ``clusterName`` is empty unless configured)."""
    try:
        return _classify(value, rollouts, services, now + max_future_s, max_future_s, default_cluster)
    except Exception as exc:  # a shape the validators did not foresee
        return Classified(c.REASON_BAD_FIELD, None, f"unreadable record ({type(exc).__name__}: {str(exc)[:200]})")


def _document(value: bytes | None) -> dict[str, Any] | Classified:
    if value is None:
        return Classified(c.REASON_BAD_JSON, None, "empty message (no value)")
    if len(value) > MAX_K8S_MESSAGE_BYTES:
        return Classified(c.REASON_TOO_LARGE, None, f"message of {len(value)} bytes exceeds {MAX_K8S_MESSAGE_BYTES}")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Classified(c.REASON_BAD_JSON, None, f"not JSON: {exc}")
    if type(doc) is not dict:
        return Classified(c.REASON_BAD_JSON, None, f"expected a JSON object, got {type(doc).__name__}")
    sv = doc.get("schema_version", c.SCHEMA_VERSION)  # kubernetes-event-exporter sends none
    if sv != c.SCHEMA_VERSION or type(sv) is not int:
        return Classified(c.REASON_BAD_SCHEMA_VERSION, None, f"schema_version must be {c.SCHEMA_VERSION}, got {sv!r}")
    return doc


def _classify(value: bytes | None, rollouts: bool, services: frozenset[str], future: float,
              max_future_s: int, default_cluster: str | None) -> Classified:
    doc = _document(value)
    if isinstance(doc, Classified):
        return doc
    if rollouts:
        try:
            r = decode_rollout(doc)
        except RecordError as exc:
            return Classified(exc.reason, None, exc.detail)
        if r.service not in services:
            return Classified(IGNORE, None, f"no SLO for service {r.service}")
        if r.ts > future:
            # One clock far ahead would age every other record of the service out of the state.
            return Classified(c.REASON_FUTURE, None, f"ts {r.ts:.0f} is more than {max_future_s}s ahead")
        return Classified(KEEP, Change(r.service, r))
    try:
        ev = decode_event(doc, default_cluster=default_cluster)
    except RecordError as exc:
        return Classified(exc.reason, None, exc.detail)
    if not ev.warning:
        return Classified(IGNORE, None, "not a Warning event")
    service = service_of_event(ev, services)
    if service is None:
        return Classified(IGNORE, None, "the object belongs to no service with an SLO")
    if ev.last_ts > future or ev.first_ts > future:
        return Classified(c.REASON_FUTURE, None, f"the event's time is more than {max_future_s}s ahead")
    return Classified(KEEP, Change(service, ev))
