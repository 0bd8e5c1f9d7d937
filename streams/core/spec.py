"""OpenSLO v1 specs -> the SLO domain model (:class:`~streams.core.model.Slo`).

Pure: the caller reads the files (see :mod:`streams.adapters.specfiles`) and hands in
``(file name, YAML text)`` pairs. :func:`parse_specs` reads every document of every file, resolves
references by name across files, and returns the SLOs sorted by name. It never stops at the first
problem: every problem found is collected and raised at once as :class:`SpecError`, each one naming
the file, the document (``Kind/name``, or ``#N`` for the N-th document of its file, 1-based, when it
has no usable name), the dotted field path (``spec.objectives[0].target``) and the 1-based line.

What we accept (``apiVersion: openslo/v1``; docs/slo-specs.md has the full reference):

- ``Service``: ``metadata.name``, optional ``spec.description``.
- ``SLI``: ``spec.ratioMetric`` with ``bad`` (field ``errors``) over ``total`` (field ``total``), or
  ``spec.thresholdMetric`` (field ``latency_ms``). ``metricSource.type`` is always ``playback``,
  our ``playback.events`` stream.
- ``AlertCondition``: ``spec.severity`` (``page`` | ``ticket``) and ``spec.condition`` of
  ``kind: burnrate`` with ``op`` (``gt`` | ``gte``), ``threshold`` (the burn-rate factor),
  ``lookbackWindow`` and ``alertAfter``. OpenSLO has a single window per condition; we alert on
  multi-window burn rates (SRE Workbook, ch. 5), so **``lookbackWindow`` is the long window and
  ``alertAfter`` the short window**: the condition holds when the burn rate over both windows
  exceeds ``threshold``. (``alertAfter`` is not a "for" duration here.)
- ``AlertPolicy``: ``spec.conditions``, each an inline ``AlertCondition`` or
  ``{conditionRef: name}``. Unlike OpenSLO's one condition per policy, a policy holds a list (the
  multi-window, multi-burn-rate set). Annotations ``slo-stream/min-events`` and ``slo-stream/hold``
  tune the policy.
- ``SLO``: ``spec.service`` (a Service name), ``spec.indicatorRef`` or an inline ``spec.indicator``,
  one rolling ``spec.timeWindow``, ``budgetingMethod: Occurrences``, one objective
  (``target`` or ``targetPercent``; threshold SLIs also ``op: lte`` and ``value`` in ms), and at most
  one entry in ``spec.alertPolicies`` (a name, ``{alertPolicyRef: name}`` or an inline policy);
  without it the SLO gets :func:`~streams.core.model.default_policy` for its window.

Names reach Kafka keys, PromQL and YAML, so every name must match
:data:`~streams.core.conventions.NAME_RE`. Fields we do not know are errors (typos must not be
silently ignored); OpenSLO fields we do not support yet get their own message.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from urllib.parse import urlsplit

import yaml

from streams.core.conventions import DIMENSIONS, LABEL_VALUE_RE, NAME_RE
from streams.core.errors import SpecError, SpecProblem
from streams.core.model import (
    DAY,
    HOUR,
    AlertPolicy,
    BurnWindow,
    Indicator,
    Severity,
    SliKind,
    Slo,
    default_policy,
    format_duration,
    parse_duration,
)

API_VERSION = "openslo/v1"

# The evaluation step: every window and duration must be a whole number of steps.
STEP_S = 10
MIN_SLO_WINDOW_S = 1 * HOUR
MAX_SLO_WINDOW_S = 90 * DAY

ANNOTATION_PREFIX = "slo-stream/"
ANN_RUNBOOK = "slo-stream/runbook"
ANN_DASHBOARD = "slo-stream/dashboard"
ANN_GROUP_BY = "slo-stream/group-by"
ANN_MIN_EVENTS = "slo-stream/min-events"
ANN_HOLD = "slo-stream/hold"
ANN_GATE_BUDGET_FLOOR = "slo-stream/gate-budget-floor"  # 0..1: below this budget left, the gate holds
ANN_GATE_STALE_AFTER = "slo-stream/gate-stale-after"  # a duration: older data is stale
ANN_GATE_FAIL_OPEN = "slo-stream/gate-fail-open"  # "true": stale data does not hold rollouts

# The ``field`` of a problem about a whole document (not a mapping, YAML syntax error).
WHOLE_DOCUMENT = "(document)"

# Label keys that our generated rules and alerts set themselves; an SLO label must not shadow them.
RESERVED_LABELS = frozenset({"slo", "service", "severity", "window", *DIMENSIONS})
_LABEL_KEY_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# The playback stream's fields that each metric source may name.
_FIELD_BAD = "errors"
_FIELD_TOTAL = "total"
_FIELD_LATENCY = "latency_ms"
_SOURCE_TYPE = "playback"

_KINDS = ("Service", "SLI", "SLO", "AlertPolicy", "AlertCondition")

_TAG = "tag:yaml.org,2002:"
_TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "empty (null)",
    "seq": "a list",
    "map": "a mapping",
    "timestamp": "a timestamp",
}


# --------------------------------------------------------------------------------------------------
# Reading located YAML nodes


@dataclass
class _Doc:
    """One YAML document of one file; its problems go to the shared ``problems`` list."""

    file: str
    label: str
    problems: list[SpecProblem]


class Node:
    """A YAML node with its document and dotted path: typed reads that report what is wrong.

    Every reader returns ``None`` after reporting a problem, so callers just skip what is missing.
    Public, with :func:`documents`, so that other YAML files (scenario files) report their problems
    the same way.
    """

    def __init__(self, node: yaml.Node, doc: _Doc, path: str, *, key_line: int = 0) -> None:
        self.node = node
        self.doc = doc
        self.path = path
        # The line of the key that holds this value: where a missing sub-field is reported.
        self.key_line = key_line or self.line

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def problem(self, message: str, *, field: str | None = None, line: int | None = None) -> None:
        """Report ``message`` for this node's path (or ``field``) at its key's line (or ``line``)."""
        self.doc.problems.append(
            SpecProblem(
                file=self.doc.file,
                document=self.doc.label,
                field=field if field is not None else (self.path or WHOLE_DOCUMENT),
                message=message,
                line=line or self.key_line,
            )
        )

    def missing(self, name: str, hint: str = "") -> None:
        """Report that this mapping lacks field ``name``, at the line of the key that holds it."""
        self.problem(f"missing field {name!r}{hint}", field=self.child(self.node, name).path)

    def child(self, node: yaml.Node, key: str | int) -> Node:
        if isinstance(key, int):
            return Node(node, self.doc, f"{self.path}[{key}]")
        return Node(node, self.doc, f"{self.path}.{key}" if self.path else key)

    def type_name(self) -> str:
        tag = str(self.node.tag)
        if tag.startswith(_TAG) and tag[len(_TAG) :] in _TYPE_NAMES:
            return _TYPE_NAMES[tag[len(_TAG) :]]
        return f"a value tagged {tag}"

    def has_tag(self, short_tag: str) -> bool:
        return bool(self.node.tag == _TAG + short_tag)

    def _expected(self, what: str) -> None:
        # YAML reads 2024, 1.0 and yes as numbers and booleans: quoting makes them strings.
        scalar = self.has_tag("int") or self.has_tag("float") or self.has_tag("bool")
        hint = " (quote it)" if scalar and what == "a string" else ""
        self.problem(f"expected {what}, got {self.type_name()}{hint}")

    # -- containers --

    def entries(self) -> list[tuple[str, Node, Node]] | None:
        """A mapping's ``(key, key node, value node)`` in file order; duplicate keys are reported."""
        if not isinstance(self.node, yaml.MappingNode):
            self._expected("a mapping")
            return None
        out: list[tuple[str, Node, Node]] = []
        seen: dict[str, int] = {}
        for key_node, value_node in self.node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _TAG + "str"):
                if key_node.tag == _TAG + "merge":
                    Node(key_node, self.doc, self.path).problem("YAML merge keys (<<) are not supported")
                else:
                    Node(key_node, self.doc, self.path).problem("mapping keys must be strings")
                continue
            key = str(key_node.value)
            key_at = self.child(key_node, key)
            if key in seen:
                key_at.problem(f"duplicate key {key!r} (first on line {seen[key]})")
                continue
            seen[key] = key_at.line
            value = Node(value_node, self.doc, key_at.path, key_line=key_at.line)
            out.append((key, key_at, value))
        return out

    def fields(
        self,
        *,
        required: Iterable[str] = (),
        optional: Iterable[str] = (),
        unsupported: Mapping[str, str] | None = None,
    ) -> dict[str, Node] | None:
        """The known fields of a mapping, by name.

        Reports unknown fields (with a suggestion), ``unsupported`` ones (name -> why) and missing
        ``required`` ones. Returns the known fields present even when there are problems, so that
        the caller can go on checking them; ``None`` only when this is not a mapping.
        """
        entries = self.entries()
        if entries is None:
            return None
        required = tuple(required)
        known = (*required, *optional)
        unsupported = unsupported or {}
        out: dict[str, Node] = {}
        for key, key_at, value in entries:
            if key in known:
                out[key] = value
            elif key in unsupported:
                key_at.problem(f"{key!r} is not supported: {unsupported[key]}")
            else:
                key_at.problem(f"unknown field {key!r}{_did_you_mean(key, known)}")
        for name in required:
            if name not in out:
                self.missing(name)
        return out

    def items(self) -> list[Node] | None:
        if not isinstance(self.node, yaml.SequenceNode):
            self._expected("a list")
            return None
        return [self.child(n, i) for i, n in enumerate(self.node.value)]

    # -- scalars --

    def _scalar(self) -> object:
        return yaml.constructor.SafeConstructor().construct_object(self.node)

    def text(self) -> str | None:
        """A non-empty string."""
        if not self.has_tag("str"):
            self._expected("a string")
            return None
        value = str(self.node.value)
        if not value.strip():
            self.problem("must not be empty")
            return None
        return value

    def number(self) -> float | None:
        """A finite int or float (not a boolean)."""
        if not (self.has_tag("int") or self.has_tag("float")):
            self._expected("a number")
            return None
        value = self._scalar()
        assert isinstance(value, int | float)
        if not math.isfinite(value):
            self.problem("must be a finite number")
            return None
        return float(value)

    def integer(self) -> int | None:
        if not self.has_tag("int"):
            self._expected("an integer")
            return None
        value = self._scalar()
        assert isinstance(value, int)
        return value

    def flag(self) -> bool | None:
        if not self.has_tag("bool"):
            self._expected("a boolean (true or false)")
            return None
        return bool(self._scalar())

    def choice(self, options: tuple[str, ...]) -> str | None:
        """One of ``options``, exactly."""
        value = self.text()
        if value is None:
            return None
        if value not in options:
            if len(options) == 1:
                self.problem(f"must be {options[0]!r}, not {value!r}")
            else:
                listed = ", ".join(options)
                self.problem(f"must be one of {listed}, not {value!r}{_did_you_mean(value, options)}")
            return None
        return value

    def duration(self, *, allow_zero: bool = False) -> int | None:
        """A duration like ``5m`` or ``30d``, in seconds: a whole number of evaluation steps."""
        value = self.text()
        if value is None:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.problem(str(exc))
            return None
        if seconds == 0 and not allow_zero:
            self.problem("must be longer than 0s")
            return None
        if seconds % STEP_S:
            self.problem(f"{value} is not a multiple of {STEP_S}s (the evaluation step)")
            return None
        return seconds

    def name(self) -> str | None:
        """A name that is safe in Kafka keys, PromQL and YAML (:data:`NAME_RE`)."""
        value = self.text()
        if value is None:
            return None
        why = _name_problem(value)
        if why:
            self.problem(
                f"invalid name {value!r}: {why}; names must be lowercase DNS labels (a-z, 0-9 and '-', "
                "starting and ending with a letter or digit, at most 63 characters) because they "
                "become Kafka keys, PromQL label values and YAML keys"
            )
            return None
        return value


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _name_problem(name: str) -> str:
    """Why ``name`` does not match :data:`NAME_RE`, or ``""`` if it does."""
    if NAME_RE.match(name):
        return ""
    if len(name) > 63:
        return f"it is {len(name)} characters long"
    if any(c.isupper() for c in name):
        return "it has uppercase letters"
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c == "-"))})
    if bad:
        return "it contains " + " ".join(repr(c) for c in bad)
    return "it starts or ends with '-'"


# --------------------------------------------------------------------------------------------------
# Parsed documents, before references are resolved


@dataclass(frozen=True)
class _Ref:
    """A reference to another document by name, with where it was made (for messages)."""

    name: str
    at: Node


@dataclass(frozen=True)
class _Condition:
    name: str
    window: BurnWindow
    long_at: Node  # where lookbackWindow is written, to report a window longer than an SLO's


@dataclass(frozen=True)
class _Policy:
    name: str
    conditions: tuple[_Condition | _Ref, ...]
    min_events: int | None
    hold_s: int | None


@dataclass(frozen=True)
class _Objective:
    target: float
    op_at: Node | None  # threshold SLIs: "op: lte"
    value: float | None  # threshold SLIs: latency in ms
    value_at: Node | None
    at: Node


@dataclass(frozen=True)
class _SloDraft:
    name: str
    source: str
    service: _Ref
    indicator: Indicator | _Ref
    window_s: int
    objective: _Objective
    policy: _Policy | _Ref | None
    min_events: int | None
    hold_s: int | None
    group_by: tuple[str, ...]
    runbook_url: str
    dashboard_url: str
    labels: Mapping[str, str]
    description: str
    gate: tuple[float | None, int | None, bool | None] = (None, None, None)


@dataclass
class _Entry:
    """A named document: its parsed value, or ``None`` when it had problems (already reported)."""

    value: object
    at: Node


@dataclass
class _Registry:
    """Every named top-level document, by kind and name."""

    by_kind: dict[str, dict[str, _Entry]] = field(default_factory=lambda: {k: {} for k in _KINDS})

    def add(self, kind: str, name: str, value: object, at: Node) -> None:
        table = self.by_kind[kind]
        first = table.get(name)
        if first is not None:
            at.problem(
                f"duplicate {kind} name {name!r}: also defined in {first.at.doc.file} "
                f"(line {first.at.line}) and in {at.doc.file} (line {at.line})"
            )
            return
        table[name] = _Entry(value, at)

    def lookup(self, kind: str, ref: _Ref) -> tuple[bool, object]:
        """``(found, value)``; reports an unknown name. ``value`` is None for an invalid document."""
        table = self.by_kind[kind]
        entry = table.get(ref.name)
        if entry is None:
            known = ", ".join(sorted(table)) or "none"
            ref.at.problem(f"no {kind} named {ref.name!r}{_did_you_mean(ref.name, table)} (known: {known})")
            return False, None
        return True, entry.value


# --------------------------------------------------------------------------------------------------
# Entry point


def parse_specs(sources: list[tuple[str, str]]) -> list[Slo]:
    """Parse OpenSLO v1 documents into SLOs, sorted by name.

    ``sources`` are ``(file name, YAML text)`` pairs; each text holds one or more YAML documents
    (empty documents are skipped). References (``spec.service``, ``indicatorRef``, policy and
    condition references) are resolved across all sources. Each returned ``Slo`` has ``source`` set
    to the file name it was defined in.

    Raises :class:`SpecError` carrying every problem found (sorted by file and line), never a
    bare YAML or type error.
    """
    problems: list[SpecProblem] = []
    registry = _Registry()
    drafts: list[_SloDraft] = []
    for file, text in sources:
        for root in documents(file, text, problems):
            before = len(problems)
            kind, name, name_at, value = _parse_document(root)
            if kind is None:
                continue
            ok = len(problems) == before
            if name is not None and name_at is not None:
                registry.add(kind, name, value if ok else None, name_at)
            if ok and isinstance(value, _SloDraft):
                drafts.append(value)

    slos = [slo for d in drafts if (slo := _resolve_slo(d, registry)) is not None]
    if problems:
        order = {file: i for i, (file, _) in enumerate(sources)}
        unique = list(dict.fromkeys(problems))
        unique.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
        raise SpecError(unique)
    return sorted(slos, key=lambda s: s.name)


def documents(file: str, text: str, problems: list[SpecProblem]) -> Iterator[Node]:
    """The non-empty documents of one file; a YAML syntax error ends the file, with a problem."""
    index = 0
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=yaml.SafeLoader), start=1):
            if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "null"):
                continue
            yield Node(node, _Doc(file, _label(node, index), problems), "")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        problems.append(
            SpecProblem(
                file=file,
                document=f"#{index + 1}",
                field=WHOLE_DOCUMENT,
                message=f"YAML syntax error: {what}",
                line=int(mark.line) + 1 if mark else 0,
            )
        )
    except yaml.YAMLError as exc:
        problems.append(SpecProblem(file, f"#{index + 1}", WHOLE_DOCUMENT, f"YAML error: {exc}", line=0))


def _label(node: yaml.Node, index: int) -> str:
    """``Kind/name`` when the document states both as plain strings, else ``#index``."""

    def get(mapping: yaml.Node, key: str) -> yaml.Node | None:
        if isinstance(mapping, yaml.MappingNode):
            for k, v in mapping.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    return v  # type: ignore[no-any-return]
        return None

    kind = get(node, "kind")
    meta = get(node, "metadata")
    name = get(meta, "name") if meta is not None else None
    if (
        isinstance(kind, yaml.ScalarNode)
        and isinstance(name, yaml.ScalarNode)
        and kind.tag == _TAG + "str"
        and name.tag == _TAG + "str"
        and kind.value
        and name.value
    ):
        return f"{kind.value}/{name.value}"
    return f"#{index}"


# --------------------------------------------------------------------------------------------------
# One document per kind


def _parse_document(root: Node) -> tuple[str | None, str | None, Node | None, object]:
    """``(kind, name, name node, parsed value)``.

    ``kind`` is None when the document cannot be classified; ``name`` is None when it has no valid
    name. The value is only meaningful when parsing it reported no problem.
    """
    f = root.fields(required=("apiVersion", "kind", "metadata"), optional=("spec",))
    if f is None:
        return None, None, None, None
    if "apiVersion" in f:
        api = f["apiVersion"].text()
        if api is not None and api != API_VERSION:
            f["apiVersion"].problem(f"unsupported apiVersion {api!r}: expected {API_VERSION!r}")
    kind = f["kind"].choice(_KINDS) if "kind" in f else None
    if kind is None:
        return None, None, None, None
    if kind != "Service" and "spec" not in f:
        root.missing("spec")
    annotations: tuple[str, ...] = {
        "SLO": (ANN_RUNBOOK, ANN_DASHBOARD, ANN_GROUP_BY, ANN_MIN_EVENTS, ANN_HOLD, ANN_GATE_BUDGET_FLOOR,
                ANN_GATE_STALE_AFTER, ANN_GATE_FAIL_OPEN),
        "AlertPolicy": (ANN_MIN_EVENTS, ANN_HOLD),
    }.get(kind, ())
    meta = (_metadata(f["metadata"], annotations) if "metadata" in f else None) or _NO_META
    # The spec is checked even without a valid name, so that every problem shows in one run.
    spec = f.get("spec")
    value: object = None
    if kind == "Service":
        value = _parse_service(spec)
    elif spec is None:
        pass
    elif kind == "SLI":
        value = _parse_sli(meta.name or "", spec)
    elif kind == "AlertCondition":
        value = _parse_condition(meta.name or "", spec)
    elif kind == "AlertPolicy":
        value = _parse_policy(meta, spec)
    else:
        value = _parse_slo(root, meta, spec)
    return kind, meta.name, meta.name_at, value


@dataclass(frozen=True)
class _Meta:
    name: str | None
    name_at: Node | None
    labels: dict[str, str]
    annotations: dict[str, Node]


_NO_META = _Meta(None, None, {}, {})


def _metadata(node: Node, annotations: tuple[str, ...]) -> _Meta | None:
    """``metadata``: a valid ``name``, optional ``displayName``, ``labels`` and ``annotations``.

    Only the ``slo-stream/`` annotations in ``annotations`` are accepted on this kind; annotations
    with other prefixes belong to other tools and are ignored.
    """
    f = node.fields(required=("name",), optional=("displayName", "labels", "annotations"))
    if f is None:
        return None
    name = f["name"].name() if "name" in f else None
    if "displayName" in f:
        f["displayName"].text()
    labels: dict[str, str] = {}
    for key, key_at, value in (f["labels"].entries() or []) if "labels" in f else []:
        if not _LABEL_KEY_RE.match(key) or key.startswith("__"):
            key_at.problem(
                f"invalid label key {key!r}: use letters, digits and '_' (a Prometheus label name)"
            )
        elif key in RESERVED_LABELS:
            key_at.problem(f"label key {key!r} is reserved: slo-stream sets it on every series and alert")
        elif (text := value.text()) is not None:
            if LABEL_VALUE_RE.match(text):
                labels[key] = text
            else:
                value.problem(
                    f"invalid label value {text!r}: use letters, digits, '.', '_' and '-' "
                    "(at most 63 characters, starting and ending with a letter or digit)"
                )
    found: dict[str, Node] = {}
    for key, key_at, value in (f["annotations"].entries() or []) if "annotations" in f else []:
        if key in annotations:
            found[key] = value
        elif key.startswith(ANNOTATION_PREFIX):
            allowed = ", ".join(annotations) if annotations else "none"
            key_at.problem(
                f"unknown annotation {key!r} for this kind{_did_you_mean(key, annotations)} "
                f"(allowed here: {allowed})"
            )
    return _Meta(name, f["name"] if name is not None else None, labels, found)


def _parse_service(spec: Node | None) -> str:
    """A Service's description (``spec`` is optional)."""
    if spec is None:
        return ""
    f = spec.fields(optional=("description",))
    if f and "description" in f:
        return f["description"].text() or ""
    return ""


def _parse_sli(name: str, spec: Node) -> Indicator | None:
    """An SLI spec: ``ratioMetric`` (bad over total) or ``thresholdMetric`` (latency_ms)."""
    f = spec.fields(
        optional=("description", "ratioMetric", "thresholdMetric"),
        unsupported={"metricSourceRef": "give the metric source inline"},
    )
    if f is None:
        return None
    if "description" in f:
        f["description"].text()
    has_ratio, has_threshold = "ratioMetric" in f, "thresholdMetric" in f
    if has_ratio == has_threshold:
        spec.problem("needs exactly one of 'ratioMetric' or 'thresholdMetric'")
        return None
    if has_threshold:
        t = f["thresholdMetric"].fields(required=("metricSource",))
        if t is None or "metricSource" not in t:
            return None
        ok = _metric_source(t["metricSource"], _FIELD_LATENCY)
        return Indicator(name=name, kind=SliKind.THRESHOLD) if ok else None

    ratio = f["ratioMetric"]
    r = ratio.fields(
        required=("total",),
        optional=("counter", "bad", "good"),
        unsupported={
            "raw": "raw ratios are not supported; count bad and total events",
            "rawType": "raw ratios are not supported; count bad and total events",
        },
    )
    if r is None:
        return None
    ok = True
    if "counter" in r and r["counter"].flag() is False:
        r["counter"].problem("counter: false is not supported: playback errors and totals are counts")
        ok = False
    if "good" in r:
        r["good"].problem(
            "'good' is not supported: the playback stream counts errors, so give 'bad' "
            f"(metricSource field {_FIELD_BAD!r}) over 'total'"
        )
        ok = False
    elif "bad" not in r:
        ratio.missing("bad")
        ok = False
    for part, field_name in (("bad", _FIELD_BAD), ("total", _FIELD_TOTAL)):
        if part in r:
            p = r[part].fields(required=("metricSource",))
            if p is None or "metricSource" not in p or not _metric_source(p["metricSource"], field_name):
                ok = False
    return Indicator(name=name, kind=SliKind.RATIO) if ok else None


def _metric_source(node: Node, expected_field: str) -> bool:
    """``{type: playback, spec: {field: <expected_field>}}``; ``spec`` may be left out."""
    before = len(node.doc.problems)
    f = node.fields(
        required=("type",),
        optional=("spec",),
        unsupported={"metricSourceRef": "give the metric source inline"},
    )
    if f is None:
        return False
    if "type" in f:
        kind = f["type"].text()
        if kind is not None and kind != _SOURCE_TYPE:
            f["type"].problem(
                f"unsupported metricSource type {kind!r}: only {_SOURCE_TYPE!r} "
                "(the playback.events stream) is supported"
            )
    if "spec" in f:
        s = f["spec"].fields(required=("field",))
        if s and "field" in s:
            s["field"].choice((expected_field,))
    return len(node.doc.problems) == before


def _parse_condition(name: str, spec: Node) -> _Condition | None:
    """An AlertCondition spec: severity plus a burn-rate condition over two windows."""
    f = spec.fields(required=("severity", "condition"), optional=("description",))
    if f is None:
        return None
    if "description" in f:
        f["description"].text()
    severity = f["severity"].choice(tuple(s.value for s in Severity)) if "severity" in f else None
    if "condition" not in f:
        return None
    cond = f["condition"]
    c = cond.fields(required=("kind", "op", "threshold", "lookbackWindow", "alertAfter"))
    if c is None:
        return None
    if "kind" in c:
        c["kind"].choice(("burnrate",))
    if "op" in c and (op := c["op"].text()) is not None and op not in ("gt", "gte"):
        c["op"].problem(
            f"op must be gt or gte, not {op!r}: an alert fires when the burn rate exceeds the threshold"
        )
    threshold = c["threshold"].number() if "threshold" in c else None
    if threshold is not None and threshold <= 0:
        c["threshold"].problem(f"threshold must be > 0, not {threshold:g}")
        threshold = None
    long_s = c["lookbackWindow"].duration() if "lookbackWindow" in c else None
    short_s = c["alertAfter"].duration() if "alertAfter" in c else None
    if long_s is not None and short_s is not None and short_s >= long_s:
        c["alertAfter"].problem(
            f"alertAfter (the short window, {format_duration(short_s)}) must be shorter than "
            f"lookbackWindow (the long window, {format_duration(long_s)})"
        )
        return None
    if severity is None or threshold is None or long_s is None or short_s is None:
        return None
    window = BurnWindow(severity=Severity(severity), long_s=long_s, short_s=short_s, factor=threshold)
    return _Condition(name=name, window=window, long_at=c["lookbackWindow"])


def _parse_policy(meta: _Meta, spec: Node) -> _Policy | None:
    """An AlertPolicy spec: a list of conditions, inline or by ``conditionRef``."""
    f = spec.fields(
        required=("conditions",),
        optional=("description",),
        unsupported={
            "alertWhenNoData": "low traffic is handled by the slo-stream/min-events annotation",
            "alertWhenBreaching": "slo-stream always alerts when a condition holds",
            "alertWhenResolved": "slo-stream always resolves, after the slo-stream/hold time",
            "notificationTargets": "routing is configured in the notifier, not in the spec",
        },
    )
    if f is None:
        return None
    if "description" in f:
        f["description"].text()
    min_events, hold_s = _tuning(meta.annotations)
    items = f["conditions"].items() if "conditions" in f else None
    if items is None:
        return None
    if not items:
        f["conditions"].problem("needs at least one condition")
        return None
    conditions: list[_Condition | _Ref] = []
    names: dict[str, int] = {}
    for item in items:
        cond = _condition_entry(item)
        if cond is None:
            continue
        if isinstance(cond, _Condition):
            if cond.name in names:
                item.problem(f"duplicate condition name {cond.name!r} (first on line {names[cond.name]})")
            names.setdefault(cond.name, item.line)
        conditions.append(cond)
    if meta.name is None:
        return None
    return _Policy(name=meta.name, conditions=tuple(conditions), min_events=min_events, hold_s=hold_s)


def _condition_entry(item: Node) -> _Condition | _Ref | None:
    """One entry of ``spec.conditions``: ``{conditionRef: name}`` or an inline AlertCondition."""
    if isinstance(item.node, yaml.MappingNode) and any(
        getattr(k, "value", None) == "conditionRef" for k, _ in item.node.value
    ):
        f = item.fields(required=("conditionRef",))
        if f and "conditionRef" in f and (ref := f["conditionRef"].name()) is not None:
            return _Ref(ref, f["conditionRef"])
        return None
    inline = _inline_document(item, "AlertCondition", annotations=())
    if inline is None:
        return None
    meta, spec = inline
    return _parse_condition(meta.name or "", spec)


def _inline_document(node: Node, kind: str, *, annotations: tuple[str, ...]) -> tuple[_Meta, Node] | None:
    """A document written inside another: ``metadata`` and ``spec``; ``apiVersion`` and ``kind`` optional."""
    f = node.fields(required=("metadata", "spec"), optional=("apiVersion", "kind"))
    if f is None:
        return None
    if "apiVersion" in f and (api := f["apiVersion"].text()) is not None and api != API_VERSION:
        f["apiVersion"].problem(f"unsupported apiVersion {api!r}: expected {API_VERSION!r}")
    if "kind" in f:
        f["kind"].choice((kind,))
    meta = _metadata(f["metadata"], annotations) if "metadata" in f else None
    if "spec" not in f:
        return None
    # Without a valid name (already reported) the spec is still checked.
    return meta or _NO_META, f["spec"]


def _tuning(annotations: Mapping[str, Node]) -> tuple[int | None, int | None]:
    """``slo-stream/min-events`` (int >= 1) and ``slo-stream/hold`` (a duration, 0s allowed)."""
    min_events: int | None = None
    hold_s: int | None = None
    if (node := annotations.get(ANN_MIN_EVENTS)) is not None:
        if node.has_tag("str") and str(node.node.value).strip().isdigit():
            min_events = int(str(node.node.value))
        else:
            min_events = node.integer()
        if min_events is not None and min_events < 1:
            node.problem(f"must be an integer >= 1, not {min_events}")
            min_events = None
    if (node := annotations.get(ANN_HOLD)) is not None:
        hold_s = node.duration(allow_zero=True)
    return min_events, hold_s


def _gate(annotations: Mapping[str, Node]) -> tuple[float | None, int | None, bool | None] | None:
    """The ``slo-stream/gate-*`` annotations: budget floor (0..1), stale-after (a duration), fail-open
    (true/false). None when one is invalid (reported)."""
    floor: float | None = None
    stale: int | None = None
    fail_open: bool | None = None
    ok = True
    if (node := annotations.get(ANN_GATE_BUDGET_FLOOR)) is not None:
        text = str(node.node.value).strip()
        try:
            floor = float(text)
        except ValueError:
            floor = None
        if floor is None or not 0.0 <= floor <= 1.0:
            node.problem(f"must be a number in 0..1 (the share of the error budget), not {text[:40]!r}")
            floor, ok = None, False
    if (node := annotations.get(ANN_GATE_STALE_AFTER)) is not None:
        stale = node.duration()
        ok = ok and stale is not None
    if (node := annotations.get(ANN_GATE_FAIL_OPEN)) is not None:
        text = str(node.node.value).strip().lower()
        if text not in ("true", "false"):
            node.problem(f"must be true or false, not {text[:40]!r}")
            ok = False
        else:
            fail_open = text == "true"
    return (floor, stale, fail_open) if ok else None


def _parse_slo(root: Node, meta: _Meta, spec: Node) -> _SloDraft | None:
    """An SLO spec, with its references still unresolved."""
    f = spec.fields(
        required=("service", "timeWindow", "budgetingMethod", "objectives"),
        optional=("description", "indicator", "indicatorRef", "alertPolicies"),
    )
    if f is None:
        return None
    description = (f["description"].text() or "") if "description" in f else ""
    service = f["service"].name() if "service" in f else None

    indicator: Indicator | _Ref | None = None
    if ("indicator" in f) == ("indicatorRef" in f):
        spec.problem("needs exactly one of 'indicator' (inline SLI) or 'indicatorRef' (an SLI name)")
    elif "indicatorRef" in f:
        if (ref := f["indicatorRef"].name()) is not None:
            indicator = _Ref(ref, f["indicatorRef"])
    elif (inline := _inline_document(f["indicator"], "SLI", annotations=())) is not None:
        sli_meta, sli_spec = inline
        indicator = _parse_sli(sli_meta.name or "", sli_spec)
        if sli_meta.name is None:
            indicator = None

    window_s = _time_window(f["timeWindow"]) if "timeWindow" in f else None
    if "budgetingMethod" in f and (method := f["budgetingMethod"].text()) is not None:
        if method in ("Timeslices", "RatioTimeslices"):
            f["budgetingMethod"].problem(f"budgetingMethod {method} is not supported yet: use Occurrences")
        elif method != "Occurrences":
            f["budgetingMethod"].problem(f"must be Occurrences, not {method!r}")
    objective = _objective(f["objectives"]) if "objectives" in f else None

    policy: _Policy | _Ref | None = None
    if "alertPolicies" in f:
        items = f["alertPolicies"].items()
        if items is not None and len(items) != 1:
            f["alertPolicies"].problem(
                f"must hold exactly one policy, not {len(items)}: put every condition in one AlertPolicy, "
                "or leave alertPolicies out for the default (SRE Workbook) policy"
            )
        elif items:
            policy = _policy_entry(items[0])

    min_events, hold_s = _tuning(meta.annotations)
    group_by = _group_by(meta.annotations.get(ANN_GROUP_BY))
    runbook = _url(meta.annotations.get(ANN_RUNBOOK))
    dashboard = _url(meta.annotations.get(ANN_DASHBOARD))
    gate = _gate(meta.annotations)

    if (
        gate is None
        or meta.name is None
        or service is None
        or indicator is None
        or window_s is None
        or objective is None
        or group_by is None
        or runbook is None
        or dashboard is None
        or ("alertPolicies" in f and policy is None)
    ):
        return None
    return _SloDraft(
        gate=gate,
        name=meta.name,
        source=root.doc.file,
        service=_Ref(service, f["service"]),
        indicator=indicator,
        window_s=window_s,
        objective=objective,
        policy=policy,
        min_events=min_events,
        hold_s=hold_s,
        group_by=group_by,
        runbook_url=runbook,
        dashboard_url=dashboard,
        labels=MappingProxyType(dict(meta.labels)),
        description=description,
    )


def _time_window(node: Node) -> int | None:
    """Exactly one rolling window between 1h and 90d; its duration in seconds."""
    items = node.items()
    if items is None:
        return None
    if len(items) != 1:
        node.problem(f"must hold exactly one window, not {len(items)}")
        return None
    item = items[0]
    f = item.fields(required=("duration", "isRolling"), optional=("calendar",))
    if f is None:
        return None
    calendar = "calendar windows are not supported yet: use isRolling: true"
    if "calendar" in f:
        f["calendar"].problem(calendar)
    if "isRolling" in f and f["isRolling"].flag() is False:
        f["isRolling"].problem(calendar)
    if "duration" not in f or (window_s := f["duration"].duration()) is None:
        return None
    if not MIN_SLO_WINDOW_S <= window_s <= MAX_SLO_WINDOW_S:
        f["duration"].problem(
            f"the SLO window must be between {format_duration(MIN_SLO_WINDOW_S)} and "
            f"{format_duration(MAX_SLO_WINDOW_S)}, not {format_duration(window_s)}"
        )
        return None
    return window_s


def _objective(node: Node) -> _Objective | None:
    """Exactly one objective: ``target`` in (0, 1) or ``targetPercent`` in (0, 100); ``op``/``value``."""
    items = node.items()
    if items is None:
        return None
    if len(items) != 1:
        node.problem(f"must hold exactly one objective, not {len(items)}")
        return None
    item = items[0]
    timeslices = "time slices are not supported yet (budgetingMethod Occurrences)"
    composite = "composite SLOs are not supported yet"
    f = item.fields(
        optional=("displayName", "target", "targetPercent", "op", "value"),
        unsupported={
            "timeSliceTarget": timeslices,
            "timeSliceWindow": timeslices,
            "indicator": composite,
            "indicatorRef": composite,
            "compositeWeight": composite,
        },
    )
    if f is None:
        return None
    if "displayName" in f:
        f["displayName"].text()
    target: float | None = None
    if ("target" in f) == ("targetPercent" in f):
        item.problem("needs exactly one of 'target' (e.g. 0.999) or 'targetPercent' (e.g. 99.9)")
    elif "target" in f:
        target = f["target"].number()
        if target is not None and not 0 < target < 1:
            f["target"].problem(f"target must be between 0 and 1 (exclusive), e.g. 0.999, not {target:g}")
            target = None
    else:
        percent = f["targetPercent"].number()
        if percent is not None and not 0 < percent < 100:
            f["targetPercent"].problem(
                f"targetPercent must be between 0 and 100 (exclusive), e.g. 99.9, not {percent:g}"
            )
        elif percent is not None:
            target = round(percent / 100, 10)  # 99.9 / 100 is 0.9990000000000001 in floats
    op_at = f.get("op")
    if op_at is not None and (op := op_at.text()) is not None and op != "lte":
        op_at.problem(f"op must be lte (a request is good when latency_ms <= value), not {op!r}")
    value: float | None = None
    if "value" in f:
        value = f["value"].number()
        if value is not None and value <= 0:
            f["value"].problem(f"value (a latency in ms) must be > 0, not {value:g}")
            value = None
    if target is None or ("value" in f and value is None):
        return None
    return _Objective(target=target, op_at=op_at, value=value, value_at=f.get("value"), at=item)


def _policy_entry(item: Node) -> _Policy | _Ref | None:
    """The entry of ``spec.alertPolicies``: a name, ``{alertPolicyRef: name}`` or an inline AlertPolicy."""
    if isinstance(item.node, yaml.ScalarNode):
        ref = item.name()
        return _Ref(ref, item) if ref is not None else None
    if isinstance(item.node, yaml.MappingNode) and any(
        getattr(k, "value", None) == "alertPolicyRef" for k, _ in item.node.value
    ):
        f = item.fields(required=("alertPolicyRef",))
        if f and "alertPolicyRef" in f and (ref := f["alertPolicyRef"].name()) is not None:
            return _Ref(ref, f["alertPolicyRef"])
        return None
    inline = _inline_document(item, "AlertPolicy", annotations=(ANN_MIN_EVENTS, ANN_HOLD))
    if inline is None:
        return None
    return _parse_policy(*inline)


def _group_by(node: Node | None) -> tuple[str, ...] | None:
    """``slo-stream/group-by``: a comma list of dimensions, kept in :data:`DIMENSIONS` order."""
    if node is None:
        return DIMENSIONS
    if node.has_tag("str") and not str(node.node.value).strip():
        return ()  # explicitly empty: one series per SLO
    text = node.text()
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    bad = [n for n in names if n not in DIMENSIONS]
    if bad:
        node.problem(
            f"unknown dimension {bad[0]!r}{_did_you_mean(bad[0], DIMENSIONS)}: "
            f"use a comma list of {', '.join(DIMENSIONS)}"
        )
        return None
    if len(set(names)) != len(names):
        node.problem("lists a dimension twice")
        return None
    return tuple(d for d in DIMENSIONS if d in names)


def _url(node: Node | None) -> str | None:
    """An absolute http(s) URL, or ``""`` when the annotation is absent."""
    if node is None:
        return ""
    text = node.text()
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in text):
        node.problem(f"expected an absolute http(s) URL without spaces, not {text!r}")
        return None
    return text


# --------------------------------------------------------------------------------------------------
# Resolving references


def _resolve_slo(draft: _SloDraft, registry: _Registry) -> Slo | None:
    """The SLO with its service, indicator and policy looked up; ``None`` after reporting a problem."""
    ok = registry.lookup("Service", draft.service)[0]

    indicator: Indicator | None
    if isinstance(draft.indicator, _Ref):
        found, value = registry.lookup("SLI", draft.indicator)
        indicator = value if isinstance(value, Indicator) else None
        ok = ok and found
    else:
        indicator = draft.indicator
    if indicator is not None:
        indicator = _apply_objective(indicator, draft.objective)

    policy = _resolve_policy(draft, registry)
    if not ok or indicator is None or policy is None:
        return None
    return Slo(
        name=draft.name,
        service=draft.service.name,
        objective=draft.objective.target,
        window_s=draft.window_s,
        indicator=indicator,
        policy=policy,
        group_by=draft.group_by,
        description=draft.description,
        runbook_url=draft.runbook_url,
        dashboard_url=draft.dashboard_url,
        labels=draft.labels,
        source=draft.source,
        gate_budget_floor=draft.gate[0],
        gate_stale_after_s=draft.gate[1],
        gate_fail_open=draft.gate[2],
    )


def _apply_objective(indicator: Indicator, objective: _Objective) -> Indicator | None:
    """Threshold SLIs take ``op: lte`` and the latency ``value`` from the objective; ratios neither."""
    if indicator.kind is SliKind.RATIO:
        extra = [n for n in (objective.op_at, objective.value_at) if n is not None]
        for node in extra:
            node.problem(
                f"{node.path.rsplit('.', 1)[-1]} applies to threshold SLIs only; "
                f"SLI {indicator.name!r} is a ratio"
            )
        return None if extra else indicator
    ok = True
    for name, at in (("op", objective.op_at), ("value", objective.value_at)):
        if at is None:
            hint = "lte" if name == "op" else "a latency in ms, e.g. 500"
            objective.at.missing(name, f": SLI {indicator.name!r} is a threshold SLI ({name}: {hint})")
            ok = False
    if not ok or objective.value is None:
        return None
    return replace(indicator, latency_threshold_ms=objective.value)


def _resolve_policy(draft: _SloDraft, registry: _Registry) -> AlertPolicy | None:
    """The SLO's policy (the default one when none is given), with the SLO's own tuning applied."""
    source = draft.policy
    if source is None:
        policy = default_policy(draft.window_s)
    else:
        if isinstance(source, _Ref):
            _, value = registry.lookup("AlertPolicy", source)
            if not isinstance(value, _Policy):
                return None
            source = value
        windows: list[BurnWindow] = []
        ok = True
        for cond in source.conditions:
            if isinstance(cond, _Ref):
                _, value = registry.lookup("AlertCondition", cond)
                if not isinstance(value, _Condition):
                    ok = False
                    continue
                cond = value
            if cond.window.long_s > draft.window_s:
                cond.long_at.problem(
                    f"lookbackWindow {format_duration(cond.window.long_s)} is longer than the "
                    f"{format_duration(draft.window_s)} timeWindow of SLO {draft.name!r} ({draft.source})"
                )
                ok = False
            windows.append(cond.window)
        if not ok:
            return None
        policy = AlertPolicy(name=source.name, windows=tuple(windows))
        policy = _tuned(policy, source.min_events, source.hold_s)
    return _tuned(policy, draft.min_events, draft.hold_s)


def _tuned(policy: AlertPolicy, min_events: int | None, hold_s: int | None) -> AlertPolicy:
    if min_events is not None:
        policy = replace(policy, min_events=min_events)
    if hold_s is not None:
        policy = replace(policy, hold_s=hold_s)
    return policy
