"""``slo.alerts``: alert state changes (key: the dedup key).

Made by the engine (:func:`streams.core.alerting.make_alert`) with the values exactly as they travel
(burn rates to 4 decimals, the budget to 6), so that ``decode_alert(alert.encode()) == alert``. Read
by the notifier (PagerDuty), enforcement (the kube bridge) and the demo through :func:`decode_alert`,
the one reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import orjson

from streams.core import conventions as c
from streams.core.errors import RecordError
from streams.core.model import Severity
from streams.core.wire import fields as f
from streams.core.wire.series import Dimensions
from streams.core.wire.suspect import Suspect, decode_suspects

MAX_DEDUP_KEY = 255  # PagerDuty's limit
_EMPTY: Mapping[str, str] = MappingProxyType({})


class AlertState(StrEnum):
    """What an alert record says happened: it started, or it stopped (after the hold time)."""

    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    """An alert state change, as published on ``slo.alerts``."""

    dedup_key: str
    slo: str
    service: str
    severity: Severity
    state: AlertState
    ts: int  # event time of the evaluation that made the change
    started_at: int  # event time the incident started
    dimensions: Dimensions
    burn_rates: Mapping[str, float]  # by window ("5m", "1h", ...), 4 decimals
    condition: str  # e.g. "1h+5m > 14.4"
    threshold: float
    error_budget_remaining: float  # 6 decimals
    objective: float
    links: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    suspects: tuple[Suspect, ...] = ()
    burn_onset: int | None = None  # estimated start of the burn (event time), set when firing
    # Early firing on a live partition (streams.core.provisional): the FIRING of a provisional alert,
    # or the RESOLVED that retracts one (``reason`` "retracted"); ``seen_at`` is the newest event time
    # the provisional evaluation had seen. Final records carry none of these (a replay gives the same).
    provisional: bool = False
    seen_at: float | None = None
    reason: str | None = None

    @property
    def firing(self) -> bool:
        return self.state is AlertState.FIRING

    @property
    def top_suspect(self) -> Suspect | None:
        """The suspect with the lowest rank (the first one when ranks are equal)."""
        ranked = [(s.rank if s.rank > 0 else 2**31, i, s) for i, s in enumerate(self.suspects)]
        return min(ranked, key=lambda x: (x[0], x[1]))[2] if ranked else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": c.SCHEMA_VERSION,
            "dedup_key": self.dedup_key,
            "slo": self.slo,
            "service": self.service,
            "severity": str(self.severity),
            "state": str(self.state),
            "ts": self.ts,
            "started_at": self.started_at,
            "dimensions": self.dimensions.to_json(),
            "burn_rates": dict(self.burn_rates),
            "condition": self.condition,
            "threshold": self.threshold,
            "error_budget_remaining": self.error_budget_remaining,
            "objective": self.objective,
            "links": dict(self.links),
            "suspects": [s.to_json() for s in self.suspects],
        }
        if self.burn_onset is not None:
            out["burn_onset"] = self.burn_onset
        if self.provisional:
            out["provisional"] = True
        if self.seen_at is not None:
            out["seen_at"] = self.seen_at
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    def encode(self) -> bytes:
        return orjson.dumps(self.to_json())


def _enum(cls: type[Severity] | type[AlertState], value: object, what: str) -> Any:
    try:
        return cls(str(value))
    except ValueError:
        raise f.bad(what, value, f"must be one of {', '.join(m.value for m in cls)}") from None


def _time(value: object, what: str) -> int:
    """Event time: an integer (our writer), or a number kept as it came."""
    n = f.number(value, what)
    return value if isinstance(value, int) else n  # type: ignore[return-value]


def decode_alert(doc: object) -> Alert:
    """Read one ``slo.alerts`` value (parsed JSON). Raises :class:`RecordError` naming the field."""
    m = f.obj(doc, "alert")
    f.schema_version(m, required=False)
    dedup = f.text(m.get("dedup_key"), "dedup_key", MAX_DEDUP_KEY)
    if not dedup:
        raise f.missing("dedup_key")
    rates = f.obj(m.get("burn_rates", {}), "burn_rates")
    links = f.mapping(m.get("links"))
    onset = m.get("burn_onset")
    seen = m.get("seen_at")
    reason = m.get("reason")
    return Alert(
        dedup_key=dedup, slo=f.check_name(m.get("slo"), "slo"), service=f.check_name(m.get("service"), "service"),
        severity=_enum(Severity, m.get("severity"), "severity"), state=_enum(AlertState, m.get("state"), "state"),
        ts=_time(m.get("ts"), "ts"), started_at=_time(m.get("started_at", m.get("ts")), "started_at"),
        dimensions=Dimensions.from_json(m.get("dimensions")),
        burn_rates=MappingProxyType({str(k): f.number(v, f"burn_rates.{k}") for k, v in rates.items()}),
        condition=f.text(m.get("condition", ""), "condition", 200),
        threshold=f.number(m.get("threshold", 0.0), "threshold"),
        error_budget_remaining=f.number(m.get("error_budget_remaining"), "error_budget_remaining"),
        objective=f.number(m.get("objective"), "objective"),
        links=MappingProxyType({str(k): v for k, v in links.items() if isinstance(v, str)}),
        suspects=decode_suspects(m.get("suspects")),
        burn_onset=None if onset is None else _time(onset, "burn_onset"),
        provisional=f.boolean(m.get("provisional", False), "provisional"),
        seen_at=None if seen is None else f.number(seen, "seen_at"),
        reason=None if reason is None else f.text(reason, "reason", 40),
    )


def decode_alert_bytes(value: bytes | None) -> Alert:
    """:func:`decode_alert` of a Kafka value; RecordError ``bad_json`` when it is not JSON."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise RecordError(c.REASON_BAD_JSON, f"not JSON: {exc}") from None
    return decode_alert(doc)
