"""Builds the faust.App from settings. No logic here: agents and tables live in streams.adapters."""

from __future__ import annotations

import tempfile

import faust

from streams.adapters import kafka_security
from streams.adapters.kafka_security import KafkaSecurity
from streams.settings import Settings


def build_app(settings: Settings, security: KafkaSecurity | None = None) -> faust.App:
    """``security`` defaults to the SLO_STREAM_KAFKA_* settings with their secrets from the environment."""
    if not settings.bootstrap:
        raise ValueError("build_app needs a Kafka bootstrap address")
    sec = security or kafka_security.from_settings(settings)
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.bootstrap.split(",") if b.strip())
    return faust.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=kafka_security.faust_credentials(sec),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        store="memory://",
        datadir=settings.datadir or tempfile.mkdtemp(prefix="slo-stream-"),
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=settings.fetch_max_bytes,
        # Nothing here runs on_leader=True, so no leader-election topic: its always-empty partition
        # was often the only fetchable one while the source partition still had buffered records,
        # and faust's aiokafka driver hard-codes fetch_max_wait_ms=1500, so that fetch parked in
        # the broker for 1.5 s and no source fetch could start meanwhile (Kafka and Tansu alike).
        topic_disable_leader=True,
        producer_acks=-1,
        # Table writes go through faust's ProducerBuffer, which sends one message per
        # event-loop turn (several turns per message, in fact). With linger 0 that produced a
        # produce request every ~3 records and the sender's request/response work starved the
        # buffer. 10 ms lets a request carry hundreds of records; a larger batch lets a whole
        # batch's table writes share a request. 256 KiB is far below Kafka's default
        # message.max.bytes (1 MiB) and producer_max_request_size (1,000,000).
        producer_linger=0.01,
        producer_max_batch_size=256 * 1024,
        web_host=settings.web_host,
        canonical_url=settings.canonical_url or f"http://{settings.web_host}:{settings.web_port}",
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        worker_redirect_stdouts=False,
        # Faust's own per-table changelog topics use the app id as prefix.
        table_cleanup_interval=60.0,
    )
