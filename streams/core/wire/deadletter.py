"""``dead-letter``: what could not be used, why, and where it came from (key ``topic/partition/offset``).

Every stage writes the same shape (DESIGN.md, "Topic contracts"): the reason and a one-line
detail, the source position, and either the record as it was refused (a record of a batch refused by
the parser as sent; one refused after parsing, late or over a limit, as parsed, with its ``index``) or
the original bytes (at most 64 KiB, flagged ``truncated``). A stage after the worker says which
(``stage``) and may add the event it could not deliver (``event``, secrets removed).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streams.core import conventions as c
from streams.core.wire.playback import Rejected

VALUE_PREFIX = 64 * 1024  # bytes of the original (or of an encoded record) kept at most


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int

    @property
    def key(self) -> str:
        """The dead letter's Kafka key."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class DeadLetter:
    reason: str  # a dead-letter reason of :mod:`streams.core.conventions` (or a stage's own)
    detail: str
    source: Source
    index: int | None = None  # the record's position in its batch message
    record: Any = None  # the refused record (JSON-able), when one record of a message is refused
    original: bytes | None = None  # the message's bytes
    stage: str | None = None  # who refused it, after the worker ("notifier")
    event: Mapping[str, Any] | None = None  # what that stage could not deliver

    @property
    def key(self) -> str:
        return self.source.key

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schema_version": c.SCHEMA_VERSION, "reason": self.reason, "detail": self.detail,
                                "source": self.source.to_json(), "index": self.index}
        if self.stage is not None:
            body["stage"] = self.stage
        if self.event is not None:
            body["event"] = dict(self.event)
        if self.record is not None:
            encoded = orjson.dumps(self.record, default=str)
            if len(encoded) <= VALUE_PREFIX:
                body["record"] = self.record
            else:
                body["record_prefix"] = encoded[:VALUE_PREFIX].decode("utf-8", errors="replace")
                body["truncated"] = True
                body["record_size"] = len(encoded)
        if self.original is not None and (self.index is None or self.record is None):
            chunk = self.original[:VALUE_PREFIX]
            body["truncated"] = len(self.original) > len(chunk)
            body["original_size"] = len(self.original)
            try:
                body["value"] = chunk.decode("utf-8")
            except UnicodeDecodeError:
                body["value_base64"] = base64.b64encode(chunk).decode()
        return body

    def encode(self) -> bytes:
        return orjson.dumps(self.to_json(), default=str)


def decode_dead_letter(doc: object) -> DeadLetter:
    """Read one ``dead-letter`` value (parsed JSON). ``original`` holds the bytes kept (the prefix when
    ``truncated``). Raises :class:`RecordError` naming the field."""
    from streams.core.wire import fields as f

    m = f.obj(doc, "dead letter")
    f.schema_version(m)
    src = f.obj(m.get("source"), "source")
    original: bytes | None = None
    if isinstance(m.get("value"), str):
        original = m["value"].encode()
    elif isinstance(m.get("value_base64"), str):
        try:
            original = base64.b64decode(m["value_base64"], validate=True)
        except ValueError:
            raise f.bad("value_base64", m["value_base64"], "not base64") from None
    event = m.get("event")
    return DeadLetter(
        reason=f.text(m.get("reason"), "reason", 100), detail=f.text(m.get("detail"), "detail", 100_000),
        source=Source(f.text(src.get("topic"), "source.topic", 249), f.integer(src.get("partition"), "partition"),
                      f.integer(src.get("offset"), "source.offset")),
        index=f.opt_integer(m.get("index"), "index"), record=m.get("record"), original=original,
        stage=f.opt_text(m.get("stage"), "stage", 100), event=None if event is None else f.obj(event, "event"))


def refused(rej: Rejected, *, topic: str, partition: int, original: bytes | None) -> DeadLetter:
    """The dead letter of a record (or message) the parser or the engine refused."""
    return DeadLetter(reason=rej.reason, detail=rej.detail, source=Source(topic, partition, rej.offset),
                      index=rej.index, record=rej.record, original=original)
