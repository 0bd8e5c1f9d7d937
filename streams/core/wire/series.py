"""An SLO series' dimensions, as ``slo.alerts`` and ``slo.status`` records carry them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.core import conventions as c
from streams.core.wire import fields as f


@dataclass(frozen=True)
class Dimensions:
    """Where a series is: each value a label value, or ``*`` where the SLO groups it away."""

    cluster: str
    region: str
    platform: str

    @classmethod
    def of_series(cls, series: str) -> Dimensions:
        _, cluster, region, platform = c.split_series_key(series)
        return cls(cluster, region, platform)

    def get(self, name: str) -> str:
        """The value of dimension ``name`` (one of :data:`conventions.DIMENSIONS`)."""
        return str(getattr(self, name))

    def to_json(self) -> dict[str, str]:
        return {"cluster": self.cluster, "region": self.region, "platform": self.platform}

    @classmethod
    def from_json(cls, value: object, what: str = "dimensions") -> Dimensions:
        m: Mapping[str, Any] = f.obj(value, what)
        out = []
        for d in c.DIMENSIONS:
            v = m.get(d)
            if v != c.ANY:
                f.check_cluster(v, f"{what}.{d}")
            out.append(str(v))
        return cls(*out)
