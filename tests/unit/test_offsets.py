"""The offset guard: processing stays contiguous, holes are re-read, and only a hole the re-read
confirms is skipped."""

from __future__ import annotations

from streams.core.offsets import OffsetGuard


def kept(offsets: list[int], keep: list[bool]) -> list[int]:
    return [o for o, k in zip(offsets, keep, strict=True) if k]


def test_contiguous_batches_and_replays_pass() -> None:
    g = OffsetGuard()
    adm = g.admit(0, 10, [8, 9, 10, 11, 12], now=0.0)
    assert adm.refused == 0 and all(adm.keep)
    assert g.due(0.0) == []


def test_a_partition_without_state_starts_wherever_the_consumer_starts() -> None:
    g = OffsetGuard()
    adm = g.admit(0, None, [500, 501, 503], now=0.0)
    # 500 and 501 are taken; 503 after 501 is a hole like any other.
    assert kept([500, 501, 503], adm.keep) == [500, 501]
    assert adm.refused == 1 and [p for p, _ in g.due(0.0)] == [0]


def test_records_beyond_a_hole_are_refused_and_the_partition_is_read_again() -> None:
    g = OffsetGuard(retry_after_s=5.0)
    adm = g.admit(1, 1436, [1439, 1440, 1441], now=100.0)
    assert adm.keep == [False, False, False] and adm.refused == 3
    [(p, hole)] = g.due(100.0)
    assert (p, hole.expected, hole.first) == (1, 1436, 1439)
    g.sought(1, now=100.0)
    assert g.due(101.0) == []  # one re-read at a time
    # Stale records queued before the seek are still refused, then the re-read fills the hole.
    adm = g.admit(1, 1436, [1442, 1431, 1435, 1436, 1437, 1438, 1439, 1440], now=101.0)
    assert kept([1442, 1431, 1435, 1436, 1437, 1438, 1439, 1440], adm.keep) == [
        1431, 1435, 1436, 1437, 1438, 1439, 1440]
    assert adm.accepted_hole is None and g.holes == {}


def test_a_reread_that_raced_again_is_retried() -> None:
    g = OffsetGuard(retry_after_s=5.0)
    g.admit(0, 50, [60], now=0.0)
    g.sought(0, now=0.0)
    g.admit(0, 50, [61, 62], now=1.0)  # the re-read lost its head again: no 50, no 60
    assert g.due(4.9) == []
    [(_, hole)] = g.due(5.0)
    assert hole.seeks == 1 and hole.expected == 50


def test_a_hole_is_skipped_only_when_the_log_itself_has_nothing_there() -> None:
    g = OffsetGuard()
    assert g.admit(0, 50, [60, 61], now=0.0).refused == 2
    g.sought(0, now=0.0)
    [(_, hole)] = g.due(10.0)
    assert g.needs_check(hole)
    # Faust delivering the same first record again proves nothing (its fetch race can repeat).
    assert g.admit(0, 50, [60], now=10.1).refused == 1
    # The log has a record at 50: no hole, only a re-read that has not landed; keep re-reading.
    g.checked(0, 50)
    assert not hole.confirmed and g.admit(0, 50, [60], now=10.2).refused == 1
    # A read that returned nothing is no evidence either.
    g.checked(0, None)
    assert not hole.confirmed
    # The log's first record from 50 on is 60: the hole is real; 60 is taken when it comes again.
    g.checked(0, 60)
    assert hole.confirmed and g.needs_check(hole)  # looked at again before every further re-read
    adm = g.admit(0, 50, [61, 60, 61, 62], now=11.0)
    assert adm.keep == [False, True, True, True] and adm.accepted_hole == (50, 60)
    assert g.holes == {}


def test_a_smaller_real_hole_inside_a_dropped_run_is_found() -> None:
    # A transaction marker at 10-11, and the Faust race dropped 12-14 as well: 15 arrived.
    g = OffsetGuard()
    assert g.admit(0, 10, [15], now=0.0).refused == 1
    g.sought(0, now=0.0)
    g.checked(0, 12)  # the log: nothing at 10 and 11, a record at 12
    adm = g.admit(0, 10, [12, 13, 14, 15], now=1.0)
    assert all(adm.keep) and adm.accepted_hole == (10, 12)


def test_second_copies_within_a_batch_are_dropped_not_counted_twice() -> None:
    g = OffsetGuard()
    # Meta offset 2: 1 and 2 are replays of committed state; the second 3 and 4 are copies.
    adm = g.admit(0, 3, [3, 4, 1, 2, 3, 4], now=0.0)
    assert adm.keep == [True, True, True, True, False, False]
    assert adm.duplicates == 2 and adm.refused == 0 and g.holes == {}


def test_retention_that_removed_more_meanwhile_moves_the_hole_end() -> None:
    g = OffsetGuard()
    g.admit(0, 50, [60], now=0.0)
    g.sought(0, now=0.0)
    g.checked(0, 70)
    adm = g.admit(0, 50, [60, 70, 71], now=1.0)
    assert adm.keep == [False, True, True] and adm.accepted_hole == (50, 70)


def test_a_transactional_marker_is_a_one_offset_hole_confirmed_by_the_log() -> None:
    g = OffsetGuard()
    assert g.admit(0, 10, [10, 11, 13], now=0.0).keep == [True, True, False]
    g.sought(0, now=0.0)
    g.checked(0, 13)
    adm = g.admit(0, 12, [13, 14], now=0.5)
    assert adm.accepted_hole == (12, 13) and all(adm.keep)


def test_forgotten_partitions_lose_their_holes() -> None:
    g = OffsetGuard()
    g.admit(0, 5, [9], now=0.0)
    g.admit(1, 5, [9], now=0.0)
    g.forget({0})
    assert [p for p, _ in g.due(0.0)] == [1]
