"""Shared names: topics, metric names, label keys, dedup keys. One place, so nothing drifts."""

from __future__ import annotations

import re
from typing import Final

# Topic names (defaults; each is configurable through settings).
TOPIC_PLAYBACK: Final = "playback.events"
TOPIC_K8S_EVENTS: Final = "k8s.events"
TOPIC_K8S_ROLLOUTS: Final = "k8s.rollouts"
TOPIC_ALERTS: Final = "slo.alerts"
TOPIC_STATUS: Final = "slo.status"
TOPIC_DEAD_LETTER: Final = "dead-letter"

APP_ID: Final = "slo-stream"

# Dimensions every playback record carries, in series-key order.
DIMENSIONS: Final = ("cluster", "region", "platform")
PLATFORMS: Final = ("kubernetes", "legacy")
# A dimension grouped away in a series is shown as this value.
ANY: Final = "*"

# Names and label values that reach Kafka keys, PromQL and YAML: a conservative charset.
# \Z, not $: "$" also matches before a trailing newline.
NAME_RE: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
LABEL_VALUE_RE: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z")

SCHEMA_VERSION: Final = 1

# Dead-letter reasons (also the values of the `reason` metric label).
REASON_BAD_JSON: Final = "bad_json"
REASON_BAD_SCHEMA_VERSION: Final = "unknown_schema_version"
REASON_MISSING_FIELD: Final = "missing_field"
REASON_BAD_FIELD: Final = "bad_field"
REASON_BAD_COUNTS: Final = "bad_counts"
REASON_TOO_LARGE: Final = "too_large"
REASON_LATE: Final = "late"
REASON_FUTURE: Final = "future_timestamp"
REASON_WRONG_KEY: Final = "wrong_partition_key"
REASON_UNKNOWN_SERVICE: Final = "unknown_service"
REASON_SERIES_LIMIT: Final = "series_limit"


def series_key(slo: str, cluster: str, region: str, platform: str) -> str:
    """The key of one SLO series: the SLO name and its (possibly grouped-away) dimensions."""
    return f"{slo}|{cluster}|{region}|{platform}"


def split_series_key(key: str) -> tuple[str, str, str, str]:
    slo, cluster, region, platform = key.split("|")
    return slo, cluster, region, platform


def dedup_key(series: str, severity: str) -> str:
    """Stable per SLO, severity and dimensions, so a restart or replay never opens a second incident."""
    slo, cluster, region, platform = split_series_key(series)
    return f"slo-stream/{slo}/{severity}/cluster={cluster}/region={region}/platform={platform}"
