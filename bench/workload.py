"""A benchmark workload: batch messages of raw playback events, event time advancing at a live rate."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from streams.core.model import DAY, Indicator, SliKind, Slo, default_policy

if TYPE_CHECKING:
    from streams.adapters.kafka_security import KafkaSecurity

def client_security() -> KafkaSecurity:
    """The benchmarks' Kafka clients take the product's security settings (SLO_STREAM_KAFKA_*), like
    the workers they start (which inherit the environment)."""
    from streams import settings as settings_mod
    from streams.adapters import kafka_security

    return kafka_security.from_settings(settings_mod.load())


CLUSTERS = [("eu-west-1", "eu-west"), ("eu-west-2", "eu-west"), ("us-east-1", "us-east"),
            ("us-west-2", "us-west"), ("ap-south-1", "ap-south")]


@dataclass(frozen=True)
class Workload:
    services: int = 20
    records_per_message: int = 500
    messages: int = 2000
    # Event time advances as if this many records arrived per second (a live rate).
    live_rate: int = 250_000
    start_ts: int = 1_700_000_000
    seed: int = 1

    def slos(self) -> list[Slo]:
        out = []
        for i in range(self.services):
            svc = f"svc-{i:03d}"
            out.append(Slo(name=f"{svc}-availability", service=svc, objective=0.999, window_s=30 * DAY,
                           indicator=Indicator(f"{svc}-errors", SliKind.RATIO), policy=default_policy(30 * DAY)))
            out.append(Slo(name=f"{svc}-latency", service=svc, objective=0.99, window_s=30 * DAY,
                           indicator=Indicator(f"{svc}-latency", SliKind.THRESHOLD, 300.0),
                           policy=default_policy(30 * DAY)))
        return out

    def series(self) -> int:
        return self.services * 2 * len(CLUSTERS) * 2

    def build(self) -> list[tuple[bytes, bytes]]:
        """``messages`` batch messages, each of one service, raw events (total=1)."""
        rng = random.Random(self.seed)
        out = []
        n = 0
        for m in range(self.messages):
            svc = f"svc-{m % self.services:03d}"
            recs = []
            for _ in range(self.records_per_message):
                cluster, region = CLUSTERS[rng.randrange(len(CLUSTERS))]
                recs.append({
                    "ts": round(self.start_ts + n / self.live_rate, 4),
                    "service": svc, "cluster": cluster, "region": region,
                    "platform": "kubernetes" if rng.random() < 0.6 else "legacy",
                    "total": 1, "errors": 1 if rng.random() < 0.001 else 0,
                    "latency_ms": round(rng.expovariate(1 / 120), 1),
                })
                n += 1
            out.append((svc.encode(), orjson.dumps({"schema_version": 1, "records": recs})))
        return out
