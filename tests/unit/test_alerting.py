import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.alerting import AlertState, Track, step


def run(conditions: list[bool], hold_s: int = 30, step_s: int = 10) -> list[tuple[int, AlertState]]:
    track, out = Track(), []
    for i, cond in enumerate(conditions):
        track, change = step(track, condition=cond, at=i * step_s, hold_s=hold_s)
        if change:
            out.append((i * step_s, change))
    return out


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param([False, True, True], [(10, AlertState.FIRING)], id="fires on the first true evaluation"),
        pytest.param([True, False, False, False, False], [(0, AlertState.FIRING), (40, AlertState.RESOLVED)],
                     id="resolves once false for the whole 30s hold"),
        pytest.param([True, False, False, True, False, False, False, False],
                     [(0, AlertState.FIRING), (70, AlertState.RESOLVED)],
                     id="a true evaluation inside the hold restarts it"),
        pytest.param([True, True, True], [(0, AlertState.FIRING)], id="a firing alert fires once"),
        pytest.param([False, False], [], id="quiet stays quiet"),
    ],
)
def test_alert_lifecycle(conditions: list[bool], expected: list[tuple[int, AlertState]]) -> None:
    assert run(conditions) == expected


@given(st.lists(st.booleans(), max_size=60), st.sampled_from([0, 10, 60]))
def test_transitions_alternate_and_resolve_follows_a_firing(conditions: list[bool], hold_s: int) -> None:
    changes = [state for _, state in run(conditions, hold_s=hold_s)]
    for a, b in itertools.pairwise(changes):
        assert a != b
    if changes:
        assert changes[0] is AlertState.FIRING


def test_track_survives_a_round_trip_through_json() -> None:
    t = Track(firing=True, fired_at=100, false_since=130)
    assert Track.from_json(t.to_json()) == t
