"""The parsers at the edge never raise on hostile input: every message becomes records or reasons.

Pure and fast, so `make test` guards it; tests/faults/test_bad_input.py drives the same kinds of input
through a real worker. (An invalid UTF-8 string inside a batch once made msgspec raise a
UnicodeDecodeError past the fast path, and the worker crashed on that message at every restart.)
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core import conventions as c
from streams.core.errors import RecordError
from streams.core.wire.k8s_event import decode_event
from streams.core.wire.playback import Playback, RecordParser, Rejected
from streams.core.wire.rollout import decode_rollout

GOOD = {"ts": 1_790_000_000.5, "service": "playback-api", "cluster": "eu-west-1", "region": "eu-west",
        "platform": "kubernetes", "total": 10, "errors": 1, "latency_ms": 120.0}
BATCH = orjson.dumps({"schema_version": 1, "records": [GOOD, {**GOOD, "errors": 0}]})
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
              st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=16)


def parse(key: bytes | None, value: bytes | None) -> tuple[list[Playback], list[Rejected]]:
    out: list[Playback] = []
    bad: list[Rejected] = []
    parser = RecordParser()
    # Twice: the second time the names are cached and a clean batch takes the fast path.
    parser.parse(key, value, 7, out, bad)
    first = (list(out), list(bad))
    out.clear()
    bad.clear()
    parser.parse(key, value, 7, out, bad)
    assert [r.to_dict() for r in out] == [r.to_dict() for r in first[0]]
    assert [(r.reason, r.index) for r in bad] == [(r.reason, r.index) for r in first[1]]
    return out, bad


def test_a_batch_with_a_string_that_is_not_utf8_is_one_bad_json_reject() -> None:
    for broken in (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"):
        value = BATCH.replace(b'"service":"', b'"service":"' + broken, 1)
        out, bad = parse(b"playback-api", value)
        assert out == [] and [(r.reason, r.index) for r in bad] == [(c.REASON_BAD_JSON, None)]


@settings(max_examples=200, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=20), st.just(b"playback-api")), value=st.binary(max_size=400))
def test_any_bytes_are_records_or_reasons_never_an_exception(key: bytes | None, value: bytes) -> None:
    out, bad = parse(key, value)
    assert out or bad


@settings(max_examples=200, deadline=None)
@given(at=st.integers(0, len(BATCH)), insert=st.binary(min_size=1, max_size=8), drop=st.integers(0, 4))
def test_a_damaged_batch_is_records_or_reasons_never_an_exception(at: int, insert: bytes, drop: int) -> None:
    value = BATCH[:at] + insert + BATCH[at + drop:]
    out, bad = parse(b"playback-api", value)
    # Either the message is refused as a whole, or each of its records is counted or refused alone.
    assert (len(bad) == 1 and bad[0].index is None and not out) or \
        len(out) + len(bad) == len(orjson.loads(value)["records"])


@settings(max_examples=200, deadline=None)
@given(item=json_values, field=st.sampled_from([*GOOD, "revision", "schema_version", "offset", "index"]))
def test_a_batch_item_of_any_shape_is_counted_or_refused_alone(item: Any, field: str) -> None:
    record = {**GOOD, field: item}
    value = orjson.dumps({"schema_version": 1, "records": [GOOD, record, item]})
    out, bad = parse(b"playback-api", value)
    assert len(out) + len(bad) == 3 and out[0].total == GOOD["total"]
    assert all(r.index in (1, 2) and r.reason for r in bad)
    # A record's own "offset" or "index" field never replaces where it really is.
    assert [(r.offset, r.index) for r in out] == [(7, i) for i in range(3) if i not in {r.index for r in bad}]


@settings(max_examples=200, deadline=None)
@given(doc=json_values)
def test_k8s_records_of_any_shape_are_refused_with_a_reason_never_an_exception(doc: Any) -> None:
    for read in (decode_rollout, lambda d: decode_event(d, default_cluster="eu-west-1")):
        try:
            read(doc)
        except RecordError as exc:
            assert exc.reason and exc.detail
