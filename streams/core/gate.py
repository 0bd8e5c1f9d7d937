"""The rollout gate: ``proceed`` / ``hold`` / ``rollback`` for a service, a cluster or a migration step.

Pure ("detect, then act"): the HTTP view, the CLI and the Flagger hooks hand in the latest
``slo.status`` record of each series, the suspects of the firing alerts and the wall clock; they
get back a :class:`GateDecision` to serialise (:meth:`GateDecision.to_json`) or to exit with
(:attr:`GateDecision.exit_code`). docs/gate.md is the user-facing version of these rules.

**SLO gate** (:func:`decide`). The statuses considered are those of ``service`` whose ``cluster``
and ``platform`` match the ones asked (a status whose dimension is ``*`` matches any value; an
argument left out matches everything). Then, per series, with the :class:`GateConfig` of its SLO:

1. No status at all: ``unknown`` (reason ``no_data``): an unknown service, a filter that matches
   none of its series, or no evaluation yet. We cannot tell, so we never say ``proceed``.
2. Stale (the record says ``"stale": true``; or more than ``stale_after_s`` of wall clock since the
   worker built it; or its evaluation, an event time, more than ``max_evaluation_lag_s`` behind the
   wall clock): ``hold`` (reason ``stale``), or only a note when ``fail_open_when_stale``. The last
   known numbers are still judged by the rules below: silence does not clear a firing page.
3. A firing ``page`` alert: ``hold`` (``page_firing``); ``rollback`` (``suspect_rollout``) when one
   of that alert's suspects is a rollout of the asked revision (or, when no revision is asked, a
   rollout still in progress) of this service, in the asked cluster if one is asked, with a score of
   at least ``suspect_rollback_score``. A matching suspect below the score holds
   (``suspect_below_threshold``) and says so.
4. A firing ``ticket`` alert: ``hold`` (``ticket_firing``).
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
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from streams.core import conventions as c
from streams.core.correlation import ACTIVE_PHASES, revision_aliases
from streams.core.model import Severity, format_duration
from streams.core.stats import Proportion, fisher_exact_greater, two_proportion_z, wilson_interval

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
    INVALID_STATUS = "invalid_status"
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


def _reason(code: ReasonCode, decision: Decision, message: str, **figures: Figure) -> Reason:
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
    suspects: tuple[Mapping[str, Any], ...] = ()
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
            "suspects": [_json_value(dict(s)) for s in self.suspects],
            "migration": None if self.migration is None else self.migration.to_json(),
        }


# ---- the SLO gate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Status:
    """The fields of an ``slo.status`` record the gate reads."""

    series: str
    slo: str
    dimensions: Mapping[str, str]
    evaluated_at: float
    processed_at: float
    newest_event_ts: float | None
    burn_rates: Mapping[str, float]
    budget_remaining: float
    alerts: Mapping[str, str]
    conditions: tuple[Mapping[str, Any], ...]
    stale: bool
    stale_reason: str | None
    # Severities firing: the track says so, or a condition of that severity is met (a met condition
    # fires at the same evaluation: the same fact, and it covers a record without its alert block).
    firing: frozenset[str]


def _parse_status(raw: Mapping[str, Any]) -> _Status:
    """Read one ``slo.status`` value (as built by ``Engine.status_record``); ValueError naming the
    field when it is not one."""
    def num(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} is not a finite number: {value!r}")
        return float(value)

    try:
        series = str(raw["series"])
        slo, cluster, region, platform = c.split_series_key(series)
        dims_raw = raw.get("dimensions")
        dims = ({k: str(v) for k, v in dims_raw.items()} if isinstance(dims_raw, Mapping)
                else {"cluster": cluster, "region": region, "platform": platform})
        alerts: dict[str, str] = {}
        for sev, a in (raw.get("alerts") or {}).items():
            alerts[str(sev)] = str(a.get("state", "ok")) if isinstance(a, Mapping) else str(a)
        newest = raw.get("newest_event_ts")
        conditions = tuple(x for x in raw.get("conditions") or () if isinstance(x, Mapping))
        firing = {sev for sev, state in alerts.items() if state == "firing"}
        firing.update(str(x.get("severity")) for x in conditions if x.get("met") is True)
        return _Status(
            series=series,
            slo=str(raw.get("slo") or slo),
            dimensions=MappingProxyType(dims),
            evaluated_at=num("evaluated_at", raw["evaluated_at"]),
            processed_at=num("processed_at", raw["processed_at"]),
            newest_event_ts=None if newest is None else num("newest_event_ts", newest),
            burn_rates=MappingProxyType({str(k): num(f"burn_rates.{k}", v)
                                         for k, v in (raw.get("burn_rates") or {}).items()}),
            budget_remaining=num("error_budget_remaining", raw["error_budget_remaining"]),
            alerts=MappingProxyType(alerts),
            conditions=conditions,
            stale=raw.get("stale") is True,
            stale_reason=None if raw.get("stale_reason") is None else str(raw["stale_reason"]),
            firing=frozenset(firing),
        )
    except KeyError as exc:
        raise ValueError(f"missing field {exc.args[0]}") from exc
    except (TypeError, AttributeError) as exc:
        raise ValueError(str(exc)) from exc


def _dimensions(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """A status' dimensions; from its series key when the record lacks them."""
    dims = raw.get("dimensions")
    if isinstance(dims, Mapping):
        return dims
    parts = str(raw.get("series", "")).split("|")
    return dict(zip(("cluster", "region", "platform"), parts[1:], strict=False)) if len(parts) == 4 else {}


def _matches(value: Any, wanted: str | None) -> bool:
    return wanted is None or value in (wanted, c.ANY)


def _firing(st: _Status, severity: Severity) -> bool:
    return str(severity) in st.firing


def _points_at_rollout(s: Mapping[str, Any], *, service: str, cluster: str | None, revision: str | None) -> bool:
    """Is suspect ``s`` a rollout of the one asked about: of ``service``, in ``cluster`` when asked,
    of ``revision`` (any of its names: number, template hash, image, tag) or, with no revision
    asked, still in progress?"""
    if s.get("kind") != "rollout":
        return False
    if s.get("service") not in (None, service):
        return False
    if cluster is not None and s.get("cluster") != cluster:
        return False
    if revision is not None:
        return revision in revision_aliases(s, previous=False)
    return s.get("phase") in ACTIVE_PHASES


def _score(s: Mapping[str, Any]) -> float:
    v = s.get("score")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else 0.0


_SUSPECT_KEYS = ("kind", "score", "rank", "summary", "cluster", "namespace", "deployment", "revision",
                 "previous_revision", "images", "phase", "rollback", "started_at", "same_cluster")


def _compact_suspect(s: Mapping[str, Any], *, alert: str, series: str, decisive: bool) -> dict[str, Any]:
    out: dict[str, Any] = {k: s[k] for k in _SUSPECT_KEYS if k in s}
    out["alert"] = alert
    out["series"] = series
    out["decisive"] = decisive
    evidence = s.get("evidence")
    if isinstance(evidence, Sequence):
        out["evidence"] = [str(e["detail"]) for e in evidence if isinstance(e, Mapping) and e.get("detail")]
    return out


def _fmt_age(seconds: float) -> str:
    return format_duration(max(0, round(seconds)))


def _burns(st: _Status) -> str:
    return ", ".join(f"{w} {v:.1f}x" for w, v in st.burn_rates.items()) or "no burn rates"


def _strongest(st: _Status, severity: Severity) -> Mapping[str, Any] | None:
    """The met condition of ``severity`` with the highest long-window burn."""
    conds = [x for x in st.conditions if x.get("severity") == str(severity) and x.get("met") is True]
    return max(conds, key=lambda x: _num(x.get("long_burn"))) if conds else None


def _describe(cond: Mapping[str, Any]) -> str:
    """``1h+5m burning 20.0x and 31.0x (> 14.4)``."""
    return (f"{cond.get('windows')} burning {_num(cond.get('long_burn')):.1f}x and "
            f"{_num(cond.get('short_burn')):.1f}x (> {_num(cond.get('factor')):g})")


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _judge_series(
    st: _Status,
    cfg: GateConfig,
    *,
    service: str,
    cluster: str | None,
    revision: str | None,
    suspects: Mapping[str, Sequence[Mapping[str, Any]]],
    now: float,
) -> tuple[SeriesView, list[Reason], list[dict[str, Any]]]:
    reasons: list[Reason] = []
    pointing: list[dict[str, Any]] = []
    s = st.series
    processed_age = now - st.processed_at
    evaluated_age = now - st.evaluated_at
    newest_age = None if st.newest_event_ts is None else now - st.newest_event_ts

    # 2. Freshness.
    stale_reason = None
    if st.stale:
        stale_reason = st.stale_reason or "the worker marked the series stale"
    elif processed_age > cfg.stale_after_s:
        stale_reason = (f"last status built {_fmt_age(processed_age)} ago "
                        f"(stale after {_fmt_age(cfg.stale_after_s)}): is the worker running?")
    elif evaluated_age > cfg.max_evaluation_lag_s:
        stale_reason = (f"last evaluation is {_fmt_age(evaluated_age)} behind the wall clock "
                        f"(limit {_fmt_age(cfg.max_evaluation_lag_s)}): events are late or have stopped")
    if stale_reason is not None:
        if cfg.fail_open_when_stale:
            reasons.append(_reason(ReasonCode.STALE, Decision.PROCEED,
                                   f"{s}: stale data, ignored (fail open): {stale_reason}", series=s,
                                   processed_age_s=processed_age, evaluated_age_s=evaluated_age,
                                   stale_after_s=cfg.stale_after_s, fail_open="true"))
        else:
            reasons.append(_reason(ReasonCode.STALE, Decision.HOLD,
                                   f"{s}: stale data, failing closed: {stale_reason}", series=s,
                                   processed_age_s=processed_age, evaluated_age_s=evaluated_age,
                                   stale_after_s=cfg.stale_after_s, fail_open="false"))

    # 3. A firing page, and whether the rollout asked about is to blame.
    if _firing(st, Severity.PAGE):
        cond = _strongest(st, Severity.PAGE)
        what = _describe(cond) if cond else _burns(st)
        reasons.append(_reason(ReasonCode.PAGE_FIRING, Decision.HOLD, f"page alert firing on {s}: {what}",
                               series=s, slo=st.slo, condition=None if cond is None else str(cond.get("windows")),
                               long_burn=None if cond is None else _num(cond.get("long_burn")),
                               short_burn=None if cond is None else _num(cond.get("short_burn")),
                               factor=None if cond is None else _num(cond.get("factor")),
                               error_budget_remaining=st.budget_remaining))
        dk = c.dedup_key(s, str(Severity.PAGE))
        for sus in suspects.get(dk, ()):
            if not _points_at_rollout(sus, service=service, cluster=cluster, revision=revision):
                continue
            score = _score(sus)
            decisive = score >= cfg.suspect_rollback_score
            pointing.append(_compact_suspect(sus, alert=dk, series=s, decisive=decisive))
            figures: dict[str, Figure] = {
                "series": s, "alert": dk, "score": score, "threshold": cfg.suspect_rollback_score,
                "rank": sus["rank"] if isinstance(sus.get("rank"), int) else None,
                "revision": str(sus.get("revision")), "deployment": str(sus.get("deployment")),
                "cluster": str(sus.get("cluster")), "phase": str(sus.get("phase")),
            }
            summary = str(sus.get("summary") or f"rollout of revision {sus.get('revision')}")
            if decisive:
                reasons.append(_reason(ReasonCode.SUSPECT_ROLLOUT, Decision.ROLLBACK,
                                       f"{summary} is suspect #{sus.get('rank', '?')} of the page on {s} "
                                       f"(score {score:.2f} >= {cfg.suspect_rollback_score:.2f})", **figures))
            else:
                reasons.append(_reason(ReasonCode.SUSPECT_BELOW_THRESHOLD, Decision.HOLD,
                                       f"{summary} is a suspect of the page on {s}, but its score "
                                       f"{score:.2f} < {cfg.suspect_rollback_score:.2f}: not rolling back",
                                       **figures))

    # 4. A firing ticket.
    if _firing(st, Severity.TICKET):
        cond = _strongest(st, Severity.TICKET)
        what = _describe(cond) if cond else _burns(st)
        reasons.append(_reason(ReasonCode.TICKET_FIRING, Decision.HOLD, f"ticket alert firing on {s}: {what}",
                               series=s, slo=st.slo, condition=None if cond is None else str(cond.get("windows")),
                               long_burn=None if cond is None else _num(cond.get("long_burn")),
                               error_budget_remaining=st.budget_remaining))

    # 5. A burn on too few events to alert.
    low = [x for x in st.conditions if x.get("insufficient_data") is True and x.get("met") is not True]
    if low:
        top = max(low, key=lambda x: _num(x.get("long_burn")))
        decision = Decision.HOLD if cfg.hold_on_insufficient_data else Decision.PROCEED
        tail = "holding until the events suffice or the burn stops" if cfg.hold_on_insufficient_data \
            else "not holding (hold_on_insufficient_data is off)"
        reasons.append(_reason(ReasonCode.INSUFFICIENT_DATA, decision,
                               f"{s}: {_describe(top)} on too few events to alert; {tail}",
                               series=s, condition=str(top.get("windows")), severity=str(top.get("severity")),
                               long_burn=_num(top.get("long_burn")), short_burn=_num(top.get("short_burn")),
                               factor=_num(top.get("factor"))))

    # 6. The budget.
    if st.budget_remaining < cfg.budget_floor:
        reasons.append(_reason(ReasonCode.BUDGET_BELOW_FLOOR, Decision.HOLD,
                               f"{s}: {st.budget_remaining:.1%} of the error budget left, below the "
                               f"{cfg.budget_floor:.0%} floor", series=s, slo=st.slo,
                               error_budget_remaining=st.budget_remaining, budget_floor=cfg.budget_floor))

    view = SeriesView(
        series=s, slo=st.slo, dimensions=st.dimensions, decision=worst(r.decision for r in reasons),
        burn_rates=st.burn_rates, error_budget_remaining=st.budget_remaining, budget_floor=cfg.budget_floor,
        alerts=MappingProxyType({str(sev): "firing" if _firing(st, sev) else "ok"
                                 for sev in (Severity.PAGE, Severity.TICKET)}),
        evaluated_at=st.evaluated_at, processed_age_s=processed_age, evaluated_age_s=evaluated_age,
        newest_event_age_s=newest_age, stale=stale_reason is not None, stale_reason=stale_reason,
    )
    return view, reasons, pointing


def decide(
    *,
    service: str,
    cluster: str | None = None,
    platform: str | None = None,
    revision: str | None = None,
    statuses: Sequence[Mapping[str, Any]],
    suspects: Mapping[str, Sequence[Mapping[str, Any]]] = _EMPTY,
    now: float,
    configs: Mapping[str, GateConfig] | None = None,
    default: GateConfig = DEFAULT_GATE_CONFIG,
) -> GateDecision:
    """Decide whether a rollout of ``service`` may go on (rules in the module docstring).

    ``statuses``: ``slo.status`` values (``Engine.status_record``, possibly with ``"stale": true``);
    any service's, any number per series (the newest ``processed_at`` wins). ``suspects``: the
    ranked suspects of each *firing* alert, keyed by the alert's dedup key (the ``slo.alerts`` key;
    ``conventions.dedup_key(series, "page")``), as ``correlate`` returns them. ``now``: wall clock,
    epoch seconds. ``configs``: per SLO name; others get ``default``. ``revision``: any name of the
    revision being rolled out (Deployment revision, pod-template-hash, image or image tag).
    """
    ours = [s for s in statuses if s.get("service") == service]
    latest: dict[str, Mapping[str, Any]] = {}
    invalid: list[Reason] = []
    for raw in ours:
        dims = _dimensions(raw)
        if not (_matches(dims.get("cluster"), cluster) and _matches(dims.get("platform"), platform)):
            continue
        key = str(raw.get("series"))
        have = latest.get(key)
        if have is None or _num(raw.get("processed_at")) >= _num(have.get("processed_at")):
            latest[key] = raw

    if not latest:
        where = " ".join(f"{k}={v}" for k, v in (("cluster", cluster), ("platform", platform)) if v)
        if ours:
            msg = (f"no SLO series of {service} matches {where} ({len({str(s.get('series')) for s in ours})} "
                   f"series elsewhere): cannot tell")
        else:
            msg = f"no slo.status for {service}: no SLO covers it, or none of its events was evaluated yet"
        return GateDecision(decision=Decision.UNKNOWN, service=service, at=now, cluster=cluster,
                            platform=platform, revision=revision,
                            reasons=(_reason(ReasonCode.NO_DATA, Decision.UNKNOWN, msg,
                                             series_of_service=len(ours)),))

    views: list[SeriesView] = []
    reasons: list[Reason] = []
    pointing: list[dict[str, Any]] = []
    for key in sorted(latest):
        raw = latest[key]
        try:
            st = _parse_status(raw)
        except ValueError as exc:
            invalid.append(_reason(ReasonCode.INVALID_STATUS, Decision.HOLD,
                                   f"{key}: unreadable slo.status record ({exc}); failing closed", series=key))
            continue
        cfg = (configs or {}).get(st.slo, default)
        view, rs, ps = _judge_series(st, cfg, service=service, cluster=cluster, revision=revision,
                                     suspects=suspects, now=now)
        views.append(view)
        reasons.extend(rs)
        pointing.extend(ps)
    reasons.extend(invalid)

    if not any(r.decision.severity > Decision.PROCEED.severity for r in reasons) and views:
        low = min(views, key=lambda v: v.error_budget_remaining)
        rates = [(v.burn_rates[w], w, v.series) for v in views for w in v.burn_rates]
        top = max(rates, default=None)
        reasons.append(_reason(
            ReasonCode.HEALTHY, Decision.PROCEED,
            f"{len(views)} series healthy: no alert firing, lowest budget left {low.error_budget_remaining:.1%} "
            f"({low.series})" + (f", highest burn {top[0]:.2f}x over {top[1]}" if top else ""),
            series_count=len(views), min_error_budget_remaining=low.error_budget_remaining,
            max_burn_rate=None if top is None else top[0], max_burn_window=None if top is None else top[1],
            max_processed_age_s=max(v.processed_age_s for v in views)))

    ordered = _order(reasons)
    return GateDecision(decision=worst(r.decision for r in ordered), service=service, at=now,
                        cluster=cluster, platform=platform, revision=revision,
                        reasons=ordered, series=tuple(views),
                        suspects=tuple(MappingProxyType(p) for p in pointing))


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
        reason = _reason(ReasonCode.MIGRATION_NOT_ENOUGH_DATA, Decision.HOLD,
                         f"not enough data on {' and '.join(short)}: {sides}; need "
                         f"{cfg.migration_min_events} events on each side", **figures)
    elif cmp.significant and cmp.practically_worse:
        reason = _reason(ReasonCode.MIGRATION_KUBERNETES_WORSE, Decision.ROLLBACK,
                         f"kubernetes is worse: {sides}; {p_text} < alpha {cfg.migration_alpha:g} {z_text}; "
                         f"{_ratio_x(cmp.ratio_x)} and {cmp.difference * 100:+.3f} points (rollback from "
                         f"{cfg.migration_min_ratio_x:g}x and {cfg.migration_min_difference * 100:+.3f})",
                         **figures)
    elif cmp.significant:
        reason = _reason(ReasonCode.MIGRATION_WITHIN_TOLERANCE, Decision.PROCEED,
                         f"kubernetes is slightly worse, within tolerance: {sides}; {p_text} < alpha "
                         f"{cfg.migration_alpha:g} {z_text}; "
                         f"{_ratio_x(cmp.ratio_x)} and {cmp.difference * 100:+.3f} points (rollback from "
                         f"{cfg.migration_min_ratio_x:g}x and {cfg.migration_min_difference * 100:+.3f})",
                         **figures)
    else:
        reason = _reason(ReasonCode.MIGRATION_NOT_SIGNIFICANTLY_WORSE, Decision.PROCEED,
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
    suspects: list[Mapping[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for d in decisions:
        for s in d.suspects:
            k = (s.get("alert"), s.get("cluster"), s.get("deployment"), s.get("revision"))
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


def decide_freeze(*, service: str, freezes: Sequence[Mapping[str, Any]], cluster: str | None,
                  now: float) -> GateDecision:
    """``hold`` while a change freeze applies: one for the whole service, or for the cluster asked
    (a freeze of one cluster holds a question about the whole service too). ``freezes``: the active
    ones, ``{"cluster": str | None, "reason": str, "until": epoch seconds}``."""
    applies = [f for f in freezes if cluster is None or f.get("cluster") in (None, cluster)]
    if not applies:
        return GateDecision(Decision.PROCEED, service, (), at=now, cluster=cluster)
    reasons = []
    for f in applies:
        where = f" in {f['cluster']}" if f.get("cluster") else ""
        left = max(0.0, float(f["until"]) - now)
        reasons.append(_reason(ReasonCode.CHANGE_FREEZE, Decision.HOLD,
                               f"change freeze{where} for {format_duration(int(left))} more: {f['reason']}",
                               until=float(f["until"]), cluster=f.get("cluster"), reason=str(f["reason"])))
    return GateDecision(Decision.HOLD, service, tuple(reasons), at=now, cluster=cluster)


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
