"""What the notifier sends to PagerDuty, decided purely: Events API v2 bodies from `slo.alerts`
records, Change Events from `k8s.rollouts` records, how to treat each HTTP answer, how long to wait.

Contract (../shared/DESIGN.md, "Contracts we must honour"): ``routing_key``, ``event_action``
(trigger | resolve), ``dedup_key`` (<= 255 chars), ``payload.summary`` (<= 1024), ``payload.source``,
``payload.severity`` (critical | error | warning | info), ``timestamp``, ``component``, ``group``,
``class``, ``custom_details``, ``links``. 202 accepted; 400 invalid, never retried; 429 and 5xx
retried with backoff; 512 KB per event.

Records come typed (:mod:`streams.core.wire.alert`, :mod:`streams.core.wire.rollout`): the notifier
decodes them at the edge and dead-letters what does not decode.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from streams.core.errors import RecordError
from streams.core.wire.alert import MAX_DEDUP_KEY, Alert, AlertState
from streams.core.wire.rollout import RolloutRecord

PD_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
MAX_SUMMARY = 1024
MAX_EVENT_BYTES = 512 * 1024


class NotifyError(RecordError):
    """A record that cannot become a PagerDuty event (dead-lettered with this reason)."""


class SendOutcome(Enum):
    """What to do after one HTTP answer of PagerDuty."""

    ACCEPTED = "accepted"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Routing:
    """Routing keys per alert severity and for change events, and the PagerDuty severity of each
    of our severities. Keys are secrets: never printed (``repr`` hides them)."""

    keys: Mapping[str, str] = field(repr=False)  # "page" | "ticket" | "change" -> routing key
    severity: Mapping[str, str] = field(default_factory=lambda: {"page": "critical", "ticket": "warning"})
    # Per SLO: severity -> routing key, overriding ``keys`` for that SLO's alerts.
    per_slo: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)

    def key_for(self, kind: str, slo: str | None = None) -> str | None:
        if slo is not None:
            own = self.per_slo.get(slo, {}).get(kind)
            if own:
                return own
        return self.keys.get(kind)


class Delivered:
    """What was last delivered per dedup key: the alert change's event time and state.

    A worker that dies after publishing a batch's alert changes but before writing the batch's state
    replays the batch and publishes those changes again. A repeat of an open incident's trigger is
    harmless (PagerDuty folds it in), but when the batch held a whole incident (fired and resolved in
    one catch-up batch), its trigger would arrive after its resolve and open a second incident. The
    worker evaluates a series at increasing steps, and a dedup key belongs to one series, so a change
    that is not newer than the last delivered one is such a repeat: :meth:`is_repeat` tells.

    Bounded: past ``max_keys`` the key delivered longest ago is forgotten (a repeat of it then goes
    out again, which is the at-least-once behaviour without this filter)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._last: dict[str, tuple[float, str]] = {}
        self._provisional: set[str] = set()  # dedup keys whose last delivered change was a provisional FIRING

    def confirms(self, alert: Alert) -> bool:
        """``alert`` is the final FIRING of an incident whose provisional FIRING went out (at the same or
        a later step): its confirmation, folded into the open incident (no second page)."""
        return (alert.state is AlertState.FIRING and not alert.provisional
                and alert.dedup_key in self._provisional and self.is_repeat(alert))

    def is_repeat(self, alert: Alert) -> bool:
        """True when a change at the same or a later event time was already delivered for this
        dedup key (and, at the same time, in the same state)."""
        last = self._last.get(alert.dedup_key)
        if last is None:
            return False
        return alert.ts < last[0] or (alert.ts == last[0] and str(alert.state) == last[1])

    def note(self, alert: Alert) -> None:
        """Remember a delivered (or, read back at start-up, already handled) alert change."""
        k = (alert.dedup_key, float(alert.ts), str(alert.state))
        last = self._last.pop(k[0], None)
        newer = last is None or k[1] >= last[0]
        self._last[k[0]] = (k[1], k[2]) if last is None or newer else last
        if newer:
            if alert.provisional and alert.state is AlertState.FIRING:
                self._provisional.add(k[0])
            else:
                self._provisional.discard(k[0])
        while len(self._last) > self.max_keys:
            gone = next(iter(self._last))
            del self._last[gone]
            self._provisional.discard(gone)

    def __len__(self) -> int:
        return len(self._last)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def top_suspect(alert: Alert) -> str | None:
    """The first suspect (they are ranked), with its score."""
    if not alert.suspects:
        return None
    s = alert.suspects[0]
    return f"{s.summary or s.kind or 'suspect'} (score {s.score:.2f})"


def summary(alert: Alert) -> str:
    """One line a person reads at 3 a.m.: what, where, how fast, how much budget, the top suspect."""
    d = alert.dimensions
    where = f"{d.cluster}/{d.region}/{d.platform}"
    cond = alert.condition
    long_w = cond.split("+", 1)[0] if "+" in cond else None
    burn = alert.burn_rates.get(long_w) if long_w else None
    burn_txt = f" burning {burn:.1f}x over {long_w}" if burn is not None else ""
    suspect = top_suspect(alert)
    suspect_txt = f"; top suspect: {suspect}" if suspect else "; no suspect"
    early = ", PROVISIONAL" if alert.provisional else ""
    line = (f"[{str(alert.severity).upper()} {str(alert.state).upper()}{early}] {alert.slo} in {where}"
            f"{burn_txt} ({cond}), budget left {_pct(alert.error_budget_remaining)}{suspect_txt}")
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 1] + "…"


def alert_event(alert: Alert, routing: Routing) -> tuple[str, dict[str, Any]]:
    """The Events API v2 body for one `slo.alerts` record, and the routing kind it used."""
    dedup, severity = alert.dedup_key, str(alert.severity)
    if not dedup or len(dedup) > MAX_DEDUP_KEY:
        raise NotifyError("bad_alert", f"dedup_key must be 1..{MAX_DEDUP_KEY} characters")
    pd_severity = routing.severity.get(severity)
    if pd_severity not in PD_SEVERITIES:
        raise NotifyError("bad_alert", f"severity {severity!r} has no PagerDuty severity")
    key = routing.key_for(severity, alert.slo)
    if not key:
        raise NotifyError("no_routing_key", f"no routing key configured for severity {severity!r}")
    if alert.state is AlertState.RESOLVED:
        return severity, {"routing_key": key, "event_action": "resolve", "dedup_key": dedup}
    dims = alert.dimensions.to_json()
    details = {
        "slo": alert.slo,
        "service": alert.service,
        "dimensions": dims,
        "condition": alert.condition,
        "threshold": alert.threshold,
        "burn_rates": dict(alert.burn_rates),
        "error_budget_remaining": alert.error_budget_remaining,
        "objective": alert.objective,
        "started_at": _iso(alert.started_at),
        "suspects": [s.to_json() for s in alert.suspects],
    }
    if alert.provisional:
        # Fired on live data ahead of the final evaluation (docs/semantics.md): a RESOLVED with reason
        # "retracted" follows if the final evaluation does not confirm it.
        details["provisional"] = True
        details["seen_at"] = _iso(alert.seen_at if alert.seen_at is not None else alert.ts)
    links = [{"href": href, "text": name.capitalize()} for name, href in sorted(alert.links.items()) if href]
    body: dict[str, Any] = {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": summary(alert),
            "source": f"slo-stream/{dims['cluster']}",
            "severity": pd_severity,
            "timestamp": _iso(alert.ts),
            "component": alert.service or alert.slo,
            "group": dims["cluster"],
            "class": alert.slo,
            "custom_details": details,
        },
        "client": "slo-stream",
    }
    if links:
        body["links"] = links
    return severity, _fit(body)


def change_event(rollout: RolloutRecord, routing: Routing) -> dict[str, Any] | None:
    """The Change Events body for one `k8s.rollouts` record; None for phases we do not announce
    (:attr:`Phase.announced`) or without a routing key for changes."""
    if not rollout.phase.announced:
        return None
    key = routing.key_for("change")
    if not key:
        return None
    w = rollout.workload
    prev, rev = rollout.previous_revision, rollout.revision
    revs = f" revision {prev} -> {rev}" if prev is not None else f" revision {rev}"
    mig = ""
    m = rollout.migration
    if m is not None and m.target:
        mig = f", migration {m.source or '?'} -> {m.target}"
        if m.traffic_percent is not None:
            mig += f" at {m.traffic_percent}%"
    text = f"Rollout {str(rollout.phase).replace('_', ' ')}: {w.namespace}/{w.name} in {w.cluster}{revs}{mig}"
    return _fit({
        "routing_key": key,
        "payload": {
            "summary": text[:MAX_SUMMARY],
            "source": f"slo-stream/{w.cluster}",
            "timestamp": _iso(rollout.ts),
            "custom_details": {k: v for k, v in rollout.to_json().items() if k != "schema_version"},
        },
    })


def _fit(body: dict[str, Any]) -> dict[str, Any]:
    """Keep an event under PagerDuty's 512 KB: drop custom details down to a note if needed."""
    if len(json.dumps(body, default=str).encode()) <= MAX_EVENT_BYTES:
        return body
    body["payload"]["custom_details"] = {"note": "details dropped: the event exceeded 512 KB"}
    body.pop("links", None)
    return body


def send_outcome(status: int | None) -> SendOutcome:
    """None: no HTTP answer (timeout, connection refused). 2xx accepted; 400, 413 and 422 are the
    event's fault and never retried; anything else (429, 5xx, 401/403/404 of a misconfiguration
    being fixed) is retried, so a page waits instead of being lost."""
    if status is None:
        return SendOutcome.RETRY
    if 200 <= status < 300:
        return SendOutcome.ACCEPTED
    if status in (400, 413, 422):
        return SendOutcome.REJECTED
    return SendOutcome.RETRY
