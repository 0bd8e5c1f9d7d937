"""What the notifier sends to PagerDuty, decided purely: Events API v2 bodies from `slo.alerts`
records, Change Events from `k8s.rollouts` records, how to treat each HTTP answer, how long to wait.

Contract (../shared/DESIGN.md, "Contracts we must honour"): ``routing_key``, ``event_action``
(trigger | resolve), ``dedup_key`` (<= 255 chars), ``payload.summary`` (<= 1024), ``payload.source``,
``payload.severity`` (critical | error | warning | info), ``timestamp``, ``component``, ``group``,
``class``, ``custom_details``, ``links``. 202 accepted; 400 invalid, never retried; 429 and 5xx
retried with backoff; 512 KB per event.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

PD_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024
MAX_EVENT_BYTES = 512 * 1024
# Rollout phases that become Change Events; "progressing" would be one per replica step.
CHANGE_PHASES = frozenset({"started", "completed", "failed", "paused", "rolled_back"})


class NotifyError(ValueError):
    """A record that cannot become a PagerDuty event (dead-lettered with this reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Verdict(Enum):
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

    @staticmethod
    def _key(alert: Mapping[str, Any]) -> tuple[str, float, str] | None:
        dk, ts, state = alert.get("dedup_key"), alert.get("ts"), alert.get("state")
        if not isinstance(dk, str) or not isinstance(state, str):
            return None
        if not isinstance(ts, int | float) or isinstance(ts, bool) or ts != ts:
            return None
        return dk, float(ts), state

    def is_repeat(self, alert: Mapping[str, Any]) -> bool:
        """True when a change at the same or a later event time was already delivered for this
        dedup key (and, at the same time, in the same state). Records without a usable dedup key,
        ``ts`` or ``state`` are never repeats: they go on to be delivered or dead-lettered."""
        k = self._key(alert)
        if k is None:
            return False
        last = self._last.get(k[0])
        if last is None:
            return False
        return k[1] < last[0] or (k[1] == last[0] and k[2] == last[1])

    def note(self, alert: Mapping[str, Any]) -> None:
        """Remember a delivered (or, read back at start-up, already handled) alert change."""
        k = self._key(alert)
        if k is None:
            return
        last = self._last.pop(k[0], None)
        self._last[k[0]] = (k[1], k[2]) if last is None or k[1] >= last[0] else last
        while len(self._last) > self.max_keys:
            del self._last[next(iter(self._last))]

    def __len__(self) -> int:
        return len(self._last)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _require(rec: Mapping[str, Any], name: str, kind: Any) -> Any:
    v = rec.get(name)
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        raise NotifyError("bad_alert", f"field {name!r} missing or not {getattr(kind, '__name__', kind)}")
    return v


def top_suspect(alert: Mapping[str, Any]) -> str | None:
    suspects = alert.get("suspects") or []
    if not suspects or not isinstance(suspects[0], Mapping):
        return None
    s = suspects[0]
    what = s.get("summary") or s.get("kind") or "suspect"
    score = s.get("score")
    return f"{what} (score {score:.2f})" if isinstance(score, int | float) else str(what)


def summary(alert: Mapping[str, Any]) -> str:
    """One line a person reads at 3 a.m.: what, where, how fast, how much budget, the top suspect."""
    dims = alert.get("dimensions") or {}
    where = "/".join(str(dims.get(d, "*")) for d in ("cluster", "region", "platform"))
    rates = alert.get("burn_rates") or {}
    cond = str(alert.get("condition", ""))
    long_w = cond.split("+", 1)[0] if "+" in cond else None
    burn = rates.get(long_w) if long_w else None
    burn_txt = f" burning {burn:.1f}x over {long_w}" if isinstance(burn, int | float) else ""
    budget = alert.get("error_budget_remaining")
    budget_txt = f", budget left {_pct(budget)}" if isinstance(budget, int | float) else ""
    state = str(alert.get("state", "")).upper()
    suspect = top_suspect(alert)
    suspect_txt = f"; top suspect: {suspect}" if suspect else "; no suspect"
    line = (f"[{str(alert.get('severity', '')).upper()} {state}] {alert.get('slo')} in {where}"
            f"{burn_txt} ({cond}){budget_txt}{suspect_txt}")
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 1] + "…"


def alert_event(alert: Mapping[str, Any], routing: Routing) -> tuple[str, dict[str, Any]]:
    """The Events API v2 body for one `slo.alerts` record, and the routing kind it used."""
    dedup = _require(alert, "dedup_key", str)
    if not dedup or len(dedup) > MAX_DEDUP_KEY:
        raise NotifyError("bad_alert", f"dedup_key must be 1..{MAX_DEDUP_KEY} characters")
    severity = _require(alert, "severity", str)
    state = _require(alert, "state", str)
    if state not in ("firing", "resolved"):
        raise NotifyError("bad_alert", f"state {state!r} is neither firing nor resolved")
    pd_severity = routing.severity.get(severity)
    if pd_severity not in PD_SEVERITIES:
        raise NotifyError("bad_alert", f"severity {severity!r} has no PagerDuty severity")
    slo_name = alert.get("slo") if isinstance(alert.get("slo"), str) else None
    key = routing.key_for(severity, slo_name)
    if not key:
        raise NotifyError("no_routing_key", f"no routing key configured for severity {severity!r}")
    if state == "resolved":
        return severity, {"routing_key": key, "event_action": "resolve", "dedup_key": dedup}
    slo = _require(alert, "slo", str)
    ts = _require(alert, "ts", int | float)
    dims = alert.get("dimensions") or {}
    details = {
        "slo": slo,
        "service": alert.get("service"),
        "dimensions": dims,
        "condition": alert.get("condition"),
        "threshold": alert.get("threshold"),
        "burn_rates": alert.get("burn_rates"),
        "error_budget_remaining": alert.get("error_budget_remaining"),
        "objective": alert.get("objective"),
        "started_at": _iso(alert["started_at"]) if isinstance(alert.get("started_at"), int | float) else None,
        "suspects": alert.get("suspects") or [],
    }
    links = [{"href": href, "text": name.capitalize()}
             for name, href in sorted((alert.get("links") or {}).items()) if isinstance(href, str) and href]
    body: dict[str, Any] = {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": summary(alert),
            "source": f"slo-stream/{dims.get('cluster', '*')}",
            "severity": pd_severity,
            "timestamp": _iso(ts),
            "component": alert.get("service") or slo,
            "group": str(dims.get("cluster", "*")),
            "class": slo,
            "custom_details": details,
        },
        "client": "slo-stream",
    }
    if links:
        body["links"] = links
    return severity, _fit(body)


def change_event(rollout: Mapping[str, Any], routing: Routing) -> dict[str, Any] | None:
    """The Change Events body for one `k8s.rollouts` record; None for phases we do not announce."""
    phase = rollout.get("phase")
    if phase not in CHANGE_PHASES:
        return None
    key = routing.key_for("change")
    if not key:
        return None
    for name in ("cluster", "namespace", "deployment"):
        if not isinstance(rollout.get(name), str) or not rollout[name]:
            raise NotifyError("bad_rollout", f"field {name!r} missing or not a string")
    ts = rollout.get("ts")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise NotifyError("bad_rollout", "field 'ts' missing or not a number")
    what = f"{rollout['namespace']}/{rollout['deployment']}"
    rev = rollout.get("revision")
    prev = rollout.get("previous_revision")
    revs = f" revision {prev} -> {rev}" if prev is not None and rev is not None else (
        f" revision {rev}" if rev is not None else "")
    migration = rollout.get("migration")
    mig = ""
    if isinstance(migration, Mapping) and migration.get("to"):
        mig = f", migration {migration.get('from', '?')} -> {migration['to']}"
        if migration.get("traffic_percent") is not None:
            mig += f" at {migration['traffic_percent']}%"
    text = f"Rollout {str(phase).replace('_', ' ')}: {what} in {rollout['cluster']}{revs}{mig}"
    return _fit({
        "routing_key": key,
        "payload": {
            "summary": text[:MAX_SUMMARY],
            "source": f"slo-stream/{rollout['cluster']}",
            "timestamp": _iso(ts),
            "custom_details": {k: v for k, v in rollout.items() if k != "schema_version"},
        },
    })


def _fit(body: dict[str, Any]) -> dict[str, Any]:
    """Keep an event under PagerDuty's 512 KB: drop custom details down to a note if needed."""
    if len(json.dumps(body, default=str).encode()) <= MAX_EVENT_BYTES:
        return body
    body["payload"]["custom_details"] = {"note": "details dropped: the event exceeded 512 KB"}
    body.pop("links", None)
    return body


def verdict(status: int | None) -> Verdict:
    """None: no HTTP answer (timeout, connection refused). 2xx accepted; 400, 413 and 422 are the
    event's fault and never retried; anything else (429, 5xx, 401/403/404 of a misconfiguration
    being fixed) is retried, so a page waits instead of being lost."""
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.ACCEPTED
    if status in (400, 413, 422):
        return Verdict.REJECTED
    return Verdict.RETRY


def backoff_s(attempt: int, *, base_s: float = 0.5, cap_s: float = 30.0, jitter: float = 0.0,
              retry_after_s: float | None = None) -> float:
    """Wait before retry ``attempt`` (1-based): exponential from ``base_s`` up to ``cap_s``, times
    (1 + jitter) with ``jitter`` in [0, 1) supplied by the caller; a server's Retry-After wins when
    longer."""
    wait = min(cap_s, base_s * 2.0 ** max(0, attempt - 1)) * (1.0 + jitter)
    if retry_after_s is not None and retry_after_s > wait:
        wait = min(retry_after_s, 300.0)
    return wait
