"""Generated Prometheus rules and Alertmanager config (streams.core.promrules, `slo-stream generate`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from streams.adapters.specfiles import load_specs
from streams.cli import main
from streams.core.conventions import M_SLI_BAD_EVENTS, M_SLI_EVENTS
from streams.core.model import HOUR, AlertPolicy
from streams.core.promrules import (
    ALERT_NAME,
    ALERTMANAGER_FILE,
    RULES_FILE,
    alertmanager_config,
    generated_files,
    prometheus_rules,
    promql_string,
)
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "alerts" / "slos"
GEN = ROOT / "alerts" / "_gen"


def _rules(*slos: Any) -> list[dict[str, Any]]:
    doc = yaml.safe_load(prometheus_rules(list(slos)))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_the_committed_files_equal_a_fresh_generation() -> None:
    # CI's "regenerate and fail on any difference": run `slo-stream generate` after changing alerts/slos.
    for name, text in generated_files(load_specs(SPECS)).items():
        committed = (GEN / name).read_text(encoding="utf-8")
        assert committed == text, f"alerts/_gen/{name} is stale: run `slo-stream generate`"


def test_output_is_deterministic_whatever_the_order_of_the_slos() -> None:
    slos = load_specs(SPECS)
    first = generated_files(slos)
    assert generated_files(list(reversed(slos))) == first
    assert generated_files(slos) == first


@pytest.mark.parametrize("name", [RULES_FILE, ALERTMANAGER_FILE])
def test_every_file_starts_with_a_do_not_edit_header_naming_the_command(name: str) -> None:
    text = generated_files([factories.slo()])[name]
    head = text.splitlines()[:3]
    assert all(line.startswith("# ") for line in head)
    assert "DO NOT EDIT" in head[1] and "`slo-stream generate`" in head[1]
    assert "&id" not in text and "*id" not in text  # no YAML anchors


def test_a_30d_slo_records_its_error_ratio_over_every_window_of_the_workbook_policy() -> None:
    records = [r for r in _rules(factories.slo()) if r.get("record", "").startswith("slo:sli_error:")]
    windows = [r["labels"]["sloth_window"] for r in records]
    assert windows == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    one_hour = records[2]
    assert one_hour["record"] == "slo:sli_error:ratio_rate1h"
    assert one_hour["labels"] == {
        "sloth_id": "playback-api-availability",
        "sloth_service": "playback-api",
        "sloth_slo": "playback-api-availability",
        "sloth_window": "1h",
    }
    by = "sum by (slo, service, cluster, region, platform)"
    assert one_hour["expr"] == (
        f'{by} (rate({M_SLI_BAD_EVENTS}{{slo="playback-api-availability"}}[1h]))\n/\n'
        f'{by} (rate({M_SLI_EVENTS}{{slo="playback-api-availability"}}[1h]))\n'
    )


def test_the_slo_meta_records_follow_sloth() -> None:
    meta = {r["record"]: r for r in _rules(factories.slo()) if r.get("record", "").startswith("slo:") and
            "sloth_window" not in r["labels"]}
    assert meta["slo:objective:ratio"]["expr"] == "vector(0.999)"
    assert meta["slo:error_budget:ratio"]["expr"] == "vector(0.001)"
    assert meta["slo:time_period:days"]["expr"] == "vector(30)"


def test_a_30d_slo_pages_at_14_4x_over_1h_and_5m_or_6x_over_6h_and_30m() -> None:
    alerts = {r["labels"]["severity"]: r for r in _rules(factories.slo()) if "alert" in r}
    assert set(alerts) == {"page", "ticket"}
    page = alerts["page"]
    assert page["alert"] == ALERT_NAME
    assert "for" not in page  # the policy has no "for": the short window confirms the burn
    assert page["keep_firing_for"] == "5m"  # the policy's hold
    expr = page["expr"]
    branches = expr.split("\nor\n")
    assert len(branches) == 2
    assert "slo:sli_error:ratio_rate1h{" in branches[0] and "> (14.4 * 0.001)" in branches[0]
    assert "slo:sli_error:ratio_rate5m{" in branches[0]
    assert "slo:sli_error:ratio_rate6h{" in branches[1] and "> (6 * 0.001)" in branches[1]
    assert ">= 10000)" in branches[0]  # min-events in the long window, as in the stream
    ticket = alerts["ticket"]["expr"]
    assert "ratio_rate1d{" in ticket and "> (3 * 0.001)" in ticket and "ratio_rate3d{" in ticket


def test_alerts_carry_the_slo_labels_and_its_runbook_and_dashboard() -> None:
    slo = factories.slo(
        labels=MappingProxyType({"team": "playback"}), dashboard_url="https://grafana.example.com/d/x"
    )
    (page,) = [r for r in _rules(slo) if r.get("labels", {}).get("severity") == "page" and "alert" in r]
    assert page["labels"]["team"] == "playback"
    assert page["labels"]["sloth_severity"] == "page"
    assert page["annotations"]["runbook"] == "https://runbooks.example.com/playback-api"
    assert page["annotations"]["dashboard"] == "https://grafana.example.com/d/x"
    assert "{{ $labels.cluster }}" in page["annotations"]["summary"]


def test_a_pages_only_policy_without_hold_has_no_ticket_alert_and_no_keep_firing_for() -> None:
    base = factories.slo()
    pages = tuple(w for w in base.policy.windows if w.severity.value == "page")
    slo = replace(base, policy=AlertPolicy(name="pages-only", windows=pages, hold_s=0))
    alerts = [r for r in _rules(slo) if "alert" in r]
    assert [a["labels"]["severity"] for a in alerts] == ["page"]
    assert "keep_firing_for" not in alerts[0]
    assert "slo:sli_error:ratio_rate1d" not in {r.get("record") for r in _rules(slo)}


def test_template_braces_in_free_text_print_as_themselves() -> None:
    (page, _) = [r for r in _rules(factories.slo(description="Say {{ hi }}")) if "alert" in r]
    assert page["annotations"]["description"].startswith('Say {{ "{{" }} hi {{ "}}" }}. ')


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"name": 'bad"name'}, id="a quote in the SLO name"),
        pytest.param({"name": "Playback"}, id="an uppercase SLO name"),
        pytest.param({"name": "a}b"}, id="a brace in the SLO name"),
        pytest.param({"service": "svc\n"}, id="a newline after the service"),
        pytest.param({"labels": MappingProxyType({"severity": "low"})}, id="a label that shadows severity"),
        pytest.param({"labels": MappingProxyType({"sloth_id": "x"})}, id="a label that shadows sloth_id"),
        pytest.param({"labels": MappingProxyType({"team": 'a"b'})}, id="a quote in a label value"),
        pytest.param({"labels": MappingProxyType({"te-am": "x"})}, id="a dash in a label name"),
    ],
)
def test_bad_names_are_refused(changes: dict[str, Any]) -> None:
    slo = factories.slo(**changes)
    with pytest.raises(ValueError):
        prometheus_rules([slo])
    with pytest.raises(ValueError):
        alertmanager_config([slo])


def test_two_slos_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        prometheus_rules([factories.slo(), factories.slo(window_s=7 * 24 * HOUR)])


def test_promql_strings_are_escaped() -> None:
    assert promql_string("a-b") == '"a-b"'
    assert promql_string('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    with pytest.raises(ValueError):
        promql_string("a\x00b")


def test_alertmanager_routes_page_and_ticket_to_pagerduty() -> None:
    config = yaml.safe_load(
        alertmanager_config([factories.slo()], pagerduty_url="http://127.0.0.1:8080/v2/enqueue", secrets_dir="/s/")
    )
    route = config["route"]
    assert route["group_by"] == ["alertname", "slo", "cluster", "region", "platform"]
    assert [(r["matchers"], r["receiver"]) for r in route["routes"]] == [
        (['severity="page"'], "pagerduty-page"),
        (['severity="ticket"'], "pagerduty-ticket"),
    ]
    receivers = {r["name"]: r["pagerduty_configs"][0] for r in config["receivers"]}
    assert receivers["pagerduty-page"]["severity"] == "critical"
    assert receivers["pagerduty-ticket"]["severity"] == "warning"
    for name, pd in receivers.items():
        assert pd["routing_key_file"] == f"/s/{name}"
        assert pd["url"] == "http://127.0.0.1:8080/v2/enqueue"
        assert pd["send_resolved"] is True
        assert "{{ .CommonAnnotations.runbook }}" in pd["links"][0]["href"]
        assert pd["details"]["dashboard"] == "{{ .CommonAnnotations.dashboard }}"


def test_the_default_pagerduty_endpoint_and_key_files() -> None:
    pd = yaml.safe_load(alertmanager_config([factories.slo()]))["receivers"][0]["pagerduty_configs"][0]
    assert pd["url"] == "https://events.pagerduty.com/v2/enqueue"
    assert pd["routing_key_file"] == "/etc/alertmanager/secrets/pagerduty-page"


def test_generate_writes_the_files_and_check_finds_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gen"
    args = ["generate", "--specs", str(SPECS), "--out", str(out), "--dashboards-out", str(tmp_path / "dashboards")]
    assert main([*args, "--check"]) == 1  # nothing written yet
    assert "missing" in capsys.readouterr().err
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [ALERTMANAGER_FILE, RULES_FILE]
    assert (out / RULES_FILE).read_text(encoding="utf-8") == (GEN / RULES_FILE).read_text(encoding="utf-8")
    capsys.readouterr()
    assert main([*args, "--check"]) == 0
    (out / ALERTMANAGER_FILE).write_text("# edited by hand\n", encoding="utf-8")
    assert main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{out / ALERTMANAGER_FILE}: differs from a fresh generation" in err
    assert RULES_FILE not in err
    assert (out / ALERTMANAGER_FILE).read_text(encoding="utf-8") == "# edited by hand\n"  # --check wrote nothing
