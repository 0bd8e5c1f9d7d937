"""Plays a scenario's timeline (:mod:`streams.demo.scenario`) into Kafka: ``slo-stream replay`` and the demo.

At full speed minutes of event time pass in milliseconds, while a rollout takes two hops to reach the
worker's ``changes`` table (docs/correlation.md). So, unless told otherwise, after each rollout record
the player waits until the table's changelog shows it: the records that burn never overtake the
rollout that causes them, as they never do live.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.adapters import kafka_security
from streams.adapters.kafka_security import KafkaSecurity
from streams.core.changes import ServiceChanges, service_of_event, warning_key
from streams.core.wire.k8s_event import decode_event
from streams.core.wire.rollout import decode_rollout
from streams.demo.scenario import EVENTS, PLAYBACK, ROLLOUTS, Checkpoint, Produce
from streams.settings import Settings


class ChangelogWatcher:
    """Follows the worker's ``changes`` table through its changelog topic (latest value per key)."""

    def __init__(self, bootstrap: str, settings: Settings, kafka: dict[str, Any]) -> None:
        self.topic = f"{settings.app_id}-changes-changelog"
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      consumer_timeout_ms=200, **kafka)
        tps = [TopicPartition(self.topic, p) for p in range(settings.partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.latest: dict[str, ServiceChanges] = {}

    def poll(self) -> None:
        for msg in self.consumer:
            if msg.value is not None:
                self.latest[orjson.loads(msg.key)] = ServiceChanges.from_bytes(msg.value)

    def has_rollout(self, service: str, cluster: str, revision: str, ts: float = 0.0) -> bool:
        """The table holds this revision's rollout, merged up to the record of time ``ts`` (a later
        phase of the same revision moves its ``phase_ts``)."""
        state = self.latest.get(service)
        return state is not None and any(r.cluster == cluster and r.revision == revision and r.phase_ts >= ts
                                         for r in state.rollouts.values())

    def has_warning(self, service: str, key: str, count: int) -> bool:
        state = self.latest.get(service)
        w = state.warnings.get(key) if state is not None else None
        return w is not None and sum(w.uids.values()) >= count

    def wait_for_warnings(self, wanted: list[tuple[str, str, int]], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if all(self.has_warning(*w) for w in wanted):
                return True
        return False

    def wait_for_rollout(self, service: str, cluster: str, revision: str, timeout_s: float,
                         ts: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if self.has_rollout(service, cluster, revision, ts):
                return True
        return False

    def close(self) -> None:
        self.consumer.close()


@dataclass
class PlayStats:
    messages: dict[str, int] = field(default_factory=lambda: {PLAYBACK: 0, ROLLOUTS: 0, EVENTS: 0})
    records: int = 0
    rollouts_unseen: list[str] = field(default_factory=list)  # not in the table within the wait


class Player:
    """Produces a timeline. ``on_checkpoint`` is called at each checkpoint, after everything before
    it was delivered; ``sync_rollouts`` waits for each rollout to reach the worker's table."""

    def __init__(self, bootstrap: str, settings: Settings, *, sync_rollouts: bool = True,
                 on_checkpoint: Callable[[Checkpoint, PlayStats], None] | None = None,
                 sync_timeout_s: float = 30.0, services: Iterable[str] | None = None,
                 security: KafkaSecurity | None = None) -> None:
        """``security`` defaults to the SLO_STREAM_KAFKA_* settings (secrets from the environment)."""
        self.settings = settings
        kafka = kafka_security.kafka_python(security or kafka_security.from_settings(settings))
        self.topics = {PLAYBACK: settings.topic_playback, ROLLOUTS: settings.topic_k8s_rollouts,
                       EVENTS: settings.topic_k8s_events}
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                      max_request_size=16 * 1024 * 1024, **kafka)
        self.watcher = ChangelogWatcher(bootstrap, settings, kafka) if sync_rollouts else None
        self.on_checkpoint = on_checkpoint
        self.sync_timeout_s = sync_timeout_s
        self.stats = PlayStats()
        # Rollouts of services without an SLO never reach the table: no waiting for those.
        self.services = None if services is None else frozenset(services)

    def play(self, items: Iterable[Produce | Checkpoint], *, speed: float = 0.0) -> PlayStats:
        """``speed``: 0 as fast as possible, else that many seconds of event time per wall second."""
        first_ts: float | None = None
        t0 = time.monotonic()
        warnings: list[tuple[str, str, int]] = []  # produced, not yet seen in the table
        for item in items:
            if warnings and (isinstance(item, Checkpoint) or item.topic == PLAYBACK):
                # The Warning events just produced reach the table before the traffic after them.
                self.producer.flush()
                assert self.watcher is not None
                if not self.watcher.wait_for_warnings(warnings, self.sync_timeout_s):
                    self.stats.rollouts_unseen.append(f"{len(warnings)} warning events")
                warnings = []
            if speed > 0:
                first_ts = item.ts if first_ts is None else first_ts
                wait = t0 + (item.ts - first_ts) / speed - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            if isinstance(item, Checkpoint):
                self.producer.flush()
                if self.on_checkpoint is not None:
                    self.on_checkpoint(item, self.stats)
                continue
            self.producer.send(self.topics[item.topic], key=item.key, value=item.value)
            self.stats.messages[item.topic] += 1
            if item.topic == PLAYBACK:
                self.stats.records += item.value.count(b'"total"')
            elif item.topic == EVENTS and self.watcher is not None and self.services is not None:
                ev = decode_event(orjson.loads(item.value), default_cluster=None)
                service = service_of_event(ev, self.services)
                if service is not None and ev.warning:
                    warnings.append((service, warning_key(ev), ev.count))
            elif item.topic == ROLLOUTS and self.watcher is not None:
                self.producer.flush()
                r = decode_rollout(orjson.loads(item.value))
                if r.service is None or (self.services is not None and r.service not in self.services):
                    continue
                if not self.watcher.wait_for_rollout(r.service, r.workload.cluster, r.revision, self.sync_timeout_s,
                                                     ts=r.ts):
                    self.stats.rollouts_unseen.append(f"{r.service}@{r.revision} {r.phase}")
        self.producer.flush()
        return self.stats

    def close(self) -> None:
        self.producer.close()
        if self.watcher is not None:
            self.watcher.close()
