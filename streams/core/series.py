"""Which SLO series a playback record counts in, and which series are admitted (pure; part of the engine).

A record of a service counts once in each SLO of that service: in the series named by the record's
dimensions, with the ones the SLO groups away shown as ``*``. A latency SLO counts only records
with a ``latency_ms``, as bad when slower than its threshold. The engine aggregates a batch into one
cell per (service, cluster, region, platform, 10 s bucket): ``[errors, total, total with a latency,
then one "slower than threshold" count per distinct threshold of the service]``; :meth:`SeriesIndex.push`
expands the cells into the series' counters.

Admission: at most ``max_series_per_slo`` series per SLO; a record that would open one more is
refused (dead letter ``series_limit``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

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


class SeriesIndex:
    """The counting plans per service, the admitted series, and the counts since the worker started."""

    def __init__(self, slos: Sequence[Slo], counters: Counters, *, max_series_per_slo: int,
                 max_dimension_tuples: int = MAX_DIMENSION_TUPLES) -> None:
        self.services = plan_services(slos)
        self.counters = counters
        self.max_series_per_slo = max_series_per_slo
        self.max_dimension_tuples = max_dimension_tuples
        self.dim_series: dict[Dims, tuple[str, ...]] = {}  # dimensions already admitted -> their series
        self._per_slo: Counter[str] = Counter()
        self._admitted: set[str] = set()
        # Per series, [bad, total] counted since this worker started (never reset, never dropped when
        # a partition leaves): the cumulative Prometheus counters of every SLO series.
        self.sli_totals: dict[str, list[int]] = {}

    def recount(self) -> None:
        """Rebuild the admission state from the counters' series (after an assignment or expiry)."""
        self.dim_series.clear()
        self._admitted = set(self.counters.all_series())
        self._per_slo = Counter(s.split("|", 1)[0] for s in self._admitted)

    def admit(self, dims: Dims) -> bool:
        """Admit the series of every SLO of ``dims[0]`` for these dimensions, unless one is past the
        series limit of its SLO."""
        svc = self.services[dims[0]]
        names = tuple(plan.series(dims) for plan in svc.plans)
        new = [n for n in names if n not in self._admitted]
        limit = self.max_series_per_slo
        if any(self._per_slo[n.split("|", 1)[0]] >= limit for n in new):
            return False
        for n in new:
            self._per_slo[n.split("|", 1)[0]] += 1
            self._admitted.add(n)
        if len(self.dim_series) >= self.max_dimension_tuples:
            self.dim_series.clear()  # a cache: the tuples seen again are admitted again
        self.dim_series[dims] = names
        return True

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

    def push(self, agg: Cells, partition: int) -> None:
        """Move aggregated cells into the counters, expanding each into its SLO series."""
        add = self.counters.add
        services = self.services
        dim_series = self.dim_series
        totals = self.sli_totals
        for (service, cluster, region, platform, bucket0), cell in agg.items():
            svc = services[service]
            dims = (service, cluster, region, platform)
            names = dim_series.get(dims) or tuple(plan.series(dims) for plan in svc.plans)
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
