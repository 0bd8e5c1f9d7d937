"""What the generators share: the names of the generated series, labels and annotations, the checks
that keep an SLO's names safe in PromQL, YAML and Go templates, and PromQL string and number literals.

The rules (:mod:`streams.render.prometheus`), the Alertmanager config
(:mod:`streams.render.alertmanager`) and the dashboards (:mod:`streams.render.dashboards`) all quote
SLO names into PromQL through :func:`promql_string` and refuse what :func:`check_slo` refuses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from streams.core.conventions import DIMENSIONS, L_SEVERITY, LABEL_VALUE_RE, NAME_RE, SERIES_LABELS
from streams.core.model import Slo

ALERT_NAME = "SloErrorBudgetBurn"
GROUP_PREFIX = "slo-stream-"
# The streaming path's liveness, seen by Prometheus (docs/fallback.md): one always-firing heartbeat per
# SLO series the workers evaluate, which mutes the fallback's alerts of that series in Alertmanager, and
# the page of its own when the streaming path is down.
HEARTBEAT_ALERT = "SloStreamHeartbeat"
DOWN_ALERT = "SloStreamDown"
STREAMING_PATH_GROUP = "slo-stream:streaming-path"  # ":" is in no SLO name: no clash with a group of one
# A ticket when an SLO refused records for want of room for new series (docs/semantics.md, "Limits").
SERIES_LIMIT_ALERT = "SloStreamSeriesLimit"
L_CAUSE = "cause"  # of a DOWN_ALERT: workers_absent | notifier_absent | evaluations_stale
# Sloth's names (slok/sloth, internal/prometheus/conventions.go), so its dashboards and habits apply.
SLI_ERROR_RECORD = "slo:sli_error:ratio_rate{window}"
OBJECTIVE_RECORD = "slo:objective:ratio"
ERROR_BUDGET_RECORD = "slo:error_budget:ratio"
TIME_PERIOD_RECORD = "slo:time_period:days"
L_SLOTH_ID = "sloth_id"
L_SLOTH_SERVICE = "sloth_service"
L_SLOTH_SLO = "sloth_slo"
L_SLOTH_WINDOW = "sloth_window"
L_SLOTH_SEVERITY = "sloth_severity"
# Annotations of the alerts, read back by the Alertmanager config.
A_SUMMARY = "summary"
A_DESCRIPTION = "description"
A_RUNBOOK = "runbook"
A_DASHBOARD = "dashboard"

_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Labels the generated rules set themselves; an SLO label must not override them.
_OWN_LABELS = frozenset(
    {*SERIES_LABELS, L_SEVERITY, "window", "alertname", L_CAUSE, L_SLOTH_ID, L_SLOTH_SERVICE, L_SLOTH_SLO,
     L_SLOTH_WINDOW, L_SLOTH_SEVERITY}
)


def check_slo(slo: Slo) -> None:
    """Raise ValueError unless every name and label of ``slo`` is safe in PromQL, YAML and templates."""
    for what, name in (("SLO name", slo.name), ("service", slo.service)):
        if not NAME_RE.match(name):
            raise ValueError(f"{what} {name!r} does not match {NAME_RE.pattern}")
    bad_dims = [d for d in slo.group_by if d not in DIMENSIONS]
    if bad_dims:
        raise ValueError(f"SLO {slo.name!r}: unknown group-by dimensions {bad_dims}")
    for key, value in slo.labels.items():
        if not _LABEL_NAME_RE.match(key) or key.startswith("__") or key in _OWN_LABELS:
            raise ValueError(f"SLO {slo.name!r}: label name {key!r} is not allowed")
        if not LABEL_VALUE_RE.match(value):
            raise ValueError(f"SLO {slo.name!r}: label {key}={value!r} does not match {LABEL_VALUE_RE.pattern}")
    if not 0 < slo.objective < 1:
        raise ValueError(f"SLO {slo.name!r}: objective {slo.objective} is not between 0 and 1")
    if not slo.policy.windows:
        raise ValueError(f"SLO {slo.name!r}: policy {slo.policy.name!r} has no conditions")
    for w in slo.policy.windows:
        if not (0 < w.short_s < w.long_s and math.isfinite(w.factor) and w.factor > 0):
            raise ValueError(f"SLO {slo.name!r}: bad condition {w}")


def checked_slos(slos: Iterable[Slo]) -> list[Slo]:
    """``slos`` sorted by name, each passed through :func:`check_slo`; ValueError for two with one name."""
    ordered = sorted(slos, key=lambda s: s.name)
    names = [s.name for s in ordered]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate SLO names: {sorted({n for n in names if names.count(n) > 1})}")
    for slo in ordered:
        check_slo(slo)
    return ordered


_PROMQL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal."""
    if any(ord(c) < 0x20 and c not in _PROMQL_ESCAPES for c in value):
        raise ValueError(f"control character in {value!r}")
    return '"' + "".join(_PROMQL_ESCAPES.get(c, c) for c in value) + '"'


def num(x: float) -> str:
    """A number as PromQL and people read it: ``14.4``, ``0.001``, ``30``."""
    return format(x, ".12g")


def error_budget(slo: Slo) -> float:
    """The allowed error ratio, ``1 - objective``, without float noise."""
    return round(1.0 - slo.objective, 12)  # 1 - 0.999 is 0.0010000000000000009 in floats
