"""The wire types (streams.core.wire): each topic's one reader inverts its one writer exactly, and
refuses what it cannot use with a RecordError naming the field, never another exception.

Round trips go through JSON bytes too (orjson), as records travel. A suspect the reader cannot use
travels on inside its alert, unchanged: it never costs the page.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core import conventions as c
from streams.core.errors import RecordError
from streams.core.freezes import Freeze, Lift, decode_order
from streams.core.model import Severity
from streams.core.wire import suspect as w
from streams.core.wire.alert import Alert, AlertState, decode_alert, decode_alert_bytes
from streams.core.wire.change import Change, decode_change, encode_change
from streams.core.wire.deadletter import DeadLetter, Source, decode_dead_letter, refused
from streams.core.wire.fields import MAX_REVISION_LEN
from streams.core.wire.k8s_event import KubeEvent
from streams.core.wire.playback import Rejected
from streams.core.wire.rollout import (
    RECORDED_PHASES,
    Migration,
    Phase,
    Replicas,
    RolloutRecord,
    RolloutRef,
    Workload,
    decode_rollout,
)
from streams.core.wire.series import Dimensions
from streams.core.wire.status import AlertTrack, Condition, Status, decode_status
from tests.factories import TS, alert, kube_event, rollout_record, rollout_suspect, status, warning_suspect

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- strategies -------------------------------------------------------------------------------------

names = st.from_regex(c.NAME_RE, fullmatch=True)  # services, SLOs, namespaces
clusters = st.from_regex(c.LABEL_VALUE_RE, fullmatch=True)
k8s_names = st.lists(names, min_size=1, max_size=3).map(".".join)  # DNS-1123 subdomains
text = st.text(max_size=24)
some_text = st.text(min_size=1, max_size=24)
numbers = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(min_value=-(2**53), max_value=2**53)
counts = st.integers(min_value=0, max_value=2**31 - 1)
json_scalars = st.one_of(st.none(), st.booleans(), ints, numbers, text)
json_values = st.recursive(
    json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8)


def opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | s


def tuples_of(s: st.SearchStrategy[Any], size: int = 3) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(s, max_size=size).map(tuple)


workloads = st.builds(Workload, clusters, names, k8s_names)
revisions = st.text(min_size=1, max_size=MAX_REVISION_LEN)
migrations = st.builds(
    Migration, source=opt(names), target=opt(names),
    traffic_percent=opt(st.integers(0, 100) | st.floats(0, 100)), step=opt(text), reason=opt(text))
rollouts = st.builds(
    RolloutRecord, ts=st.floats(min_value=1e-3, max_value=1e10), workload=workloads, service=opt(names),
    revision=revisions, phase=st.sampled_from(sorted(RECORDED_PHASES)), previous_revision=opt(revisions),
    template_hash=opt(st.text(max_size=63)), previous_template_hash=opt(st.text(max_size=63)),
    images=tuples_of(some_text), previous_images=tuples_of(some_text),
    replicas=st.builds(Replicas, counts, counts, counts, counts), reason=opt(text), message=opt(text),
    rollback_to_revision=opt(revisions), migration=opt(migrations))

sides = st.builds(w.RevisionSide, revision=opt(text), errors=counts, total=counts, ratio=numbers, when=opt(text))
known_evidence_types = {*w.NOTE_TYPES, w.Timing.TYPE, w.MigrationStep.TYPE, w.RevisionErrorRatio.TYPE,
                        w.WarningCount.TYPE, w.WarningSeen.TYPE}
EVIDENCE: dict[str, st.SearchStrategy[Any]] = {
    "note": st.builds(w.Note, type=st.sampled_from(sorted(w.NOTE_TYPES)), detail=text, strength=opt(numbers),
                      weight=opt(numbers)),
    "timing": st.builds(w.Timing, detail=text, seconds_before_onset=opt(numbers), strength=opt(numbers)),
    "migration step": st.builds(w.MigrationStep, detail=text, migration=migrations, strength=numbers),
    "revision error ratio": st.builds(
        w.RevisionErrorRatio, new=sides, old=opt(sides), test=text, z=numbers, p_value=numbers, detail=text,
        strength=opt(numbers), weight=opt(numbers)),
    "warning count": st.builds(w.WarningCount, count=counts, strength=numbers, detail=text),
    "warning seen": st.builds(
        w.WarningSeen, reason=text, object=text, namespace=text, cluster=clusters, count=counts, first_seen=numbers,
        last_seen=numbers, message=text, detail=text),
    "evidence of a later version": st.builds(
        w.OpaqueEvidence, raw=st.builds(lambda extra, t: {**extra, "type": t}, st.dictionaries(text, json_values,
                                                                                            max_size=3),
                                      some_text.filter(lambda t: t not in known_evidence_types))),
}
evidence = tuples_of(st.one_of(*EVIDENCE.values()), 4)


def rollout_suspects(ev: st.SearchStrategy[tuple[Any, ...]] = evidence) -> st.SearchStrategy[w.RolloutSuspect]:
    return st.builds(
        w.RolloutSuspect, score=st.floats(0.0, 1.0), summary=text, service=names,
        ref=st.builds(RolloutRef, workloads, revisions), phase=st.sampled_from(list(Phase)), started_at=numbers,
        same_cluster=st.booleans(), previous_revision=opt(text), template_hash=opt(st.text(max_size=63)),
        images=tuples_of(text), previous_images=tuples_of(text), rollback=st.booleans(), migration=opt(migrations),
        evidence=ev, rank=counts)


def warning_suspects(ev: st.SearchStrategy[tuple[Any, ...]] = evidence) -> st.SearchStrategy[w.WarningSuspect]:
    return st.builds(
        w.WarningSuspect, score=st.floats(0.0, 1.0), summary=text, cluster=clusters, namespace=text, workload=text,
        reason=text, count=counts, objects=tuples_of(text), first_seen=numbers, last_seen=numbers,
        same_cluster=st.booleans(), evidence=ev, rank=counts)


unknown_kinds = json_scalars.filter(lambda k: k not in ("rollout", "k8s_warning"))
opaque_suspects = st.builds(
    lambda extra, kind: w.OpaqueSuspect({**extra, "kind": kind}), st.dictionaries(text, json_values, max_size=4),
    unknown_kinds)
suspects = st.one_of(rollout_suspects(), warning_suspects(), opaque_suspects)

dimension_values = clusters | st.just(c.ANY)
dimensions = st.builds(Dimensions, dimension_values, dimension_values, dimension_values)
alerts = st.builds(
    Alert, dedup_key=st.text(min_size=1, max_size=255), slo=names, service=names,
    severity=st.sampled_from(list(Severity)), state=st.sampled_from(list(AlertState)), ts=ints, started_at=ints,
    dimensions=dimensions, burn_rates=st.dictionaries(text, numbers, max_size=3), condition=st.text(max_size=200),
    threshold=numbers, error_budget_remaining=numbers, objective=numbers,
    links=st.dictionaries(text, text, max_size=2), suspects=tuples_of(suspects), burn_onset=opt(ints))


def _status(series: tuple[str, str, str, str], stale: tuple[bool, str | None], **fields: Any) -> Status:
    return Status(series="|".join(series), stale=stale[0], stale_reason=stale[1], **fields)


statuses = st.builds(
    _status, series=st.tuples(names, dimension_values, dimension_values, dimension_values),
    stale=st.just((False, None)) | st.tuples(st.just(True), opt(text)),
    slo=names, service=names, dimensions=dimensions, objective=numbers, evaluated_at=ints,
    newest_event_ts=opt(numbers), processed_at=numbers, burn_rates=st.dictionaries(text, numbers, max_size=3),
    error_budget_remaining=numbers, good_total=st.dictionaries(text, st.tuples(counts, counts), max_size=3),
    conditions=tuples_of(st.builds(Condition, severity=st.sampled_from(list(Severity)),
                                   windows=st.text(max_size=40), factor=numbers, long_burn=numbers,
                                   short_burn=numbers, met=st.booleans(), insufficient_data=st.booleans())),
    alerts=st.dictionaries(st.sampled_from(["page", "ticket"]),
                           st.builds(AlertTrack, st.sampled_from(["firing", "ok"]), opt(ints))))

events = st.builds(
    KubeEvent, api=text, cluster=clusters, namespace=text, kind=text, name=text, object_uid=opt(text), uid=text,
    resource_version=opt(text), reason=text, message=text, type=st.sampled_from(["Normal", "Warning"]),
    count=counts, first_ts=numbers, last_ts=numbers, source=opt(text), labels=st.dictionaries(text, text, max_size=3),
    owner_kind=opt(text), owner_name=opt(text))


@st.composite
def dead_letters(draw: st.DrawFn) -> DeadLetter:
    """A dead letter keeps the original bytes unless it names one record of the message (both index
    and record): then the record is what was refused."""
    index, record = draw(opt(counts)), draw(opt(json_values))
    keeps_original = index is None or record is None
    return DeadLetter(
        reason=draw(st.text(min_size=1, max_size=100)), detail=draw(text),
        source=Source(draw(st.text(max_size=249)), draw(counts), draw(ints)), index=index, record=record,
        original=draw(opt(st.binary(max_size=200))) if keeps_original else None, stage=draw(opt(text)),
        event=draw(opt(st.dictionaries(text, json_values, max_size=3))))


orders = st.one_of(
    st.builds(Freeze, cluster=opt(clusters), reason=st.text(max_size=500), ts=numbers, until=numbers),
    st.builds(Lift, cluster=opt(clusters), ts=numbers))
changes = st.builds(Change, names, st.one_of(rollouts, events, orders))


def as_sent(doc: dict[str, Any]) -> Any:
    """A JSON document as a consumer parses it off the topic."""
    return orjson.loads(orjson.dumps(doc))


# ---- every reader inverts its writer -----------------------------------------------------------------


ROUND_TRIPS: dict[str, tuple[st.SearchStrategy[Any], Any]] = {
    "a rollout record": (rollouts, decode_rollout),
    "a rollout suspect": (rollout_suspects(), w.decode_suspect),
    "a warning suspect": (warning_suspects(), w.decode_suspect),
}


@pytest.mark.parametrize("kind", list(ROUND_TRIPS))
@EXAMPLES
@given(data=st.data())
def test_a_record_reads_back_as_written_and_as_sent(kind: str, data: st.DataObject) -> None:
    strategy, read = ROUND_TRIPS[kind]
    x = data.draw(strategy)
    assert read(x.to_json()) == x
    assert read(as_sent(x.to_json())) == x


@pytest.mark.parametrize("kind", list(EVIDENCE))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_kind_of_evidence_reads_back_as_written_in_both_kinds_of_suspect(kind: str, data: st.DataObject) -> None:
    items = data.draw(st.lists(EVIDENCE[kind], min_size=1, max_size=3).map(tuple))
    for s in (data.draw(rollout_suspects(st.just(items))), data.draw(warning_suspects(st.just(items)))):
        got = w.decode_suspect(as_sent(s.to_json()))
        assert got == s and got.evidence == items


@EXAMPLES
@given(a=alerts, s=statuses)
def test_an_alert_and_a_status_read_back_as_written(a: Alert, s: Status) -> None:
    assert decode_alert(a.to_json()) == a and decode_alert_bytes(a.encode()) == a
    assert decode_status(s.to_json()) == s and decode_status(orjson.loads(s.encode())) == s


@EXAMPLES
@given(ev=events)
def test_a_kube_event_reads_back_as_written(ev: KubeEvent) -> None:
    assert KubeEvent.from_json(ev.to_json()) == ev
    assert KubeEvent.from_json(as_sent(ev.to_json())) == ev


@EXAMPLES
@given(dl=dead_letters())
def test_a_dead_letter_reads_back_as_written_with_its_original_bytes(dl: DeadLetter) -> None:
    assert decode_dead_letter(dl.to_json()) == dl
    assert decode_dead_letter(orjson.loads(dl.encode())) == dl


def test_a_refused_message_reads_back_with_its_original_bytes_even_when_they_are_not_text() -> None:
    for original in (b'{"schema_version": 1, "records": [', b"\xff\xfe\x00binary"):
        dl = refused(Rejected(c.REASON_BAD_JSON, "not JSON", offset=42), topic="playback.events", partition=3,
                     original=original)
        back = decode_dead_letter(orjson.loads(dl.encode()))
        assert back == dl and back.original == original and back.key == "playback.events/3/42"


@EXAMPLES
@given(change=changes)
def test_a_change_record_reads_back_as_written(change: Change) -> None:
    assert decode_change(encode_change(change)) == change


@EXAMPLES
@given(order=orders)
def test_a_freeze_or_a_lift_reads_back_as_written(order: Freeze | Lift) -> None:
    assert decode_order(order.to_json()) == order
    assert decode_order(as_sent(order.to_json())) == order


def test_the_factories_records_read_back_as_written() -> None:
    assert decode_rollout(rollout_record().to_json()) == rollout_record()
    assert KubeEvent.from_json(kube_event().to_json()) == kube_event()
    assert w.decode_suspect(rollout_suspect().to_json()) == rollout_suspect()
    assert w.decode_suspect(warning_suspect().to_json()) == warning_suspect()
    page = alert(suspects=(rollout_suspect(), warning_suspect()))
    assert decode_alert_bytes(page.encode()) == page
    assert decode_status(status().to_json()) == status()


# ---- a suspect the reader cannot use never costs the page ----------------------------------------------


@EXAMPLES
@given(opaque=opaque_suspects, a=alerts)
def test_a_suspect_of_an_unknown_kind_travels_unchanged_inside_its_alert(opaque: w.OpaqueSuspect, a: Alert) -> None:
    page = replace(a, suspects=(rollout_suspect(), opaque))
    back = decode_alert_bytes(page.encode())
    assert back == page
    assert isinstance(back.suspects[1], w.OpaqueSuspect)
    assert orjson.loads(back.encode())["suspects"] == orjson.loads(page.encode())["suspects"]


MISSING = object()


def changed(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``doc`` with the field at ``path`` (dotted; list indexes as numbers) set to
    ``value``, or removed when ``value`` is :data:`MISSING`."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = out
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    at: int | str = int(last) if isinstance(node, list) else last
    if value is MISSING:
        del node[at]
    else:
        node[at] = value
    return out


BROKEN_ROLLOUT_SUSPECTS = [
    pytest.param("score", 1.5, "score", id="a score above 1"),
    pytest.param("cluster", "eu west 1", "cluster", id="a cluster with spaces"),
    pytest.param("started_at", MISSING, "started_at", id="no start time"),
    pytest.param("phase", "exploded", "phase", id="an unknown phase"),
]


@pytest.mark.parametrize(("path", "value", "field"), BROKEN_ROLLOUT_SUSPECTS)
def test_a_malformed_rollout_suspect_inside_an_alert_is_read_as_opaque_not_refused(path: str, value: Any,
                                                                                    field: str) -> None:
    broken = changed(rollout_suspect().to_json(), path, value)
    with pytest.raises(RecordError) as exc:
        w.decode_suspect(broken)
    assert field in exc.value.detail, "read alone, the suspect is refused naming the field"
    doc = alert(suspects=(warning_suspect(),)).to_json()
    doc["suspects"].insert(0, broken)
    page = decode_alert(as_sent(doc))
    assert page.firing and page.dedup_key == alert().dedup_key, "the page is not lost"
    assert isinstance(page.suspects[0], w.OpaqueSuspect) and page.suspects[0].to_json() == broken
    assert page.suspects[1] == warning_suspect()
    assert page.to_json()["suspects"][0] == broken, "it travels on as it came"


# ---- every reader refuses bad input naming the field -------------------------------------------------


def _change_doc() -> dict[str, Any]:
    return Change("playback-api", rollout_record()).to_json()


READERS: dict[str, tuple[Callable[[Any], Any], Callable[[], dict[str, Any]]]] = {
    "rollout": (decode_rollout, lambda: rollout_record().to_json()),
    "rollout suspect": (w.decode_suspect, lambda: rollout_suspect().to_json()),
    "warning suspect": (w.decode_suspect, lambda: warning_suspect().to_json()),
    "alert": (decode_alert, lambda: alert(suspects=(rollout_suspect(),)).to_json()),
    "status": (decode_status, lambda: status().to_json()),
    "kube event": (KubeEvent.from_json, lambda: kube_event().to_json()),
    "dead letter": (decode_dead_letter, lambda: refused(Rejected(c.REASON_BAD_JSON, "not JSON", 42),
                                                        topic="playback.events", partition=3,
                                                        original=b"\xff{").to_json()),  # value_base64
    "change": (lambda d: decode_change(orjson.dumps(d)), _change_doc),
    "freeze": (decode_order, lambda: Freeze("eu-west-1", "release freeze", TS, TS + 3600).to_json()),
    "lift": (decode_order, lambda: Lift("eu-west-1", TS).to_json()),
}
BAD, NO = c.REASON_BAD_FIELD, c.REASON_MISSING_FIELD


@pytest.mark.parametrize(("reader", "path", "value", "reason", "field"), [
    pytest.param("rollout", "revision", MISSING, NO, "revision", id="a rollout without a revision"),
    pytest.param("rollout", "ts", "yesterday", BAD, "ts", id="a rollout whose ts is text"),
    pytest.param("rollout", "cluster", "eu west 1", BAD, "cluster", id="a rollout in a cluster with spaces"),
    pytest.param("rollout", "deployment", "a/b", BAD, "deployment", id="a rollout of a deployment with a slash"),
    pytest.param("rollout suspect", "score", 1.5, BAD, "score", id="a rollout suspect scored above 1"),
    pytest.param("rollout suspect", "score", -0.01, BAD, "score", id="a rollout suspect scored below 0"),
    pytest.param("rollout suspect", "cluster", "eu west 1", BAD, "cluster",
                 id="a rollout suspect in a cluster with spaces"),
    pytest.param("rollout suspect", "started_at", MISSING, NO, "started_at", id="a rollout suspect with no start"),
    pytest.param("rollout suspect", "same_cluster", "yes", BAD, "same_cluster",
                 id="a rollout suspect whose same_cluster is text"),
    pytest.param("rollout suspect", "service", "Playback_API", BAD, "service",
                 id="a rollout suspect of a service that is not a name"),
    pytest.param("warning suspect", "score", 2, BAD, "score", id="a warning suspect scored above 1"),
    pytest.param("warning suspect", "count", "12", BAD, "count", id="a warning suspect whose count is text"),
    pytest.param("warning suspect", "cluster", "eu west 1", BAD, "cluster",
                 id="a warning suspect in a cluster with spaces"),
    pytest.param("alert", "objective", MISSING, NO, "objective", id="an alert without an objective"),
    pytest.param("alert", "severity", "critical", BAD, "severity", id="an alert of an unknown severity"),
    pytest.param("alert", "dimensions.cluster", "eu west 1", BAD, "dimensions.cluster",
                 id="an alert in a cluster with spaces"),
    pytest.param("alert", "slo", "Bad SLO", BAD, "slo", id="an alert of an SLO that is not a name"),
    pytest.param("alert", "suspects", {"kind": "rollout"}, BAD, "suspects", id="an alert whose suspects is no list"),
    pytest.param("alert", "schema_version", 2, c.REASON_BAD_SCHEMA_VERSION, "schema_version",
                 id="an alert of a later schema"),
    pytest.param("status", "series", "playback-api-availability", BAD, "series", id="a status of no series key"),
    pytest.param("status", "evaluated_at", MISSING, NO, "evaluated_at", id="a status without its evaluation time"),
    pytest.param("status", "conditions.0.met", "no", BAD, "conditions[0].met", id="a condition whose met is text"),
    pytest.param("status", "alerts.page.state", "burning", BAD, "alerts.page.state", id="an alert track state"),
    pytest.param("status", "dimensions.region", "eu west", BAD, "dimensions.region",
                 id="a status in a region with spaces"),
    pytest.param("kube event", "count", MISSING, NO, "count", id="an event without a count"),
    pytest.param("kube event", "count", "3", BAD, "count", id="an event whose count is text"),
    pytest.param("kube event", "cluster", "eu west 1", BAD, "cluster", id="an event in a cluster with spaces"),
    pytest.param("kube event", "first_ts", "today", BAD, "first_ts", id="an event whose first_ts is text"),
    pytest.param("dead letter", "reason", MISSING, NO, "reason", id="a dead letter without a reason"),
    pytest.param("dead letter", "source.partition", "3", BAD, "partition", id="a dead letter partition that is text"),
    pytest.param("dead letter", "value_base64", "not base64!", BAD, "value_base64",
                 id="a dead letter whose bytes are not base64"),
    pytest.param("dead letter", "schema_version", MISSING, NO, "schema_version",
                 id="a dead letter without a schema version"),
    pytest.param("change", "kind", "scale", BAD, "kind", id="a change of an unknown kind"),
    pytest.param("change", "service", "Bad Service", BAD, "service", id="a change of a service that is not a name"),
    pytest.param("change", "record", MISSING, NO, "record", id="a change without its record"),
    pytest.param("change", "record.cluster", "eu west 1", BAD, "cluster", id="a change of a rollout with spaces"),
    pytest.param("freeze", "ts", MISSING, NO, "ts", id="a freeze without a time"),
    pytest.param("freeze", "until", "tomorrow", BAD, "until", id="a freeze until a time that is text"),
    pytest.param("freeze", "cluster", "eu west 1", BAD, "cluster", id="a freeze of a cluster with spaces"),
    pytest.param("lift", "cluster", "eu west 1", BAD, "cluster", id="a lift of a cluster with spaces"),
])
def test_a_reader_refuses_a_bad_record_naming_the_field(reader: str, path: str, value: Any, reason: str,
                                                        field: str) -> None:
    read, good = READERS[reader]
    read(good())  # the record before the change reads
    with pytest.raises(RecordError) as exc:
        read(changed(good(), path, value))
    assert exc.value.reason == reason and field in exc.value.detail, exc.value


def test_a_change_record_that_is_not_json_is_bad_json() -> None:
    with pytest.raises(RecordError) as exc:
        decode_change(b"\xff not json")
    assert exc.value.reason == c.REASON_BAD_JSON


@pytest.mark.parametrize("reader", list(READERS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_json_in_any_field_is_read_or_refused_with_a_record_error(reader: str, data: st.DataObject) -> None:
    read, good = READERS[reader]
    doc = good()
    key = data.draw(st.sampled_from(sorted(doc)), label="field")
    value = data.draw(json_values, label="value")
    try:
        read({**doc, key: value})
    except RecordError as exc:
        assert exc.reason and exc.detail


def test_a_suspect_with_a_list_or_object_as_its_phase_does_not_cost_the_page() -> None:
    """A list or object where a name goes (it cannot even be looked up in a set): the suspect is
    refused by its reader, and inside an alert it travels on opaque."""
    broken = changed(rollout_suspect().to_json(), "phase", ["started"])
    with pytest.raises(RecordError) as exc:
        w.decode_suspect(broken)
    assert "phase" in exc.value.detail
    doc = alert(suspects=(warning_suspect(),)).to_json()
    doc["suspects"].insert(0, broken)
    page = decode_alert(as_sent(doc))
    assert isinstance(page.suspects[0], w.OpaqueSuspect) and page.suspects[0].to_json() == broken


@pytest.mark.parametrize(("kind", "path", "value"), [
    pytest.param("rollout", "evidence.0.type", {"timing": 1}, id="an evidence type that is an object"),
    pytest.param("rollout", "evidence.0.detail", 7, id="evidence whose detail is not text"),
    pytest.param("rollout", "evidence.1.strength", "high", id="evidence whose strength is text"),
    pytest.param("warning", "evidence.1.cluster", "eu west 1", id="a warning seen in a cluster with spaces"),
])
def test_an_evidence_item_that_cannot_be_read_is_kept_as_it_came_and_the_suspect_stays_readable(
        kind: str, path: str, value: Any) -> None:
    """Evidence is there for a person: an item of the wrong shape does not make its suspect unreadable
    (which would stop the gate and enforcement from acting on it)."""
    good = rollout_suspect() if kind == "rollout" else warning_suspect()
    broken = changed(good.to_json(), path, value)
    s = w.decode_suspect(broken)
    i = int(path.split(".")[1])
    assert type(s) is type(good) and isinstance(s.evidence[i], w.OpaqueEvidence)
    assert s.evidence[:i] == good.evidence[:i] and s.evidence[i + 1:] == good.evidence[i + 1:]
    assert s.to_json() == broken, "written back as it came"
