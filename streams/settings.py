"""Typed settings, read once from the environment (``SLO_STREAM_*`` and ``KAFKA_BOOTSTRAP_SERVERS``).

Every setting is listed in the README's configuration reference; ``slo-stream settings`` prints the
values in force (secrets masked).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from streams.core import conventions as c
from streams.core.errors import ConfigError
from streams.core.model import parse_duration

ENV_PREFIX = "SLO_STREAM_"


@dataclass(frozen=True)
class Settings:
    # Kafka
    bootstrap: str | None = None  # KAFKA_BOOTSTRAP_SERVERS; None = start the embedded broker
    app_id: str = c.APP_ID
    partitions: int = 4  # partitions of playback.events and of every table's changelog
    topic_playback: str = c.TOPIC_PLAYBACK
    topic_k8s_events: str = c.TOPIC_K8S_EVENTS
    topic_k8s_rollouts: str = c.TOPIC_K8S_ROLLOUTS
    topic_alerts: str = c.TOPIC_ALERTS
    topic_status: str = c.TOPIC_STATUS
    topic_dead_letter: str = c.TOPIC_DEAD_LETTER
    replication_factor: int = 1
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 3.0
    # SLO specs
    specs: str = "alerts/slos"
    # Processing
    fetch_max_bytes: int = 64 * 1024 * 1024  # per partition and fetch: batch messages are large
    batch_max: int = 2000  # messages per batch
    batch_within_s: float = 0.2  # wait at most this long to fill a batch
    step_s: int = 10  # evaluation step, event time
    allowed_lateness_s: int = 120
    max_future_s: int = 300
    max_series_per_slo: int = 5000
    stale_after_s: int = 60  # wall clock without records before a partition's status is marked stale
    # HTTP (Faust's web server: /metrics and, later, the gate API)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    datadir: str = ""  # Faust's data directory; default: a temp directory per worker
    # Notifier (routing keys are secrets: SLO_STREAM_PAGERDUTY_ROUTING_KEY[_PAGE|_TICKET|_CHANGE]
    # or the same names with _FILE, read by the notifier alone and never part of these settings)
    pagerduty_url: str = "https://events.pagerduty.com"  # plain http only to loopback (tests, demo)
    pagerduty_timeout_s: float = 10.0
    pagerduty_severity_page: str = "critical"
    pagerduty_severity_ticket: str = "warning"
    notifier_metrics_port: int = 6067  # the notifier's /metrics (on SLO_STREAM_WEB_HOST); 0 = none

    @property
    def topics(self) -> dict[str, int]:
        """Every topic the product uses, with its partition count (created up front)."""
        p = self.partitions
        return {
            self.topic_playback: p,
            self.topic_k8s_events: p,
            self.topic_k8s_rollouts: p,
            self.topic_alerts: p,
            self.topic_status: p,
            self.topic_dead_letter: p,
            f"{self.app_id}-state-changelog": p,
        }


_ENV_NAMES = {"bootstrap": "KAFKA_BOOTSTRAP_SERVERS"}
_DURATIONS = {"step_s", "allowed_lateness_s", "max_future_s", "stale_after_s"}


def env_name(field_name: str) -> str:
    return _ENV_NAMES.get(field_name, ENV_PREFIX + field_name.removesuffix("_s").upper())


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default ``os.environ``); raise ConfigError naming the variable."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        name = env_name(f.name)
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        try:
            if f.name in _DURATIONS:
                values[f.name] = parse_duration(raw) if not raw.isdigit() else int(raw)
            elif f.type in ("int",):
                values[f.name] = int(raw)
            elif f.type in ("float",):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r}: {exc}") from None
    s = Settings(**values)  # type: ignore[arg-type]
    _check(s)
    return s


def _check(s: Settings) -> None:
    def bad(field_name: str, why: str) -> ConfigError:
        return ConfigError(f"{env_name(field_name)}={getattr(s, field_name)!r}: {why}")

    if not 1 <= s.partitions <= 1024:
        raise bad("partitions", "must be 1..1024")
    if s.step_s < 10 or s.step_s % 10:
        raise bad("step_s", "the evaluation step must be a multiple of 10s")
    if s.allowed_lateness_s < 0 or s.allowed_lateness_s > 3600:
        raise bad("allowed_lateness_s", "must be 0..1h")
    if not 1 <= s.batch_max <= 100_000:
        raise bad("batch_max", "must be 1..100000")
    if not c.NAME_RE.match(s.app_id):
        raise bad("app_id", "must be a lowercase DNS label")
    if not 0 < s.web_port < 65536:
        raise bad("web_port", "must be a TCP port")
    from urllib.parse import urlsplit

    url = urlsplit(s.pagerduty_url)
    loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
    if url.scheme not in ("https", "http") or not url.hostname or (url.scheme == "http" and not loopback):
        raise bad("pagerduty_url", "must be https (plain http only to a loopback address)")
    if not 0 <= s.notifier_metrics_port < 65536:
        raise bad("notifier_metrics_port", "must be a TCP port, or 0 for none")
    if not 0 < s.pagerduty_timeout_s <= 120:
        raise bad("pagerduty_timeout_s", "must be in (0, 120] seconds")
    for sev in ("pagerduty_severity_page", "pagerduty_severity_ticket"):
        if getattr(s, sev) not in ("critical", "error", "warning", "info"):
            raise bad(sev, "must be critical, error, warning or info")


def specs_path(s: Settings) -> Path:
    return Path(s.specs)
