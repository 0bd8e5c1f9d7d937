"""Enforcement in the kube bridge: ``slo.alerts`` in, a paused Deployment and a ``rollout.gates`` record out.

Runs as one more thread of the kube bridge when ``SLO_STREAM_ENFORCE=pause`` (the bridge owns the
cluster's API client; this module does not import ``kubernetes``: it is handed a
:class:`DeploymentsApi`, which :mod:`streams.adapters.kube_bridge` implements). The decision is
pure, :mod:`streams.core.enforce`; this module carries it out:

1. On start, read ``rollout.gates`` from the beginning to its end: the :class:`~streams.core.enforce.Ledger`
   of rollouts already acted on (latest record per key: Tansu does not compact). The topic is
   tailed from then on, so a record written by another bridge of the same cluster (a rolling
   restart) is learnt too.
2. Consume ``slo.alerts`` in the consumer group ``<app id>-enforcer-<cluster>`` (earliest offset
   for a new group; offsets committed by hand). For each record, :func:`~streams.core.enforce.decide`.
3. For an action: re-read the Deployment (GET), :func:`~streams.core.enforce.recheck` it, PATCH
   ``{"spec": {"paused": true}}`` as a merge patch, publish the ``paused`` record (or a
   ``skipped`` one with the reason), add it to the ledger, and only then commit the alert's offset.
   A crash before the record leaves the alert uncommitted: it comes back, the re-read finds the
   Deployment paused, and a ``skipped`` record says so; no second PATCH either way.

API errors: 403/401 (the enforcement RBAC is missing), 404 (the Deployment is gone) and other 4xx
are recorded as ``skipped`` and not retried; 5xx, 429, 409 and connection errors are retried with
backoff, each attempt starting again with the GET (a PATCH whose answer was lost is seen applied).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from streams.adapters import kafka_security
from streams.core import enforce
from streams.core.backoff import backoff_s
from streams.core.enforce import Action, EnforceConfig, Ledger, Outcome, Skip, Verdict
from streams.core.errors import RecordError
from streams.core.wire.alert import decode_alert_bytes
from streams.settings import Settings

log = logging.getLogger("slo_stream.enforcer")

_POLL_MS = 200
_METADATA_TIMEOUT_S = 30.0
_CLOSE_TIMEOUT_MS = 3000


class ApiCallError(Exception):
    """A Kubernetes API call failed. ``status`` is the HTTP status (None: no answer, e.g. a
    connection error or timeout); ``retryable`` says whether trying again can help."""

    def __init__(self, status: int | None, reason: str, *, retryable: bool) -> None:
        super().__init__(f"{status if status is not None else 'no answer'}: {reason}")
        self.status = status
        self.reason = reason
        self.retryable = retryable


class DeploymentsApi(Protocol):
    """All the enforcer asks of the Kubernetes API: get and patch one Deployment."""

    def read(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> None: ...


Publish = Callable[[list[tuple[str, str, Mapping[str, Any]]]], None]


class Stopping(Exception):
    """The bridge is stopping: leave the record uncommitted."""


def enforcer_group(settings: Settings, cluster: str) -> str:
    return f"{settings.app_id}-enforcer-{cluster}"


class Enforcer:
    """One cluster's enforcement loop; :meth:`run` blocks until ``stopping`` is set."""

    def __init__(self, settings: Settings, *, cluster: str, deployments: DeploymentsApi, publish: Publish,
                 config: EnforceConfig, stopping: threading.Event, count: Callable[[str], None] = lambda _: None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.s = settings
        self.cluster = cluster
        self.group = enforcer_group(settings, cluster)
        self.deployments = deployments
        self.publish = publish
        self.config = config
        self.ledger = Ledger()
        self.ready = threading.Event()  # the ledger is read and the group has its partitions
        self._stopping = stopping
        self._count = count
        self._clock = clock
        self._rng = rng or random.Random()
        self._gates: KafkaConsumer | None = None

    # ---- the loop -----------------------------------------------------------------------------------

    def run(self) -> None:
        s = self.s
        log.info("enforcement on (%s) in cluster %s: pause a Deployment when a firing page's top suspect is "
                 "its rollout in progress with score >= %.2f; namespaces %s; group %s", s.enforce, self.cluster,
                 self.config.min_score, ", ".join(sorted(self.config.namespaces)) or "all", self.group)
        kafka = kafka_security.kafka_python(kafka_security.from_settings(s))
        self._gates = KafkaConsumer(bootstrap_servers=s.bootstrap, enable_auto_commit=False,
                                    client_id=f"{self.group}-ledger", **kafka)
        alerts: KafkaConsumer | None = None
        try:
            self._load_ledger()
            if self._stopping.is_set():
                return
            alerts = KafkaConsumer(
                s.topic_alerts, bootstrap_servers=s.bootstrap, group_id=self.group, client_id=self.group,
                enable_auto_commit=False, auto_offset_reset="earliest",
                session_timeout_ms=int(s.session_timeout_s * 1000),
                heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
                # An API outage holds one alert while it is retried: do not leave the group meanwhile.
                max_poll_interval_ms=3600 * 1000, **kafka)
            while not self._stopping.is_set():
                batch = alerts.poll(timeout_ms=_POLL_MS, max_records=50)
                if not self.ready.is_set() and alerts.assignment():
                    self.ready.set()
                    log.info("enforcer ready: %d rollouts in the ledger, %d acted on", len(self.ledger),
                             len(self.ledger.acted))
                if not batch:
                    continue
                self._tail_ledger()
                for tp, records in batch.items():
                    for rec in records:
                        try:
                            self.handle(rec.value, where=f"{tp.topic}/{tp.partition}/{rec.offset}")
                        except Stopping:
                            return
                        try:
                            alerts.commit({tp: OffsetAndMetadata(rec.offset + 1, "", -1)})
                        except (CommitFailedError, KafkaError) as exc:
                            # A rebalance took the partition (its next owner reads the alert again and
                            # finds the rollout in the ledger, or the Deployment paused), or the commit
                            # failed: fetch the rest of this batch again rather than skip it.
                            log.warning("committing %s/%d@%d failed (%s): the alert may be read again",
                                        tp.topic, tp.partition, rec.offset, type(exc).__name__)
                            with contextlib.suppress(KafkaError, ValueError):  # ValueError: not assigned now
                                alerts.seek(tp, rec.offset + 1)
                            break
        finally:
            # Bounded: close() waits for the LeaveGroup answer up to request_timeout_ms (5 min) by
            # default, and the bridge must stop within its SIGTERM grace.
            if alerts is not None:
                alerts.close(autocommit=False, timeout_ms=_CLOSE_TIMEOUT_MS)
            self._gates.close(autocommit=False, timeout_ms=_CLOSE_TIMEOUT_MS)
            self._gates = None

    def _load_ledger(self) -> None:
        """Read ``rollout.gates`` from the beginning to the end it had when we started."""
        assert self._gates is not None
        topic = self.s.topic_rollout_gates
        deadline = time.monotonic() + _METADATA_TIMEOUT_S
        parts = self._gates.partitions_for_topic(topic)
        while not parts:
            if time.monotonic() > deadline or self._stopping.wait(0.1):
                if not self._stopping.is_set():
                    raise RuntimeError(f"topic {topic} has no partitions (it is created with the others)")
                return
            parts = self._gates.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._gates.assign(tps)
        self._gates.seek_to_beginning(*tps)
        end = self._gates.end_offsets(tps)
        while not self._stopping.is_set() and any(self._gates.position(tp) < end[tp] for tp in tps):
            self._tail_ledger()
        log.info("ledger: %d rollouts in %s, %d acted on", len(self.ledger), topic, len(self.ledger.acted))

    def _tail_ledger(self) -> None:
        assert self._gates is not None
        for records in self._gates.poll(timeout_ms=_POLL_MS if not self.ready.is_set() else 0).values():
            for rec in records:
                try:
                    value = orjson.loads(rec.value or b"")
                except orjson.JSONDecodeError:
                    value = None
                if not self.ledger.add((rec.key or b"").decode("utf-8", errors="replace"), value):
                    log.warning("ledger: %s/%d@%d is not a rollout.gates record; ignored", rec.topic,
                                rec.partition, rec.offset)

    # ---- one alert ----------------------------------------------------------------------------------

    def handle(self, value: bytes | None, *, where: str = "") -> None:
        """Decide on one ``slo.alerts`` value and carry the decision out. Raises :class:`Stopping`."""
        self._count("enforce_alerts")
        try:
            alert = decode_alert_bytes(value)
        except RecordError as exc:
            verdict = Verdict(action=None, skip=Skip.BAD_RECORD, message=f"not an alert record: {exc.detail}")
        else:
            verdict = enforce.decide(alert, cluster=self.cluster, config=self.config, acted=self.ledger.acted,
                                     now=self._clock())
        if verdict.action is None:
            assert verdict.skip is not None
            self._count(f"enforce_ignored_{verdict.skip}")
            # A rollout of this cluster that was named but not paused is worth a line; the rest is noise.
            level = logging.INFO if verdict.target is not None and verdict.target.cluster == self.cluster \
                else logging.DEBUG
            log.log(level, "no pause (%s) %s: %s", verdict.skip, where, verdict.message)
            return
        key, record = self._act(verdict.action)
        self._record(key, record)

    def _act(self, action: Action) -> tuple[str, dict[str, Any]]:
        t = action.target
        sent = False  # a PATCH went out and its answer was lost
        attempt = 0
        while True:
            if self._stopping.is_set():
                raise Stopping
            try:
                live = self.deployments.read(t.namespace, t.name)
            except ApiCallError as exc:
                final = self._final(action, exc, "reading")
                if final is not None:
                    return final
                attempt += 1
                self._backoff(attempt, f"reading {t.namespace}/{t.name}: {exc}")
                continue
            problem = enforce.recheck(action, live)
            if problem is not None:
                skip, detail = problem
                if skip is Skip.ALREADY_PAUSED and sent:
                    return self._paused(action, "the PATCH's answer was lost; the re-read shows it paused")
                return self._skipped(action, skip, detail)
            try:
                self.deployments.patch(t.namespace, t.name, action.patch)
            except ApiCallError as exc:
                final = self._final(action, exc, "pausing")
                if final is not None:
                    return final
                sent = sent or exc.status is None or exc.status >= 500
                attempt += 1
                self._backoff(attempt, f"pausing {t.namespace}/{t.name}: {exc}")
                continue
            return self._paused(action, "")

    def _final(self, action: Action, exc: ApiCallError, doing: str) -> tuple[str, dict[str, Any]] | None:
        """The skipped record for an API error that retrying cannot fix, else None."""
        t = action.target
        if exc.status == 404:
            return self._skipped(action, Skip.DEPLOYMENT_GONE, f"{t.namespace}/{t.name} does not exist")
        if exc.status in (401, 403):
            return self._skipped(action, Skip.FORBIDDEN, (
                f"{doing} {t.namespace}/{t.name} answered {exc.status} {exc.reason}: the bridge's service "
                "account needs get and patch on deployments (deploy/enforcement/rbac.yaml)"))
        if not exc.retryable:
            return self._skipped(action, Skip.REJECTED, f"{doing} {t.namespace}/{t.name}: {exc}")
        return None

    def _paused(self, action: Action, detail: str) -> tuple[str, dict[str, Any]]:
        t = action.target
        log.warning("PAUSED Deployment %s/%s in %s (revision %s): top suspect of %s, score %.2f; %s",
                    t.namespace, t.name, t.cluster, t.revision, action.alert, action.score, action.summary)
        self._count("enforce_paused")
        return enforce.gate_record(action, outcome=Outcome.PAUSED, now=self._clock(), detail=detail)

    def _skipped(self, action: Action, skip: Skip, detail: str) -> tuple[str, dict[str, Any]]:
        log.warning("not pausing %s (%s): %s", action.target.key, skip, detail)
        self._count(f"enforce_skipped_{skip}")
        return enforce.gate_record(action, outcome=Outcome.SKIPPED, skip=skip, now=self._clock(), detail=detail)

    def _record(self, key: str, record: dict[str, Any]) -> None:
        """Publish the record (retrying until it is acknowledged), then add it to the ledger."""
        attempt = 0
        while True:
            try:
                self.publish([(self.s.topic_rollout_gates, key, record)])
                break
            except Exception as exc:  # PublishError from the bridge, or anything the producer raises
                if self._stopping.is_set():
                    log.error("stopping before the %s record of %s was published: the alert is read again "
                              "on restart", record["action"], key)
                    raise Stopping from exc
                attempt += 1
                self._backoff(attempt, f"publishing the {record['action']} record of {key}: {exc}")
        self.ledger.add(key, record)

    def _backoff(self, attempt: int, why: str) -> None:
        cap = self.s.kube_backoff_max_s
        wait = min(cap, backoff_s(attempt, base_s=0.2, cap_s=cap, jitter=self._rng.random()))
        log.warning("%s; retry %d in %.1fs", why, attempt, wait)
        if self._stopping.wait(timeout=wait):
            raise Stopping
