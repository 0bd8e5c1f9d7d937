"""What reaches the correlation state from k8s.rollouts / k8s.events: bad shapes are dead letters,
never a stopped agent, a crash loop or a state wiped by one clock far ahead."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.core import conventions as c
from streams.core.changes import KEEP, ServiceChanges, classify
from streams.core.correlation import BurnContext, correlate
from streams.core.wire.alert import decode_alert
from streams.core.wire.change import decode_change, encode_change
from streams.core.wire.k8s_event import KubeEvent
from tests.factories import alert
from tests.unit.test_correlation import ONSET, rollout, warning

NOW = ONSET + 3600.0
SERVICES = frozenset({"playback-api"})


def event(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "schema_version": 1, "cluster": "eu-west-1", "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "p.1", "namespace": "playback", "uid": "u-1"},
        "involvedObject": {"kind": "Pod", "name": "playback-api-7d9f8c6b5-x2x9q", "namespace": "playback"},
        "reason": "BackOff", "message": "Back-off", "type": "Warning", "count": 3,
        "firstTimestamp": "2023-11-14T22:00:00Z", "lastTimestamp": "2023-11-14T22:10:00Z",
    }
    body.update(changes)
    return orjson.dumps(body)


def judge(value: bytes, *, rollouts: bool = False) -> str:
    return classify(value, rollouts=rollouts, services=SERVICES, now=NOW, max_future_s=300).outcome


@pytest.mark.parametrize(("value", "rollouts", "outcome"), [
    (event(), False, "keep"),
    (event(type=["Warning"]), False, c.REASON_BAD_FIELD),
    (event(type={"a": 1}), False, c.REASON_BAD_FIELD),
    (orjson.dumps({**rollout(ONSET).to_json(), "phase": {"x": 1}}), True, c.REASON_BAD_FIELD),
    (rollout(NOW + 86400 * 365).encode(), True, c.REASON_FUTURE),
    (event(lastTimestamp="9999-12-31T00:00:00Z"), False, c.REASON_FUTURE),
    (orjson.dumps([1, 2]), False, c.REASON_BAD_JSON),
    (b"\xff\xfe", False, c.REASON_BAD_JSON),
], ids=["a Warning event is kept", "a list as the type is a dead letter", "an object as the type too",
        "an object as the phase too", "a rollout a year ahead is a dead letter", "an event in year 9999 too",
        "a JSON list is not a record", "invalid UTF-8 is not JSON"])
def test_k8s_records_are_kept_or_dead_lettered_never_raised(value: bytes, rollouts: bool, outcome: str) -> None:
    assert judge(value, rollouts=rollouts) == outcome


def test_a_huge_event_count_is_clamped_so_an_alert_carrying_it_still_encodes() -> None:
    got = classify(event(count=2**64 - 1), rollouts=False, services=SERVICES, now=NOW, max_future_s=300)
    assert got.outcome == KEEP and got.change is not None and isinstance(got.change.what, KubeEvent)
    assert got.change.what.count == 2**31 - 1
    assert decode_change(encode_change(got.change)) == got.change, "the forwarded record encodes and reads back"
    sc = ServiceChanges()
    sc.apply_rollout(rollout(ONSET - 300))
    for i in range(3):
        sc.apply_warning(warning(ONSET + i, name=f"playback-api-7d9f8c6b5-{i}", count=2**63))
    ctx = BurnContext(service="playback-api", cluster="eu-west-1", platform="kubernetes", onset_ts=ONSET,
                      at=ONSET + 60)
    suspects = correlate(ctx, sc, lambda cluster, start, end: {})
    page = alert(suspects=tuple(suspects))
    assert orjson.loads(page.encode())["suspects"][0]["evidence"]
    assert decode_alert(orjson.loads(page.encode())) == page


def test_an_event_exporter_record_without_a_cluster_takes_the_configured_default() -> None:
    """kubernetes-event-exporter's ``clusterName`` is empty unless configured: dead-lettered without a
    default cluster, kept with one."""
    doc = {"metadata": {"name": "x.1", "uid": "u-1", "namespace": "playback"}, "clusterName": "",
           "involvedObject": {"kind": "Pod", "name": "playback-api-7d9f8c6b5-x2x9q", "namespace": "playback",
                              "labels": {"app.kubernetes.io/name": "playback-api"}},
           "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning", "count": 3,
           "firstTimestamp": "2026-12-07T10:00:00Z", "lastTimestamp": "2026-12-07T10:05:00Z"}
    value = orjson.dumps(doc)
    kw = {"rollouts": False, "services": frozenset({"playback-api"}), "now": 1_796_700_000.0, "max_future_s": 300}
    refused = classify(value, **kw)
    assert refused.outcome == c.REASON_MISSING_FIELD and "cluster" in refused.detail
    kept = classify(value, **kw, default_cluster="eu-west-1")
    assert kept.outcome == KEEP and kept.change is not None and kept.change.what.cluster == "eu-west-1"
