"""``slo.status``: the latest evaluation of each SLO series (compacted; key: the series).

Built by the engine's read model (:mod:`streams.core.readmodel`) with the values exactly as they
travel (6 decimals, no infinities), read by the gate in the same process and, through
:func:`decode_status`, by anything that consumes the topic (the demo, dashboards' tooling).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

import orjson

from streams.core import conventions as c
from streams.core.model import Severity
from streams.core.wire import fields as f
from streams.core.wire.series import Dimensions

FIRING: Final = "firing"
OK: Final = "ok"


@dataclass(frozen=True)
class Condition:
    """One multi-window condition of the SLO's policy at this evaluation."""

    severity: Severity
    windows: str  # "1h+5m"
    factor: float
    long_burn: float
    short_burn: float
    met: bool
    insufficient_data: bool  # over the factor on too few events to alert

    def describe(self) -> str:
        """``1h+5m burning 20.0x and 31.0x (> 14.4)``."""
        return f"{self.windows} burning {self.long_burn:.1f}x and {self.short_burn:.1f}x (> {self.factor:g})"

    def to_json(self) -> dict[str, Any]:
        return {"severity": str(self.severity), "windows": self.windows, "factor": self.factor,
                "long_burn": self.long_burn, "short_burn": self.short_burn, "met": self.met,
                "insufficient_data": self.insufficient_data}


@dataclass(frozen=True)
class AlertTrack:
    """An alert of the series as its track stood at the evaluation: ``firing`` or ``ok``, and the event
    time its incident started."""

    state: str
    since: int | None = None
    # Firing on a provisional alert (streams.core.provisional): the live data says so, the final
    # evaluation has not confirmed it yet.
    provisional: bool = False

    @property
    def firing(self) -> bool:
        return self.state == FIRING


@dataclass(frozen=True)
class Status:
    series: str
    slo: str
    service: str
    dimensions: Dimensions
    objective: float
    evaluated_at: int  # event time of the evaluation
    newest_event_ts: float | None  # the partition's newest event time
    processed_at: float  # wall clock the status was built for
    burn_rates: Mapping[str, float]  # by window name
    error_budget_remaining: float
    good_total: Mapping[str, tuple[int, int]]  # window name -> (bad, total)
    conditions: tuple[Condition, ...]
    alerts: Mapping[str, AlertTrack]  # by severity ("page", "ticket")
    stale: bool = False
    stale_reason: str | None = None

    def firing(self, severity: Severity) -> bool:
        """The alert of ``severity`` fires: its track says so, or one of its conditions is met (a met
        condition fires at the same evaluation: the same fact)."""
        track = self.alerts.get(str(severity))
        return (track is not None and track.firing) or any(
            x.met for x in self.conditions if x.severity is severity)

    def provisional(self, severity: Severity) -> bool:
        """The alert of ``severity`` fires provisionally only: its final evaluation has not confirmed it."""
        track = self.alerts.get(str(severity))
        return track is not None and track.provisional

    def strongest(self, severity: Severity) -> Condition | None:
        """The met condition of ``severity`` with the highest long-window burn."""
        met = [x for x in self.conditions if x.severity is severity and x.met]
        return max(met, key=lambda x: x.long_burn) if met else None

    def marked_stale(self, reason: str) -> Status:
        return replace(self, stale=True, stale_reason=reason)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": c.SCHEMA_VERSION,
            "series": self.series,
            "slo": self.slo,
            "service": self.service,
            "dimensions": self.dimensions.to_json(),
            "objective": self.objective,
            "evaluated_at": self.evaluated_at,
            "newest_event_ts": self.newest_event_ts,
            "processed_at": self.processed_at,
            "burn_rates": dict(self.burn_rates),
            "error_budget_remaining": self.error_budget_remaining,
            "good_total": {w: {"bad": bad, "total": total} for w, (bad, total) in self.good_total.items()},
            "conditions": [x.to_json() for x in self.conditions],
            "alerts": {sev: _alert_json(a) for sev, a in self.alerts.items()},
        }
        if self.stale:
            out["stale"] = True
            out["stale_reason"] = self.stale_reason
        return out

    def encode(self) -> bytes:
        return orjson.dumps(self.to_json())


def _alert_json(a: AlertTrack) -> dict[str, Any]:
    out: dict[str, Any] = {"state": a.state, "since": a.since}
    if a.provisional:
        out["provisional"] = True
    return out


def _condition(value: object, i: int) -> Condition:
    what = f"conditions[{i}]"
    m = f.obj(value, what)
    try:
        sev = Severity(str(m.get("severity")))
    except ValueError:
        raise f.bad(f"{what}.severity", m.get("severity"), "must be page or ticket") from None
    return Condition(severity=sev, windows=f.text(m.get("windows"), f"{what}.windows", 40),
                     factor=f.number(m.get("factor"), f"{what}.factor"),
                     long_burn=f.number(m.get("long_burn"), f"{what}.long_burn"),
                     short_burn=f.number(m.get("short_burn"), f"{what}.short_burn"),
                     met=f.boolean(m.get("met"), f"{what}.met"),
                     insufficient_data=f.boolean(m.get("insufficient_data"), f"{what}.insufficient_data"))


def _alerts(value: object) -> Mapping[str, AlertTrack]:
    out = {}
    for sev, a in f.mapping(value).items():
        m = f.obj(a, f"alerts.{sev}")
        state = m.get("state")
        if state not in (FIRING, OK):
            raise f.bad(f"alerts.{sev}.state", state, "must be firing or ok")
        since = m.get("since")
        out[str(sev)] = AlertTrack(str(state), f.opt_integer(since, f"alerts.{sev}.since"),
                                   provisional=f.boolean(m.get("provisional", False), f"alerts.{sev}.provisional"))
    return MappingProxyType(out)


def decode_status(doc: object) -> Status:
    """Read one ``slo.status`` value (parsed JSON). Raises :class:`RecordError` naming the field."""
    m = f.obj(doc, "status")
    f.schema_version(m)
    series = f.text(m.get("series"), "series", 400)
    if series.count("|") != 3:
        raise f.bad("series", series, "not a series key (slo|cluster|region|platform)")
    totals = {str(w): (f.integer(f.obj(v, f"good_total.{w}").get("bad"), f"good_total.{w}.bad"),
                       f.integer(f.obj(v, f"good_total.{w}").get("total"), f"good_total.{w}.total"))
              for w, v in f.mapping(m.get("good_total")).items()}
    conditions = m.get("conditions") or []
    if not isinstance(conditions, list):
        raise f.bad("conditions", conditions, "must be a list")
    stale = m.get("stale", False)
    newest = m.get("newest_event_ts")
    return Status(
        series=series, slo=f.check_name(m.get("slo"), "slo"), service=f.check_name(m.get("service"), "service"),
        dimensions=Dimensions.from_json(m.get("dimensions")), objective=f.number(m.get("objective"), "objective"),
        evaluated_at=f.integer(m.get("evaluated_at"), "evaluated_at"),
        newest_event_ts=None if newest is None else f.number(newest, "newest_event_ts"),
        processed_at=f.number(m.get("processed_at"), "processed_at"),
        burn_rates=MappingProxyType({str(k): f.number(v, f"burn_rates.{k}")
                                     for k, v in f.mapping(m.get("burn_rates")).items()}),
        error_budget_remaining=f.number(m.get("error_budget_remaining"), "error_budget_remaining"),
        good_total=MappingProxyType(totals),
        conditions=tuple(_condition(x, i) for i, x in enumerate(conditions)),
        alerts=_alerts(m.get("alerts")), stale=f.boolean(stale, "stale"),
        stale_reason=f.opt_text(m.get("stale_reason"), "stale_reason"),
    )
