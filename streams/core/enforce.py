"""Enforcement: pause the Deployment whose rollout a page blames with high confidence (pure).

Optional and off by default (``SLO_STREAM_ENFORCE=pause`` turns it on in the kube bridge). The
kube bridge of one cluster reads ``slo.alerts``; for each record :func:`decide` says whether to
pause a Deployment of *that* cluster, and why (or why not). Every condition must hold:

- the alert is a ``page`` and ``firing`` (never a ticket, never a resolve), and recent: its event
  time is at most ``max_alert_age_s`` behind the wall clock (a replay of old data acts on nothing);
- its **top** suspect (rank 1) is a rollout (``kind: rollout``), not a rollback, of the alert's
  service, in this cluster, while the burn is in this cluster (or the SLO groups clusters away);
- the rollout was in progress when the alert fired (phase ``started`` or ``progressing``);
- its score is at least ``min_score`` (0.8: more than timing can give; docs/kube-bridge.md);
- its namespace is allowed (an optional allow-list);
- its key ``cluster/namespace/deployment@revision`` is not among the rollouts already acted on
  (the ``rollout.gates`` topic, read back when the bridge starts): never twice for one rollout.

Then, just before acting, :func:`recheck` reads the live Deployment the bridge fetched again: it
skips a Deployment already paused, one whose revision is no longer the suspect's, and one whose
rollout has completed meanwhile. The action is a merge patch touching only ``spec.paused``
(:func:`pause_patch`). :func:`gate_record` builds the ``rollout.gates`` record of what was done or
skipped, and :class:`Ledger` reads them back ("detect, then act": the adapter does the I/O).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from streams.core import conventions as c

IN_PROGRESS_PHASES: Final = frozenset({"started", "progressing"})
PATCH_CONTENT_TYPE: Final = "application/merge-patch+json"
ANN_REVISION: Final = "deployment.kubernetes.io/revision"

_DEPLOYMENT_RE: Final = re.compile(r"^(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_REVISION_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}\Z")
_MAX_EVIDENCE: Final = 8
_MAX_TEXT: Final = 1000


def pause_patch() -> dict[str, Any]:
    """The whole body of the PATCH, a JSON merge patch (RFC 7386): nothing else is ever sent."""
    return {"spec": {"paused": True}}


class Mode(StrEnum):
    OFF = "off"
    PAUSE = "pause"


MODES: Final = frozenset(m.value for m in Mode)


class Outcome(StrEnum):
    """The ``action`` of a ``rollout.gates`` record."""

    PAUSED = "paused"
    SKIPPED = "skipped"


class Skip(StrEnum):
    """Why an alert leads to no pause. The first group is decided from the alert alone
    (:func:`decide`); the second from the live Deployment or the API's answer, just before acting."""

    BAD_RECORD = "bad_record"
    NOT_FIRING = "not_firing"
    NOT_A_PAGE = "not_a_page"
    STALE_ALERT = "stale_alert"
    NO_SUSPECT = "no_suspect"
    TOP_SUSPECT_NOT_A_ROLLOUT = "top_suspect_not_a_rollout"
    OTHER_SERVICE = "other_service"
    OTHER_CLUSTER = "other_cluster"  # the rollout is in another cluster: that cluster's bridge decides
    BURN_IN_OTHER_CLUSTER = "burn_in_other_cluster"  # the rollout is here, the burn elsewhere
    ALREADY_ACTED = "already_acted"
    NAMESPACE_NOT_ALLOWED = "namespace_not_allowed"
    ROLLBACK = "rollback"  # pausing a rollback would stop the remedy
    NOT_IN_PROGRESS = "not_in_progress"
    BELOW_SCORE = "below_score"
    # Found just before acting (published as "skipped" records):
    ALREADY_PAUSED = "already_paused"
    REVISION_CHANGED = "revision_changed"
    ROLLOUT_COMPLETED = "rollout_completed"
    DEPLOYMENT_GONE = "deployment_gone"
    FORBIDDEN = "forbidden"
    REJECTED = "rejected"


@dataclass(frozen=True)
class EnforceConfig:
    """``min_score`` is inclusive; ``namespaces`` empty means every namespace."""

    min_score: float = 0.8
    namespaces: frozenset[str] = frozenset()
    max_alert_age_s: float = 900.0

    def __post_init__(self) -> None:
        if isinstance(self.min_score, bool) or not 0.0 < self.min_score <= 1.0:
            raise ValueError(f"min_score={self.min_score!r}: must be in (0, 1]")
        if not self.max_alert_age_s > 0:
            raise ValueError(f"max_alert_age_s={self.max_alert_age_s!r}: must be positive")
        bad = sorted(ns for ns in self.namespaces if not c.NAME_RE.match(ns))
        if bad:
            raise ValueError(f"namespaces: {bad[0]!r} is not a namespace name")


DEFAULT_ENFORCE_CONFIG: Final = EnforceConfig()


@dataclass(frozen=True)
class Target:
    """One rollout: a revision of a Deployment in a cluster."""

    cluster: str
    namespace: str
    deployment: str
    revision: str

    @property
    def key(self) -> str:
        """``cluster/namespace/deployment@revision``: the ``rollout.gates`` key (the same form as
        correlation's rollout keys)."""
        return f"{self.cluster}/{self.namespace}/{self.deployment}@{self.revision}"


@dataclass(frozen=True)
class Action:
    """Pause ``target`` (the merge patch :func:`pause_patch`), because of the page ``alert``."""

    target: Target
    alert: str  # the dedup key of the slo.alerts record
    slo: str
    service: str
    score: float
    min_score: float
    rank: int
    phase: str
    summary: str  # the suspect's one-line summary
    evidence: tuple[str, ...]  # its evidence, one line each
    reasons: tuple[str, ...]  # why this pause: one line per condition met

    @property
    def patch(self) -> dict[str, Any]:
        return pause_patch()


@dataclass(frozen=True)
class Verdict:
    """What :func:`decide` concluded: an ``action``, or ``skip`` with a ``message``. ``target`` is
    the rollout the top suspect names, when it names one (for logs and ``skipped`` records)."""

    action: Action | None
    skip: Skip | None = None
    message: str = ""
    target: Target | None = None


def _no(skip: Skip, message: str, target: Target | None = None) -> Verdict:
    return Verdict(action=None, skip=skip, message=message, target=target)


def _text(value: object, limit: int = _MAX_TEXT) -> str:
    return " ".join(str(value).split())[:limit]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _top(suspects: list[Any]) -> Mapping[str, Any] | None:
    """The suspect with the lowest ``rank`` (the first one when ranks are missing or equal)."""
    best: tuple[float, int] | None = None
    top: Mapping[str, Any] | None = None
    for i, s in enumerate(suspects):
        if not isinstance(s, Mapping):
            continue
        rank = _number(s.get("rank"))
        order = (rank if rank is not None else math.inf, i)
        if best is None or order < best:
            best, top = order, s
    return top


def _target_of(s: Mapping[str, Any]) -> Target | str:
    """The rollout a suspect names, or what is wrong with it (names reach an API path: checked)."""
    cluster, namespace = s.get("cluster"), s.get("namespace")
    deployment, revision = s.get("deployment"), s.get("revision")
    if isinstance(revision, int) and not isinstance(revision, bool):
        revision = str(revision)
    if not isinstance(cluster, str) or not c.LABEL_VALUE_RE.match(cluster):
        return f"suspect cluster {_text(cluster, 80)!r} is not a cluster name"
    if not isinstance(namespace, str) or not c.NAME_RE.match(namespace):
        return f"suspect namespace {_text(namespace, 80)!r} is not a namespace name"
    if not isinstance(deployment, str) or not _DEPLOYMENT_RE.match(deployment):
        return f"suspect deployment {_text(deployment, 80)!r} is not a Deployment name"
    if not isinstance(revision, str) or not _REVISION_RE.match(revision):
        return f"suspect revision {_text(revision, 80)!r} is not a revision"
    return Target(cluster=cluster, namespace=namespace, deployment=deployment, revision=revision)


def evidence_lines(suspect: Mapping[str, Any]) -> tuple[str, ...]:
    """A suspect's evidence as one line each (its ``detail``), at most eight."""
    raw = suspect.get("evidence")
    out: list[str] = []
    if isinstance(raw, list):
        for e in raw:
            detail = e.get("detail") if isinstance(e, Mapping) else e
            if isinstance(detail, str) and detail.strip():
                out.append(_text(detail, 300))
            if len(out) == _MAX_EVIDENCE:
                break
    return tuple(out)


def decide(alert: object, *, cluster: str, config: EnforceConfig = DEFAULT_ENFORCE_CONFIG,
           acted: Set[str] = frozenset(), now: float) -> Verdict:
    """Should the kube bridge of ``cluster`` pause a Deployment because of this ``slo.alerts``
    value? ``acted``: the keys (:attr:`Target.key`) of rollouts already acted on; ``now``: wall
    clock, epoch seconds. Never raises: a value it cannot read is ``Skip.BAD_RECORD``.

    An action needs every condition of the module docstring; the verdict's ``skip`` names the
    first one that fails, checked in the order of :class:`Skip` (a field that cannot be read is
    ``BAD_RECORD`` where it is met)."""
    if not isinstance(alert, Mapping):
        return _no(Skip.BAD_RECORD, "the alert is not a JSON object")
    dedup_key, service, slo = alert.get("dedup_key"), alert.get("service"), alert.get("slo")
    if not isinstance(dedup_key, str) or not dedup_key:
        return _no(Skip.BAD_RECORD, "the alert has no dedup_key")
    if not isinstance(service, str) or not service:
        return _no(Skip.BAD_RECORD, f"alert {dedup_key}: no service")
    if alert.get("state") != "firing":
        return _no(Skip.NOT_FIRING, f"alert {dedup_key} is {_text(alert.get('state'), 40)}, not firing")
    if alert.get("severity") != "page":
        return _no(Skip.NOT_A_PAGE, f"alert {dedup_key} is a {_text(alert.get('severity'), 40)}, not a page")
    ts = _number(alert.get("ts"))
    if ts is None:
        return _no(Skip.BAD_RECORD, f"alert {dedup_key}: ts is not epoch seconds")
    if now - ts > config.max_alert_age_s:
        return _no(Skip.STALE_ALERT, f"alert {dedup_key} fired at event time {ts:.0f}, {now - ts:.0f}s ago "
                                     f"(> {config.max_alert_age_s:.0f}s): too old to act on")
    suspects = alert.get("suspects")
    if not isinstance(suspects, list) or not suspects:
        return _no(Skip.NO_SUSPECT, f"alert {dedup_key} names no suspect")
    top = _top(suspects)
    if top is None:
        return _no(Skip.BAD_RECORD, f"alert {dedup_key}: its suspects are not objects")
    if top.get("kind") != "rollout":
        return _no(Skip.TOP_SUSPECT_NOT_A_ROLLOUT,
                   f"alert {dedup_key}: the top suspect is a {_text(top.get('kind'), 40)}, not a rollout")
    target = _target_of(top)
    if isinstance(target, str):
        return _no(Skip.BAD_RECORD, f"alert {dedup_key}: {target}")
    if top.get("service") != service:
        return _no(Skip.OTHER_SERVICE, f"alert {dedup_key} is about {service}, the top suspect's rollout is of "
                                       f"{_text(top.get('service'), 80)}", target)
    if target.cluster != cluster:
        return _no(Skip.OTHER_CLUSTER, f"the top suspect of {dedup_key} rolls out in {target.cluster}, "
                                       f"not in {cluster}", target)
    dims = alert.get("dimensions")
    burn_cluster = dims.get("cluster") if isinstance(dims, Mapping) else None
    if burn_cluster not in (cluster, c.ANY):
        return _no(Skip.BURN_IN_OTHER_CLUSTER, f"alert {dedup_key} burns in {_text(burn_cluster, 80)}, the "
                                               f"rollout is in {cluster}", target)
    if target.key in acted:
        return _no(Skip.ALREADY_ACTED, f"rollout {target.key} was already acted on", target)
    if config.namespaces and target.namespace not in config.namespaces:
        return _no(Skip.NAMESPACE_NOT_ALLOWED, f"namespace {target.namespace} is not in the enforcement "
                                               f"allow-list ({', '.join(sorted(config.namespaces))})", target)
    if top.get("rollback") is True:
        return _no(Skip.ROLLBACK, f"{target.key} is a rollback: pausing it would stop the remedy", target)
    phase = top.get("phase")
    if phase not in IN_PROGRESS_PHASES:
        return _no(Skip.NOT_IN_PROGRESS, f"rollout {target.key} was {_text(phase, 40)} when the alert fired, "
                                         "not in progress", target)
    score = _number(top.get("score"))
    if score is None or not 0.0 <= score <= 1.0:
        return _no(Skip.BAD_RECORD, f"alert {dedup_key}: the top suspect's score is not in [0, 1]", target)
    if score < config.min_score:
        return _no(Skip.BELOW_SCORE, f"rollout {target.key} scores {score:.2f} < {config.min_score:.2f} as "
                                     f"suspect of {dedup_key}", target)
    rank = _number(top.get("rank"))
    condition = _text(alert.get("condition") or "", 80)
    reasons = (
        f"page {dedup_key} firing" + (f" ({condition})" if condition else ""),
        f"top suspect{f' (rank {rank:.0f})' if rank is not None else ''}: a rollout of {service} in "
        f"{cluster}, score {score:.2f} >= {config.min_score:.2f}",
        f"rollout {phase} when the alert fired",
        f"first action on {target.key}",
    )
    return Verdict(action=Action(
        target=target, alert=dedup_key, slo=_text(slo or "", 253), service=service, score=score,
        min_score=config.min_score, rank=int(rank) if rank is not None else 1, phase=str(phase),
        summary=_text(top.get("summary") or target.key), evidence=evidence_lines(top), reasons=reasons,
    ), target=target)


# ---- the live Deployment, just before acting ----------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def recheck(action: Action, deployment: Mapping[str, Any]) -> tuple[Skip, str] | None:
    """None when the Deployment as the API serves it now (its JSON) may still be paused for
    ``action``; else why not: already paused, its revision is no longer the suspect's, or its
    rollout is complete (``observedGeneration >= generation`` and every replica updated and
    available, no old pod left)."""
    meta, spec, status = (_mapping(deployment.get(k)) for k in ("metadata", "spec", "status"))
    t = action.target
    if spec.get("paused") is True:
        return Skip.ALREADY_PAUSED, f"{t.namespace}/{t.deployment} is already paused"
    current = _mapping(meta.get("annotations")).get(ANN_REVISION)
    if current != t.revision:
        return Skip.REVISION_CHANGED, (f"{t.namespace}/{t.deployment} is at revision {_text(current, 40)} now, "
                                       f"the suspect was revision {t.revision}")
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    synced = not isinstance(generation, int) or (isinstance(observed, int) and observed >= generation)
    desired = spec.get("replicas")
    desired = desired if isinstance(desired, int) and not isinstance(desired, bool) else 1
    updated = _int(status.get("updatedReplicas"))
    if synced and updated == desired and _int(status.get("availableReplicas")) == desired \
            and _int(status.get("replicas")) == updated:
        return Skip.ROLLOUT_COMPLETED, (f"the rollout of {t.namespace}/{t.deployment} to revision {t.revision} "
                                        "has completed: nothing left to pause")
    return None


# ---- rollout.gates records ------------------------------------------------------------------------


def gate_record(action: Action, *, outcome: Outcome, now: float, mode: Mode = Mode.PAUSE,
                skip: Skip | None = None, detail: str = "") -> tuple[str, dict[str, Any]]:
    """``(key, value)`` of the ``rollout.gates`` record for ``action``: ``paused`` (the PATCH was
    applied) or ``skipped`` with ``skip`` and ``detail`` (found just before acting). ``now`` is
    the wall clock (epoch seconds) of the record."""
    if (outcome is Outcome.SKIPPED) != (skip is not None):
        raise ValueError("a skipped record needs a skip reason, a paused one none")
    t = action.target
    return t.key, {
        "schema_version": c.SCHEMA_VERSION,
        "ts": round(now, 3),
        "action": str(outcome),
        "mode": str(mode),
        "cluster": t.cluster,
        "namespace": t.namespace,
        "deployment": t.deployment,
        "revision": t.revision,
        "service": action.service,
        "slo": action.slo,
        "alert": action.alert,
        "suspect": {"summary": action.summary, "score": action.score, "rank": action.rank,
                    "phase": action.phase, "evidence": list(action.evidence)},
        "min_score": action.min_score,
        "reasons": list(action.reasons),
        "skip_reason": str(skip) if skip is not None else None,
        "detail": _text(detail),
        "patch": pause_patch() if outcome is Outcome.PAUSED else None,
    }


@dataclass
class Ledger:
    """What ``rollout.gates`` says was done: the latest record per key (the topic is meant to be
    compacted; a broker that does not compact serves every record, so the latest wins), and the
    keys acted on. A ``paused`` record is final: a later record of the same key (there should be
    none) does not un-act it."""

    _latest: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    _acted: set[str] = field(default_factory=set)

    def add(self, key: str, value: object) -> bool:
        """Take one record; False (and nothing kept) for a value that is not a gates record."""
        if not isinstance(value, Mapping) or value.get("action") not in {o.value for o in Outcome}:
            return False
        self._latest[key] = value
        if value.get("action") == Outcome.PAUSED:
            self._acted.add(key)
        return True

    def extend(self, records: Iterable[tuple[str, object]]) -> int:
        return sum(self.add(k, v) for k, v in records)

    @property
    def acted(self) -> Set[str]:
        return self._acted

    def latest(self, key: str) -> Mapping[str, Any] | None:
        return self._latest.get(key)

    def __len__(self) -> int:
        return len(self._latest)
