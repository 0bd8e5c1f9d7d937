"""A small deterministic traffic generator: healthy playback traffic with outage windows.

Used by the integration and fault tests and the benchmarks. Pure: it returns the messages to produce;
the caller owns the producer. (Stories with rollouts and migrations are scenario files,
:mod:`streams.demo.scenario`, played by ``slo-stream replay`` and the demo.)
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from streams.core import conventions as c


@dataclass(frozen=True)
class Outage:
    service: str
    start_s: int  # offset from the plan's start, event time
    end_s: int
    error_ratio: float = 1.0
    cluster: str | None = None  # None: every cluster
    platform: str | None = None


@dataclass(frozen=True)
class TrafficPlan:
    """Traffic of a few services over a few placements, with outages: ``messages`` yields it."""

    start_ts: int  # epoch seconds of the first record
    duration_s: int
    services: tuple[str, ...] = ("playback-api", "stream-router", "license-service")
    # (cluster, region, platform)
    placements: tuple[tuple[str, str, str], ...] = (
        ("eu-west-1", "eu-west", "kubernetes"),
        ("us-east-1", "us-east", "kubernetes"),
        ("dc-ams", "eu-west", "legacy"),
    )
    requests_per_10s: int = 200  # per service and placement
    base_error_ratio: float = 0.0002
    outages: tuple[Outage, ...] = field(default_factory=tuple)
    seed: int = 7
    slice_s: int = 10  # event time covered by one message

    def messages(self) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield ``(event time, key, value)`` in event-time order: one batch message per service per slice.

        Each message holds one pre-aggregated record per placement, with ``latency_ms`` too.
        """
        rng = random.Random(self.seed)
        for offset in range(0, self.duration_s, self.slice_s):
            ts = self.start_ts + offset
            for service in self.services:
                records = []
                for cluster, region, platform in self.placements:
                    total = self.requests_per_10s * self.slice_s // 10
                    ratio = self.base_error_ratio
                    for o in self.outages:
                        if (o.service == service and o.start_s <= offset < o.end_s
                                and o.cluster in (None, cluster) and o.platform in (None, platform)):
                            ratio = max(ratio, o.error_ratio)
                    errors = sum(1 for _ in range(total) if rng.random() < ratio) if ratio < 1 else total
                    records.append({
                        "ts": ts + rng.random() * self.slice_s,
                        "service": service,
                        "cluster": cluster,
                        "region": region,
                        "platform": platform,
                        "total": total,
                        "errors": errors,
                        "latency_ms": round(80 + rng.random() * 120, 1),
                    })
                yield ts, service.encode(), orjson.dumps({"schema_version": c.SCHEMA_VERSION,
                                                           "records": records})
