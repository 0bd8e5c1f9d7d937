"""Typed settings, read once from the environment (``SLO_STREAM_*`` and ``KAFKA_BOOTSTRAP_SERVERS``).

Every setting is listed in the README's configuration reference; ``slo-stream settings`` prints the
values in force (secrets masked).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from streams.core import conventions as c
from streams.core import enforce
from streams.core.errors import ConfigError
from streams.core.model import parse_duration
from streams.core.topology import TopicSpec, latest_per_key, stream

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
    topic_rollout_gates: str = c.TOPIC_ROLLOUT_GATES
    replication_factor: int = 1
    # A worker refuses to start on a state changelog that deletes instead of compacting (its state
    # would be lost after the topic's retention); true: start anyway (docs/semantics.md).
    allow_state_deletion: bool = False
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 3.0
    # Kafka security, as the Kafka clients name it (security.protocol, sasl.mechanism, ssl.*). The
    # secrets SLO_STREAM_KAFKA_SASL_PASSWORD and SLO_STREAM_KAFKA_SSL_KEY_PASSWORD (each also as
    # _FILE) are read by streams.adapters.kafka_security alone, never part of these settings.
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str = ""  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (SASL_* protocols)
    kafka_sasl_username: str = ""
    kafka_ssl_cafile: str = ""  # CA bundle (PEM) the broker's certificate must chain to; empty: the system's
    kafka_ssl_certfile: str = ""  # client certificate (PEM) for mTLS, with kafka_ssl_keyfile
    kafka_ssl_keyfile: str = ""
    kafka_ssl_check_hostname: bool = True  # the broker's certificate must name the host we connect to
    # SLO specs
    specs: str = "alerts/slos"
    # Processing
    fetch_max_bytes: int = 64 * 1024 * 1024  # per partition and fetch: batch messages are large
    batch_max: int = 2000  # messages per batch
    batch_within_s: float = 0.2  # wait at most this long to fill a batch
    step_s: int = 10  # evaluation step, event time
    allowed_lateness_s: int = 120
    # Early firing (docs/semantics.md, "Provisional and final alerts"): after each batch of a live
    # partition, evaluate at its newest event time and page at once, settled by the final evaluation.
    provisional: bool = True
    max_future_s: int = 300
    max_series_per_slo: int = 5000
    # Admission at the series limit (docs/semantics.md, "Limits"): dimension=pattern pairs (fnmatch,
    # comma-separated) of placements admitted first, e.g. "cluster=prod-*,region=us-east-1"; and how long
    # an untrusted series goes without data before a new series may take its place.
    series_allow: str = ""
    series_idle_s: int = 3600
    stale_after_s: int = 60  # wall clock without records before a partition's status is marked stale
    # HTTP (Faust's web server: the gate API, probes, /metrics)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # Slow and idle clients (streams/adapters/http_server.py): a request's head must arrive within
    # the header timeout of its first byte, a body the API reads within the body timeout, and a
    # connection with no request under way is closed after the idle timeout (408 or a plain close).
    http_header_timeout_s: int = 10
    http_body_timeout_s: int = 10
    http_idle_timeout_s: int = 60
    # /metrics needs the read token too (when one is set); off: Prometheus scrapes without one.
    metrics_require_token: bool = False
    # How the other workers reach this one (gate requests are forwarded to the worker owning the
    # service); default http://<web_host>:<web_port>. In Kubernetes: the pod's stable DNS name.
    canonical_url: str = ""
    # Rollout gate defaults (an SLO's slo-stream/gate-* annotations override them; docs/gate.md)
    gate_budget_floor: float = 0.1  # hold when less of the error budget is left
    gate_stale_after_s: int = 120  # wall clock since the partition's last batch before data is stale
    gate_max_evaluation_lag_s: int = 300  # evaluation (event time) this far behind the wall clock: stale
    datadir: str = ""  # Faust's data directory; default: a temp directory per worker
    # Notifier (routing keys are secrets: SLO_STREAM_PAGERDUTY_ROUTING_KEY[_PAGE|_TICKET|_CHANGE]
    # or the same names with _FILE, read by the notifier alone and never part of these settings)
    pagerduty_url: str = "https://events.pagerduty.com"  # plain http only to loopback (tests, demo)
    pagerduty_timeout_s: float = 10.0
    pagerduty_severity_page: str = "critical"
    pagerduty_severity_ticket: str = "warning"
    notifier_metrics_port: int = 6067  # the notifier's /metrics (on SLO_STREAM_WEB_HOST); 0 = none
    # The cluster of a k8s.events record whose writer names none (kubernetes-event-exporter leaves its
    # clusterName empty unless configured); empty: such records are dead-lettered (docs/kube-bridge.md).
    events_default_cluster: str = ""
    # Kube bridge (docs/kube-bridge.md)
    kube_namespaces: str = ""  # comma-separated namespaces to watch; empty = all namespaces
    kube_events_api: str = "auto"  # auto (events.k8s.io/v1 when served, else core/v1) | core/v1 | events.k8s.io/v1
    kube_watch_timeout_s: int = 300  # timeoutSeconds of each watch request; it then resumes
    kube_event_max_age_s: int = 600  # Events last seen longer ago are not published; 0 = publish all
    kube_event_cache: int = 50_000  # Event uids remembered as published (a relist publishes none twice)
    kube_backoff_max_s: float = 30.0  # cap of the exponential backoff after API or Kafka errors
    # Enforcement by the kube bridge (docs/kube-bridge.md, "Enforcement"); off unless asked for
    enforce: str = "off"  # off | pause: pause a Deployment whose rollout a page blames with high confidence
    enforce_min_score: float = 0.8  # the top suspect's score must be at least this (inclusive)
    enforce_namespaces: str = ""  # comma-separated allow-list; empty = the namespaces the bridge watches
    enforce_max_alert_age_s: int = 900  # alerts whose event time is older (wall clock) are not acted on

    @property
    def topic_changes(self) -> str:
        """Internal: rollouts and warnings re-keyed by service (see streams/adapters/changes.py)."""
        return f"{self.app_id}-changes-by-service"

    @property
    def topics(self) -> dict[str, TopicSpec]:
        """Every topic the product uses, with its partition count and configs (created up front; the
        retentions are docs/semantics.md's "How long state lives")."""
        p = self.partitions
        specs = (
            stream(self.topic_playback, p, 7), stream(self.topic_k8s_events, p, 7),
            stream(self.topic_k8s_rollouts, p, 7), stream(self.topic_alerts, p, 30),
            stream(self.topic_dead_letter, p, 14), stream(self.topic_changes, p, 7),
            latest_per_key(self.topic_status, p), latest_per_key(self.topic_rollout_gates, p),
            latest_per_key(f"{self.app_id}-state-changelog", p, holds_state=True),
            latest_per_key(f"{self.app_id}-changes-changelog", p, holds_state=True),
        )
        return {t.name: t for t in specs}


_ENV_NAMES = {"bootstrap": "KAFKA_BOOTSTRAP_SERVERS"}
_DURATIONS = {"step_s", "allowed_lateness_s", "max_future_s", "stale_after_s", "series_idle_s", "gate_stale_after_s",
              "gate_max_evaluation_lag_s", "kube_watch_timeout_s", "http_header_timeout_s",
              "http_body_timeout_s", "http_idle_timeout_s",
              "kube_event_max_age_s", "enforce_max_alert_age_s"}


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
            elif f.type in ("bool",):
                values[f.name] = _boolean(raw)
            else:
                values[f.name] = raw
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r}: {exc}") from None
    s = Settings(**values)  # type: ignore[arg-type]
    _check(s)
    _check_kafka_security(s, env)
    return s


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError("must be true or false")


_TOPIC_RE = re.compile(r"^(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,249}\Z")
# host:port, [ipv6]:port or host (the client's default port); an optional scheme:// as clients allow.
_BOOTSTRAP_RE = re.compile(r"^([A-Za-z_]+://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:([1-9][0-9]{0,4}))?/?\Z")


def _check(s: Settings) -> None:
    """Every setting in range, or a ConfigError naming the variable, its value and what it must be."""
    def bad(field_name: str, why: str) -> ConfigError:
        return ConfigError(f"{env_name(field_name)}={getattr(s, field_name)!r}: {why}")

    for check in (_check_worker, _check_http, _check_kube, _check_kafka):
        check(s, bad)


Bad = Callable[[str, str], ConfigError]


def _check_worker(s: Settings, bad: Bad) -> None:
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
    if s.max_series_per_slo < 1:
        raise bad("max_series_per_slo", "must be >= 1")
    try:
        series_allow(s)
    except ValueError as exc:
        raise bad("series_allow", str(exc)) from None
    if not 60 <= s.series_idle_s <= 90 * 86400:
        raise bad("series_idle_s", "must be 1m..90d")
    if s.stale_after_s < 1:
        raise bad("stale_after_s", "must be at least 1s")
    if not 0.0 <= s.gate_budget_floor <= 1.0:
        raise bad("gate_budget_floor", "must be in 0..1 (a share of the error budget)")
    if s.gate_stale_after_s <= 0 or s.gate_max_evaluation_lag_s <= 0:
        raise bad("gate_stale_after_s", "the gate's staleness limits must be positive durations")


def _check_http(s: Settings, bad: Bad) -> None:
    """The HTTP API and the PagerDuty side."""
    if not 0 < s.web_port < 65536:
        raise bad("web_port", "must be a TCP port")
    if not s.web_host or any(ch.isspace() or not ch.isprintable() for ch in s.web_host):
        raise bad("web_host", "must be a host name or address")
    for name, most in (("http_header_timeout_s", 300), ("http_body_timeout_s", 600), ("http_idle_timeout_s", 3600)):
        if not 1 <= getattr(s, name) <= most:
            raise bad(name, f"must be 1s..{most}s")
    if s.canonical_url:
        u = urlsplit(s.canonical_url)
        if u.scheme not in ("http", "https") or not u.hostname or u.path not in ("", "/"):
            raise bad("canonical_url", "must be http(s)://host:port with no path")
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


def _check_kube(s: Settings, bad: Bad) -> None:
    """The kube bridge and enforcement."""
    if s.events_default_cluster and not c.LABEL_VALUE_RE.match(s.events_default_cluster):
        raise bad("events_default_cluster", f"must match {c.LABEL_VALUE_RE.pattern}")
    if any(not c.NAME_RE.match(ns) for ns in kube_namespaces(s)):
        raise bad("kube_namespaces", "must be a comma-separated list of namespace names")
    if s.kube_events_api not in ("auto", "core/v1", "events.k8s.io/v1"):
        raise bad("kube_events_api", "must be auto, core/v1 or events.k8s.io/v1")
    if not 1 <= s.kube_watch_timeout_s <= 3600:
        raise bad("kube_watch_timeout_s", "must be 1s..1h")
    if s.kube_event_max_age_s < 0:
        raise bad("kube_event_max_age_s", "must be >= 0 (0 = no limit)")
    if not 100 <= s.kube_event_cache <= 10_000_000:
        raise bad("kube_event_cache", "must be 100..10000000")
    if not 0.1 <= s.kube_backoff_max_s <= 600:
        raise bad("kube_backoff_max_s", "must be in [0.1, 600] seconds")
    if s.enforce not in enforce.MODES:
        raise bad("enforce", f"must be one of {', '.join(sorted(enforce.MODES))}")
    if not 0.0 < s.enforce_min_score <= 1.0:
        raise bad("enforce_min_score", "must be in (0, 1]")
    if any(not c.NAME_RE.match(ns) for ns in enforce_namespaces(s)):
        raise bad("enforce_namespaces", "must be a comma-separated list of namespace names")
    if not 0 < s.enforce_max_alert_age_s <= 86400:
        raise bad("enforce_max_alert_age_s", "must be 1s..1d")


def _check_kafka(s: Settings, bad: Bad) -> None:
    """Kafka client timings, limits and names: a bad value would otherwise surface later as a client
    traceback, a worker that never joins its group, or (series limit 0) every record dead-lettered."""
    if not 0 < s.session_timeout_s <= 3600:  # also refuses nan
        raise bad("session_timeout_s", "must be in (0, 3600] seconds")
    if not 0 < s.heartbeat_interval_s < s.session_timeout_s:
        raise bad("heartbeat_interval_s", f"must be > 0 and below {env_name('session_timeout_s')}")
    if not 0 < s.batch_within_s <= 60:
        raise bad("batch_within_s", "must be in (0, 60] seconds")
    if not 1024 <= s.fetch_max_bytes <= 2**31 - 1:
        raise bad("fetch_max_bytes", "must be 1024..2147483647 bytes")
    if s.replication_factor < 1:
        raise bad("replication_factor", "must be >= 1")
    for f in fields(s):
        if f.name.startswith("topic_") and not _TOPIC_RE.match(getattr(s, f.name)):
            raise bad(f.name, "a Kafka topic name is 1..249 of letters, digits, '.', '_' and '-' (not . or ..)")
    if s.bootstrap is not None and not all(_BOOTSTRAP_RE.match(a.strip()) for a in s.bootstrap.split(",")):
        raise bad("bootstrap", "must be host:port[,host:port...]")


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
KAFKA_SASL_PASSWORD = "SLO_STREAM_KAFKA_SASL_PASSWORD"  # secrets: read_secret, so also <name>_FILE
KAFKA_SSL_KEY_PASSWORD = "SLO_STREAM_KAFKA_SSL_KEY_PASSWORD"


def _check_kafka_security(s: Settings, env: Mapping[str, str]) -> None:
    """The security settings fit together and their files can be read; the secrets are read (and
    checked) here only to be dropped: streams.adapters.kafka_security reads them again for use."""
    def bad(field_name: str, why: str) -> ConfigError:
        return ConfigError(f"{env_name(field_name)}={getattr(s, field_name)!r}: {why}")

    protocol = s.kafka_security_protocol
    if protocol not in KAFKA_PROTOCOLS:
        raise bad("kafka_security_protocol", f"must be one of {', '.join(KAFKA_PROTOCOLS)}")
    password = read_secret(env, KAFKA_SASL_PASSWORD)
    read_secret(env, KAFKA_SSL_KEY_PASSWORD)
    if protocol.startswith("SASL_"):
        if s.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            raise bad("kafka_sasl_mechanism", f"{protocol} needs one of {', '.join(KAFKA_SASL_MECHANISMS)}")
        if not s.kafka_sasl_username:
            raise ConfigError(f"{env_name('kafka_sasl_username')} is not set: {protocol} needs a user name")
        if not password:
            raise ConfigError(f"{KAFKA_SASL_PASSWORD} (or {KAFKA_SASL_PASSWORD}_FILE) is not set: "
                              f"{protocol} needs a password")
    if bool(s.kafka_ssl_certfile) != bool(s.kafka_ssl_keyfile):
        given, missing = (("kafka_ssl_certfile", "kafka_ssl_keyfile") if s.kafka_ssl_certfile
                          else ("kafka_ssl_keyfile", "kafka_ssl_certfile"))
        raise ConfigError(f"{env_name(given)} is set but {env_name(missing)} is not: a client certificate "
                          "needs its key (and the key its certificate)")
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(s, name)
        if path and not protocol.endswith("SSL"):
            raise bad(name, f"{env_name('kafka_security_protocol')}={protocol} does not use TLS (SSL or SASL_SSL "
                            "does): the file would be ignored")
        if path and not os.access(path, os.R_OK):
            why = "no such file" if not os.path.exists(path) else "not readable by this user"
            raise bad(name, f"cannot read the file ({why})")


_ALLOW_PATTERN_RE = re.compile(r"^[A-Za-z0-9._*?\[\]!-]{1,253}\Z")


def series_allow(s: Settings) -> tuple[tuple[str, str], ...]:
    """``SLO_STREAM_SERIES_ALLOW`` as (dimension, fnmatch pattern) pairs; ValueError when malformed."""
    out = []
    for item in filter(None, (x.strip() for x in s.series_allow.split(","))):
        dim, eq, pattern = item.partition("=")
        if not eq or dim.strip() not in c.DIMENSIONS:
            raise ValueError(f"{item!r}: each item must be dimension=pattern, dimension one of "
                             f"{', '.join(c.DIMENSIONS)}")
        if not _ALLOW_PATTERN_RE.match(pattern.strip()):
            raise ValueError(f"{item!r}: the pattern must be a label value with * ? [ ] wildcards")
        out.append((dim.strip(), pattern.strip()))
    return tuple(out)


def kube_namespaces(s: Settings) -> list[str]:
    """SLO_STREAM_KUBE_NAMESPACES as a list (empty: every namespace)."""
    return [ns.strip() for ns in s.kube_namespaces.split(",") if ns.strip()]


def enforce_namespaces(s: Settings) -> list[str]:
    """SLO_STREAM_ENFORCE_NAMESPACES as a list (empty: the namespaces the kube bridge watches)."""
    return [ns.strip() for ns in s.enforce_namespaces.split(",") if ns.strip()]


def specs_path(s: Settings) -> Path:
    return Path(s.specs)


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from ``name`` or from the file named by ``<name>_FILE`` (not both), stripped; None when
    neither is set. Secrets are never part of :class:`Settings`, so nothing prints them."""
    value = env.get(name) or None
    path = env.get(f"{name}_FILE") or None
    if value and path:
        raise ConfigError(f"{name} and {name}_FILE are both set; use one")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path}: cannot read ({exc.strerror})") from None
        if not value:
            raise ConfigError(f"{name}_FILE={path}: the file is empty")
    return value
