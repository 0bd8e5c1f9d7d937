"""Builds the faust.App from settings. No logic here: agents and tables live in streams.adapters."""

from __future__ import annotations

import tempfile

import faust

from streams.settings import Settings


def build_app(settings: Settings) -> faust.App:
    if not settings.bootstrap:
        raise ValueError("build_app needs a Kafka bootstrap address")
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.bootstrap.split(",") if b.strip())
    return faust.App(
        settings.app_id,
        broker=brokers,
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
        producer_acks=-1,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        worker_redirect_stdouts=False,
        # Faust's own per-table changelog topics use the app id as prefix.
        table_cleanup_interval=60.0,
    )
