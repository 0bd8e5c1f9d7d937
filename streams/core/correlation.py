"""Correlation: which rollout, or which Kubernetes warning, most likely caused a burn (pure).

Reads the service's change state (:class:`~streams.core.changes.ServiceChanges`: its recent rollouts
and the Warning events of its objects) when an alert fires, and ranks suspects
(:mod:`streams.core.wire.suspect`). docs/correlation.md states every rule with the reason for it; in
short:

- **Rollouts of the same service** that started within ``lookback_s`` before the burn onset (or
  shortly after it: the onset is estimated at one-minute resolution), or were still in progress
  when it began. Never a rollout of another service: the state is per service and every suspect is
  checked against the alert's service again.
- **Evidence** per rollout, each a strength in [0, 1] combined as a noisy-OR, or a weight that
  multiplies the score. Every item compares like with like and says what it compared over which
  intervals:

  - timing: from the start to the onset, and from the completion to the onset (a rollout that
    finished long before the burn began did not start it);
  - the new revision against the previous one *at the same time*: in the same cluster while both
    serve, else the previous revision in the service's other clusters during the burn (playback
    records that carry ``revision``; otherwise the other clusters' whole traffic when they are still on
    the previous revision);
  - the new revision's own history before the onset against the hour before the rollout: errors that
    grew after the rollout are evidence for it (a slow regression), a long healthy run against it;
  - revision-caused Warning events of the rollout's own objects while it rolled out (CrashLoopBackOff,
    failed probes, image pulls, ...), and a migration step onto Kubernetes.

- **Warnings** not explained by a rollout are suspects of their own: revision-caused and other
  reasons grouped per workload and reason; infrastructure reasons (node, scheduling, eviction,
  volume, network) grouped per cluster with the nodes they name (:class:`InfraSuspect`), never
  evidence for a rollout.

Scores below ``min_score`` are dropped: an empty list means "no suspect", which the page says.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from streams.core.changes import ServiceChanges, TrackedRollout, TrackedWarning, revision_lt
from streams.core.stats import Proportion, mantel_haenszel, two_proportion_z
from streams.core.wire.fields import MAX_K8S_NAME_LEN, MAX_TEXT_LEN
from streams.core.wire.rollout import Phase, revision_aliases
from streams.core.wire.suspect import (
    MAX_SUMMARY_LEN,
    Evidence,
    InfraSuspect,
    MigrationStep,
    Note,
    OtherClusters,
    RevisionErrorRatio,
    RevisionHistory,
    RevisionSide,
    RolloutSuspect,
    Timing,
    WarningCount,
    WarningSeen,
    WarningSuspect,
)


class WarningKind(StrEnum):
    """What a Warning reason points at."""

    REVISION = "revision"  # the workload's own containers: its image, its config, its code
    INFRASTRUCTURE = "infrastructure"  # the node, the scheduler, eviction, volumes, the pod network
    OTHER = "other"  # anything else (custom controllers, ...)


# How much a Warning reason says about a broken revision (others: DEFAULT_REASON_WEIGHT).
REVISION_REASONS: Mapping[str, float] = {
    "CrashLoopBackOff": 1.0,
    "BackOff": 0.9,
    "OOMKilled": 1.0,
    "OOMKilling": 0.9,
    "Unhealthy": 0.8,
    "ProgressDeadlineExceeded": 0.9,
    "Failed": 0.7,
    "ErrImagePull": 0.9,
    "ImagePullBackOff": 0.9,
    "ErrImageNeverPull": 0.8,
    "InspectFailed": 0.8,
    "FailedPostStartHook": 0.8,
    "FailedCreate": 0.7,
}
# ... and about trouble under the workload (the reasons the kubelet, the scheduler, the node and
# volume controllers report; a pod's NodeNotReady comes from the node lifecycle controller).
INFRA_REASONS: Mapping[str, float] = {
    "NodeNotReady": 1.0,
    "Rebooted": 0.9,
    "NetworkNotReady": 0.9,
    "SystemOOM": 0.9,
    "TaintManagerEviction": 0.9,
    "Evicted": 0.8,
    "EvictionThresholdMet": 0.8,
    "NodeHasDiskPressure": 0.8,
    "NodeHasInsufficientMemory": 0.8,
    "NodeHasInsufficientPID": 0.8,
    "FailedScheduling": 0.7,
    "FailedMount": 0.7,
    "FailedAttachVolume": 0.7,
    "FailedMapVolume": 0.7,
    "FailedCreatePodSandBox": 0.7,
    "OutOfcpu": 0.7,
    "OutOfmemory": 0.7,
    "NodeNotSchedulable": 0.6,
    "Preempting": 0.6,
    "FailedKillPod": 0.5,
    "HostPortConflict": 0.5,
    "FreeDiskSpaceFailed": 0.5,
    "ImageGCFailed": 0.5,
    "ContainerGCFailed": 0.5,
}
REASON_WEIGHTS: Mapping[str, float] = {**REVISION_REASONS, **INFRA_REASONS}
DEFAULT_REASON_WEIGHT = 0.4


def warning_kind(reason: str) -> WarningKind:
    if reason in REVISION_REASONS:
        return WarningKind.REVISION
    if reason in INFRA_REASONS:
        return WarningKind.INFRASTRUCTURE
    return WarningKind.OTHER


@dataclass(frozen=True)
class CorrelationConfig:
    lookback_s: int = 2 * 3600  # rollouts started this long before the onset are considered
    in_progress_lookback_s: int = 12 * 3600  # ... or this long, if still in progress at the onset
    after_onset_grace_s: int = 120  # a rollout this soon after the (minute-resolution) onset counts
    proximity_tau_s: int = 1800  # time evidence = 0.6 * exp(-seconds from the start to the onset / tau)
    completion_grace_s: int = 300  # ... times exp(-(seconds from completion to onset - grace) / tau)
    completion_tau_s: int = 600
    warning_lookback_s: int = 3600  # warnings last seen within this before the alert
    # A revision-caused warning first seen later than this after the rollout completed is not its own.
    warning_after_completion_s: int = 600
    history_baseline_s: int = 3600  # the new revision's history is compared with this long before the rollout
    history_min_s: int = 600  # a healthy run must be at least this long to count
    max_blips: int = 2  # ... and have at most this many minutes at twice the budget rate
    healthy_run_weight: float = 0.15
    other_cluster_weight: float = 0.4
    legacy_platform_weight: float = 0.5
    exonerated_weight: float = 0.3  # the previous revision in other clusters fails as much
    exonerated_same_cluster_weight: float = 0.15  # ... in the same cluster, minute by minute
    min_score: float = 0.2  # below: "no suspect" (weaker suspects were wrong more often than right)
    max_suspects: int = 5
    min_revision_events: int = 20  # per revision, for revision evidence
    revision_p_value: float = 0.01
    revision_min_ratio_x: float = 2.0
    min_history_errors: int = 5  # errors in the run's last quarter, for "errors grew after it"


DEFAULT_CONFIG = CorrelationConfig()

Suspect = RolloutSuspect | WarningSuspect | InfraSuspect
RevisionCounts = Mapping[str, tuple[int, int]]  # playback revision -> (errors, total) in a window
# (cluster, start, end) -> (errors, total) per playback revision in that cluster over [start, end)
RevisionsOf = Callable[[str, float, float], RevisionCounts]
# (cluster, start, end) -> (errors, total) of the burning SLO's traffic in that cluster over [start, end)
TrafficOf = Callable[[str, float, float], tuple[int, int]]


def _no_traffic(cluster: str, start: float, end: float) -> tuple[int, int]:
    return 0, 0


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
    budget_ratio: float = 0.001  # 1 - objective: the error ratio that spends the budget at rate 1
    clusters: tuple[str, ...] = ()  # the clusters where the SLO has series (for "other clusters")


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


def time_strength(seconds_before_onset: float, cfg: CorrelationConfig = DEFAULT_CONFIG,
                  completed_before_onset: float | None = None) -> float:
    """Evidence from timing alone: 0.6 for a rollout that started at the onset, decaying with the
    time between them (non-increasing in that time; negative times, inside the grace, count as 0),
    and, for a rollout that completed ``completed_before_onset`` seconds before the onset, with the
    time since its completion beyond ``completion_grace_s`` (non-increasing in that time too)."""
    e = 0.6 * math.exp(-max(0.0, seconds_before_onset) / cfg.proximity_tau_s)
    if completed_before_onset is not None:
        e *= math.exp(-max(0.0, completed_before_onset - cfg.completion_grace_s) / cfg.completion_tau_s)
    return e


@dataclass
class _Case:
    """The evidence gathered about one rollout: strengths (noisy-OR) and weights (products)."""

    strengths: list[float]
    evidence: list[Evidence]
    weight: float = 1.0
    revision_note: str = ""
    healthy: RevisionHistory | None = None  # the new revision's healthy run, weighed last (_rollout_suspect)
    worse_at_the_same_time: bool = False  # the same-cluster, minute-by-minute comparison blames it

    @property
    def healthy_run(self) -> bool:
        """The new revision served well before the onset."""
        return self.healthy is not None

    def add(self, item: Evidence, strength: float | None = None) -> None:
        if strength is not None:
            self.strengths.append(strength)
        self.evidence.append(item)

    def weigh(self, item: Evidence, weight: float) -> None:
        self.weight *= weight
        self.evidence.append(item)


def _ended(r: TrackedRollout) -> float:
    """When the rollout stopped changing what serves (it completed, or a newer revision replaced it),
    or inf: a failed or paused rollout still serves its new pods."""
    return min(x for x in (r.completed_ts, r.superseded_ts, math.inf) if x is not None)


def _considered(r: TrackedRollout, ctx: BurnContext, cfg: CorrelationConfig) -> tuple[float, bool] | None:
    """``(seconds from the start to the onset, in progress at the onset)``, or None when the rollout
    cannot have caused this burn (it started after it, or too long before)."""
    dt = ctx.onset_ts - r.started_ts  # > 0: started before the onset
    in_progress = r.started_ts <= ctx.onset_ts < _ended(r)
    if dt < -cfg.after_onset_grace_s or r.started_ts > ctx.at:
        return None  # started after the burn began: a reaction to it, not its cause
    if dt > cfg.lookback_s and not (in_progress and dt <= cfg.in_progress_lookback_s):
        return None
    return dt, in_progress


def _completed_before_onset(r: TrackedRollout, ctx: BurnContext) -> float | None:
    """Seconds from the rollout's completion to the onset, when it completed before the burn began."""
    if r.completed_ts is not None and r.completed_ts <= ctx.onset_ts:
        return ctx.onset_ts - r.completed_ts
    return None


def _timing_and_state(case: _Case, r: TrackedRollout, ctx: BurnContext, dt: float, in_progress: bool,
                      cfg: CorrelationConfig) -> str:
    """Timing, failed / in progress / paused, other cluster, legacy platform, migration step; returns
    the "when" phrase of the summary."""
    done = _completed_before_onset(r, ctx)
    ts_e = time_strength(dt, cfg, done)
    when = f"{_fmt_age(dt)} before the burn began" if dt >= 0 else f"{_fmt_age(dt)} after the burn began"
    detail = f"rollout started {when}" + (f", completed {_fmt_age(done)} before it" if done is not None else "")
    case.add(Timing(detail, round(dt, 1), round(ts_e, 3)), ts_e)
    if r.failed_ts is not None and r.failed_ts <= ctx.at:
        case.add(Note("rollout_failed", "the rollout failed its progress deadline", 0.4), 0.4)
    elif in_progress:
        case.add(Note("in_progress", "the rollout was still in progress when the burn began", 0.3), 0.3)
    if r.paused_ts is not None and r.paused_ts <= ctx.at:
        case.add(Note("paused", "the rollout is paused", 0.0))
    if ctx.cluster not in ("*", r.cluster):
        case.weigh(Note("other_cluster", f"rolled out in {r.cluster}, the burn is in {ctx.cluster}",
                        weight=cfg.other_cluster_weight), cfg.other_cluster_weight)
    if ctx.platform == "legacy":
        case.weigh(Note("platform", "the burn is on the legacy platform", weight=cfg.legacy_platform_weight),
                   cfg.legacy_platform_weight)
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


def _sum_all(revisions: RevisionCounts) -> Proportion:
    return Proportion(sum(v[0] for v in revisions.values()), sum(v[1] for v in revisions.values()))


def _aliases(r: TrackedRollout) -> tuple[set[str], set[str]]:
    new = revision_aliases(r.revision, r.template_hash, r.images)
    return new, revision_aliases(r.previous_revision, r.previous_template_hash, r.previous_images) - new


def _side(revision: str | None, p: Proportion, when: str) -> RevisionSide:
    return RevisionSide(revision, p.bad, p.total, round(p.ratio, 6), when)


def _worse(a: Proportion, b: Proportion, cfg: CorrelationConfig, factor: float | None = None) -> bool:
    """``a`` fails significantly more than ``b``: one-sided z-test, and at least ``factor`` times as
    often (default ``revision_min_ratio_x``)."""
    test = two_proportion_z(a, b)
    return test.p_value < cfg.revision_p_value and test.ratio_of_ratios >= (
        cfg.revision_min_ratio_x if factor is None else factor)


def _minutes(counts: Callable[[float, float], Proportion], a: float, b: float) -> list[Proportion]:
    """The counts of each whole minute in ``[a, b)``."""
    return [counts(m * 60.0, m * 60.0 + 60.0) for m in range(math.ceil(a / 60), math.floor(b / 60))]


def _calm(minutes: Sequence[Proportion], ceiling: float) -> Proportion:
    """The minutes summed without those that failed at ``ceiling`` or more: a blip of a minute or two
    before the onset (a deploy elsewhere, a GC pause) must not decide whether a revision's errors
    grew."""
    kept = [p for p in minutes if p.ratio < ceiling]
    return Proportion(sum(p.bad for p in kept), sum(p.total for p in kept))


def _what(r: TrackedRollout, ctx: BurnContext) -> str:
    """The requests counted when records carry no revision: the rollout's cluster's, or the whole
    service's when the SLO groups clusters away (its only series)."""
    return f"all requests in {r.cluster}" if ctx.cluster != "*" else "all the service's requests"


def _history_evidence(case: _Case, r: TrackedRollout, ctx: BurnContext, revisions: RevisionsOf,
                      traffic: TrafficOf, cfg: CorrelationConfig) -> None:
    """The new revision's own run before the onset against the same cluster before the rollout.

    The run is from the rollout's completion (its start, while it was still rolling out) to a minute
    before the onset: the new revision's requests when playback records carry ``revision`` (no verdict
    when they do but it served too little), otherwise the cluster's whole traffic; the baseline is the
    hour before the rollout started. The last minute is left out (the onset's resolution); so are the
    minutes without requests, and the minutes at twice the budget rate or more (blips: the burn itself
    only begins at the onset), but a run with more than ``max_blips`` of those is no healthy run.

    - ``errors_grew`` (strength 0.8): the run's errors grew before its last quarter: its third and
      fourth quarters at least 20 % and 30 % of the way from the baseline to the budget rate (the
      fourth significantly above the baseline). A slow regression, even one that accelerates late.
      An outage that builds up only in the last quarter of a healthy run, or a slow drift of the
      baseline, does not pass.
    - ``healthy_run`` (weight ``healthy_run_weight``, set aside in :attr:`_Case.healthy`: applied
      unless the same-cluster comparison finds the new revision worse): otherwise, at least
      ``history_min_s`` of minutes served below the budget rate."""
    new_aliases, _ = _aliases(r)
    end = ctx.onset_ts - 60
    done = r.completed_ts is not None and r.completed_ts < end
    start = r.completed_ts if done and r.completed_ts is not None else r.started_ts
    base_span = (r.started_ts - cfg.history_baseline_s, r.started_ts)

    def tagged(a: float, b: float) -> Proportion:
        return _sum_revisions(revisions(r.cluster, a, b), new_aliases)

    def every_revision(a: float, b: float) -> Proportion:
        return _sum_all(revisions(r.cluster, a, b))

    def untagged(a: float, b: float) -> Proportion:
        return Proportion(*traffic(r.cluster, a, b))

    if end <= start:
        return
    counts, baseline, what = tagged, every_revision, f"revision {r.revision}"
    if tagged(start, end).total < cfg.min_revision_events:
        if every_revision(start, end).total >= cfg.min_revision_events:
            return  # records name revisions, and the new one served too little to say
        counts, baseline, what = untagged, untagged, _what(r, ctx)
    blip = 2 * ctx.budget_ratio
    served = [p for p in _minutes(counts, start, end) if p.total > 0]
    run = [p for p in served if p.ratio < blip]
    blips = len(served) - len(run)
    after = _calm(run, blip)
    before = _calm(_minutes(baseline, *base_span), blip)
    if after.total < cfg.min_revision_events or before.total < cfg.min_revision_events or len(run) < 4:
        return
    seconds = 60.0 * len(run)
    span = (f"{_fmt_age(seconds)} from the rollout's {'completion' if done else 'start'} to the burn"
            + (f" ({blips} blip minute{'s' if blips != 1 else ''} left out)" if blips else ""))
    sides = (_side(r.previous_revision, before, f"the {_fmt_age(cfg.history_baseline_s)} before the rollout"),
             _side(r.revision, after, span))
    n = len(run)
    quarters = [_calm(run[k * n // 4:(k + 1) * n // 4], blip) for k in range(4)]
    q = [x.ratio for x in quarters]
    b = before.ratio
    gap = max(0.0, ctx.budget_ratio - b)  # from the baseline to the budget rate: where a burn begins
    grew = (n >= 8 and quarters[3].bad >= cfg.min_history_errors and q[2] >= b + 0.2 * gap
            and q[3] >= b + 0.3 * gap
            and two_proportion_z(quarters[3], before).p_value < cfg.revision_p_value)
    if grew:
        by_quarter = ", ".join(f"{x:.3%}" for x in q)
        case.add(RevisionHistory("errors_grew", *sides, seconds,
                                 f"errors grew steadily from the rollout on, before the burn: {what} {by_quarter} in "
                                 f"each quarter of the {span}, {b:.3%} in {r.cluster} in the hour before the "
                                 "rollout", strength=0.8), 0.8)
        case.revision_note += f"; errors grew after it ({b:.2%} -> {q[3]:.2%} before the burn)"
    elif seconds >= cfg.history_min_s and after.ratio < ctx.budget_ratio and blips <= cfg.max_blips:
        case.healthy = RevisionHistory("healthy_run", *sides, seconds,
                                       f"{what} served well for the {span} ({after.ratio:.3%} errors; {b:.3%} "
                                       "before the rollout): something else changed when the burn began",
                                       weight=cfg.healthy_run_weight)


def _code(revision_of: TrackedRollout) -> set[str]:
    """The names of a rollout's new revision that mean the same code in every cluster: its
    pod-template hash and images (a Deployment's revision number counts per cluster)."""
    return revision_aliases(None, revision_of.template_hash, revision_of.images)


def _still_previous(r: TrackedRollout, cluster: str, rollouts: Iterable[TrackedRollout], at: float) -> bool:
    """Was ``cluster`` not running ``r``'s new code at ``at``: the newest rollout of the same workload
    started there by then (if any) is to other code (by template hash and images: revision numbers
    are per cluster)? Without hash or images to compare, a rollout there to a revision number at least
    ``r``'s counts as the new code."""
    mine = [o for o in rollouts if o.workload.name == r.workload.name and o.workload.namespace == r.workload.namespace
            and o.cluster == cluster and o.started_ts <= at]
    if not mine:
        return True
    newest = max(mine, key=lambda o: o.started_ts)
    new, theirs = _code(r), _code(newest)
    if new and theirs:
        return not new & theirs
    return revision_lt(newest.revision, r.revision)


def _revision_evidence(case: _Case, r: TrackedRollout, ctx: BurnContext, revisions: RevisionsOf,
                       traffic: TrafficOf, rollouts: Sequence[TrackedRollout], cfg: CorrelationConfig) -> None:
    """The new revision against the previous one over the same interval, the burn: in the same cluster
    while both serve; else against the service's other clusters not on the new code (their requests
    of any revision but the new code's template hash or images when records carry ``revision``; else
    all their requests). And a rollout's own cluster that does not burn."""
    new_aliases, old_aliases = _aliases(r)
    if ctx.cluster not in ("*", r.cluster):
        own = Proportion(*traffic(r.cluster, ctx.onset_ts, ctx.at + 1))
        if own.total >= cfg.min_revision_events and own.ratio < ctx.budget_ratio:
            case.weigh(Note("own_cluster_healthy", f"{r.cluster}, where it rolled out, is not burning ({own.ratio:.3%} "
                            "errors during the burn)", weight=cfg.exonerated_weight), cfg.exonerated_weight)
    during = revisions(r.cluster, ctx.onset_ts, ctx.at + 1)
    new = _sum_revisions(during, new_aliases)
    old = _sum_revisions(during, old_aliases)
    burn = "during the burn"
    both = new.total >= cfg.min_revision_events and old.total >= cfg.min_revision_events
    if both and _same_cluster(case, r, ctx, revisions, new, old, cfg):
        return
    others = [cl for cl in ctx.clusters if cl != r.cluster and _still_previous(r, cl, rollouts, ctx.at)]
    new_code = _code(r)
    if new.total >= cfg.min_revision_events:
        # What the other clusters serve, whatever they call it, but the new code (by hash or image:
        # a revision number means different code in different clusters).
        elsewhere = Proportion(0, 0)
        for cl in others:
            for label, (bad, total) in revisions(cl, ctx.onset_ts, ctx.at + 1).items():
                if label not in new_code:
                    elsewhere = Proportion(elsewhere.bad + bad, elsewhere.total + total)
        burning, what = new, f"revision {r.revision} in {r.cluster}"
    else:
        burning = Proportion(*traffic(r.cluster, ctx.onset_ts, ctx.at + 1))
        elsewhere = Proportion(0, 0)
        for cl in others:
            bad, total = traffic(cl, ctx.onset_ts, ctx.at + 1)
            elsewhere = Proportion(elsewhere.bad + bad, elsewhere.total + total)
        what = _what(r, ctx)
        if burning.total < cfg.min_revision_events:
            return
    other_side = _side(r.previous_revision, elsewhere, burn)
    if elsewhere.total < cfg.min_revision_events:
        if new.total >= cfg.min_revision_events and new.ratio >= ctx.budget_ratio and not case.healthy_run:
            # Nothing serves the previous revision during the burn: the new one alone serves the errors.
            test = two_proportion_z(new, old)
            case.add(RevisionErrorRatio(new=_side(r.revision, new, burn), old=None, test="none", z=round(test.z, 3),
                                        p_value=1.0, detail=f"new revision {r.revision} fails {new.ratio:.2%} of "
                                        "requests; nothing served the previous revision during the burn to compare",
                                        strength=0.3), 0.3)
        return
    names = tuple(sorted(others))
    burning_side = _side(r.revision if new.total >= cfg.min_revision_events else None, burning, burn)
    where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    if elsewhere.ratio >= 0.5 * burning.ratio and elsewhere.ratio >= ctx.budget_ratio:
        case.weigh(OtherClusters(names, burning_side, other_side,
                                 f"{where}, not on the new code, fail as much during the burn "
                                 f"({elsewhere.ratio:.2%} vs {burning.ratio:.2%} of {what}): the rollout does not "
                                 "explain the burn", weight=cfg.exonerated_weight), cfg.exonerated_weight)
    elif _worse(burning, elsewhere, cfg) and new.total >= cfg.min_revision_events and not case.healthy_run:
        case.add(OtherClusters(names, burning_side, other_side,
                               f"{what} fails {burning.ratio:.2%} during the burn, the previous revision in {where} "
                               f"{elsewhere.ratio:.2%}", strength=0.6), 0.6)
        case.revision_note += (f"; revision {r.revision} errors {burning.ratio:.1%} vs {elsewhere.ratio:.1%} on "
                               f"revision {r.previous_revision} in other clusters")
    else:
        case.add(OtherClusters(names, burning_side, other_side,
                               f"{what} {burning.ratio:.2%} during the burn, {where} not on the new code "
                               f"{elsewhere.ratio:.2%}"))


def _n_minutes(n: int) -> str:
    return f"{n} minute{'s' if n != 1 else ''}"


def _same_cluster(case: _Case, r: TrackedRollout, ctx: BurnContext, revisions: RevisionsOf, new: Proportion,
                  old: Proportion, cfg: CorrelationConfig) -> bool:
    """Both revisions served in the rollout's cluster during the burn: the most direct comparison,
    made minute by minute over the burn's minutes (a rollout moves traffic to the new revision while
    an outage builds up: over the whole burn the new revision would have served more of the worst
    minutes). Returns False, adding nothing, when the minutes both served say nothing either way (the
    previous revision did not burn in them, nor was the new one worse)."""
    new_aliases, old_aliases = _aliases(r)
    strata = []
    for m in range(math.floor(ctx.onset_ts / 60), math.floor((ctx.at + 1) / 60)):  # the minutes of ``during``
        minute = revisions(r.cluster, m * 60.0, m * 60.0 + 60.0)
        strata.append((_sum_revisions(minute, new_aliases), _sum_revisions(minute, old_aliases)))
    both = [(a, b) for a, b in strata if a.total > 0 and b.total > 0]
    old_shared = Proportion(sum(b.bad for _, b in both), sum(b.total for _, b in both))
    test = mantel_haenszel(both)
    burn = "during the burn"
    strength = weight = None
    x = test.ratio_of_ratios
    times = "inf" if math.isinf(x) else f"{x:.1f}"
    if test.p_value < cfg.revision_p_value and x >= cfg.revision_min_ratio_x:
        strength = 0.9
        case.worse_at_the_same_time = True
        detail = (f"new revision {r.revision} fails {new.ratio:.2%} of requests during the burn, previous "
                  f"{r.previous_revision} {old.ratio:.2%}, both in {r.cluster}: {times}x as often minute by minute "
                  f"over {_n_minutes(test.strata)}")
        case.revision_note += (f"; revision {r.revision} errors {new.ratio:.1%} vs {old.ratio:.1%} on "
                               f"revision {r.previous_revision}")
    elif x <= cfg.revision_min_ratio_x and old_shared.bad and old_shared.ratio >= ctx.budget_ratio:
        weight = cfg.exonerated_same_cluster_weight
        case.weight *= weight
        detail = (f"the previous revision fails as much in {r.cluster} during the burn ({old.ratio:.2%} vs "
                  f"{new.ratio:.2%}; {times}x minute by minute over {_n_minutes(test.strata)}): the new revision does "
                  "not explain the burn")
    else:
        return False
    case.add(RevisionErrorRatio(new=_side(r.revision, new, burn), old=_side(r.previous_revision, old, burn),
                                test="one-sided Cochran-Mantel-Haenszel, minute by minute", z=round(test.z, 3),
                                p_value=float(f"{test.p_value:.3g}"), detail=detail, strength=strength,
                                weight=weight), strength)
    return True


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
    case.add(WarningCount(total, round(e, 3), f"{total} Warning events on the rollout's own objects, first seen "
                                              "while it rolled out or soon after"), e)
    for w in sorted(mine, key=lambda w: (-w.count, w.reason, w.name))[:5]:
        case.add(_warning_seen(w))


def _clip(summary: str) -> str:
    """A summary short enough for a page title and for the suspect to read back (a careless producer's
    image list or event reason can be kilobytes)."""
    return summary if len(summary) <= MAX_SUMMARY_LEN else summary[:MAX_SUMMARY_LEN - 1] + "…"


def _readable(images: tuple[str, ...]) -> tuple[str, ...]:
    """Image references a suspect can carry (state written before the reader's limit may hold longer)."""
    return tuple(i for i in images if len(i) <= MAX_TEXT_LEN)


def _owns_warning(w: TrackedWarning, r: TrackedRollout, cfg: CorrelationConfig) -> bool:
    """Does the warning speak for this rollout: a revision-caused (or unclassified) reason, on its own
    objects, first seen while it rolled out or within ``warning_after_completion_s`` of its completion
    (later, the new pods had run well: a crash then is a warning suspect of its own)? Infrastructure
    reasons never do."""
    if warning_kind(w.reason) is WarningKind.INFRASTRUCTURE or not _belongs_to_rollout(w, r):
        return False
    return r.started_ts - 60 <= w.first_ts <= _ended(r) + cfg.warning_after_completion_s


def _rollout_suspect(r: TrackedRollout, ctx: BurnContext, warnings: Sequence[TrackedWarning],
                     revisions: RevisionsOf, traffic: TrafficOf, rollouts: Sequence[TrackedRollout],
                     cfg: CorrelationConfig) -> tuple[RolloutSuspect, list[str]] | None:
    """The suspect this rollout makes, and the keys of the warnings it explains; None when it cannot
    have caused the burn."""
    considered = _considered(r, ctx, cfg)
    if considered is None:
        return None
    dt, in_progress = considered
    case = _Case([], [])
    when = _timing_and_state(case, r, ctx, dt, in_progress, cfg)
    _history_evidence(case, r, ctx, revisions, traffic, cfg)
    _revision_evidence(case, r, ctx, revisions, traffic, rollouts, cfg)
    if case.healthy is not None:
        if case.worse_at_the_same_time:  # both revisions, the same minutes: that decides
            case.add(replace(case.healthy, weight=None,
                             detail=case.healthy.detail + "; but it fails more than the previous revision in the same "
                             "minutes of the burn"))
        else:
            case.weigh(case.healthy, cfg.healthy_run_weight)
    mine = [w for w in warnings if _owns_warning(w, r, cfg)]
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


def _placement_weight(cluster: str, ctx: BurnContext, cfg: CorrelationConfig) -> tuple[float, bool]:
    weight = 1.0
    same_cluster = ctx.cluster in ("*", cluster)
    if not same_cluster:
        weight *= cfg.other_cluster_weight
    if ctx.platform == "legacy":
        weight *= cfg.legacy_platform_weight
    return weight, same_cluster


def _seen(first: float, last: float, ctx: BurnContext) -> Timing:
    return Timing(f"first seen {_fmt_age(ctx.onset_ts - first)} {'before' if first <= ctx.onset_ts else 'after'} "
                  f"the burn began, last {_fmt_age(max(0.0, ctx.at - last))} before the alert")


def _strength(weight: float, count: int, last: float, ctx: BurnContext, cfg: CorrelationConfig) -> float:
    """Warnings of a reason weight: more with their count, less with the time since the last one."""
    age = max(0.0, ctx.at - last)
    return weight * min(0.8, 0.3 + 0.15 * math.log10(1 + count)) * math.exp(-age / cfg.warning_lookback_s)


def _group(ws: Sequence[TrackedWarning], ctx: BurnContext) -> tuple[int, float, float, list[str], list[Evidence]]:
    """A group of warnings as a suspect shows it: their total count, first and last seen, the objects,
    and the evidence (when they were seen, the five most repeated)."""
    first, last = min(w.first_ts for w in ws), max(w.last_ts for w in ws)
    evidence: list[Evidence] = [_seen(first, last, ctx)]
    evidence += [_warning_seen(w) for w in sorted(ws, key=lambda w: (-w.count, w.name))[:5]]
    return sum(w.count for w in ws), first, last, sorted({f"{w.kind}/{w.name}" for w in ws}), evidence


def _warning_suspects(warnings: Sequence[TrackedWarning], ctx: BurnContext,
                      cfg: CorrelationConfig) -> list[WarningSuspect]:
    """Revision-caused and unclassified warnings, one suspect per workload and reason."""
    groups: dict[tuple[str, str, str, str], list[TrackedWarning]] = {}
    for w in warnings:
        wl = workload_of(w.kind, w.name, w.owner_kind, w.owner_name)
        groups.setdefault((w.cluster, w.namespace, wl, w.reason), []).append(w)
    out = []
    for (cluster, namespace, wl, reason), ws in groups.items():
        count, first, last, objects, evidence = _group(ws, ctx)
        weight, same_cluster = _placement_weight(cluster, ctx, cfg)
        e = _strength(REASON_WEIGHTS.get(reason, DEFAULT_REASON_WEIGHT), count, last, ctx, cfg)
        out.append(WarningSuspect(
            score=round(weight * e, 4),
            summary=_clip(f"{count}x {reason} on {len(objects)} object{'s' if len(objects) != 1 else ''} of "
                          f"{namespace}/{wl} in {cluster}"),
            cluster=cluster, namespace=namespace, workload=wl, reason=reason, count=count,
            objects=tuple(objects[:10]), first_seen=first, last_seen=last, same_cluster=same_cluster,
            evidence=tuple(evidence)))
    return out


def _infra_suspects(warnings: Sequence[TrackedWarning], ctx: BurnContext,
                    cfg: CorrelationConfig) -> list[InfraSuspect]:
    """Infrastructure warnings (node, scheduling, eviction, volume, network), one suspect per cluster
    naming the nodes, the reasons and the workloads concerned."""
    groups: dict[str, list[TrackedWarning]] = {}
    for w in warnings:
        groups.setdefault(w.cluster, []).append(w)
    out = []
    for cluster, ws in groups.items():
        count, first, last, objects, evidence = _group(ws, ctx)
        reasons: dict[str, int] = {}
        per_node: dict[str, int] = {}
        for w in ws:
            reasons[w.reason] = reasons.get(w.reason, 0) + w.count
            if w.node:
                per_node[w.node] = per_node.get(w.node, 0) + w.count
        nodes = tuple(sorted(per_node, key=lambda n: (-per_node[n], n)))
        ordered = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        weight, same_cluster = _placement_weight(cluster, ctx, cfg)
        # Each reason by its own count (a single NodeNotReady beside 500 FailedScheduling is not 501
        # NodeNotReady), combined as a noisy-OR.
        last_of = {r: max(w.last_ts for w in ws if w.reason == r) for r in reasons}
        e = _noisy_or(_strength(INFRA_REASONS.get(r, DEFAULT_REASON_WEIGHT), n, last_of[r], ctx, cfg)
                      for r, n in reasons.items())
        workloads = tuple(sorted({f"{w.namespace}/{workload_of(w.kind, w.name, w.owner_kind, w.owner_name)}"
                                  for w in ws}))
        what = ", ".join(f"{n} {r}" for r, n in list(ordered.items())[:3])
        on = f" on node{'s' if len(nodes) != 1 else ''} {', '.join(nodes[:3])}" if nodes else ""
        more = f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
        out.append(InfraSuspect(
            score=round(weight * e, 4),
            summary=_clip(f"infrastructure trouble in {cluster}{on}{more}: {what} on {len(objects)} "
                          f"object{'s' if len(objects) != 1 else ''} of {', '.join(workloads[:3])}"),
            cluster=cluster, nodes=nodes[:10], reasons=ordered, count=count, workloads=workloads[:10],
            objects=tuple(objects[:10]), first_seen=first, last_seen=last, same_cluster=same_cluster,
            evidence=tuple(evidence)))
    return out


def _order(s: Suspect) -> tuple[float, bool, float, str]:
    when = s.started_at if isinstance(s, RolloutSuspect) else s.last_seen
    return -s.score, not s.same_cluster, -float(when or 0.0), s.summary


def correlate(ctx: BurnContext, changes: ServiceChanges | None, revisions: RevisionsOf,
              cfg: CorrelationConfig = DEFAULT_CONFIG, *, traffic: TrafficOf = _no_traffic) -> list[Suspect]:
    """Ranked suspects for a burn (best first, ``rank`` 1..n, ``score`` in [0, 1], with evidence);
    empty when nothing fits ("no suspect"). ``revisions``: errors per playback revision;
    ``traffic``: the burning SLO's errors per cluster (for the comparisons that need no revision)."""
    if changes is None:
        return []
    # Every rollout of the service asks for the same clusters over the same burn: ask each once.
    revisions, traffic = functools.cache(revisions), functools.cache(traffic)
    warnings = [w for w in changes.warnings.values()
                if ctx.at - cfg.warning_lookback_s <= w.last_ts and w.first_ts <= ctx.at]
    suspects: list[Suspect] = []
    explained: set[str] = set()
    rollouts = [r for r in changes.rollouts.values() if r.service == ctx.service]  # never another service's
    for r in rollouts:
        made = _rollout_suspect(r, ctx, warnings, revisions, traffic, rollouts, cfg)
        if made is not None and made[0].score >= cfg.min_score:
            explained.update(made[1])  # a rollout too weak to list explains nothing
            suspects.append(made[0])
    rest = [w for w in warnings if w.key not in explained]
    infra = [w for w in rest if warning_kind(w.reason) is WarningKind.INFRASTRUCTURE]
    suspects.extend(_warning_suspects([w for w in rest if warning_kind(w.reason) is not WarningKind.INFRASTRUCTURE],
                                      ctx, cfg))
    suspects.extend(_infra_suspects(infra, ctx, cfg))
    suspects = sorted((s for s in suspects if s.score >= cfg.min_score), key=_order)[: cfg.max_suspects]
    return [replace(s, rank=i) for i, s in enumerate(suspects, 1)]
