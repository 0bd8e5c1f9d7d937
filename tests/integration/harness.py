"""Real worker processes and real Kafka clients for integration tests (no mocks)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams import settings as settings_mod
from streams.adapters import kafka_security
from streams.adapters.kafka_security import KafkaSecurity
from streams.adapters.processes import free_port, stop_group
from streams.adapters.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]

AVAILABILITY_SPEC = """apiVersion: openslo/v1
kind: Service
metadata:
  name: {svc}
spec:
  description: {description}
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: {svc}-availability
  annotations:
    slo-stream/group-by: cluster,platform
spec:
  service: {svc}
  indicator:
    metadata:
      name: {svc}-errors
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource:
            type: playback
            spec:
              field: errors
        total:
          metricSource:
            type: playback
            spec:
              field: total
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - targetPercent: 99.9
  alertPolicies:
    - alertPolicyRef: workbook-30d
"""


def availability_specs(directory: Path, services: list[str], description: str) -> Path:
    """``directory`` holding the bundled alert policies and, per service, an availability SLO at
    99.9 % grouped by cluster and platform (policy ``workbook-30d``): a spec directory for
    ``SLO_STREAM_SPECS``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policies.yaml").write_text((ROOT / "alerts" / "slos" / "policies.yaml").read_text())
    for svc in services:
        (directory / f"{svc}.yaml").write_text(AVAILABILITY_SPEC.format(svc=svc, description=description))
    return directory



@dataclass
class Deployment:
    """One isolated slo-stream deployment on a shared broker: its own app id and topic names."""

    bootstrap: str
    env: dict[str, str]
    settings: settings_mod.Settings
    tmp: Path
    security: KafkaSecurity = kafka_security.PLAINTEXT  # from env's SLO_STREAM_KAFKA_* (and secrets)

    @property
    def kafka(self) -> dict[str, Any]:
        """kafka-python keyword arguments of this deployment's security."""
        return kafka_security.kafka_python(self.security)

    @classmethod
    def create(cls, bootstrap: str, tmp: Path, *, partitions: int = 2, **extra: str) -> Deployment:
        tag = uuid.uuid4().hex[:8]
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SLO_STREAM_APP_ID": f"it-{tag}",
            "SLO_STREAM_PARTITIONS": str(partitions),
            "SLO_STREAM_SPECS": str(ROOT / "alerts" / "slos"),
            "SLO_STREAM_SESSION_TIMEOUT": "2",
            "SLO_STREAM_HEARTBEAT_INTERVAL": "0.5",
            "SLO_STREAM_BATCH_WITHIN": "0.05",
        }
        for name in ("PLAYBACK", "ALERTS", "STATUS", "DEAD_LETTER", "K8S_EVENTS", "K8S_ROLLOUTS", "ROLLOUT_GATES"):
            env[f"SLO_STREAM_TOPIC_{name}"] = f"{tag}.{name.lower().replace('_', '-')}"
        env.update(extra)
        s = settings_mod.load(env)
        security = kafka_security.from_settings(s, env)
        ensure_topics(bootstrap, s.topics, security=security)
        return cls(bootstrap, env, s, tmp, security)

    @contextlib.contextmanager
    def worker(self, name: str = "w1", **extra: str) -> Iterator[subprocess.Popen[bytes]]:
        env = dict(os.environ)
        env.update(self.env)
        env.update({"SLO_STREAM_WEB_PORT": str(free_port()),
                    "SLO_STREAM_DATADIR": str(self.tmp / f"{name}-data")})
        env.update(extra)
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115
        # `timeout -k` because a worker stuck in a crash loop may ignore SIGTERM (DESIGN.md).
        proc = subprocess.Popen(["timeout", "-k", "10", "600", sys.executable, "-m", "streams", "worker"],
                                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)
            log.close()

    def log_text(self, name: str = "w1") -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def produce(self, messages: list[tuple[bytes | None, bytes]], topic: str | None = None,
                per_second: float | None = None) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                 max_request_size=16 * 1024 * 1024, **self.kafka)
        t0 = time.time()
        for i, (key, value) in enumerate(messages):
            producer.send(topic or self.settings.topic_playback, key=key, value=value)
            if per_second and i % 20 == 0:
                time.sleep(max(0.0, t0 + i / per_second - time.time()))
        producer.flush()
        producer.close()

    def consume(self, topic: str, *, until: Callable[[list[Any]], bool], timeout_s: float,
                proc: subprocess.Popen[bytes] | None = None) -> list[Any]:
        """Read ``topic`` from the beginning (JSON values) until ``until(values)`` or the timeout."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 consumer_timeout_ms=300, **self.kafka)
        parts = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        values: list[Any] = []
        deadline = time.time() + timeout_s
        try:
            while time.time() < deadline:
                for msg in consumer:
                    values.append(orjson.loads(msg.value))
                if until(values):
                    break
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"worker exited with {proc.returncode}")
        finally:
            consumer.close()
        return values


def changelog_state(dep: Deployment) -> dict[str, Any]:
    """The latest value of each key of the worker's ``changes`` table, read from its changelog."""
    topic = f"{dep.settings.app_id}-changes-changelog"
    consumer = KafkaConsumer(bootstrap_servers=dep.bootstrap, enable_auto_commit=False, consumer_timeout_ms=300,
                             **dep.kafka)
    tps = [TopicPartition(topic, p) for p in range(dep.settings.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    latest: dict[str, Any] = {}
    try:
        for msg in consumer:
            latest[orjson.loads(msg.key)] = orjson.loads(msg.value)
    finally:
        consumer.close()
    return latest


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int, *,
                      security: KafkaSecurity = kafka_security.PLAINTEXT) -> dict[int, int]:
    """The consumer group's committed offset per partition (0 before the first commit)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security.kafka_python(security))
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        try:
            got = admin.list_group_offsets({group: tps}).get(group, {})
        except Exception:  # no such group yet
            got = {}
        return {tp.partition: max(0, got[tp].offset) if tp in got else 0 for tp in tps}
    finally:
        admin.close()


def latest_by_key(bootstrap: str, topic: str, partitions: int, *,
                  security: KafkaSecurity = kafka_security.PLAINTEXT) -> dict[bytes, Any]:
    """Read a compacted-style topic to its end and keep the latest value per key (Tansu does not compact)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000,
                             **kafka_security.kafka_python(security))
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    latest: dict[bytes, Any] = {}
    try:
        for msg in consumer:
            latest[msg.key] = orjson.loads(msg.value)
    finally:
        consumer.close()
    return latest
