"""``k8s.rollouts``: one record per rollout phase of a Deployment (key ``cluster/namespace/deployment``).

Written by the kube bridge (:class:`streams.core.kube.RolloutTracker`), read by the workers
(correlation), the notifier (PagerDuty Change Events) and the demo. :func:`decode_rollout` is the one
reader (it accepts integer revisions of older writers and records without the optional fields of
later versions); :meth:`RolloutRecord.to_json` the one writer. Also here: the rollout phases
(:class:`Phase`, spelled once) and the identities of a workload and of one of its rollouts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import orjson

from streams.core import conventions as c
from streams.core.errors import RecordError
from streams.core.wire import fields as f


class Phase(StrEnum):
    """Where a rollout stands. Every member but ``SUPERSEDED`` appears on ``k8s.rollouts``;
    ``SUPERSEDED`` is what correlation says of a rollout a newer revision of the same workload
    replaced (a suspect's phase, never a record's)."""

    STARTED = "started"
    PROGRESSING = "progressing"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"

    @property
    def active(self) -> bool:
        """Still changing what serves traffic (or stopped half-way): a suspect the gate may roll back
        when no revision is asked."""
        return self in _ACTIVE

    @property
    def in_progress(self) -> bool:
        """Moving right now: what enforcement may pause."""
        return self in _IN_PROGRESS

    @property
    def announced(self) -> bool:
        """Worth a PagerDuty Change Event (``progressing`` would be one per replica step)."""
        return self in _ANNOUNCED


_ACTIVE: Final = frozenset({Phase.STARTED, Phase.PROGRESSING, Phase.FAILED, Phase.PAUSED})
_IN_PROGRESS: Final = frozenset({Phase.STARTED, Phase.PROGRESSING})
_ANNOUNCED: Final = frozenset({Phase.STARTED, Phase.COMPLETED, Phase.FAILED, Phase.PAUSED, Phase.ROLLED_BACK})
RECORDED_PHASES: Final = frozenset(p for p in Phase if p is not Phase.SUPERSEDED)


@dataclass(frozen=True, order=True)
class Workload:
    """A Deployment (or another workload) in a cluster: the key of its ``k8s.rollouts`` records."""

    cluster: str
    namespace: str
    name: str

    @property
    def key(self) -> str:
        """``cluster/namespace/name``."""
        return f"{self.cluster}/{self.namespace}/{self.name}"

    def at(self, revision: str) -> RolloutRef:
        return RolloutRef(self, revision)


@dataclass(frozen=True, order=True)
class RolloutRef:
    """One rollout: a revision of a workload. The identity correlation, the gate and enforcement
    (``rollout.gates`` key) share."""

    workload: Workload
    revision: str

    @property
    def key(self) -> str:
        """``cluster/namespace/name@revision``."""
        return f"{self.workload.key}@{self.revision}"

    @property
    def cluster(self) -> str:
        return self.workload.cluster

    @property
    def namespace(self) -> str:
        return self.workload.namespace

    @property
    def name(self) -> str:
        """The workload's name (a Deployment's)."""
        return self.workload.name


class OfRollout:
    """The workload, cluster and revision of something about one rollout (its ``ref``): a tracked
    rollout, a rollout suspect."""

    __slots__ = ()
    ref: RolloutRef

    @property
    def workload(self) -> Workload:
        return self.ref.workload

    @property
    def cluster(self) -> str:
        return self.ref.workload.cluster

    @property
    def revision(self) -> str:
        return self.ref.revision


@dataclass(frozen=True)
class Replicas:
    """Replica counts of the workload when the record was written."""

    desired: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0

    def to_json(self) -> dict[str, int]:
        return {"desired": self.desired, "updated": self.updated, "ready": self.ready, "available": self.available}


@dataclass(frozen=True)
class Migration:
    """A migration step a workload declares (``slo-stream.io/migration-*`` annotations): traffic of a
    service moving ``source`` -> ``target``, ``traffic_percent`` of it on ``target``. ``reason``
    explains a value that was dropped."""

    source: str | None = None
    target: str | None = None
    traffic_percent: int | float | None = None
    step: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "traffic_percent": self.traffic_percent,
                "step": self.step, "reason": self.reason}

    @classmethod
    def from_json(cls, value: object, what: str = "migration") -> Migration | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise f.bad(what, value, "must be an object or null")
        ends = []
        for k in ("from", "to"):
            v = value.get(k)
            if v is not None and (not isinstance(v, str) or not c.NAME_RE.match(v)):
                raise f.bad(f"{what}.{k}", v, "must be a lowercase DNS label or null")
            ends.append(v)
        pct = value.get("traffic_percent")
        if pct is not None and (isinstance(pct, bool) or not isinstance(pct, int | float)
                                or not math.isfinite(pct) or not 0 <= pct <= 100):
            raise f.bad(f"{what}.traffic_percent", pct, "must be a number in 0..100 or null")
        texts = []
        for k in ("step", "reason"):
            v = value.get(k)
            if v is not None and (not isinstance(v, str) or len(v) > f.MAX_TEXT_LEN):
                raise f.bad(f"{what}.{k}", v, "must be a string or null")
            texts.append(v)
        return cls(ends[0], ends[1], pct, texts[0], texts[1])


@dataclass(frozen=True)
class RolloutRecord:
    """A ``k8s.rollouts`` value (DESIGN.md, "Topic contracts"); ``ts`` is epoch seconds (event time)."""

    ts: float
    workload: Workload
    service: str | None
    revision: str
    phase: Phase
    previous_revision: str | None = None
    template_hash: str | None = None
    previous_template_hash: str | None = None
    images: tuple[str, ...] = ()
    previous_images: tuple[str, ...] = ()
    replicas: Replicas = Replicas()
    reason: str | None = None
    message: str | None = None
    rollback_to_revision: str | None = None
    migration: Migration | None = None

    @property
    def ref(self) -> RolloutRef:
        return RolloutRef(self.workload, self.revision)

    @property
    def key(self) -> str:
        """The Kafka key: ``cluster/namespace/deployment``."""
        return self.workload.key

    def to_json(self) -> dict[str, Any]:
        w = self.workload
        return {
            "schema_version": c.SCHEMA_VERSION,
            "ts": self.ts,
            "cluster": w.cluster,
            "namespace": w.namespace,
            "deployment": w.name,
            "service": self.service,
            "revision": self.revision,
            "previous_revision": self.previous_revision,
            "template_hash": self.template_hash,
            "previous_template_hash": self.previous_template_hash,
            "images": list(self.images),
            "previous_images": list(self.previous_images),
            "phase": str(self.phase),
            "replicas": self.replicas.to_json(),
            "reason": self.reason,
            "message": self.message,
            "rollback_to_revision": self.rollback_to_revision,
            "migration": None if self.migration is None else self.migration.to_json(),
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_json())


def _revision(doc: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise f.missing(name)
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= f.MAX_REVISION_LEN:
        return value
    raise f.bad(name, value, "must be a revision (string)")


def _replicas(value: object) -> Replicas:
    if value is None:
        return Replicas()
    if not isinstance(value, Mapping):
        raise f.bad("replicas", value, "must be an object")
    counts = []
    for k in ("desired", "updated", "ready", "available"):
        v = value.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise f.bad(f"replicas.{k}", v, "must be an integer >= 0")
        counts.append(v)
    return Replicas(*counts)


def _images(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = doc.get(name, [])
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(i, str) and 0 < len(i) <= f.MAX_TEXT_LEN for i in value):
        raise f.bad(name, value, f"must be a list of image references (each at most {f.MAX_TEXT_LEN} characters)")
    return tuple(value)


def decode_rollout(doc: object) -> RolloutRecord:
    """Validate a ``k8s.rollouts`` value (parsed JSON). Raises :class:`RecordError` naming the field."""
    if not isinstance(doc, Mapping):
        raise RecordError(c.REASON_BAD_FIELD, "a rollout record must be a JSON object")
    if doc.get("schema_version", c.SCHEMA_VERSION) != c.SCHEMA_VERSION:
        raise RecordError(c.REASON_BAD_SCHEMA_VERSION, f"schema_version={f.short(doc.get('schema_version'))}")
    ts = doc.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) or not 0 < ts < 1e11:
        raise (f.missing("ts") if ts is None else f.bad("ts", ts, "must be epoch seconds"))
    phase = doc.get("phase")
    if not isinstance(phase, str) or phase not in RECORDED_PHASES:
        raise (f.missing("phase") if phase is None
               else f.bad("phase", phase, f"must be one of {sorted(RECORDED_PHASES)}"))
    service = doc.get("service")
    if service is not None and (not isinstance(service, str) or not c.NAME_RE.match(service)):
        raise f.bad("service", service, "not a service name")
    replicas = _replicas(doc.get("replicas", {}))
    workload = Workload(f.check_cluster(doc.get("cluster")), f.check_namespace(doc.get("namespace"), "namespace"),
                        f.check_k8s_name(doc.get("deployment"), "deployment"))
    return RolloutRecord(
        ts=float(ts), workload=workload, service=service,
        revision=_revision(doc, "revision", required=True) or "",
        previous_revision=_revision(doc, "previous_revision", required=False),
        template_hash=f.opt_text(doc.get("template_hash"), "template_hash", 63),
        previous_template_hash=f.opt_text(doc.get("previous_template_hash"), "previous_template_hash", 63),
        images=_images(doc, "images"), previous_images=_images(doc, "previous_images"),
        phase=Phase(phase), replicas=replicas,
        reason=f.opt_text(doc.get("reason"), "reason"), message=f.opt_text(doc.get("message"), "message"),
        rollback_to_revision=_revision(doc, "rollback_to_revision", required=False),
        migration=Migration.from_json(doc.get("migration")),
    )


def revision_aliases(revision: str | None, template_hash: str | None, images: tuple[str, ...]) -> set[str]:
    """What a playback record's ``revision`` may say for one revision of a workload: the Deployment
    revision number, the pod-template-hash, a full image reference or its tag (or digest)."""
    out: set[str] = set()
    for v in (revision, template_hash):
        if v:
            out.add(v)
    for image in images:
        out.add(image)
        tail = image.rsplit("/", 1)[-1]
        if "@" in tail:
            out.add(tail.split("@", 1)[1])
        elif ":" in tail:
            out.add(tail.rsplit(":", 1)[1])
    return out
