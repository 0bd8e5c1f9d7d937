"""A scrape of the worker's /metrics: the state collected on the event loop, the text formatted in a
thread (WorkerMetrics.exposition_off_loop), byte for byte what formatting on the loop gives."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from streams.adapters import metrics as metrics_mod
from streams.adapters.metrics import WorkerMetrics
from tests.unit.test_readmodel import engine_with_traffic


def test_a_scrape_is_formatted_in_another_thread_and_is_the_scrape_formatted_on_the_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = WorkerMetrics(engine_with_traffic(), {"messages": 7, "records": 70})
    formatted_in: list[int] = []
    real = metrics_mod.generate_latest

    def recording(registry: Any) -> bytes:
        formatted_in.append(threading.get_ident())
        return real(registry)

    monkeypatch.setattr(metrics_mod, "generate_latest", recording)

    async def scrape() -> tuple[bytes, int]:
        return await metrics.exposition_off_loop(), threading.get_ident()

    text, loop_thread = asyncio.run(scrape())
    assert formatted_in and formatted_in[0] != loop_thread
    assert text == metrics.exposition()
    assert text.count(b"\nslo_stream_burn_rate{") == 3 * 8  # three series, eight windows each
    assert b"slo_stream_messages_total 7.0" in text
