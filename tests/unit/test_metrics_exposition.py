"""A scrape of the worker's /metrics formatted in steps with event-loop turns between them
(WorkerMetrics.exposition_in_steps): byte for byte the text formatted at once."""

from __future__ import annotations

import asyncio

import pytest

from streams.adapters import metrics as metrics_mod
from streams.adapters.metrics import WorkerMetrics
from tests.unit.test_readmodel import engine_with_traffic


@pytest.mark.parametrize("per_step", [1, 5, 7, 1000])
def test_a_scrape_in_steps_is_the_scrape_at_once_and_lets_the_loop_run_between_steps(
        monkeypatch: pytest.MonkeyPatch, per_step: int) -> None:
    monkeypatch.setattr(metrics_mod, "SAMPLES_PER_STEP", per_step)
    metrics = WorkerMetrics(engine_with_traffic(), {"messages": 7, "records": 70})
    for service in ("playback-api", "search"):  # a family with _created samples: formatted whole
        metrics.observe_decision(service, "proceed")

    async def scrape() -> tuple[bytes, list[str]]:
        ran: list[str] = []
        asyncio.get_running_loop().call_soon(ran.append, "waiting")
        text = await metrics.exposition_in_steps()
        return text, list(ran)  # what ran while the scrape was formatted

    text, ran = asyncio.run(scrape())
    assert text == metrics.exposition()
    assert ran == (["waiting"] if per_step < 24 else [])  # 24 burn-rate samples: split when fewer per step
    assert text.count(b"\nslo_stream_burn_rate{") == 3 * 8  # three series, eight windows each
    assert text.count(b"# TYPE slo_stream_burn_rate gauge") == 1
    assert b"slo_stream_messages_total 7.0" in text
