"""Rollouts and Kubernetes warnings into per-service state, next to the service's playback records.

``k8s.rollouts`` is keyed by Deployment and ``k8s.events`` by object (or by Event UID when
kubernetes-event-exporter writes it), but an alert is evaluated on the partition of its *service*.
So two hops, both at-least-once with idempotent effects:

1. ``route``: validate each record (bad ones to the dead-letter topic with the reason), find its
   service, keep Warning events and rollouts of services that have an SLO, and forward them keyed by
   service to ``<app id>-changes-by-service`` (same partition count as ``playback.events``).
2. ``changes``: merge them into the ``changes`` table (key: service; a changelog topic), written to
   the changelog partition of the record's partition. Faust assigns topics with the same partition
   count together (co-partitioning), so the worker that evaluates a service's alerts holds that
   service's changes, and the engine reads them when an alert fires.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import faust
import orjson

from streams.adapters.pipeline import StateTable, dead_letter_value
from streams.core import conventions as c
from streams.core.correlation import CorrelationConfig, ServiceChanges, service_of_event
from streams.core.kube import KubeObjectError, normalise_event, parse_rollout
from streams.core.records import Rejected
from streams.settings import Settings

log = logging.getLogger("slo_stream.changes")

MAX_K8S_MESSAGE_BYTES = 1024 * 1024


class Changes:
    """The two agents and the ``changes`` table. Create before the worker starts."""

    def __init__(self, app: faust.App, settings: Settings, services: Iterable[str], *,
                 dead_letter: faust.TopicT, stats: dict[str, int],
                 config: CorrelationConfig | None = None) -> None:
        self.app = app
        self.settings = settings
        self.services = frozenset(services)
        self.config = config or CorrelationConfig()
        self.stats = stats
        self.dead_letter = dead_letter
        self.table = StateTable(
            app, name="changes", default=None, beacon=app.tables.beacon, partitions=settings.partitions,
            help="rollouts and Kubernetes warnings per service (correlation)",
        )
        self.table.key_serializer = "json"
        self.table.value_serializer = "raw"
        app.tables.add(self.table)
        self.sources = app.topic(settings.topic_k8s_rollouts, settings.topic_k8s_events,
                                 key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        self.by_service = app.topic(settings.topic_changes, key_type=bytes, value_type=bytes,
                                    key_serializer="raw", value_serializer="raw",
                                    partitions=settings.partitions)
        app.agent(self.sources, name="route-changes")(self._route)
        app.agent(self.by_service, name="changes")(self._merge)

    # ---- hop 1: validate and re-key by service --------------------------------------------------

    def classify(self, topic: str, value: bytes | None, *, now: float | None = None
                 ) -> tuple[str, dict[str, Any] | None, str]:
        return classify(value, rollouts=topic == self.settings.topic_k8s_rollouts, services=self.services,
                        now=time.time() if now is None else now, max_future_s=self.settings.max_future_s)

    async def _route(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=0.2):
            futures = []
            for ev in events:
                m = ev.message
                outcome, fwd, detail = self.classify(m.topic, m.value)
                if outcome == "keep":
                    self.stats["k8s.kept"] += 1
                elif outcome == "ignore":
                    self.stats["k8s.ignored"] += 1
                else:
                    self.stats["k8s.dead_letter"] += 1
                    self.stats[f"rejected.{outcome}"] += 1
                if fwd is not None:
                    futures.append(await self.by_service.send(key=fwd["service"].encode(),
                                                              value=orjson.dumps(fwd)))
                elif outcome != "ignore":
                    futures.append(await self.dead_letter.send(
                        key=f"{m.topic}/{m.partition}/{m.offset}".encode(),
                        value=dead_letter_value(Rejected(outcome, detail, m.offset), topic=m.topic,
                                                partition=m.partition, original=m.value)))
                    log.warning("dead letter from %s/%d@%d: %s: %s", m.topic, m.partition, m.offset,
                                outcome, detail[:200])
            for f in futures:
                await f  # delivered before Faust acknowledges (and later commits) the sources

    # ---- hop 2: merge into the table --------------------------------------------------------------

    async def _merge(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=0.2):
            by_partition: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
            for ev in events:
                m = ev.message
                try:
                    fwd = orjson.loads(m.value)
                    by_partition[m.partition][fwd["service"]].append(fwd)
                except (orjson.JSONDecodeError, KeyError, TypeError) as exc:  # only we write this topic
                    log.error("unreadable record on %s/%d@%d: %s", m.topic, m.partition, m.offset, exc)
            for partition, per_service in by_partition.items():
                self.table.write_partition = partition
                try:
                    for service, records in per_service.items():
                        self.table[service] = self.merge(self.table.get(service), records)
                finally:
                    self.table.write_partition = None
                self.stats["k8s.merged"] += sum(len(v) for v in per_service.values())

    def merge(self, raw: bytes | None, records: list[dict[str, Any]]) -> bytes:
        sc = ServiceChanges.from_bytes(raw)
        for fwd in records:
            try:
                if fwd.get("kind") == "rollout":
                    sc.apply_rollout(fwd["record"], self.config)
                elif fwd.get("kind") == "warning":
                    sc.apply_warning(fwd["record"], self.config)
                elif fwd.get("kind") == "freeze":
                    sc.apply_freeze(fwd["record"])
            except (KeyError, TypeError, ValueError) as exc:  # validated upstream; never stop the agent
                self.stats["k8s.merge_errors"] += 1
                log.error("skipped a %s record of %s that could not be merged: %s", fwd.get("kind"),
                          fwd.get("service"), exc)
        return sc.to_bytes()


def classify(value: bytes | None, *, rollouts: bool, services: frozenset[str], now: float, max_future_s: int
             ) -> tuple[str, dict[str, Any] | None, str]:
    """``(outcome, forwarded record, detail)`` for one ``k8s.rollouts`` (``rollouts``) or ``k8s.events``
    value: outcome ``keep`` (record set), ``ignore`` (a Normal event, a service without an SLO) or a
    dead-letter reason. Never raises: anything unexpected in a record is a dead letter
    (``bad_field``), never a stopped agent."""
    try:
        return _classify(value, rollouts, services, now + max_future_s, max_future_s)
    except Exception as exc:  # a shape the validators did not foresee
        return c.REASON_BAD_FIELD, None, f"unreadable record ({type(exc).__name__}: {str(exc)[:200]})"


def _classify(value: bytes | None, rollouts: bool, services: frozenset[str], future: float, max_future_s: int
              ) -> tuple[str, dict[str, Any] | None, str]:
    if value is None:
        return c.REASON_BAD_JSON, None, "empty message (no value)"
    if len(value) > MAX_K8S_MESSAGE_BYTES:
        return c.REASON_TOO_LARGE, None, f"message of {len(value)} bytes exceeds {MAX_K8S_MESSAGE_BYTES}"
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return c.REASON_BAD_JSON, None, f"not JSON: {exc}"
    if type(doc) is not dict:
        return c.REASON_BAD_JSON, None, f"expected a JSON object, got {type(doc).__name__}"
    sv = doc.get("schema_version", c.SCHEMA_VERSION)  # kubernetes-event-exporter sends none
    if sv != c.SCHEMA_VERSION or type(sv) is not int:
        return c.REASON_BAD_SCHEMA_VERSION, None, f"schema_version must be {c.SCHEMA_VERSION}, got {sv!r}"
    if rollouts:
        try:
            r = parse_rollout(doc)
        except KubeObjectError as exc:
            return exc.reason, None, exc.detail
        if r["service"] not in services:
            return "ignore", None, f"no SLO for service {r['service']}"
        if r["ts"] > future:
            # One clock far ahead would age every other record of the service out of the state.
            return c.REASON_FUTURE, None, f"ts {r['ts']:.0f} is more than {max_future_s}s ahead"
        return "keep", {"kind": "rollout", "service": r["service"], "record": r}, ""
    try:
        ev = normalise_event(doc, default_cluster=None)
    except KubeObjectError as exc:
        return exc.reason, None, exc.detail
    if ev.get("type") != "Warning":
        return "ignore", None, "not a Warning event"
    service = service_of_event(ev, services)
    if service is None:
        return "ignore", None, "the object belongs to no service with an SLO"
    if ev["last_ts"] > future or ev["first_ts"] > future:
        return c.REASON_FUTURE, None, f"the event's time is more than {max_future_s}s ahead"
    return "keep", {"kind": "warning", "service": service, "record": ev}, ""
