"""``k8s.events``: Kubernetes Events (key ``cluster/namespace/kind/name`` of the involved object).

The value is an Event as the API serves it (core/v1 or events.k8s.io/v1) plus ``cluster``; teams
that run kubernetes-event-exporter send its Kafka sink's JSON (core/v1 plus ``clusterName`` and an
``involvedObject`` extended with ``labels``, ``annotations``, ``ownerReferences``). Whoever wrote it,
:func:`decode_event` reads it into one flat :class:`KubeEvent`; :func:`event_record` writes the value
our bridge publishes for one Event. A :class:`KubeEvent` also travels, as :meth:`KubeEvent.to_json`,
inside the worker's internal change records (:mod:`streams.core.wire.change`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from streams.core import conventions as c
from streams.core.errors import RecordError
from streams.core.wire import fields as f

# The object an Event is about may be any kind, whose names need only be a valid path segment.
_OBJECT_NAME_RE: Final = re.compile(rf"^[^/%\s]{{1,{f.MAX_K8S_NAME_LEN}}}\Z")
_KIND_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}\Z")
EVENT_TYPES: Final = frozenset({"Normal", "Warning"})
# Kubernetes counts are int32; a larger one is clamped (sums of them must stay JSON-encodable).
MAX_EVENT_COUNT: Final = 2**31 - 1


@dataclass(frozen=True)
class KubeEvent:
    """One Kubernetes Event, whoever wrote it, in the shape consumers read."""

    api: str  # "core/v1" or "events.k8s.io/v1": the shape it came in
    cluster: str
    namespace: str  # of the involved object; "" for a cluster-scoped object (a Node)
    kind: str
    name: str
    object_uid: str | None
    uid: str  # the Event's own uid (its name when a writer left the uid out)
    resource_version: str | None
    reason: str
    message: str
    type: str  # Normal | Warning
    count: int  # occurrences so far (>= 1)
    first_ts: float
    last_ts: float
    source: str | None  # the reporting component (kubelet, deployment-controller, ...)
    # Of the involved object, when the writer added them (event-exporter).
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    owner_kind: str | None = None  # the involved object's controller, when the writer added ownerReferences
    owner_name: str | None = None
    node: str | None = None  # the node the event was seen on (kubelet's host), or the Node it is about

    @property
    def key(self) -> str:
        """``cluster/namespace/kind/name`` of the involved object (the namespace is empty for
        cluster-scoped objects): the ``k8s.events`` key."""
        return f"{self.cluster}/{self.namespace}/{self.kind}/{self.name}"

    @property
    def warning(self) -> bool:
        return self.type == "Warning"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": c.SCHEMA_VERSION, "api": self.api, "cluster": self.cluster,
            "namespace": self.namespace, "kind": self.kind, "name": self.name, "object_uid": self.object_uid,
            "uid": self.uid, "resource_version": self.resource_version, "reason": self.reason,
            "message": self.message, "type": self.type, "count": self.count, "first_ts": self.first_ts,
            "last_ts": self.last_ts, "source": self.source, "labels": dict(self.labels),
            "owner_kind": self.owner_kind, "owner_name": self.owner_name, "node": self.node,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> KubeEvent:
        """Read back :meth:`to_json` (a record this program wrote; RecordError if it is not one)."""
        try:
            return cls(
                api=str(d["api"]), cluster=f.check_cluster(d["cluster"]), namespace=str(d["namespace"]),
                kind=str(d["kind"]), name=str(d["name"]), object_uid=f.opt_text(d.get("object_uid"), "object_uid"),
                uid=str(d["uid"]), resource_version=f.opt_text(d.get("resource_version"), "resource_version"),
                reason=f.text(d["reason"], "reason"), message=f.text(d["message"], "message"), type=str(d["type"]),
                count=f.integer(d["count"], "count"), first_ts=f.number(d["first_ts"], "first_ts"),
                last_ts=f.number(d["last_ts"], "last_ts"), source=f.opt_text(d.get("source"), "source"),
                labels=MappingProxyType({str(k): str(v) for k, v in f.mapping(d.get("labels")).items()}),
                owner_kind=f.opt_text(d.get("owner_kind"), "owner_kind"),
                owner_name=f.opt_text(d.get("owner_name"), "owner_name"), node=_node_name(d.get("node")),
            )
        except KeyError as exc:
            raise f.missing(str(exc.args[0])) from None


def _is_events_v1(doc: Mapping[str, Any]) -> bool:
    api = doc.get("apiVersion")
    return (isinstance(api, str) and api.startswith("events.k8s.io/")) or "regarding" in doc


def _count(doc: Mapping[str, Any], v1: bool) -> int:
    series = f.mapping(doc.get("series"))
    candidates = (series.get("count"), doc.get("deprecatedCount"), doc.get("count")) if v1 else \
        (doc.get("count"), series.get("count"))
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return min(value, MAX_EVENT_COUNT)
    return 1


def _times(doc: Mapping[str, Any], v1: bool) -> tuple[float, float]:
    meta = f.mapping(doc.get("metadata"))
    series = f.mapping(doc.get("series"))
    if v1:
        firsts = ("deprecatedFirstTimestamp", "eventTime", "firstTimestamp")
        lasts = ("deprecatedLastTimestamp", "lastTimestamp", "eventTime")
    else:
        firsts = ("firstTimestamp", "eventTime", "deprecatedFirstTimestamp")
        lasts = ("lastTimestamp", "eventTime", "deprecatedLastTimestamp")

    def first_of(names: Iterable[str], source: Mapping[str, Any]) -> float | None:
        for name in names:
            try:
                value = f.parse_time(source.get(name))
            except ValueError as exc:
                raise f.bad(name, source.get(name), str(exc)) from None
            if value is not None:
                return value
        return None

    created = first_of(("creationTimestamp",), meta)
    first = first_of(firsts, doc) or created
    last = first_of(("lastObservedTime",), series) or first_of(lasts, doc) or first
    if first is None or last is None:
        raise f.missing("lastTimestamp (or eventTime, series.lastObservedTime)")
    return first, max(first, last)


def _involved(doc: Mapping[str, Any], v1: bool) -> tuple[Mapping[str, Any], str, str, str]:
    """The involved object and its kind, name and namespace, checked."""
    involved = doc.get("regarding") if v1 and isinstance(doc.get("regarding"), Mapping) else \
        doc.get("involvedObject")
    if not isinstance(involved, Mapping):
        raise f.missing("regarding" if v1 else "involvedObject")
    kind = involved.get("kind")
    if not isinstance(kind, str) or not kind:
        raise f.missing("involvedObject.kind")
    if not _KIND_RE.match(kind):
        raise f.bad("involvedObject.kind", kind, "not a kind")
    name = involved.get("name")
    if not isinstance(name, str) or not name:
        raise f.missing("involvedObject.name")
    if not _OBJECT_NAME_RE.match(name) or name in (".", ".."):
        raise f.bad("involvedObject.name", name, "not an object name")
    namespace = involved.get("namespace") or ""
    if namespace:
        f.check_namespace(namespace, "involvedObject.namespace")
    return involved, kind, name, namespace


def _node_name(value: object) -> str | None:
    """A node name, or None when there is none or it could not be one (a node only helps name the
    infrastructure a warning is about: it never costs the event)."""
    return value if isinstance(value, str) and f.K8S_NAME_RE.match(value) else None


def _node(doc: Mapping[str, Any], kind: str, name: str) -> str | None:
    """The node of an Event: the Node it is about, else the host of the component that reported it
    (``source.host``, ``deprecatedSource.host``, or a kubelet's ``reportingInstance``)."""
    if kind == "Node":
        return name
    host = f.mapping(doc.get("source")).get("host") or f.mapping(doc.get("deprecatedSource")).get("host")
    if not host and doc.get("reportingController") == "kubelet":
        host = doc.get("reportingInstance")
    return _node_name(host)


def _owner(owner: Mapping[str, Any] | None, key: str) -> str | None:
    """The owner's kind or name, or None when it is missing or could not be a Kubernetes one (longer
    than an object name may be): an owner only helps name the workload, it never costs the event."""
    value = f.nonempty_str(owner.get(key)) if owner else None
    return value if value is not None and len(value) <= f.MAX_K8S_NAME_LEN else None


def decode_event(doc: object, *, default_cluster: str | None) -> KubeEvent:
    """Read one ``k8s.events`` value, whatever wrote it: our bridge (core/v1 or events.k8s.io/v1
    shape plus ``cluster``), a raw Event of either API, or kubernetes-event-exporter's Kafka sink.
    The cluster is ``cluster``, else ``clusterName``, else ``default_cluster``.

    Times are epoch seconds: ``first_ts`` from firstTimestamp/eventTime, ``last_ts`` from
    series.lastObservedTime/lastTimestamp/eventTime (never before ``first_ts``). Raises
    :class:`RecordError` with the reason when the value cannot be used.
    """
    if not isinstance(doc, Mapping):
        raise RecordError(c.REASON_BAD_FIELD, "an event must be a JSON object")
    if doc.get("schema_version", c.SCHEMA_VERSION) != c.SCHEMA_VERSION:
        raise RecordError(c.REASON_BAD_SCHEMA_VERSION, f"schema_version={f.short(doc.get('schema_version'))}")
    v1 = _is_events_v1(doc)
    cluster = f.check_cluster(f.nonempty_str(doc.get("cluster")) or f.nonempty_str(doc.get("clusterName"))
                              or default_cluster)
    involved, kind, name, namespace = _involved(doc, v1)
    meta = f.mapping(doc.get("metadata"))
    uid = f.nonempty_str(meta.get("uid")) or f.nonempty_str(meta.get("name"))
    if uid is None:
        raise f.missing("metadata.uid")
    etype = doc.get("type")
    if etype is None:
        raise f.missing("type")
    if not isinstance(etype, str) or etype not in EVENT_TYPES:
        raise f.bad("type", etype, "must be Normal or Warning")
    reason = doc.get("reason") or ""
    message = (doc.get("note") if v1 else doc.get("message")) or doc.get("message") or doc.get("note") or ""
    if not isinstance(reason, str) or not isinstance(message, str):
        raise f.bad("reason" if not isinstance(reason, str) else "message", reason, "must be a string")
    first_ts, last_ts = _times(doc, v1)
    labels = {k: v for k, v in f.mapping(involved.get("labels")).items() if isinstance(k, str) and isinstance(v, str)}
    owner = f.controller(involved) or f.first_owner(involved)
    s = f.nonempty_str
    source = s(doc.get("reportingController")) or s(doc.get("reportingComponent")) or \
        s(f.mapping(doc.get("source")).get("component")) or s(f.mapping(doc.get("deprecatedSource")).get("component"))
    rv = meta.get("resourceVersion")
    return KubeEvent(
        api="events.k8s.io/v1" if v1 else "core/v1", cluster=cluster, namespace=namespace, kind=kind, name=name,
        object_uid=s(involved.get("uid")), uid=uid, resource_version=rv if isinstance(rv, str) and rv else None,
        reason=reason[:f.MAX_TEXT_LEN], message=message[:f.MAX_TEXT_LEN], type=str(etype),
        count=_count(doc, v1), first_ts=first_ts, last_ts=last_ts, source=source,
        labels=MappingProxyType(labels), owner_kind=_owner(owner, "kind"), owner_name=_owner(owner, "name"),
        node=_node(doc, kind, name),
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_record(o: Mapping[str, Any], *, cluster: str) -> tuple[str, dict[str, Any], KubeEvent]:
    """The ``k8s.events`` message for one Event as the API served it: ``(key, value, decoded)``.

    The value is the Event JSON without ``metadata.managedFields``, plus ``cluster`` and
    ``schema_version``. An events.k8s.io/v1 Event also gets the core/v1 names a consumer may read
    (``involvedObject``, ``message``, ``count``, ``firstTimestamp``, ``lastTimestamp``); a core/v1 Event
    written through the new API (``count`` and ``lastTimestamp`` null) gets them filled in. Raises
    :class:`RecordError` when the Event cannot be keyed or read."""
    ev = decode_event({**o, "cluster": cluster}, default_cluster=cluster)
    value = dict(o)
    meta = dict(f.mapping(o.get("metadata")))
    meta.pop("managedFields", None)
    value["metadata"] = meta
    if ev.api == "events.k8s.io/v1":
        value.setdefault("involvedObject", o.get("regarding"))
        if value.get("message") is None:
            value["message"] = ev.message
    if not isinstance(value.get("count"), int) or isinstance(value.get("count"), bool) or value["count"] < 1:
        value["count"] = ev.count
    if not value.get("firstTimestamp"):
        value["firstTimestamp"] = _iso(ev.first_ts)
    if not value.get("lastTimestamp"):
        value["lastTimestamp"] = _iso(ev.last_ts)
    value["cluster"] = cluster
    value["schema_version"] = c.SCHEMA_VERSION
    return ev.key, value, ev
