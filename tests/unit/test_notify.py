"""PagerDuty payloads, verdicts and backoff, decided purely."""

from __future__ import annotations

from typing import Any

import pytest

from streams.core.notify import (
    MAX_EVENT_BYTES,
    Delivered,
    NotifyError,
    Routing,
    Verdict,
    alert_event,
    backoff_s,
    change_event,
    summary,
    verdict,
)

ROUTING = Routing(keys={"page": "kp", "ticket": "kt", "change": "kc"})


def alert(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dedup_key": "slo-stream/a/page/x", "slo": "a", "service": "svc", "severity": "page", "state": "firing",
        "ts": 0, "started_at": 0, "dimensions": {"cluster": "c1", "region": "r1", "platform": "legacy"},
        "burn_rates": {"1h": 20.0, "5m": 40.0}, "condition": "1h+5m > 14.4", "error_budget_remaining": 0.5,
        "links": {}, "suspects": [],
    }
    base.update(over)
    return base


def test_trigger_and_resolve_bodies() -> None:
    kind, body = alert_event(alert(), ROUTING)
    assert kind == "page" and body["event_action"] == "trigger" and body["routing_key"] == "kp"
    assert body["payload"]["timestamp"] == "1970-01-01T00:00:00Z"
    assert "links" not in body  # no empty list
    kind, body = alert_event(alert(state="resolved", severity="ticket"), ROUTING)
    assert body == {"routing_key": "kt", "event_action": "resolve", "dedup_key": "slo-stream/a/page/x"}


def test_summary_reads_in_one_line_and_says_when_nothing_is_suspected() -> None:
    assert summary(alert()) == ("[PAGE FIRING] a in c1/r1/legacy burning 20.0x over 1h (1h+5m > 14.4), "
                                "budget left 50.0%; no suspect")
    long = summary(alert(slo="x" * 2000))
    assert len(long) == 1024 and long.endswith("…") and "\n" not in long


@pytest.mark.parametrize(("over", "reason"), [
    ({"dedup_key": ""}, "bad_alert"),
    ({"dedup_key": "k" * 256}, "bad_alert"),
    ({"state": "acknowledged"}, "bad_alert"),
    ({"severity": "sev1"}, "bad_alert"),
    ({"ts": "yesterday"}, "bad_alert"),
    ({"ts": True}, "bad_alert"),
])
def test_malformed_alerts_are_refused_with_a_reason(over: dict[str, Any], reason: str) -> None:
    with pytest.raises(NotifyError) as exc:
        alert_event(alert(**over), ROUTING)
    assert exc.value.reason == reason


def test_no_routing_key_for_a_severity_is_a_reason_not_a_crash() -> None:
    with pytest.raises(NotifyError) as exc:
        alert_event(alert(severity="ticket"), Routing(keys={"page": "kp"}))
    assert exc.value.reason == "no_routing_key"


def test_routing_keys_are_not_in_the_repr() -> None:
    assert "kp" not in repr(ROUTING) and "kc" not in repr(ROUTING)


def test_change_events_for_announced_phases_only() -> None:
    r = {"ts": 60, "cluster": "c1", "namespace": "ns", "deployment": "d", "revision": 3, "phase": "progressing"}
    assert change_event(r, ROUTING) is None
    body = change_event({**r, "phase": "rolled_back", "previous_revision": 4,
                         "migration": {"from": "legacy", "to": "kubernetes", "traffic_percent": 25}}, ROUTING)
    assert body is not None
    assert body["payload"]["summary"] == ("Rollout rolled back: ns/d in c1 revision 4 -> 3, "
                                          "migration legacy -> kubernetes at 25%")
    assert body["routing_key"] == "kc" and body["payload"]["timestamp"] == "1970-01-01T00:01:00Z"
    assert change_event({**r, "phase": "started"}, Routing(keys={"page": "kp"})) is None
    with pytest.raises(NotifyError):
        change_event({"phase": "started", "ts": 1}, ROUTING)


def test_huge_details_are_dropped_to_stay_under_512_kb() -> None:
    _, body = alert_event(alert(suspects=[{"summary": "x" * 1000}] * 1000), ROUTING)
    assert body["payload"]["custom_details"] == {"note": "details dropped: the event exceeded 512 KB"}
    assert len(str(body)) < MAX_EVENT_BYTES


@pytest.mark.parametrize(("status", "v"), [
    (202, Verdict.ACCEPTED), (200, Verdict.ACCEPTED), (400, Verdict.REJECTED), (413, Verdict.REJECTED),
    (429, Verdict.RETRY), (500, Verdict.RETRY), (503, Verdict.RETRY), (403, Verdict.RETRY), (None, Verdict.RETRY),
])
def test_verdicts(status: int | None, v: Verdict) -> None:
    assert verdict(status) is v


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


@pytest.mark.parametrize("over", [{"ts": None}, {"ts": "600"}, {"ts": True}, {"ts": float("nan")},
                                  {"dedup_key": 7}, {"state": None}])
def test_records_without_a_usable_key_time_or_state_are_never_repeats(over: dict[str, Any]) -> None:
    d = Delivered()
    d.note(alert(ts=600))
    d.note(alert(**over))
    assert not d.is_repeat(alert(**over))


def test_the_memory_is_bounded_and_forgets_the_longest_unchanged_key() -> None:
    d = Delivered(max_keys=3)
    for i in range(4):
        d.note(alert(dedup_key=f"k{i}", ts=100))
    d.note(alert(dedup_key="k1", ts=200))
    d.note(alert(dedup_key="k4", ts=100))
    assert len(d) == 3
    assert not d.is_repeat(alert(dedup_key="k0", ts=100)) and not d.is_repeat(alert(dedup_key="k2", ts=100))
    assert d.is_repeat(alert(dedup_key="k1", ts=200)) and d.is_repeat(alert(dedup_key="k3", ts=100))
