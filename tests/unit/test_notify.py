"""PagerDuty payloads, send outcomes and backoff, decided purely."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import orjson
import pytest

from streams.core import conventions as c
from streams.core.backoff import backoff_s
from streams.core.errors import RecordError
from streams.core.notify import (
    MAX_EVENT_BYTES,
    Delivered,
    NotifyError,
    Routing,
    SendOutcome,
    alert_event,
    change_event,
    send_outcome,
    summary,
)
from streams.core.wire.alert import Alert, decode_alert
from streams.core.wire.rollout import RolloutRecord, decode_rollout
from streams.core.wire.suspect import OpaqueSuspect

ROUTING = Routing(keys={"page": "kp", "ticket": "kt", "change": "kc"})


def alert_json(**over: Any) -> dict[str, Any]:
    """An ``slo.alerts`` value as ``Alert.to_json()`` writes it."""
    base: dict[str, Any] = {
        "dedup_key": "slo-stream/a/page/x", "slo": "a", "service": "svc", "severity": "page", "state": "firing",
        "ts": 0, "started_at": 0, "dimensions": {"cluster": "c1", "region": "r1", "platform": "legacy"},
        "burn_rates": {"1h": 20.0, "5m": 40.0}, "condition": "1h+5m > 14.4", "threshold": 14.4,
        "error_budget_remaining": 0.5, "objective": 0.999, "links": {}, "suspects": [],
    }
    base.update(over)
    return base


def alert(**over: Any) -> Alert:
    """:func:`alert_json`, read through the ``slo.alerts`` decoder as the notifier reads it."""
    return decode_alert(alert_json(**over))


def rollout(**over: Any) -> RolloutRecord:
    """A ``k8s.rollouts`` value, read through its decoder."""
    r: dict[str, Any] = {"ts": 60, "cluster": "c1", "namespace": "ns", "deployment": "d", "revision": 3,
                         "phase": "progressing"}
    r.update(over)
    return decode_rollout(r)


def test_trigger_and_resolve_bodies() -> None:
    assert decode_alert(orjson.loads(alert().encode())) == alert()
    kind, body = alert_event(alert(), ROUTING)
    assert kind == "page" and body["event_action"] == "trigger" and body["routing_key"] == "kp"
    assert body["payload"]["timestamp"] == "1970-01-01T00:00:00Z"
    assert "links" not in body  # no empty list
    kind, body = alert_event(alert(state="resolved", severity="ticket"), ROUTING)
    assert body == {"routing_key": "kt", "event_action": "resolve", "dedup_key": "slo-stream/a/page/x"}


def test_summary_reads_in_one_line_and_says_when_nothing_is_suspected() -> None:
    assert summary(alert()) == ("[PAGE FIRING] a in c1/r1/legacy burning 20.0x over 1h (1h+5m > 14.4), "
                                "budget left 50.0%; no suspect")
    long = summary(replace(alert(), slo="x" * 2000))  # longer than any SLO name the decoder lets through
    assert len(long) == 1024 and long.endswith("…") and "\n" not in long


@pytest.mark.parametrize(("over", "reason", "field"), [
    ({"dedup_key": ""}, c.REASON_MISSING_FIELD, "dedup_key"),
    ({"dedup_key": "k" * 256}, c.REASON_BAD_FIELD, "dedup_key"),
    ({"state": "acknowledged"}, c.REASON_BAD_FIELD, "state"),
    ({"severity": "sev1"}, c.REASON_BAD_FIELD, "severity"),
    ({"ts": "yesterday"}, c.REASON_BAD_FIELD, "ts"),
    ({"ts": True}, c.REASON_BAD_FIELD, "ts"),
])
def test_malformed_alerts_are_refused_with_a_reason(over: dict[str, Any], reason: str, field: str) -> None:
    """Refused by the ``slo.alerts`` decoder now (the notifier dead-letters its RecordError), naming
    the field; ``alert_event`` only ever sees a typed Alert."""
    with pytest.raises(RecordError) as exc:
        decode_alert(alert_json(**over))
    assert exc.value.reason == reason
    assert exc.value.detail.startswith(field)


@pytest.mark.parametrize("alert_", [replace(alert(), dedup_key=""), replace(alert(), dedup_key="k" * 256)],
                         ids=["an empty dedup key", "a dedup key over 255 characters"])
def test_an_alert_built_in_code_with_a_bad_dedup_key_is_still_refused(alert_: Alert) -> None:
    with pytest.raises(NotifyError) as exc:
        alert_event(alert_, ROUTING)
    assert exc.value.reason == "bad_alert"


def test_no_routing_key_for_a_severity_is_a_reason_not_a_crash() -> None:
    with pytest.raises(NotifyError) as exc:
        alert_event(alert(severity="ticket"), Routing(keys={"page": "kp"}))
    assert exc.value.reason == "no_routing_key"


def test_routing_keys_are_not_in_the_repr() -> None:
    assert "kp" not in repr(ROUTING) and "kc" not in repr(ROUTING)


def test_change_events_for_announced_phases_only() -> None:
    assert change_event(rollout(), ROUTING) is None
    body = change_event(rollout(phase="rolled_back", previous_revision=4,
                                migration={"from": "legacy", "to": "kubernetes", "traffic_percent": 25}), ROUTING)
    assert body is not None
    assert body["payload"]["summary"] == ("Rollout rolled back: ns/d in c1 revision 4 -> 3, "
                                          "migration legacy -> kubernetes at 25%")
    assert body["routing_key"] == "kc" and body["payload"]["timestamp"] == "1970-01-01T00:01:00Z"
    assert body["payload"]["custom_details"]["revision"] == "3"
    assert change_event(rollout(phase="started"), Routing(keys={"page": "kp"})) is None
    # A record without its workload used to be refused by change_event; the decoder refuses it now.
    with pytest.raises(RecordError) as exc:
        decode_rollout({"phase": "started", "ts": 1})
    assert exc.value.reason == c.REASON_MISSING_FIELD and exc.value.detail.startswith("cluster")


def test_huge_details_are_dropped_to_stay_under_512_kb() -> None:
    huge = alert(suspects=[{"summary": "x" * 1000}] * 1000)
    assert all(isinstance(s, OpaqueSuspect) for s in huge.suspects), "passed on as they came"
    _, body = alert_event(huge, ROUTING)
    assert body["payload"]["custom_details"] == {"note": "details dropped: the event exceeded 512 KB"}
    assert len(str(body)) < MAX_EVENT_BYTES


@pytest.mark.parametrize(("status", "v"), [
    (202, SendOutcome.ACCEPTED), (200, SendOutcome.ACCEPTED), (400, SendOutcome.REJECTED),
    (413, SendOutcome.REJECTED), (429, SendOutcome.RETRY), (500, SendOutcome.RETRY), (503, SendOutcome.RETRY),
    (403, SendOutcome.RETRY), (None, SendOutcome.RETRY),
])
def test_send_outcomes(status: int | None, v: SendOutcome) -> None:
    assert send_outcome(status) is v


def test_backoff_grows_caps_and_honours_retry_after() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_s(20) == 30.0
    assert backoff_s(1, jitter=0.5) == 0.75
    assert backoff_s(1, retry_after_s=10) == 10.0
    assert backoff_s(1, retry_after_s=10_000) == 300.0


def test_a_replayed_incident_is_recognised_and_a_new_one_is_not() -> None:
    d = Delivered()
    dk = "slo-stream/a/page/x"
    fire, resolve = alert(dedup_key=dk, ts=600), alert(dedup_key=dk, state="resolved", ts=3000)
    assert not d.is_repeat(fire)
    d.note(fire)
    assert d.is_repeat(fire)  # the same change again (a replay of the batch in flight)
    assert not d.is_repeat(resolve)
    d.note(resolve)
    # A batch that fired and resolved replayed after both went out: the trigger would open a second
    # incident at PagerDuty; both are repeats.
    assert d.is_repeat(fire) and d.is_repeat(resolve)
    # The next incident of the same dedup key, and other keys, go out.
    assert not d.is_repeat(alert(dedup_key=dk, ts=3060))
    assert not d.is_repeat(alert(dedup_key="slo-stream/a/ticket/x", ts=600))
    # A later firing change at a later step (not a repeat) is delivered too.
    d.note(alert(dedup_key=dk, ts=3060))
    assert not d.is_repeat(alert(dedup_key=dk, ts=3120))
    # Noting an older change (read back out of order) never moves the last one back.
    d.note(fire)
    assert d.is_repeat(alert(dedup_key=dk, ts=3060))


@pytest.mark.parametrize(("over", "field"), [({"ts": None}, "ts"), ({"ts": "600"}, "ts"), ({"ts": True}, "ts"),
                                             ({"ts": math.nan}, "ts"), ({"dedup_key": 7}, "dedup_key"),
                                             ({"state": None}, "state")])
def test_records_without_a_usable_key_time_or_state_are_never_repeats(over: dict[str, Any], field: str) -> None:
    """Such records used to reach ``Delivered`` (and were never repeats there); the decoder refuses
    them now, naming the field, so they are dead-lettered before any repeat check."""
    with pytest.raises(RecordError) as exc:
        decode_alert(alert_json(**over))
    assert exc.value.detail.startswith(field)


def test_the_memory_is_bounded_and_forgets_the_longest_unchanged_key() -> None:
    d = Delivered(max_keys=3)
    for i in range(4):
        d.note(alert(dedup_key=f"k{i}", ts=100))
    d.note(alert(dedup_key="k1", ts=200))
    d.note(alert(dedup_key="k4", ts=100))
    assert len(d) == 3
    assert not d.is_repeat(alert(dedup_key="k0", ts=100)) and not d.is_repeat(alert(dedup_key="k2", ts=100))
    assert d.is_repeat(alert(dedup_key="k1", ts=200)) and d.is_repeat(alert(dedup_key="k3", ts=100))
