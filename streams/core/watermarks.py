"""Event time per partition: the watermark and the evaluation steps it crosses (pure; part of the engine).

Per partition the engine keeps a meta record (``~meta|<partition>``): the highest source offset fully
committed, the highest event time seen and the last evaluation step. The watermark is the highest
event time minus the allowed lateness; each time it crosses a multiple of ``step_s`` the partition's
series are evaluated at that boundary (:func:`steps_to`). The meta record is written last in a
batch's commit, so it says what is safely in the store: a replay after a crash starts after its
offset, and no replay can start before its step (resolution markers rely on it,
:mod:`streams.core.tracks`).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

import orjson

META_PREFIX = "~meta|"


@dataclass
class PartitionMeta:
    offset: int = -1  # highest source offset fully committed to the store
    max_ts: float = 0.0  # highest event time seen
    evaluated_to: int = 0  # last evaluation boundary (event time), 0 before the first

    def to_bytes(self, partition: int) -> bytes:
        return orjson.dumps(
            {"p": partition, "offset": self.offset, "max_ts": self.max_ts, "evaluated_to": self.evaluated_to}
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartitionMeta:
        d = orjson.loads(raw)
        return cls(int(d["offset"]), float(d["max_ts"]), int(d["evaluated_to"]))


def steps_to(next_eval: int, wm: float, step_s: int, max_catchup_steps: int) -> range:
    """The evaluation steps from ``next_eval`` up to the watermark ``wm`` (at most the last
    ``max_catchup_steps`` of them: the older steps of a longer gap are skipped)."""
    last = int(wm // step_s) * step_s
    first = max(next_eval, last - (max_catchup_steps - 1) * step_s)
    return range(first, last + 1, step_s)


class Watermarks:
    """The meta records of the partitions assigned to this worker."""

    def __init__(self, store: MutableMapping[str, bytes]) -> None:
        self.store = store
        self._meta: dict[int, PartitionMeta] = {}
        self._stored_to: dict[int, int] = {}  # evaluated_to of each partition's stored meta record

    def load(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            raw = self.store.get(f"{META_PREFIX}{p}")
            self._meta[p] = PartitionMeta() if raw is None else PartitionMeta.from_bytes(raw)
            self._stored_to[p] = self._meta[p].evaluated_to

    def drop(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._meta.pop(p, None)

    def assigned(self) -> set[int]:
        return set(self._meta)

    def held(self, partition: int) -> bool:
        return partition in self._meta

    def meta(self, partition: int) -> PartitionMeta:
        m = self._meta.get(partition)
        if m is None:
            m = self._meta[partition] = PartitionMeta()
        return m

    def evaluated_to(self, partition: int | None) -> int:
        """The partition's last evaluation step; 0 when it is not held or never evaluated."""
        m = self._meta.get(partition) if partition is not None else None
        return m.evaluated_to if m is not None else 0

    def newest_event(self, partition: int | None) -> float | None:
        m = self._meta.get(partition) if partition is not None else None
        return m.max_ts if m is not None else None

    def stored_to(self, partition: int) -> int:
        return self._stored_to.get(partition, 0)

    def write(self, partition: int) -> None:
        """Write the partition's meta record (the last write of a batch's commit)."""
        meta = self.meta(partition)
        self.store[f"{META_PREFIX}{partition}"] = meta.to_bytes(partition)
        self._stored_to[partition] = meta.evaluated_to
