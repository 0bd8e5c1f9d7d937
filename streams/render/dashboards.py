"""The on-call Grafana dashboards, generated from the SLO specs (``slo-stream generate`` writes them
under ``dashboards/_gen/``).

Four kinds, each a plain JSON-ready dict built with grafana-foundation-sdk (Grafana 11.6):

- **SLO overview** (uid ``slo-stream-overview``): every SLO series with its alert state, budget left,
  objective and burn rate over each window of the policies, worst first; variables service, cluster,
  platform; each row links to the service's detail dashboard; a catalog of the SLOs with their
  runbooks.
- **SLO detail**, one per service (uid ``slo-<service>``, the URL the specs' ``slo-stream/dashboard``
  annotation names): the suspects of its firing alerts and its recent rollouts; then per SLO the
  budget left, the alert state over time, one graph per alert condition of the SLO's own policy with
  its threshold drawn, the budget over the SLO window, the bad ratio against the allowed one, and the
  event rates. Rollouts are drawn as annotations at their start time.
- **Migration** (uid ``slo-stream-migration``): per service, the error ratio on kubernetes against
  legacy, the share of traffic on kubernetes, and the gate's decisions over time.
- **Pipeline health** (uid ``slo-stream-pipeline``): workers and partitions, records/s, consumer lag,
  dead letters by reason, late records, evaluation and batch durations, the HTTP API, Kubernetes
  records, and the notifier's PagerDuty deliveries and retries.

Every query reads a metric that the workers (streams/adapters/metrics.py) or the notifier export,
named in :mod:`streams.core.conventions`; tests/integration/test_dashboard_queries.py runs each one
against a real Prometheus. Output is deterministic: services and SLOs sorted by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat, statetimeline, table, text, timeseries
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import text as text_m

from streams.core.conventions import (
    M_ALERT_FIRING,
    M_ASSIGNED_PARTITIONS,
    M_BATCH_SECONDS,
    M_BUDGET_REMAINING,
    M_BURN_RATE,
    M_CONSUMER_LAG,
    M_DEAD_LETTERS,
    M_EVALUATION_SECONDS,
    M_EVALUATIONS,
    M_GATE_DECISIONS,
    M_HTTP_SECONDS,
    M_K8S_RECORDS,
    M_LAST_EVALUATION,
    M_MESSAGES,
    M_NOTIFIER_DELIVERIES,
    M_NOTIFIER_RETRIES,
    M_OBJECTIVE,
    M_OFFSET_REREADS,
    M_PROVISIONAL,
    M_RECORDS,
    M_ROLLOUT_STARTED,
    M_SERIES,
    M_SERIES_EVICTED,
    M_SERIES_LIMIT,
    M_SERIES_REFUSED,
    M_SERIES_REFUSED_RECENT,
    M_SLI_BAD_EVENTS,
    M_SLI_EVENTS,
    M_STATE_BYTES,
    M_SUSPECT_SCORE,
    PLATFORMS,
    REASON_LATE,
    SERIES_LABELS,
)
from streams.core.model import BurnWindow, Severity, SliKind, Slo, format_duration
from streams.render.grafana import (
    GRID_WIDTH,
    Board,
    datasource,
    link,
    prop,
    query,
    tagged_links,
    thresholds,
    transform,
    value_map,
)
from streams.render.promql import checked_slos, error_budget, num, promql_string
from streams.render.writer import DASHBOARD_NOTE

TAG = "slo-stream"
OVERVIEW_UID = "slo-stream-overview"
MIGRATION_UID = "slo-stream-migration"
PIPELINE_UID = "slo-stream-pipeline"
DETAIL_UID_PREFIX = "slo-"
MAX_UID_LENGTH = 40  # Grafana's limit on a dashboard uid
OVERVIEW_FILE = "slo-overview.json"
MIGRATION_FILE = "migration.json"
PIPELINE_FILE = "pipeline-health.json"

RATE = "$__rate_interval"
SERIES = list(SERIES_LABELS)  # slo, service, cluster, region, platform
DIMS = ["cluster", "region", "platform"]
DIMS_LEGEND = "{{cluster}} {{region}} {{platform}}"
PLATFORM_RE = "|".join(PLATFORMS)  # kubernetes|legacy: a grouped-away platform ("*") is no side

BURN_UNIT = "suffix:x"
PER_SECOND = "suffix:/s"
PER_MINUTE = "suffix:/min"
SEVERITY_COLOR = {Severity.PAGE: "red", Severity.TICKET: "orange"}
DECISION_COLORS = {"proceed": "green", "hold": "orange", "rollback": "red", "unknown": "text"}
ALERT_STATE = {"0": ("ok", "green"), "1": ("TICKET", "orange"), "2": ("PAGE", "red")}


def detail_uid(service: str) -> str:
    """The uid of a service's detail dashboard: ``slo-<service>`` (what ``/d/<uid>`` links name)."""
    uid = DETAIL_UID_PREFIX + service
    if len(uid) > MAX_UID_LENGTH:
        raise ValueError(
            f"service {service!r} is {len(service)} characters: its dashboard uid {uid!r} exceeds Grafana's "
            f"{MAX_UID_LENGTH}; use a service name of at most {MAX_UID_LENGTH - len(DETAIL_UID_PREFIX)} characters"
        )
    return uid


def detail_file(service: str) -> str:
    return f"slo-detail-{service}.json"


def dashboards(slos: Iterable[Slo]) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON model (plain data): the overview, one detail per service, the
    migration and the pipeline health dashboards. Raises ValueError for a name Grafana or PromQL
    cannot take (see :func:`detail_uid`, :func:`streams.render.promql.check_slo`)."""
    ordered = checked_slos(slos)
    by_service: dict[str, list[Slo]] = {}
    for slo in ordered:
        detail_uid(slo.service)
        by_service.setdefault(slo.service, []).append(slo)
    out = {OVERVIEW_FILE: overview(ordered)}
    for service in sorted(by_service):
        out[detail_file(service)] = service_detail(service, by_service[service])
    out[MIGRATION_FILE] = migration()
    out[PIPELINE_FILE] = pipeline_health()
    return out


# --------------------------------------------------------------------------------------------------
# PromQL


def _is(label: str, value: str) -> str:
    return f"{label}={promql_string(value)}"


def _var(label: str, variable: str) -> str:
    return f'{label}=~"${variable}"'


def _sel(metric: str, *matchers: str) -> str:
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def _by(agg: str, labels: Sequence[str], expr: str) -> str:
    return f"{agg} by ({', '.join(labels)}) ({expr})"


def _rate(metric: str, *matchers: str, window: str = RATE) -> str:
    return f"rate({_sel(metric, *matchers)}[{window}])"


def _increase(metric: str, *matchers: str, window: str = "$__range") -> str:
    return f"increase({_sel(metric, *matchers)}[{window}])"


def _pct(ratio: float) -> str:
    """``0.999`` -> ``99.9%``, ``0.02`` -> ``2%``."""
    return num(round(ratio * 100, 6)) + "%"


# --------------------------------------------------------------------------------------------------
# Panels


def _description(purpose: str) -> str:
    return f"{purpose} {DASHBOARD_NOTE}"


def _timeseries(title: str, description: str, targets: Sequence[prom_b.Dataquery], *, unit: str,
                no_value: str, steps: dash_b.ThresholdsConfig | None = None,
                threshold_style: common_m.GraphThresholdsStyleMode = common_m.GraphThresholdsStyleMode.OFF,
                soft_max: float | None = None, bars: bool = False, decimals: int | None = None,
                min_zero: bool = True) -> timeseries.Panel:
    panel = (
        timeseries.Panel().title(title).description(description).datasource(datasource()).unit(unit)
        .no_value(no_value)
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.PALETTE_CLASSIC))
        .thresholds(steps if steps is not None else thresholds("green"))
        .thresholds_style(common_b.GraphThresholdsStyleConfig().mode(threshold_style))
        .legend(common_b.VizLegendOptions().display_mode(common_m.LegendDisplayMode.TABLE)
                .placement(common_m.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"]))
        .tooltip(common_b.VizTooltipOptions().mode(common_m.TooltipDisplayMode.MULTI).sort(common_m.SortOrder.DESCENDING))
        .line_width(2).fill_opacity(10 if not bars else 80).show_points(common_m.VisibilityMode.NEVER)
        .span_nulls(False)
    )
    if bars:
        panel = (panel.draw_style(common_m.GraphDrawStyle.BARS)
                 .stacking(common_b.StackingConfig().mode(common_m.StackingMode.NORMAL)))
    if min_zero:
        panel = panel.axis_soft_min(0)
    if soft_max is not None:
        panel = panel.axis_soft_max(soft_max)
    if decimals is not None:
        panel = panel.decimals(decimals)
    for t in targets:
        panel = panel.with_target(t)
    return panel


def _stat(title: str, description: str, targets: Sequence[prom_b.Dataquery], *, unit: str, no_value: str,
          steps: dash_b.ThresholdsConfig, decimals: int | None = None, graph: bool = False) -> stat.Panel:
    panel = (
        stat.Panel().title(title).description(description).datasource(datasource()).unit(unit)
        .no_value(no_value).thresholds(steps)
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.THRESHOLDS))
        .color_mode(common_m.BigValueColorMode.BACKGROUND)
        .graph_mode(common_m.BigValueGraphMode.AREA if graph else common_m.BigValueGraphMode.NONE)
        .text_mode(common_m.BigValueTextMode.AUTO)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    for t in targets:
        panel = panel.with_target(t)
    return panel


def _table(title: str, description: str, targets: Sequence[prom_b.Dataquery], *, no_value: str,
           transformations: Sequence[dash_m.DataTransformerConfig]) -> table.Panel:
    panel = (
        table.Panel().title(title).description(description).datasource(datasource()).no_value(no_value)
        .filterable(True)
        .cell_height(common_m.TableCellHeight.SM).show_header(True)
        .thresholds(thresholds("text"))
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.THRESHOLDS))
    )
    for t in targets:
        panel = panel.with_target(t)
    for tr in transformations:
        panel = panel.with_transformation(tr)
    return panel


def _budget_steps() -> dash_b.ThresholdsConfig:
    """Budget left: overspent (below 0) red, the last quarter orange, else green."""
    return thresholds("red", (0, "orange"), (0.25, "green"))


def _color_text() -> dict[str, str]:
    return {"type": "color-text"}


def _color_background() -> dict[str, str]:
    return {"type": "color-background", "mode": "basic"}


def _fixed_color(color: str) -> dash_m.DynamicConfigValue:
    return prop("color", {"mode": "fixed", "fixedColor": color})


def _organize(*, rename: Mapping[str, str], order: Sequence[str],
              hide: Sequence[str] = ("Time",)) -> dash_m.DataTransformerConfig:
    return transform("organize", {
        "excludeByName": {name: True for name in hide},
        "indexByName": {name: i for i, name in enumerate(order)},
        "renameByName": dict(rename),
    })


def _sort(*fields: tuple[str, bool]) -> dash_m.DataTransformerConfig:
    """Sort table rows by ``(field, descending)`` pairs, the first deciding."""
    return transform("sortBy", {"fields": {}, "sort": [{"field": f, "desc": desc} for f, desc in fields]})


# --------------------------------------------------------------------------------------------------
# SLO overview


def _windows(slos: Sequence[Slo]) -> list[int]:
    """Every window of the SLOs' alert policies, shortest first."""
    return sorted({w for slo in slos for b in slo.policy.windows for w in (b.long_s, b.short_s)})


def _windowthresholds(slos: Sequence[Slo], window_s: int) -> dash_b.ThresholdsConfig:
    """Colours of a burn over ``window_s``: orange from the lowest ticket factor any SLO's policy
    applies to that window, red from the lowest page factor."""
    factors: dict[Severity, float] = {}
    for slo in slos:
        for b in slo.policy.windows:
            if window_s in (b.long_s, b.short_s):
                factors[b.severity] = min(factors.get(b.severity, b.factor), b.factor)
    steps: list[tuple[float, str]] = []
    page = factors.get(Severity.PAGE)
    ticket = factors.get(Severity.TICKET)
    if ticket is not None and (page is None or ticket < page):
        steps.append((ticket, SEVERITY_COLOR[Severity.TICKET]))
    if page is not None:
        steps.append((page, SEVERITY_COLOR[Severity.PAGE]))
    return thresholds("green", *steps)


def _conditions_text(slo: Slo) -> str:
    parts = []
    for sev in Severity:
        conds = [b for b in _conditions(slo) if b.severity is sev]
        if conds:
            parts.append(f"{sev.value} " + ", ".join(
                f"{num(b.factor)}x over {format_duration(b.long_s)}+{format_duration(b.short_s)}" for b in conds))
    return "; ".join(parts)


def _conditions(slo: Slo) -> list[BurnWindow]:
    order = {sev: i for i, sev in enumerate(Severity)}
    return sorted(slo.policy.windows, key=lambda b: (order[b.severity], b.long_s, b.short_s, b.factor))


def _md(text: str) -> str:
    """Free text inside a markdown table cell: it cannot end the cell or the row, nor open HTML."""
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
            .replace("<", "&lt;").replace(">", "&gt;"))


# Characters that would end a markdown link destination (or the table cell) early.
_MD_URL_ESCAPES = {ch: f"%{ord(ch):02X}" for ch in ' ()<>[]\\|"`'}


def _md_url(url: str) -> str:
    """A URL as a markdown link destination: the same address, percent-encoded where markdown reads."""
    return "".join(_MD_URL_ESCAPES.get(ch, ch) for ch in url)


def overview(slos: Sequence[Slo]) -> dict[str, Any]:
    """The SLO overview dashboard (see the module docstring)."""
    board = Board(
        uid=OVERVIEW_UID, title="SLO overview", tags=[TAG, "slo", "overview"], time_from="now-6h", refresh="30s",
        description=_description(
            "Every SLO series: alert state, error budget left and burn rates, worst first. A row links to its "
            "service's detail dashboard; the catalog at the bottom links to the runbooks."),
    )
    f = (_var("service", "service"), _var("cluster", "cluster"), _var("platform", "platform"))
    board.variable("service", label="Service", query=f"label_values({M_BUDGET_REMAINING}, service)",
                   description="Services with an SLO (as the workers report them).")
    board.variable("cluster", label="Cluster", query=f'label_values({_sel(M_BUDGET_REMAINING, f[0])}, cluster)',
                   description="Clusters of the selected services; * = an SLO that does not split by cluster.")
    board.variable("platform", label="Platform",
                   query=f'label_values({_sel(M_BUDGET_REMAINING, f[0], f[1])}, platform)',
                   description="kubernetes or legacy; * = an SLO that does not split by platform.")
    board.link(tagged_links("slo-stream dashboards", TAG))
    board.link(link("Migration", f"/d/{MIGRATION_UID}", tooltip="Kubernetes vs legacy, per service"))
    board.link(link("Pipeline health", f"/d/{PIPELINE_UID}", tooltip="Are the numbers here fresh and complete?",
                    keep_vars=False))

    board.row("Now")
    meaning = {Severity.PAGE: "a fast burn: someone is paged", Severity.TICKET: "a slow burn: a ticket"}
    for sev in Severity:
        expr = f"sum({_by('max', SERIES, _sel(M_ALERT_FIRING, _is('severity', sev.value), *f))})"
        board.panel(_stat(
            f"{sev.value.capitalize()}s firing",
            f"SLO series whose {sev.value} alert is firing now ({meaning[sev]}), as the workers committed it. "
            "The table below says which.",
            [query(expr, instant=True)], unit="none", decimals=0, no_value="no SLO series for these filters",
            steps=thresholds("green", (1, SEVERITY_COLOR[sev]))), w=6, h=4)
    board.panel(_stat(
        "Lowest error budget left",
        "The smallest share of error budget left over the SLO window among the selected series: 100% untouched, "
        "0% used up, below 0 overspent.",
        [query(f"min({_by('min', SERIES, _sel(M_BUDGET_REMAINING, *f))})", instant=True)],
        unit="percentunit", decimals=1, no_value="no SLO series for these filters", steps=_budget_steps()), w=6, h=4)
    board.panel(_stat(
        "Newest evaluation behind now",
        "How far the event time of the newest evaluation trails the wall clock. It trails by at least the allowed "
        "lateness (SLO_STREAM_ALLOWED_LATENESS, 120 s by default); more means records stopped arriving or the "
        "workers fall behind: see Pipeline health before trusting the numbers here.",
        [query(f"time() - max({_sel(M_LAST_EVALUATION, *f)})", instant=True)],
        unit="s", decimals=0, no_value="no evaluation yet", steps=thresholds("green", (300, "orange"), (900, "red"))),
        w=6, h=4)

    board.row("Every SLO series, worst first")
    board.panel(_overview_table(slos, f), w=GRID_WIDTH, h=12)

    board.row("SLOs: runbooks and detail dashboards")
    board.panel(_catalog(slos), w=GRID_WIDTH, h=4 + 2 * len(slos))
    return board.to_dict()


def _overview_table(slos: Sequence[Slo], f: Sequence[str]) -> table.Panel:
    windows = [format_duration(w) for w in _windows(slos)]
    alert = _by("max", SERIES, f"{_sel(M_ALERT_FIRING, _is('severity', Severity.PAGE.value), *f)} * 2 or "
                               f"{_sel(M_ALERT_FIRING, _is('severity', Severity.TICKET.value), *f)}")
    budget = _by("min", SERIES, _sel(M_BUDGET_REMAINING, *f))
    # The objective is per SLO; joined onto each series so that the merge keeps one row per series.
    objective = _by("max", SERIES, f"0 * {_sel(M_BUDGET_REMAINING, *f)} + on (slo, service) group_left "
                                   f"{_by('max', ['slo', 'service'], M_OBJECTIVE)}")
    targets = [query(alert, ref="alert", instant=True, table=True),
               query(budget, ref="budget", instant=True, table=True),
               query(objective, ref="objective", instant=True, table=True)]
    targets += [query(_by("max", SERIES, _sel(M_BURN_RATE, _is("window", w), *f)), ref=f"burn_{w}", instant=True,
                      table=True) for w in windows]
    rename = {"slo": "SLO", "service": "Service", "cluster": "Cluster", "region": "Region", "platform": "Platform",
              "Value #alert": "Alert", "Value #budget": "Budget left", "Value #objective": "Objective"}
    rename |= {f"Value #burn_{w}": f"Burn {w}" for w in windows}
    panel = _table(
        "SLO series: alert, budget left, burn rate per window",
        "One row per SLO series (SLO and the dimensions it splits by; * = not split). Alert: PAGE or TICKET while "
        "firing. Budget left over the SLO window: below 0 is overspent. Burn over a window = error ratio / allowed "
        "error ratio: 1x spends the budget exactly over the SLO window; orange and red from the lowest ticket and "
        "page factor a policy applies to that window (an alert needs both windows of a condition above its factor). "
        "Sorted: firing pages first, then tickets, then the least budget left. Click an SLO for its service's "
        "detail dashboard.",
        targets, no_value="No SLO series: are the workers scraped? See Pipeline health.",
        transformations=[
            transform("merge", {}),
            _sort(("Value #alert", True), ("Value #budget", False)),
            _organize(rename=rename, order=[*SERIES, "Value #alert", "Value #budget", "Value #objective",
                                            *(f"Value #burn_{w}" for w in windows)]),
        ],
    )
    detail = (f"/d/{DETAIL_UID_PREFIX}${{__data.fields.service}}?var-cluster=${{__data.fields.cluster}}"
              "&var-platform=${__data.fields.platform}&${__url_time_range}")
    detail_link = {"title": "Detail of ${__data.fields.service}: burn per window, suspects, rollouts", "url": detail}
    panel = panel.override_by_name("SLO", [prop("links", [detail_link])])
    panel = panel.override_by_name("Service", [prop("links", [detail_link])])
    panel = panel.override_by_name("Alert", [
        prop("mappings", [value_map(ALERT_STATE)]), prop("custom.cellOptions", _color_background()),
        prop("custom.align", "center"), prop("custom.width", 90)])
    panel = panel.override_by_name("Budget left", [
        prop("unit", "percentunit"), prop("decimals", 1), prop("thresholds", _budget_steps()),
        prop("custom.cellOptions", _color_text())])
    panel = panel.override_by_name("Objective", [prop("unit", "percentunit"), prop("decimals", 2)])
    for w, seconds in zip(windows, _windows(slos), strict=True):
        panel = panel.override_by_name(f"Burn {w}", [
            prop("unit", BURN_UNIT), prop("decimals", 1), prop("thresholds", _windowthresholds(slos, seconds)),
            prop("custom.cellOptions", _color_text())])
    return panel


def _catalog(slos: Sequence[Slo]) -> text.Panel:
    lines = [
        "| SLO | Service | Objective | Alerts (factor over long+short window) | Runbook | Detail |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for slo in slos:
        what = f"**{slo.name}**" + (f": {_md(slo.description)}" if slo.description else "")
        runbook = f"[runbook]({_md_url(slo.runbook_url)})" if slo.runbook_url else "none in the spec"
        lines.append(
            f"| {what} | {slo.service} | {_pct(slo.objective)} over {format_duration(slo.window_s)} | "
            f"{_md(_conditions_text(slo))} | {runbook} | [{slo.service}](/d/{detail_uid(slo.service)}) |")
    return (
        text.Panel().title("SLO catalog").mode(text_m.TextMode.MARKDOWN).content("\n".join(lines) + "\n")
        .description("The SLOs of alerts/slos as generated into these dashboards, with their runbooks and the "
                     "detail dashboard of each service.")
    )


# --------------------------------------------------------------------------------------------------
# SLO detail, per service


def service_detail(service: str, slos: Sequence[Slo]) -> dict[str, Any]:
    """The detail dashboard of one service and its SLOs (see the module docstring)."""
    svc = _is("service", service)
    f = (_var("cluster", "cluster"), _var("platform", "platform"))
    names = ", ".join(s.name for s in slos)
    board = Board(
        uid=detail_uid(service), title=f"SLO detail: {service}", tags=[TAG, "slo", "detail", service],
        time_from="now-6h", refresh="30s",
        description=_description(
            f"SLOs of {service} ({names}): what burns, what changed (suspects, rollouts drawn as annotations), "
            "and each alert condition with its threshold."),
    )
    board.variable("cluster", label="Cluster", query=f"label_values({_sel(M_BUDGET_REMAINING, svc)}, cluster)",
                   description=f"Clusters of {service}; * = an SLO that does not split by cluster.")
    board.variable("platform", label="Platform",
                   query=f"label_values({_sel(M_BUDGET_REMAINING, svc, f[0])}, platform)",
                   description="kubernetes or legacy; * = an SLO that does not split by platform.")
    board.link(link("SLO overview", f"/d/{OVERVIEW_UID}", tooltip="Every SLO, worst first"))
    runbooks = sorted({(s.runbook_url, s.name) for s in slos if s.runbook_url})
    for url, name in runbooks:
        board.link(link(f"Runbook: {name}", url, tooltip=f"The runbook of {name} (from its spec)", new_tab=True))
    board.link(link("Migration", f"/d/{MIGRATION_UID}", tooltip="Kubernetes vs legacy error ratio, gate decisions",
                    keep_vars=False))
    board.link(link("Pipeline health", f"/d/{PIPELINE_UID}", tooltip="Are these numbers fresh and complete?",
                    keep_vars=False))
    rollout_labels = ["service", "cluster", "namespace", "deployment", "revision"]
    board.annotation(
        f"Rollouts of {service}",
        f"{_by('max', rollout_labels, _sel(M_ROLLOUT_STARTED, svc, f[0]))} * 1000",
        color="purple", value_is_time_ms=True, tag_keys=["cluster", "revision"],
        title_format="Rollout of {{namespace}}/{{deployment}} to revision {{revision}} in {{cluster}}",
        text_format="Started here (event time of the k8s.rollouts record). Check the suspects table: is it blamed?",
    )

    board.row(f"Now: what burns in {service}, and what changed")
    board.panel(_suspects(service, f), w=14, h=8)
    board.panel(_rollouts(service, f), w=10, h=8)
    for slo in slos:
        _slo_section(board, slo, f)
    return board.to_dict()


def _suspects(service: str, f: Sequence[str]) -> table.Panel:
    labels = ["slo", "severity", "cluster", "region", "platform", "rank", "kind", "suspect"]
    expr = _by("max", labels, _sel(M_SUSPECT_SCORE, _is("service", service), *f))
    rename = {"slo": "SLO", "severity": "Alert", "cluster": "Cluster", "region": "Region", "platform": "Platform",
              "rank": "Rank", "kind": "Kind", "suspect": "Suspect", "Value": "Score"}
    panel = _table(
        "Suspects of the firing alerts, most likely first",
        "For each firing alert, the rollouts and Kubernetes warnings that most likely caused the burn, ranked "
        "(docs/correlation.md): same service, same cluster first, started shortly before the burn began, the new "
        "revision failing more than the old one. Score 0..1. Empty: nothing is firing, or nothing changed near the "
        "burn onset (no suspect, rather than blaming an unrelated rollout).",
        [query(expr, instant=True, table=True)],
        no_value="No firing alert, or no suspect for it",
        transformations=[_sort(("severity", False), ("rank", False)),
                         _organize(rename=rename, order=[*labels, "Value"])],
    )
    return panel.override_by_name("Score", [
        prop("decimals", 2), prop("thresholds", thresholds("text", (0.5, "orange"), (0.8, "red"))),
        prop("custom.cellOptions", _color_text())]).override_by_name("Suspect", [prop("custom.width", 360)])


def _rollouts(service: str, f: Sequence[str]) -> table.Panel:
    labels = ["cluster", "namespace", "deployment", "revision", "phase"]
    expr = f"{_by('max', labels, _sel(M_ROLLOUT_STARTED, _is('service', service), f[0]))} * 1000"
    rename = {"cluster": "Cluster", "namespace": "Namespace", "deployment": "Deployment", "revision": "Revision",
              "phase": "Phase", "Value": "Started"}
    panel = _table(
        f"Recent rollouts of {service}",
        "Rollouts the workers know of (from k8s.rollouts, written by the kube bridge), newest first, with their "
        "latest phase and start time (event time). They are also drawn on the graphs below as annotations.",
        [query(expr, instant=True, table=True)],
        no_value="No recent rollout",
        transformations=[_sort(("Value", True)), _organize(rename=rename, order=[*labels, "Value"])],
    )
    return panel.override_by_name("Started", [prop("unit", "dateTimeAsIso")]).override_by_name("Phase", [
        prop("mappings", [value_map({"failed": ("failed", "red"), "rolled_back": ("rolled back", "orange"),
                                     "completed": ("completed", "green")})]),
        prop("custom.cellOptions", _color_text())])


def _slo_section(board: Board, slo: Slo, f: Sequence[str]) -> None:
    s = (_is("slo", slo.name), *f)
    window = format_duration(slo.window_s)
    allowed = error_budget(slo)
    board.row(f"{slo.name}: {slo.description.rstrip('.')}" if slo.description
              else f"{slo.name}: {_pct(slo.objective)} of events good over {window}")

    board.panel(_stat(
        "Error budget left",
        f"The smallest share of the {window} error budget left among the selected series of {slo.name}: 100% "
        f"untouched, 0% used up, below 0 overspent (allowed error ratio {_pct(allowed)}).",
        [query(f"min({_by('min', SERIES, _sel(M_BUDGET_REMAINING, *s))})")],
        unit="percentunit", decimals=1, no_value="no evaluation yet", steps=_budget_steps(), graph=True), w=4, h=6)
    severities = [sev for sev in Severity if any(b.severity is sev for b in slo.policy.windows)]
    firing = [query(f"sum({_by('max', SERIES, _sel(M_ALERT_FIRING, *s, _is('severity', sev.value)))})",
                    ref=sev.value, legend=f"{sev.value}s", instant=True) for sev in severities]
    alerts = _stat(
        "Alerts firing",
        f"Series of {slo.name} whose page / ticket alert fires now. Conditions: {_conditions_text(slo)}; a firing "
        f"alert resolves after its condition has been false for {format_duration(slo.policy.hold_s)}.",
        firing, unit="none", decimals=0, no_value="no series", steps=thresholds("green", (1, "red")))
    if Severity.TICKET in severities:
        alerts = alerts.override_by_query(Severity.TICKET.value, [
            prop("thresholds", thresholds("green", (1, SEVERITY_COLOR[Severity.TICKET])))])
    if slo.runbook_url:
        alerts = alerts.links([link(f"Runbook: {slo.name}", slo.runbook_url, tooltip="From the SLO's spec",
                                    new_tab=True)])
    board.panel(alerts, w=4, h=6)
    board.panel(_alert_timeline(slo, s, severities), w=16, h=6)

    for b in _conditions(slo):
        board.panel(_condition_panel(slo, b, s), w=12, h=8)

    board.panel(_timeseries(
        f"Error budget left over the rolling {window}",
        f"Share of the error budget left over the last {window} at each evaluation: 100% untouched, 0% used up "
        "(the red line), below 0 overspent. Falls during a burn, climbs back as bad events leave the window.",
        [query(_by("min", DIMS, _sel(M_BUDGET_REMAINING, *s)), legend=DIMS_LEGEND)],
        unit="percentunit", decimals=1, no_value="no evaluation yet", min_zero=False,
        steps=thresholds("red", (0, "green")), threshold_style=common_m.GraphThresholdsStyleMode.LINE), w=8, h=8)
    bad_name = ("Error ratio" if slo.indicator.kind is SliKind.RATIO
                else f"Share slower than {num(slo.indicator.latency_threshold_ms or 0)} ms")
    ratio = f"{_by('sum', DIMS, _rate(M_SLI_BAD_EVENTS, *s))}\n/\n{_by('sum', DIMS, _rate(M_SLI_EVENTS, *s))}"
    board.panel(_timeseries(
        f"{bad_name} against the allowed {_pct(allowed)}",
        f"Bad events / all events of {slo.name} per series. The red line is the allowed ratio, 1 - objective: "
        "above it the budget burns faster than 1x.",
        [query(ratio, legend=DIMS_LEGEND)], unit="percentunit", decimals=3, no_value="no events",
        steps=thresholds("green", (allowed, "red")), threshold_style=common_m.GraphThresholdsStyleMode.DASHED,
        soft_max=allowed * 2), w=8, h=8)
    total = _by("sum", DIMS, _rate(M_SLI_EVENTS, *s))
    board.panel(_timeseries(
        "Events per second: all and good",
        f"Events of {slo.name}'s indicator counted by the workers (summed over workers), and the good ones among "
        f"them. Fewer than {slo.min_events} events in a condition's long window never page (low traffic).",
        [query(total, ref="all", legend="all " + DIMS_LEGEND),
         query(f"{total}\n-\n{_by('sum', DIMS, _rate(M_SLI_BAD_EVENTS, *s))}", ref="good",
               legend="good " + DIMS_LEGEND)],
        unit="reqps", no_value="no events"), w=8, h=8)


def _alert_timeline(slo: Slo, s: Sequence[str], severities: Sequence[Severity]) -> statetimeline.Panel:
    panel = (
        statetimeline.Panel().title("Alert state over time").datasource(datasource())
        .description(f"Each series' alerts of {slo.name}: PAGE / TICKET while firing, ok otherwise (as committed by "
                     "the workers, so a replay shows the same history).")
        .no_value("no series").show_value(common_m.VisibilityMode.NEVER).merge_values(True).row_height(0.8)
        .fill_opacity(80).line_width(0)
        .thresholds(thresholds("green"))
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.THRESHOLDS))
        .legend(common_b.VizLegendOptions().show_legend(False).display_mode(common_m.LegendDisplayMode.LIST)
                .placement(common_m.LegendPlacement.BOTTOM))
    )
    for sev in severities:
        panel = panel.with_target(query(
            _by("max", DIMS, _sel(M_ALERT_FIRING, *s, _is("severity", sev.value))), ref=sev.value,
            legend=f"{sev.value} {DIMS_LEGEND}"))
        panel = panel.override_by_query(sev.value, [prop("mappings", [value_map({
            "0": ("ok", "green"), "1": (sev.value.upper(), SEVERITY_COLOR[sev])})])])
    return panel


def _condition_panel(slo: Slo, b: BurnWindow, s: Sequence[str]) -> timeseries.Panel:
    long, short = format_duration(b.long_s), format_duration(b.short_s)
    spent = b.factor * b.long_s / slo.window_s
    expr = _by("max", ["window", *DIMS], _sel(M_BURN_RATE, *s, f'window=~"{long}|{short}"'))
    description = (
        f"Burn rate = error ratio over the window / allowed error ratio ({_pct(1 - slo.objective)}). The "
        f"{b.severity.value} fires when both the {long} (solid) and the {short} (dashed) burn rates are above "
        f"{num(b.factor)}x, the dashed line: at that speed {_pct(spent)} of the {format_duration(slo.window_s)} "
        f"budget goes in {long}. Not with fewer than {slo.min_events} events in the {long} window. It resolves "
        f"once this has been false for {format_duration(slo.policy.hold_s)}.")
    panel = _timeseries(
        f"{b.severity.value.capitalize()}: {long} and {short} burn (fires when both > {num(b.factor)}x)",
        description, [query(expr, legend="{{window}} " + DIMS_LEGEND)], unit=BURN_UNIT, decimals=1,
        no_value="no evaluation yet", steps=thresholds("green", (b.factor, SEVERITY_COLOR[b.severity])),
        threshold_style=common_m.GraphThresholdsStyleMode.DASHED, soft_max=round(b.factor * 1.5, 6))
    return panel.override_by_regexp(f"^{short} .*", [prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})])


# --------------------------------------------------------------------------------------------------
# Migration


def migration() -> dict[str, Any]:
    """The migration dashboard: kubernetes against legacy per service, and the gate's decisions."""
    board = Board(
        uid=MIGRATION_UID, title="Migration: kubernetes vs legacy", tags=[TAG, "migration"], time_from="now-24h",
        refresh="1m",
        description=_description(
            "Per service and SLO: the error ratio on kubernetes against legacy, the share of traffic on kubernetes, "
            "and the decisions of the rollout gate (proceed / hold / rollback / unknown)."),
    )
    platforms = f'platform=~"{PLATFORM_RE}"'
    board.variable("service", label="Service", query=f"label_values({_sel(M_SLI_EVENTS, platforms)}, service)",
                   description="Services with an SLO that splits by platform.")
    of_service = _sel(M_SLI_EVENTS, _var("service", "service"), platforms)
    board.variable("slo", label="SLO", query=f"label_values({of_service}, slo)",
                   description="SLOs of the selected services that split by platform.")
    board.link(link("SLO overview", f"/d/{OVERVIEW_UID}", tooltip="Every SLO, worst first", keep_vars=False))
    board.link(tagged_links("slo-stream dashboards", TAG))
    _migration_summary(board, platforms)
    _migration_service(board, platforms)
    return board.to_dict()


def _migration_summary(board: Board, platforms: str) -> None:
    """Row: per service and SLO, kubernetes against legacy over the dashboard's time range."""
    f = (_var("service", "service"), _var("slo", "slo"))
    by = ["service", "slo"]

    def ratio_on(platform: str) -> str:
        p = _is("platform", platform)
        return (f"{_by('sum', by, _increase(M_SLI_BAD_EVENTS, *f, p))}\n/\n"
                f"{_by('sum', by, _increase(M_SLI_EVENTS, *f, p))}")

    share = (f"{_by('sum', by, _increase(M_SLI_EVENTS, *f, _is('platform', 'kubernetes')))}\n/\n"
             f"{_by('sum', by, _increase(M_SLI_EVENTS, *f, platforms))}")
    allowed = (f"{_by('max', by, f'1 - {_sel(M_OBJECTIVE, *f)}')}\nand on (service, slo)\n"
               f"{_by('sum', by, _sel(M_SLI_EVENTS, *f, platforms))}")
    board.row("Kubernetes vs legacy over the selected time range")
    rename = {"service": "Service", "slo": "SLO", "Value #kubernetes": "Error ratio on kubernetes",
              "Value #legacy": "Error ratio on legacy", "Value #allowed": "Allowed (1 - objective)",
              "Value #share": "Traffic on kubernetes"}
    summary = _table(
        "Error ratio per platform and traffic share",
        "Over the dashboard's time range, per service and SLO: bad events / all events on each platform, the ratio "
        "the SLO allows, and the share of the SLO's events served on kubernetes. A kubernetes ratio above legacy "
        "and above the allowed one is a reason to hold the migration (the gate tests this statistically).",
        [query(ratio_on("kubernetes"), ref="kubernetes", instant=True, table=True),
         query(ratio_on("legacy"), ref="legacy", instant=True, table=True),
         query(allowed, ref="allowed", instant=True, table=True),
         query(share, ref="share", instant=True, table=True)],
        no_value="No SLO series split by platform",
        transformations=[transform("merge", {}),
                         _organize(rename=rename, order=[*by, "Value #kubernetes", "Value #legacy", "Value #allowed",
                                                         "Value #share"])],
    )
    for name in ("Error ratio on kubernetes", "Error ratio on legacy", "Allowed (1 - objective)"):
        summary = summary.override_by_name(name, [prop("unit", "percentunit"), prop("decimals", 3)])
    summary = summary.override_by_name("Traffic on kubernetes", [
        prop("unit", "percentunit"), prop("decimals", 1), prop("min", 0), prop("max", 1),
        prop("custom.cellOptions", {"type": "gauge", "mode": "basic", "valueDisplayMode": "text"})])
    board.panel(summary, w=GRID_WIDTH, h=8)


def _migration_service(board: Board, platforms: str) -> None:
    """Row repeated per selected service: error ratio and traffic per platform, gate decisions."""
    board.row("$service", repeat="service")
    one = (_var("service", "service"), _var("slo", "slo"), platforms)
    err = (f"{_by('sum', ['slo', 'platform'], _rate(M_SLI_BAD_EVENTS, *one))}\n/\n"
           f"{_by('sum', ['slo', 'platform'], _rate(M_SLI_EVENTS, *one))}")
    board.panel(_timeseries(
        "Error ratio: kubernetes vs legacy ($service)",
        "Bad events / all events per SLO and platform (solid kubernetes, dashed legacy). The lines should "
        "overlap; kubernetes above legacy means the migration makes things worse.",
        [query(err, legend="{{slo}} on {{platform}}")], unit="percentunit", decimals=3, no_value="no events",
    ).override_by_regexp(".* on legacy$", [prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})]), w=8, h=8)
    board.panel(_timeseries(
        "Traffic on kubernetes ($service)",
        "Share of the service's events served on kubernetes (the rest on legacy), from the SLO with the most "
        "events. Steps up as migration steps shift traffic.",
        [query(f"{_service_traffic(_var('service', 'service'), _is('platform', 'kubernetes'))}\n/\n"
               f"{_service_traffic(_var('service', 'service'), platforms)}", legend="on kubernetes")],
        unit="percentunit", decimals=1, no_value="no events", soft_max=1), w=8, h=8)
    gate = _timeseries(
        "Gate decisions per minute ($service)",
        "Answers of the rollout gate (GET /v1/gate, Flagger and Argo hooks, `slo-stream gate check`) for the "
        "service: proceed, hold, rollback, or unknown (stale or too little data: never proceed).",
        [query(f"{_by('sum', ['decision'], _rate(M_GATE_DECISIONS, _var('service', 'service')))} * 60",
               legend="{{decision}}")], unit=PER_MINUTE, decimals=1, no_value="no gate request", bars=True)
    for decision, color in DECISION_COLORS.items():
        gate = gate.override_by_name(decision, [_fixed_color(color)])
    board.panel(gate, w=8, h=8)


def _service_traffic(*matchers: str) -> str:
    """Events per second of a service. Each SLO of a service counts the same requests (or those with a
    latency): the largest count is the service's traffic, without counting a request once per SLO."""
    return _by("max", ["service"], _by("sum", ["service", "slo"], _rate(M_SLI_EVENTS, *matchers)))


# --------------------------------------------------------------------------------------------------
# Pipeline health


def pipeline_health() -> dict[str, Any]:
    """Is slo-stream itself working: ingest, lag, rejects, latency, the notifier."""
    board = Board(
        uid=PIPELINE_UID, title="Pipeline health", tags=[TAG, "pipeline"], time_from="now-1h", refresh="30s",
        description=_description(
            "Is slo-stream itself healthy? Workers and partitions, records in, consumer lag, dead letters, late "
            "records, evaluation time, the gate API, Kubernetes records, and PagerDuty deliveries."),
    )
    inst = _var("instance", "instance")
    board.variable("instance", label="Worker", query=f"label_values({M_ASSIGNED_PARTITIONS}, instance)",
                   description="Worker processes (Prometheus instance labels) that report partitions.")
    board.link(link("SLO overview", f"/d/{OVERVIEW_UID}", tooltip="Every SLO, worst first", keep_vars=False))
    board.link(tagged_links("slo-stream dashboards", TAG))
    _pipeline_running(board)
    _pipeline_throughput(board, inst)
    _pipeline_rejects(board, inst)
    _pipeline_admission(board, inst)
    _pipeline_processing(board, inst)
    _pipeline_notifier(board)
    return board.to_dict()


def _pipeline_running(board: Board) -> None:
    """Row of stats: workers, partitions, lag, evaluation delay, dead letters, PagerDuty retries."""
    board.row("Is it running?")
    board.panel(_stat(
        "Workers reporting", "Worker processes Prometheus scrapes right now (each exports its assigned partitions). "
        "0: nothing evaluates SLOs and nothing pages.",
        [query(f"count({M_ASSIGNED_PARTITIONS})", instant=True)], unit="none", decimals=0,
        no_value="0: no worker is scraped", steps=thresholds("red", (1, "green"))), w=4, h=4)
    board.panel(_stat(
        "Partitions assigned", "playback.events partitions assigned over all workers: it should equal the topic's "
        "partition count (SLO_STREAM_PARTITIONS). Fewer: a rebalance is in progress or a partition has no worker.",
        [query(f"sum({M_ASSIGNED_PARTITIONS})", instant=True)], unit="none", decimals=0,
        no_value="no worker", steps=thresholds("red", (1, "green"))), w=4, h=4)
    board.panel(_stat(
        "Consumer lag", "Messages of playback.events not processed yet, over all partitions. Growing: the workers "
        "fall behind and alerts come late.",
        [query(f"sum({M_CONSUMER_LAG})", instant=True)], unit="none", decimals=0, no_value="unknown",
        steps=thresholds("green", (1000, "orange"), (10000, "red"))), w=4, h=4)
    board.panel(_stat(
        "Newest evaluation behind now", "Wall clock minus the event time of the newest evaluation. At least the "
        "allowed lateness (120 s by default); far more: no records arrive, or the workers are behind.",
        [query(f"time() - max({M_LAST_EVALUATION})", instant=True)], unit="s", decimals=0,
        no_value="no evaluation yet", steps=thresholds("green", (300, "orange"), (900, "red"))), w=4, h=4)
    board.panel(_stat(
        "Dead letters in range", "Records sent to the dead-letter topic over the dashboard's time range (all "
        "reasons, late ones included). Details in the dead-letter topic; reasons below.",
        [query(f"sum({_increase(M_DEAD_LETTERS)})", instant=True)], unit="none", decimals=0, no_value="0",
        steps=thresholds("green", (1, "orange"))), w=4, h=4)
    board.panel(_stat(
        "PagerDuty retries in range", "Requests the notifier had to repeat (429, 5xx, timeouts) over the time "
        "range. Pages are delayed, not lost, while this rises.",
        [query(f"sum({_increase(M_NOTIFIER_RETRIES)})", instant=True)], unit="none", decimals=0, no_value="0",
        steps=thresholds("green", (1, "orange"), (20, "red"))), w=4, h=4)


def _pipeline_throughput(board: Board, inst: str) -> None:
    """Row: records in, consumer lag, partitions and state per worker."""
    board.row("Throughput and lag")
    board.panel(_timeseries(
        "Records and messages in per second",
        "Valid playback records counted, and Kafka messages taken from playback.events (a message may hold a batch "
        "of records), per worker.",
        [query(_by("sum", ["instance"], _rate(M_RECORDS, inst)), ref="records", legend="records {{instance}}"),
         query(_by("sum", ["instance"], _rate(M_MESSAGES, inst)), ref="messages", legend="messages {{instance}}")],
        unit=PER_SECOND, no_value="no worker"), w=6, h=8)
    board.panel(_timeseries(
        "Consumer lag per partition",
        "Messages of each playback.events partition not processed yet (log end minus the next offset to process), "
        "as reported by the worker that owns it. Growing: alerts come late.",
        [query(_by("max", ["partition"], _sel(M_CONSUMER_LAG, inst)), legend="partition {{partition}}")],
        unit="none", decimals=0, no_value="no partition assigned", steps=thresholds("green", (1000, "orange")),
        threshold_style=common_m.GraphThresholdsStyleMode.DASHED), w=6, h=8)
    board.panel(_timeseries(
        "Partitions per worker",
        "playback.events partitions assigned to each worker. Moves on every rebalance; a worker stuck at 0 counts "
        "nothing.",
        [query(_by("max", ["instance"], _sel(M_ASSIGNED_PARTITIONS, inst)), legend="{{instance}}")],
        unit="none", decimals=0, no_value="no worker"), w=6, h=8)
    board.panel(_timeseries(
        "State held per worker",
        "Bytes of the state table (counter chunks, alert tracks, revision counts) each worker holds for its "
        "partitions, what it recovers from the changelog on start. Grows with series and event time until each "
        "bucket level's retention is reached, then stays level; a jump follows a rebalance.",
        [query(_by("max", ["instance"], _sel(M_STATE_BYTES, inst)), legend="{{instance}}")],
        unit="bytes", no_value="no worker"), w=6, h=8)


def _pipeline_rejects(board: Board, inst: str) -> None:
    """Row: dead letters, late records, Kubernetes records by outcome, offset re-reads."""
    board.row("Rejected and late input")
    board.panel(_timeseries(
        "Dead letters per second by reason",
        "Records sent to the dead-letter topic, by reason (bad_json, missing_field, late, unknown_service, ...). "
        "Not counted in any SLO: a steady rate means a producer sends what we cannot read.",
        [query(_by("sum", ["reason"], _rate(M_DEAD_LETTERS, inst)), legend="{{reason}}")],
        unit=PER_SECOND, no_value="no dead letter", bars=True), w=6, h=8)
    board.panel(_timeseries(
        "Late records per second",
        "Records that arrived later than the allowed lateness behind their partition's newest event time: "
        "dead-lettered with reason late and not counted (docs/semantics.md). Rising: a producer lags or replays "
        "old data.",
        [query(_by("sum", ["instance"], _rate(M_DEAD_LETTERS, inst, _is("reason", REASON_LATE))),
               legend="late {{instance}}")],
        unit=PER_SECOND, no_value="no late record"), w=6, h=8)
    board.panel(_timeseries(
        "Kubernetes records per second by outcome",
        "Records read from k8s.rollouts and k8s.events: kept (rollouts and Warning events of services with an "
        "SLO: the correlation's input), ignored (Normal events, other services), dead_letter (malformed).",
        [query(_by("sum", ["outcome"], _rate(M_K8S_RECORDS, inst)), legend="{{outcome}}")],
        unit=PER_SECOND, no_value="no kubernetes record"), w=6, h=8)
    board.panel(_timeseries(
        "Offset re-reads per second",
        "Partitions read again over an offset hole or Faust's commit stall (docs/semantics.md). Occasional is "
        "normal; a steady rate is not.",
        [query(_by("sum", ["instance"], _rate(M_OFFSET_REREADS, inst)), legend="{{instance}}")],
        unit=PER_SECOND, no_value="no worker"), w=6, h=8)


def _pipeline_admission(board: Board, inst: str) -> None:
    """Row: series per SLO against the limit, refusals, displaced series, the placements refused."""
    board.row("Series admission")
    board.panel(_timeseries(
        "Series per SLO (of the limit)",
        "SLO series the workers hold, per SLO, as a share of SLO_STREAM_MAX_SERIES_PER_SLO. At 100 % a new "
        "placement takes the place of an idle untrusted series, or is refused (docs/semantics.md, Limits).",
        [query(f"{_by('sum', ['slo'], _sel(M_SERIES, inst))} / on () group_left max({M_SERIES_LIMIT})",
               legend="{{slo}}")],
        unit="percentunit", no_value="no series", soft_max=1), w=6, h=8)
    board.panel(_timeseries(
        "Records refused at the series limit per second",
        "Records dead-lettered (series_limit) because their SLO had no room for a new series: a burst of junk "
        "placements, or a real placement beyond the limit (SloStreamSeriesLimit opens a ticket).",
        [query(_by("sum", ["slo"], _rate(M_SERIES_REFUSED, inst)), legend="refused {{slo}}"),
         query(_by("sum", ["slo"], _rate(M_SERIES_EVICTED, inst)), legend="displaced {{slo}}")],
        unit=PER_SECOND, no_value="nothing refused", bars=True), w=6, h=8)
    rename = {"slo": "SLO", "cluster": "Cluster", "region": "Region", "platform": "Platform",
              "Value": "Records refused"}
    labels = ["slo", "cluster", "region", "platform"]
    board.panel(_table(
        "Placements refused most recently",
        "The newest placements refused at the series limit (at most 10 per SLO and worker), with their refused "
        "records since the worker started. Real ones: add them to SLO_STREAM_SERIES_ALLOW; junk: find the "
        "producer in the dead-letter topic (reason series_limit).",
        [query(_by("sum", labels, _sel(M_SERIES_REFUSED_RECENT, inst)), instant=True, table=True)],
        no_value="No placement refused",
        transformations=[_sort(("Value", True)), _organize(rename=rename, order=[*labels, "Value"])],
    ), w=12, h=8)


def _pipeline_processing(board: Board, inst: str) -> None:
    """Row: engine and batch time, evaluations, gate and status API latency."""
    board.row("Processing time")
    board.panel(_timeseries(
        "Engine time per partition batch",
        "Seconds the engine spends validating, counting and evaluating one partition's part of a batch (no I/O), "
        "median and 99th percentile over the workers.",
        _quantiles(M_EVALUATION_SECONDS, inst), unit="s", no_value="no batch"), w=6, h=8)
    board.panel(_timeseries(
        "Batch time end to end",
        "Seconds one partition's batch takes end to end: the engine, delivering alerts and dead letters, writing "
        "the state. Much more than the engine time: Kafka is slow.",
        _quantiles(M_BATCH_SECONDS, inst), unit="s", no_value="no batch"), w=6, h=8)
    board.panel(_timeseries(
        "Series evaluations per second",
        "SLO series evaluated (one series at one event-time step), per worker.",
        [query(_by("sum", ["instance"], _rate(M_EVALUATIONS, inst)), legend="{{instance}}")],
        unit=PER_SECOND, no_value="no evaluation"), w=6, h=8)
    board.panel(_timeseries(
        "Gate and status API latency (p99)",
        "99th percentile of the seconds to answer /v1/gate, /v1/slos and the Flagger hooks, per endpoint "
        "(forwarding to the owning worker included). Argo and Flagger time out on slow answers.",
        _quantiles(M_HTTP_SECONDS, inst, by=["endpoint"])[1:], unit="s", no_value="no request"), w=6, h=8)


def _pipeline_notifier(board: Board) -> None:
    """Row: provisional alerts by outcome, the notifier's PagerDuty deliveries and retries."""
    board.row("Alerts out: provisional alerts and PagerDuty")
    provisional = _timeseries(
        "Provisional alerts per minute by outcome",
        "Alerts fired early on live data (docs/semantics.md, provisional and final alerts): fired, then confirmed "
        "by the final evaluation or retracted (a resolve with reason retracted went out). Retractions are the "
        "price of paging early; a steady rate of them means records arrive late (see late records above).",
        [query(f"{_by('sum', ['outcome'], _rate(M_PROVISIONAL))} * 60", legend="{{outcome}}")],
        unit=PER_MINUTE, decimals=1, no_value="no provisional alert", bars=True)
    board.panel(provisional.override_by_name("retracted", [_fixed_color("orange")]), w=8, h=8)
    deliveries = _timeseries(
        "PagerDuty deliveries per minute",
        "Events the notifier finished delivering, by kind (trigger = page, resolve, change = rollout change "
        "event) and outcome (accepted; rejected = PagerDuty answered 400 and the event went to the dead-letter "
        "topic: fix the payload or the routing key; repeat = a worker replayed a change already delivered "
        "after a crash, not sent again; confirmation = the final alert of a provisional page already sent).",
        [query(f"{_by('sum', ['kind', 'outcome'], _rate(M_NOTIFIER_DELIVERIES))} * 60",
               legend="{{kind}} {{outcome}}")], unit=PER_MINUTE, decimals=1, no_value="nothing delivered",
        bars=True)
    deliveries = deliveries.override_by_regexp(".* rejected$", [_fixed_color("red")])
    board.panel(deliveries, w=8, h=8)
    board.panel(_timeseries(
        "PagerDuty retries per minute",
        "Requests the notifier repeated, by kind and reason (HTTP status or timeout). 429: rate limited; 5xx or "
        "timeout: PagerDuty or the network is down. Pages wait (offsets are committed only once accepted).",
        [query(f"{_by('sum', ['kind', 'reason'], _rate(M_NOTIFIER_RETRIES))} * 60",
               legend="{{kind}} {{reason}}")], unit=PER_MINUTE, decimals=1, no_value="no retry", bars=True),
        w=8, h=8)


def _quantiles(metric: str, *matchers: str, by: Sequence[str] = ()) -> list[prom_b.Dataquery]:
    """The median and the 99th percentile of histogram ``metric``, per ``by``."""
    labels = ["le", *by]
    extra = " ".join("{{" + b + "}}" for b in by)
    return [query(f"histogram_quantile({q}, {_by('sum', labels, _rate(metric + '_bucket', *matchers))})",
                  ref=f"p{int(q * 100)}", legend=f"p{int(q * 100)} {extra}".rstrip()) for q in (0.5, 0.99)]
