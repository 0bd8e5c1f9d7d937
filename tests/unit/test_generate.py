"""`slo-stream generate`: the generated files as text (streams.render.outputs, streams.render.writer) and on
disk (streams.adapters.generated): committed files equal a fresh generation, do-not-edit headers,
determinism, the PrometheusRule built from the rules data, writing and `--check`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streams.adapters.specfiles import load_specs
from streams.cli import main
from streams.render.outputs import (
    ALERTMANAGER_FILE,
    DEFAULT_PROMETHEUSRULE_OUT,
    RULES_FILE,
    alert_files,
    outputs,
    prometheusrule_file,
)
from streams.render.prometheus import prometheus_rules
from streams.render.prometheusrule import prometheus_rule
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "alerts" / "slos"
GEN = ROOT / "alerts" / "_gen"
PROMETHEUSRULE = ROOT / DEFAULT_PROMETHEUSRULE_OUT


def test_the_committed_files_equal_a_fresh_generation() -> None:
    # CI's "regenerate and fail on any difference": run `slo-stream generate` after changing alerts/slos.
    for name, text in alert_files(load_specs(SPECS)).items():
        committed = (GEN / name).read_text(encoding="utf-8")
        assert committed == text, f"alerts/_gen/{name} is stale: run `slo-stream generate`"


def test_output_is_deterministic_whatever_the_order_of_the_slos() -> None:
    slos = load_specs(SPECS)
    first = outputs(slos)
    assert outputs(list(reversed(slos))) == first
    assert outputs(slos) == first


@pytest.mark.parametrize("name", [RULES_FILE, ALERTMANAGER_FILE])
def test_every_file_starts_with_a_do_not_edit_header_naming_the_command(name: str) -> None:
    text = alert_files([factories.slo()])[name]
    head = text.splitlines()[:3]
    assert all(line.startswith("# ") for line in head)
    assert "DO NOT EDIT" in head[1] and "`slo-stream generate`" in head[1]
    assert "&id" not in text and "*id" not in text  # no YAML anchors


def test_the_prometheusrule_carries_the_rules_data_under_a_header_naming_the_command() -> None:
    rules = prometheus_rules(load_specs(SPECS))
    text = prometheusrule_file(rules)
    head = text.splitlines()[:4]
    assert all(line.startswith("# ") for line in head)
    assert "DO NOT EDIT" in head[1] and "`slo-stream generate`" in head[1]
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert doc["metadata"] == {"name": "slo-stream-burn-rate", "labels": {
        "app.kubernetes.io/name": "slo-stream", "app.kubernetes.io/component": "alerting"}}
    assert doc["spec"] == rules == yaml.safe_load((GEN / RULES_FILE).read_text(encoding="utf-8"))


def test_the_committed_prometheusrule_equals_a_fresh_generation() -> None:
    text = prometheusrule_file(prometheus_rules(load_specs(SPECS)))
    assert PROMETHEUSRULE.read_text(encoding="utf-8") == text, \
        f"{DEFAULT_PROMETHEUSRULE_OUT} is stale: run `slo-stream generate`"


def test_a_prometheusrule_is_built_only_from_a_rule_files_data() -> None:
    with pytest.raises(ValueError, match="groups"):
        prometheus_rule({"groups": [], "kind": "x"})


def test_generate_writes_the_files_and_check_finds_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, rule_object = tmp_path / "gen", tmp_path / "deploy" / "prometheusrule.yaml"
    args = ["generate", "--specs", str(SPECS), "--out", str(out), "--dashboards-out", str(tmp_path / "dashboards"),
            "--prometheusrule-out", str(rule_object)]
    assert main([*args, "--check"]) == 1  # nothing written yet
    err = capsys.readouterr().err
    assert f"{rule_object}: missing" in err and "--prometheusrule-out" in err
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [ALERTMANAGER_FILE, RULES_FILE]
    assert (out / RULES_FILE).read_text(encoding="utf-8") == (GEN / RULES_FILE).read_text(encoding="utf-8")
    assert rule_object.read_text(encoding="utf-8") == PROMETHEUSRULE.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main([*args, "--check"]) == 0
    (out / ALERTMANAGER_FILE).write_text("# edited by hand\n", encoding="utf-8")
    rule_object.write_text("# edited by hand\n", encoding="utf-8")
    assert main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{out / ALERTMANAGER_FILE}: differs from a fresh generation" in err
    assert f"{rule_object}: differs from a fresh generation" in err
    assert RULES_FILE not in err
    assert (out / ALERTMANAGER_FILE).read_text(encoding="utf-8") == "# edited by hand\n"  # --check wrote nothing
    assert rule_object.read_text(encoding="utf-8") == "# edited by hand\n"
    assert main(args) == 0
    assert main([*args, "--check"]) == 0


def test_generate_removes_no_file_next_to_the_prometheusrule(tmp_path: Path) -> None:
    # Only dashboards/_gen is ours to clean: deploy/kubernetes/base holds hand-written manifests.
    base = tmp_path / "base"
    base.mkdir()
    (base / "kustomization.yaml").write_text("resources: []\n", encoding="utf-8")
    (base / "other.json").write_text("{}\n", encoding="utf-8")
    args = ["generate", "--specs", str(SPECS), "--out", str(tmp_path / "gen"),
            "--dashboards-out", str(tmp_path / "dashboards"), "--prometheusrule-out", str(base / "prometheusrule.yaml")]
    assert main(args) == 0
    assert sorted(p.name for p in base.iterdir()) == ["kustomization.yaml", "other.json", "prometheusrule.yaml"]
    assert main([*args, "--check"]) == 0
