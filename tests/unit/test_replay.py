"""Scenario files: validated with file, line and field; the same seed gives the same records."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streams.core.errors import SpecError
from streams.core.wire.k8s_event import decode_event
from streams.core.wire.playback import RecordParser
from streams.core.wire.rollout import decode_rollout
from streams.demo.scenario import EVENTS, PLAYBACK, ROLLOUTS, Checkpoint, Produce, parse_scenario, timeline

STORY = Path(__file__).resolve().parents[2] / "streams" / "demo" / "scenarios" / "migration.yaml"
START = 1_790_000_000 // 60 * 60


def story() -> str:
    return STORY.read_text()


def test_the_same_seed_and_start_give_the_same_bytes_and_another_seed_does_not() -> None:
    sc = parse_scenario(str(STORY), story())
    one = [(x.topic, x.key, x.value) for x in timeline(sc, START) if isinstance(x, Produce)]
    two = [(x.topic, x.key, x.value) for x in timeline(sc, START) if isinstance(x, Produce)]
    assert one == two and len(one) > 7000
    other = parse_scenario(str(STORY), story().replace("seed: 7", "seed: 8"))
    assert [x.value for x in timeline(other, START) if isinstance(x, Produce)] != [v for _, _, v in one]


def test_every_record_honours_its_topic_contract_and_time_only_moves_forward() -> None:
    sc = parse_scenario(str(STORY), story())
    parser = RecordParser()
    items = list(timeline(sc, START))
    last = 0.0
    for i, x in enumerate(items):
        assert x.ts >= last - 1e-6, f"item {i} goes back in time"
        last = x.ts
        if isinstance(x, Checkpoint):
            continue
        if x.topic == PLAYBACK:
            good: list = []
            bad: list = []
            parser.parse(x.key, x.value, i, good, bad)
            assert good and not bad, bad
        elif x.topic == ROLLOUTS:
            r = decode_rollout(orjson.loads(x.value))
            assert x.key.decode() == f"{r.workload.cluster}/{r.workload.namespace}/{r.workload.name}" == r.key
        else:
            assert x.topic == EVENTS
            ev = decode_event(orjson.loads(x.value), default_cluster=None)
            assert ev.type == "Warning" and ev.reason == "BackOff"
    cps = [x for x in items if isinstance(x, Checkpoint)]
    assert [(c.when, c.describe()) for c in cps[:2]] == [
        ("before", "migration step: stream-router in us-east to 25% on kubernetes"),
        ("after", "migration step: stream-router in us-east to 25% on kubernetes")]
    # Before a region's first step nothing runs on kubernetes there: the gate is asked about the service.
    assert (cps[0].cluster, cps[0].migration) == (None, False)
    assert (cps[1].cluster, cps[1].migration) == ("us-east-1", True)


def test_the_bad_step_serves_errors_on_its_new_revision_only_until_the_rollback() -> None:
    sc = parse_scenario(str(STORY), story())
    errors: dict[str, list[int]] = {}
    for x in timeline(sc, START):
        if isinstance(x, Produce) and x.topic == PLAYBACK and x.key == b"playback-api":
            for r in orjson.loads(x.value)["records"]:
                if r["cluster"] == "eu-west-1" and "revision" in r:
                    e = errors.setdefault(r["revision"], [0, 0])
                    e[0] += r["errors"]
                    e[1] += r["total"]
    assert errors["43"][0] / errors["43"][1] == pytest.approx(0.4, abs=0.02)
    assert all(errors[rev][0] / errors[rev][1] < 0.001 for rev in ("41", "42", "44"))


SCOPE = ": Scenario/migration-story: spec."


@pytest.mark.parametrize(("change", "where"), [
    (("toPercent: 25}", "toPercent: 250}"), f":46{SCOPE}events[0].migrationStep.toPercent: must be a percentage"),
    (("service: stream-router, region: us-east, toPercent: 25", "service: radio, region: us-east, toPercent: 25"),
     f":46{SCOPE}events[0].migrationStep.service: unknown service 'radio'"),
    (("errorRatio: 0.4", "errorRatio: 4"), f":60{SCOPE}events[4].migrationStep.bad.errorRatio: must be a ratio"),
    (("  seed: 7", "  seed: 7\n  sede: 8"), f":11{SCOPE}sede: unknown field 'sede'"),
    (("- at: 3h40m", "- at: 1h10m"), "spec.events: events must be listed in event-time order"),
    (("- at: 4h20m", "- at: 9h"), "spec.events[6].at: is after the end of the scenario (7h)"),
    (("{cluster: dc-iad, region: us-east, platform: legacy}", "{cluster: dc-iad, region: us-east, platform: x}"),
     "spec.placements[3].platform: must be one of kubernetes, legacy, not 'x'"),
], ids=["a percentage over 100", "an unknown service", "an error ratio over 1", "a misspelt field",
        "events out of order", "an event after the end", "an unknown platform"])
def test_bad_scenarios_are_rejected_with_file_line_and_field(change: tuple[str, str], where: str) -> None:
    text = story()
    assert change[0] in text
    with pytest.raises(SpecError) as exc:
        parse_scenario("story.yaml", text.replace(change[0], change[1], 1))
    problems = [str(p) for p in exc.value.problems]
    assert any(where in p for p in problems), problems
    assert all(p.startswith("story.yaml:") for p in problems)
