"""Helpers of the bad-input, bad-configuration and security fault tests (tests/faults/test_bad_*.py,
test_security.py): generating a corpus with hypothesis up front, producing it with its offsets,
reading a real worker's /metrics, and telling whether the worker process is still the same one."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def generate(strategy: st.SearchStrategy[T], n: int) -> list[T]:
    """``n`` (or a few fewer: hypothesis skips duplicates) examples of ``strategy``, the same on every
    run (derandomized, no example database): the corpus is built up front, then fed to real
    processes once, because one hypothesis example per worker run would take hours."""
    out: list[T] = []

    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example: T) -> None:
        out.append(example)

    collect()
    return out


def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes | None]]
            ) -> list[tuple[int, int]]:
    """Produce ``(key, value)`` in order (one in flight, so order = offsets) and return each message's
    ``(partition, offset)`` as the broker acknowledged it."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, retries=5,
                             max_in_flight_requests_per_connection=1, max_request_size=16 * 1024 * 1024)
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in messages]
        producer.flush()
        out = []
        for f in futures:
            md = f.get(timeout=30)
            out.append((md.partition, md.offset))
        return out
    finally:
        producer.close()


def scrape(url: str, timeout_s: float = 5.0) -> tuple[str, Samples]:
    """The text of one Prometheus scrape and its samples by ``(name, sorted labels)``."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        text = resp.read().decode()
    samples: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, lv), v in samples.items() if n == name and set(labels.items()) <= set(lv))


def try_scrape(url: str) -> Samples | None:
    try:
        return scrape(url)[1]
    except OSError:
        return None


def child_pid(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """The pid of the worker under ``timeout -k`` (the harness runs workers that way)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise AssertionError(f"no child process under pid {proc.pid}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_until(cond: Callable[[], Any], timeout_s: float, what: str,
               proc: subprocess.Popen[bytes] | None = None, log: Callable[[], str] | None = None) -> Any:
    """Poll ``cond`` until it returns something truthy (returned) or the deadline passes (fails)."""
    deadline = time.time() + timeout_s
    while True:
        got = cond()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}"
                                 + (f"\n{log()[-4000:]}" if log else ""))
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}"
                                 + (f"\n{log()[-4000:]}" if log else ""))
        time.sleep(0.2)


def report(request: pytest.FixtureRequest, *lines: str) -> None:
    """Print ``lines`` and add them to the fault suite's report (tests/faults/conftest.py's
    ``fault_report``, when there is one)."""
    for line in lines:
        print(line)
    try:
        section = request.getfixturevalue("fault_report")
    except pytest.FixtureLookupError:
        return
    section.extend(lines)
