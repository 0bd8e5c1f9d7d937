"""Error counts per playback ``revision`` (correlation's "new revision against the old" evidence), pure.

Per (service, cluster): ``{revision: {minute: [errors, total]}}`` and the highest source offset
applied, stored under ``~rev|<service>|<cluster>`` (a replay after a crash skips what is already in).
Kept :data:`REV_KEEP_S` of event time, at most :data:`REV_MAX_REVISIONS` revisions per service and
cluster (the newest by their latest minute); the entry of a service and cluster that received
nothing for :data:`REV_KEEP_S` is deleted (:meth:`RevisionLog.expire`), so clusters that come and go
leave nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field

import orjson

REV_PREFIX = "~rev|"
REV_BUCKET_S = 60  # one-minute buckets
REV_KEEP_S = 3 * 3600
REV_MAX_REVISIONS = 8

# (service, cluster, revision, minute) -> [errors, total, highest offset]: one batch's counts.
Aggregate = dict[tuple[str, str, str, int], list[int]]


@dataclass
class RevState:
    """One service and cluster: the counts per revision and minute, and the highest offset applied.
    ``committed`` is that offset as last written to the store: a replay skips records up to it (not up
    to ``offset``, which a push in the middle of a batch moves to the message being counted)."""

    partition: int
    offset: int = -1
    revs: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    committed: int = -1

    def to_bytes(self) -> bytes:
        return orjson.dumps({"p": self.partition, "o": self.offset,
                             "r": {rev: {str(m): v for m, v in mins.items()} for rev, mins in self.revs.items()}})

    @classmethod
    def from_bytes(cls, raw: bytes) -> RevState:
        d = orjson.loads(raw)
        return cls(int(d["p"]), int(d["o"]),
                   {rev: {int(m): v for m, v in mins.items()} for rev, mins in d["r"].items()}, int(d["o"]))


class RevisionLog:
    """The per-revision counts of the partitions assigned to this worker, over the state store."""

    def __init__(self, store: MutableMapping[str, bytes]) -> None:
        self.store = store
        self.states: dict[tuple[str, str], RevState] = {}  # loaded (service, cluster) states
        self._dirty: set[tuple[str, str]] = set()
        # Per partition, every (service, cluster) it holds and the newest minute counted for it.
        self._newest: dict[int, dict[tuple[str, str], int]] = {}
        self._expired_at: dict[int, float] = {}

    def drop(self, partitions: Iterable[int]) -> None:
        parts = set(partitions)
        for rk in [rk for rk, st in self.states.items() if st.partition in parts]:
            del self.states[rk]
            self._dirty.discard(rk)
        for p in parts:
            self._newest.pop(p, None)

    def recover(self, partitions: Iterable[int]) -> None:
        """Index the entries of ``partitions`` found in the (recovered) store."""
        parts = set(partitions)
        for p in parts:
            self._newest[p] = {}
        for key, raw in list(self.store.items()):
            if key.startswith(REV_PREFIX):
                st = RevState.from_bytes(raw)
                if st.partition in parts:
                    service, cluster = key[len(REV_PREFIX):].split("|", 1)
                    self._newest[st.partition][(service, cluster)] = _newest_minute(st)

    def expire(self, partition: int, now: float, *, every_s: int = 60) -> int:
        """Delete the entries of ``partition`` whose newest minute is older than :data:`REV_KEEP_S`
        before ``now`` (event time); at most one walk per ``every_s``. Returns entries deleted."""
        if now - self._expired_at.get(partition, 0) < every_s:
            return 0
        self._expired_at[partition] = now
        horizon = int((now - REV_KEEP_S) // REV_BUCKET_S)
        index = self._newest.get(partition, {})
        gone = [rk for rk, newest in index.items() if newest < horizon]
        for rk in gone:
            del index[rk]
            self.states.pop(rk, None)
            self._dirty.discard(rk)
            key = f"{REV_PREFIX}{rk[0]}|{rk[1]}"
            if key in self.store:
                del self.store[key]
        return len(gone)

    def load(self, rk: tuple[str, str], partition: int) -> RevState:
        """The state of ``rk`` (read from the store the first time, new if absent)."""
        st = self.states.get(rk)
        if st is None:
            raw = self.store.get(f"{REV_PREFIX}{rk[0]}|{rk[1]}")
            st = self.states[rk] = RevState.from_bytes(raw) if raw is not None else RevState(partition)
        return st

    def push(self, agg: Aggregate, partition: int, max_ts: float) -> None:
        """Add a batch's aggregate; expire minutes older than the horizon and the oldest revisions."""
        horizon = int((max_ts - REV_KEEP_S) // REV_BUCKET_S)
        touched: set[tuple[str, str]] = set()
        for (service, cluster, rev, minute), (errors, total, offset) in agg.items():
            rk = (service, cluster)
            st = self.load(rk, partition)
            mins = st.revs.setdefault(rev, {})
            cell = mins.get(minute)
            if cell is None:
                mins[minute] = [errors, total]
            else:
                cell[0] += errors
                cell[1] += total
            if offset > st.offset:
                st.offset = offset
            touched.add(rk)
            index = self._newest.setdefault(partition, {})
            if minute > index.get(rk, -1):
                index[rk] = minute
        agg.clear()
        for rk in touched:
            st = self.states[rk]
            for rev in list(st.revs):
                mins = st.revs[rev]
                for m in [m for m in mins if m < horizon]:
                    del mins[m]
                if not mins:
                    del st.revs[rev]
            if len(st.revs) > REV_MAX_REVISIONS:
                newest = sorted(st.revs, key=lambda v: (max(st.revs[v]), v), reverse=True)
                for rev in newest[REV_MAX_REVISIONS:]:
                    del st.revs[rev]
            self._dirty.add(rk)

    def commit(self, partition: int) -> None:
        for _ in self.commit_steps(partition, every=None):
            pass

    def commit_steps(self, partition: int, *, every: int | None) -> Iterator[None]:
        """:meth:`commit`, pausing (yielding) after every ``every`` writes (a burst of new clusters
        dirties thousands of entries)."""
        for i, rk in enumerate([rk for rk in self._dirty if self.states[rk].partition == partition], 1):
            self._dirty.discard(rk)
            st = self.states[rk]
            self.store[f"{REV_PREFIX}{rk[0]}|{rk[1]}"] = st.to_bytes()
            st.committed = st.offset
            if every is not None and i % every == 0:
                yield

    def counts(self, service: str, cluster: str, start: float, end: float) -> dict[str, tuple[int, int]]:
        """(errors, total) per playback ``revision`` of ``service`` in ``cluster`` over the minutes in
        ``[start, end)``."""
        rk = (service, cluster)
        st = self.states.get(rk)
        if st is None:
            raw = self.store.get(f"{REV_PREFIX}{service}|{cluster}")
            if raw is None:
                return {}
            st = self.states[rk] = RevState.from_bytes(raw)
        m0, m1 = int(start // REV_BUCKET_S), int(end // REV_BUCKET_S)
        out: dict[str, tuple[int, int]] = {}
        for rev, mins in st.revs.items():
            bad = total = 0
            for m, (e, t) in mins.items():
                if m0 <= m < m1:
                    bad += e
                    total += t
            if total:
                out[rev] = (bad, total)
        return out


def _newest_minute(st: RevState) -> int:
    return max((m for mins in st.revs.values() for m in mins), default=-1)
