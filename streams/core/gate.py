"""The rollout gate: ``proceed`` / ``hold`` / ``rollback`` for a service, a cluster or a migration step.

Pure ("detect, then act"): the rules. :func:`streams.core.answer.answer` hands them the latest
status of each series (:class:`~streams.core.wire.status.Status`), the suspects of the firing
alerts and the wall clock, and gets back a :class:`GateDecision` to serialise
(:meth:`GateDecision.to_json`) or to exit with (:attr:`GateDecision.exit_code`). docs/gate.md is
the user-facing version of these rules.

**SLO gate** (:func:`decide`). The statuses considered are those of ``service`` whose ``cluster``
and ``platform`` match the ones asked (a status whose dimension is ``*`` matches any value; an
argument left out matches everything). Then, per series, with the :class:`GateConfig` of its SLO:

1. No status at all: ``unknown`` (reason ``no_data``): an unknown service, a filter that matches
   none of its series, or no evaluation yet. We cannot tell, so we never say ``proceed``.
2. Stale (the status says so; or more than ``stale_after_s`` of wall clock since the
   worker built it; or its evaluation, an event time, more than ``max_evaluation_lag_s`` behind the
   wall clock): ``hold`` (reason ``stale``), or only a note when ``fail_open_when_stale``. The last
   known numbers are still judged by the rules below: silence does not clear a firing page.
3. A firing ``page`` alert: ``hold`` (``page_firing``); ``rollback`` (``suspect_rollout``) when one
   of that alert's suspects is a rollout of the asked revision (or, when no revision is asked, a
   rollout still active) of this service, in the asked cluster if one is asked, with a score of
   at least ``suspect_rollback_score``. A matching suspect below the score holds
   (``suspect_below_threshold``) and says so.
   A provisional page (fired on live data ahead of the final evaluation, see
   :mod:`streams.core.provisional`) counts at once: its reasons say "provisional" and carry the
   figure ``provisional: "true"``.
4. A firing ``ticket`` alert: ``hold`` (``ticket_firing``), provisional ones as in 3.
5. A burn condition over its factor on too few events to alert (low traffic): ``hold``
   (``insufficient_data``), unless ``hold_on_insufficient_data`` is off.
6. Error budget remaining below ``budget_floor``: ``hold`` (``budget_below_floor``).
7. Nothing of the above on any series: ``proceed`` (``healthy``).

The decision is the worst over every reason: ``rollback`` > ``hold`` > ``unknown`` > ``proceed``.
A known reason to stop outranks not knowing; not knowing is never a ``proceed``.

**Migration step gate** (:func:`decide_migration`): kubernetes' error ratio against legacy's over
the same window. Fewer than ``migration_min_events`` events on either side: ``hold``. Kubernetes
significantly worse (one-sided Fisher's exact test, p < ``migration_alpha``) *and* practically
worse (at least ``migration_min_ratio_x`` times legacy's ratio *and* at least
``migration_min_difference`` more in absolute terms): ``rollback``. Otherwise ``proceed``.
:func:`combine` gives a step's overall decision: the worst of its parts.

**Contracts.** :class:`Decision` maps 1:1 to the CLI exit codes (0 proceed, 1 hold, 2 rollback,
3 unknown). Over HTTP every decision is a 200 whose body has ``decision`` (Argo Rollouts' web
provider: ``jsonPath: "{$.decision}"``, ``successCondition: result == "proceed"``,
``failureCondition: result == "rollback"``; hold and unknown are inconclusive); non-2xx only when
the service cannot answer at all. :func:`flagger_accepts` says which Flagger hooks get a 2xx.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from streams.core import conventions as c
from streams.core.model import Severity, Slo, format_duration
from streams.core.stats import Proportion, fisher_exact_greater, two_proportion_z, wilson_interval
from streams.core.wire.status import Status
from streams.core.wire.suspect import RolloutSuspect, Suspect

Figure = float | str | None

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Decision(StrEnum):
    PROCEED = "proceed"
    HOLD = "hold"
    ROLLBACK = "rollback"
    UNKNOWN = "unknown"  # cannot tell: no data for what was asked

    @property
    def exit_code(self) -> int:
        """The ``gate check`` exit code: 0 proceed, 1 hold, 2 rollback, 3 cannot tell."""
        return _EXIT_CODES[self]

    @property
    def severity(self) -> int:
        """Order for "the worst of": proceed < unknown < hold < rollback."""
        return _SEVERITY[self]


_EXIT_CODES: Mapping[Decision, int] = MappingProxyType(
    {Decision.PROCEED: 0, Decision.HOLD: 1, Decision.ROLLBACK: 2, Decision.UNKNOWN: 3}
)
_SEVERITY: Mapping[Decision, int] = MappingProxyType(
    {Decision.PROCEED: 0, Decision.UNKNOWN: 1, Decision.HOLD: 2, Decision.ROLLBACK: 3}
)


def worst(decisions: Iterable[Decision]) -> Decision:
    """The most severe of ``decisions``; ``proceed`` for none."""
    return max(decisions, key=lambda d: d.severity, default=Decision.PROCEED)


class ReasonCode(StrEnum):
    NO_DATA = "no_data"
    STALE = "stale"
    PAGE_FIRING = "page_firing"
    SUSPECT_ROLLOUT = "suspect_rollout"
    SUSPECT_BELOW_THRESHOLD = "suspect_below_threshold"
    TICKET_FIRING = "ticket_firing"
    INSUFFICIENT_DATA = "insufficient_data"
    BUDGET_BELOW_FLOOR = "budget_below_floor"
    HEALTHY = "healthy"
    MIGRATION_NOT_ENOUGH_DATA = "migration_not_enough_data"
    MIGRATION_KUBERNETES_WORSE = "migration_kubernetes_worse"
    MIGRATION_WITHIN_TOLERANCE = "migration_within_tolerance"
    MIGRATION_NOT_SIGNIFICANTLY_WORSE = "migration_not_significantly_worse"
    CHANGE_FREEZE = "change_freeze"


@dataclass(frozen=True)
class GateConfig:
    """Gate thresholds for one SLO (the migration fields for one migration step).

    Defaults and why (docs/gate.md says more):

    - ``budget_floor`` 0.1: with less than 10% of the budget left, a bad rollout would spend the rest
      before the burn alerts could page and a rollback could land. Holds when remaining < floor.
    - ``stale_after_s`` 120: wall-clock seconds since the worker built the status. Live series are
      re-published at every 10 s evaluation step; the worker itself marks a silent partition stale
      after 60 s (``SLO_STREAM_STALE_AFTER``), so twice that means the worker is gone too.
    - ``max_evaluation_lag_s`` 300: wall clock minus the evaluation's event time. It always includes
      the allowed lateness (120 s) and one step (10 s); it must exceed them, or every series is stale.
    - ``fail_open_when_stale`` False: a gate that cannot see must not wave a rollout through.
    - ``hold_on_insufficient_data`` True: a burn over a page or ticket factor on too few events to
      alert still is a burn; the hold lifts when the short window clears or the events suffice.
    - ``suspect_rollback_score`` 0.5: above the most that correlation gives a rollout in another
      cluster (x0.4) or one exonerated by its previous revision (x0.3); reached by a rollout in
      progress that started within about 20 minutes of the burn, or one with concrete evidence
      (its revision's error ratio, Warning events on its own pods).
    - ``migration_min_events`` 1000 per side: enough for the test to see a gross regression (20 errors
      against 1 in 1000 events each gives p = 1e-5); subtler ones wait for more traffic.
    - ``migration_window_s`` 1800: the window the adapter should sum both platforms over (and no
      further back than the step's start): long enough to collect the events at a small traffic
      share, short enough to judge the current step.
    - ``migration_alpha`` 0.01: one-sided; the gate is asked again and again during a step, so each
      look must be strict (ten looks at 0.01 keep the chance of a false rollback near 10%).
    - ``migration_min_ratio_x`` 1.5 and ``migration_min_difference`` 0.0005: kubernetes must fail at
      least 1.5 times as often as legacy *and* by at least 0.05 percentage points (half the budget
      of a 99.9% SLO) before a step is rolled back; a significant but negligible difference (easy
      with millions of events) is not a reason to undo a migration.
    """

    budget_floor: float = 0.1
    stale_after_s: float = 120.0
    max_evaluation_lag_s: float = 300.0
    fail_open_when_stale: bool = False
    hold_on_insufficient_data: bool = True
    suspect_rollback_score: float = 0.5
    migration_min_events: int = 1000
    migration_window_s: int = 1800
    migration_alpha: float = 0.01
    migration_min_ratio_x: float = 1.5
    migration_min_difference: float = 0.0005

    def __post_init__(self) -> None:
        checks = (
            ("budget_floor", self.budget_floor <= 1.0),
            ("stale_after_s", self.stale_after_s > 0),
            ("max_evaluation_lag_s", self.max_evaluation_lag_s > 0),
            ("suspect_rollback_score", 0.0 <= self.suspect_rollback_score <= 1.0),
            ("migration_min_events", self.migration_min_events >= 1),
            ("migration_window_s", self.migration_window_s > 0),
            ("migration_alpha", 0.0 < self.migration_alpha < 1.0),
            ("migration_min_ratio_x", self.migration_min_ratio_x >= 1.0),
            ("migration_min_difference", 0.0 <= self.migration_min_difference < 1.0),
        )
        for name, ok in checks:
            if not ok:
                raise ValueError(f"GateConfig.{name} out of range: {getattr(self, name)!r}")


DEFAULT_GATE_CONFIG = GateConfig()


def gate_configs(slos: Iterable[Slo], default: GateConfig) -> dict[str, GateConfig]:
    """Per SLO: ``default``, with the SLO's ``slo-stream/gate-*`` annotations applied."""
    out = {}
    for s in slos:
        cfg = default
        if s.gate_budget_floor is not None:
            cfg = replace(cfg, budget_floor=s.gate_budget_floor)
        if s.gate_stale_after_s is not None:
            cfg = replace(cfg, stale_after_s=float(s.gate_stale_after_s))
        if s.gate_fail_open is not None:
            cfg = replace(cfg, fail_open_when_stale=s.gate_fail_open)
        out[s.name] = cfg
    return out


@dataclass(frozen=True)
class Reason:
    """Why the gate decided as it did: a stable ``code``, a one-line ``message`` for a human, the
    ``figures`` behind it and the ``decision`` this reason alone leads to (``proceed`` for a note)."""

    code: ReasonCode
    message: str
    figures: Mapping[str, Figure]
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        return {
            "code": str(self.code),
            "decision": str(self.decision),
            "message": self.message,
            "figures": {k: _json_number(v) for k, v in self.figures.items()},
        }


def make_reason(code: ReasonCode, decision: Decision, message: str, **figures: Figure) -> Reason:
    return Reason(code, " ".join(message.split()), MappingProxyType(figures), decision)


@dataclass(frozen=True)
class SeriesView:
    """The numbers of one SLO series the gate looked at."""

    series: str
    slo: str
    dimensions: Mapping[str, str]
    decision: Decision  # the worst of this series' reasons
    burn_rates: Mapping[str, float]  # by window ("5m", "1h", ...)
    error_budget_remaining: float
    budget_floor: float
    alerts: Mapping[str, str]  # severity -> "firing" | "ok"
    evaluated_at: float  # event time of the evaluation
    processed_age_s: float  # wall clock since the worker built the status
    evaluated_age_s: float  # wall clock minus evaluated_at
    newest_event_age_s: float | None  # wall clock minus the partition's newest event time
    stale: bool
    stale_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "slo": self.slo,
            "dimensions": dict(self.dimensions),
            "decision": str(self.decision),
            "burn_rates": {k: _json_number(v) for k, v in self.burn_rates.items()},
            "error_budget_remaining": _json_number(self.error_budget_remaining),
            "budget_floor": self.budget_floor,
            "alerts": dict(self.alerts),
            "evaluated_at": self.evaluated_at,
            "freshness": {
                "processed_age_s": round(self.processed_age_s, 3),
                "evaluated_age_s": round(self.evaluated_age_s, 3),
                "newest_event_age_s": None if self.newest_event_age_s is None
                else round(self.newest_event_age_s, 3),
                "stale": self.stale,
                "stale_reason": self.stale_reason,
            },
        }


@dataclass(frozen=True)
class MigrationComparison:
    """Kubernetes against legacy over one window, and what the test says."""

    kubernetes: Proportion
    legacy: Proportion
    window_s: int
    p_value: float  # one-sided Fisher's exact test, H1: kubernetes' ratio > legacy's
    z: float  # pooled two-proportion z (the large-sample view of the same question)
    ratio_x: float  # kubernetes' ratio / legacy's (inf when legacy has no errors and kubernetes has)
    difference: float  # kubernetes' ratio - legacy's
    kubernetes_interval: tuple[float, float]  # 95% Wilson score intervals
    legacy_interval: tuple[float, float]
    config: GateConfig
    test: str = "fisher_exact_one_sided"

    @property
    def enough_data(self) -> bool:
        n = self.config.migration_min_events
        return self.kubernetes.total >= n and self.legacy.total >= n

    @property
    def significant(self) -> bool:
        return self.p_value < self.config.migration_alpha

    @property
    def practically_worse(self) -> bool:
        return (self.ratio_x >= self.config.migration_min_ratio_x
                and self.difference >= self.config.migration_min_difference)

    def figures(self) -> dict[str, Figure]:
        cfg = self.config
        return {
            "test": self.test,
            "kubernetes_errors": self.kubernetes.bad,
            "kubernetes_total": self.kubernetes.total,
            "kubernetes_ratio": self.kubernetes.ratio,
            "legacy_errors": self.legacy.bad,
            "legacy_total": self.legacy.total,
            "legacy_ratio": self.legacy.ratio,
            "p_value": self.p_value,
            "z": self.z,
            "alpha": cfg.migration_alpha,
            "ratio_x": self.ratio_x,
            "difference": self.difference,
            "min_ratio_x": cfg.migration_min_ratio_x,
            "min_difference": cfg.migration_min_difference,
            "min_events": cfg.migration_min_events,
            "window_s": self.window_s,
        }

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "test": self.test,
            "window_s": self.window_s,
            "kubernetes": _side_json(self.kubernetes, self.kubernetes_interval),
            "legacy": _side_json(self.legacy, self.legacy_interval),
            "p_value": _json_number(self.p_value),
            "z": _json_number(self.z),
            "alpha": cfg.migration_alpha,
            "ratio_x": _json_number(self.ratio_x),
            "difference": _json_number(self.difference),
            "min_ratio_x": cfg.migration_min_ratio_x,
            "min_difference": cfg.migration_min_difference,
            "min_events": cfg.migration_min_events,
            "enough_data": self.enough_data,
            "significant": self.significant,
            "practically_worse": self.practically_worse,
        }


def _side_json(p: Proportion, interval: tuple[float, float]) -> dict[str, Any]:
    return {"errors": p.bad, "total": p.total, "ratio": _json_number(p.ratio),
            "interval_95": [_json_number(interval[0]), _json_number(interval[1])]}


@dataclass(frozen=True)
class GateDecision:
    """The answer: a decision, its reasons (worst first) and the numbers behind them."""

    decision: Decision
    service: str
    reasons: tuple[Reason, ...]
    at: float | None = None  # the wall clock the decision was made for
    cluster: str | None = None
    platform: str | None = None
    revision: str | None = None
    series: tuple[SeriesView, ...] = ()
    # Suspects of firing alerts that name the rollout asked about (compact; ``decisive`` marks those
    # that made it a rollback).
    suspects: tuple[GateSuspect, ...] = ()
    migration: MigrationComparison | None = None

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code

    @property
    def summary(self) -> str:
        """One line: the decision, what it is about, and the worst reason."""
        scope = "".join(f" {k}={v}" for k, v in
                        (("cluster", self.cluster), ("platform", self.platform), ("revision", self.revision))
                        if v is not None)
        head = f"{self.decision} {self.service}{scope}"
        if not self.reasons:
            return head
        rest = len(self.reasons) - 1
        more = f" (+{rest} more reason{'s' if rest != 1 else ''})" if rest else ""
        return f"{head}: {self.reasons[0].message}{more}"

    def to_json(self) -> dict[str, Any]:
        """The HTTP body (always with status 200). Argo Rollouts reads ``decision``."""
        return {
            "schema_version": c.SCHEMA_VERSION,
            "decision": str(self.decision),
            "exit_code": self.exit_code,
            "summary": self.summary,
            "service": self.service,
            "cluster": self.cluster,
            "platform": self.platform,
            "revision": self.revision,
            "at": self.at,
            "reasons": [r.to_json() for r in self.reasons],
            "series": [s.to_json() for s in self.series],
            "suspects": [_json_value(s.to_json()) for s in self.suspects],
            "migration": None if self.migration is None else self.migration.to_json(),
        }


# ---- the SLO gate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateSuspect:
    """A suspect of a firing page that names the rollout asked about, as the answer shows it;
    ``decisive`` when it made the answer a rollback."""

    suspect: RolloutSuspect
    alert: str  # the page's dedup key
    series: str
    decisive: bool

    @property
    def identity(self) -> tuple[str, str, str, str]:
        s = self.suspect
        return self.alert, s.cluster, s.workload.name, s.revision

    def to_json(self) -> dict[str, Any]:
        s = self.suspect
        return {"kind": s.kind, "score": s.score, "rank": s.rank, "summary": s.summary, "cluster": s.cluster,
                "namespace": s.workload.namespace, "deployment": s.workload.name, "revision": s.revision,
                "previous_revision": s.previous_revision, "images": list(s.images), "phase": str(s.phase),
                "rollback": s.rollback, "started_at": s.started_at, "same_cluster": s.same_cluster,
                "alert": self.alert, "series": self.series, "decisive": self.decisive,
                "evidence": [e.detail for e in s.evidence if e.detail]}


def covers(value: str, wanted: str | None) -> bool:
    """A series' dimension ``value`` covers the ``wanted`` one: nothing is wanted, the same value, or
    the dimension grouped away (``*``)."""
    return wanted is None or value in (wanted, c.ANY)


def points_at(s: Suspect, *, service: str, cluster: str | None, revision: str | None) -> bool:
    """Is suspect ``s`` a rollout of the one asked about: of ``service``, in ``cluster`` when asked,
    of ``revision`` (any of its names: number, template hash, image, tag) or, with no revision
    asked, still active?"""
    if not isinstance(s, RolloutSuspect) or s.service != service:
        return False
    if cluster is not None and s.cluster != cluster:
        return False
    if revision is not None:
        return revision in s.aliases()
    return s.phase.active


def _fmt_age(seconds: float) -> str:
    return format_duration(max(0, round(seconds)))


def _burns(st: Status) -> str:
    return ", ".join(f"{w} {v:.1f}x" for w, v in st.burn_rates.items()) or "no burn rates"


def _freshness(st: Status, cfg: GateConfig, now: float) -> tuple[str | None, list[Reason]]:
    """2. Stale data: hold (or only a note when failing open). Returns why it is stale, if it is."""
    s = st.series
    processed_age = now - st.processed_at
    evaluated_age = now - st.evaluated_at
    if st.stale:
        why = st.stale_reason or "the worker marked the series stale"
    elif processed_age > cfg.stale_after_s:
        why = (f"last status built {_fmt_age(processed_age)} ago "
               f"(stale after {_fmt_age(cfg.stale_after_s)}): is the worker running?")
    elif evaluated_age > cfg.max_evaluation_lag_s:
        why = (f"last evaluation is {_fmt_age(evaluated_age)} behind the wall clock "
               f"(limit {_fmt_age(cfg.max_evaluation_lag_s)}): events are late or have stopped")
    else:
        return None, []
    figures: dict[str, Figure] = {"series": s, "processed_age_s": processed_age, "evaluated_age_s": evaluated_age,
                                  "stale_after_s": cfg.stale_after_s}
    if cfg.fail_open_when_stale:
        return why, [make_reason(ReasonCode.STALE, Decision.PROCEED, f"{s}: stale data, ignored (fail open): {why}",
                                 **figures, fail_open="true")]
    return why, [make_reason(ReasonCode.STALE, Decision.HOLD, f"{s}: stale data, failing closed: {why}",
                             **figures, fail_open="false")]


def _provisional(prov: bool) -> dict[str, Figure]:
    """The figure that marks a reason made of a provisional alert (absent otherwise)."""
    return {"provisional": "true"} if prov else {}


def _page(st: Status, cfg: GateConfig, q: _Asked, suspects: Sequence[Suspect]
          ) -> tuple[list[Reason], list[GateSuspect]]:
    """3. A firing page, and whether the rollout asked about is to blame."""
    s = st.series
    cond = st.strongest(Severity.PAGE)
    what = cond.describe() if cond else _burns(st)
    prov = st.provisional(Severity.PAGE)
    early = "provisional " if prov else ""
    reasons = [make_reason(ReasonCode.PAGE_FIRING, Decision.HOLD, f"{early}page alert firing on {s}: {what}",
                           series=s, slo=st.slo, **_provisional(prov),
                           condition=None if cond is None else cond.windows,
                           long_burn=None if cond is None else cond.long_burn,
                           short_burn=None if cond is None else cond.short_burn,
                           factor=None if cond is None else cond.factor,
                           error_budget_remaining=st.error_budget_remaining)]
    pointing: list[GateSuspect] = []
    dk = c.dedup_key(s, str(Severity.PAGE))
    for sus in suspects:
        if not points_at(sus, service=q.service, cluster=q.cluster, revision=q.revision):
            continue
        assert isinstance(sus, RolloutSuspect)
        decisive = sus.score >= cfg.suspect_rollback_score
        pointing.append(GateSuspect(sus, dk, s, decisive))
        figures: dict[str, Figure] = {
            "series": s, "alert": dk, "score": sus.score, "threshold": cfg.suspect_rollback_score, "rank": sus.rank,
            "revision": sus.revision, "deployment": sus.workload.name, "cluster": sus.cluster,
            "phase": str(sus.phase), **_provisional(prov),
        }
        summary = sus.summary or f"rollout of revision {sus.revision}"
        if decisive:
            reasons.append(make_reason(ReasonCode.SUSPECT_ROLLOUT, Decision.ROLLBACK,
                                       f"{summary} is suspect #{sus.rank} of the {early}page on {s} "
                                       f"(score {sus.score:.2f} >= {cfg.suspect_rollback_score:.2f})", **figures))
        else:
            reasons.append(make_reason(ReasonCode.SUSPECT_BELOW_THRESHOLD, Decision.HOLD,
                                       f"{summary} is a suspect of the {early}page on {s}, but its score "
                                       f"{sus.score:.2f} < {cfg.suspect_rollback_score:.2f}: not rolling back",
                                       **figures))
    return reasons, pointing


def _ticket_low_traffic_budget(st: Status, cfg: GateConfig) -> list[Reason]:
    """4. A firing ticket; 5. a burn on too few events to alert; 6. the budget."""
    s = st.series
    reasons = []
    if st.firing(Severity.TICKET):
        cond = st.strongest(Severity.TICKET)
        what = cond.describe() if cond else _burns(st)
        prov = st.provisional(Severity.TICKET)
        early = "provisional " if prov else ""
        reasons.append(make_reason(ReasonCode.TICKET_FIRING, Decision.HOLD,
                                   f"{early}ticket alert firing on {s}: {what}",
                                   series=s, slo=st.slo, **_provisional(prov),
                                   condition=None if cond is None else cond.windows,
                                   long_burn=None if cond is None else cond.long_burn,
                                   error_budget_remaining=st.error_budget_remaining))
    low = [x for x in st.conditions if x.insufficient_data and not x.met]
    if low:
        top = max(low, key=lambda x: x.long_burn)
        decision = Decision.HOLD if cfg.hold_on_insufficient_data else Decision.PROCEED
        tail = "holding until the events suffice or the burn stops" if cfg.hold_on_insufficient_data \
            else "not holding (hold_on_insufficient_data is off)"
        reasons.append(make_reason(ReasonCode.INSUFFICIENT_DATA, decision,
                                   f"{s}: {top.describe()} on too few events to alert; {tail}",
                                   series=s, condition=top.windows, severity=str(top.severity),
                                   long_burn=top.long_burn, short_burn=top.short_burn, factor=top.factor))
    if st.error_budget_remaining < cfg.budget_floor:
        reasons.append(make_reason(ReasonCode.BUDGET_BELOW_FLOOR, Decision.HOLD,
                                   f"{s}: {st.error_budget_remaining:.1%} of the error budget left, below the "
                                   f"{cfg.budget_floor:.0%} floor", series=s, slo=st.slo,
                                   error_budget_remaining=st.error_budget_remaining, budget_floor=cfg.budget_floor))
    return reasons


@dataclass(frozen=True)
class _Asked:
    service: str
    cluster: str | None
    revision: str | None


def _judge_series(st: Status, cfg: GateConfig, q: _Asked, suspects: Mapping[str, Sequence[Suspect]], now: float
                  ) -> tuple[SeriesView, list[Reason], list[GateSuspect]]:
    stale_reason, reasons = _freshness(st, cfg, now)
    pointing: list[GateSuspect] = []
    if st.firing(Severity.PAGE):
        page, pointing = _page(st, cfg, q, suspects.get(c.dedup_key(st.series, str(Severity.PAGE)), ()))
        reasons += page
    reasons += _ticket_low_traffic_budget(st, cfg)
    view = SeriesView(
        series=st.series, slo=st.slo, dimensions=MappingProxyType(st.dimensions.to_json()),
        decision=worst(r.decision for r in reasons), burn_rates=st.burn_rates,
        error_budget_remaining=st.error_budget_remaining, budget_floor=cfg.budget_floor,
        alerts=MappingProxyType({str(sev): "firing" if st.firing(sev) else "ok"
                                 for sev in (Severity.PAGE, Severity.TICKET)}),
        evaluated_at=float(st.evaluated_at), processed_age_s=now - st.processed_at,
        evaluated_age_s=now - st.evaluated_at,
        newest_event_age_s=None if st.newest_event_ts is None else now - st.newest_event_ts,
        stale=stale_reason is not None, stale_reason=stale_reason,
    )
    return view, reasons, pointing


def _no_data(service: str, cluster: str | None, platform: str | None, ours: Sequence[Status], others: int
             ) -> Reason:
    where = " ".join(f"{k}={v}" for k, v in (("cluster", cluster), ("platform", platform)) if v)
    elsewhere = len({s.series for s in ours}) + others
    if elsewhere:
        msg = f"no SLO series of {service} matches {where} ({elsewhere} series elsewhere): cannot tell"
    else:
        msg = f"no slo.status for {service}: no SLO covers it, or none of its events was evaluated yet"
    return make_reason(ReasonCode.NO_DATA, Decision.UNKNOWN, msg, series_of_service=elsewhere)


def _healthy(views: Sequence[SeriesView]) -> Reason:
    low = min(views, key=lambda v: v.error_budget_remaining)
    rates = [(v.burn_rates[w], w, v.series) for v in views for w in v.burn_rates]
    top = max(rates, default=None)
    return make_reason(
        ReasonCode.HEALTHY, Decision.PROCEED,
        f"{len(views)} series healthy: no alert firing, lowest budget left {low.error_budget_remaining:.1%} "
        f"({low.series})" + (f", highest burn {top[0]:.2f}x over {top[1]}" if top else ""),
        series_count=len(views), min_error_budget_remaining=low.error_budget_remaining,
        max_burn_rate=None if top is None else top[0], max_burn_window=None if top is None else top[1],
        max_processed_age_s=max(v.processed_age_s for v in views))


def decide(
    *,
    service: str,
    cluster: str | None = None,
    platform: str | None = None,
    revision: str | None = None,
    statuses: Sequence[Status],
    suspects: Mapping[str, Sequence[Suspect]] = _EMPTY,
    now: float,
    configs: Mapping[str, GateConfig] | None = None,
    default: GateConfig = DEFAULT_GATE_CONFIG,
    others: int = 0,
) -> GateDecision:
    """Decide whether a rollout of ``service`` may go on (rules in the module docstring).

    ``statuses``: the latest status of each series (any service's; for one series the newest
    ``processed_at`` wins), marked stale where the worker says so. ``others``: series of ``service``
    left out of ``statuses`` by the caller because they do not cover ``cluster``/``platform`` (for
    the "no data" message). ``suspects``: the ranked suspects of each *firing* alert, keyed by the
    alert's dedup key (``conventions.dedup_key(series, "page")``).
    ``now``: wall clock, epoch seconds. ``configs``: per SLO name; others get ``default``.
    ``revision``: any name of the revision being rolled out (Deployment revision, pod-template-hash,
    image or image tag).
    """
    ours = [s for s in statuses if s.service == service]
    latest: dict[str, Status] = {}
    for st in ours:
        if not (covers(st.dimensions.cluster, cluster) and covers(st.dimensions.platform, platform)):
            continue
        have = latest.get(st.series)
        if have is None or st.processed_at >= have.processed_at:
            latest[st.series] = st
    if not latest:
        return GateDecision(decision=Decision.UNKNOWN, service=service, at=now, cluster=cluster, platform=platform,
                            revision=revision, reasons=(_no_data(service, cluster, platform, ours, others),))
    views: list[SeriesView] = []
    reasons: list[Reason] = []
    pointing: list[GateSuspect] = []
    q = _Asked(service, cluster, revision)
    for key in sorted(latest):
        st = latest[key]
        view, rs, ps = _judge_series(st, (configs or {}).get(st.slo, default), q, suspects, now)
        views.append(view)
        reasons.extend(rs)
        pointing.extend(ps)
    if not any(r.decision.severity > Decision.PROCEED.severity for r in reasons):
        reasons.append(_healthy(views))
    ordered = _order(reasons)
    return GateDecision(decision=worst(r.decision for r in ordered), service=service, at=now, cluster=cluster,
                        platform=platform, revision=revision, reasons=ordered, series=tuple(views),
                        suspects=tuple(pointing))


def _order(reasons: Iterable[Reason]) -> tuple[Reason, ...]:
    """Worst first; otherwise in the order found (by series, then rule)."""
    return tuple(sorted(reasons, key=lambda r: -r.decision.severity))


# ---- the migration step gate ----------------------------------------------------------------------


def compare_platforms(
    *, kubernetes: Proportion, legacy: Proportion, window_s: int, config: GateConfig = DEFAULT_GATE_CONFIG
) -> MigrationComparison:
    """Kubernetes' errors against legacy's over the same ``window_s`` (counts as given: the caller
    sums both platforms over the same interval)."""
    zt = two_proportion_z(kubernetes, legacy)
    return MigrationComparison(
        kubernetes=kubernetes,
        legacy=legacy,
        window_s=window_s,
        p_value=fisher_exact_greater(kubernetes, legacy),
        z=zt.z,
        ratio_x=zt.ratio_of_ratios,
        difference=kubernetes.ratio - legacy.ratio,
        kubernetes_interval=wilson_interval(kubernetes),
        legacy_interval=wilson_interval(legacy),
        config=config,
    )


def _pct(x: float) -> str:
    return f"{x:.2%}"


def _ratio_x(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}x"


def decide_migration(
    *,
    service: str,
    cluster: str | None = None,
    kubernetes: Proportion,
    legacy: Proportion,
    window_s: int,
    config: GateConfig = DEFAULT_GATE_CONFIG,
    now: float | None = None,
) -> GateDecision:
    """Judge a migration step: is ``kubernetes`` (errors over total) worse than ``legacy`` over the
    same ``window_s``? Hold below ``config.migration_min_events`` on either side; rollback when
    significantly (one-sided Fisher's exact test, p < ``migration_alpha``) and practically worse
    (ratio >= ``migration_min_ratio_x`` and difference >= ``migration_min_difference``); otherwise
    proceed. Staleness and SLO burn are :func:`decide`'s; :func:`combine` the two for a step."""
    cmp = compare_platforms(kubernetes=kubernetes, legacy=legacy, window_s=window_s, config=config)
    cfg = config
    win = format_duration(window_s)
    sides = (f"kubernetes {kubernetes.bad}/{kubernetes.total} ({_pct(kubernetes.ratio)}) vs legacy "
             f"{legacy.bad}/{legacy.total} ({_pct(legacy.ratio)}) over {win}")
    p_text = f"one-sided Fisher's exact test p={cmp.p_value:.3g}"
    z_text = f"(z={cmp.z:.2f})"
    figures = cmp.figures()
    if not cmp.enough_data:
        short = [name for name, p in (("kubernetes", kubernetes), ("legacy", legacy))
                 if p.total < cfg.migration_min_events]
        reason = make_reason(ReasonCode.MIGRATION_NOT_ENOUGH_DATA, Decision.HOLD,
                         f"not enough data on {' and '.join(short)}: {sides}; need "
                         f"{cfg.migration_min_events} events on each side", **figures)
    elif cmp.significant and cmp.practically_worse:
        reason = make_reason(ReasonCode.MIGRATION_KUBERNETES_WORSE, Decision.ROLLBACK,
                         f"kubernetes is worse: {sides}; {p_text} < alpha {cfg.migration_alpha:g} {z_text}; "
                         f"{_ratio_x(cmp.ratio_x)} and {cmp.difference * 100:+.3f} points (rollback from "
                         f"{cfg.migration_min_ratio_x:g}x and {cfg.migration_min_difference * 100:+.3f})",
                         **figures)
    elif cmp.significant:
        reason = make_reason(ReasonCode.MIGRATION_WITHIN_TOLERANCE, Decision.PROCEED,
                         f"kubernetes is slightly worse, within tolerance: {sides}; {p_text} < alpha "
                         f"{cfg.migration_alpha:g} {z_text}; "
                         f"{_ratio_x(cmp.ratio_x)} and {cmp.difference * 100:+.3f} points (rollback from "
                         f"{cfg.migration_min_ratio_x:g}x and {cfg.migration_min_difference * 100:+.3f})",
                         **figures)
    else:
        reason = make_reason(ReasonCode.MIGRATION_NOT_SIGNIFICANTLY_WORSE, Decision.PROCEED,
                         f"kubernetes is not significantly worse: {sides}; {p_text} >= alpha "
                         f"{cfg.migration_alpha:g} {z_text}",
                         **figures)
    return GateDecision(decision=reason.decision, service=service, cluster=cluster, platform=None,
                        at=now, reasons=(reason,), migration=cmp)


# ---- combining and the Flagger contract -----------------------------------------------------------


def combine(*decisions: GateDecision) -> GateDecision:
    """One decision from several about the same service (e.g. a migration step: :func:`decide` and
    :func:`decide_migration`): the worst decision, every reason (worst first), every series and
    suspect once, the first migration comparison and the first scope given."""
    if not decisions:
        raise ValueError("combine() needs at least one decision")
    services = {d.service for d in decisions}
    if len(services) > 1:
        raise ValueError(f"cannot combine decisions about different services: {sorted(services)}")
    series: dict[str, SeriesView] = {}
    for d in decisions:
        for v in d.series:
            series.setdefault(v.series, v)
    suspects: list[GateSuspect] = []
    seen: set[tuple[str, str, str, str]] = set()
    for d in decisions:
        for s in d.suspects:
            k = s.identity
            if k not in seen:
                seen.add(k)
                suspects.append(s)

    def first(values: Iterable[Any]) -> Any:
        return next((v for v in values if v is not None), None)

    ats = [d.at for d in decisions if d.at is not None]
    return GateDecision(
        decision=worst(d.decision for d in decisions),
        service=decisions[0].service,
        reasons=_order(r for d in decisions for r in d.reasons),
        at=max(ats) if ats else None,
        cluster=first(d.cluster for d in decisions),
        platform=first(d.platform for d in decisions),
        revision=first(d.revision for d in decisions),
        series=tuple(series.values()),
        suspects=tuple(suspects),
        migration=first(d.migration for d in decisions),
    )


class FlaggerHook(StrEnum):
    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


def flagger_accepts(decision: Decision, hook: FlaggerHook) -> bool:
    """Should a Flagger webhook of type ``hook`` get a 2xx for ``decision``?

    Flagger advances on 2xx and halts on anything else (a failed check for pre-rollout and rollout
    hooks, which roll back after the canary's threshold of failures); a *rollback* hook that gets a
    2xx rolls the canary back. So: gating hooks accept only ``proceed``, the rollback hook accepts
    only ``rollback``, and the notification hooks (post-rollout, event) always get a 2xx.
    """
    if hook is FlaggerHook.ROLLBACK:
        return decision is Decision.ROLLBACK
    if hook in (FlaggerHook.POST_ROLLOUT, FlaggerHook.EVENT):
        return True
    return decision is Decision.PROCEED


# ---- JSON -----------------------------------------------------------------------------------------


def _json_number(v: Any) -> Any:
    """JSON has no inf or NaN: they become null (a ratio against zero errors, say)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _json_value(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    return _json_number(v)
