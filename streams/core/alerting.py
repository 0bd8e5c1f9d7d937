"""The alert lifecycle: firing on the condition, resolved after the condition has been false for a
hold time. One track per (series, severity); its dedup key never changes, so a restart or a replay
reopens nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from streams.core import conventions as c
from streams.core.burnrate import BurnEvaluation
from streams.core.model import Severity, Slo
from streams.core.wire.alert import Alert, AlertState
from streams.core.wire.series import Dimensions


@dataclass(frozen=True)
class Track:
    """What the state machine remembers between evaluations (persisted in a table)."""

    firing: bool = False
    fired_at: int | None = None  # event time the current incident started
    false_since: int | None = None  # event time the condition was first seen false while firing

    def to_json(self) -> dict[str, Any]:
        return {"firing": self.firing, "fired_at": self.fired_at, "false_since": self.false_since}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Track:
        return cls(firing=bool(d["firing"]), fired_at=d.get("fired_at"), false_since=d.get("false_since"))


def step(track: Track, *, condition: bool, at: int, hold_s: int) -> tuple[Track, AlertState | None]:
    """Advance one evaluation at event time ``at``; return the new track and the transition, if any.

    Resolves at the first evaluation where the condition has been false for at least ``hold_s``.
    """
    if condition:
        if track.firing:
            return (Track(True, track.fired_at, None) if track.false_since is not None else track), None
        return Track(True, at, None), AlertState.FIRING
    if not track.firing:
        return track, None
    since = track.false_since if track.false_since is not None else at
    if at - since >= hold_s:
        return Track(), AlertState.RESOLVED
    return (track if track.false_since is not None else Track(True, track.fired_at, since)), None


def make_alert(
    slo: Slo, ev: BurnEvaluation, severity: Severity, state: AlertState, *, started_at: int
) -> Alert:
    """The alert record for a transition of ``slo``'s ``severity`` track at evaluation ``ev``, with its
    numbers as they travel (burn rates to 4 decimals, the budget to 6)."""
    cond = ev.strongest(severity)
    if cond is None:  # resolving, or firing with no met condition cannot happen: take the first window
        wins = [w for w in slo.policy.windows if w.severity is severity]
        window = wins[0] if wins else slo.policy.windows[0]
    else:
        window = cond.window
    links = {}
    if slo.runbook_url:
        links["runbook"] = slo.runbook_url
    if slo.dashboard_url:
        links["dashboard"] = slo.dashboard_url
    return Alert(
        dedup_key=c.dedup_key(ev.series, str(severity)),
        slo=slo.name,
        service=slo.service,
        severity=severity,
        state=state,
        ts=ev.at,
        started_at=started_at,
        dimensions=Dimensions.of_series(ev.series),
        burn_rates=MappingProxyType({k: round(v, 4) for k, v in ev.burn_rates.items()}),
        condition=f"{window.name} > {window.factor:g}",
        threshold=window.factor,
        error_budget_remaining=round(ev.budget_remaining, 6),
        objective=slo.objective,
        links=MappingProxyType(links),
    )
