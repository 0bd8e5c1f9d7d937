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

from streams.adapters.tables import state_table
from streams.core.changes import DEFAULT_LIMITS, IGNORE, KEEP, ChangeLimits, Classified, ServiceChanges, classify
from streams.core.errors import RecordError
from streams.core.wire.change import Change, decode_change, encode_change
from streams.core.wire.deadletter import DeadLetter, Source
from streams.settings import Settings

log = logging.getLogger("slo_stream.changes")


class Changes:
    """The two agents and the ``changes`` table. Create before the worker starts."""

    def __init__(self, app: faust.App, settings: Settings, services: Iterable[str], *,
                 dead_letter: faust.TopicT, stats: dict[str, int], limits: ChangeLimits = DEFAULT_LIMITS) -> None:
        self.app = app
        self.settings = settings
        self.services = frozenset(services)
        self.limits = limits
        self.stats = stats
        self.dead_letter = dead_letter
        self.table = state_table(app, settings, name="changes",
                                 help="rollouts and Kubernetes warnings per service (correlation)")
        self.sources = app.topic(settings.topic_k8s_rollouts, settings.topic_k8s_events,
                                 key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        self.by_service = app.topic(settings.topic_changes, key_type=bytes, value_type=bytes,
                                    key_serializer="raw", value_serializer="raw",
                                    partitions=settings.partitions)
        app.agent(self.sources, name="route-changes")(self._route)
        app.agent(self.by_service, name="changes")(self._merge)

    # ---- hop 1: validate and re-key by service --------------------------------------------------

    def classify(self, topic: str, value: bytes | None, *, now: float | None = None) -> Classified:
        return classify(value, rollouts=topic == self.settings.topic_k8s_rollouts, services=self.services,
                        now=time.time() if now is None else now, max_future_s=self.settings.max_future_s,
                        default_cluster=self.settings.events_default_cluster or None)

    async def forward(self, change: Change) -> Any:
        """Send one change to the partition of its service (a freeze from the HTTP API, or hop 1)."""
        return await self.by_service.send(key=change.service.encode(), value=encode_change(change))

    async def _route(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=0.2):
            futures = []
            for ev in events:
                m = ev.message
                got = self.classify(m.topic, m.value)
                if got.outcome == KEEP:
                    self.stats["k8s.kept"] += 1
                elif got.outcome == IGNORE:
                    self.stats["k8s.ignored"] += 1
                else:
                    self.stats["k8s.dead_letter"] += 1
                    self.stats[f"rejected.{got.outcome}"] += 1
                if got.change is not None:
                    futures.append(await self.forward(got.change))
                elif got.outcome != IGNORE:
                    letter = DeadLetter(got.outcome, got.detail, Source(m.topic, m.partition, m.offset),
                                        original=m.value)
                    futures.append(await self.dead_letter.send(key=letter.key.encode(), value=letter.encode()))
                    log.warning("dead letter from %s/%d@%d: %s: %s", m.topic, m.partition, m.offset,
                                got.outcome, got.detail[:200])
            for f in futures:
                await f  # delivered before Faust acknowledges (and later commits) the sources

    # ---- hop 2: merge into the table --------------------------------------------------------------

    async def _merge(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=0.2):
            by_partition: dict[int, dict[str, list[Change]]] = defaultdict(lambda: defaultdict(list))
            for ev in events:
                m = ev.message
                try:
                    change = decode_change(m.value)
                except RecordError as exc:  # only we write this topic
                    log.error("unreadable record on %s/%d@%d: %s", m.topic, m.partition, m.offset, exc)
                    continue
                by_partition[m.partition][change.service].append(change)
            for partition, per_service in by_partition.items():
                self.table.write_partition = partition
                try:
                    for service, changes in per_service.items():
                        self.table[service] = self.merge(self.table.get(service), changes)
                finally:
                    self.table.write_partition = None
                self.stats["k8s.merged"] += sum(len(v) for v in per_service.values())

    def merge(self, raw: bytes | None, changes: list[Change]) -> bytes:
        sc = ServiceChanges.from_bytes(raw)
        for change in changes:
            try:
                sc.apply(change, self.limits)
            except (KeyError, TypeError, ValueError) as exc:  # validated upstream; never stop the agent
                self.stats["k8s.merge_errors"] += 1
                log.error("skipped a %s record of %s that could not be merged: %s", change.kind, change.service,
                          exc)
        return sc.to_bytes()
