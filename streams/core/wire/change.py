"""``<app id>-changes-by-service``: the worker's internal topic of changes re-keyed by service.

Rollouts and Warning events arrive keyed by workload or object, freezes through the HTTP API; each
is forwarded keyed by its service, so that it lands on the partition of that service's playback
records (:mod:`streams.adapters.changes`). Only this program writes the topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from streams.core import conventions as c
from streams.core.errors import RecordError
from streams.core.freezes import Freeze, Lift, decode_order
from streams.core.wire import fields as f
from streams.core.wire.k8s_event import KubeEvent
from streams.core.wire.rollout import RolloutRecord, decode_rollout

Payload = RolloutRecord | KubeEvent | Freeze | Lift


@dataclass(frozen=True)
class Change:
    """One record of the topic: a ``k8s.rollouts`` record, a Warning event of one of its objects, or a
    change freeze order (from the HTTP API), of ``service``."""

    service: str
    what: Payload

    @property
    def kind(self) -> str:
        if isinstance(self.what, RolloutRecord):
            return "rollout"
        return "warning" if isinstance(self.what, KubeEvent) else "freeze"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "service": self.service, "record": self.what.to_json()}


def encode_change(change: Change) -> bytes:
    return orjson.dumps(change.to_json())


def decode_change(raw: bytes | None) -> Change:
    """Read one record of the topic; RecordError when it is not one (only we write it: a bug)."""
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise RecordError(c.REASON_BAD_JSON, f"not JSON: {exc}") from None
    m = f.obj(doc, "change")
    service = f.check_name(m.get("service"), "service")
    kind = m.get("kind")
    record = f.obj(m.get("record"), "record")
    if kind == "rollout":
        return Change(service, decode_rollout(record))
    if kind == "warning":
        return Change(service, KubeEvent.from_json(record))
    if kind == "freeze":
        return Change(service, decode_order(record))
    raise f.bad("kind", kind, "must be rollout, warning or freeze")
