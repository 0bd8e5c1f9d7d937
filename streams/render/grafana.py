"""Small helpers over grafana-foundation-sdk (Grafana 11.6 flavour) shared by the dashboards.

:class:`Board` wraps the SDK's dashboard builder with what every slo-stream dashboard has: the
Prometheus datasource of the provisioning files (uid :data:`DATASOURCE_UID`), explicit panel ids and
grid positions (the SDK's automatic layout lets a wide panel overflow the 24-column grid), read-only
dashboards, and Prometheus annotations. The SDK's ``AnnotationQuery`` has no field for the Prometheus
annotation options (``titleFormat``, ``tagKeys``, ``useValueForTime``...), so :meth:`Board.to_dict`
adds them to the plain data; they are the only keys a round trip through the SDK's models drops
(:data:`PROMETHEUS_ANNOTATION_FIELDS`, checked by tests/unit/test_dashboards.py).

Pure: builders in, plain JSON-ready dicts out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, Self

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

DATASOURCE_TYPE = "prometheus"
# The datasource uid every panel names: the Prometheus that deploy/compose/grafana/datasources.yaml
# provisions (dashboards/README.md says how to provide it elsewhere).
DATASOURCE_UID = "prometheus"
# "All" of a multi-value variable. Grafana regex-escapes the values of multi-value variables
# (so a grouped-away dimension, "*", matches itself) but not this one: it matches every value.
ALL_VALUE = ".*"
# Keys of a Prometheus annotation that the SDK's AnnotationQuery model (11.6) does not carry.
PROMETHEUS_ANNOTATION_FIELDS = ("step", "titleFormat", "textFormat", "tagKeys", "useValueForTime")
GRID_WIDTH = 24


def datasource() -> dash_m.DataSourceRef:
    return dash_m.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class PanelBuilder(Protocol):
    """What every SDK panel builder (timeseries, stat, table, ...) offers and :class:`Board` uses."""

    def id(self, id_val: int) -> Self: ...

    def grid_pos(self, grid_pos: dash_m.GridPos) -> Self: ...

    def build(self) -> dash_m.Panel: ...


def query(expr: str, *, ref: str = "A", legend: str | None = None, instant: bool = False,
          table: bool = False) -> prom_b.Dataquery:
    """A PromQL target: a range query (graphs), or ``instant`` (stats and tables; ``table`` format
    keeps the labels as columns)."""
    q = prom_b.Dataquery().expr(expr).ref_id(ref).datasource(datasource()).editor_mode(prom_m.QueryEditorMode.CODE)
    q = q.instant() if instant else q.range()
    if table:
        q = q.format(prom_m.PromQueryFormat.TABLE)
    if legend is not None:
        q = q.legend_format(legend)
    return q


def thresholds(base: str, *steps: tuple[float, str]) -> dash_b.ThresholdsConfig:
    """Absolute thresholds: ``base`` below the first step, then each ``(value, color)`` from its value up."""
    return dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE).steps(
        [dash_m.Threshold(value=None, color=base), *(dash_m.Threshold(value=v, color=c) for v, c in steps)]
    )


def value_map(options: Mapping[str, tuple[str, str]]) -> dash_m.ValueMap:
    """Show a value as text in a color: ``{"1": ("FIRING", "red")}``."""
    return dash_m.ValueMap(options={
        value: dash_m.ValueMappingResult(text=text, color=color, index=i)
        for i, (value, (text, color)) in enumerate(options.items())
    })


def prop(name: str, value: Any) -> dash_m.DynamicConfigValue:
    """One property of a field override (``unit``, ``custom.cellOptions``, ``links``...); a builder is built."""
    return dash_m.DynamicConfigValue(id_val=name, value=value.build() if isinstance(value, Builder) else value)


def transform(name: str, options: Mapping[str, Any]) -> dash_m.DataTransformerConfig:
    return dash_m.DataTransformerConfig(id_val=name, options=dict(options))


def link(title: str, url: str, *, tooltip: str, keep_vars: bool = True, new_tab: bool = False) -> dash_b.DashboardLink:
    """A link at the top of a dashboard: to another dashboard (``/d/<uid>``, keeping the time range and
    variables) or to an external page such as a runbook (``new_tab``)."""
    return (dash_b.DashboardLink(title).type(dash_m.DashboardLinkType.LINK).url(url).tooltip(tooltip)
            .icon("external link" if new_tab else "dashboard").keep_time(not new_tab)
            .include_vars(keep_vars and not new_tab).target_blank(new_tab).as_dropdown(False))


def tagged_links(title: str, tag: str) -> dash_b.DashboardLink:
    """A drop-down of every dashboard carrying ``tag``."""
    return (dash_b.DashboardLink(title).type(dash_m.DashboardLinkType.DASHBOARDS).tags([tag]).as_dropdown(True)
            .keep_time(True).include_vars(False).target_blank(False).icon("external link")
            .tooltip(f"Every dashboard tagged {tag}"))


class Board:
    """One dashboard under construction: variables, links, annotations, then rows and panels placed
    left to right on the 24-column grid (a panel that does not fit starts the next line)."""

    def __init__(self, *, uid: str, title: str, description: str, tags: Sequence[str], time_from: str,
                 refresh: str) -> None:
        self.builder = (
            dash_b.Dashboard(title).uid(uid).description(description).tags(list(tags))
            .time(time_from, "now").refresh(refresh).timezone("browser").readonly()
            .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        )
        self._x = 0
        self._y = 0
        self._line_h = 0
        self._next_id = 1
        self._annotation_extras: list[dict[str, Any]] = []

    def variable(self, name: str, *, label: str, query: str, description: str) -> None:
        """A multi-value variable over the label values ``query`` (``label_values(...)``) finds;
        "All" selected by default."""
        self.builder.with_variable(
            dash_b.QueryVariable(name).label(label).description(description).query(query)
            .datasource(datasource()).multi(True).include_all(True).all_value(ALL_VALUE)
            .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dash_m.VariableSort.ALPHABETICAL_ASC)
            .current(dash_m.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )

    def link(self, link: Builder[dash_m.DashboardLink]) -> None:
        self.builder.link(link)

    def annotation(self, name: str, expr: str, *, color: str, title_format: str, text_format: str,
                   tag_keys: Sequence[str], value_is_time_ms: bool, step: str = "60s") -> None:
        """A Prometheus annotation: one event per series of ``expr``. With ``value_is_time_ms`` the
        event sits at the sample value (Unix milliseconds), not at the sample's time."""
        self.builder.annotation(
            dash_b.AnnotationQuery().name(name).datasource(datasource()).enable(True).hide(False)
            .icon_color(color).expr(expr)
        )
        self._annotation_extras.append({
            "step": step, "titleFormat": title_format, "textFormat": text_format, "tagKeys": ",".join(tag_keys),
            "useValueForTime": value_is_time_ms,
        })

    def row(self, title: str, *, repeat: str | None = None) -> None:
        """A row header across the grid; with ``repeat``, Grafana repeats the row and the panels
        under it for each selected value of that variable."""
        self._newline()
        row = dash_b.Row(title).id(self._take_id()).grid_pos(dash_m.GridPos(h=1, w=GRID_WIDTH, x=0, y=self._y))
        if repeat is not None:
            row = row.repeat(repeat)
        self.builder.with_row(row)
        self._y += 1

    def panel(self, panel: PanelBuilder, *, w: int, h: int) -> None:
        if not 0 < w <= GRID_WIDTH:
            raise ValueError(f"panel width {w} is not within 1..{GRID_WIDTH}")
        if self._x + w > GRID_WIDTH:
            self._newline()
        panel.id(self._take_id()).grid_pos(dash_m.GridPos(h=h, w=w, x=self._x, y=self._y))
        self.builder.with_panel(panel)  # type: ignore[arg-type]  # a Builder[Panel] by protocol
        self._x += w
        self._line_h = max(self._line_h, h)

    def to_dict(self) -> dict[str, Any]:
        """The dashboard JSON model as plain data (dicts, lists, strings, numbers, booleans, None)."""
        plain: dict[str, Any] = json.loads(json.dumps(self.builder.build(), cls=JSONEncoder))
        annotations = plain.get("annotations", {}).get("list", [])
        if len(annotations) != len(self._annotation_extras):
            raise AssertionError("annotations added outside Board.annotation")
        for anno, extra in zip(annotations, self._annotation_extras, strict=True):
            anno.update(extra)
        return plain

    def _newline(self) -> None:
        if self._x > 0 or self._line_h > 0:
            self._y += self._line_h
        self._x = 0
        self._line_h = 0

    def _take_id(self) -> int:
        n = self._next_id
        self._next_id += 1
        return n
