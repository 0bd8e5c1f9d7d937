"""Suspects: what most likely caused a burn, with the evidence, as ``slo.alerts`` records carry them.

Built by correlation (:func:`streams.core.correlation.correlate`), stored with the alert track, read by
the gate, the notifier (PagerDuty ``custom_details``), enforcement and the metrics. Three kinds:
:class:`RolloutSuspect` (a rollout of the burning service) and :class:`WarningSuspect` (Kubernetes
Warning events not explained by a rollout) and :class:`InfraSuspect` (node, scheduling, eviction or
volume trouble in a cluster). Each carries its :data:`Evidence`, one typed item per
kind of fact, each with a one-line ``detail`` for a person.

:func:`decode_suspect` is the one reader (it validates names before they reach an API path, a label or
a page), ``to_json`` the one writer. A suspect of a kind this version does not know (a newer worker
during an upgrade) is read as an :class:`OpaqueSuspect` and written back as it came: it never costs
a page, and nothing acts on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from streams.core import conventions as c
from streams.core.errors import RecordError
from streams.core.wire import fields as f
from streams.core.wire.rollout import Migration, OfRollout, Phase, RolloutRef, Workload, revision_aliases

ROLLOUT: str = "rollout"
WARNING: str = "k8s_warning"
INFRASTRUCTURE: str = "infrastructure"
MAX_EVIDENCE_LINES = 8
MAX_SUMMARY_LEN = 1000  # what our correlation writes; a reader takes up to fields.MAX_TEXT_LEN
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_PHASES = frozenset(p.value for p in Phase)


def _opt(out: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        out[name] = value


# ---- evidence -------------------------------------------------------------------------------------


class _Typed:
    """Evidence of one fixed ``type`` (its JSON ``type``)."""

    TYPE: ClassVar[str]

    @property
    def type(self) -> str:
        return self.TYPE


@dataclass(frozen=True)
class Note:
    """A fact in a sentence, with the strength it adds or the weight it multiplies the score by:
    ``rollout_failed``, ``in_progress``, ``paused``, ``other_cluster``, ``platform``,
    ``own_cluster_healthy``."""

    type: str
    detail: str
    strength: float | None = None
    weight: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "detail": self.detail}
        _opt(out, "strength", self.strength)
        _opt(out, "weight", self.weight)
        return out


@dataclass(frozen=True)
class Timing(_Typed):
    """When the change started against the burn onset (``seconds_before_onset`` and ``strength`` for
    a rollout; a warning suspect's timing is the detail alone)."""

    TYPE: ClassVar[str] = "timing"
    detail: str
    seconds_before_onset: float | None = None
    strength: float | None = None
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.TYPE, "detail": self.detail}
        _opt(out, "seconds_before_onset", self.seconds_before_onset)
        _opt(out, "strength", self.strength)
        return out


@dataclass(frozen=True)
class MigrationStep(_Typed):
    TYPE: ClassVar[str] = "migration_step"
    detail: str
    migration: Migration
    strength: float
    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "detail": self.detail, "migration": self.migration.to_json(),
                "strength": self.strength}


@dataclass(frozen=True)
class RevisionSide:
    """Errors of one revision over an interval: ``when`` says which (``during the burn``, ...)."""

    revision: str | None
    errors: int
    total: int
    ratio: float
    when: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"revision": self.revision, "errors": self.errors, "total": self.total,
                               "ratio": self.ratio}
        _opt(out, "when", self.when)
        return out

    @classmethod
    def from_json(cls, d: object, what: str) -> RevisionSide:
        m = f.obj(d, what)
        rev = m.get("revision")
        return cls(revision=None if rev is None else str(rev), errors=f.integer(m.get("errors"), f"{what}.errors"),
                   total=f.integer(m.get("total"), f"{what}.total"), ratio=f.number(m.get("ratio"), f"{what}.ratio"),
                   when=f.opt_text(m.get("when"), f"{what}.when"))


@dataclass(frozen=True)
class RevisionErrorRatio(_Typed):
    """The new revision's error ratio against the previous revision's (one-sided two-proportion
    z-test)."""

    TYPE: ClassVar[str] = "revision_error_ratio"
    new: RevisionSide
    old: RevisionSide | None
    test: str
    z: float
    p_value: float
    detail: str
    strength: float | None = None
    weight: float | None = None
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.TYPE, "new": self.new.to_json(),
                               "old": None if self.old is None else self.old.to_json(),
                               "test": self.test, "z": self.z, "p_value": self.p_value}
        _opt(out, "strength", self.strength)
        _opt(out, "weight", self.weight)
        out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class RevisionHistory(_Typed):
    """The new revision's own errors between the rollout and the burn onset (``after``) against the
    same cluster's in the hour before the rollout (``before``): ``errors_grew`` (evidence for it: a slow
    regression) or ``healthy_run`` (evidence against it: it served well until something else changed);
    no item when the run says neither."""

    TYPE: ClassVar[str] = "revision_history"
    verdict: str
    before: RevisionSide
    after: RevisionSide
    seconds: float  # the length of the ``after`` interval
    detail: str
    strength: float | None = None
    weight: float | None = None
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.TYPE, "verdict": self.verdict, "before": self.before.to_json(),
                               "after": self.after.to_json(), "seconds": self.seconds}
        _opt(out, "strength", self.strength)
        _opt(out, "weight", self.weight)
        out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class OtherClusters(_Typed):
    """The rollout's cluster during the burn (``burning``: the new revision's requests, or all of them
    when records carry no revision) against the service's other clusters still on the previous
    revision over the same interval (``others``)."""

    TYPE: ClassVar[str] = "other_clusters"
    clusters: tuple[str, ...]
    burning: RevisionSide
    others: RevisionSide
    detail: str
    strength: float | None = None
    weight: float | None = None
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.TYPE, "clusters": list(self.clusters), "burning": self.burning.to_json(),
                               "others": self.others.to_json()}
        _opt(out, "strength", self.strength)
        _opt(out, "weight", self.weight)
        out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class WarningCount(_Typed):
    """How many Warning events a rollout's own objects had."""

    TYPE: ClassVar[str] = "k8s_warnings"
    count: int
    strength: float
    detail: str
    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "count": self.count, "strength": self.strength, "detail": self.detail}


@dataclass(frozen=True)
class WarningSeen(_Typed):
    """One Warning event (aggregated over its repeats) on one object."""

    TYPE: ClassVar[str] = "k8s_warning"
    reason: str
    object: str  # Kind/name
    namespace: str
    cluster: str
    count: int
    first_seen: float
    last_seen: float
    message: str
    detail: str
    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "reason": self.reason, "object": self.object, "namespace": self.namespace,
                "cluster": self.cluster, "count": self.count, "first_seen": self.first_seen,
                "last_seen": self.last_seen, "message": self.message, "detail": self.detail}


@dataclass(frozen=True)
class OpaqueEvidence:
    """Evidence of a type this version does not know, or cannot read: kept as it came."""

    raw: Mapping[str, Any]

    @property
    def type(self) -> str:
        t = self.raw.get("type")
        return t if isinstance(t, str) else "unknown"

    @property
    def detail(self) -> str:
        d = self.raw.get("detail")
        return d if isinstance(d, str) else ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.raw)


Evidence = (Note | Timing | MigrationStep | RevisionErrorRatio | RevisionHistory | OtherClusters | WarningCount
            | WarningSeen | OpaqueEvidence)
NOTE_TYPES = frozenset({"rollout_failed", "in_progress", "paused", "other_cluster", "platform", "own_cluster_healthy"})


def _decode_evidence(d: object, what: str) -> Evidence:
    m = f.obj(d, what)
    t = m.get("type")
    detail = m.get("detail")
    if not isinstance(t, str):
        raise f.bad(f"{what}.type", t, "must be a string")
    if t in NOTE_TYPES:
        return Note(str(t), f.text(detail, f"{what}.detail"), f.opt_number(m.get("strength"), f"{what}.strength"),
                    f.opt_number(m.get("weight"), f"{what}.weight"))
    if t == Timing.TYPE:
        return Timing(f.text(detail, f"{what}.detail"), f.opt_number(m.get("seconds_before_onset"), what),
                      f.opt_number(m.get("strength"), f"{what}.strength"))
    if t == MigrationStep.TYPE:
        mig = Migration.from_json(m.get("migration"), f"{what}.migration")
        if mig is None:
            raise f.missing(f"{what}.migration")
        return MigrationStep(f.text(detail, f"{what}.detail"), mig, f.number(m.get("strength"), f"{what}.strength"))
    if t == RevisionErrorRatio.TYPE:
        old = m.get("old")
        return RevisionErrorRatio(
            new=RevisionSide.from_json(m.get("new"), f"{what}.new"),
            old=None if old is None else RevisionSide.from_json(old, f"{what}.old"),
            test=f.text(m.get("test"), f"{what}.test"), z=f.number(m.get("z"), f"{what}.z"),
            p_value=f.number(m.get("p_value"), f"{what}.p_value"), detail=f.text(detail, f"{what}.detail"),
            strength=f.opt_number(m.get("strength"), f"{what}.strength"),
            weight=f.opt_number(m.get("weight"), f"{what}.weight"))
    if t == RevisionHistory.TYPE:
        return RevisionHistory(
            verdict=f.text(m.get("verdict"), f"{what}.verdict"),
            before=RevisionSide.from_json(m.get("before"), f"{what}.before"),
            after=RevisionSide.from_json(m.get("after"), f"{what}.after"),
            seconds=f.number(m.get("seconds"), f"{what}.seconds"), detail=f.text(detail, f"{what}.detail"),
            strength=f.opt_number(m.get("strength"), f"{what}.strength"),
            weight=f.opt_number(m.get("weight"), f"{what}.weight"))
    if t == OtherClusters.TYPE:
        return OtherClusters(
            clusters=tuple(f.check_cluster(x, f"{what}.clusters") for x in f.str_list(m.get("clusters"), what)),
            burning=RevisionSide.from_json(m.get("burning"), f"{what}.burning"),
            others=RevisionSide.from_json(m.get("others"), f"{what}.others"), detail=f.text(detail, f"{what}.detail"),
            strength=f.opt_number(m.get("strength"), f"{what}.strength"),
            weight=f.opt_number(m.get("weight"), f"{what}.weight"))
    if t == WarningCount.TYPE:
        return WarningCount(f.integer(m.get("count"), f"{what}.count"), f.number(m.get("strength"), what),
                            f.text(detail, f"{what}.detail"))
    if t == WarningSeen.TYPE:
        return WarningSeen(
            reason=f.text(m.get("reason"), f"{what}.reason"), object=f.text(m.get("object"), f"{what}.object"),
            namespace=f.text(m.get("namespace"), f"{what}.namespace"), cluster=f.check_cluster(m.get("cluster")),
            count=f.integer(m.get("count"), f"{what}.count"), first_seen=f.number(m.get("first_seen"), what),
            last_seen=f.number(m.get("last_seen"), what), message=f.text(m.get("message"), f"{what}.message"),
            detail=f.text(detail, f"{what}.detail"))
    return OpaqueEvidence(MappingProxyType(dict(m)))


def _one_line(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


# ---- suspects -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutSuspect(OfRollout):
    """A rollout of the burning service (``ref``: workload and revision)."""

    score: float  # 0..1
    summary: str
    service: str
    ref: RolloutRef
    phase: Phase  # at the time of the alert (``superseded`` when a newer revision replaced it)
    started_at: float
    same_cluster: bool
    previous_revision: str | None = None
    template_hash: str | None = None  # what Argo Rollouts passes as the revision
    images: tuple[str, ...] = ()
    previous_images: tuple[str, ...] = ()
    rollback: bool = False
    migration: Migration | None = None
    evidence: tuple[Evidence, ...] = ()
    rank: int = 0  # 1 = the most likely; 0 before ranking

    kind: ClassVar[str] = ROLLOUT

    @property
    def label(self) -> str:
        """A short, stable name for a metric label: ``rollout shop/cart-api@12 eu-west-1``."""
        w = self.ref.workload
        return f"rollout {w.namespace}/{w.name}@{self.ref.revision} {w.cluster}"

    def aliases(self) -> set[str]:
        """Every name of the new revision a question or a playback record may use."""
        return revision_aliases(self.ref.revision, self.template_hash, self.images)

    def to_json(self) -> dict[str, Any]:
        w = self.ref.workload
        return {
            "kind": ROLLOUT, "score": self.score, "summary": self.summary, "service": self.service,
            "cluster": w.cluster, "namespace": w.namespace, "deployment": w.name, "revision": self.ref.revision,
            "previous_revision": self.previous_revision, "template_hash": self.template_hash,
            "images": list(self.images), "previous_images": list(self.previous_images), "phase": str(self.phase),
            "rollback": self.rollback, "started_at": self.started_at, "same_cluster": self.same_cluster,
            "migration": None if self.migration is None else self.migration.to_json(),
            "evidence": [e.to_json() for e in self.evidence], "rank": self.rank,
        }


@dataclass(frozen=True)
class WarningSuspect:
    """Warning events of one workload and reason in one cluster, not explained by a rollout."""

    score: float
    summary: str
    cluster: str
    namespace: str
    workload: str
    reason: str
    count: int
    objects: tuple[str, ...]
    first_seen: float
    last_seen: float
    same_cluster: bool
    evidence: tuple[Evidence, ...] = ()
    rank: int = 0

    kind: ClassVar[str] = WARNING

    @property
    def label(self) -> str:
        return f"{WARNING} {self.reason} {self.namespace}/{self.workload} {self.cluster}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": WARNING, "score": self.score, "summary": self.summary, "cluster": self.cluster,
            "namespace": self.namespace, "workload": self.workload, "reason": self.reason, "count": self.count,
            "objects": list(self.objects), "first_seen": self.first_seen, "last_seen": self.last_seen,
            "same_cluster": self.same_cluster, "evidence": [e.to_json() for e in self.evidence], "rank": self.rank,
        }


@dataclass(frozen=True)
class InfraSuspect:
    """Infrastructure trouble in one cluster (node, scheduling, eviction, volume, network warnings on
    the service's pods), with the nodes it names: never evidence for a rollout, a suspect of its own."""

    score: float
    summary: str
    cluster: str
    nodes: tuple[str, ...]  # the nodes named by the warnings, most warnings first
    reasons: Mapping[str, int]  # Warning reason -> count
    count: int
    workloads: tuple[str, ...]  # namespace/workload of the pods concerned
    objects: tuple[str, ...]
    first_seen: float
    last_seen: float
    same_cluster: bool
    evidence: tuple[Evidence, ...] = ()
    rank: int = 0

    kind: ClassVar[str] = INFRASTRUCTURE

    @property
    def label(self) -> str:
        return f"{INFRASTRUCTURE} {self.cluster}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": INFRASTRUCTURE, "score": self.score, "summary": self.summary, "cluster": self.cluster,
            "nodes": list(self.nodes), "reasons": dict(self.reasons), "count": self.count,
            "workloads": list(self.workloads), "objects": list(self.objects), "first_seen": self.first_seen,
            "last_seen": self.last_seen, "same_cluster": self.same_cluster,
            "evidence": [e.to_json() for e in self.evidence], "rank": self.rank,
        }


@dataclass(frozen=True)
class OpaqueSuspect:
    """A suspect this version cannot read (a newer kind, or a malformed one): passed on as it came,
    never acted on. ``raw`` is the JSON value as it came (normally an object)."""

    raw: Any = field(default_factory=lambda: _EMPTY)
    evidence: tuple[Evidence, ...] = ()

    def _get(self, name: str) -> Any:
        return self.raw.get(name) if isinstance(self.raw, Mapping) else None

    @property
    def kind(self) -> str:
        k = self._get("kind")
        return k if isinstance(k, str) else "unknown"

    @property
    def score(self) -> float:
        s = self._get("score")
        return float(s) if isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) else 0.0

    @property
    def rank(self) -> int:
        r = self._get("rank")
        return r if isinstance(r, int) and not isinstance(r, bool) else 0

    @property
    def summary(self) -> str:
        s = self._get("summary")
        return s if isinstance(s, str) else self.kind

    @property
    def label(self) -> str:
        return self.kind

    def to_json(self) -> Any:
        return dict(self.raw) if isinstance(self.raw, Mapping) else self.raw


Suspect = RolloutSuspect | WarningSuspect | InfraSuspect | OpaqueSuspect


def evidence_lines(s: Suspect, limit: int = MAX_EVIDENCE_LINES) -> tuple[str, ...]:
    """A suspect's evidence as one line each (its ``detail``), at most ``limit``."""
    out = [_one_line(e.detail, 300) for e in s.evidence if e.detail.strip()]
    return tuple(out[:limit])


def _score(v: object) -> float:
    s = f.number(v, "score")
    if not 0.0 <= s <= 1.0:
        raise f.bad("score", v, "must be in [0, 1]")
    return s


def _evidence(m: Mapping[str, Any]) -> tuple[Evidence, ...]:
    """The evidence of a suspect. It is there for a person to read: an item this version cannot read
    is kept as it came (:class:`OpaqueEvidence`), it does not make the suspect unreadable."""
    raw = m.get("evidence")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise f.bad("evidence", raw, "must be a list")
    out: list[Evidence] = []
    for i, e in enumerate(raw):
        try:
            out.append(_decode_evidence(e, f"evidence[{i}]"))
        except RecordError:
            out.append(OpaqueEvidence(MappingProxyType(dict(e)) if isinstance(e, Mapping)
                                      else MappingProxyType({"value": e})))
    return tuple(out)


def _decode_rollout(m: Mapping[str, Any]) -> RolloutSuspect:
    revision = m.get("revision")
    if isinstance(revision, int) and not isinstance(revision, bool):
        revision = str(revision)
    ref = RolloutRef(Workload(f.check_cluster(m.get("cluster")), f.check_namespace(m.get("namespace"), "namespace"),
                              f.check_k8s_name(m.get("deployment"), "deployment")),
                     f.text(revision, "revision", f.MAX_REVISION_LEN))
    phase = m.get("phase")
    if not isinstance(phase, str) or phase not in _PHASES:
        raise f.bad("phase", phase, "not a rollout phase")
    prev = m.get("previous_revision")
    return RolloutSuspect(
        score=_score(m.get("score")), summary=f.text(m.get("summary"), "summary"),
        service=f.check_name(m.get("service"), "service"), ref=ref, phase=Phase(phase),
        started_at=f.number(m.get("started_at"), "started_at"), same_cluster=f.boolean(m.get("same_cluster"),
                                                                                       "same_cluster"),
        previous_revision=None if prev is None else str(prev),
        template_hash=f.opt_text(m.get("template_hash"), "template_hash", 63),
        images=f.str_list(m.get("images"), "images"), previous_images=f.str_list(m.get("previous_images"), "images"),
        rollback=f.boolean(m.get("rollback", False), "rollback"), migration=Migration.from_json(m.get("migration")),
        evidence=_evidence(m), rank=f.integer(m.get("rank", 0), "rank"))


def _decode_warning(m: Mapping[str, Any]) -> WarningSuspect:
    return WarningSuspect(
        score=_score(m.get("score")), summary=f.text(m.get("summary"), "summary"),
        cluster=f.check_cluster(m.get("cluster")),
        namespace=f.text(m.get("namespace"), "namespace", f.MAX_K8S_NAME_LEN),
        workload=f.text(m.get("workload"), "workload", f.MAX_K8S_NAME_LEN), reason=f.text(m.get("reason"), "reason"),
        count=f.integer(m.get("count"), "count"), objects=f.str_list(m.get("objects"), "objects"),
        first_seen=f.number(m.get("first_seen"), "first_seen"), last_seen=f.number(m.get("last_seen"), "last_seen"),
        same_cluster=f.boolean(m.get("same_cluster"), "same_cluster"), evidence=_evidence(m),
        rank=f.integer(m.get("rank", 0), "rank"))


def _decode_infra(m: Mapping[str, Any]) -> InfraSuspect:
    reasons = f.mapping(m.get("reasons"))
    return InfraSuspect(
        score=_score(m.get("score")), summary=f.text(m.get("summary"), "summary"),
        cluster=f.check_cluster(m.get("cluster")),
        nodes=tuple(f.check_k8s_name(n, "nodes") for n in f.str_list(m.get("nodes"), "nodes")),
        reasons=MappingProxyType({f.text(k, "reasons"): f.integer(v, f"reasons.{k}") for k, v in reasons.items()}),
        count=f.integer(m.get("count"), "count"), workloads=f.str_list(m.get("workloads"), "workloads"),
        objects=f.str_list(m.get("objects"), "objects"), first_seen=f.number(m.get("first_seen"), "first_seen"),
        last_seen=f.number(m.get("last_seen"), "last_seen"),
        same_cluster=f.boolean(m.get("same_cluster"), "same_cluster"), evidence=_evidence(m),
        rank=f.integer(m.get("rank", 0), "rank"))


def decode_suspect(d: object) -> Suspect:
    """Read one suspect (parsed JSON). RecordError names the field when a rollout or warning suspect is
    malformed; a suspect of another kind is an :class:`OpaqueSuspect`."""
    m = f.obj(d, "suspect")
    kind = m.get("kind")
    try:
        if kind == ROLLOUT:
            return _decode_rollout(m)
        if kind == WARNING:
            return _decode_warning(m)
        if kind == INFRASTRUCTURE:
            return _decode_infra(m)
    except RecordError as exc:
        raise RecordError(exc.reason, f"suspect ({kind}): {exc.detail}") from None
    return OpaqueSuspect(MappingProxyType(dict(m)))


def decode_suspects(value: object, what: str = "suspects") -> tuple[Suspect, ...]:
    """Suspects, each read by :func:`decode_suspect`; one that does not read is kept as it came (an
    :class:`OpaqueSuspect`): a malformed suspect must never cost the page or the incident it belongs
    to, and nothing acts on an opaque one. Only a value that is not a list at all is an error."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RecordError(c.REASON_BAD_FIELD, f"{what} must be a list")
    out: list[Suspect] = []
    for s in value:
        try:
            out.append(decode_suspect(s))
        except RecordError:
            out.append(OpaqueSuspect(MappingProxyType(dict(s)) if isinstance(s, Mapping) else s))
    return tuple(out)
