"""Test factories: build model objects and playback messages; vary them with dataclasses.replace."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from streams.core.model import DAY, Indicator, SliKind, Slo, default_policy


def slo(**changes: Any) -> Slo:
    base = Slo(
        name="playback-api-availability",
        service="playback-api",
        objective=0.999,
        window_s=30 * DAY,
        indicator=Indicator("playback-api-errors", SliKind.RATIO),
        policy=default_policy(30 * DAY),
        runbook_url="https://runbooks.example.com/playback-api",
    )
    return replace(base, **changes)


def record(ts: float, **changes: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "ts": ts, "service": "playback-api", "cluster": "eu-west-1", "region": "eu-west",
        "platform": "kubernetes", "total": 1, "errors": 0,
    }
    r.update(changes)
    return r


def batch(records: list[dict[str, Any]], service: str = "playback-api") -> tuple[bytes, bytes]:
    return service.encode(), orjson.dumps({"schema_version": 1, "records": records})
