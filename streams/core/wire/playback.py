"""``playback.events``: parse and validate messages into records, or say exactly why not.

The wire format (DESIGN.md, "Topic contracts"): one JSON object per record, or a batch
``{"schema_version": 1, "records": [...]}``.

Two paths. The fast one decodes a whole batch message with msgspec into typed structs (types and
ranges checked in C), then checks names against small caches. If anything in the message is wrong,
the careful path decodes it again with orjson and checks record by record, so that each bad record
is rejected alone with its own reason and the good ones still count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson

from streams.core import conventions as c

MAX_COUNT = 1_000_000_000
MAX_LATENCY_MS = 1e7
MAX_REVISION_LEN = 128


class Playback(msgspec.Struct, gc=False):
    """One validated playback outcome (or pre-aggregated sample). ``ts`` is epoch seconds, event time.

    The same type is the fast path's decoding target (types and ranges checked by msgspec in C) and
    what the careful path builds; ``offset`` (of the Kafka message) and ``index`` (the record's position
    in a batch message, None for a single-record message) are always set by the parser (JSON "offset"
    and "index" fields are ignored).
    """

    ts: Annotated[float, msgspec.Meta(gt=0, lt=1e11)]
    service: str
    cluster: str
    region: str
    platform: Literal["kubernetes", "legacy"]
    total: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]
    errors: Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
    latency_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)] | None = None
    revision: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REVISION_LEN)] | None = None
    offset: int = -1
    index: int | None = None
    schema_version: Literal[1] = 1

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = msgspec.structs.asdict(self)
        return d


@dataclass(frozen=True)
class Rejected:
    """A record (or whole message) that cannot be counted, with the reason and enough to find it again."""

    reason: str
    detail: str
    offset: int
    # Index of the record inside a batch message, or None for the message itself.
    index: int | None = None
    # The offending record: as sent when the parser refused a batch item, as parsed (known fields, ts in
    # epoch seconds) when it was refused after parsing (late, future, series limit); else None.
    record: Any = None


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 1024 * 1024
    max_records_per_message: int = 100_000


class _WireBatch(msgspec.Struct, gc=False):
    schema_version: Literal[1]
    records: list[Playback]


_BATCH_DECODER = msgspec.json.Decoder(_WireBatch)


DEFAULT_LIMITS = Limits()
_MAX_CACHE = 100_000


def _lenient_loads(value: bytes) -> Any:
    """The standard library's reading of a message orjson refused for a number beyond a double, or
    None when it is not JSON either. Numbers stay numbers the record checks refuse: a huge integer
    becomes a float (never a 4,300-digit int), NaN and Infinity literals are not JSON."""
    import json

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        # Strict UTF-8 first: json.loads(bytes) lets lone surrogates through.
        doc = json.loads(value.decode("utf-8"), parse_int=lambda s: int(s) if len(s) <= 19 else float(s),
                         parse_constant=no_constant)
        # Nor may a \ud800 escape through: its record could not be written to the dead-letter topic.
        orjson.dumps(doc)
    except (ValueError, RecursionError, orjson.JSONEncodeError):
        return None
    return doc


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
        if self._fast(key, value, offset, out, bad):
            return
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            # orjson refuses a number beyond a double (1e400) although JSON allows it: one such
            # value must not take the good records of its batch with it. The standard library reads
            # it as infinity, which the record checks then refuse, record by record.
            doc = _lenient_loads(value) if "number" in str(exc) else None
            if doc is None:
                bad.append(Rejected(c.REASON_BAD_JSON, f"not JSON: {exc}", offset))
                return
        if type(doc) is not dict:
            bad.append(Rejected(c.REASON_BAD_JSON, f"expected a JSON object, got {type(doc).__name__}", offset))
            return
        # The key decides the partition, and a series must be counted on one partition only.
        if not key:
            bad.append(Rejected(c.REASON_WRONG_KEY, "message has no key (the key must be the service)", offset))
            return
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
            check = self._check
            append = out.append
            for i, item in enumerate(items):
                got = check(item, key_service, offset, i)
                if isinstance(got, Playback):
                    append(got)
                else:
                    bad.append(Rejected(got[0], got[1], offset, i, item))
        else:
            got = self._check(doc, key_service, offset, None)
            if isinstance(got, Playback):
                out.append(got)
            else:
                bad.append(Rejected(got[0], got[1], offset))

    def _fast(
        self, key: bytes | None, value: bytes, offset: int, out: list[Playback], bad: list[Rejected]
    ) -> bool:
        """Decode a clean batch message in one go. False: not a batch, or something in it is wrong
        (the caller then takes the careful path)."""
        try:
            batch = _BATCH_DECODER.decode(value)
        except ValueError:
            # msgspec's DecodeError and ValidationError, and a UnicodeDecodeError (not a DecodeError)
            # for a string that is not UTF-8: the careful path says which.
            return False
        records = batch.records
        if len(records) > self.limits.max_records_per_message:
            return False
        if not key:
            return False
        try:
            key_service = key.decode()
        except UnicodeDecodeError:
            return False
        ok_services, ok_labels = self._ok_services, self._ok_labels
        for i, r in enumerate(records):
            service, cluster, region = r.service, r.cluster, r.region
            if service not in ok_services or cluster not in ok_labels or region not in ok_labels:
                return False  # first sight of a name: the careful path validates and caches it
            if service != key_service or r.errors > r.total:
                return False
            rev = r.revision
            if rev is not None and not rev.isprintable():
                return False
            r.offset = offset
            r.index = i
        out.extend(records)
        return True

    def _check(self, r: Any, key_service: str, offset: int, index: int | None) -> Playback | tuple[str, str]:
        """The record, or ``(reason, detail)``; ``index``: its position in a batch message, None for a
        single-record message. The hot path: plain type tests, cached label checks."""
        if type(r) is not dict:
            return c.REASON_BAD_FIELD, f"record must be a JSON object, got {type(r).__name__}"
        if index is not None:
            sv = r.get("schema_version", c.SCHEMA_VERSION)
            if sv != c.SCHEMA_VERSION or type(sv) is not int:
                return c.REASON_BAD_SCHEMA_VERSION, f"schema_version must be {c.SCHEMA_VERSION}, got {sv!r}"
        try:
            ts_raw = r["ts"]
            service = r["service"]
            cluster = r["cluster"]
            region = r["region"]
            platform = r["platform"]
            total = r["total"]
            errors = r["errors"]
        except KeyError as exc:
            return c.REASON_MISSING_FIELD, f"missing field {exc.args[0]!r}"
        tt = type(ts_raw)
        if tt is float or tt is int:
            ts = float(ts_raw)
            if not (0 < ts < 1e11):  # also refuses NaN and infinities
                return c.REASON_BAD_FIELD, f"ts must be a positive epoch time in seconds, got {ts_raw!r}"
        elif tt is str:
            parsed = _parse_rfc3339(ts_raw)
            if parsed is None:
                return c.REASON_BAD_FIELD, f"ts is not RFC 3339 with a time zone: {ts_raw[:64]!r}"
            ts = parsed
            if not (0 < ts < 1e11):
                return c.REASON_BAD_FIELD, f"ts must be after 1970 and before 5138, got {ts_raw[:64]!r}"
        else:
            return c.REASON_BAD_FIELD, f"ts must be RFC 3339 or epoch seconds, got {tt.__name__}"
        # Type first: a list or dict here would not even hash.
        if type(service) is not str or (service not in self._ok_services and not c.NAME_RE.match(service)):
            return c.REASON_BAD_FIELD, f"service is not a valid name: {str(service)[:80]!r}"
        self._remember(self._ok_services, service)
        if service != key_service:
            return c.REASON_WRONG_KEY, f"record of service {service!r} in a message keyed {key_service[:80]!r}"
        ok = self._ok_labels
        if type(cluster) is not str or (cluster not in ok and not c.LABEL_VALUE_RE.match(cluster)):
            return c.REASON_BAD_FIELD, f"cluster is not a valid label value: {str(cluster)[:80]!r}"
        if type(region) is not str or (region not in ok and not c.LABEL_VALUE_RE.match(region)):
            return c.REASON_BAD_FIELD, f"region is not a valid label value: {str(region)[:80]!r}"
        self._remember(ok, cluster)
        self._remember(ok, region)
        if platform != "kubernetes" and platform != "legacy":
            return c.REASON_BAD_FIELD, f"platform must be kubernetes or legacy, got {str(platform)[:80]!r}"
        if type(total) is not int or type(errors) is not int:
            return c.REASON_BAD_COUNTS, f"total and errors must be integers, got {total!r:.40} and {errors!r:.40}"
        if total < 1 or total > MAX_COUNT:
            return c.REASON_BAD_COUNTS, f"total must be in 1..{MAX_COUNT}, got {total}"
        if errors < 0 or errors > total:
            return c.REASON_BAD_COUNTS, f"errors must be in 0..total ({total}), got {errors}"
        latency = r.get("latency_ms")
        if latency is not None:
            lt = type(latency)
            if lt is not float and lt is not int:
                return c.REASON_BAD_FIELD, f"latency_ms must be a number, got {lt.__name__}"
            if not (0 <= latency <= MAX_LATENCY_MS):
                return c.REASON_BAD_FIELD, f"latency_ms must be in 0..{MAX_LATENCY_MS:g}"
            latency = float(latency)
        revision = r.get("revision")
        if revision is not None and (
            type(revision) is not str
            or not revision
            or len(revision) > MAX_REVISION_LEN
            or not revision.isprintable()
        ):
            return c.REASON_BAD_FIELD, f"revision must be a short printable string, got {str(revision)[:80]!r}"
        return Playback(ts, service, cluster, region, platform, total, errors, latency, revision, offset, index)

    @staticmethod
    def _remember(cache: set[str], value: str) -> None:
        if value in cache:
            return
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
