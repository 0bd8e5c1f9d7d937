"""SLOs -> Prometheus recording and alerting rules, as data: the fallback path.

The rules implement the same multi-window multi-burn-rate policy as the stream (SRE Workbook, ch. 5)
over the counters every worker exports (:data:`~streams.core.conventions.M_SLI_EVENTS` and
:data:`~streams.core.conventions.M_SLI_BAD_EVENTS`, summed over instances), named as Sloth names them
(:mod:`streams.render.promql`):

- ``slo:sli_error:ratio_rate<window>`` per SLO and per distinct window of its policy, with the labels
  ``sloth_id``, ``sloth_service``, ``sloth_slo``, ``sloth_window``, the SLO's own labels, and the
  series labels (``slo``, ``service``, ``cluster``, ``region``, ``platform``);
- ``slo:objective:ratio``, ``slo:error_budget:ratio`` and ``slo:time_period:days`` per SLO;
- one alert (:data:`~streams.render.promql.ALERT_NAME`) per SLO and severity: for any of the
  severity's conditions, the error ratio over the long **and** the short window exceed
  ``factor x (1 - objective)``, and the long window holds at least the SLO's ``min_events`` events (as
  in the stream, low traffic does not alert). The policy's hold time becomes ``keep_firing_for``
  (Prometheus >= 2.42): the alert resolves once its condition has been false that long. There is no
  ``for:``: the short window already confirms the burn, as in the Workbook.

The streaming path's liveness, for Alertmanager to page once per burn (docs/fallback.md):

- one :data:`~streams.render.promql.HEARTBEAT_ALERT` per SLO series, always firing while a worker that
  is ``up`` reports an evaluation of that series newer than :attr:`Liveness.fresh_s` and a notifier
  consumes ``slo.alerts``; its labels are the series labels, so the Alertmanager config's inhibition
  mutes the fallback's alerts of exactly the series the streaming path covers. A dead worker's series
  lose their heartbeat (Prometheus marks a failed target's series stale at once), after
  ``keep_firing_for`` :attr:`Liveness.grace_s` (a rebalance or a rolling restart hands them over first);
- :data:`~streams.render.promql.DOWN_ALERT` (``severity: page``, one rule per ``cause``) in a group of its
  own: no worker exports metrics, no notifier consumes, or no series anywhere has a fresh evaluation,
  for :attr:`Liveness.down_for_s`;
- :data:`~streams.render.promql.SERIES_LIMIT_ALERT` (``severity: ticket``, per SLO) in the same group:
  records of an SLO were refused in the last 10 minutes for want of room for a new series.

Each SLO gets one rule group, recordings first: rules of a group run in order at the same
timestamp, so the alerts read the recordings of the same evaluation (Sloth's separate groups lag
by up to one interval).

Output is deterministic: SLOs sorted by name, windows by length, keys in a fixed order. Pure:
:mod:`streams.render.writer` serialises what :func:`prometheus_rules` returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams.core.conventions import (
    DIMENSIONS,
    L_SERVICE,
    L_SEVERITY,
    L_SLO,
    M_ASSIGNED_PARTITIONS,
    M_LAST_EVALUATION,
    M_NOTIFIER_CONSUMING,
    M_SERIES_REFUSED,
    M_SLI_BAD_EVENTS,
    M_SLI_EVENTS,
    SERIES_LABELS,
)
from streams.core.model import DAY, MINUTE, BurnWindow, Severity, Slo, format_duration
from streams.render.promql import (
    A_DASHBOARD,
    A_DESCRIPTION,
    A_RUNBOOK,
    A_SUMMARY,
    ALERT_NAME,
    DOWN_ALERT,
    ERROR_BUDGET_RECORD,
    GROUP_PREFIX,
    HEARTBEAT_ALERT,
    L_CAUSE,
    L_SLOTH_ID,
    L_SLOTH_SERVICE,
    L_SLOTH_SEVERITY,
    L_SLOTH_SLO,
    L_SLOTH_WINDOW,
    OBJECTIVE_RECORD,
    SERIES_LIMIT_ALERT,
    SLI_ERROR_RECORD,
    STREAMING_PATH_GROUP,
    TIME_PERIOD_RECORD,
    checked_slos,
    error_budget,
    num,
    promql_string,
)

_BY = f"sum by ({', '.join(SERIES_LABELS)})"
_MAX_BY = f"max by ({', '.join(SERIES_LABELS)})"


@dataclass(frozen=True, kw_only=True)
class Liveness:
    """When Prometheus takes the streaming path for alive (see the module's docstring).

    ``fresh_s`` must exceed the workers' ``SLO_STREAM_ALLOWED_LATENESS`` plus a step: a final evaluation
    runs at the watermark, that far behind the newest event. ``grace_s`` covers a partition's handover
    (session timeout and table recovery); ``down_for_s`` a worker's or the notifier's restart.
    """

    fresh_s: int = 10 * MINUTE
    grace_s: int = 2 * MINUTE
    down_for_s: int = 5 * MINUTE

    def __post_init__(self) -> None:
        for name in ("fresh_s", "grace_s", "down_for_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"Liveness.{name} must be at least 1 second")


DEFAULT_LIVENESS = Liveness()


def prometheus_rules(slos: Iterable[Slo], *, liveness: Liveness = DEFAULT_LIVENESS) -> dict[str, Any]:
    """The Prometheus rule file (``rule_files``) for ``slos`` as data, ``{"groups": [...]}``: one group
    per SLO, sorted by name, then the streaming path's group (:data:`STREAMING_PATH_GROUP`).

    Raises ValueError for a name or label that does not match the conventions (the spec loader
    refuses them already; this guards what reaches PromQL and YAML).
    """
    groups = [_group(slo, liveness) for slo in checked_slos(slos)]
    return {"groups": [*groups, _streaming_path_group(liveness)]}


def _group(slo: Slo, liveness: Liveness) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [_sli_record(slo, w) for w in _windows(slo)]
    rules += _meta_records(slo)
    severities = [sev for sev in Severity if any(w.severity is sev for w in slo.policy.windows)]
    rules += [_alert(slo, sev) for sev in severities]
    rules.append(_heartbeat(slo, liveness))
    return {"name": GROUP_PREFIX + slo.name, "rules": rules}


def _windows(slo: Slo) -> list[int]:
    """Every distinct window of the SLO's policy, shortest first."""
    return sorted({w for b in slo.policy.windows for w in (b.long_s, b.short_s)})


def _sloth_labels(slo: Slo) -> dict[str, str]:
    return {L_SLOTH_ID: slo.name, L_SLOTH_SERVICE: slo.service, L_SLOTH_SLO: slo.name}


def _own_labels(slo: Slo) -> dict[str, str]:
    return {k: slo.labels[k] for k in sorted(slo.labels)}


def _selector(metric: str, slo: Slo) -> str:
    return f"{metric}{{slo={promql_string(slo.name)}}}"


def _sli_record(slo: Slo, window_s: int) -> dict[str, Any]:
    w = format_duration(window_s)
    expr = (
        f"{_BY} (rate({_selector(M_SLI_BAD_EVENTS, slo)}[{w}]))\n"
        f"/\n"
        f"{_BY} (rate({_selector(M_SLI_EVENTS, slo)}[{w}]))\n"
    )
    labels = {**_sloth_labels(slo), L_SLOTH_WINDOW: w, **_own_labels(slo)}
    return {"record": SLI_ERROR_RECORD.format(window=w), "expr": expr, "labels": labels}


def _meta_records(slo: Slo) -> list[dict[str, Any]]:
    labels = {**_sloth_labels(slo), "slo": slo.name, "service": slo.service, **_own_labels(slo)}
    return [
        {"record": OBJECTIVE_RECORD, "expr": f"vector({num(slo.objective)})", "labels": labels},
        {"record": ERROR_BUDGET_RECORD, "expr": f"vector({num(error_budget(slo))})", "labels": labels},
        {"record": TIME_PERIOD_RECORD, "expr": f"vector({num(slo.window_s / DAY)})", "labels": labels},
    ]


def _condition(slo: Slo, burn: BurnWindow) -> str:
    """Both windows burn faster than the factor, with enough events in the long window."""
    threshold = f"({num(burn.factor)} * {num(error_budget(slo))})"
    sloth_id = promql_string(slo.name)

    def over(window_s: int) -> str:
        record = SLI_ERROR_RECORD.format(window=format_duration(window_s))
        return f"{_MAX_BY} ({record}{{{L_SLOTH_ID}={sloth_id}}} > {threshold})"

    events = f"{_BY} (increase({_selector(M_SLI_EVENTS, slo)}[{format_duration(burn.long_s)}]))"
    return (
        f"(\n"
        f"  {over(burn.long_s)}\n"
        f"  and\n"
        f"  {over(burn.short_s)}\n"
        f"  and\n"
        f"  ({events} >= {slo.min_events})\n"
        f")"
    )


def _alert(slo: Slo, severity: Severity) -> dict[str, Any]:
    burns = sorted(
        (w for w in slo.policy.windows if w.severity is severity), key=lambda w: (w.long_s, w.short_s, w.factor)
    )
    expr = "\nor\n".join(_condition(slo, b) for b in burns) + "\n"
    labels = {
        L_SEVERITY: severity.value,
        **_sloth_labels(slo),
        L_SLOTH_SEVERITY: severity.value,
        **_own_labels(slo),
    }
    conditions = ", or ".join(
        f"faster than {num(b.factor)}x over both {format_duration(b.long_s)} and {format_duration(b.short_s)}"
        for b in burns
    )
    where = ", ".join(f"{d}={{{{ $labels.{d} }}}}" for d in DIMENSIONS)
    described = slo.description.rstrip(".") + ". " if slo.description else ""
    annotations = {
        A_SUMMARY: f"{severity.value}: SLO {slo.name} ({slo.service}) burns its error budget too fast; {where}",
        A_DESCRIPTION: (
            _template_text(described)
            + f"Objective {num(slo.objective * 100)}% over {format_duration(slo.window_s)}. "
            f"Fires when the error budget burns {conditions}, with at least {slo.min_events} events in "
            f"the long window. Error ratio over the long window: {{{{ $value | humanizePercentage }}}}."
        ),
    }
    if slo.runbook_url:
        annotations[A_RUNBOOK] = _template_text(slo.runbook_url)
    if slo.dashboard_url:
        annotations[A_DASHBOARD] = _template_text(slo.dashboard_url)
    rule: dict[str, Any] = {"alert": ALERT_NAME, "expr": expr}
    if slo.policy.hold_s > 0:
        rule["keep_firing_for"] = format_duration(slo.policy.hold_s)
    rule["labels"] = labels
    rule["annotations"] = annotations
    return rule


_DELIMS = re.compile(r"\{\{|\}\}")


def _template_text(text: str) -> str:
    """Free text inside an annotation (a Go template): ``{{`` and ``}}`` print as themselves."""
    return _DELIMS.sub(lambda m: '{{ "' + m.group(0) + '" }}', text)


# ---- the streaming path's liveness -----------------------------------------------------------------


def _heartbeat(slo: Slo, liveness: Liveness) -> dict[str, Any]:
    """Fires for each series of ``slo`` that an ``up`` worker evaluated within ``fresh_s``, while a
    notifier consumes: the streaming path pages for that series, so the fallback keeps quiet."""
    fresh = (
        f"{_MAX_BY} (\n"
        f"  {_selector(M_LAST_EVALUATION, slo)}\n"
        f"  and on (job, instance) (up == 1)\n"
        f")\n"
        f"> time() - {liveness.fresh_s}\n"
    )
    expr = f"(\n{_indent(fresh)})\nand on ()\n(max({M_NOTIFIER_CONSUMING}) == 1)\n"
    return {
        "alert": HEARTBEAT_ALERT,
        "expr": expr,
        "keep_firing_for": format_duration(liveness.grace_s),
        "labels": {**_sloth_labels(slo), **_own_labels(slo)},
        "annotations": {
            A_SUMMARY: f"The streaming path evaluates SLO {slo.name} for "
                       + ", ".join(f"{d}={{{{ $labels.{d} }}}}" for d in DIMENSIONS)
                       + f": it pages; the fallback's {ALERT_NAME} of this series is muted.",
            A_DESCRIPTION: (
                f"Always firing while a worker reports an evaluation of the series newer than "
                f"{format_duration(liveness.fresh_s)} and a notifier consumes slo.alerts. Routed to no "
                f"receiver; Alertmanager inhibits {ALERT_NAME} with the same slo, service, cluster, region "
                f"and platform while it fires. It stops {format_duration(liveness.grace_s)} after the "
                "worker owning the series stops reporting it (docs/fallback.md)."
            ),
        },
    }


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def _streaming_path_group(liveness: Liveness) -> dict[str, Any]:
    """The page of the streaming path being down: one rule per cause, one Alertmanager group for all."""
    fresh = format_duration(liveness.fresh_s)
    causes = (
        ("workers_absent", f"absent({M_ASSIGNED_PARTITIONS})\n",
         "No slo-stream worker exports metrics (all down, or Prometheus cannot scrape them)."),
        ("notifier_absent", f"absent({M_NOTIFIER_CONSUMING} == 1)\n",
         "No slo-stream notifier consumes slo.alerts (down, or its metrics port is not scraped): "
         "the workers' alerts reach no one."),
        ("evaluations_stale", f"time() - max({M_LAST_EVALUATION}) > {liveness.fresh_s}\n",
         f"No SLO series has an evaluation newer than {fresh}: the workers consume nothing (Kafka, "
         "a stuck consumer, a lag) or no playback traffic arrives at all."),
    )
    rules = [
        {
            "alert": DOWN_ALERT,
            "expr": expr,
            "for": format_duration(liveness.down_for_s),
            "labels": {L_SEVERITY: Severity.PAGE.value, L_CAUSE: cause},
            "annotations": {
                A_SUMMARY: f"page: the slo-stream streaming path is down ({cause}); the Prometheus fallback pages "
                           "SLO burns meanwhile",
                A_DESCRIPTION: (
                    f"{text} For {format_duration(liveness.down_for_s)} now. Every SLO series lost its "
                    f"{HEARTBEAT_ALERT}, so the fallback's {ALERT_NAME} alerts page (from the counters "
                    "Prometheus still has). Restore the streaming path: docs/fallback.md."
                ),
            },
        }
        for cause, expr, text in causes
    ]
    rules.append({
        "alert": SERIES_LIMIT_ALERT,
        "expr": f"sum by ({L_SLO}, {L_SERVICE}) (increase({M_SERIES_REFUSED}[10m])) > 0\n",
        "labels": {L_SEVERITY: Severity.TICKET.value},
        "annotations": {
            A_SUMMARY: "ticket: SLO {{ $labels.slo }} refuses records of new placements (series limit)",
            A_DESCRIPTION: (
                "{{ $value | humanize }} records of {{ $labels.service }} were dead-lettered (series_limit) in "
                "the last 10 minutes: the SLO holds SLO_STREAM_MAX_SERIES_PER_SLO series and none could give way "
                "(idle long enough, or untrusted for a trusted newcomer). The placements refused are on the "
                "pipeline-health dashboard "
                "(\"Series admission\"). Real placements: add them to SLO_STREAM_SERIES_ALLOW or raise the "
                "limit; junk: find the producer (docs/semantics.md, Limits)."
            ),
        },
    })
    return {"name": STREAMING_PATH_GROUP, "rules": rules}
