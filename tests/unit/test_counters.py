"""Bucketed window sums against a brute-force reference, and replays that must not double-count."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.counters import L0_SPAN, L1_SPAN, Counters
from streams.core.model import DAY, HOUR, MINUTE

WINDOWS = [5 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 6 * HOUR, DAY, 3 * DAY, 30 * DAY]
T0 = 1_700_000_000 // 3600 * 3600


def bucket_width(window: int) -> int:
    return 10 if window <= L0_SPAN else 300 if window <= L1_SPAN else 3600


def brute(events: list[tuple[int, int, int]], start: float, end: float) -> tuple[int, int]:
    bad = sum(b for ts, b, _ in events if start <= ts < end)
    total = sum(t for ts, _, t in events if start <= ts < end)
    return bad, total


events_strategy = st.lists(
    st.tuples(st.integers(0, 35 * DAY), st.integers(0, 5), st.integers(5, 10)), min_size=1, max_size=300
)


@settings(max_examples=150, deadline=None)
@given(events=events_strategy, at_offset=st.integers(0, 36 * DAY), window=st.sampled_from(WINDOWS),
       batch=st.integers(1, 50))
def test_window_sums_equal_brute_force_within_one_bucket_of_the_window_edge(
    events: list[tuple[int, int, int]], at_offset: int, window: int, batch: int
) -> None:
    events = sorted((T0 + ts, min(b, t), t) for ts, b, t in events)
    at = (T0 + at_offset) // 10 * 10
    store: dict[str, bytes] = {}
    counters = Counters(store, max_window_s=30 * DAY)
    for i, (ts, bad, total) in enumerate(events):
        counters.add("s|a|b|c", 0, ts // 10, bad, total)
        if i % batch == 0:
            counters.flush(0, i)
    # Half the time read straight from the store, half with a pending overlay.
    if batch % 2:
        counters.flush(0, len(events))
    got = counters.window("s|a|b|c", at, window)
    exact = brute(events, at - window, at)
    widest = brute(events, at - window - bucket_width(window), at)
    assert exact[0] <= got[0] <= widest[0]
    assert exact[1] <= got[1] <= widest[1]
    if window <= L0_SPAN:
        assert got == exact  # level 0 is exact at 10 s evaluation boundaries


def test_nothing_at_or_after_the_evaluation_time_is_counted() -> None:
    counters = Counters({}, max_window_s=30 * DAY)
    at = T0 + 5 * HOUR
    counters.add("s|a|b|c", 0, (at - 5) // 10, 1, 1)
    counters.add("s|a|b|c", 0, at // 10, 7, 7)  # at t: belongs to the next evaluation
    counters.flush(0, 1)
    for w in WINDOWS:
        assert counters.window("s|a|b|c", at, w) == (1, 1)


def test_a_replayed_batch_after_a_crash_is_not_counted_twice() -> None:
    rng = random.Random(3)
    store: dict[str, bytes] = {}
    events = [(T0 + i * 7, rng.randint(0, 2), 3, i) for i in range(2000)]
    first = Counters(store, max_window_s=30 * DAY)
    for ts, bad, total, _ in events[:1200]:
        first.add("s|a|b|c", 0, ts // 10, bad, total)
    first.flush(0, 1199)
    # The worker dies; a new one recovers from the store and replays from an older committed offset.
    second = Counters(store, max_window_s=30 * DAY)
    second.recover({0})
    assert second.applied_offset[0] == 1199
    for ts, bad, total, off in events[800:]:
        if off <= second.applied_offset[0]:
            second.add_replayed("s|a|b|c", 0, ts // 10, bad, total, off)
        else:
            second.add("s|a|b|c", 0, ts // 10, bad, total)
    second.flush(0, 1999)
    at = (events[-1][0] // 10 + 1) * 10
    plain = [(e[0], e[1], e[2]) for e in events]
    for w in WINDOWS:
        got = second.window("s|a|b|c", at, w)
        exact, widest = brute(plain, at - w, at), brute(plain, at - w - bucket_width(w), at)
        assert exact[0] <= got[0] <= widest[0]
        assert exact[1] <= got[1] <= widest[1]


def test_memory_is_bounded_by_series_and_buckets_not_events() -> None:
    store: dict[str, bytes] = {}
    counters = Counters(store, max_window_s=30 * DAY)
    sizes = []
    for day in range(40):
        for i in range(0, DAY, 60):
            counters.add("s|a|b|c", 0, (T0 + day * DAY + i) // 10, 0, 1)
        counters.flush(0, day)
        counters.expire(0, T0 + (day + 1) * DAY)
        sizes.append(sum(len(v) for v in store.values()))
    # After the 30-day window fills, the state stops growing: it only moves by a chunk or two as
    # chunk boundaries pass (a chunk of 60 buckets is 8 * (2 + 120) = 976 bytes).
    assert max(sizes[32:]) - min(sizes[32:]) <= 2 * 976
    assert max(sizes) < 200_000
