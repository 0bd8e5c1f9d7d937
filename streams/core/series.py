"""Which SLO series a playback record counts in, and which series are admitted (pure; part of the engine).

A record of a service counts once in each SLO of that service: in the series named by the record's
dimensions, with the ones the SLO groups away shown as ``*``. A latency SLO counts only records
with a ``latency_ms``, as bad when slower than its threshold. The engine aggregates a batch into one
cell per (service, cluster, region, platform, 10 s bucket): ``[errors, total, total with a latency,
then one "slower than threshold" count per distinct threshold of the service]``; :meth:`SeriesIndex.push`
expands the cells into the series' counters.

Admission (docs/semantics.md, "Limits"): at most ``max_series_per_slo`` series per SLO. A record that
would open one more at the limit may take the place of an admitted one, so that a burst of junk cannot
lock real placements out for the SLO window:

- a *trusted* new series (a kept dimension matches the configured allow-list, or its cluster is one the
  Kubernetes bridge reported for the service) takes the place of the untrusted one with the fewest events
  in the SLO window;
- any other new series takes the place of the untrusted one fed longest ago, only if that one has had no
  data for ``idle_s`` (a junk burst is recycled after that long, a live series is never displaced by junk);
- trusted series and series with an open alert are never displaced (a series' evaluations still due
  in the batch are done first: it may fire there);
- a record is admitted in every SLO of its service or in none (nothing is displaced for a refused one).

A record that finds no place is refused (dead letter ``series_limit``); the refusal is counted per SLO
and its placement kept in a small sample for the pipeline-health dashboard. A displaced series loses its
counts and its Prometheus counters (it is forgotten as if it had expired).
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from streams.core import conventions as c
from streams.core.counters import L0_WIDTH, Counters
from streams.core.model import SliKind, Slo
from streams.core.wire.playback import Playback

Dims = tuple[str, str, str, str]  # service, cluster, region, platform
# (service, cluster, region, platform, 10 s bucket) -> the cell above
Cells = dict[tuple[str, str, str, str, int], list[int]]


@dataclass(frozen=True)
class Plan:
    """How one SLO counts: its latency threshold (None for a ratio SLO) and the dimensions it keeps."""

    slo: Slo
    threshold: float | None
    threshold_index: int | None  # into ServicePlan.thresholds
    keep: tuple[bool, bool, bool]

    def series(self, dims: Dims) -> str:
        kc, kr, kp = self.keep
        return f"{self.slo.name}|{dims[1] if kc else '*'}|{dims[2] if kr else '*'}|{dims[3] if kp else '*'}"


@dataclass(frozen=True)
class ServicePlan:
    plans: tuple[Plan, ...]
    thresholds: tuple[float, ...]  # distinct latency thresholds of the service's SLOs

    @property
    def cell_len(self) -> int:
        return 3 + len(self.thresholds)


def plan_services(slos: Sequence[Slo]) -> dict[str, ServicePlan]:
    out: dict[str, ServicePlan] = {}
    for service in sorted({s.service for s in slos}):
        mine = sorted((s for s in slos if s.service == service), key=lambda s: s.name)
        thresholds = tuple(sorted({s.indicator.latency_threshold_ms for s in mine
                                   if s.indicator.kind is SliKind.THRESHOLD
                                   and s.indicator.latency_threshold_ms is not None}))
        plans = []
        for s in mine:
            thr = s.indicator.latency_threshold_ms if s.indicator.kind is SliKind.THRESHOLD else None
            keep = tuple(d in s.group_by for d in c.DIMENSIONS)
            plans.append(Plan(s, thr, thresholds.index(thr) if thr is not None else None, (keep[0], keep[1], keep[2])))
        out[service] = ServicePlan(tuple(plans), thresholds)
    return out


# Dimension tuples remembered as admitted (a cache: a tuple not in it is admitted again, cheaply). When
# an SLO groups a dimension away, new values of it make no new series, so the series limit does not
# bound this cache: its own limit does.
MAX_DIMENSION_TUPLES = 100_000
# Refused placements remembered per SLO for the dashboard (the most recent ones).
REFUSED_SAMPLE = 10


@dataclass(frozen=True)
class Admission:
    """How new series are admitted at the limit (see the module doc)."""

    max_series_per_slo: int = 5000
    # (dimension, fnmatch pattern): a series whose kept dimension matches is trusted.
    allow: tuple[tuple[str, str], ...] = ()
    idle_s: int = 3600
    max_dimension_tuples: int = MAX_DIMENSION_TUPLES


@dataclass
class Refusals:
    """Refusals of one SLO at its series limit: the count, and the most recent placements refused."""

    count: int = 0
    # (cluster, region, platform) -> refusals, the most recently refused last
    sample: OrderedDict[tuple[str, str, str], int] = field(default_factory=OrderedDict)

    def note(self, placement: tuple[str, str, str]) -> None:
        self.count += 1
        self.sample[placement] = self.sample.get(placement, 0) + 1
        self.sample.move_to_end(placement)
        while len(self.sample) > REFUSED_SAMPLE:
            self.sample.popitem(last=False)


def _placement(series: str) -> tuple[str, str, str]:
    _, cluster, region, platform = series.split("|")
    return cluster, region, platform


class SeriesIndex:
    """The counting plans per service, the admitted series, and the counts since the worker started.

    ``known_clusters(service)`` gives the clusters the Kubernetes bridge reported for a service;
    ``protected(series)`` says whether a series has an open alert. Both are asked only at the limit.
    """

    def __init__(self, slos: Sequence[Slo], counters: Counters, *, admission: Admission = Admission(),
                 known_clusters: Callable[[str], Collection[str]] = lambda service: (),
                 protected: Callable[[str], bool] = lambda series: False) -> None:
        self.services = plan_services(slos)
        self._service_of = {s.name: s.service for s in slos}
        self.counters = counters
        self.admission = admission
        self.max_series_per_slo = admission.max_series_per_slo
        self.max_dimension_tuples = admission.max_dimension_tuples
        self.known_clusters = known_clusters
        self.protected = protected
        # Called before candidates are ranked: the engine pushes the batch's counts so far.
        self.before_ranking: Callable[[], None] = lambda: None
        self.dim_series: dict[Dims, tuple[str, ...]] = {}  # dimensions already admitted -> their series
        self._by_slo: dict[str, set[str]] = {}
        self._admitted: set[str] = set()
        # Per series, [bad, total] counted since this worker started (never reset, never dropped when
        # a partition leaves): the cumulative Prometheus counters of every SLO series.
        self.sli_totals: dict[str, list[int]] = {}
        self.refusals: dict[str, Refusals] = {}  # per SLO, since the worker started
        self.evicted: Counter[str] = Counter()  # series displaced per SLO, since the worker started
        self.evicted_since_commit = False
        # Per batch: the partition, its event time, the eviction candidates per SLO (oldest data
        # first) and the trusted clusters per service, built when first needed.
        self._partition = -1
        self._at = 0.0
        self._idle: dict[str, deque[tuple[float, str]]] = {}
        self._light: dict[str, deque[tuple[int, float, str]]] = {}
        self._admitted_at: dict[str, float] = {}
        self._window_s = {s.name: s.window_s for s in slos}
        self._known: dict[str, Collection[str]] = {}

    def recount(self) -> None:
        """Rebuild the admission state from the counters' series (after an assignment or expiry)."""
        self.dim_series.clear()
        self._admitted = set(self.counters.all_series())
        self._by_slo = {}
        for s in self._admitted:
            self._by_slo.setdefault(s.split("|", 1)[0], set()).add(s)
        self._forget_batch()

    def _forget_batch(self) -> None:
        self._idle.clear()
        self._light.clear()
        self._admitted_at.clear()

    def series_count(self, slo: str) -> int:
        return len(self._by_slo.get(slo, ()))

    def of_slo(self, slo: str) -> Collection[str]:
        """The admitted series of ``slo`` (at most its series limit)."""
        return self._by_slo.get(slo, ())

    def begin(self, partition: int) -> None:
        """A batch of ``partition`` starts (the engine calls this once for all its parts): what was
        learnt for the last one is out of date."""
        self._partition = partition
        self._forget_batch()
        self._known.clear()

    def admit(self, dims: Dims, at: float) -> bool:
        """Admit the series of every SLO of ``dims[0]`` for these dimensions (``at``: the record's
        event time), making room at the limit as the module doc says; False when one finds no room.
        All or nothing: every SLO finds room (or a series to displace) before any is displaced or added."""
        svc = self.services[dims[0]]
        names = tuple(plan.series(dims) for plan in svc.plans)
        limit = self.max_series_per_slo
        victims: list[tuple[deque[Any], str]] = []
        for plan, n in zip(svc.plans, names, strict=True):
            if n in self._admitted:
                continue
            slo = plan.slo.name
            if len(self._by_slo.get(slo, ())) < limit:
                continue
            found = self._victim(slo, self._trusted(plan.slo.service, n), at)
            if found is None:
                self.refusals.setdefault(slo, Refusals()).note((dims[1], dims[2], dims[3]))
                return False
            victims.append(found)
        for queue, victim in victims:
            queue.popleft()
            self.evict(victim)
        for plan, n in zip(svc.plans, names, strict=True):
            if n not in self._admitted:
                self._by_slo.setdefault(plan.slo.name, set()).add(n)
                self._admitted.add(n)
                self._admitted_at[n] = at
        if len(self.dim_series) >= self.max_dimension_tuples:
            self.dim_series.clear()  # a cache: the tuples seen again are admitted again
        self.dim_series[dims] = names
        return True

    def _trusted(self, service: str, series: str) -> bool:
        """A kept dimension of ``series`` (not ``*``) matches the allow-list, or its cluster is known."""
        values = _placement(series)
        for (dim, pattern) in self.admission.allow:
            v = values[c.DIMENSIONS.index(dim)]
            if v != "*" and fnmatchcase(v, pattern):
                return True
        if values[0] == "*":
            return False
        known = self._known.get(service)
        if known is None:
            known = self._known[service] = self.known_clusters(service)
        return values[0] in known

    def _victim(self, slo: str, trusted: bool, at: float) -> tuple[deque[Any], str] | None:
        """The series of ``slo`` a new one would displace (see the module doc), at the head of the
        returned candidate queue (the caller pops it when it displaces it); None when there is none.

        Candidates are the untrusted series of the batch's partition (their state is written with this
        batch), those admitted earlier in this batch included, with no alert open and no evaluation
        due. An untrusted newcomer takes the place of the one fed longest ago, if that has been idle
        ``idle_s``; a trusted newcomer takes the place of the one with the fewest events in the SLO
        window (junk before a busy placement), fed longest ago first. The batch's counts so far are
        pushed into the counters before the candidates are ranked (``before_ranking``)."""
        key = self._recency
        if not trusted:
            cands = self._idle.get(slo)
            if cands is None:
                self.before_ranking()
                cands = self._idle[slo] = deque(sorted((key(s), s) for s in self._candidates_of(slo)))
            while cands:
                last, s = cands[0]
                if s not in self._admitted or key(s) != last:
                    cands.popleft()  # gone, or fed since the list was made
                    continue
                if at - last < self.admission.idle_s:
                    return None  # the one fed longest ago is not idle: no other is (the common case)
                if self.protected(s):
                    cands.popleft()
                    continue
                return cands, s
            return None
        light = self._light.get(slo)
        if light is None:
            self.before_ranking()
            window = self._window_s[slo]
            at10 = int(at // L0_WIDTH) * L0_WIDTH
            light = self._light[slo] = deque(sorted(
                (self.counters.window(s, at10, window)[1], key(s), s) for s in self._candidates_of(slo)))
        while light:
            s = light[0][2]
            if s in self._admitted and not self.protected(s):
                return light, s
            light.popleft()
        return None

    def _candidates_of(self, slo: str) -> list[str]:
        part = self.counters.partition_of
        service = self._service_of[slo]
        return [s for s in self._by_slo.get(slo, ())
                if (s in self._admitted_at or part(s) == self._partition) and not self._trusted(service, s)]

    def _recency(self, series: str) -> float:
        """When ``series`` last had data: its newest counted bucket, or the event time it was admitted
        at in this batch (its counts are not in the counters before the batch pushes them)."""
        return max(self.counters.last_data(series), self._admitted_at.get(series, 0.0))

    def evict(self, series: str) -> None:
        """Forget ``series`` (its stored chunks are deleted with the batch's state)."""
        slo = series.split("|", 1)[0]
        self._admitted.discard(series)
        self._by_slo.get(slo, set()).discard(series)
        self.counters.evict(series)
        self.sli_totals.pop(series, None)  # its Prometheus counters go with it
        self.dim_series.clear()  # tuples that led to it must be admitted again
        self.evicted[slo] += 1
        self.evicted_since_commit = True

    def count_replayed(self, r: Playback, partition: int) -> bool:
        """A record at or below a chunk's applied offset (a replay after a crash): counted only in the
        chunks that had not applied it yet."""
        svc = self.services.get(r.service)
        counted = False
        bucket0 = int(r.ts // L0_WIDTH)
        for plan in svc.plans if svc else ():
            if plan.threshold is None:
                bad, total = r.errors, r.total
            elif r.latency_ms is None:
                continue
            else:
                bad, total = (r.total if r.latency_ms > plan.threshold else 0), r.total
            series = plan.series((r.service, r.cluster, r.region, r.platform))
            counted |= self.counters.add_replayed(series, partition, bucket0, bad, total, r.offset)
        return counted

    def push(self, agg: Cells, partition: int, *, touched: set[str] | None = None) -> None:
        """Move aggregated cells into the counters, expanding each into its SLO series (added to
        ``touched`` when given)."""
        add = self.counters.add
        services = self.services
        dim_series = self.dim_series
        totals = self.sli_totals
        admitted = self._admitted
        for (service, cluster, region, platform, bucket0), cell in agg.items():
            svc = services[service]
            dims = (service, cluster, region, platform)
            names = dim_series.get(dims) or tuple(plan.series(dims) for plan in svc.plans)
            for plan, series in zip(svc.plans, names, strict=True):
                if series not in admitted:
                    continue  # displaced after this cell was counted (see evict)
                if plan.threshold_index is None:
                    bad, total = cell[0], cell[1]
                elif cell[2]:
                    bad, total = cell[3 + plan.threshold_index], cell[2]
                else:
                    continue
                add(series, partition, bucket0, bad, total)
                if touched is not None:
                    touched.add(series)
                acc = totals.get(series)
                if acc is None:
                    acc = totals[series] = [0, 0]
                acc[0] += bad
                acc[1] += total
        agg.clear()
