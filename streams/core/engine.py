"""The counting and evaluation engine for one worker: records in, alert transitions and statuses out.

Pure: the adapter hands in raw messages, the wall-clock ``now`` and a mapping store (a Faust table
with a changelog in the worker); it gets back what to publish. The engine coordinates parts that
each have one concern:

- :mod:`streams.core.wire.playback` parses messages into records;
- :mod:`streams.core.series` says which SLO series a record counts in, and admits new series;
- :mod:`streams.core.counters` keeps the bucketed counts;
- :mod:`streams.core.revisions` keeps the counts per playback revision (correlation evidence);
- :mod:`streams.core.watermarks` keeps event time per partition and the steps it crosses;
- :mod:`streams.core.tracks` keeps the alert tracks and their resolution markers;
- :mod:`streams.core.readmodel` answers readers (statuses, the gate's inputs, the metrics).

Two phases per batch, so that effects happen in a safe order ("detect, then act"):

1. :meth:`Engine.process` validates, counts (in a pending overlay) and evaluates the burn at every
   evaluation step the partition's watermark crosses. Nothing is written to the store yet.
2. After the adapter has delivered the alerts, :meth:`Engine.commit` writes the state: alert tracks,
   then counter chunks, then the partition's meta record last. A crash anywhere replays the batch:
   counts are skipped where already applied (see :mod:`streams.core.counters`), and an alert is
   published again at worst, never lost (its dedup key makes a resend harmless).

Event time: per partition, the watermark is the highest event time seen minus the allowed
lateness. A record older than the watermark is late (dead-lettered, counted in stats). Each time the
watermark crosses a multiple of ``step_s``, every series of the partition is evaluated at that
boundary ``t`` over windows ``[t - w, t)``: a replay at any speed gives the same evaluations as live
traffic.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace

from streams.core import conventions as c
from streams.core.alerting import Track, make_alert, step
from streams.core.burnrate import BurnEvaluation, evaluate
from streams.core.changes import ServiceChanges
from streams.core.correlation import DEFAULT_CONFIG as DEFAULT_CORRELATION
from streams.core.correlation import BurnContext, CorrelationConfig, RevisionCounts, Suspect, correlate
from streams.core.counters import L0_WIDTH, Counters
from streams.core.model import Severity, Slo
from streams.core.provisional import PROVISIONAL_PREFIX, Outcome, Provisional, ProvisionalTracks
from streams.core.readmodel import ReadModel
from streams.core.revisions import REV_BUCKET_S, Aggregate, RevisionLog
from streams.core.series import Admission, Cells, SeriesIndex
from streams.core.tracks import AlertTracks
from streams.core.watermarks import PartitionMeta, Watermarks, steps_to
from streams.core.wire.alert import Alert, AlertState
from streams.core.wire.playback import DEFAULT_LIMITS, Limits, Playback, RecordParser, Rejected


@dataclass(frozen=True)
class EngineConfig:
    step_s: int = 10
    allowed_lateness_s: int = 120
    max_future_s: int = 300
    max_series_per_slo: int = 5000
    # Admission at the series limit (streams.core.series): (dimension, pattern) pairs of trusted
    # placements, and how long an untrusted series goes without data before a new one may take its place.
    series_allow: tuple[tuple[str, str], ...] = ()
    series_idle_s: int = 3600
    # Evaluation steps caught up after the watermark jumps over a gap (1 hour of 10 s steps); the
    # older steps of a longer gap are skipped (documented in docs/semantics.md).
    max_catchup_steps: int = 360
    limits: Limits = DEFAULT_LIMITS
    correlation: CorrelationConfig = DEFAULT_CORRELATION
    # Early firing on live partitions (streams.core.provisional): after each batch, the series it
    # counted into are evaluated at the step after the newest event time.
    provisional: bool = True
    # At most one provisional evaluation per partition per this much event time (a live partition takes
    # a batch every fraction of a second; its series are evaluated about once a second instead).
    provisional_every_s: float = 1.0


@dataclass
class BatchResult:
    partition: int
    records: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    # Latest evaluation per series in this batch (for slo.status).
    statuses: dict[str, BurnEvaluation] = field(default_factory=dict)
    evaluations: int = 0
    steps: int = 0
    unmatched: int = 0  # valid records of services without an SLO
    replay_skipped: int = 0
    max_offset: int = -1
    # Provisional alerts of this batch by outcome (fired, confirmed, retracted).
    provisional: Counter[str] = field(default_factory=Counter)
    # State keys written that must be durable before the batch's alerts are delivered (provisional tracks).
    durable: list[str] = field(default_factory=list)

    def rejected_by_reason(self) -> Counter[str]:
        return Counter(r.reason for r in self.rejected)

    def absorb(self, later: BatchResult) -> None:
        """Add the result of the next part of the same batch (see :meth:`Engine.process`)."""
        if later.partition != self.partition:
            raise ValueError(f"partition {later.partition} is not {self.partition}")
        self.records += later.records
        self.rejected += later.rejected
        self.alerts += later.alerts
        self.statuses.update(later.statuses)
        self.evaluations += later.evaluations
        self.steps += later.steps
        self.unmatched += later.unmatched
        self.replay_skipped += later.replay_skipped
        self.max_offset = max(self.max_offset, later.max_offset)
        self.provisional.update(later.provisional)
        self.durable += later.durable


def _nothing() -> None:
    return None


@dataclass
class _Budget:
    """Evaluation work one call may still do (None: no limit)."""

    left: float | None


@dataclass
class _Step:
    """An evaluation step crossed: its time, the partition's series then (with their positions, shared
    by the steps crossed together), the next to look at, and those evaluated ahead (Engine._settle)."""

    at: int
    series: list[str]
    pos: dict[str, int]
    next: int = 0
    settled: set[str] = field(default_factory=set)


@dataclass
class _Batch:
    """One partition batch in progress: its clock and the counts not pushed yet."""

    partition: int
    now: float
    meta: PartitionMeta
    applied: int  # the counters' highest applied offset of the partition (replay protection)
    max_ts: float
    next_eval: int | None
    # One cell per (service, cluster, region, platform, 10 s bucket), see streams.core.series.
    agg: Cells = field(default_factory=dict)
    # Per (service, cluster, revision, minute): [errors, total, offset], for records that name a revision.
    rev_agg: Aggregate = field(default_factory=dict)
    parsed: int = 0
    parse_rejects: int = 0
    budget: _Budget = field(default_factory=lambda: _Budget(None))  # evaluations this call may do


class Engine:
    """Owns the counters and alert tracks of the partitions assigned to this worker.

    ``changes`` maps a service to its :class:`~streams.core.changes.ServiceChanges` (bytes; a Faust
    table co-partitioned with the playback topic in the worker): the rollouts and Kubernetes
    warnings an alert is correlated with when it fires, and the service's change freezes.
    """

    def __init__(
        self, slos: Sequence[Slo], store: MutableMapping[str, bytes], config: EngineConfig | None = None,
        *, changes: Mapping[str, bytes] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.changes: Mapping[str, bytes] = changes if changes is not None else {}
        if not slos:
            raise ValueError("no SLOs to evaluate")
        self.slos = {s.name: s for s in slos}
        self.store = store
        self.counters = Counters(store, max_window_s=max(s.window_s for s in slos))
        self.marks = Watermarks(store)
        self.tracks = AlertTracks(store)
        self.provisionals = ProvisionalTracks(store)
        # Per partition, the series counted into since its last provisional evaluation.
        self._touched: dict[int, set[str]] = {}
        self._provisional_at: dict[int, float] = {}  # per partition, the newest event time last evaluated at
        # Per partition, a provisional evaluation in progress: its step, the event time seen, the series left.
        self._early: dict[int, tuple[int, float, deque[str]]] = {}
        self._offset: dict[int, int] = {}  # per partition, the highest offset processed (not necessarily committed)
        cfg = self.config
        self.series = SeriesIndex(
            slos, self.counters,
            admission=Admission(cfg.max_series_per_slo, cfg.series_allow, cfg.series_idle_s),
            known_clusters=self._known_clusters, protected=self._protected)
        self.revisions = RevisionLog(store)
        self.read = ReadModel(self.slos, self.counters, self.marks, self.tracks, self.changes,
                              provisionals=self.provisionals)
        # After this long without data a series with no firing alert is not evaluated: every short
        # window is empty, so no condition can hold.
        self._quiet_after = {s.name: max(w.short_s for w in s.policy.windows) if s.policy.windows else 0
                             for s in slos}
        self._parsers: dict[int, RecordParser] = {}
        # Per partition, the evaluation steps crossed but not evaluated yet, in order (see process():
        # the evaluations of a large partition may be spread over several calls).
        self._due: dict[int, deque[_Step]] = {}
        self._res: BatchResult | None = None  # the result of the call under way (Engine._settle)
        # The partition whose batch is under way (processed, maybe in parts, not committed yet): the
        # admission's per-batch rankings are kept over its parts, as for the batch at once.
        self._open: int | None = None

    def _known_clusters(self, service: str) -> frozenset[str]:
        """The clusters the Kubernetes bridge reported for ``service`` (trusted placements)."""
        raw = self.changes.get(service)
        return frozenset(ServiceChanges.from_bytes(raw).clusters) if raw else frozenset()

    def _protected(self, series: str) -> bool:
        """``series`` must not be displaced: an alert of it is firing or resolving (after its due
        evaluations, which may fire it, are done)."""
        slo = self.slos.get(series.split("|", 1)[0])
        if slo is None:
            return False
        p = self.counters.partition_of(series)
        if p is not None and self._res is not None and self._due.get(p):
            self._settle(p, self._res, series)  # its due evaluations first: it may fire there
        return any(self.tracks.track(dk) != Track() for _, dk in self.tracks.keys(series, slo))

    def _settle(self, partition: int, res: BatchResult, series: str) -> None:
        """Evaluate ``series`` at every due step that has not reached it yet, in order (ahead of the
        other series of those steps: each series' steps stay in order, so the alerts are the same)."""
        for st in self._due.get(partition, ()):
            i = st.pos.get(series)
            if i is not None and i >= st.next and series not in st.settled:
                st.settled.add(series)
                self._evaluate(partition, st.at, res, series)

    # ---- partitions ---------------------------------------------------------------------------

    def assign(self, partitions: set[int]) -> None:
        """Take over ``partitions``: rebuild the index from the (recovered) store. Also the way to
        drop a partition's in-memory state after a failed batch (revoke, then assign)."""
        self.counters.recover(partitions)
        self._forget_batches(partitions)
        self.provisionals.recover(partitions)
        self.read.prune_provisional()
        self.revisions.drop(partitions)
        self.revisions.recover(partitions)
        self.marks.load(partitions)
        self.series.recount()

    def revoke(self, partitions: set[int]) -> None:
        self._forget_batches(partitions)
        self.counters.release(partitions)
        self.read.prune_provisional()
        self.revisions.drop(partitions)
        self.marks.drop(partitions)
        last = self.read.last_status
        for s in [s for s in last if not self.counters.has_series(s)]:
            del last[s]
        self.series.recount()

    def _forget_batches(self, partitions: set[int]) -> None:
        """Drop the in-memory work of ``partitions`` in progress: the batch under way, due evaluations,
        pending track changes, provisional work (assign and revoke both start from the store)."""
        self._open = None
        self.tracks.forget(partitions)
        self.provisionals.forget(partitions)
        for p in partitions:
            self._due.pop(p, None)
            self._touched.pop(p, None)
            self._provisional_at.pop(p, None)
            self._early.pop(p, None)
            self._offset.pop(p, None)

    def assigned(self) -> set[int]:
        return self.marks.assigned()

    def meta(self, partition: int) -> PartitionMeta:
        return self.marks.meta(partition)

    # ---- phase 1: process -----------------------------------------------------------------------

    def process(
        self, partition: int, messages: Sequence[tuple[bytes | None, bytes | None, int]], *, now: float,
        max_evaluations: int | None = None,
    ) -> BatchResult:
        """Validate, count and evaluate one batch of ``(key, value, offset)`` from ``partition``.

        ``now`` is the wall clock (epoch seconds), used only to reject timestamps too far ahead. A batch
        may be processed in consecutive parts before one :meth:`commit` of their results joined with
        :meth:`BatchResult.absorb` (the adapter does, to give the event loop a turn between parts): the
        counts, evaluations and alerts are those of the whole batch at once.

        ``max_evaluations`` bounds the series evaluated in this call: the steps the watermark crossed
        are evaluated in order, and what is left waits for :meth:`evaluate_due` (the adapter gives the
        event loop a turn in between; :meth:`due` says how many are left). The alerts are the same as
        at once: a step's series are those of the partition when it is crossed, and a window at step
        ``t`` sums only buckets before ``t``, which later records (all at or after the watermark) never
        touch; a quiet series may be evaluated where at once it was skipped (see :meth:`_evaluate`).
        """
        res = BatchResult(partition)
        parser = self._parsers.get(partition)
        if parser is None:
            parser = self._parsers[partition] = RecordParser(self.config.limits)
        meta = self.meta(partition)
        step_s = self.config.step_s
        if self._open != partition:
            self._open = partition
            self.series.begin(partition)
        b = _Batch(partition, now, meta, self.counters.applied_offset.get(partition, -1), meta.max_ts,
                   meta.evaluated_to + step_s if meta.evaluated_to else None, budget=_Budget(max_evaluations))
        self._res = res
        self._run_due(partition, res, b.budget)  # what an earlier part left, first
        self.series.before_ranking = lambda: self._push(b)
        # One message at a time: its records are parsed, then counted into ``agg`` and dropped before
        # the next message is parsed. A batch holds up to batch_max messages of up to hundreds of
        # records each; parsing them all first kept every record object of the batch alive at once,
        # and those peaks left pymalloc arenas it could not give back (the worker's memory grew
        # under steady load; bench/README.md, "Memory under load").
        recs: list[Playback] = []
        rejected = res.rejected
        for key, value, message_offset in messages:
            if message_offset > res.max_offset:
                res.max_offset = message_offset
                if message_offset > self._offset.get(partition, -1):
                    self._offset[partition] = message_offset
            recs.clear()
            before = len(rejected)
            parser.parse(key, value, message_offset, recs, rejected)
            b.parse_rejects += len(rejected) - before
            b.parsed += len(recs)
            self._count(b, recs, res)
        self._push(b)
        self.series.before_ranking = _nothing
        self._res = None
        res.records = b.parsed - (len(rejected) - b.parse_rejects) - res.replay_skipped
        meta.max_ts = b.max_ts
        if b.next_eval is not None:
            meta.evaluated_to = b.next_eval - step_s
        self._run_due(partition, res, b.budget)
        return res

    def due(self, partition: int) -> int:
        """Series evaluations crossed but not done yet on ``partition``."""
        return sum(len(st.series) - st.next for st in self._due.get(partition, ()))

    def evaluate_due(self, partition: int, max_evaluations: int | None = None) -> BatchResult:
        """Go on with the evaluations :meth:`process` left (part of the same batch: absorb the result)."""
        res = BatchResult(partition)
        self._run_due(partition, res, _Budget(max_evaluations))
        return res

    def _run_due(self, partition: int, res: BatchResult, budget: _Budget) -> None:
        """Evaluate the due steps in order while ``budget`` lasts (an evaluation costs one unit, a
        quiet series skipped a twentieth)."""
        queue = self._due.get(partition)
        while queue:
            st = queue[0]
            while st.next < len(st.series):
                if budget.left is not None and budget.left <= 0:
                    return
                series = st.series[st.next]
                st.next += 1
                if series in st.settled:
                    continue
                cost = 1.0 if self._evaluate(partition, st.at, res, series) else 0.05
                if budget.left is not None:
                    budget.left -= cost
            queue.popleft()

    def _count(self, b: _Batch, recs: list[Playback], res: BatchResult) -> None:
        """Count one message's records into the batch (the hot path: locals, no call per record but
        for the rare cases)."""
        cfg = self.config
        lateness, step_s, partition, now = cfg.allowed_lateness_s, cfg.step_s, b.partition, b.now
        future_limit = now + cfg.max_future_s
        committed, applied = b.meta.offset, b.applied
        max_ts, next_eval = b.max_ts, b.next_eval
        agg, rev_agg, rejected = b.agg, b.rev_agg, res.rejected
        services, dim_series, admit = self.series.services, self.series.dim_series, self.series.admit
        rev_states, load_revs = self.revisions.states, self.revisions.load
        for r in recs:
            ts, service, cluster, region, platform = r.ts, r.service, r.cluster, r.region, r.platform
            total, errors, lat, offset = r.total, r.errors, r.latency_ms, r.offset
            if offset <= committed:
                # Fully committed before a crash (the meta record is written after its chunks, its
                # alerts and its dead letters): nothing of it is missing.
                res.replay_skipped += 1
                continue
            if ts > future_limit:
                rejected.append(Rejected(c.REASON_FUTURE, f"ts {ts:.3f} is more than {cfg.max_future_s}s "
                                         f"ahead of the wall clock", offset, r.index, r.to_dict()))
                continue
            if ts > max_ts and max_ts < now:
                # A clock running ahead (up to max_future_s) must not drag the watermark past now.
                max_ts = ts if ts < now else now
                wm = max_ts - lateness
                if next_eval is None:
                    next_eval = int(wm // step_s) * step_s + step_s
                elif wm >= next_eval:
                    b.max_ts = max_ts
                    next_eval = self._cross(b, next_eval, wm, res)
            elif ts < max_ts - lateness:
                rejected.append(Rejected(c.REASON_LATE, f"ts {ts:.3f} is older than the watermark "
                                         f"{max_ts - lateness:.3f} (allowed lateness {lateness}s)",
                                         offset, r.index, r.to_dict()))
                continue
            svc = services.get(service)
            if svc is None:
                res.unmatched += 1
                continue
            dims = (service, cluster, region, platform)
            if dims not in dim_series and not admit(dims, ts):
                rejected.append(Rejected(c.REASON_SERIES_LIMIT,
                                         f"an SLO of {service} has {cfg.max_series_per_slo} series and none can "
                                         f"give way (docs/semantics.md, Limits); {'/'.join(dims)} not counted",
                                         offset, r.index, r.to_dict()))
                continue
            rev = r.revision
            if rev is not None:
                st = rev_states.get((service, cluster)) or load_revs((service, cluster), partition)
                if offset > st.committed:
                    rkey = (service, cluster, rev, int(ts // REV_BUCKET_S))
                    rcell = rev_agg.get(rkey)
                    if rcell is None:
                        rcell = rev_agg[rkey] = [0, 0, offset]
                    rcell[0] += errors
                    rcell[1] += total
                    rcell[2] = offset
            if offset <= applied:
                self.series.count_replayed(r, partition)
                continue
            where = (service, cluster, region, platform, int(ts // L0_WIDTH))
            cell = agg.get(where)
            if cell is None:
                cell = agg[where] = [0] * svc.cell_len
            cell[0] += errors
            cell[1] += total
            if lat is not None and svc.thresholds:
                cell[2] += total
                for j, thr in enumerate(svc.thresholds):
                    if lat > thr:
                        cell[3 + j] += total
        b.max_ts, b.next_eval = max_ts, next_eval

    def _push(self, b: _Batch) -> None:
        """Move the batch's pending counts into the counters and the revision log."""
        if self.config.provisional and b.agg:
            self.series.push(b.agg, b.partition, touched=self._touched.setdefault(b.partition, set()))
        else:
            self.series.push(b.agg, b.partition)
        if b.rev_agg:
            self.revisions.push(b.rev_agg, b.partition, b.max_ts)

    def _cross(self, b: _Batch, next_eval: int, wm: float, res: BatchResult) -> int:
        """The watermark crossed ``next_eval``: push what is pending and evaluate every step up to
        ``wm``; returns the next step to cross."""
        self._push(b)
        step_s = self.config.step_s
        queue = self._due.setdefault(b.partition, deque())
        series = self.counters.series(b.partition)  # the series of each step crossed now (shared)
        pos = {name: i for i, name in enumerate(series)}
        for t in steps_to(next_eval, wm, step_s, self.config.max_catchup_steps):
            res.steps += 1
            queue.append(_Step(t, series, pos))
            self._run_due(b.partition, res, b.budget)  # at once, as far as the budget goes
        return int(wm // step_s) * step_s + step_s

    def _evaluate(self, partition: int, at: int, res: BatchResult, series: str) -> bool:
        """Evaluate ``series`` at step ``at``; False when it was skipped.

        A quiet series with no data in any short window cannot fire: it is skipped (this is what keeps
        a catch-up over a gap cheap). A firing one is evaluated to resolve it. Evaluated later than its
        step was crossed (a spread batch, see process()), a series may have data after the step and
        be evaluated where at once it was skipped: its conditions are false (no data in its windows
        before the step), its alerts the same."""
        window = self.counters.window
        tracks = self.tracks
        slo = self.slos.get(series.split("|", 1)[0])
        if slo is None or not self.counters.has_series(series):
            return False  # displaced or expired since the step was crossed
        keys = tracks.keys(series, slo)
        before = [tracks.track_at(dk, at) for _, dk in keys]
        provs = [self.provisionals.get(dk) for _, dk in keys]
        if (at - self.counters.last_data(series) > self._quiet_after[slo.name] and not any(t.firing for t in before)
                and not any(p is not None and at >= p.at for p in provs)):
            return False
        ev = evaluate(slo, series, at, {w: window(series, at, w) for w in slo.windows_s})
        res.evaluations += 1
        res.statuses[series] = ev
        for (severity, dk), track, prov in zip(keys, before, provs, strict=True):
            new, change = step(track, condition=ev.active(severity), at=at, hold_s=slo.policy.hold_s)
            if new != track:
                tracks.change(dk, partition, new)
            if prov is not None:
                self._settle_provisional(slo, ev, severity, dk, prov, new, change, res)
            if change is None:
                continue
            started = new.fired_at if change is AlertState.FIRING else track.fired_at
            alert = make_alert(slo, ev, severity, change, started_at=started or at)
            if change is AlertState.FIRING:
                onset, suspects = self.suspects_for(series, slo, at)
                alert = replace(alert, suspects=tuple(suspects), burn_onset=onset)
                tracks.fired(dk, partition, alert.suspects)
            else:
                tracks.resolved(dk, partition, at)
            res.alerts.append(alert)
        return True

    def _settle_provisional(self, slo: Slo, ev: BurnEvaluation, severity: Severity, dk: str, prov: Provisional,
                            new: Track, change: AlertState | None, res: BatchResult) -> None:
        """The final evaluation of ``dk`` at ``ev.at`` meets its open provisional alert. The first final
        step at or after the provisional one settles it: confirmed when the final alert is open there,
        else retracted by a RESOLVED."""
        if ev.at < prov.at:
            # A step before the provisional one decides nothing: an alert firing here may be an earlier
            # incident (a replay after a crash, or late data) that resolves before the provisional step.
            return
        if new.firing:
            self.provisionals.settle(dk)
            res.provisional[Outcome.CONFIRMED] += 1
            self.read.prune_provisional()
            return
        self.provisionals.settle(dk)
        res.provisional[Outcome.RETRACTED] += 1
        self.read.prune_provisional()
        retraction = make_alert(slo, ev, severity, AlertState.RESOLVED, started_at=prov.at)
        res.alerts.append(replace(retraction, provisional=True, seen_at=prov.seen_at, reason=Outcome.RETRACTED.value))

    # ---- provisional evaluation ---------------------------------------------------------------------

    def live(self, partition: int, now: float) -> bool:
        """``partition`` is live: its newest event time is within the allowed lateness of ``now``."""
        max_ts = self.meta(partition).max_ts
        return bool(max_ts) and now - max_ts <= self.config.allowed_lateness_s

    def provisional(self, partition: int, *, now: float, max_evaluations: int | None = None) -> BatchResult:
        """Early firing after a batch of ``partition`` (see :mod:`streams.core.provisional`): the series
        counted into since the last provisional evaluation, evaluated at the step after the partition's
        newest event time over the data seen so far, when the partition is live (at most once per
        ``provisional_every_s`` of event time). A condition that holds for an alert with no final or
        provisional alert open opens a provisional one: its track is **written to the store now**, and
        its key is in :attr:`BatchResult.durable` (the caller makes it durable before it delivers the
        FIRING in the result). Open provisional alerts of series that are gone (displaced or expired)
        are retracted.

        ``max_evaluations`` bounds the evaluations of this call; :meth:`provisional_due` says how many
        are left for the next calls (part of the same batch: absorb the results). Call after the batch's
        due evaluations (they settle what they can first), before delivery."""
        res = BatchResult(partition)
        if self._due.get(partition):
            raise RuntimeError(f"partition {partition}: {self.due(partition)} evaluations are still due")
        self._retract_orphans(partition, res)
        if not self.config.provisional or not self.live(partition, now):
            self._touched.pop(partition, None)  # a replay or a backlog: nothing to evaluate early
            self._early.pop(partition, None)
            return res
        meta = self.meta(partition)
        queue = self._early.get(partition)
        if queue is None:
            if not self._touched.get(partition):
                return res
            if meta.max_ts < self._provisional_at.get(partition, 0.0) + self.config.provisional_every_s:
                return res  # evaluated less than provisional_every_s ago: the series wait for the next batch
            self._provisional_at[partition] = meta.max_ts
            step_s = self.config.step_s
            queue = self._early[partition] = (int(meta.max_ts // step_s) * step_s + step_s, meta.max_ts,
                                              deque(sorted(self._touched.pop(partition))))
        at, seen_at, todo = queue
        window = self.counters.window
        tracks = self.tracks
        budget = max_evaluations
        while todo and (budget is None or budget > 0):
            series = todo.popleft()
            slo = self.slos.get(series.split("|", 1)[0])
            if slo is None or not self.counters.has_series(series):
                continue
            keys = [(sev, dk) for sev, dk in tracks.keys(series, slo)
                    if not tracks.track(dk).firing and self.provisionals.get(dk) is None]
            if not keys:
                continue
            ev = evaluate(slo, series, at, {w: window(series, at, w) for w in slo.windows_s})
            res.evaluations += 1
            if budget is not None:
                budget -= 1
            suspects: tuple[int, list[Suspect]] | None = None
            for severity, dk in keys:
                if not ev.active(severity):
                    continue
                if suspects is None:
                    suspects = self.suspects_for(series, slo, at)
                onset, ranked = suspects
                alert = replace(make_alert(slo, ev, severity, AlertState.FIRING, started_at=at),
                                suspects=tuple(ranked), burn_onset=onset, provisional=True, seen_at=round(seen_at, 3))
                self.provisionals.open(dk, Provisional(partition, at, round(seen_at, 3), series, alert.suspects,
                                                       offset=self._offset.get(partition, -1)))
                res.durable.append(PROVISIONAL_PREFIX + dk)
                self.read.provisional[series] = ev
                res.provisional[Outcome.FIRED] += 1
                res.alerts.append(alert)
        if not todo:
            del self._early[partition]
        return res

    def provisional_due(self, partition: int) -> int:
        """Provisional evaluations :meth:`provisional` left for its next calls on ``partition``."""
        queue = self._early.get(partition)
        return len(queue[2]) if queue is not None else 0

    def _retract_orphans(self, partition: int, res: BatchResult) -> None:
        """Retract the open provisional alerts of ``partition`` whose series is gone (displaced by a new
        series, or expired): no final evaluation of it will come to settle them. Only once the partition's
        meta record has passed the batch that opened one: before that (a takeover replaying that batch)
        its series may simply not be counted again yet. An alert of an SLO no longer configured is left
        alone, as its final alerts are."""
        committed = self.meta(partition).offset
        gone = [(dk, p) for dk, p in self.provisionals.pending()
                if p.partition == partition and committed >= p.offset and not self.counters.has_series(p.series)]
        for dk, prov in gone:
            slo = self.slos.get(prov.series.split("|", 1)[0])
            severity = None if slo is None else next(
                (sev for sev, key in self.tracks.keys(prov.series, slo) if key == dk), None)
            if slo is None or severity is None:
                continue
            self.provisionals.settle(dk)
            res.provisional[Outcome.RETRACTED] += 1
            at = max(prov.at, self.meta(partition).evaluated_to)
            ev = evaluate(slo, prov.series, at, {w: (0, 0) for w in slo.windows_s})
            retraction = make_alert(slo, ev, severity, AlertState.RESOLVED, started_at=prov.at)
            res.alerts.append(replace(retraction, provisional=True, seen_at=prov.seen_at,
                                      reason=Outcome.RETRACTED.value))
        if gone:
            self.read.prune_provisional()

    # ---- correlation ------------------------------------------------------------------------------

    def onset(self, series: str, slo: Slo, at: int) -> int:
        """Estimated start of the burn: walking back from ``at`` in 10 s steps while the minute before
        the step burns budget (error ratio above ``1 - objective``); at most the correlation look-back.
        Resolution 10 s; a minute with no traffic ends the walk."""
        allowed = 1.0 - slo.objective
        window = self.counters.window
        t = at
        floor = at - self.config.correlation.lookback_s
        while t - L0_WIDTH >= floor:
            bad, total = window(series, t, 60)
            if total == 0 or bad / total < allowed:
                break
            t -= L0_WIDTH
        return t

    def suspects_for(self, series: str, slo: Slo, at: int) -> tuple[int, list[Suspect]]:
        """The burn onset and the ranked suspects of ``series`` burning at ``at`` (event time)."""
        _, cluster, _, platform = c.split_series_key(series)
        onset = self.onset(series, slo, at)
        raw = self.changes.get(slo.service)
        changes = ServiceChanges.from_bytes(raw) if raw else None
        by_cluster: dict[str, list[str]] = {}
        for s in self.series.of_slo(slo.name):
            by_cluster.setdefault(c.split_series_key(s)[1], []).append(s)
        ctx = BurnContext(service=slo.service, cluster=cluster, platform=platform, onset_ts=onset, at=at,
                          budget_ratio=1.0 - slo.objective, clusters=tuple(sorted(k for k in by_cluster if k != "*")))

        def revisions(rollout_cluster: str, start: float, end: float) -> RevisionCounts:
            return self.revisions.counts(slo.service, rollout_cluster, start, end)

        def traffic(of_cluster: str, start: float, end: float) -> tuple[int, int]:
            """The SLO's (errors, total) in ``of_cluster`` over [start, end), at 10 s resolution."""
            t1 = int(end) // L0_WIDTH * L0_WIDTH
            length = t1 - int(start) // L0_WIDTH * L0_WIDTH
            bad = total = 0
            if length > 0:
                for s in by_cluster.get(of_cluster, by_cluster.get("*", ())):
                    b, t = self.counters.window(s, t1, length)
                    bad += b
                    total += t
            return bad, total

        return onset, correlate(ctx, changes, revisions, self.config.correlation, traffic=traffic)

    # ---- phase 2: commit ------------------------------------------------------------------------

    def commit(self, res: BatchResult) -> None:
        """Write the batch's state: alert tracks (with their resolution markers, see
        :mod:`streams.core.tracks`), per-revision counts, counter chunks, then the partition meta
        record last."""
        for _ in self.commit_steps(res, every=None):
            pass

    def commit_steps(self, res: BatchResult, *, every: int | None) -> Iterator[None]:
        """:meth:`commit`, pausing (yielding) after about every ``every`` per-revision or counter chunk
        writes (the adapter gives the event loop a turn there when one is due). The writes and their
        order are those of :meth:`commit`; stopping at a pause leaves a prefix of them, as a crash would."""
        p = res.partition
        if self._due.get(p):
            raise RuntimeError(f"partition {p}: {self.due(p)} evaluations are still due (evaluate_due first)")
        self._open = None
        self.tracks.commit(p, self.marks.stored_to(p))
        self.provisionals.commit(p)
        yield from self.revisions.commit_steps(p, every=every)
        meta = self.meta(p)
        offset = max(res.max_offset, meta.offset)
        yield from self.counters.flush_steps(p, offset, every=every)
        if meta.evaluated_to:
            self.revisions.expire(p, meta.evaluated_to)
        expired = bool(meta.evaluated_to and self.counters.expire(p, meta.evaluated_to))
        if expired:
            self.series.recount()
        if expired or self.series.evicted_since_commit:
            self.series.evicted_since_commit = False
            last = self.read.last_status
            for series in [s for s in last if not self.counters.has_series(s)]:
                del last[series]
                self.tracks.forget_series(series)
        meta.offset = offset
        self.marks.write(p)
        has = self.counters.has_series
        self.read.last_status.update((k, ev) for k, ev in res.statuses.items() if has(k))
