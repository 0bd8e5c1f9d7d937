"""A worker killed with SIGKILL mid-stream: its replacement recovers the table from the changelog,
counts nothing twice and loses nothing, and raises the same alerts (at least once, same dedup keys)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest

from streams.core import conventions as c
from tests.integration.harness import Deployment, committed_offsets, latest_by_key
from tests.integration.test_spine import outage_scenario

pytestmark = pytest.mark.integration


def log_tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def test_a_worker_killed_mid_stream_recovers_and_counts_every_record_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Small batches and frequent commits, so the kill lands between commits with work in flight.
    dep = Deployment.create(kafka_bootstrap, tmp_path, SLO_STREAM_BATCH_MAX="5")
    s = dep.settings
    scenario, _ = outage_scenario()
    messages = [(k, v) for _, k, v in scenario.messages()]
    total_end = len(messages)
    # Produced while the worker runs, paced, so that the kill finds work in flight.
    producer = threading.Thread(target=dep.produce, args=(messages,), kwargs={"per_second": 400})
    producer.start()

    with dep.worker("first") as proc:
        deadline = time.time() + 90
        done = 0
        while time.time() < deadline:
            done = sum(committed_offsets(kafka_bootstrap, s.app_id, s.topic_playback, s.partitions).values())
            if done > total_end * 0.3:
                break
            time.sleep(0.1)
        assert 0 < done < total_end, f"could not catch the worker mid-stream ({done}/{total_end})"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    producer.join()

    with dep.worker("second"):
        deadline = time.time() + 120
        while time.time() < deadline:
            done = sum(committed_offsets(kafka_bootstrap, s.app_id, s.topic_playback, s.partitions).values())
            if done >= total_end:
                break
            time.sleep(0.2)
        assert done >= total_end, f"committed {done} of {total_end}:\n{log_tail(dep.log_text('second'))}"
        time.sleep(1.5)  # the last statuses follow the last commit
    second_log = dep.log_text("second")
    assert "recovered state" in second_log

    # Ground truth from the scenario itself: every record below the final evaluation time, once.
    records = [r for _, v in messages for r in orjson.loads(v)["records"]]
    statuses = latest_by_key(kafka_bootstrap, s.topic_status, s.partitions)
    checked = 0
    for status in statuses.values():
        if status["slo"] != "playback-api-availability":
            continue
        at, dims = status["evaluated_at"], status["dimensions"]
        mine = [r for r in records if r["service"] == "playback-api" and r["ts"] < at
                and all(r[d] == dims[d] for d in ("cluster", "region", "platform"))]
        got = status["good_total"]["30d"]
        assert (got["bad"], got["total"]) == (sum(r["errors"] for r in mine), sum(r["total"] for r in mine)), dims
        checked += 1
    assert checked == 3

    # Alerts: at least once, never a second incident: de-duplicated, exactly the uninterrupted sequence.
    alerts = dep.consume(s.topic_alerts, until=lambda v: False, timeout_s=3)
    page_key = c.dedup_key(c.series_key("playback-api-availability", "eu-west-1", "eu-west", "kubernetes"), "page")
    distinct = sorted({(a["ts"], a["state"]) for a in alerts if a["dedup_key"] == page_key})
    assert [state for _, state in distinct] == ["firing", "resolved"]
