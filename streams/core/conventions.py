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
TOPIC_ROLLOUT_GATES: Final = "rollout.gates"  # what enforcement did or skipped, per rollout

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


# ---- Prometheus metrics exported by every worker (README "Metrics") ------------------------------
# Labels of an SLO series. A dimension grouped away by the SLO is exported as ANY ("*").
L_SLO: Final = "slo"
L_SERVICE: Final = "service"
SERIES_LABELS: Final = (L_SLO, L_SERVICE, *DIMENSIONS)
L_WINDOW: Final = "window"  # a burn window as written in the policy: "5m", "1h", "3d"
L_SEVERITY: Final = "severity"  # page | ticket
L_REASON: Final = "reason"  # a dead-letter reason above
L_PARTITION: Final = "partition"

# Per SLO series. The two counters are cumulative since the worker started (Prometheus handles the
# reset on restart; sum rate() over instances, since partitions move between workers): the
# fallback Prometheus rules are written over them.
M_SLI_EVENTS: Final = "slo_stream_sli_events_total"  # events of the SLI (denominator)
M_SLI_BAD_EVENTS: Final = "slo_stream_sli_bad_events_total"  # errors, or slower than the threshold
M_BURN_RATE: Final = "slo_stream_burn_rate"  # gauge, + window: latest evaluation
M_BUDGET_REMAINING: Final = "slo_stream_error_budget_remaining_ratio"  # gauge: 1 = untouched, < 0 = overspent
M_ALERT_FIRING: Final = "slo_stream_alert_firing"  # gauge 0/1, + severity
M_OBJECTIVE: Final = "slo_stream_objective_ratio"  # gauge, labels slo and service only
M_LAST_EVALUATION: Final = "slo_stream_last_evaluation_timestamp_seconds"  # event time of the latest evaluation

# Pipeline health.
M_MESSAGES: Final = "slo_stream_messages_total"  # Kafka messages taken from playback.events
M_RECORDS: Final = "slo_stream_records_total"  # valid playback records counted
M_DEAD_LETTERS: Final = "slo_stream_dead_letters_total"  # + reason (late records are reason "late")
M_CONSUMER_LAG: Final = "slo_stream_consumer_lag_messages"  # gauge, + partition
M_BATCH_SECONDS: Final = "slo_stream_batch_duration_seconds"  # histogram: one partition batch, end to end
M_EVALUATION_SECONDS: Final = "slo_stream_evaluation_duration_seconds"  # histogram: process() of a batch
M_EVALUATIONS: Final = "slo_stream_evaluations_total"  # series evaluations
M_PROVISIONAL: Final = "slo_stream_provisional_alerts_total"  # + outcome: fired, confirmed, retracted
M_PROVISIONAL_OPEN: Final = "slo_stream_provisional_alerts_open"  # gauge: provisional alerts not settled yet
M_ASSIGNED_PARTITIONS: Final = "slo_stream_assigned_partitions"  # gauge
M_STATE_ENTRIES: Final = "slo_stream_state_entries"  # gauge: entries of the state table held here
M_STATE_BYTES: Final = "slo_stream_state_bytes"  # gauge: their keys and values, in bytes
M_SERIES: Final = "slo_stream_series"  # gauge + slo, service: series admitted on this worker
M_SERIES_LIMIT: Final = "slo_stream_series_limit"  # gauge: SLO_STREAM_MAX_SERIES_PER_SLO
M_SERIES_REFUSED: Final = "slo_stream_series_refused_total"  # + slo, service: records refused at the limit
M_SERIES_EVICTED: Final = "slo_stream_series_evicted_total"  # + slo, service: series displaced by new ones
M_SERIES_REFUSED_RECENT: Final = "slo_stream_series_refused_recent"  # + series labels: a sample of refusals
M_OFFSET_REREADS: Final = "slo_stream_offset_hole_rereads_total"  # docs/semantics.md, contiguity
M_NOTIFIER_DELIVERIES: Final = "slo_stream_notifier_deliveries_total"  # + kind, outcome
M_NOTIFIER_RETRIES: Final = "slo_stream_notifier_retries_total"  # + kind, reason
M_NOTIFIER_CONSUMING: Final = "slo_stream_notifier_consuming"  # gauge 1 while the notifier consumes slo.alerts
M_HTTP_SECONDS: Final = "slo_stream_http_request_duration_seconds"  # histogram + endpoint, method, code
M_GATE_DECISIONS: Final = "slo_stream_gate_decisions_total"  # + service, decision
M_K8S_RECORDS: Final = "slo_stream_k8s_records_total"  # k8s.rollouts / k8s.events records + outcome
M_ROLLOUT_STARTED: Final = "slo_stream_rollout_started_timestamp_seconds"  # + ROLLOUT_LABELS (annotations)
M_SUSPECT_SCORE: Final = "slo_stream_alert_suspect_score"  # firing alerts: series + severity, rank, kind, suspect
ROLLOUT_LABELS: Final = ("service", "cluster", "namespace", "deployment", "revision", "phase")
L_RANK: Final = "rank"
L_SUSPECT: Final = "suspect"
L_ENDPOINT: Final = "endpoint"
L_METHOD: Final = "method"
L_CODE: Final = "code"
L_DECISION: Final = "decision"
L_KIND: Final = "kind"  # trigger | resolve | change
L_OUTCOME: Final = "outcome"  # accepted | rejected (400, dead-lettered) | repeat (a replay, not sent)
