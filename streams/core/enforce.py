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
- its key ``cluster/namespace/deployment@revision`` (:attr:`RolloutRef.key`) is not among the rollouts already acted on
  (the ``rollout.gates`` topic, read back when the bridge starts): never twice for one rollout.

Then, just before acting, :func:`recheck` reads the live Deployment the bridge fetched again: it
skips a Deployment already paused, one whose revision is no longer the suspect's, and one whose
rollout has completed meanwhile. The action is a merge patch touching only ``spec.paused``
(:func:`pause_patch`). :func:`gate_record` builds the ``rollout.gates`` record of what was done or
skipped, and :class:`Ledger` reads them back ("detect, then act": the adapter does the I/O).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from streams.core import conventions as c
from streams.core.errors import RecordError
from streams.core.kube import ANN_REVISION, read_deployment
from streams.core.wire import fields as f
from streams.core.wire.alert import Alert
from streams.core.wire.rollout import RolloutRef
from streams.core.wire.suspect import OpaqueSuspect, RolloutSuspect, evidence_lines

PATCH_CONTENT_TYPE: Final = "application/merge-patch+json"

# A revision is compared with the live Deployment's annotation: only a plain revision can match.
_REVISION_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}\Z")
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
class Action:
    """Pause ``target`` (the merge patch :func:`pause_patch`), because of the page ``alert``."""

    target: RolloutRef
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
    target: RolloutRef | None = None


def _no(skip: Skip, message: str, target: RolloutRef | None = None) -> Verdict:
    return Verdict(action=None, skip=skip, message=message, target=target)


def _text(value: object, limit: int = _MAX_TEXT) -> str:
    return " ".join(str(value).split())[:limit]


def decide(alert: Alert, *, cluster: str, config: EnforceConfig = DEFAULT_ENFORCE_CONFIG,
           acted: Set[str] = frozenset(), now: float) -> Verdict:
    """Should the kube bridge of ``cluster`` pause a Deployment because of this ``slo.alerts``
    record? ``acted``: the keys (:attr:`RolloutRef.key`) of rollouts already acted on; ``now``: wall
    clock, epoch seconds.

    An action needs every condition of the module docstring; the verdict's ``skip`` names the
    first one that fails, checked in the order of :class:`Skip` (a record that does not decode is
    ``BAD_RECORD``: the adapter says so)."""
    dedup_key, service = alert.dedup_key, alert.service
    if not alert.firing:
        return _no(Skip.NOT_FIRING, f"alert {dedup_key} is {alert.state}, not firing")
    if alert.severity != "page":
        return _no(Skip.NOT_A_PAGE, f"alert {dedup_key} is a {alert.severity}, not a page")
    if now - alert.ts > config.max_alert_age_s:
        return _no(Skip.STALE_ALERT, f"alert {dedup_key} fired at event time {alert.ts:.0f}, {now - alert.ts:.0f}s "
                                     f"ago (> {config.max_alert_age_s:.0f}s): too old to act on")
    top = alert.top_suspect
    if top is None:
        return _no(Skip.NO_SUSPECT, f"alert {dedup_key} names no suspect")
    if isinstance(top, OpaqueSuspect):
        return _no(Skip.TOP_SUSPECT_NOT_A_ROLLOUT,
                   f"alert {dedup_key}: the top suspect ({_text(top.kind, 40)}) could not be read; nothing acts on it")
    if not isinstance(top, RolloutSuspect):
        return _no(Skip.TOP_SUSPECT_NOT_A_ROLLOUT,
                   f"alert {dedup_key}: the top suspect is of kind {_text(top.kind, 40)}, not a rollout")
    target = top.ref
    if not _REVISION_RE.match(target.revision):
        return _no(Skip.BAD_RECORD, f"alert {dedup_key}: suspect revision {_text(target.revision, 80)!r} is not a "
                                    "revision")
    refusal = _refusal(alert, top, cluster=cluster, config=config, acted=acted)
    if refusal is not None:
        return refusal
    rank = top.rank
    reasons = (
        f"{'provisional ' if alert.provisional else ''}page {dedup_key} firing"
        + (f" ({_text(alert.condition, 80)})" if alert.condition else ""),
        f"top suspect{f' (rank {rank})' if rank else ''}: a rollout of {service} in {cluster}, score "
        f"{top.score:.2f} >= {config.min_score:.2f}",
        f"rollout {top.phase} when the alert fired",
        f"first action on {target.key}",
    )
    return Verdict(action=Action(
        target=target, alert=dedup_key, slo=_text(alert.slo, 253), service=service, score=top.score,
        min_score=config.min_score, rank=rank or 1, phase=str(top.phase), summary=_text(top.summary or target.key),
        evidence=evidence_lines(top), reasons=reasons,
    ), target=target)


def _refusal(alert: Alert, top: RolloutSuspect, *, cluster: str, config: EnforceConfig,
             acted: Set[str]) -> Verdict | None:
    """The first condition about the top suspect that fails, if any (in the order of :class:`Skip`)."""
    dedup_key, target = alert.dedup_key, top.ref
    if top.service != alert.service:
        return _no(Skip.OTHER_SERVICE, f"alert {dedup_key} is about {alert.service}, the top suspect's rollout is "
                                       f"of {_text(top.service, 80)}", target)
    if target.cluster != cluster:
        return _no(Skip.OTHER_CLUSTER, f"the top suspect of {dedup_key} rolls out in {target.cluster}, "
                                       f"not in {cluster}", target)
    burn_cluster = alert.dimensions.cluster
    if burn_cluster not in (cluster, c.ANY):
        return _no(Skip.BURN_IN_OTHER_CLUSTER, f"alert {dedup_key} burns in {_text(burn_cluster, 80)}, the "
                                               f"rollout is in {cluster}", target)
    if target.key in acted:
        return _no(Skip.ALREADY_ACTED, f"rollout {target.key} was already acted on", target)
    if config.namespaces and target.namespace not in config.namespaces:
        return _no(Skip.NAMESPACE_NOT_ALLOWED, f"namespace {target.namespace} is not in the enforcement "
                                               f"allow-list ({', '.join(sorted(config.namespaces))})", target)
    if top.rollback:
        return _no(Skip.ROLLBACK, f"{target.key} is a rollback: pausing it would stop the remedy", target)
    if not top.phase.in_progress:
        return _no(Skip.NOT_IN_PROGRESS, f"rollout {target.key} was {top.phase} when the alert fired, "
                                         "not in progress", target)
    if top.score < config.min_score:
        return _no(Skip.BELOW_SCORE, f"rollout {target.key} scores {top.score:.2f} < {config.min_score:.2f} as "
                                     f"suspect of {dedup_key}", target)
    return None


# ---- the live Deployment, just before acting ----------------------------------------------------


def recheck(action: Action, deployment: Mapping[str, Any]) -> tuple[Skip, str] | None:
    """None when the Deployment as the API serves it now (its JSON) may still be paused for
    ``action``; else why not: already paused, its revision is no longer the suspect's, or its
    rollout is complete (``observedGeneration >= generation`` and every replica updated and
    available, no old pod left: :func:`streams.core.kube.read_deployment`)."""
    t = action.target
    try:
        live = read_deployment(deployment)
    except RecordError as exc:
        return Skip.REJECTED, f"the Deployment the API served cannot be read: {exc.detail}"
    if live.paused:
        return Skip.ALREADY_PAUSED, f"{t.namespace}/{t.name} is already paused"
    current = f.mapping(f.mapping(deployment.get("metadata")).get("annotations")).get(ANN_REVISION)
    if current != t.revision:
        return Skip.REVISION_CHANGED, (f"{t.namespace}/{t.name} is at revision {_text(current, 40)} now, "
                                       f"the suspect was revision {t.revision}")
    if live.complete:
        return Skip.ROLLOUT_COMPLETED, (f"the rollout of {t.namespace}/{t.name} to revision {t.revision} "
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
        "deployment": t.name,
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
