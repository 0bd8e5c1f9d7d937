"""The demo end to end: the README's main command, its story and its summary asserted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.core.wire.suspect import RevisionErrorRatio, RolloutSuspect, WarningCount
from streams.demo.story import _alive, play_demo

pytestmark = pytest.mark.integration

PAGE = "slo-stream/playback-api-availability/page/cluster=eu-west-1/region=eu-west/platform=kubernetes"


def test_the_demo_catches_the_bad_step_blames_its_rollout_and_stops_everything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As on a fresh machine: its own embedded broker and PagerDuty receiver.
    for name in [n for n in os.environ if n.startswith(("KAFKA_", "SLO_STREAM_"))]:
        monkeypatch.delenv(name)
    chart = tmp_path / "demo.png"
    r = play_demo(specs=None, timeout_s=170, chart=str(chart))
    assert r.exit_code == 0
    fired = {(a.dedup_key, str(a.state)) for a in r.alerts}
    # The bad step is caught: one page, resolved after the rollback.
    assert (PAGE, "firing") in fired and (PAGE, "resolved") in fired
    pages = [a for a in r.alerts if a.severity == "page"]
    assert {a.dedup_key for a in pages} == {PAGE}, "no other page"
    # The right rollout is blamed: the step's new revision in eu-west-1, with its errors as evidence.
    page = next(a for a in pages if a.firing)
    top = page.suspects[0]
    assert isinstance(top, RolloutSuspect)
    assert (top.workload.name, top.cluster, top.revision) == ("playback-api", "eu-west-1", "43")
    assert top.images == ("registry.example.com/streaming/playback-api:1.8.0",)
    assert any(isinstance(e, RevisionErrorRatio) and e.new.revision == "43" for e in top.evidence)
    assert any(isinstance(e, WarningCount) for e in top.evidence), "the crash loop is evidence"
    # The gate said proceed before the bad step and rollback after it; held after the rollback.
    bad = "migration step: playback-api in eu-west to 75% on kubernetes with 1.8.0"
    gate = {(g.checkpoint, g.when): g.decision for g in r.gate}
    assert gate[(bad, "before")] == "proceed"
    assert gate[(bad, "after")] == "rollback"
    assert gate[("rollback: playback-api in eu-west-1", "after")] == "hold"
    assert all(d == "proceed" for (what, when), d in gate.items() if "stream-router" in what and when == "after")
    # The regional blip raises tickets (kubernetes and legacy alike) and blames nothing.
    blip = [a for a in r.alerts if a.slo == "license-service-availability" and a.firing]
    assert {a.dimensions.cluster for a in blip} == {"us-east-1", "dc-iad"}
    assert all(a.severity == "ticket" and a.suspects == () for a in blip)
    # The notifier sent the page and its resolve, and the rollouts as change events.
    sent = [(e.get("event_action"), e.get("dedup_key")) for e in r.sent]
    assert ("trigger", PAGE) in sent and ("resolve", PAGE) in sent
    assert sum(1 for e in r.sent if "event_action" not in e) >= 8
    # A PNG chart, and nothing left running.
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.processes and not [pid for pid in r.processes if _alive(pid)]
