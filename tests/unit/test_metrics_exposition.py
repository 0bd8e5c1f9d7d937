"""A scrape of the worker's /metrics: the state collected on the event loop, the text formatted in a
thread (WorkerMetrics.exposition_off_loop), byte for byte what formatting on the loop gives."""

from __future__ import annotations

import asyncio

from streams.adapters.metrics import WorkerMetrics
from tests.unit.test_readmodel import engine_with_traffic


def test_a_scrape_formatted_off_the_loop_is_the_scrape_formatted_on_it_and_lets_the_loop_run() -> None:
    metrics = WorkerMetrics(engine_with_traffic(), {"messages": 7, "records": 70})

    async def scrape() -> tuple[bytes, bool]:
        ran: list[bool] = []
        asyncio.get_running_loop().call_soon(ran.append, True)
        text = await metrics.exposition_off_loop()
        return text, bool(ran)

    text, loop_ran = asyncio.run(scrape())
    assert loop_ran  # the loop ran a waiting callback while the text was formatted
    assert text == metrics.exposition()
    assert text.count(b"\nslo_stream_burn_rate{") == 3 * 8  # three series, eight windows each
    assert b"slo_stream_messages_total 7.0" in text
