"""Parse and validate `playback.events` messages into records, or say exactly why not.

The wire format (DESIGN.md, "Topic contracts"): one JSON object per record, or a batch
``{"schema_version": 1, "records": [...]}``. The hot path works per message, not per field access:
orjson decodes the whole message once, then each record is checked with plain type tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from streams.core import conventions as c


class Playback(NamedTuple):
    """One validated playback outcome (or pre-aggregated sample). ``ts`` is epoch seconds, event time."""

    ts: float
    service: str
    cluster: str
    region: str
    platform: str
    total: int
    errors: int
    latency_ms: float | None
    revision: str | None
    offset: int


@dataclass(frozen=True)
class Rejected:
    """A record (or whole message) that cannot be counted, with the reason and enough to find it again."""

    reason: str
    detail: str
    offset: int
    # Index of the record inside a batch message, or None for the message itself.
    index: int | None = None
    # The offending record when it decoded as JSON (for a batch item), else None.
    record: Any = None


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 4 * 1024 * 1024
    max_records_per_message: int = 100_000
    max_count: int = 1_000_000_000
    max_latency_ms: float = 1e7
    max_revision_len: int = 128


DEFAULT_LIMITS = Limits()
_MAX_CACHE = 100_000


class RecordParser:
    """Decodes messages of one partition. Keeps a small cache of label values already validated."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._ok_labels: set[str] = set()
        self._ok_services: set[str] = set()

    def parse(
        self, key: bytes | None, value: bytes | None, offset: int, out: list[Playback], bad: list[Rejected]
    ) -> None:
        """Append the message's good records to ``out`` and its rejects to ``bad``."""
        if value is None:
            bad.append(Rejected(c.REASON_BAD_JSON, "empty message (no value)", offset))
            return
        if len(value) > self.limits.max_message_bytes:
            bad.append(
                Rejected(
                    c.REASON_TOO_LARGE,
                    f"message of {len(value)} bytes exceeds {self.limits.max_message_bytes}",
                    offset,
                )
            )
            return
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            bad.append(Rejected(c.REASON_BAD_JSON, f"not JSON: {exc}", offset))
            return
        if type(doc) is not dict:
            bad.append(Rejected(c.REASON_BAD_JSON, f"expected a JSON object, got {type(doc).__name__}", offset))
            return
        key_service = None
        if key:
            try:
                key_service = key.decode()
            except UnicodeDecodeError:
                bad.append(Rejected(c.REASON_WRONG_KEY, "message key is not UTF-8", offset))
                return
        sv = doc.get("schema_version")
        if sv != c.SCHEMA_VERSION or type(sv) is not int:
            reason = c.REASON_MISSING_FIELD if sv is None else c.REASON_BAD_SCHEMA_VERSION
            bad.append(Rejected(reason, f"schema_version must be {c.SCHEMA_VERSION}, got {sv!r}", offset))
            return
        if "records" in doc:
            items = doc["records"]
            if type(items) is not list:
                bad.append(Rejected(c.REASON_BAD_FIELD, "records must be a list", offset))
                return
            if len(items) > self.limits.max_records_per_message:
                bad.append(
                    Rejected(
                        c.REASON_TOO_LARGE,
                        f"{len(items)} records in one message exceed {self.limits.max_records_per_message}",
                        offset,
                    )
                )
                return
            for i, item in enumerate(items):
                self._one(item, key_service, offset, i, out, bad)
        else:
            self._one(doc, key_service, offset, None, out, bad)

    def _one(
        self,
        r: Any,
        key_service: str | None,
        offset: int,
        index: int | None,
        out: list[Playback],
        bad: list[Rejected],
    ) -> None:
        def reject(reason: str, detail: str) -> None:
            bad.append(Rejected(reason, detail, offset, index, r if index is not None else None))

        if type(r) is not dict:
            reject(c.REASON_BAD_FIELD, f"record must be a JSON object, got {type(r).__name__}")
            return
        if index is not None:
            sv = r.get("schema_version", c.SCHEMA_VERSION)
            if sv != c.SCHEMA_VERSION or type(sv) is not int:
                reject(c.REASON_BAD_SCHEMA_VERSION, f"schema_version must be {c.SCHEMA_VERSION}, got {sv!r}")
                return
        try:
            ts_raw = r["ts"]
            service = r["service"]
            cluster = r["cluster"]
            region = r["region"]
            platform = r["platform"]
            total = r["total"]
            errors = r["errors"]
        except KeyError as exc:
            reject(c.REASON_MISSING_FIELD, f"missing field {exc.args[0]!r}")
            return
        # Event time.
        if type(ts_raw) is int or type(ts_raw) is float:
            ts = float(ts_raw)
            if not math.isfinite(ts) or ts <= 0:
                reject(c.REASON_BAD_FIELD, f"ts must be a positive epoch time, got {ts_raw!r}")
                return
        elif type(ts_raw) is str:
            parsed = _parse_rfc3339(ts_raw)
            if parsed is None:
                reject(c.REASON_BAD_FIELD, f"ts is not RFC 3339 with a time zone: {ts_raw[:64]!r}")
                return
            ts = parsed
        else:
            reject(c.REASON_BAD_FIELD, f"ts must be RFC 3339 or epoch seconds, got {type(ts_raw).__name__}")
            return
        # Names.
        if service not in self._ok_services:
            if type(service) is not str or not c.NAME_RE.match(service):
                reject(c.REASON_BAD_FIELD, f"service is not a valid name: {str(service)[:80]!r}")
                return
            self._remember(self._ok_services, service)
        if key_service is not None and service != key_service:
            reject(c.REASON_WRONG_KEY, f"record of service {service!r} in a message keyed {key_service[:80]!r}")
            return
        ok = self._ok_labels
        for name, v in (("cluster", cluster), ("region", region)):
            if v not in ok:
                if type(v) is not str or not c.LABEL_VALUE_RE.match(v):
                    reject(c.REASON_BAD_FIELD, f"{name} is not a valid label value: {str(v)[:80]!r}")
                    return
                self._remember(ok, v)
        if platform != "kubernetes" and platform != "legacy":
            reject(c.REASON_BAD_FIELD, f"platform must be kubernetes or legacy, got {str(platform)[:80]!r}")
            return
        # Counts.
        if type(total) is not int or type(errors) is not int:
            reject(c.REASON_BAD_COUNTS, f"total and errors must be integers, got {total!r} and {errors!r}")
            return
        if total < 1 or total > self.limits.max_count:
            reject(c.REASON_BAD_COUNTS, f"total must be in 1..{self.limits.max_count}, got {total}")
            return
        if errors < 0 or errors > total:
            reject(c.REASON_BAD_COUNTS, f"errors must be in 0..total ({total}), got {errors}")
            return
        latency = r.get("latency_ms")
        if latency is not None:
            if type(latency) is not int and type(latency) is not float:
                reject(c.REASON_BAD_FIELD, f"latency_ms must be a number, got {type(latency).__name__}")
                return
            if not (0 <= latency <= self.limits.max_latency_ms):
                reject(c.REASON_BAD_FIELD, f"latency_ms must be in 0..{self.limits.max_latency_ms:g}")
                return
            latency = float(latency)
        revision = r.get("revision")
        if revision is not None and (
            type(revision) is not str
            or not revision
            or len(revision) > self.limits.max_revision_len
            or not revision.isprintable()
        ):
            reject(c.REASON_BAD_FIELD, f"revision must be a short printable string, got {str(revision)[:80]!r}")
            return
        out.append(Playback(ts, service, cluster, region, platform, total, errors, latency, revision, offset))

    @staticmethod
    def _remember(cache: set[str], value: str) -> None:
        if len(cache) >= _MAX_CACHE:
            cache.clear()
        cache.add(value)


def _parse_rfc3339(text: str) -> float | None:
    if len(text) > 40:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()
