"""Provisional alerts: early firing on live partitions, settled by the final evaluation (issue 17).

The final evaluation of a series waits for the partition's watermark (the newest event time minus the
allowed lateness) to pass an evaluation step: identical on replay, but a page comes the allowed
lateness (120 s by default) after the data said so. After each batch of a *live* partition (newest
event time within the allowed lateness of the wall clock), the engine also evaluates the series the
batch counted into at the next step after the newest event time, over the data seen so far. A page
or ticket condition that holds there fires at once as a **provisional** alert (``provisional: true``
on ``slo.alerts``, with the event time it was seen at). The first final evaluation at or after the
provisional step settles it (earlier steps decide nothing: an alert firing there may be an earlier
incident that resolves before it):

- **confirmed**: the final alert is open there. Its FIRING record is the ordinary final one (a replay
  publishes the same); fired at or before the provisional step, its event time is not newer than the
  provisional one, so the notifier folds it into the incident already open (no second page).
- **retracted**: no alert is open there. A RESOLVED record with ``reason: retracted`` (and
  ``provisional: true``) closes it. So is an open provisional alert whose series is displaced or expires.

Crash rule: a provisional track is written to the store (and, by the worker, to the changelog, waiting
for the broker's acknowledgement) *before* its FIRING is delivered, and deleted only when the batch
that settled it commits,
after the settlement was delivered. A worker that takes over the partition finds the track and settles
it at its own final evaluations: every provisional FIRING published is followed by its confirmation
or its RESOLVED, whatever crashes or rebalances happen between (a track written for a FIRING that a
crash kept from going out is settled too: a confirmation or a retraction of an alert nobody saw).

Bounded: at most one provisional track per dedup key (one per series and severity).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from streams.core.wire.suspect import Suspect, decode_suspects

PROVISIONAL_PREFIX = "~prov|"


class Outcome(StrEnum):
    """How a provisional alert ended (the metric's ``outcome`` label)."""

    FIRED = "fired"
    CONFIRMED = "confirmed"
    RETRACTED = "retracted"


@dataclass(frozen=True)
class Provisional:
    """An open provisional alert: the step it was evaluated at, the event time it was seen at, the
    series, and the suspects it named."""

    partition: int
    at: int
    seen_at: float
    series: str
    suspects: tuple[Suspect, ...] = ()
    # The highest offset of the batch that opened it: until the partition's meta record has passed it,
    # that batch may not be committed (a takeover replays it), and its series may not exist yet.
    offset: int = -1

    def to_json(self) -> dict[str, Any]:
        return {"p": self.partition, "at": self.at, "seen_at": self.seen_at, "series": self.series,
                "suspects": [s.to_json() for s in self.suspects], "o": self.offset}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Provisional:
        return cls(partition=int(d["p"]), at=int(d["at"]), seen_at=float(d["seen_at"]), series=str(d["series"]),
                   suspects=decode_suspects(d.get("suspects")), offset=int(d.get("o", -1)))


class ProvisionalTracks:
    """The open provisional alerts of the partitions assigned to this worker, over the state store.

    Opening writes the store at once (before delivery, see the module doc); settling is pending until
    :meth:`commit` of the settling batch deletes the record."""

    def __init__(self, store: MutableMapping[str, bytes]) -> None:
        self.store = store
        self._open: dict[str, Provisional] = {}  # by dedup key, as stored
        self._settled: dict[str, int] = {}  # dedup key -> partition: settled in the batch under way

    def recover(self, partitions: Iterable[int]) -> int:
        """Load the open provisional alerts of ``partitions`` from the (recovered) store."""
        parts = set(partitions)
        n = 0
        for key in [k for k in list(self.store.keys()) if k.startswith(PROVISIONAL_PREFIX)]:
            raw = self.store.get(key)
            if raw is None:
                continue
            prov = Provisional.from_json(orjson.loads(raw))
            if prov.partition in parts:
                self._open[key[len(PROVISIONAL_PREFIX):]] = prov
                n += 1
        return n

    def forget(self, partitions: Iterable[int]) -> None:
        parts = set(partitions)
        for dk in [dk for dk, p in self._open.items() if p.partition in parts]:
            del self._open[dk]
        for dk in [dk for dk, p in self._settled.items() if p in parts]:
            del self._settled[dk]

    def get(self, dedup: str) -> Provisional | None:
        """The open provisional alert of ``dedup``, unless the batch under way settled it."""
        if dedup in self._settled:
            return None
        return self._open.get(dedup)

    def pending(self) -> Iterator[tuple[str, Provisional]]:
        """Every open provisional alert (not settled in the batch under way)."""
        return ((dk, p) for dk, p in self._open.items() if dk not in self._settled)

    def open(self, dedup: str, prov: Provisional) -> None:
        """Record a provisional alert, in the store at once: before its FIRING goes out."""
        self._open[dedup] = prov
        self._settled.pop(dedup, None)
        self.store[PROVISIONAL_PREFIX + dedup] = orjson.dumps(prov.to_json())

    def settle(self, dedup: str) -> None:
        prov = self._open.get(dedup)
        if prov is not None:
            self._settled[dedup] = prov.partition

    def commit(self, partition: int) -> None:
        """Delete the records the batch of ``partition`` settled (after its alerts went out)."""
        for dk in [dk for dk, p in self._settled.items() if p == partition]:
            del self._settled[dk]
            self._open.pop(dk, None)
            if PROVISIONAL_PREFIX + dk in self.store:
                del self.store[PROVISIONAL_PREFIX + dk]

    def __len__(self) -> int:
        return len(self._open) - len(self._settled)
