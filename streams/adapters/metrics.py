"""Prometheus metrics of one worker, served on ``GET /metrics`` by the Faust web server.

Nothing is copied on the hot path: a custom collector reads the engine's state (per SLO series) and
the pipeline's stats on each scrape. Only the two duration histograms are observed per partition
batch (:meth:`WorkerMetrics.observe_batch`). Names and labels come from
:mod:`streams.core.conventions`; the README's "Metrics" section documents them.

The worker's registry is its own (not prometheus_client's global one, so nothing else leaks in).
The notifier is another process: its two counters live in :class:`NotifierMetrics`, served on the
notifier's own port (``SLO_STREAM_NOTIFIER_METRICS_PORT``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from streams.core import conventions as c
from streams.core.engine import Engine
from streams.core.provisional import Outcome

log = logging.getLogger("slo_stream.metrics")

__all__ = [
    "CONTENT_TYPE_LATEST",
    "NOTIFIER_DELIVERIES",
    "NOTIFIER_RETRIES",
    "NotifierMetrics",
    "WorkerMetrics",
]

# Incremented by the notifier: NOTIFIER_DELIVERIES.labels(kind="trigger", outcome="accepted").inc().
NOTIFIER_DELIVERIES = Counter(
    c.M_NOTIFIER_DELIVERIES,
    "Alert changes the notifier finished delivering to the incident tool, by kind (trigger, resolve, "
    "change) and outcome (accepted; rejected = refused with a 400 and dead-lettered; repeat = a worker's "
    "replay of a change already delivered, not sent again; confirmation = the final FIRING of a "
    "provisional page already sent, not sent again).",
    labelnames=(c.L_KIND, c.L_OUTCOME),
    registry=None,
)
NOTIFIER_RETRIES = Counter(
    c.M_NOTIFIER_RETRIES,
    "Delivery attempts the notifier had to repeat, by kind and reason (e.g. a 429 or a timeout). "
    "A steady rise means the incident tool is unreachable or throttling us.",
    labelnames=(c.L_KIND, c.L_REASON),
    registry=None,
)



class NotifierMetrics:
    """The notifier's registry: its two counters, served over HTTP by the notifier process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(NOTIFIER_DELIVERIES)
        self.registry.register(NOTIFIER_RETRIES)
        # Read by the generated rules: the streaming path can page only while a notifier consumes
        # (the heartbeat that mutes the fallback needs it; its absence is a page, docs/fallback.md).
        self.consuming = Gauge(
            c.M_NOTIFIER_CONSUMING,
            "1 while this notifier consumes slo.alerts (its Kafka consumer started), else 0.",
            registry=self.registry,
        )

    def notifier_consuming(self, on: bool) -> None:
        self.consuming.set(1 if on else 0)

    def notifier_delivery(self, kind: str, outcome: str) -> None:
        NOTIFIER_DELIVERIES.labels(kind=kind, outcome=outcome).inc()

    def notifier_retry(self, kind: str, reason: str) -> None:
        NOTIFIER_RETRIES.labels(kind=kind, reason=reason).inc()

    def serve(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)


# One partition batch takes from well under a millisecond to seconds (a catch-up over a gap).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WorkerMetrics:
    """The metrics of one worker: its registry, the batch histograms, and the state collector.

    ``app`` (a faust.App, optional) and ``topic`` give the consumer lag and the assigned partitions;
    without them these are read from the engine alone (no lag).
    """

    def __init__(self, engine: Engine, stats: Mapping[str, int], *, app: Any = None, topic: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.batch_seconds = Histogram(
            c.M_BATCH_SECONDS,
            "Seconds one partition's part of a batch took, end to end: validate, count and evaluate, "
            "deliver alerts and dead letters, write the state. High values mean the worker falls behind.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.evaluation_seconds = Histogram(
            c.M_EVALUATION_SECONDS,
            "Seconds the engine spent validating, counting and evaluating one partition's part of a batch "
            "(no I/O). Compare with the batch duration to see whether Kafka or the engine is slow.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            c.M_HTTP_SECONDS,
            "Seconds to answer one HTTP request of the gate and status API (forwarding to the owning "
            "worker included).",
            (c.L_ENDPOINT, c.L_METHOD, c.L_CODE),
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=self.registry,
        )
        self.gate_decisions = Counter(
            c.M_GATE_DECISIONS,
            "Gate decisions answered by this worker, per service and decision (proceed, hold, rollback, "
            "unknown). Services without an SLO count as service=\"_unknown\".",
            (c.L_SERVICE, c.L_DECISION),
            registry=self.registry,
        )
        self.services = frozenset(s.service for s in engine.slos.values())
        self.registry.register(StateCollector(engine, stats, app=app, topic=topic))
        self.registry.register(AdmissionCollector(engine))
        self.registry.register(ChangesCollector(engine))

    def observe_request(self, endpoint: str, method: str, code: int, seconds: float) -> None:
        self.http_seconds.labels(endpoint, method, str(code)).observe(seconds)

    def observe_decision(self, service: str, decision: str) -> None:
        # Only known services as label values: a request names any service it likes.
        self.gate_decisions.labels(service if service in self.services else "_unknown", decision).inc()

    def observe_batch(self, evaluation_s: float, batch_s: float) -> None:
        self.evaluation_seconds.observe(evaluation_s)
        self.batch_seconds.observe(batch_s)

    def exposition(self) -> bytes:
        """The Prometheus text format of everything in the registry (one scrape)."""
        return generate_latest(self.registry)

    async def exposition_in_steps(self) -> bytes:
        """:meth:`exposition` for the HTTP API, byte for byte, formatted in steps of SAMPLES_PER_STEP
        samples with an event-loop turn between them: formatting is most of a scrape's cost (at 5,000
        series of one SLO, about 150 ms to collect and 450 ms to format 10 MB), and the gate must not
        wait for it. The state is collected at once, between two steps of a batch. (Formatting in a
        thread freed the loop too, but left the worker about 100 MiB larger: another malloc arena.)"""
        out: list[bytes] = []
        for family in self.registry.collect():
            samples = family.samples
            if len(samples) <= SAMPLES_PER_STEP or any(s.name.endswith(_OWN_BLOCKS) for s in samples):
                out.append(generate_latest(_Collected([family])))  # type: ignore[arg-type]
                continue
            for i in range(0, len(samples), SAMPLES_PER_STEP):
                part = Metric(family.name, family.documentation, family.type, family.unit)
                part.samples = samples[i:i + SAMPLES_PER_STEP]
                text = generate_latest(_Collected([part]))  # type: ignore[arg-type]
                out.append(text.split(b"\n", 2)[2] if i else text)  # HELP and TYPE once per family
                await asyncio.sleep(0)
        return b"".join(out)


# Samples prometheus_client formats in a block of their own after a family's other samples (with their
# own HELP and TYPE lines): a family with any of them is formatted in one step.
_OWN_BLOCKS = ("_created", "_gsum", "_gcount")
SAMPLES_PER_STEP = 1000  # about 6 ms of formatting


class _Collected:
    """Metric families collected already: what :func:`generate_latest` formats."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class StateCollector(Collector):
    """Reads the engine's series state and the pipeline's stats at scrape time."""

    def __init__(self, engine: Engine, stats: Mapping[str, int], *, app: Any = None, topic: str = "") -> None:
        self.engine = engine
        self.stats = stats
        self.app = app
        self.topic = topic

    def describe(self) -> Iterator[Metric]:
        # Names only (no samples), so the registry knows them without reading any state.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        fams = self._families()
        self._series(*fams[:7])
        self._pipeline(*fams[7:])
        yield from fams

    @classmethod
    def _families(cls) -> list[Any]:
        return cls._series_families() + cls._pipeline_families()

    @staticmethod
    def _series_families() -> list[Any]:
        """Per SLO series (the seven families :meth:`_series` fills)."""
        series = list(c.SERIES_LABELS)
        return [
            CounterMetricFamily(
                c.M_SLI_EVENTS,
                "Events of the SLO's indicator counted by this worker since it started (requests; for a "
                "latency SLO, requests with a latency). Sum rate() over all workers: partitions move.",
                labels=series),
            CounterMetricFamily(
                c.M_SLI_BAD_EVENTS,
                "Bad events of the SLO's indicator counted by this worker since it started (errors; for a "
                "latency SLO, requests slower than the threshold). Sum rate() over all workers.",
                labels=series),
            GaugeMetricFamily(
                c.M_BURN_RATE,
                "Burn rate over the window at the latest evaluation: error ratio / allowed error ratio. "
                "1 spends the budget exactly over the SLO window; 14.4 over 1h and 5m pages.",
                labels=[*series, c.L_WINDOW]),
            GaugeMetricFamily(
                c.M_BUDGET_REMAINING,
                "Share of the error budget left over the SLO window at the latest evaluation: 1 = untouched, "
                "0 = used up, below 0 = overspent.",
                labels=series),
            GaugeMetricFamily(
                c.M_ALERT_FIRING,
                "1 while the series' alert of this severity (page, ticket) is firing, else 0.",
                labels=[*series, c.L_SEVERITY]),
            GaugeMetricFamily(
                c.M_LAST_EVALUATION,
                "Event time (Unix seconds) of the series' latest evaluation. Far behind time() means the "
                "series' records stopped arriving or the worker is behind.",
                labels=series),
            GaugeMetricFamily(
                c.M_OBJECTIVE,
                "The SLO's objective, e.g. 0.999 (allowed error ratio = 1 - objective).",
                labels=[c.L_SLO, c.L_SERVICE]),
        ]

    @staticmethod
    def _pipeline_families() -> list[Any]:
        """The pipeline's health (the families :meth:`_pipeline` fills)."""
        return [
            CounterMetricFamily(
                c.M_MESSAGES,
                "Kafka messages taken from playback.events by this worker since it started (one message may "
                "hold a batch of records).",
                labels=[]),
            CounterMetricFamily(
                c.M_RECORDS,
                "Valid playback records counted by this worker since it started.",
                labels=[]),
            CounterMetricFamily(
                c.M_DEAD_LETTERS,
                "Records sent to the dead-letter topic since the worker started, by reason (late = arrived "
                "behind the watermark; see docs/semantics.md). Read the dead-letter topic for details.",
                labels=[c.L_REASON]),
            CounterMetricFamily(
                c.M_EVALUATIONS,
                "Series evaluations (burn rates and alert conditions at one event-time step) since the "
                "worker started.",
                labels=[]),
            CounterMetricFamily(
                c.M_PROVISIONAL,
                "Provisional alerts (fired on live data ahead of the final evaluation, docs/semantics.md) by "
                "outcome: fired, then confirmed by the final evaluation or retracted (a RESOLVED with reason "
                "retracted). Retractions are the price of paging early; a steady stream of them means late data.",
                labels=[c.L_OUTCOME]),
            GaugeMetricFamily(
                c.M_PROVISIONAL_OPEN,
                "Provisional alerts of this worker's partitions waiting for their final evaluation.",
                labels=[]),
            GaugeMetricFamily(
                c.M_ASSIGNED_PARTITIONS,
                "playback.events partitions assigned to this worker right now. 0 on every worker: nothing "
                "is counted.",
                labels=[]),
            CounterMetricFamily(
                c.M_OFFSET_REREADS,
                "Times a partition was read again because offsets were missing (an offset hole, or Faust's "
                "commit stall, docs/semantics.md). Occasional is normal; a steady rise is not.",
                labels=[]),
            CounterMetricFamily(
                c.M_K8S_RECORDS,
                "Records read from k8s.rollouts and k8s.events since the worker started: kept (a rollout, or "
                "a Warning event, of a service with an SLO), ignored (Normal events, other services), "
                "dead_letter (malformed; see the dead-letter metric's reasons).",
                labels=[c.L_OUTCOME]),
            GaugeMetricFamily(
                c.M_STATE_ENTRIES,
                "Entries of the state table (counter chunks, alert tracks, revision counts, partition meta "
                "records) in this worker's memory: its partitions, Faust's standby copies and what is left of "
                "partitions it lost. Grows with series and event time until each bucket level's retention is "
                "reached (docs/semantics.md), then stays level.",
                labels=[]),
            GaugeMetricFamily(
                c.M_STATE_BYTES,
                "Bytes of those entries' keys and values (the state this worker recovers from the changelog "
                "on start).",
                labels=[]),
            GaugeMetricFamily(
                c.M_CONSUMER_LAG,
                "Messages in the partition that this worker has not processed yet (log end minus the next "
                "offset to process). Growing: the worker falls behind, alerts come late.",
                labels=[c.L_PARTITION]),
        ]

    def _series(self, events: Any, bad: Any, burn: Any, budget: Any, firing: Any, last_eval: Any,
                objective: Any) -> None:
        engine = self.engine
        slos = engine.slos
        for slo in sorted(slos.values(), key=lambda s: s.name):
            objective.add_metric([slo.name, slo.service], slo.objective)

        def labels(series: str) -> list[str] | None:
            name, cluster, region, platform = c.split_series_key(series)
            slo = slos.get(name)
            return None if slo is None else [name, slo.service, cluster, region, platform]

        for series, (n_bad, n_total) in sorted(engine.series.sli_totals.items()):
            lv = labels(series)
            if lv is not None:
                events.add_metric(lv, n_total)
                bad.add_metric(lv, n_bad)
        for series, ev in sorted(engine.read.last_status.items()):
            lv = labels(series)
            if lv is None:
                continue
            for window, rate in ev.burn_rates.items():
                burn.add_metric([*lv, window], rate)
            budget.add_metric(lv, ev.budget_remaining)
            last_eval.add_metric(lv, ev.at)
        # Alert state of every series this worker owns (evaluated or not since the worker started),
        # as committed to the store: like last_status, never a batch still being delivered.
        owned = set(engine.counters.all_series()) | set(engine.read.last_status)
        for series in sorted(owned):
            lv = labels(series)
            if lv is None:
                continue
            for sev, on in engine.read.committed_alerts(series):
                firing.add_metric([*lv, str(sev)], 1.0 if on else 0.0)

    def _pipeline(self, messages: Any, records: Any, dead: Any, evaluations: Any, provisional: Any,
                  provisional_open: Any, assigned: Any, rereads: Any, k8s: Any, state_entries: Any,
                  state_bytes: Any, lag: Any) -> None:
        st = self.stats
        for outcome in Outcome:
            provisional.add_metric([outcome.value], st.get(f"provisional.{outcome.value}", 0))
        provisional_open.add_metric([], len(self.engine.provisionals))
        for outcome in ("kept", "ignored", "dead_letter"):
            k8s.add_metric([outcome], st.get(f"k8s.{outcome}", 0))
        messages.add_metric([], st.get("messages", 0))
        records.add_metric([], st.get("records", 0))
        evaluations.add_metric([], st.get("evaluations", 0))
        rereads.add_metric([], st.get("hole_seeks", 0) + st.get("commit_gap_reseeks", 0))
        for key, n in sorted(st.items()):
            if key.startswith("rejected."):
                dead.add_metric([key.removeprefix("rejected.")], n)
        size = self._state_size()
        if size is not None:
            state_entries.add_metric([], size[0])
            state_bytes.add_metric([], size[1])
        partitions, lags = self._partitions()
        assigned.add_metric([], len(partitions))
        for p, n in sorted(lags.items()):
            lag.add_metric([str(p)], n)

    def _state_size(self) -> tuple[int, int] | None:
        """Entries and bytes of the state store in this worker's memory (a Faust table's store, whose
        ``data`` is a dict; or a dict). Runs on the event loop at scrape time: C-level sums, no copy."""
        data: Any = self.engine.store
        for _ in range(2):  # Table -> Store -> dict
            if isinstance(data, dict):
                break
            data = getattr(data, "data", None)
        if not isinstance(data, dict):
            return None
        try:
            return len(data), sum(map(len, data)) + sum(map(len, data.values()))
        except (TypeError, RuntimeError):  # an odd value, or a change while summing: no sample
            return None

    def _partitions(self) -> tuple[set[int], dict[int, int]]:
        """The assigned partitions of playback.events and the lag of those whose log end is known."""
        engine = self.engine
        consumer = _consumer(self.app)
        if consumer is None:
            return engine.assigned(), {}
        try:
            tps = [tp for tp in consumer.assignment() if tp.topic == self.topic]
        except Exception:  # not started yet, or stopping
            return engine.assigned(), {}
        lags: dict[int, int] = {}
        held = engine.assigned()
        for tp in tps:
            try:
                end = consumer.highwater(tp)  # the next offset to be written; None before a fetch
            except Exception:
                end = None
            if end is None:
                continue
            done = engine.meta(tp.partition).offset + 1 if tp.partition in held else 0
            lags[tp.partition] = max(0, int(end) - done)
        return {tp.partition for tp in tps}, lags


def _consumer(app: Any) -> Any:
    if app is None:
        return None
    try:
        return app.consumer
    except Exception:
        return None



class AdmissionCollector(Collector):
    """Series admission (streams.core.series): series per SLO against the limit, refusals, displaced
    series, and the placements refused most recently (a bounded sample: at most
    ``streams.core.series.REFUSED_SAMPLE`` per SLO, label values already validated as names)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    @staticmethod
    def _families() -> list[Any]:
        return [
            GaugeMetricFamily(c.M_SERIES, "SLO series this worker holds, per SLO. At the limit (see "
                              "slo_stream_series_limit) new placements are refused or displace idle series.",
                              labels=[c.L_SLO, c.L_SERVICE]),
            GaugeMetricFamily(c.M_SERIES_LIMIT, "Series per SLO a worker admits (SLO_STREAM_MAX_SERIES_PER_SLO).",
                              labels=[]),
            CounterMetricFamily(c.M_SERIES_REFUSED, "Records refused because their SLO had no room for a new "
                                "series (dead letter series_limit), since the worker started.",
                                labels=[c.L_SLO, c.L_SERVICE]),
            CounterMetricFamily(c.M_SERIES_EVICTED, "Series that gave their place to a new one (idle untrusted "
                                "series; docs/semantics.md, Limits), since the worker started.",
                                labels=[c.L_SLO, c.L_SERVICE]),
            GaugeMetricFamily(c.M_SERIES_REFUSED_RECENT, "Refused records per placement, for the placements "
                              "refused most recently (a sample of at most 10 per SLO): what is knocking at the limit.",
                              labels=list(c.SERIES_LABELS)),
        ]

    def collect(self) -> Iterator[Metric]:
        fams = self._families()
        series, limit, refused, evicted, recent = fams
        idx = self.engine.series
        for slo in sorted(self.engine.slos.values(), key=lambda s: s.name):
            series.add_metric([slo.name, slo.service], idx.series_count(slo.name))
            got = idx.refusals.get(slo.name)
            refused.add_metric([slo.name, slo.service], got.count if got else 0)
            evicted.add_metric([slo.name, slo.service], idx.evicted.get(slo.name, 0))
            for (cluster, region, platform), n in (got.sample.items() if got else ()):
                recent.add_metric([slo.name, slo.service, cluster, region, platform], n)
        limit.add_metric([], idx.max_series_per_slo)
        yield from fams


class ChangesCollector(Collector):
    """Rollouts (for dashboard annotations) and the suspects of firing alerts, at scrape time, for the
    services whose partition this worker owns (a standby copy of the table is not reported)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                c.M_ROLLOUT_STARTED,
                "Start time (Unix seconds, event time) of each recent rollout of a service with an SLO, "
                "with its latest phase: draw them as annotations on the SLO graphs.",
                labels=list(c.ROLLOUT_LABELS)),
            GaugeMetricFamily(
                c.M_SUSPECT_SCORE,
                "Score (0..1) of each suspect of a firing alert, rank 1 first: the rollout or Kubernetes "
                "warning that most likely caused the burn (docs/correlation.md).",
                labels=[*c.SERIES_LABELS, c.L_SEVERITY, c.L_RANK, c.L_KIND, c.L_SUSPECT]),
        )

    def collect(self) -> Iterator[Metric]:
        rollouts, suspects = self._families()
        engine = self.engine
        read = engine.read
        for service, owned in sorted(read.series_by_service().items()):
            sc = read.service_changes(service)
            if sc is not None:
                for r in sorted(sc.rollouts.values(), key=lambda r: (r.started_ts, r.workload.name)):
                    w = r.workload
                    rollouts.add_metric([service, w.cluster, w.namespace, w.name, r.revision, str(r.phase)],
                                        r.started_ts)
            for series in owned:
                name, cluster, region, platform = c.split_series_key(series)
                for sev, on in read.committed_alerts(series):
                    if not on:
                        continue
                    for s in engine.tracks.suspects(c.dedup_key(series, str(sev))):
                        suspects.add_metric([name, service, cluster, region, platform, str(sev), str(s.rank), s.kind,
                                             s.label], s.score)
        yield rollouts
        yield suspects
