"""Kafka topic administration: wait for a broker, create topics up front with their partition counts
and configs, and read the configs of those that exist.

Every topic must exist with its intended partition count *before* any producer or Faust worker touches
it: a producer that auto-creates a topic gets the broker's default (4 partitions on Tansu), and a Faust
table whose source topic and changelog topic disagree crash-loops with ``PartitionsMismatch``. The
configs (:mod:`streams.core.topology`: compaction for every "latest per key" topic, retention for the
streams) are set at creation; for a topic that already exists they are read back (DescribeConfigs)
and what is wrong is returned, since this client never changes an existing topic's configs.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError, for_code

from streams.adapters import kafka_security
from streams.adapters.kafka_security import KafkaSecurity, addresses
from streams.core.topology import TopicProblem, TopicSpec, check

log = logging.getLogger(__name__)

__all__ = ["BrokerUnavailableError", "TopicError", "ensure_topics", "wait_for_broker"]

_CLIENT_ID = "slo-stream-admin"
_POLL_S = 0.05


class TopicError(RuntimeError):
    """A topic could not be created or does not have the expected shape.

    ``retryable`` says whether trying again can help: ``False`` for a topic that exists with another
    partition count (someone must delete and recreate it, or the configuration must change) or a request
    the broker rejects as invalid; ``True`` for transient conditions (timeouts, metadata not yet visible).
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        hint = "a retry may help" if retryable else "a retry will not help"
        super().__init__(f"{message} ({hint})")
        self.retryable = retryable


class BrokerUnavailableError(ConnectionError):
    """No Kafka broker answered at the bootstrap address before the deadline. A retry may help."""

    retryable = True


def wait_for_broker(bootstrap: str, timeout_s: float = 30, *, security: KafkaSecurity | None = None) -> None:
    """Block until a Kafka broker at ``bootstrap`` answers a metadata request, or raise.

    ``bootstrap`` is a comma-separated ``host:port`` list (an optional ``scheme://`` prefix is ignored).
    Polls with a deadline, never a fixed sleep. Raises :class:`BrokerUnavailableError` on timeout.
    """
    with _admin_client(bootstrap, timeout_s, security) as admin:
        admin.describe_cluster()


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int | TopicSpec],
    *,
    timeout_s: float = 30,
    replication_factor: int = 1,
    security: KafkaSecurity | None = None,
) -> list[TopicProblem]:
    """Make sure each topic in ``topics`` (name -> spec, or a bare partition count) exists with that
    partition count; return what is wrong with the configs of those that already existed.

    Missing topics are created with their configs (a concurrent creation by someone else is
    tolerated); existing topics are left alone, their configs read back and checked
    (:func:`streams.core.topology.check`). Afterwards the broker's metadata is checked until every topic
    is visible with the expected number of partitions, each with a leader. Idempotent.

    Raises :class:`TopicError` (``retryable=False``) if a topic exists with a different partition count,
    :class:`TopicError` (``retryable=True``) if the topics are not visible before the deadline, and
    :class:`BrokerUnavailableError` if no broker answers. ``ValueError`` for invalid arguments.
    """
    wanted = _validate(topics, replication_factor)
    if not wanted:
        return []
    deadline = time.monotonic() + timeout_s
    with _admin_client(bootstrap, timeout_s, security) as admin:
        try:
            existing = _describe(admin, list(wanted))
        except KafkaError as exc:
            raise TopicError(f"reading topic metadata failed: {exc}", retryable=bool(exc.retriable)) from exc
        _check_partition_counts(existing, {n: t.partitions for n, t in wanted.items()})
        missing = [name for name in wanted if name not in existing]
        if missing:
            _create(admin, {n: wanted[n] for n in missing}, replication_factor, deadline)
        _wait_visible(admin, {n: t.partitions for n, t in wanted.items()}, deadline)
        return _config_problems(admin, [wanted[n] for n in wanted if n in existing], bootstrap)


def topic_configs(bootstrap: str, names: list[str], *, timeout_s: float = 30,
                  security: KafkaSecurity | None = None) -> dict[str, dict[str, str]]:
    """The configs of topics as the broker describes them (all, defaults included; a broker may leave
    out what it does not track). :class:`TopicError` when the broker will not describe one of them."""
    with _admin_client(bootstrap, timeout_s, security) as admin:
        got = _read_configs(admin, names)
    errors = {n: v for n, v in got.items() if isinstance(v, str)}
    if errors:
        raise TopicError(f"describing topic configs failed: {errors}", retryable=False)
    return {n: v for n, v in got.items() if not isinstance(v, str)}


# -- internals -------------------------------------------------------------------------------------------


def _validate(topics: Mapping[str, int | TopicSpec], replication_factor: int) -> dict[str, TopicSpec]:
    if isinstance(replication_factor, bool) or not isinstance(replication_factor, int):
        raise ValueError(f"replication_factor must be an int, got {replication_factor!r}")
    if replication_factor < 1:
        raise ValueError(f"replication_factor must be >= 1, got {replication_factor}")
    wanted: dict[str, TopicSpec] = {}
    for name, spec in topics.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"topic names must be non-empty strings, got {name!r}")
        partitions = spec.partitions if isinstance(spec, TopicSpec) else spec
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"topic {name!r}: partition count must be an int >= 1, got {partitions!r}")
        wanted[name] = spec if isinstance(spec, TopicSpec) else TopicSpec(name, partitions)
    return wanted


def _kafka_python_bootstrap(addrs: list[tuple[str, int]]) -> list[str]:
    return [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addrs]


def _tcp_reachable(addrs: list[tuple[str, int]], timeout_s: float) -> bool:
    for host, port in addrs:
        try:
            with socket.create_connection((host, port), timeout=max(0.05, min(timeout_s, 1.0))):
                return True
        except OSError:
            continue
    return False


@contextmanager
def _admin_client(bootstrap: str, timeout_s: float, security: KafkaSecurity | None) -> Iterator[KafkaAdminClient]:
    """A connected admin client, waiting (with a deadline) for the broker to answer."""
    addrs = addresses(bootstrap)
    servers = _kafka_python_bootstrap(addrs)
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    # Poll plain TCP first: cheap, and every failed KafkaAdminClient() leaves its I/O thread behind.
    while not _tcp_reachable(addrs, deadline - time.monotonic()):
        if time.monotonic() >= deadline:
            raise BrokerUnavailableError(
                f"no Kafka broker accepts connections at {bootstrap} (waited {timeout_s:g} s)"
            )
        time.sleep(_POLL_S)
    admin: KafkaAdminClient | None = None
    while admin is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerUnavailableError(
                f"Kafka broker at {bootstrap} did not answer within {timeout_s:g} s: {last_error}"
            )
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=servers,
                client_id=_CLIENT_ID,
                bootstrap_timeout_ms=max(100, int(remaining * 1000)),
                request_timeout_ms=max(1000, int(min(remaining, 30.0) * 1000)),
                **kafka_security.kafka_python(security or kafka_security.PLAINTEXT),
            )
        except KafkaError as exc:
            last_error = exc
            time.sleep(_POLL_S)
    try:
        yield admin
    finally:
        with suppress(Exception):
            admin.close()


def _describe(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, Any]]:
    """Topics among ``names`` that exist, by name (metadata dicts). Unknown topics are omitted."""
    found: dict[str, dict[str, Any]] = {}
    for topic in admin.describe_topics(names):
        code = topic.get("error_code", 0)
        if code == 0:
            found[topic["name"]] = topic
        elif code != UnknownTopicOrPartitionError.errno:
            log.debug("metadata for topic %s: %s", topic.get("name"), for_code(code).__name__)
    return found


def _check_partition_counts(existing: Mapping[str, Mapping[str, Any]], wanted: Mapping[str, int]) -> None:
    wrong = {
        name: len(meta.get("partitions") or [])
        for name, meta in existing.items()
        if name in wanted and len(meta.get("partitions") or []) != wanted[name]
    }
    if wrong:
        details = "; ".join(f"{n!r} has {have} partitions, expected {wanted[n]}" for n, have in wrong.items())
        raise TopicError(
            f"topic partition count mismatch: {details}. Delete and recreate the topic(s) or change the "
            "configured partition count (a topic auto-created by a producer gets the broker default, "
            "4 partitions on Tansu)",
            retryable=False,
        )


def _create(
    admin: KafkaAdminClient, missing: Mapping[str, TopicSpec], replication_factor: int, deadline: float
) -> None:
    request = {
        name: {"num_partitions": spec.partitions, "replication_factor": replication_factor, "configs": spec.configs()}
        for name, spec in missing.items()
    }
    timeout_ms = max(1000, int((deadline - time.monotonic()) * 1000))
    try:
        response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
    except KafkaError as exc:
        raise TopicError(
            f"creating topics {sorted(missing)} failed: {exc}", retryable=bool(exc.retriable)
        ) from exc
    failures: list[str] = []
    retryable = True
    for result in response.get("topics", []):
        code = result.get("error_code", 0)
        if code in (0, TopicAlreadyExistsError.errno):
            if code == 0:
                spec = missing[result["name"]]
                log.info("created topic %s (%d partitions, %s)", spec.name, spec.partitions,
                         ", ".join(f"{k}={v}" for k, v in spec.configs().items()) or "broker defaults")
            continue
        err = for_code(code)
        retryable = retryable and bool(getattr(err, "retriable", False))
        detail = result.get("error_message") or ""
        failures.append(f"{result.get('name')!r}: {err.__name__}: {detail}".rstrip(": "))
    if failures:
        raise TopicError("creating topics failed: " + "; ".join(failures), retryable=retryable)


def _leaders_ok(meta: Mapping[str, Any]) -> bool:
    return all(p.get("error_code", 0) == 0 and p.get("leader_id", -1) >= 0 for p in meta["partitions"])


def _wait_visible(admin: KafkaAdminClient, wanted: Mapping[str, int], deadline: float) -> None:
    """Poll metadata until every topic exists with the wanted partition count and a leader per partition."""
    while True:
        try:
            existing = _describe(admin, list(wanted))
        except KafkaError as exc:  # transient (e.g. a reconnect): keep polling until the deadline
            log.debug("metadata request failed while waiting for topics: %s", exc)
            existing = {}
        _check_partition_counts(existing, wanted)
        pending = sorted(name for name in wanted if name not in existing or not _leaders_ok(existing[name]))
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TopicError(
                f"topics not visible with a leader for every partition before the deadline: {pending}",
                retryable=True,
            )
        time.sleep(_POLL_S)


def _read_configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str] | str]:
    """Per topic: its configs, or why the broker would not describe them (a denied DescribeConfigs ACL,
    an unknown topic). kafka-python's ``describe_configs`` drops the per-topic error code, which makes
    a denied topic look like one with no config at all (hence ``cleanup.policy=delete``, and a worker
    that refuses to start): the request is sent through its client so that the code is read."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    request = admin._describe_configs_request(resources)
    return configs_of(admin._manager.run(admin._manager.send, request))


def configs_of(response: Any) -> dict[str, dict[str, str] | str]:
    """The configs of each resource of a DescribeConfigs response, or its error (name and message)."""
    out: dict[str, dict[str, str] | str] = {}
    for result in response.results:
        if result.error_code:
            detail = result.error_message or ""
            out[result.resource_name] = f"{for_code(result.error_code).__name__}: {detail}".rstrip(": ")
            continue
        configs: dict[str, str] = {}
        for entry in result.configs:
            item = entry.to_dict()
            if item.get("value") is not None:
                configs[str(item.get("name"))] = str(item["value"])
        out[result.resource_name] = configs
    return out


def _config_problems(admin: KafkaAdminClient, specs: list[TopicSpec], bootstrap: str) -> list[TopicProblem]:
    """What is wrong with the configs of existing topics. A broker that does not answer DescribeConfigs
    leaves them unchecked (logged): nothing is invented."""
    try:
        configs = _read_configs(admin, [s.name for s in specs])
    except KafkaError as exc:
        log.warning("could not read the configs of topics %s (%s): their cleanup policy is not checked",
                    sorted(s.name for s in specs), exc)
        return []
    problems: list[TopicProblem] = []
    for spec in specs:
        got = configs.get(spec.name, "not described")
        if isinstance(got, str):
            log.warning("could not read the configs of topic %s (%s): its cleanup policy is not checked",
                        spec.name, got)
            continue
        problem = check(spec, got, bootstrap=bootstrap)
        if problem is not None:
            problems.append(problem)
    return problems
