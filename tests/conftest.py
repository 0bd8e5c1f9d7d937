"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Without an editable install (`make` runs `pip install -e`), a bare `pytest` still finds `streams`, `tests`.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from streams.adapters.broker import BrokerNotInstalledError, EmbeddedBroker  # noqa: E402
from streams.adapters.topics import wait_for_broker  # noqa: E402

# -- Kafka broker: one per test session ------------------------------------------------------------------
# `broker`: the embedded Tansu broker (EmbeddedBroker), started once per session and stopped at the end;
# or, when KAFKA_BOOTSTRAP_SERVERS is set, that external broker (nothing is started). Both have
# `.bootstrap`; `kafka_bootstrap` is that string. Topics outlive tests: use unique topic and group names.


@dataclass(frozen=True)
class ExternalBroker:
    """A broker we did not start (from KAFKA_BOOTSTRAP_SERVERS): nothing to stop."""

    bootstrap: str
    pid: None = None


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker | ExternalBroker]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        wait_for_broker(external, timeout_s=30)
        yield ExternalBroker(external)
        return
    try:
        embedded = EmbeddedBroker().start()
    except BrokerNotInstalledError as exc:
        pytest.skip(f"no Kafka for integration tests (or set KAFKA_BOOTSTRAP_SERVERS): {exc}")
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(broker: EmbeddedBroker | ExternalBroker) -> str:
    """``host:port`` of the session's Kafka broker."""
    return broker.bootstrap
