"""Burn rate and error budget of one SLO series at one evaluation time. Pure arithmetic.

Burn rate = error ratio over a window / (1 - objective): 1.0 spends the budget exactly over the SLO
window. Budget remaining = 1 - errors spent / errors allowed over the SLO window (negative when
overspent; 1.0 with no traffic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streams.core.model import BurnWindow, Severity, Slo, format_duration


@dataclass(frozen=True)
class WindowCount:
    window_s: int
    bad: int
    total: int

    @property
    def ratio(self) -> float:
        """Error ratio, 0.0 when the window saw no traffic."""
        return self.bad / self.total if self.total else 0.0


def burn_rate(count: WindowCount, error_budget: float) -> float:
    return count.ratio / error_budget


@dataclass(frozen=True)
class ConditionResult:
    window: BurnWindow
    long_burn: float
    short_burn: float
    long_total: int
    met: bool
    # The burn is over the threshold but the long window saw fewer than min_events events.
    insufficient_data: bool


@dataclass(frozen=True)
class BurnEvaluation:
    series: str
    slo: str
    at: int  # event time of the evaluation, epoch seconds
    counts: Mapping[int, WindowCount]  # by window length in seconds
    burn_rates: Mapping[str, float]  # by window name ("5m", "1h", ...)
    budget_remaining: float
    conditions: tuple[ConditionResult, ...]

    def active(self, severity: Severity) -> bool:
        return any(c.met for c in self.conditions if c.window.severity is severity)

    def strongest(self, severity: Severity) -> ConditionResult | None:
        """The condition of ``severity`` that is met with the highest long-window burn, if any."""
        met = [c for c in self.conditions if c.window.severity is severity and c.met]
        return max(met, key=lambda c: c.long_burn) if met else None


def evaluate(slo: Slo, series: str, at: int, counts: Mapping[int, tuple[int, int]]) -> BurnEvaluation:
    """Evaluate ``slo``'s policy from ``counts`` = {window seconds: (bad, total)} over ``[at - w, at)``.

    ``counts`` must hold every window in ``slo.windows_s``. A condition is met when both its long and
    short window burn strictly faster than its factor and the long window holds at least
    ``slo.min_events`` events.
    """
    budget = slo.error_budget
    min_events = slo.min_events
    wc = {w: WindowCount(w, *counts[w]) for w in slo.windows_s}
    rates = {format_duration(w): burn_rate(c, budget) for w, c in wc.items()}
    conds = []
    for bw in slo.policy.windows:
        long_c, short_c = wc[bw.long_s], wc[bw.short_s]
        lb, sb = burn_rate(long_c, budget), burn_rate(short_c, budget)
        burning = lb > bw.factor and sb > bw.factor
        enough = long_c.total >= min_events
        conds.append(
            ConditionResult(
                window=bw,
                long_burn=lb,
                short_burn=sb,
                long_total=long_c.total,
                met=burning and enough,
                insufficient_data=burning and not enough,
            )
        )
    whole = wc[slo.window_s]
    allowed = budget * whole.total
    remaining = 1.0 - whole.bad / allowed if allowed > 0 else 1.0
    return BurnEvaluation(
        series=series,
        slo=slo.name,
        at=at,
        counts=wc,
        burn_rates=rates,
        budget_remaining=remaining,
        conditions=tuple(conds),
    )
