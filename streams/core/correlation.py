"""Correlation: which rollout, or which Kubernetes warning, most likely caused a burn (pure).

Reads the service's change state (:class:`~streams.core.changes.ServiceChanges`: its recent rollouts
and the Warning events of its objects) when an alert fires, and ranks suspects
(:mod:`streams.core.wire.suspect`):

- **Rollouts of the same service** that started within ``lookback_s`` before the burn onset (or
  shortly after it: the onset is estimated at one-minute resolution), or were still in progress
  when it began. Never a rollout of another service: the state is per service and every suspect is
  checked against the alert's service again.
- **Evidence** per rollout, each a strength in [0, 1] combined as a noisy-OR (any one strong piece
  of evidence makes a strong suspect; more pieces only add):
  time from the rollout start to the onset (decays with ``proximity_tau_s``), the rollout being in
  progress / failed / paused at the onset, the new revision's error ratio against the previous
  revision's when playback records carry ``revision`` (one-sided two-proportion z-test), Warning
  events of the rollout's own objects, and a migration step onto Kubernetes.
- **Weights**: a rollout in another cluster than the burning series is multiplied by
  ``other_cluster_weight``; a burn on the ``legacy`` platform by ``legacy_platform_weight`` (a
  Deployment rollout rarely breaks the legacy orchestrator); a rollout whose previous revision fails
  just as much (the revision evidence exonerates it) by ``exonerated_weight``.
- **Warnings** not explained by a rollout suspect are suspects of their own, grouped per workload
  and reason (a CrashLoopBackOff storm over 30 pods is one suspect with a count).

Scores below ``min_score`` are dropped: an empty list means "no suspect", which the page says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from streams.core.changes import ServiceChanges, TrackedRollout, TrackedWarning
from streams.core.stats import Proportion, two_proportion_z
from streams.core.wire.fields import MAX_K8S_NAME_LEN, MAX_TEXT_LEN
from streams.core.wire.rollout import Phase, revision_aliases
from streams.core.wire.suspect import (
    MAX_SUMMARY_LEN,
    Evidence,
    MigrationStep,
    Note,
    RevisionErrorRatio,
    RevisionSide,
    RolloutSuspect,
    Timing,
    WarningCount,
    WarningSeen,
    WarningSuspect,
)

# How much a Warning reason says about a broken workload (others: DEFAULT_REASON_WEIGHT).
REASON_WEIGHTS: Mapping[str, float] = {
    "CrashLoopBackOff": 1.0,
    "BackOff": 0.9,
    "OOMKilled": 1.0,
    "OOMKilling": 0.9,
    "Unhealthy": 0.8,
    "ProgressDeadlineExceeded": 0.9,
    "Failed": 0.7,
    "ErrImagePull": 0.9,
    "ImagePullBackOff": 0.9,
    "FailedCreate": 0.7,
    "FailedScheduling": 0.6,
    "FailedMount": 0.6,
    "Evicted": 0.6,
}
DEFAULT_REASON_WEIGHT = 0.4


@dataclass(frozen=True)
class CorrelationConfig:
    lookback_s: int = 2 * 3600  # rollouts started this long before the onset are considered
    in_progress_lookback_s: int = 12 * 3600  # ... or this long, if still in progress at the onset
    after_onset_grace_s: int = 120  # a rollout this soon after the (minute-resolution) onset counts
    proximity_tau_s: int = 1800  # time evidence = 0.6 * exp(-minutes before onset / tau)
    warning_lookback_s: int = 3600  # warnings last seen within this before the alert
    other_cluster_weight: float = 0.4
    legacy_platform_weight: float = 0.5
    exonerated_weight: float = 0.3
    min_score: float = 0.05
    max_suspects: int = 5
    min_revision_events: int = 20  # per revision, for revision evidence
    revision_p_value: float = 0.01
    revision_min_ratio_x: float = 2.0


DEFAULT_CONFIG = CorrelationConfig()

Suspect = RolloutSuspect | WarningSuspect
RevisionCounts = Mapping[str, tuple[int, int]]  # playback revision -> (errors, total) in a window
# (cluster, start, end) -> (errors, total) per playback revision in that cluster over [start, end)
RevisionsOf = Callable[[str, float, float], RevisionCounts]


# ---- which workload an object belongs to ----------------------------------------------------------


def workload_of(kind: str, name: str, owner_kind: str | None = None, owner_name: str | None = None) -> str:
    """The Deployment-level name of an object: a Pod ``web-7d9f8c-x2x`` -> ``web``, a ReplicaSet
    ``web-7d9f8c`` -> ``web``. A best guess from the naming Kubernetes uses for Deployments."""
    if owner_name is not None and len(owner_name) > MAX_K8S_NAME_LEN:  # not a Kubernetes name: unusable
        owner_name = None
    if owner_kind == "ReplicaSet" and owner_name:
        return owner_name.rsplit("-", 1)[0] if "-" in owner_name else owner_name
    if owner_kind == "Deployment" and owner_name:
        return owner_name
    if kind == "Pod" and name.count("-") >= 2:
        return name.rsplit("-", 2)[0]
    if kind == "ReplicaSet" and "-" in name:
        return name.rsplit("-", 1)[0]
    return name


def _belongs_to_rollout(w: TrackedWarning, r: TrackedRollout) -> bool:
    """Is the warning about an object of this rollout's Deployment (its new ReplicaSet's pods when the
    template hash is known)?"""
    wl = r.workload
    if w.cluster != wl.cluster or w.namespace != wl.namespace:
        return False
    dep, kind, name = wl.name, w.kind, w.name
    if kind == "Deployment":
        return name == dep
    h = r.template_hash
    if h:
        prefix = f"{dep}-{h}"
        if kind == "ReplicaSet":
            return name == prefix
        if kind == "Pod":
            return name.startswith(prefix + "-") or w.owner_name == prefix
    return workload_of(kind, name, w.owner_kind, w.owner_name) == dep


# ---- scoring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BurnContext:
    """The burning series an alert is about."""

    service: str
    cluster: str  # "*" when the SLO groups clusters away
    platform: str  # "kubernetes" | "legacy" | "*"
    onset_ts: float  # estimated start of the burn (event time)
    at: float  # event time of the evaluation that fired


def _fmt_age(seconds: float) -> str:
    s = round(abs(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _noisy_or(strengths: Iterable[float]) -> float:
    miss = 1.0
    for e in strengths:
        miss *= 1.0 - min(1.0, max(0.0, e))
    return 1.0 - miss


def time_strength(seconds_before_onset: float, cfg: CorrelationConfig = DEFAULT_CONFIG) -> float:
    """Evidence from timing alone: 0.6 for a rollout that started at the onset, decaying with the
    time between them (non-increasing in that time; negative times, inside the grace, count as 0)."""
    return 0.6 * math.exp(-max(0.0, seconds_before_onset) / cfg.proximity_tau_s)


@dataclass
class _Case:
    """The evidence gathered about one rollout: strengths (noisy-OR) and weights (products)."""

    strengths: list[float]
    evidence: list[Evidence]
    weight: float = 1.0
    revision_note: str = ""

    def add(self, item: Evidence, strength: float | None = None) -> None:
        if strength is not None:
            self.strengths.append(strength)
        self.evidence.append(item)


def _considered(r: TrackedRollout, ctx: BurnContext, cfg: CorrelationConfig) -> tuple[float, bool] | None:
    """``(seconds from the start to the onset, in progress at the onset)``, or None when the rollout
    cannot have caused this burn (it started after it, or too long before)."""
    dt = ctx.onset_ts - r.started_ts  # > 0: started before the onset
    ended = min(x for x in (r.completed_ts, r.superseded_ts, math.inf) if x is not None)
    in_progress = r.started_ts <= ctx.onset_ts < ended
    if dt < -cfg.after_onset_grace_s or r.started_ts > ctx.at:
        return None  # started after the burn began: a reaction to it, not its cause
    if dt > cfg.lookback_s and not (in_progress and dt <= cfg.in_progress_lookback_s):
        return None
    return dt, in_progress


def _timing_and_state(case: _Case, r: TrackedRollout, ctx: BurnContext, dt: float, in_progress: bool,
                      cfg: CorrelationConfig) -> str:
    """Timing, failed / in progress / paused, other cluster, legacy platform, migration step; returns
    the "when" phrase of the summary."""
    ts_e = time_strength(dt, cfg)
    when = f"{_fmt_age(dt)} before the burn began" if dt >= 0 else f"{_fmt_age(dt)} after the burn began"
    case.add(Timing(f"rollout started {when}", round(dt, 1), round(ts_e, 3)), ts_e)
    if r.failed_ts is not None and r.failed_ts <= ctx.at:
        case.add(Note("rollout_failed", "the rollout failed its progress deadline", 0.4), 0.4)
    elif in_progress:
        case.add(Note("in_progress", "the rollout was still in progress when the burn began", 0.3), 0.3)
    if r.paused_ts is not None and r.paused_ts <= ctx.at:
        case.add(Note("paused", "the rollout is paused", 0.0))
    if ctx.cluster not in ("*", r.cluster):
        case.weight *= cfg.other_cluster_weight
        case.add(Note("other_cluster", f"rolled out in {r.cluster}, the burn is in {ctx.cluster}",
                      weight=cfg.other_cluster_weight))
    if ctx.platform == "legacy":
        case.weight *= cfg.legacy_platform_weight
        case.add(Note("platform", "the burn is on the legacy platform", weight=cfg.legacy_platform_weight))
    mig = r.migration
    if mig is not None and mig.target == "kubernetes" and ctx.platform in ("kubernetes", "*"):
        pct = mig.traffic_percent
        case.add(MigrationStep(f"migration step {mig.source or '?'} -> kubernetes"
                               + (f" at {pct}% of traffic" if pct is not None else ""), mig, 0.2), 0.2)
    return when


def _sum_revisions(revisions: RevisionCounts, aliases: set[str]) -> Proportion:
    bad = total = 0
    for a in aliases:
        got = revisions.get(a)
        if got is not None:
            bad += got[0]
            total += got[1]
    return Proportion(bad, total)


def _revision_evidence(case: _Case, r: TrackedRollout, ctx: BurnContext, revisions: RevisionsOf,
                       cfg: CorrelationConfig) -> None:
    """The new revision's errors against the previous revision's: both during the burn; when the
    previous one served too little then (the rollout had completed), its own traffic before the burn
    is the baseline."""
    new_aliases = revision_aliases(r.revision, r.template_hash, r.images)
    old_aliases = revision_aliases(r.previous_revision, r.previous_template_hash, r.previous_images) - new_aliases
    during = revisions(r.cluster, ctx.onset_ts, ctx.at + 1)
    new = _sum_revisions(during, new_aliases)
    old = _sum_revisions(during, old_aliases)
    old_when = "during the burn"
    if old.total < cfg.min_revision_events:
        old = _sum_revisions(revisions(r.cluster, ctx.onset_ts - cfg.lookback_s, ctx.onset_ts), old_aliases)
        old_when = "before the burn"
    if new.total < cfg.min_revision_events:
        return
    test = two_proportion_z(new, old)
    new_side = RevisionSide(r.revision, new.bad, new.total, round(new.ratio, 6))
    old_side = (RevisionSide(r.previous_revision, old.bad, old.total, round(old.ratio, 6), old_when)
                if old.total else None)
    strength = weight = None
    if old.total >= cfg.min_revision_events:
        worse = test.p_value < cfg.revision_p_value and test.ratio_of_ratios >= cfg.revision_min_ratio_x
        if worse:
            strength = 0.9
            detail = (f"new revision {r.revision} fails {new.ratio:.2%} of requests during the burn, previous "
                      f"{r.previous_revision} {old.ratio:.2%} {old_when}")
            case.revision_note = (f"; revision {r.revision} errors {new.ratio:.1%} vs {old.ratio:.1%} on "
                                  f"revision {r.previous_revision}")
        elif old.ratio >= 0.5 * new.ratio:
            weight = cfg.exonerated_weight
            case.weight *= weight
            detail = (f"the previous revision fails as much ({old.ratio:.2%} vs {new.ratio:.2%}): "
                      "the new revision does not explain the burn")
        else:
            detail = f"new revision {new.ratio:.2%} vs previous {old.ratio:.2%}: not a significant difference"
    else:
        # Nothing left on the old revision to compare with: the new one alone serves the errors.
        if new.bad and new.ratio > 0:
            strength = 0.5
        detail = (f"new revision {r.revision} fails {new.ratio:.2%} of requests; "
                  "too little traffic on the previous revision to compare")
    case.add(RevisionErrorRatio(new=new_side, old=old_side, test="one-sided two-proportion z-test",
                                z=round(test.z, 3), p_value=float(f"{test.p_value:.3g}"), detail=detail,
                                strength=strength, weight=weight), strength)


def _warning_seen(w: TrackedWarning) -> WarningSeen:
    return WarningSeen(reason=w.reason, object=f"{w.kind}/{w.name}", namespace=w.namespace, cluster=w.cluster,
                       count=w.count, first_seen=w.first_ts, last_seen=w.last_ts, message=w.message or "",
                       detail=_clip(f"{w.count}x {w.reason} on {w.kind}/{w.name}"))


def _own_warnings(case: _Case, mine: Sequence[TrackedWarning]) -> None:
    """Warnings of the rollout's own objects: their number and the five most repeated."""
    total = sum(w.count for w in mine)
    top = max(mine, key=lambda w: (REASON_WEIGHTS.get(w.reason, DEFAULT_REASON_WEIGHT), w.count))
    rw = REASON_WEIGHTS.get(top.reason, DEFAULT_REASON_WEIGHT)
    e = min(0.6, 0.3 * rw + 0.1 * math.log10(1 + total))
    case.add(WarningCount(total, round(e, 3), f"{total} Warning events on the rollout's own objects"), e)
    for w in sorted(mine, key=lambda w: (-w.count, w.reason, w.name))[:5]:
        case.add(_warning_seen(w))


def _clip(summary: str) -> str:
    """A summary short enough for a page title and for the suspect to read back (a careless producer's
    image list or event reason can be kilobytes)."""
    return summary if len(summary) <= MAX_SUMMARY_LEN else summary[:MAX_SUMMARY_LEN - 1] + "…"


def _readable(images: tuple[str, ...]) -> tuple[str, ...]:
    """Image references a suspect can carry (state written before the reader's limit may hold longer)."""
    return tuple(i for i in images if len(i) <= MAX_TEXT_LEN)


def _rollout_suspect(r: TrackedRollout, ctx: BurnContext, warnings: Sequence[TrackedWarning],
                     revisions: RevisionsOf, cfg: CorrelationConfig) -> tuple[RolloutSuspect, list[str]] | None:
    """The suspect this rollout makes, and the keys of the warnings it explains; None when it cannot
    have caused the burn."""
    considered = _considered(r, ctx, cfg)
    if considered is None:
        return None
    dt, in_progress = considered
    case = _Case([], [])
    when = _timing_and_state(case, r, ctx, dt, in_progress, cfg)
    _revision_evidence(case, r, ctx, revisions, cfg)
    mine = [w for w in warnings if _belongs_to_rollout(w, r) and w.last_ts >= r.started_ts - 60]
    if mine:
        _own_warnings(case, mine)
    images = ", ".join(i.rsplit("/", 1)[-1] for i in r.images) or "no image list"
    kind = "rollback" if r.rollback else "rollout"
    wl = r.workload
    summary = (f"{kind} of {wl.namespace}/{wl.name} to revision {r.revision} ({images}) in "
               f"{wl.cluster}, started {when}{case.revision_note}")
    if mine:
        reasons = sorted({w.reason for w in mine})
        summary += f"; {sum(w.count for w in mine)} warnings ({', '.join(reasons[:3])})"
    phase = Phase.SUPERSEDED if r.superseded_ts is not None and r.superseded_ts <= ctx.at else r.phase
    suspect = RolloutSuspect(
        score=round(case.weight * _noisy_or(case.strengths), 4), summary=_clip(summary),
        service=r.service or ctx.service,
        ref=r.ref, phase=phase, started_at=r.started_ts, same_cluster=ctx.cluster in ("*", wl.cluster),
        previous_revision=r.previous_revision, template_hash=r.template_hash, images=_readable(r.images),
        previous_images=_readable(r.previous_images), rollback=r.rollback, migration=r.migration,
        evidence=tuple(case.evidence))
    return suspect, [w.key for w in mine]


def _warning_suspects(warnings: Sequence[TrackedWarning], ctx: BurnContext,
                      cfg: CorrelationConfig) -> list[WarningSuspect]:
    groups: dict[tuple[str, str, str, str], list[TrackedWarning]] = {}
    for w in warnings:
        wl = workload_of(w.kind, w.name, w.owner_kind, w.owner_name)
        groups.setdefault((w.cluster, w.namespace, wl, w.reason), []).append(w)
    out = []
    for (cluster, namespace, wl, reason), ws in groups.items():
        count = sum(w.count for w in ws)
        last = max(w.last_ts for w in ws)
        first = min(w.first_ts for w in ws)
        age = max(0.0, ctx.at - last)
        rw = REASON_WEIGHTS.get(reason, DEFAULT_REASON_WEIGHT)
        e = rw * min(0.5, 0.15 + 0.1 * math.log10(1 + count)) * math.exp(-age / cfg.warning_lookback_s)
        weight = 1.0
        same_cluster = ctx.cluster in ("*", cluster)
        if not same_cluster:
            weight *= cfg.other_cluster_weight
        if ctx.platform == "legacy":
            weight *= cfg.legacy_platform_weight
        objects = sorted({f"{w.kind}/{w.name}" for w in ws})
        evidence: list[Evidence] = [Timing(f"first seen {_fmt_age(ctx.onset_ts - first)} "
                                           f"{'before' if first <= ctx.onset_ts else 'after'} the burn began, "
                                           f"last {_fmt_age(age)} before the alert")]
        evidence += [_warning_seen(w) for w in sorted(ws, key=lambda w: (-w.count, w.name))[:5]]
        out.append(WarningSuspect(
            score=round(weight * e, 4),
            summary=_clip(f"{count}x {reason} on {len(objects)} object{'s' if len(objects) != 1 else ''} of "
                          f"{namespace}/{wl} in {cluster}"),
            cluster=cluster, namespace=namespace, workload=wl, reason=reason, count=count,
            objects=tuple(objects[:10]), first_seen=first, last_seen=last, same_cluster=same_cluster,
            evidence=tuple(evidence)))
    return out


def _order(s: Suspect) -> tuple[float, bool, float, str]:
    when = s.started_at if isinstance(s, RolloutSuspect) else s.last_seen
    return -s.score, not s.same_cluster, -float(when or 0.0), s.summary


def correlate(ctx: BurnContext, changes: ServiceChanges | None, revisions: RevisionsOf,
              cfg: CorrelationConfig = DEFAULT_CONFIG) -> list[Suspect]:
    """Ranked suspects for a burn (best first, ``rank`` 1..n, ``score`` in [0, 1], with evidence);
    empty when nothing fits ("no suspect")."""
    if changes is None:
        return []
    warnings = [w for w in changes.warnings.values()
                if ctx.at - cfg.warning_lookback_s <= w.last_ts and w.first_ts <= ctx.at]
    suspects: list[Suspect] = []
    explained: set[str] = set()
    for r in changes.rollouts.values():
        if r.service != ctx.service:
            continue  # never blame another service's rollout
        made = _rollout_suspect(r, ctx, warnings, revisions, cfg)
        if made is not None:
            explained.update(made[1])
            suspects.append(made[0])
    rest = [w for w in warnings if w.key not in explained]
    suspects.extend(_warning_suspects(rest, ctx, cfg))
    suspects = sorted((s for s in suspects if s.score >= cfg.min_score), key=_order)[: cfg.max_suspects]
    return [replace(s, rank=i) for i, s in enumerate(suspects, 1)]
