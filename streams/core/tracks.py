"""Alert tracks and their persistence in the state store (pure; part of the engine).

One :class:`~streams.core.alerting.Track` per dedup key, stored under ``~track|<dedup key>`` with the
suspects recorded when its alert fired. A batch's changes stay pending until the engine commits
the batch (after its alerts went out); :meth:`AlertTracks.commit` writes them before the partition's
meta record, so a crash anywhere replays the batch.

**Resolution markers.** A track the batch resolved is not deleted but replaced by a marker: an idle
track that also holds the step it resolved at and the firing track before that batch. A crash
before the meta record replays the batch from the older one, whose steps must meet the incident
still open (a deleted track would let the still-burning first steps fire it again: a second
incident); a crash after it must not find the incident open (a kept firing track would swallow the
next page). The marker is both, by step (:meth:`AlertTracks.track_at`). Once the partition's stored
meta record has evaluated past that step, no replay can start before it and the marker goes.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson

from streams.core import conventions as c
from streams.core.alerting import Track
from streams.core.model import Severity, Slo
from streams.core.wire.suspect import Suspect, decode_suspects

TRACK_PREFIX = "~track|"


class AlertTracks:
    """The alert tracks of the partitions assigned to this worker, over the state store."""

    def __init__(self, store: MutableMapping[str, bytes]) -> None:
        self.store = store
        self._tracks: dict[str, Track] = {}  # as committed (cache)
        # Per dedup key whose committed track is a resolution marker: the step it resolved at and the
        # firing track before that batch (what a replay of that batch must start from).
        self._before: dict[str, tuple[int, Track]] = {}
        # Per partition, the dedup keys whose marker may be deleted once the partition's stored meta
        # record has evaluated past the step it resolved at.
        self._markers: dict[int, set[str]] = {}
        # Changes of the batch being processed, by dedup key: (partition, value).
        self._pending: dict[str, tuple[int, Track]] = {}
        self._pending_suspects: dict[str, tuple[int, tuple[Suspect, ...]]] = {}
        self._pending_resolved: dict[str, tuple[int, int]] = {}  # the step it resolved at
        self._keys: dict[str, tuple[tuple[Severity, str], ...]] = {}

    def keys(self, series: str, slo: Slo) -> tuple[tuple[Severity, str], ...]:
        """The alert severities of ``series`` (those its SLO's policy has) with their dedup keys."""
        keys = self._keys.get(series)
        if keys is None:
            severities = [sev for sev in (Severity.PAGE, Severity.TICKET)
                          if any(w.severity is sev for w in slo.policy.windows)]
            keys = self._keys[series] = tuple((sev, c.dedup_key(series, str(sev))) for sev in severities)
        return keys

    def forget_series(self, series: str) -> None:
        self._keys.pop(series, None)

    # ---- partitions ---------------------------------------------------------------------------

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the cache (it is rebuilt from the store) and the pending changes of ``partitions``."""
        parts = set(partitions)
        self._tracks.clear()
        self._before.clear()
        for p in parts:
            self._markers.pop(p, None)
        for pending in (self._pending, self._pending_suspects, self._pending_resolved):
            for dk in [dk for dk, (p, _) in pending.items() if p in parts]:
                del pending[dk]

    # ---- reading --------------------------------------------------------------------------------

    def track(self, dedup: str) -> Track:
        """The alert track of a dedup key: pending in this batch, else as committed."""
        pending = self._pending.get(dedup)
        if pending is not None:
            return pending[1]
        return self.committed(dedup)

    def committed(self, dedup: str) -> Track:
        """The track as committed to the store (cached), never a batch still being delivered. A
        resolution marker reads as an idle track; the track a resolving batch started from (in a
        marker, or in a track that fired again in that batch) is remembered for :meth:`track_at`."""
        track = self._tracks.get(dedup)
        if track is None:
            raw = self.store.get(TRACK_PREFIX + dedup)
            if raw is None:
                track = Track()
            else:
                d = orjson.loads(raw)
                track = Track.from_json(d)
                if d.get("resolved_at") is not None and isinstance(d.get("before"), dict):
                    self._before[dedup] = (int(d["resolved_at"]), Track.from_json(d["before"]))
                    if isinstance(d.get("p"), int):
                        self._markers.setdefault(d["p"], set()).add(dedup)
            self._tracks[dedup] = track
        return track

    def track_at(self, dedup: str, at: int) -> Track:
        """The track of ``dedup`` as it stood before the evaluation at step ``at``: :meth:`track`,
        except for a replay after a crash, which evaluates steps before what was committed.

        - A track that resolved at a later step (a resolution marker, or a track that fired again in
          the resolving batch) was still the firing track it was before that batch.
        - A track that fired at a later step had not fired yet: it was idle. Tracks are written before
          the partition's meta record, so after a crash between the two (or a changelog recovery that
          stops short of the meta record) a batch is replayed from the older meta record and meets
          them. Stepping such a track instead would resolve it early, or fire it again: a second
          incident that the uninterrupted run never opened."""
        pending = self._pending.get(dedup)
        if pending is not None:  # changed earlier in this batch: that is the state now
            track = pending[1]
        else:
            track = self.committed(dedup)
            before = self._before.get(dedup)
            if before is not None and at < before[0]:
                track = before[1]
        if track.firing and track.fired_at is not None and track.fired_at > at:
            return Track()
        return track

    def stored_suspects(self, dedup: str) -> tuple[Suspect, ...]:
        """The suspects in the stored track of ``dedup`` (a marker keeps those of its incident)."""
        raw = self.store.get(TRACK_PREFIX + dedup)
        return () if raw is None else decode_suspects(orjson.loads(raw).get("suspects"))

    def suspects(self, dedup: str) -> tuple[Suspect, ...]:
        """The suspects recorded when the alert of ``dedup`` fired (empty when not firing)."""
        pending = self._pending_suspects.get(dedup)
        if pending is not None:
            return pending[1]
        return self.stored_suspects(dedup)

    # ---- changes of the batch being processed -------------------------------------------------------

    def change(self, dedup: str, partition: int, track: Track) -> None:
        self._pending[dedup] = (partition, track)

    def fired(self, dedup: str, partition: int, suspects: tuple[Suspect, ...]) -> None:
        self._pending_suspects[dedup] = (partition, suspects)

    def resolved(self, dedup: str, partition: int, at: int) -> None:
        self._pending_suspects[dedup] = (partition, ())
        self._pending_resolved[dedup] = (partition, at)

    # ---- commit -------------------------------------------------------------------------------------

    def commit(self, partition: int, stored_to: int) -> None:
        """Write the batch's tracks of ``partition``; ``stored_to`` is the step its stored meta record
        (the one a replay would start from) has evaluated to."""
        for dk, (tp, track) in list(self._pending.items()):
            if tp == partition:
                del self._pending[dk]
                self._write(dk, partition, track, stored_to)
        self._drop_markers(partition, stored_to)

    def _write(self, dk: str, p: int, track: Track, stored_to: int) -> None:
        pending_suspects = self._pending_suspects.pop(dk, None)
        suspects = None if pending_suspects is None else pending_suspects[1]
        resolved = self._pending_resolved.pop(dk, None)
        # The track this batch started from: as stored, or, while a replay from the stored meta
        # record can still need it, the one remembered from a resolving batch not yet covered
        # by a meta record (a replay of that batch, crashed again, must find it once more).
        live = self._before.get(dk)
        live = live if live is not None and live[0] > stored_to else None
        start = live[1] if live is not None else self.committed(dk)
        start_suspects = self.stored_suspects(dk) if start.firing else ()
        # Resolved in this batch, from an incident open when it started: remember that incident
        # until a meta record covers the step it resolved at. A replay that has not reached that
        # step yet writes the incident as it now stands (what its own meta record will cover).
        if resolved is not None:
            keep = (resolved[1], start) if start.firing else None
        else:
            keep = (live[0], track) if live is not None else None
        if track == Track() and keep is None:  # quiet (it fired and resolved in this batch)
            self._before.pop(dk, None)
            if TRACK_PREFIX + dk in self.store:
                del self.store[TRACK_PREFIX + dk]
            self._tracks[dk] = Track()
            return
        body: dict[str, Any] = track.to_json()
        body["p"] = p
        if track == Track():
            suspects = start_suspects  # a marker: what a replay reopening the incident shows
        elif suspects is None:  # unchanged since the alert fired: keep what was recorded then
            suspects = self.suspects(dk) if track.firing else ()
        if suspects:
            body["suspects"] = [s.to_json() for s in suspects]
        if keep is not None:
            body["resolved_at"], body["before"] = keep[0], keep[1].to_json()
            self._before[dk] = keep
            self._markers.setdefault(p, set()).add(dk)
        else:
            self._before.pop(dk, None)
        self.store[TRACK_PREFIX + dk] = orjson.dumps(body)
        self._tracks[dk] = track

    def _drop_markers(self, p: int, stored_to: int) -> None:
        """Markers the stored meta record has evaluated past: no replay can start before them."""
        for dk in list(self._markers.get(p, ())):
            marked = self._before.get(dk)
            if marked is not None and marked[0] > stored_to:
                continue
            self._markers[p].discard(dk)
            if marked is None:
                continue
            del self._before[dk]
            if self._tracks.get(dk) == Track() and TRACK_PREFIX + dk in self.store:
                del self.store[TRACK_PREFIX + dk]  # an idle marker: nothing left to remember
