"""Change freezes: an operator's "no rollouts of this service (in this cluster) until then" (pure).

Set and lifted through ``POST /v1/freezes`` (:class:`Freeze`, :class:`Lift`), carried to the worker
that owns the service on the internal changes topic, kept per service in a :class:`FreezeBook` (part
of the service's change state), and turned into a ``hold`` by :func:`decide_freeze`. Times are wall
clock: a freeze is a decision, not an event of the stream. Orders are applied by their ``ts``, so a
redelivered older order cannot undo a newer one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from streams.core.gate import Decision, GateDecision, ReasonCode, make_reason
from streams.core.model import format_duration
from streams.core.wire import fields as f

WHOLE_SERVICE: Final = "*"
MAX_REASON: Final = 500


@dataclass(frozen=True)
class Freeze:
    """Hold rollouts of the service (in ``cluster``, or everywhere when None) until ``until``."""

    cluster: str | None
    reason: str
    ts: float  # when it was set
    until: float

    @property
    def where(self) -> str:
        return self.cluster or WHOLE_SERVICE

    def to_json(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "reason": self.reason, "ts": self.ts, "until": self.until}

    @classmethod
    def from_json(cls, m: Mapping[str, Any]) -> Freeze:
        cluster = m.get("cluster")
        return cls(cluster=None if cluster is None else f.check_cluster(cluster),
                   reason=f.text(m.get("reason"), "reason", 100_000)[:MAX_REASON], ts=f.number(m.get("ts"), "ts"),
                   until=f.number(m.get("until"), "until"))


@dataclass(frozen=True)
class Lift:
    """Lift the freeze of ``cluster`` (or, when None, every freeze of the service) set up to ``ts``."""

    cluster: str | None
    ts: float

    @property
    def where(self) -> str:
        return self.cluster or WHOLE_SERVICE

    def to_json(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "lift": True, "ts": self.ts}


Order = Freeze | Lift


def decode_order(value: object) -> Order:
    """A freeze or a lift as :meth:`Freeze.to_json` / :meth:`Lift.to_json` wrote it."""
    m = f.obj(value, "freeze")
    if m.get("lift") is True:
        cluster = m.get("cluster")
        return Lift(None if cluster is None else f.check_cluster(cluster), f.number(m.get("ts"), "ts"))
    return Freeze.from_json(m)


class FreezeBook:
    """The freezes of one service, by cluster (``*``: the whole service)."""

    __slots__ = ("_by_where",)

    def __init__(self, freezes: Iterable[Freeze] = ()) -> None:
        self._by_where: dict[str, Freeze] = {x.where: x for x in freezes}

    def __bool__(self) -> bool:
        return bool(self._by_where)

    def apply(self, order: Order) -> None:
        """Set or lift; expired freezes go first."""
        ts = order.ts
        for k in [k for k, v in self._by_where.items() if v.until <= ts]:
            del self._by_where[k]
        where = order.where
        if isinstance(order, Lift):
            for k in [k for k, v in self._by_where.items() if (where == WHOLE_SERVICE or k == where) and v.ts <= ts]:
                del self._by_where[k]
            return
        cur = self._by_where.get(where)
        if cur is None or cur.ts <= ts:
            self._by_where[where] = order

    def active(self, now: float) -> tuple[Freeze, ...]:
        """The freezes in force at ``now`` (wall clock), by cluster."""
        return tuple(v for _, v in sorted(self._by_where.items()) if v.until > now)

    def to_json(self) -> dict[str, Any]:
        return {k: v.to_json() for k, v in self._by_where.items()}

    @classmethod
    def from_json(cls, value: object) -> FreezeBook:
        return cls(Freeze.from_json(f.obj(v, "freeze")) for v in f.mapping(value).values())


def decide_freeze(*, service: str, freezes: Iterable[Freeze], cluster: str | None, now: float) -> GateDecision:
    """``hold`` while a change freeze applies: one for the whole service, or for the cluster asked
    (a freeze of one cluster holds a question about the whole service too)."""
    applies = [x for x in freezes if cluster is None or x.cluster in (None, cluster)]
    if not applies:
        return GateDecision(Decision.PROCEED, service, (), at=now, cluster=cluster)
    reasons = []
    for x in applies:
        where = f" in {x.cluster}" if x.cluster else ""
        left = max(0.0, x.until - now)
        reasons.append(make_reason(ReasonCode.CHANGE_FREEZE, Decision.HOLD,
                                   f"change freeze{where} for {format_duration(int(left))} more: {x.reason}",
                                   until=x.until, cluster=x.cluster, reason=x.reason))
    return GateDecision(Decision.HOLD, service, tuple(reasons), at=now, cluster=cluster)
