"""The counting and evaluation engine for one worker: records in, alert transitions and statuses out.

Pure: the adapter hands in raw messages, the wall-clock ``now`` and a mapping store (a Faust table
with a changelog in the worker); it gets back what to publish. Two phases per batch, so that
effects happen in a safe order ("detect, then act"):

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

import math
from collections import Counter
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from streams.core import conventions as c
from streams.core.alerting import Alert, AlertState, Track, make_alert, step
from streams.core.burnrate import BurnEvaluation, evaluate
from streams.core.correlation import DEFAULT_CONFIG as DEFAULT_CORRELATION
from streams.core.correlation import BurnContext, CorrelationConfig, RevisionCounts, ServiceChanges, correlate
from streams.core.counters import L0_WIDTH, Counters
from streams.core.model import Severity, SliKind, Slo
from streams.core.records import DEFAULT_LIMITS, Limits, Playback, RecordParser, Rejected

META_PREFIX = "~meta|"
TRACK_PREFIX = "~track|"
REV_PREFIX = "~rev|"
# Error ratios per playback ``revision`` (correlation evidence): one-minute buckets, kept this long,
# at most this many revisions per service and cluster.
REV_BUCKET_S = 60
REV_KEEP_S = 3 * 3600
REV_MAX_REVISIONS = 8


@dataclass(frozen=True)
class EngineConfig:
    step_s: int = 10
    allowed_lateness_s: int = 120
    max_future_s: int = 300
    max_series_per_slo: int = 5000
    # Evaluation steps caught up after the watermark jumps over a gap (1 hour of 10 s steps); the
    # older steps of a longer gap are skipped (documented in docs/semantics.md).
    max_catchup_steps: int = 360
    limits: Limits = DEFAULT_LIMITS
    correlation: CorrelationConfig = DEFAULT_CORRELATION


@dataclass
class PartitionMeta:
    offset: int = -1  # highest source offset fully committed to the store
    max_ts: float = 0.0  # highest event time seen
    evaluated_to: int = 0  # last evaluation boundary (event time), 0 before the first

    def to_bytes(self, partition: int) -> bytes:
        return orjson.dumps(
            {"p": partition, "offset": self.offset, "max_ts": self.max_ts, "evaluated_to": self.evaluated_to}
        )


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

    def rejected_by_reason(self) -> Counter[str]:
        return Counter(r.reason for r in self.rejected)


@dataclass(frozen=True)
class _Plan:
    slo: Slo
    threshold: float | None
    threshold_index: int | None  # into _ServicePlan.thresholds
    keep: tuple[bool, bool, bool]


@dataclass(frozen=True)
class _ServicePlan:
    plans: tuple[_Plan, ...]
    thresholds: tuple[float, ...]  # distinct latency thresholds of the service's SLOs

    @property
    def cell_len(self) -> int:
        return 3 + len(self.thresholds)


def _series_name(plan: _Plan, dims: tuple[str, str, str, str]) -> str:
    kc, kr, kp = plan.keep
    return f"{plan.slo.name}|{dims[1] if kc else '*'}|{dims[2] if kr else '*'}|{dims[3] if kp else '*'}"


@dataclass
class _RevState:
    """Per (service, cluster): ``{revision: {minute: [errors, total]}}`` and the highest source offset
    applied (a replay after a crash skips what is already in)."""

    partition: int
    offset: int = -1
    revs: dict[str, dict[int, list[int]]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"p": self.partition, "o": self.offset,
                             "r": {rev: {str(m): v for m, v in mins.items()} for rev, mins in self.revs.items()}})

    @classmethod
    def from_bytes(cls, raw: bytes) -> _RevState:
        d = orjson.loads(raw)
        return cls(int(d["p"]), int(d["o"]),
                   {rev: {int(m): v for m, v in mins.items()} for rev, mins in d["r"].items()})


class Engine:
    """Owns the counters and alert tracks of the partitions assigned to this worker.

    ``changes`` maps a service to its :class:`~streams.core.correlation.ServiceChanges` (bytes; a
    Faust table co-partitioned with the playback topic in the worker): the rollouts and Kubernetes
    warnings an alert is correlated with when it fires.
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
        self._services: dict[str, _ServicePlan] = {}
        for service in sorted({s.service for s in slos}):
            mine = sorted((s for s in slos if s.service == service), key=lambda s: s.name)
            thresholds = tuple(sorted({s.indicator.latency_threshold_ms for s in mine
                                       if s.indicator.kind is SliKind.THRESHOLD
                                       and s.indicator.latency_threshold_ms is not None}))
            plans = []
            for s in mine:
                thr = s.indicator.latency_threshold_ms if s.indicator.kind is SliKind.THRESHOLD else None
                keep = tuple(d in s.group_by for d in c.DIMENSIONS)
                plans.append(_Plan(s, thr, thresholds.index(thr) if thr is not None else None,
                                   (keep[0], keep[1], keep[2])))
            self._services[service] = _ServicePlan(tuple(plans), thresholds)
        self._dim_series: dict[tuple[str, str, str, str], tuple[str, ...]] = {}
        self._tracks: dict[str, Track] = {}  # alert tracks read from (or written to) the store
        # Per dedup key whose committed track is a resolution marker: the step it resolved at and the
        # firing track before that batch (what a replay of that batch must start from).
        self._before: dict[str, tuple[int, Track]] = {}
        # Per partition, the dedup keys whose resolution marker may be deleted once the partition's
        # stored meta record has evaluated past the step it resolved at; and that stored step.
        self._markers: dict[int, set[str]] = {}
        self._stored_evaluated_to: dict[int, int] = {}
        self._keys: dict[str, tuple[tuple[Severity, str], ...]] = {}
        # After this long without data a series with no firing alert is not evaluated: every short
        # window is empty, so no condition can hold.
        self._quiet_after = {s.name: max(w.short_s for w in s.policy.windows) if s.policy.windows else 0
                             for s in slos}
        self._parsers: dict[int, RecordParser] = {}
        self._meta: dict[int, PartitionMeta] = {}
        self._pending_tracks: dict[str, tuple[int, Track]] = {}
        # Suspects of alerts fired in the batch being processed, written with their tracks.
        self._pending_suspects: dict[str, tuple[int, tuple[Mapping[str, Any], ...]]] = {}
        # The step at which an alert resolved in the batch being processed.
        self._pending_resolved: dict[str, tuple[int, int]] = {}
        self._revs: dict[tuple[str, str], _RevState] = {}
        self._revs_dirty: set[tuple[str, str]] = set()
        self._series_per_slo: Counter[str] = Counter()
        self._admitted: set[str] = set()
        self.last_status: dict[str, BurnEvaluation] = {}
        # Per series, [bad, total] counted since this worker started (never reset, never dropped when
        # a partition leaves): the cumulative Prometheus counters of every SLO series.
        self.sli_totals: dict[str, list[int]] = {}

    # ---- partitions ---------------------------------------------------------------------------

    def assign(self, partitions: set[int]) -> None:
        """Take over ``partitions``: rebuild the index from the (recovered) store. Also the way to
        drop a partition's in-memory state after a failed batch (revoke, then assign)."""
        self.counters.recover(partitions)
        self._tracks.clear()
        self._before.clear()
        for p in partitions:
            self._markers.pop(p, None)
        self._drop_revs(partitions)
        self._drop_pending(partitions)
        for p in partitions:
            raw = self.store.get(f"{META_PREFIX}{p}")
            if raw is None:
                self._meta[p] = PartitionMeta()
            else:
                d = orjson.loads(raw)
                self._meta[p] = PartitionMeta(int(d["offset"]), float(d["max_ts"]), int(d["evaluated_to"]))
            self._stored_evaluated_to[p] = self._meta[p].evaluated_to
        self._recount_series()

    def _drop_pending(self, partitions: set[int]) -> None:
        for pending in (self._pending_tracks, self._pending_suspects, self._pending_resolved):
            for dk in [dk for dk, (p, _) in pending.items() if p in partitions]:
                del pending[dk]

    def revoke(self, partitions: set[int]) -> None:
        self.counters.release(partitions)
        self._tracks.clear()
        self._before.clear()
        for p in partitions:
            self._markers.pop(p, None)
        self._drop_revs(partitions)
        self._drop_pending(partitions)
        for p in partitions:
            self._meta.pop(p, None)
        for s in [s for s in self.last_status if not self.counters.has_series(s)]:
            del self.last_status[s]
        self._recount_series()

    def assigned(self) -> set[int]:
        return set(self._meta)

    def _drop_revs(self, partitions: set[int]) -> None:
        for rk in [rk for rk, st in self._revs.items() if st.partition in partitions]:
            del self._revs[rk]
            self._revs_dirty.discard(rk)

    def meta(self, partition: int) -> PartitionMeta:
        m = self._meta.get(partition)
        if m is None:
            m = self._meta[partition] = PartitionMeta()
        return m

    def _recount_series(self) -> None:
        self._dim_series.clear()
        self._admitted = set(self.counters.all_series())
        self._series_per_slo = Counter(s.split("|", 1)[0] for s in self._admitted)

    # ---- phase 1: process -----------------------------------------------------------------------

    def process(
        self, partition: int, messages: Sequence[tuple[bytes | None, bytes | None, int]], *, now: float
    ) -> BatchResult:
        """Validate, count and evaluate one batch of ``(key, value, offset)`` from ``partition``.

        ``now`` is the wall clock (epoch seconds), used only to reject timestamps too far ahead.
        """
        cfg = self.config
        res = BatchResult(partition)
        parser = self._parsers.get(partition)
        if parser is None:
            parser = self._parsers[partition] = RecordParser(cfg.limits)
        # One message at a time: its records are parsed, then counted into ``agg`` and dropped before
        # the next message is parsed. A batch holds up to batch_max messages of up to hundreds of
        # records each; parsing them all first kept every record object of the batch alive at once,
        # and those peaks left pymalloc arenas it could not give back (the worker's memory grew
        # under steady load; bench/README.md, "Memory under load").
        recs: list[Playback] = []
        parsed = parse_rejects = 0
        meta = self.meta(partition)
        counters = self.counters
        applied = counters.applied_offset.get(partition, -1)
        lateness = cfg.allowed_lateness_s
        step_s = cfg.step_s
        future_limit = now + cfg.max_future_s
        max_ts = meta.max_ts
        next_eval = meta.evaluated_to + step_s if meta.evaluated_to else None
        # One cell per (service, cluster, region, platform, 10 s bucket): [errors, total, total with a
        # latency, then one "slower than threshold" count per distinct latency threshold of the service].
        agg: dict[tuple[str, str, str, str, int], list[int]] = {}
        # Per (service, cluster, revision, minute): [errors, total], for records that name a revision.
        rev_agg: dict[tuple[str, str, str, int], list[int]] = {}
        services = self._services
        dim_series = self._dim_series
        rejected = res.rejected
        for key, value, message_offset in messages:
            if message_offset > res.max_offset:
                res.max_offset = message_offset
            recs.clear()
            before = len(rejected)
            parser.parse(key, value, message_offset, recs, rejected)
            parse_rejects += len(rejected) - before
            parsed += len(recs)
            for r in recs:
                ts, service, cluster, region, platform = r.ts, r.service, r.cluster, r.region, r.platform
                total, errors, lat, offset = r.total, r.errors, r.latency_ms, r.offset
                if offset <= meta.offset:
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
                        self._push(agg, partition)
                        if rev_agg:
                            self._push_revisions(rev_agg, partition, max_ts)
                        last = int(wm // step_s) * step_s
                        first = max(next_eval, last - (cfg.max_catchup_steps - 1) * step_s)
                        for t in range(first, last + 1, step_s):
                            self._evaluate(partition, t, res)
                        next_eval = last + step_s
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
                if dims not in dim_series and not self._admit(dims):
                    rejected.append(Rejected(c.REASON_SERIES_LIMIT,
                                             f"an SLO of {service} already has {cfg.max_series_per_slo} "
                                             f"series; {'/'.join(dims)} not counted", offset, r.index, r.to_dict()))
                    continue
                rev = r.revision
                if rev is not None:
                    rk = (service, cluster)
                    st = self._revs.get(rk)
                    if st is None:
                        st = self._rev_state(rk, partition)
                    if offset > st.offset:
                        rcell = rev_agg.get((service, cluster, rev, int(ts // REV_BUCKET_S)))
                        if rcell is None:
                            rcell = rev_agg[(service, cluster, rev, int(ts // REV_BUCKET_S))] = [0, 0, offset]
                        rcell[0] += errors
                        rcell[1] += total
                        rcell[2] = offset
                if offset <= applied:
                    self._count_replayed(r, partition)
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
        self._push(agg, partition)
        if rev_agg:
            self._push_revisions(rev_agg, partition, max_ts)
        res.records = parsed - (len(rejected) - parse_rejects) - res.replay_skipped
        meta.max_ts = max_ts
        if next_eval is not None:
            meta.evaluated_to = next_eval - step_s
        return res

    def _admit(self, dims: tuple[str, str, str, str]) -> bool:
        """Admit the series of every SLO of ``dims[0]`` for these dimensions, unless one is past the
        series limit of its SLO."""
        svc = self._services[dims[0]]
        names = tuple(_series_name(plan, dims) for plan in svc.plans)
        new = [n for n in names if n not in self._admitted]
        limit = self.config.max_series_per_slo
        if any(self._series_per_slo[n.split("|", 1)[0]] >= limit for n in new):
            return False
        for n in new:
            self._series_per_slo[n.split("|", 1)[0]] += 1
            self._admitted.add(n)
        self._dim_series[dims] = names
        return True

    def _count_replayed(self, r: Playback, partition: int) -> bool:
        svc = self._services.get(r.service)
        counted = False
        bucket0 = int(r.ts // L0_WIDTH)
        for plan in svc.plans if svc else ():
            if plan.threshold is None:
                bad, total = r.errors, r.total
            elif r.latency_ms is None:
                continue
            else:
                bad, total = (r.total if r.latency_ms > plan.threshold else 0), r.total
            series = _series_name(plan, (r.service, r.cluster, r.region, r.platform))
            counted |= self.counters.add_replayed(series, partition, bucket0, bad, total, r.offset)
        return counted

    def _push(self, agg: dict[tuple[str, str, str, str, int], list[int]], partition: int) -> None:
        """Move aggregated cells into the counters, expanding each into its SLO series."""
        add = self.counters.add
        services = self._services
        dim_series = self._dim_series
        totals = self.sli_totals
        for (service, cluster, region, platform, bucket0), cell in agg.items():
            svc = services[service]
            names = dim_series[(service, cluster, region, platform)]
            for plan, series in zip(svc.plans, names, strict=True):
                if plan.threshold_index is None:
                    bad, total = cell[0], cell[1]
                elif cell[2]:
                    bad, total = cell[3 + plan.threshold_index], cell[2]
                else:
                    continue
                add(series, partition, bucket0, bad, total)
                acc = totals.get(series)
                if acc is None:
                    acc = totals[series] = [0, 0]
                acc[0] += bad
                acc[1] += total
        agg.clear()

    # ---- revisions (correlation evidence) --------------------------------------------------------

    def _rev_state(self, rk: tuple[str, str], partition: int) -> _RevState:
        raw = self.store.get(f"{REV_PREFIX}{rk[0]}|{rk[1]}")
        st = self._revs[rk] = _RevState.from_bytes(raw) if raw is not None else _RevState(partition)
        return st

    def _push_revisions(self, rev_agg: dict[tuple[str, str, str, int], list[int]], partition: int,
                        max_ts: float) -> None:
        horizon = int((max_ts - REV_KEEP_S) // REV_BUCKET_S)
        touched: set[tuple[str, str]] = set()
        for (service, cluster, rev, minute), (errors, total, offset) in rev_agg.items():
            rk = (service, cluster)
            st = self._revs.get(rk) or self._rev_state(rk, partition)
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
        rev_agg.clear()
        for rk in touched:
            st = self._revs[rk]
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
            self._revs_dirty.add(rk)

    def revision_counts(self, service: str, cluster: str, start: float, end: float) -> dict[str, tuple[int, int]]:
        """(errors, total) per playback ``revision`` of ``service`` in ``cluster`` over the minutes in
        ``[start, end)``."""
        rk = (service, cluster)
        st = self._revs.get(rk)
        if st is None:
            raw = self.store.get(f"{REV_PREFIX}{service}|{cluster}")
            if raw is None:
                return {}
            st = self._revs[rk] = _RevState.from_bytes(raw)
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

    def suspects_for(self, series: str, slo: Slo, at: int) -> tuple[int, list[dict[str, Any]]]:
        """The burn onset and the ranked suspects of ``series`` burning at ``at`` (event time)."""
        cfg = self.config.correlation
        _, cluster, _, platform = c.split_series_key(series)
        onset = self.onset(series, slo, at)
        raw = self.changes.get(slo.service)
        changes = ServiceChanges.from_bytes(raw) if raw else None
        ctx = BurnContext(service=slo.service, cluster=cluster, platform=platform, onset_ts=onset, at=at)

        def revisions(rollout_cluster: str, start: float, end: float) -> RevisionCounts:
            return self.revision_counts(slo.service, rollout_cluster, start, end)

        return onset, correlate(ctx, changes, revisions, cfg)

    def suspects(self, dedup: str) -> tuple[Mapping[str, Any], ...]:
        """The suspects recorded when the alert of ``dedup`` fired (empty when not firing)."""
        pending = self._pending_suspects.get(dedup)
        if pending is not None:
            return pending[1]
        return self._stored_suspects(dedup)

    def _evaluate(self, partition: int, at: int, res: BatchResult) -> None:
        res.steps += 1
        window = self.counters.window
        last_data = self.counters.last_data
        for series in self.counters.series(partition):
            slo = self.slos.get(series.split("|", 1)[0])
            if slo is None:
                continue
            keys = self._dedup_keys(series, slo)
            tracks = [self.track_at(dk, at) for _, dk in keys]
            # A quiet series with no data in any short window cannot fire: skip it (this is what
            # keeps a catch-up over a gap cheap). A firing one is evaluated to resolve it.
            if at - last_data(series) > self._quiet_after[slo.name] and not any(t.firing for t in tracks):
                continue
            counts = {w: window(series, at, w) for w in slo.windows_s}
            ev = evaluate(slo, series, at, counts)
            res.evaluations += 1
            res.statuses[series] = ev
            for (severity, dk), track in zip(keys, tracks, strict=True):
                new, change = step(track, condition=ev.active(severity), at=at, hold_s=slo.policy.hold_s)
                if new != track:
                    self._pending_tracks[dk] = (partition, new)
                if change is not None:
                    started = new.fired_at if change is AlertState.FIRING else track.fired_at
                    alert = make_alert(slo, ev, severity, change, started_at=started or at)
                    if change is AlertState.FIRING:
                        onset, suspects = self.suspects_for(series, slo, at)
                        alert = replace(alert, suspects=tuple(suspects), burn_onset=onset)
                        self._pending_suspects[dk] = (partition, alert.suspects)
                    else:
                        self._pending_suspects[dk] = (partition, ())
                        self._pending_resolved[dk] = (partition, at)
                    res.alerts.append(alert)

    def _dedup_keys(self, series: str, slo: Slo) -> tuple[tuple[Severity, str], ...]:
        keys = self._keys.get(series)
        if keys is None:
            severities = [sev for sev in (Severity.PAGE, Severity.TICKET)
                          if any(w.severity is sev for w in slo.policy.windows)]
            keys = self._keys[series] = tuple((sev, c.dedup_key(series, str(sev))) for sev in severities)
        return keys

    def track(self, dedup: str) -> Track:
        """The alert track of a dedup key: pending in this batch, else as committed."""
        pending = self._pending_tracks.get(dedup)
        if pending is not None:
            return pending[1]
        return self._committed_track(dedup)

    def _committed_track(self, dedup: str) -> Track:
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

    def _stored_suspects(self, dedup: str) -> tuple[Mapping[str, Any], ...]:
        """The suspects in the stored track of ``dedup`` (a marker keeps those of its incident)."""
        raw = self.store.get(TRACK_PREFIX + dedup)
        return () if raw is None else tuple(orjson.loads(raw).get("suspects") or ())

    def track_at(self, dedup: str, at: int) -> Track:
        """The track of ``dedup`` as it stood before the evaluation at step ``at``: :meth:`track`,
        except for a replay after a crash, which evaluates steps before what was committed.

        - A track that resolved at a later step (a resolution marker, or a track that fired again in
          the resolving batch; see :meth:`commit`) was still the firing track it was before that batch.
        - A track that fired at a later step had not fired yet: it was idle. Tracks are written before
          the partition's meta record, so after a crash between the two (or a changelog recovery that
          stops short of the meta record) a batch is replayed from the older meta record and meets
          them. Stepping such a track instead would resolve it early, or fire it again: a second
          incident that the uninterrupted run never opened."""
        pending = self._pending_tracks.get(dedup)
        if pending is not None:  # changed earlier in this batch: that is the state now
            track = pending[1]
        else:
            track = self._committed_track(dedup)
            before = self._before.get(dedup)
            if before is not None and at < before[0]:
                track = before[1]
        if track.firing and track.fired_at is not None and track.fired_at > at:
            return Track()
        return track

    def committed_alerts(self, series: str) -> list[tuple[Severity, bool]]:
        """Each alert severity of a series and whether it is firing, as committed to the store."""
        slo = self.slos[series.split("|", 1)[0]]
        return [(sev, self._committed_track(dk).firing) for sev, dk in self._dedup_keys(series, slo)]

    # ---- reading for the gate -------------------------------------------------------------------

    def partition_of_service(self, service: str) -> int | None:
        """The assigned partition holding ``service``'s series, if any (all of a service's series are
        on one partition: the playback key is the service)."""
        for series in self.counters.all_series():
            slo = self.slos.get(series.split("|", 1)[0])
            if slo is not None and slo.service == service:
                return self.counters.partition_of(series)
        return None

    def series_by_service(self) -> dict[str, list[str]]:
        """Every assigned series, grouped by service, in one pass (for a scrape)."""
        out: dict[str, list[str]] = {}
        for series in sorted(self.counters.all_series()):
            slo = self.slos.get(series.split("|", 1)[0])
            if slo is not None:
                out.setdefault(slo.service, []).append(series)
        return out

    def service_series(self, service: str) -> list[str]:
        names = {s.name for s in self.slos.values() if s.service == service}
        return sorted(x for x in self.counters.all_series() if x.split("|", 1)[0] in names)

    def current_status(self, series: str) -> BurnEvaluation | None:
        """The evaluation of ``series`` at its partition's last evaluation step: the one made then, or
        computed now at that step (after a restart; or for a series gone quiet, which the step skips:
        a series without traffic while its partition is fresh is quiet, not stale)."""
        ev = self.last_status.get(series)
        slo = self.slos.get(series.split("|", 1)[0])
        p = self.counters.partition_of(series)
        if slo is None or p is None or p not in self._meta or not self._meta[p].evaluated_to:
            return ev
        at = self._meta[p].evaluated_to
        if ev is not None and ev.at >= at:
            return ev
        ev = evaluate(slo, series, at, {w: self.counters.window(series, at, w) for w in slo.windows_s})
        self.last_status[series] = ev
        return ev

    def platform_counts(self, slo_name: str, *, cluster: str | None, window_s: int
                        ) -> tuple[tuple[int, int], tuple[int, int], int | None]:
        """``((bad, total) on kubernetes, (bad, total) on legacy, at)`` of an SLO over the
        ``window_s`` before its partition's last evaluation step. ``cluster`` filters the kubernetes
        side only (legacy placements have data centres, not clusters). Series that group the
        platform away count on neither side."""
        slo = self.slos[slo_name]
        k8s = [0, 0]
        legacy = [0, 0]
        at: int | None = None
        for series in self.service_series(slo.service):
            name, s_cluster, _, platform = c.split_series_key(series)
            if name != slo_name or platform == c.ANY:
                continue
            p = self.counters.partition_of(series)
            if p is None or p not in self._meta or not self._meta[p].evaluated_to:
                continue
            at = self._meta[p].evaluated_to
            if platform == "kubernetes" and cluster is not None and s_cluster not in (cluster, c.ANY):
                continue
            bad, total = self.counters.window(series, at, window_s)
            side = k8s if platform == "kubernetes" else legacy
            side[0] += bad
            side[1] += total
        return (k8s[0], k8s[1]), (legacy[0], legacy[1]), at

    # ---- phase 2: commit ------------------------------------------------------------------------

    def commit(self, res: BatchResult) -> None:
        """Write the batch's state: alert tracks, counter chunks, then the partition meta record.

        A track the batch resolved is not deleted but replaced by a resolution marker: an idle track
        that also holds the step it resolved at and the firing track before the batch. A crash before
        the meta record replays the batch from the older one, whose steps must meet the incident
        still open (a deleted track would let the still-burning first steps fire it again: a second
        incident); a crash after it must not find the incident open (a kept firing track would
        swallow the next page). The marker is both, by step (:meth:`track_at`)."""
        p = res.partition
        stored_to = self._stored_evaluated_to.get(p, 0)
        for dk, (tp, track) in list(self._pending_tracks.items()):
            if tp != p:
                continue
            del self._pending_tracks[dk]
            pending_suspects = self._pending_suspects.pop(dk, None)
            suspects = None if pending_suspects is None else pending_suspects[1]
            resolved = self._pending_resolved.pop(dk, None)
            # The track this batch started from: as stored, or, while a replay from the stored meta
            # record can still need it, the one remembered from a resolving batch not yet covered
            # by a meta record (a replay of that batch, crashed again, must find it once more).
            live = self._before.get(dk)
            live = live if live is not None and live[0] > stored_to else None
            start = live[1] if live is not None else self._committed_track(dk)
            start_suspects = self._stored_suspects(dk) if start.firing else ()
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
                continue
            body = track.to_json()
            body["p"] = p
            if track == Track():
                suspects = start_suspects  # a marker: what a replay reopening the incident shows
            elif suspects is None:  # unchanged since the alert fired: keep what was recorded then
                suspects = self.suspects(dk) if track.firing else ()
            if suspects:
                body["suspects"] = list(suspects)
            if keep is not None:
                body["resolved_at"], body["before"] = keep[0], keep[1].to_json()
                self._before[dk] = keep
                self._markers.setdefault(p, set()).add(dk)
            else:
                self._before.pop(dk, None)
            self.store[TRACK_PREFIX + dk] = orjson.dumps(body)
            self._tracks[dk] = track
        # What the stored meta record has evaluated past: no replay can start before it any more.
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
        for rk in [rk for rk in self._revs_dirty if self._revs[rk].partition == p]:
            self._revs_dirty.discard(rk)
            self.store[f"{REV_PREFIX}{rk[0]}|{rk[1]}"] = self._revs[rk].to_bytes()
        meta = self.meta(p)
        offset = max(res.max_offset, meta.offset)
        self.counters.flush(p, offset)
        if meta.evaluated_to and self.counters.expire(p, meta.evaluated_to):
            self._recount_series()
            for series in [s for s in self.last_status if not self.counters.has_series(s)]:
                del self.last_status[series]
                self._keys.pop(series, None)
        meta.offset = offset
        self.store[f"{META_PREFIX}{p}"] = meta.to_bytes(p)
        self._stored_evaluated_to[p] = meta.evaluated_to
        self.last_status.update(res.statuses)

    # ---- reading ------------------------------------------------------------------------------

    def status_record(self, ev: BurnEvaluation, *, now: float) -> dict[str, Any]:
        """The ``slo.status`` value for an evaluation (compacted topic, key = series)."""
        slo = self.slos[ev.slo]
        _, cluster, region, platform = c.split_series_key(ev.series)
        alerts = {}
        for sev in (Severity.PAGE, Severity.TICKET):
            t = self.track_at(c.dedup_key(ev.series, str(sev)), ev.at)
            alerts[str(sev)] = {"state": "firing" if t.firing else "ok", "since": t.fired_at}
        p = self.counters.partition_of(ev.series)
        newest = self._meta[p].max_ts if p is not None and p in self._meta else None
        return {
            "schema_version": c.SCHEMA_VERSION,
            "series": ev.series,
            "slo": ev.slo,
            "service": slo.service,
            "dimensions": {"cluster": cluster, "region": region, "platform": platform},
            "objective": slo.objective,
            "evaluated_at": ev.at,
            "newest_event_ts": newest,
            "processed_at": round(now, 3),
            "burn_rates": {k: _finite(v) for k, v in ev.burn_rates.items()},
            "error_budget_remaining": _finite(ev.budget_remaining),
            "good_total": {
                _w(w): {"bad": wc.bad, "total": wc.total} for w, wc in sorted(ev.counts.items())
            },
            "conditions": [
                {
                    "severity": str(cr.window.severity),
                    "windows": cr.window.name,
                    "factor": cr.window.factor,
                    "long_burn": _finite(cr.long_burn),
                    "short_burn": _finite(cr.short_burn),
                    "met": cr.met,
                    "insufficient_data": cr.insufficient_data,
                }
                for cr in ev.conditions
            ],
            "alerts": alerts,
        }


def _w(seconds: int) -> str:
    from streams.core.model import format_duration

    return format_duration(seconds)


def _finite(x: float) -> float:
    return round(x, 6) if math.isfinite(x) else 0.0
