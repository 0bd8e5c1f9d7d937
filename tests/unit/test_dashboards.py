"""Generated Grafana dashboards (streams.render.dashboards, `slo-stream generate`): golden files, the
committed dashboards/_gen, determinism, the SDK's model types, the datasource and the provisioning.

Every query is run against a real Prometheus in tests/integration/test_dashboard_queries.py.
Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest tests/unit/test_dashboards.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

from streams.adapters.specfiles import load_specs
from streams.cli import main
from streams.core import conventions as c
from streams.core.model import Severity, format_duration
from streams.render import dashboards as gen
from streams.render.grafana import DATASOURCE_TYPE, DATASOURCE_UID, PROMETHEUS_ANNOTATION_FIELDS
from streams.render.outputs import dashboard_files
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "alerts" / "slos"
GEN = ROOT / "dashboards" / "_gen"
GOLDEN = ROOT / "tests" / "golden" / "dashboards"
PROVIDER = ROOT / "dashboards" / "provisioning" / "slo-stream.yaml"
COMPOSE_DATASOURCES = ROOT / "deploy" / "compose" / "grafana" / "datasources.yaml"
METRICS = {v for k, v in vars(c).items() if k.startswith("M_")}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board.get("panels", []))


def targets(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for p in panels(board):
        for t in p.get("targets", []):
            yield p["title"], t


# -- the committed files and the golden files --------------------------------------------------------


def test_the_committed_dashboards_equal_a_fresh_generation() -> None:
    # CI's "regenerate and fail on any difference": run `slo-stream generate` after changing alerts/slos.
    files = dashboard_files(load_specs(SPECS))
    for name, text in files.items():
        committed = (GEN / name).read_text(encoding="utf-8")
        assert committed == text, f"dashboards/_gen/{name} is stale: run `slo-stream generate`"
    assert sorted(p.name for p in GEN.glob("*.json")) == sorted(files), "a dashboard that is no longer generated"


def test_the_golden_dashboards_of_the_golden_specs() -> None:
    files = dashboard_files(load_specs(GOLDEN / "specs"))
    if os.environ.get("UPDATE_GOLDEN"):
        for old in GOLDEN.glob("*.json"):
            old.unlink()
        for name, text in files.items():
            (GOLDEN / name).write_text(text, encoding="utf-8")
    assert sorted(p.name for p in GOLDEN.glob("*.json")) == sorted(files)
    for name, text in files.items():
        assert (GOLDEN / name).read_text(encoding="utf-8") == text, (
            f"tests/golden/dashboards/{name} differs: review the change, then UPDATE_GOLDEN=1")


def test_output_is_deterministic_whatever_the_order_of_the_slos() -> None:
    slos = load_specs(SPECS)
    first = dashboard_files(slos)
    assert dashboard_files(list(reversed(slos))) == first
    assert dashboard_files(slos) == first


def test_one_detail_dashboard_per_service_and_the_three_shared_ones() -> None:
    files = gen.dashboards(load_specs(SPECS))
    assert sorted(files) == sorted([gen.OVERVIEW_FILE, gen.MIGRATION_FILE, gen.PIPELINE_FILE,
                                    "slo-detail-license-service.json", "slo-detail-playback-api.json",
                                    "slo-detail-stream-router.json"])
    uids = [b["uid"] for b in files.values()]
    assert len(set(uids)) == len(uids) and all(len(u) <= 40 for u in uids)
    # The specs' slo-stream/dashboard annotations (links in every page) name the detail dashboards.
    for slo in load_specs(SPECS):
        assert slo.dashboard_url.endswith(f"/d/{gen.detail_uid(slo.service)}"), slo.dashboard_url


@pytest.mark.parametrize("name", sorted(gen.dashboards(load_specs(SPECS))))
def test_every_dashboard_says_it_is_generated_and_is_read_only(name: str) -> None:
    board = gen.dashboards(load_specs(SPECS))[name]
    assert "DO NOT EDIT" in board["description"] and "`slo-stream generate`" in board["description"]
    assert board["editable"] is False
    assert "slo-stream" in board["tags"]


# -- grafana-foundation-sdk's model types ------------------------------------------------------------


def _diff(a: Any, b: Any, path: str = "") -> Iterator[str]:
    if type(a) is not type(b):
        yield path
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                yield f"{path}.{k}"
            else:
                yield from _diff(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        if len(a) != len(b):
            yield path
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                yield from _diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield path


@pytest.mark.parametrize("specs", [SPECS, GOLDEN / "specs"], ids=["committed specs", "golden specs"])
def test_each_dashboard_loads_back_through_the_sdk_models_without_loss(specs: Path) -> None:
    register_default_plugins()
    for name, board in gen.dashboards(load_specs(specs)).items():
        model = dash_m.Dashboard.from_json(board)
        # Typed all the way down: no query or panel option fell back to an untyped bag.
        for panel in model.panels or []:
            if isinstance(panel, dash_m.RowPanel):
                continue
            for t in panel.targets or []:
                assert isinstance(t, prom_m.Dataquery), (name, panel.title, type(t))
            if panel.type_val != "row":
                assert not isinstance(panel.options, dict), (name, panel.title)
        back = json.loads(json.dumps(model, cls=JSONEncoder))
        lost = list(_diff(board, back))
        # The SDK's AnnotationQuery has no field for Prometheus' annotation options: exactly those go.
        expected = [f".annotations.list[{i}].{k}" for i, _ in enumerate(board["annotations"].get("list", []))
                    for k in sorted(PROMETHEUS_ANNOTATION_FIELDS)]
        assert lost == expected, (name, lost)


# -- queries, datasource, provisioning ------------------------------------------------------------------


def test_every_query_names_the_provisioned_datasource_and_a_metric_we_export() -> None:
    compose = yaml.safe_load(COMPOSE_DATASOURCES.read_text(encoding="utf-8"))
    provisioned = {d["uid"]: d["type"] for d in compose["datasources"]}
    assert provisioned.get(DATASOURCE_UID) == DATASOURCE_TYPE
    n = 0
    for name, board in gen.dashboards(load_specs(SPECS)).items():
        refs = [t["datasource"] for _, t in targets(board)]
        refs += [p["datasource"] for p in panels(board) if "targets" in p]
        refs += [v["datasource"] for v in board["templating"].get("list", [])]
        refs += [a["datasource"] for a in board["annotations"].get("list", [])]
        assert refs and all(r == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID} for r in refs), name
        exprs = [t["expr"] for _, t in targets(board)] + [a["expr"] for a in board["annotations"].get("list", [])]
        exprs += [v["query"] for v in board["templating"].get("list", [])]
        for expr in exprs:
            for metric in re.findall(r"\bslo_stream_[a-z0-9_]+", expr):
                assert metric.removesuffix("_bucket") in METRICS, (name, metric)
                n += 1
    assert n > 100


def test_the_dashboard_provider_reads_what_compose_mounts() -> None:
    provider = yaml.safe_load(PROVIDER.read_text(encoding="utf-8"))["providers"][0]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert "./dashboards/provisioning:/etc/grafana/provisioning/dashboards" in compose
    assert "./dashboards:/var/lib/grafana/dashboards" in compose
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/_gen"


@pytest.mark.parametrize("name", sorted(gen.dashboards(load_specs(SPECS))))
def test_panels_have_unique_ids_and_tile_the_grid_without_overlap(name: str) -> None:
    board = gen.dashboards(load_specs(SPECS))[name]
    ids = [p["id"] for p in panels(board)]
    assert len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for p in panels(board):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (p["title"], g)
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, (p["title"], g)
        cells |= mine
        assert p.get("description") or p["type"] == "row", f"{p['title']} has no description"


# -- what a tired person reads -----------------------------------------------------------------------------


def _detail(specs: Path, service: str) -> dict[str, Any]:
    return gen.dashboards(load_specs(specs))[gen.detail_file(service)]


@pytest.mark.parametrize("specs,service", [(SPECS, "playback-api"), (GOLDEN / "specs", "checkout-api")],
                         ids=["workbook policy", "custom policy and windows"])
def test_each_alert_condition_gets_a_graph_with_its_threshold_drawn(specs: Path, service: str) -> None:
    board = _detail(specs, service)
    slos = [s for s in load_specs(specs) if s.service == service]
    graphs = {p["title"]: p for p in panels(board) if "fires when both" in p.get("title", "")}
    expected = [(slo.name, b) for slo in slos for b in slo.policy.windows]
    assert len(graphs) == len({(b.severity, b.long_s, b.short_s, b.factor) for _, b in expected})
    for slo_name, b in expected:
        long, short = format_duration(b.long_s), format_duration(b.short_s)
        title = f"{b.severity.value.capitalize()}: {long} and {short} burn (fires when both > {b.factor:.12g}x)"
        panel = graphs[title]
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[1] == {"value": b.factor, "color": gen.SEVERITY_COLOR[b.severity]}
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
        assert panel["fieldConfig"]["defaults"]["unit"] == "suffix:x"
        expr = [t["expr"] for t in panel["targets"]]
        assert any(f'window=~"{long}|{short}"' in e for e in expr), expr
        assert any(f'slo="{slo_name}"' in e for e in expr) or len(slos) > 1


def test_the_golden_custom_policy_shows_its_own_windows_minimum_and_hold() -> None:
    board = _detail(GOLDEN / "specs", "checkout-api")
    text = json.dumps(board)
    assert "10x" in text and "4h and 20m" in text and "fewer than 500 events in the 1h window" in text.lower()
    assert "false for 2m" in text
    latency = [p for p in panels(board) if p["title"].startswith("Share slower than 300 ms")]
    assert latency and latency[0]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == pytest.approx(0.02)


def test_rollouts_are_annotations_at_their_start_time_in_milliseconds() -> None:
    (anno,) = _detail(SPECS, "playback-api")["annotations"]["list"]
    assert anno["useValueForTime"] is True and anno["expr"].endswith(" * 1000")
    assert c.M_ROLLOUT_STARTED in anno["expr"] and 'service="playback-api"' in anno["expr"]
    assert "{{deployment}}" in anno["titleFormat"] and "{{revision}}" in anno["titleFormat"]
    assert anno["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}


def test_the_overview_sorts_worst_first_and_links_rows_to_the_detail_and_the_catalog_to_runbooks() -> None:
    slos = load_specs(SPECS)
    board = gen.dashboards(slos)[gen.OVERVIEW_FILE]
    assert [v["name"] for v in board["templating"]["list"]] == ["service", "cluster", "platform"]
    (tab,) = [p for p in panels(board) if p["type"] == "table"]
    sort = next(t for t in tab["transformations"] if t["id"] == "sortBy")["options"]["sort"]
    assert sort == [{"field": "Value #alert", "desc": True}, {"field": "Value #budget", "desc": False}]
    links = next(o for o in tab["fieldConfig"]["overrides"] if o["matcher"]["options"] == "SLO")["properties"][0]
    assert links["value"][0]["url"].startswith("/d/slo-${__data.fields.service}?var-cluster=")
    alert = next(o for o in tab["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Alert")["properties"][0]
    texts = {k: v["text"] for k, v in alert["value"][0]["options"].items()}
    assert texts == {"0": "ok", "1": "TICKET", "2": "PAGE"}
    burn_columns = {t["refId"] for t in tab["targets"] if t["refId"].startswith("burn_")}
    assert burn_columns == {f"burn_{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")}
    (catalog,) = [p for p in panels(board) if p["type"] == "text"]
    for slo in slos:
        assert f"[runbook]({slo.runbook_url})" in catalog["options"]["content"]
        assert f"(/d/slo-{slo.service})" in catalog["options"]["content"]


def test_overview_burn_colours_follow_the_lowest_factor_of_each_window() -> None:
    board = gen.dashboards(load_specs(SPECS))[gen.OVERVIEW_FILE]
    (tab,) = [p for p in panels(board) if p["type"] == "table"]
    by_name = {o["matcher"]["options"]: o["properties"] for o in tab["fieldConfig"]["overrides"]}
    steps = next(p["value"]["steps"] for p in by_name["Burn 1h"] if p["id"] == "thresholds")
    assert steps == [{"value": None, "color": "green"}, {"value": 14.4, "color": "red"}]
    steps = next(p["value"]["steps"] for p in by_name["Burn 6h"] if p["id"] == "thresholds")
    assert steps == [{"value": None, "color": "green"}, {"value": 1, "color": "orange"}, {"value": 6, "color": "red"}]


def test_a_severity_the_policy_lacks_gets_no_query() -> None:
    slo = factories.slo()
    pages_only = replace(slo, policy=replace(slo.policy, windows=tuple(
        b for b in slo.policy.windows if b.severity is Severity.PAGE)))
    board = gen.dashboards([pages_only])[gen.detail_file(slo.service)]
    assert not [t for _, t in targets(board) if 'severity="ticket"' in t["expr"]]
    assert [t for _, t in targets(board) if 'severity="page"' in t["expr"]]


def test_a_service_name_too_long_for_a_grafana_uid_is_refused_with_the_reason() -> None:
    slo = replace(factories.slo(), service="a-service-name-that-is-far-too-long-for-uids")
    with pytest.raises(ValueError, match="exceeds Grafana's 40"):
        gen.dashboards([slo])


# -- slo-stream generate ----------------------------------------------------------------------------------


def test_generate_writes_the_dashboards_check_finds_differences_and_stale_ones_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules, dash = tmp_path / "alerts", tmp_path / "dash"
    args = ["generate", "--specs", str(SPECS), "--out", str(rules), "--dashboards-out", str(dash),
            "--prometheusrule-out", str(tmp_path / "prometheusrule.yaml")]
    assert main([*args, "--check"]) == 1
    assert f"{dash / gen.OVERVIEW_FILE}: missing" in capsys.readouterr().err
    assert main(args) == 0
    # The dashboards and the kustomization of their ConfigMaps (deploy/kubernetes/base includes it).
    assert sorted(p.name for p in dash.iterdir()) == sorted(
        [*(p.name for p in GEN.glob("*.json")), "kustomization.yaml"])
    assert (dash / gen.OVERVIEW_FILE).read_text(encoding="utf-8") == (GEN / gen.OVERVIEW_FILE).read_text(
        encoding="utf-8")
    capsys.readouterr()
    assert main([*args, "--check"]) == 0
    (dash / gen.PIPELINE_FILE).write_text("{}\n", encoding="utf-8")
    (dash / "slo-detail-gone-service.json").write_text("{}\n", encoding="utf-8")
    assert main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{dash / gen.PIPELINE_FILE}: differs from a fresh generation" in err
    assert f"{dash / 'slo-detail-gone-service.json'}: is no longer generated" in err
    assert "--dashboards-out" in err
    assert (dash / gen.PIPELINE_FILE).read_text(encoding="utf-8") == "{}\n"  # --check wrote nothing
    assert main(args) == 0
    assert not (dash / "slo-detail-gone-service.json").exists()
    assert main([*args, "--check"]) == 0
