"""Bucketed (bad, total) counters per SLO series, multi-resolution, bounded in memory.

Three levels of buckets, each kept for as long as the windows it serves need it:

====== ========= ================== =====================================================
level  bucket    kept for           serves windows
====== ========= ================== =====================================================
0      10 s      2 h                up to 1 h (5m, 30m, 1h) and the newest part of others
1      5 min     3 d + 2 h          up to 3 d (2h, 6h, 1d, 3d)
2      1 h       SLO window + 2 h   longer (the 30-day budget)
====== ========= ================== =====================================================

State lives in a ``MutableMapping[str, bytes]`` (a Faust table with a changelog in the worker, a
dict in tests): one entry per *chunk* of consecutive buckets, key ``"{series}|{level}|{chunk}"``,
value an int64 array ``[partition, offset, bad_0, total_0, bad_1, total_1, ...]``. A batch of
records is added to a pending overlay first and written with :meth:`Counters.flush`, once per
chunk per batch. ``offset`` is the highest source offset applied to that chunk, so a batch that
is replayed after a crash is skipped record by record where it was already applied: counting is
exactly-once on top of at-least-once delivery, without Kafka transactions.

A window sum at evaluation time ``t`` covers ``[t - W, t)``: exact at level 0; at a coarser
level the oldest bucket may stick out of the window by less than one bucket, and the newest
partial bucket is taken from level 0, so nothing at or after ``t`` is ever counted.
"""

from __future__ import annotations

from array import array
from collections.abc import Generator, Iterator, MutableMapping
from dataclasses import dataclass

from streams.core.model import DAY, HOUR


@dataclass(frozen=True)
class Level:
    index: int
    width_s: int
    chunk_len: int  # buckets per stored chunk
    keep_s: int  # how far back from the evaluation time buckets are kept

    @property
    def chunk_s(self) -> int:
        return self.width_s * self.chunk_len


L0_WIDTH = 10
L0_SPAN = 1 * HOUR  # windows up to this use level 0
L1_SPAN = 3 * DAY  # windows up to this use level 1
MARGIN = 2 * HOUR


def make_levels(max_window_s: int) -> tuple[Level, Level, Level]:
    """The three levels, the coarsest kept long enough for ``max_window_s`` (the longest SLO window)."""
    return (
        Level(0, L0_WIDTH, 60, L0_SPAN + MARGIN),
        Level(1, 300, 60, L1_SPAN + MARGIN),
        Level(2, HOUR, 48, max(max_window_s, L1_SPAN) + MARGIN),
    )


class Counters:
    """Counts per series over a mapping store. Not thread-safe; one instance per worker process."""

    def __init__(self, store: MutableMapping[str, bytes], *, max_window_s: int) -> None:
        self.store = store
        self.levels = make_levels(max_window_s)
        # pending[series][level][bucket] = [bad, total], not yet in the store.
        self._pending: dict[str, tuple[dict[int, list[int]], ...]] = {}
        # Which chunks each series has in the store, and which series each partition owns.
        self._chunks: dict[str, tuple[set[int], set[int], set[int]]] = {}  # chunk ids per level
        self._expired_at: dict[int, int] = {}
        self._series_partition: dict[str, int] = {}
        self._by_partition: dict[int, set[str]] = {}
        # (bad, total) of whole stored chunks, computed on first read, dropped when a chunk changes:
        # long windows read mostly whole chunks, so an evaluation touches few buckets one by one.
        self._chunk_sums: dict[str, tuple[int, int]] = {}
        # Event time of each series' newest 10 s bucket with events (after a recovery from coarser
        # levels only, an upper bound).
        self._last_data: dict[str, int] = {}
        self.applied_offset: dict[int, int] = {}
        # Chunk keys of evicted series, per partition, deleted from the store by the next flush.
        self._doomed: dict[int, list[str]] = {}

    # ---- recovery -------------------------------------------------------------------------

    def recover(self, partitions: set[int]) -> int:
        """(Re)build the in-memory index from the store for the given partitions; return chunk count.

        Call after the store was recovered (from its changelog) and partitions were assigned.
        """
        for p in partitions:
            self.applied_offset.pop(p, None)
            self._doomed.pop(p, None)
        for s in [s for s, p in self._series_partition.items() if p in partitions]:
            self._forget(s)
        self._chunk_sums.clear()
        n = 0
        last_seen: dict[str, dict[int, int]] = {}  # series -> level -> newest bucket's time
        for key, value in list(self.store.items()):
            if key.startswith("~"):  # engine records (meta, alert tracks) share the store
                continue
            head = memoryview(value).cast("q")
            p, off = int(head[0]), int(head[1])
            if p not in partitions:
                continue
            series, level, chunk = _split_key(key)
            self._chunk_ids(series)[level].add(chunk)
            newest = _newest_bucket(head, self.levels[level], chunk)
            seen = last_seen.setdefault(series, {})
            if newest > seen.get(level, 0):
                seen[level] = newest
            self._own(series, p)
            if off > self.applied_offset.get(p, -1):
                self.applied_offset[p] = off
            n += 1
        for series, by_level in last_seen.items():
            # The finest level that still holds the series says it best (a coarser bucket's upper
            # bound can be an hour late).
            self._last_data[series] = by_level[min(by_level)]
        return n

    def release(self, partitions: set[int]) -> None:
        """Forget the index of partitions this worker no longer owns (the store keeps its data)."""
        for p in partitions:
            self.applied_offset.pop(p, None)
            self._doomed.pop(p, None)
        for s in [s for s, p in self._series_partition.items() if p in partitions]:
            self._forget(s)

    def _own(self, series: str, partition: int) -> None:
        if series not in self._series_partition:
            self._series_partition[series] = partition
            self._by_partition.setdefault(partition, set()).add(series)

    def _forget(self, series: str) -> None:
        self._last_data.pop(series, None)
        for lvi, ids in enumerate(self._chunks.pop(series, ())):
            for ch in ids:
                self._chunk_sums.pop(_key(series, lvi, ch), None)
        p = self._series_partition.pop(series, None)
        if p is not None:
            self._by_partition[p].discard(series)
        self._pending.pop(series, None)

    def series(self, partition: int) -> list[str]:
        """The series of ``partition``, sorted (evaluation order is deterministic)."""
        return sorted(self._by_partition.get(partition, ()))

    def all_series(self) -> Iterator[str]:
        return iter(self._series_partition)

    def last_data(self, series: str) -> int:
        """Event time (s) of the series' newest counted bucket; 0 when unknown."""
        return self._last_data.get(series, 0)

    def partition_of(self, series: str) -> int | None:
        return self._series_partition.get(series)

    def series_count(self) -> int:
        return len(self._series_partition)

    def has_series(self, series: str) -> bool:
        return series in self._series_partition

    # ---- writing ----------------------------------------------------------------------------

    def add(self, series: str, partition: int, bucket0: int, bad: int, total: int) -> None:
        """Add counts for the level-0 bucket ``bucket0`` (= event time // 10 s) to every level."""
        pend = self._pending.get(series)
        if pend is None:
            pend = self._pending[series] = ({}, {}, {})
            self._own(series, partition)
        t = bucket0 * L0_WIDTH
        if t > self._last_data.get(series, 0):
            self._last_data[series] = t
        for lv, buckets in zip(self.levels, pend, strict=True):
            b = t // lv.width_s
            cell = buckets.get(b)
            if cell is None:
                buckets[b] = [bad, total]
            else:
                cell[0] += bad
                cell[1] += total

    def add_replayed(self, series: str, partition: int, bucket0: int, bad: int, total: int, offset: int) -> bool:
        """Like :meth:`add` for a record at or below the partition's applied offset (a replay after a
        crash): adds it only to the levels whose stored chunk has not seen ``offset`` yet.
        Returns True if any level counted it."""
        t = bucket0 * L0_WIDTH
        if t > self._last_data.get(series, 0):
            self._last_data[series] = t
        pend = self._pending.get(series)
        counted = False
        for lv in self.levels:
            b = t // lv.width_s
            value = self.store.get(_key(series, lv.index, b // lv.chunk_len))
            if value is not None:
                head = memoryview(value).cast("q")
                if int(head[0]) == partition and offset <= int(head[1]):
                    continue
            if pend is None:
                pend = self._pending[series] = ({}, {}, {})
                self._own(series, partition)
            cell = pend[lv.index].setdefault(b, [0, 0])
            cell[0] += bad
            cell[1] += total
            counted = True
        return counted

    def flush(self, partition: int, offset: int) -> int:
        """Write every pending bucket of ``partition`` into the store, once per chunk; return the
        number of chunks written. ``offset`` is the highest source offset of the batch."""
        return _to_the_end(self.flush_steps(partition, offset, every=None))

    def flush_steps(self, partition: int, offset: int, *, every: int | None) -> Generator[None, None, int]:
        """:meth:`flush`, pausing (yielding) after every ``every`` chunk writes, between two series:
        a series' chunks are written and its pending counts dropped with no pause in between, so a
        reader at a pause sums each series once. Returns the number of chunks written."""
        written = 0
        since = 0
        for key in self._doomed.pop(partition, ()):
            if every is not None and since >= every:
                since = 0
                yield
            since += 1  # counted whether or not the chunk was ever written: the look-up costs too
            if key in self.store:
                del self.store[key]
        for series in [s for s in self._pending if self._series_partition.get(s) == partition]:
            if every is not None and since >= every:
                since = 0
                yield
            pend = self._pending.get(series)
            if pend is None:  # forgotten (evicted, expired) during a pause
                continue
            chunk_ids = self._chunk_ids(series)
            for lv, buckets in zip(self.levels, pend, strict=True):
                by_chunk: dict[int, list[tuple[int, list[int]]]] = {}
                for b, cell in buckets.items():
                    by_chunk.setdefault(b // lv.chunk_len, []).append((b % lv.chunk_len, cell))
                for chunk, cells in by_chunk.items():
                    key = _key(series, lv.index, chunk)
                    old = self.store.get(key)
                    arr = array("q", old if old is not None else bytes(8 * (2 + 2 * lv.chunk_len)))
                    for i, (bad, total) in cells:
                        arr[2 + 2 * i] += bad
                        arr[3 + 2 * i] += total
                    arr[0] = partition
                    if offset > arr[1]:
                        arr[1] = offset
                    self.store[key] = arr.tobytes()
                    self._chunk_sums.pop(key, None)
                    chunk_ids[lv.index].add(chunk)
                    written += 1
                    since += 1
            del self._pending[series]
        if offset > self.applied_offset.get(partition, -1):
            self.applied_offset[partition] = offset
        return written

    def expire(self, partition: int, now: int, *, every_s: int = 60) -> int:
        """Delete chunks of ``partition`` wholly older than each level keeps, relative to ``now``
        (the latest evaluation time); forget series left with nothing. Does the walk at most once
        per ``every_s`` of event time. Returns chunks deleted."""
        if now - self._expired_at.get(partition, 0) < every_s:
            return 0
        self._expired_at[partition] = now
        deleted = 0
        empty = []
        for series in self._by_partition.get(partition, ()):
            per_level = self._chunks.get(series)
            if per_level is not None:
                for lv, ids in zip(self.levels, per_level, strict=True):
                    limit = (now - lv.keep_s) // lv.chunk_s  # chunks below this id ended before now - keep
                    for ch in [ch for ch in ids if ch < limit]:
                        ids.discard(ch)
                        key = _key(series, lv.index, ch)
                        self._chunk_sums.pop(key, None)
                        if key in self.store:
                            del self.store[key]
                        deleted += 1
            if (per_level is None or not any(per_level)) and series not in self._pending:
                empty.append(series)
        for s in empty:
            self._forget(s)
        return deleted

    def evict(self, series: str) -> None:
        """Forget ``series`` now; its stored chunks are deleted by the next :meth:`flush` of its
        partition (the store is written with a partition's batch only)."""
        p = self._series_partition.get(series)
        per_level = self._chunks.get(series)
        if p is not None and per_level is not None:
            self._doomed.setdefault(p, []).extend(
                _key(series, lvi, ch) for lvi, ids in enumerate(per_level) for ch in ids)
        self._forget(series)

    def _chunk_ids(self, series: str) -> tuple[set[int], set[int], set[int]]:
        ids = self._chunks.get(series)
        if ids is None:
            ids = self._chunks[series] = (set(), set(), set())
        return ids

    # ---- reading -----------------------------------------------------------------------------

    def window(self, series: str, at: int, length_s: int) -> tuple[int, int]:
        """(bad, total) over ``[at - length_s, at)``; ``at`` a multiple of 10 s. See the module doc."""
        start = at - length_s
        if length_s <= L0_SPAN:
            return self._sum(series, self.levels[0], start // L0_WIDTH, at // L0_WIDTH)
        lv = self.levels[1] if length_s <= L1_SPAN else self.levels[2]
        split = at // lv.width_s * lv.width_s
        bad, total = self._sum(series, lv, start // lv.width_s, split // lv.width_s)
        b2, t2 = self._sum(series, self.levels[0], split // L0_WIDTH, at // L0_WIDTH)
        return bad + b2, total + t2

    def _sum(self, series: str, lv: Level, b0: int, b1: int) -> tuple[int, int]:
        """Sum of buckets ``[b0, b1)`` at level ``lv``, store plus pending."""
        bad = total = 0
        if b1 <= b0:
            return 0, 0
        n = lv.chunk_len
        get = self.store.get
        sums = self._chunk_sums
        c0, c1 = b0 // n, (b1 - 1) // n
        per_level = self._chunks.get(series)
        ids = per_level[lv.index] if per_level is not None else ()
        span = range(c0, c1 + 1) if c1 - c0 < len(ids) else sorted(ch for ch in ids if c0 <= ch <= c1)
        for chunk in span:
            key = _key(series, lv.index, chunk)
            base = chunk * n
            lo = max(b0, base) - base
            hi = min(b1, base + n) - base
            if lo == 0 and hi == n:
                cached = sums.get(key)
                if cached is not None:
                    bad += cached[0]
                    total += cached[1]
                    continue
            value = get(key)
            if value is None:
                continue
            mv = memoryview(value).cast("q")
            if lo == 0 and hi == n:
                cb, ct = sum(mv[2::2]), sum(mv[3::2])
                sums[key] = (cb, ct)
                bad += cb
                total += ct
            else:
                bad += sum(mv[2 + 2 * lo : 2 + 2 * hi : 2])
                total += sum(mv[3 + 2 * lo : 3 + 2 * hi : 2])
        pend = self._pending.get(series)
        if pend is not None:
            for b, (pb, pt) in pend[lv.index].items():
                if b0 <= b < b1:
                    bad += pb
                    total += pt
        return bad, total


def _to_the_end(steps: Generator[None, None, int]) -> int:
    """Run paused work (a generator of pauses) through every pause; what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return int(done.value)


def _key(series: str, level: int, chunk: int) -> str:
    return f"{series}|{level}|{chunk}"


def _split_key(key: str) -> tuple[str, int, int]:
    series, level, chunk = key.rsplit("|", 2)
    return series, int(level), int(chunk)


def _newest_bucket(arr: memoryview, level: Level, chunk: int) -> int:
    """The event time :meth:`Counters.last_data` keeps for the newest bucket with events in a stored
    chunk: the start of that 10 s bucket at level 0 (as when it was counted); at a coarser level the
    start of its last 10 s bucket (an upper bound: a series is never taken for quiet too early)."""
    for i in range(level.chunk_len - 1, -1, -1):
        if arr[3 + 2 * i]:  # total of bucket i
            start = (chunk * level.chunk_len + i) * level.width_s
            return start + level.width_s - L0_WIDTH
    return 0
