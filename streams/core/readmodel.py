"""What the engine's state answers to readers (pure; part of the engine): the status of each series,
alert states, platform counts, and everything the gate needs for one question.

Readers are the pipeline (``slo.status`` records, the staleness marks), the HTTP API (through
:meth:`ReadModel.gate_inputs` and :meth:`ReadModel.statuses`) and the metrics collector. Nothing
here changes counts or tracks; :attr:`ReadModel.last_status` (the latest evaluation per series) is
the one thing the engine writes into it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import replace
from types import MappingProxyType

from streams.core import conventions as c
from streams.core.answer import GateInputs, PlatformCounts, Question
from streams.core.burnrate import BurnEvaluation, evaluate
from streams.core.changes import ServiceChanges
from streams.core.counters import Counters
from streams.core.gate import GateConfig, covers
from streams.core.model import Severity, SliKind, Slo, format_duration
from streams.core.provisional import Provisional, ProvisionalTracks
from streams.core.stats import Proportion
from streams.core.tracks import AlertTracks
from streams.core.watermarks import Watermarks
from streams.core.wire.series import Dimensions
from streams.core.wire.status import FIRING, OK, AlertTrack, Condition, Status
from streams.core.wire.suspect import RolloutSuspect, Suspect


def _finite(x: float) -> float:
    return round(x, 6) if math.isfinite(x) else 0.0


class ReadModel:
    def __init__(self, slos: Mapping[str, Slo], counters: Counters, marks: Watermarks, tracks: AlertTracks,
                 changes: Mapping[str, bytes], *, provisionals: ProvisionalTracks | None = None) -> None:
        self.slos = slos
        self.counters = counters
        self.marks = marks
        self.tracks = tracks
        self.changes = changes
        self.provisionals = provisionals
        self.last_status: dict[str, BurnEvaluation] = {}  # the latest evaluation of each series held
        # The provisional evaluation of each series with an open provisional alert (this worker's: one
        # that took the partition over shows the alert open on the last final evaluation).
        self.provisional: dict[str, BurnEvaluation] = {}
        # The Status last built per series, with the evaluation it was built from (_status_as_of);
        # cleared when it outgrows twice the series held.
        self._built: dict[str, tuple[BurnEvaluation, Status]] = {}

    # ---- series -------------------------------------------------------------------------------------

    def service_series(self, service: str) -> list[str]:
        names = {s.name for s in self.slos.values() if s.service == service}
        return sorted(x for x in self.counters.all_series() if x.split("|", 1)[0] in names)

    def series_by_service(self) -> dict[str, list[str]]:
        """Every assigned series, grouped by service, in one pass (for a scrape)."""
        out: dict[str, list[str]] = {}
        for series in sorted(self.counters.all_series()):
            slo = self.slos.get(series.split("|", 1)[0])
            if slo is not None:
                out.setdefault(slo.service, []).append(series)
        return out

    def partition_of_service(self, service: str) -> int | None:
        """The assigned partition holding ``service``'s series, if any (all of a service's series are
        on one partition: the playback key is the service)."""
        for series in self.counters.all_series():
            slo = self.slos.get(series.split("|", 1)[0])
            if slo is not None and slo.service == service:
                return self.counters.partition_of(series)
        return None

    # ---- statuses -----------------------------------------------------------------------------------

    def prune_provisional(self) -> None:
        """Drop the provisional evaluations of series without an open provisional alert."""
        if not self.provisional:
            return
        open_series = {p.series for _, p in self.provisionals.pending()} if self.provisionals is not None else set()
        for series in [s for s in self.provisional if s not in open_series]:
            del self.provisional[series]

    def open_provisional(self, dedup: str) -> Provisional | None:
        return self.provisionals.get(dedup) if self.provisionals is not None else None

    def current_status(self, series: str) -> BurnEvaluation | None:
        """The evaluation of ``series`` at its partition's last evaluation step: the one made then, or
        computed now at that step (after a restart; or for a series gone quiet, which the step skips:
        a series without traffic while its partition is fresh is quiet, not stale)."""
        ev = self.last_status.get(series)
        slo = self.slos.get(series.split("|", 1)[0])
        at = self.marks.evaluated_to(self.counters.partition_of(series))
        if slo is None or not at:
            return ev
        if ev is not None and ev.at >= at:
            return ev
        ev = evaluate(slo, series, at, {w: self.counters.window(series, at, w) for w in slo.windows_s})
        self.last_status[series] = ev
        return ev

    def status(self, ev: BurnEvaluation, *, now: float) -> Status:
        """The ``slo.status`` record of an evaluation, built for wall-clock ``now``."""
        return self._build(ev, now, self._alerts(ev))

    def _build(self, ev: BurnEvaluation, now: float, alerts: dict[str, AlertTrack]) -> Status:
        slo = self.slos[ev.slo]
        return Status(
            series=ev.series, slo=ev.slo, service=slo.service, dimensions=Dimensions.of_series(ev.series),
            objective=slo.objective, evaluated_at=ev.at,
            newest_event_ts=self.marks.newest_event(self.counters.partition_of(ev.series)),
            processed_at=round(now, 3),
            burn_rates=MappingProxyType({k: _finite(v) for k, v in ev.burn_rates.items()}),
            error_budget_remaining=_finite(ev.budget_remaining),
            good_total=MappingProxyType({format_duration(w): (wc.bad, wc.total)
                                         for w, wc in sorted(ev.counts.items())}),
            conditions=tuple(Condition(severity=cr.window.severity, windows=cr.window.name, factor=cr.window.factor,
                                       long_burn=_finite(cr.long_burn), short_burn=_finite(cr.short_burn), met=cr.met,
                                       insufficient_data=cr.insufficient_data) for cr in ev.conditions),
            alerts=MappingProxyType(alerts),
        )

    def statuses(self, service: str, *, now: float, processed_at: Mapping[int, float],
                 stale: Collection[int], cluster: str | None = None, platform: str | None = None) -> list[Status]:
        """The statuses of ``service``'s series held here, each as of its partition's last batch
        (``processed_at``, wall clock; ``now`` when unknown), marked stale on the ``stale``
        partitions; with ``cluster`` or ``platform``, only the series that cover it (its own, and
        those that group the dimension away)."""
        out = []
        for series in self.service_series(service):
            if cluster is not None or platform is not None:
                _, s_cluster, _, s_platform = c.split_series_key(series)
                if not (covers(s_cluster, cluster) and covers(s_platform, platform)):
                    continue
            ev = self.current_status(series)
            pv = self.provisional.get(series)
            if pv is not None and (ev is None or pv.at > ev.at):
                ev = pv  # an open provisional alert: what the live data says now (provisional)
            if ev is None:
                continue
            p = self.counters.partition_of(series)
            processed = processed_at.get(p, now) if p is not None else now
            st = self._status_as_of(ev, processed)
            if p in stale:
                st = st.marked_stale(f"no records on partition {p} for {now - processed:.0f}s")
            out.append(st)
        return out

    def _status_as_of(self, ev: BurnEvaluation, processed: float) -> Status:
        """:meth:`status`, from a cache of the one built last for this evaluation: only the alert states,
        the processing time and the partition's newest event time can differ since (a gate question
        on a service of thousands of series built each one again, about 0.1 ms apiece)."""
        alerts = self._alerts(ev)
        hit = self._built.get(ev.series)
        if hit is None or hit[0] is not ev or hit[1].alerts != alerts:
            st = self._build(ev, processed, alerts)
            if len(self._built) >= max(1024, 2 * len(self.last_status)):
                self._built.clear()
            self._built[ev.series] = (ev, st)
            return st
        newest = self.marks.newest_event(self.counters.partition_of(ev.series))
        st = hit[1]
        if st.processed_at == round(processed, 3) and st.newest_event_ts == newest:
            return st
        return replace(st, processed_at=round(processed, 3), newest_event_ts=newest)

    def _alerts(self, ev: BurnEvaluation) -> dict[str, AlertTrack]:
        alerts = {}
        for sev in (Severity.PAGE, Severity.TICKET):
            dk = c.dedup_key(ev.series, str(sev))
            t = self.tracks.track_at(dk, ev.at)
            prov = None if t.firing else self.open_provisional(dk)
            if prov is not None:
                alerts[str(sev)] = AlertTrack(FIRING, prov.at, provisional=True)
            else:
                alerts[str(sev)] = AlertTrack(FIRING if t.firing else OK, t.fired_at)
        return alerts

    def committed_alerts(self, series: str) -> list[tuple[Severity, bool]]:
        """Each alert severity of a series and whether it is firing, as committed to the store."""
        slo = self.slos[series.split("|", 1)[0]]
        return [(sev, self.tracks.committed(dk).firing) for sev, dk in self.tracks.keys(series, slo)]

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
            step = self.marks.evaluated_to(self.counters.partition_of(series))
            if not step:
                continue
            at = step
            if platform == "kubernetes" and cluster is not None and s_cluster not in (cluster, c.ANY):
                continue
            bad, total = self.counters.window(series, at, window_s)
            side = k8s if platform == "kubernetes" else legacy
            side[0] += bad
            side[1] += total
        return (k8s[0], k8s[1]), (legacy[0], legacy[1]), at

    # ---- the gate -----------------------------------------------------------------------------------

    def service_changes(self, service: str) -> ServiceChanges | None:
        raw = self.changes.get(service)
        return ServiceChanges.from_bytes(raw) if raw else None

    def suspects_now(self, dedup: str, current: ServiceChanges | None) -> tuple[Suspect, ...]:
        """The suspects recorded when the alert fired, each rollout with its phase as of now: it may
        since have completed, been rolled back or been replaced by a newer revision ("superseded");
        the gate must not roll back what is already gone."""
        out = []
        prov = None if self.tracks.track(dedup).firing else self.open_provisional(dedup)
        for s in prov.suspects if prov is not None else self.tracks.suspects(dedup):
            r = current.rollout(s.ref) if current is not None and isinstance(s, RolloutSuspect) else None
            if r is not None and isinstance(s, RolloutSuspect) and r.phase_now != s.phase:
                s = replace(s, phase=r.phase_now)
            out.append(s)
        return tuple(out)

    def gate_inputs(self, q: Question, *, now: float, processed_at: Mapping[int, float], stale: Collection[int],
                    configs: Mapping[str, GateConfig], default: GateConfig) -> GateInputs:
        """Everything :func:`streams.core.answer.answer` needs for ``q``, from the state held here."""
        statuses = tuple(self.statuses(q.service, now=now, processed_at=processed_at, stale=stale,
                                       cluster=q.cluster, platform=q.platform))
        others = 0
        if (q.cluster is not None or q.platform is not None) and not statuses:
            others = len(self.service_series(q.service))  # for the "no data" message: counted, not built
        current = self.service_changes(q.service)
        suspects = {}
        for st in statuses:
            for sev in (Severity.PAGE, Severity.TICKET):
                dk = c.dedup_key(st.series, str(sev))
                if self.tracks.track(dk).firing or self.open_provisional(dk) is not None:
                    suspects[dk] = self.suspects_now(dk, current)
        platforms = []
        if q.migration:
            for slo in self.slos.values():
                if slo.service != q.service or slo.indicator.kind is not SliKind.RATIO:
                    continue
                window = configs.get(slo.name, default).migration_window_s
                k8s, legacy, _ = self.platform_counts(slo.name, cluster=q.cluster, window_s=window)
                platforms.append(PlatformCounts(slo.name, Proportion(*k8s), Proportion(*legacy), window))
        return GateInputs(statuses=statuses, others=others, suspects=MappingProxyType(suspects),
                          freezes=current.freezes.active(now) if current is not None else (),
                          platforms=tuple(platforms), configs=configs, default=default)
