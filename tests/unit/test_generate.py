"""`slo-stream generate`: the generated files as text (streams.render.outputs, streams.render.writer) and on
disk: committed files equal a fresh generation, do-not-edit headers, determinism, writing and `--check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.adapters.specfiles import load_specs
from streams.cli import main
from streams.render.outputs import ALERTMANAGER_FILE, RULES_FILE, alert_files, outputs
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "alerts" / "slos"
GEN = ROOT / "alerts" / "_gen"


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
