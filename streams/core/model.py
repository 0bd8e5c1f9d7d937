"""The SLO domain model: frozen dataclasses, parsed once from OpenSLO specs at the edge.

Durations are integer seconds throughout the core.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

MINUTE = 60
HOUR = 3600
DAY = 86400
MIN_EVENTS_FLOOR = 100
BUDGET_ERRORS_FOR_MIN_EVENTS = 10


class Severity(StrEnum):
    PAGE = "page"
    TICKET = "ticket"


class SliKind(StrEnum):
    """``ratio``: bad = ``errors`` over ``total``; ``threshold``: bad = requests slower than a latency."""

    RATIO = "ratio"
    THRESHOLD = "threshold"


@dataclass(frozen=True)
class Indicator:
    name: str
    kind: SliKind
    # For THRESHOLD: a record is good when ``latency_ms <= latency_threshold_ms``.
    latency_threshold_ms: float | None = None


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window condition: both windows must burn faster than ``factor``.

    ``budget_fraction`` is the share of the SLO window's budget this condition spends over ``long_s``
    (the SRE Workbook's way to state it); ``factor`` is derived from it unless given explicitly.
    """

    severity: Severity
    long_s: int
    short_s: int
    factor: float

    @property
    def name(self) -> str:
        return f"{format_duration(self.long_s)}+{format_duration(self.short_s)}"


@dataclass(frozen=True)
class AlertPolicy:
    name: str
    windows: tuple[BurnWindow, ...]
    # Below this many events in a condition's long window it does not fire ("not enough data");
    # None: derived from the SLO's objective (see Slo.min_events).
    min_events: int | None = None
    # A firing alert resolves only after its condition has been false for this long.
    hold_s: int = 5 * MINUTE


@dataclass(frozen=True)
class Slo:
    name: str
    service: str
    objective: float  # e.g. 0.999
    window_s: int  # rolling SLO window
    indicator: Indicator
    policy: AlertPolicy
    # The dimensions a series keeps; the others are aggregated (shown as "*").
    group_by: tuple[str, ...] = ("cluster", "region", "platform")
    description: str = ""
    runbook_url: str = ""
    dashboard_url: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Where it came from, for messages: "path/to/file.yaml".
    source: str = ""
    # Rollout gate overrides (annotations slo-stream/gate-*); None: the worker's defaults.
    gate_budget_floor: float | None = None
    gate_stale_after_s: int | None = None
    gate_fail_open: bool | None = None

    @property
    def error_budget(self) -> float:
        """The allowed error ratio, ``1 - objective``."""
        return 1.0 - self.objective

    @property
    def min_events(self) -> int:
        """Events a condition's long window must hold before it may fire.

        Unless the policy says otherwise: enough events that the budget allows at least 10 errors
        among them (``10 / (1 - objective)``, 10,000 for 99.9%), and at least 100. Fewer, and a
        couple of failures would look like a huge burn.
        """
        if self.policy.min_events is not None:
            return self.policy.min_events
        # Rounded first: 1 - 0.9995 is not exactly 0.0005 in binary, and 10 / it is 20000.000000002.
        return max(MIN_EVENTS_FLOOR, math.ceil(round(BUDGET_ERRORS_FOR_MIN_EVENTS / self.error_budget, 6)))

    @property
    def windows_s(self) -> tuple[int, ...]:
        """Every window this SLO needs summed at an evaluation: its policy's and the SLO window."""
        ws = {self.window_s}
        for w in self.policy.windows:
            ws.add(w.long_s)
            ws.add(w.short_s)
        return tuple(sorted(ws))


def burn_factor(*, budget_fraction: float, slo_window_s: int, long_window_s: int) -> float:
    """The burn rate that spends ``budget_fraction`` of the budget in ``long_window_s``.

    SRE Workbook, ch. 5: spending 2% of a 30-day budget in 1 hour is a burn rate of 0.02 * 720 = 14.4.
    """
    return budget_fraction * slo_window_s / long_window_s


# The SRE Workbook's recommended multi-window multi-burn-rate alerts (ch. 5, table 5-8), as data:
# (severity, share of the SLO window's budget spent, long window, short window = long / 12).
WORKBOOK_WINDOWS: tuple[tuple[Severity, float, int, int], ...] = (
    (Severity.PAGE, 0.02, 1 * HOUR, 5 * MINUTE),  # 2% of budget in 1h: 14.4x for 30d
    (Severity.PAGE, 0.05, 6 * HOUR, 30 * MINUTE),  # 5% in 6h: 6x
    (Severity.TICKET, 0.10, 1 * DAY, 2 * HOUR),  # 10% in 1d: 3x
    (Severity.TICKET, 0.10, 3 * DAY, 6 * HOUR),  # 10% in 3d: 1x
)


def default_policy(slo_window_s: int, *, min_events: int | None = None, hold_s: int = 5 * MINUTE) -> AlertPolicy:
    """The Workbook policy scaled to the SLO window (for 30 days: page 14.4 and 6, ticket 3 and 1)."""
    windows = tuple(
        BurnWindow(
            severity=sev,
            long_s=long_s,
            short_s=short_s,
            factor=round(burn_factor(budget_fraction=frac, slo_window_s=slo_window_s, long_window_s=long_s), 6),
        )
        for sev, frac, long_s, short_s in WORKBOOK_WINDOWS
        if long_s <= slo_window_s
    )
    return AlertPolicy(name="workbook-default", windows=windows, min_events=min_events, hold_s=hold_s)


_UNITS = (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1))


def format_duration(seconds: int) -> str:
    """``3600`` -> ``"1h"``, ``90`` -> ``"1m30s"``, ``0`` -> ``"0s"``."""
    if seconds == 0:
        return "0s"
    out = []
    rest = seconds
    for unit, size in _UNITS:
        if rest >= size:
            n, rest = divmod(rest, size)
            out.append(f"{n}{unit}")
    return "".join(out)


def parse_duration(text: str) -> int:
    """Parse ``"30d"``, ``"1h30m"``, ``"45s"``, ``"2w"`` into seconds; raise ValueError otherwise."""
    units = {"w": 7 * DAY, "d": DAY, "h": HOUR, "m": MINUTE, "s": 1}
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    total = 0
    num = ""
    for ch in s:
        if ch.isdigit():
            num += ch
        elif ch in units and num:
            total += int(num) * units[ch]
            num = ""
        else:
            raise ValueError(f"invalid duration {text!r} (use e.g. 30d, 6h, 5m, 30s)")
    if num:
        raise ValueError(f"invalid duration {text!r}: missing unit (use e.g. 30d, 6h, 5m, 30s)")
    return total
