"""Keeps each partition's processing contiguous in source offsets.

The engine's replay protection says "every offset at or below the partition's meta offset is in the
state" (see :mod:`streams.core.engine`). That is only true if no offset is ever skipped: a record
processed after a hole would move the meta offset past records that were never counted, and a later
replay would skip them for good.

Holes do happen. faust-streaming can drop messages it fetched while resuming after recovery
(faust-streaming#596); a consumer reset after retention deleted the committed position skips
records; a transactional producer leaves a control record between batches. The guard refuses
records beyond a hole and asks for the partition to be read again from before it; refused records
are not lost, the re-read delivers them again. Before every further re-read the adapter checks the
log itself (an independent read from the expected offset): when the log's first record there lies
beyond the expected offset, the range before it is empty, the hole is accepted up to that record,
and the partition is read once more so that it arrives. Faust's own re-delivery cannot be trusted to
confirm a hole: the race above can repeat on any seek. A re-read overlapping records already taken
in the same batch yields second copies; they are dropped, not counted twice.

Pure: the adapter passes the partition's next expected offset (from the engine), the offsets of a
batch in arrival order, and the clock; it seeks when :meth:`OffsetGuard.due` says so and reports
what the log holds with :meth:`OffsetGuard.checked`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Hole:
    expected: int  # the next offset the partition needs
    first: int  # the first offset delivered instead
    seen_at: float
    seeks: int = 0
    sought_at: float = 0.0
    confirmed: bool = False  # the log itself has nothing in [expected, first)


@dataclass
class Admission:
    keep: list[bool]  # per message of the batch, in the order given
    refused: int = 0
    duplicates: int = 0  # second copies of offsets taken earlier in the same batch: not kept either
    accepted_hole: tuple[int, int] | None = None  # [expected, first) found empty by a re-read


class OffsetGuard:
    """One per worker; state per partition, dropped with the partition."""

    def __init__(self, *, retry_after_s: float = 5.0) -> None:
        self.retry_after_s = retry_after_s
        self.holes: dict[int, Hole] = {}

    def admit(self, partition: int, expected: int | None, offsets: Sequence[int], *, now: float) -> Admission:
        """Which messages of a batch may be processed.

        ``expected`` is the next offset the partition's state needs (its meta offset + 1), or None
        when the partition has no state yet (then processing starts wherever the consumer starts).
        Offsets below ``expected`` are replays (the engine skips them); ``expected`` itself advances
        it; anything beyond is refused until the hole is filled or shown to be empty.
        """
        keep = [False] * len(offsets)
        adm = Admission(keep)
        hole = self.holes.get(partition)
        start = expected
        for i, off in enumerate(offsets):
            if expected is None or off == expected:
                expected = off + 1
                keep[i] = True
                if hole is not None:
                    del self.holes[partition]
                    hole = None
                continue
            if off < expected:
                if start is not None and off < start:
                    keep[i] = True  # a replay of committed state: the engine skips it
                else:
                    adm.duplicates += 1  # taken earlier in this batch (a re-read overlapping it)
                continue
            if hole is not None and hole.confirmed and hole.expected == expected and off == hole.first:
                adm.accepted_hole = (expected, off)
                del self.holes[partition]
                hole = None
                expected = off + 1
                keep[i] = True
                continue
            if hole is None or hole.expected != expected:
                hole = self.holes[partition] = Hole(expected, off, now)
            adm.refused += 1
        return adm

    def due(self, now: float) -> list[tuple[int, Hole]]:
        """Partitions to read again from before their hole: new holes at once, and holes still
        open ``retry_after_s`` after the last re-read (that re-read raced another fetch)."""
        out = []
        for p, hole in sorted(self.holes.items()):
            if hole.seeks == 0 or now - hole.sought_at >= self.retry_after_s:
                out.append((p, hole))
        return out

    def needs_check(self, hole: Hole) -> bool:
        """Whether to look at the log before the next re-read: every re-read after the first (the
        log may have changed since the last look, e.g. retention)."""
        return hole.seeks > 0

    def checked(self, partition: int, first_in_log: int | None) -> None:
        """The adapter read the log from the hole's expected offset: ``first_in_log`` is the offset
        of the first record there (None: the read returned nothing in time; no evidence).

        A first record beyond ``expected`` proves ``[expected, first_in_log)`` empty: the hole is
        confirmed up to there, and admission waits for exactly that record. A record at
        ``expected`` means there is no hole, only a re-read that has not landed yet."""
        hole = self.holes.get(partition)
        if hole is None or first_in_log is None:
            return
        hole.confirmed = first_in_log > hole.expected
        if hole.confirmed:
            hole.first = first_in_log

    def sought(self, partition: int, *, now: float) -> None:
        hole = self.holes.get(partition)
        if hole is not None:
            hole.seeks += 1
            hole.sought_at = now

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self.holes.pop(p, None)
