"""The generated fallback rules and Alertmanager config, checked by the real promtool and amtool.

The burn-rate scenarios run on the committed ``alerts/_gen/prometheus-rules.yaml`` (the unit tests
check that it equals a fresh generation) for ``playback-api-availability``: 99.9% over 30 days, the
Workbook policy (page 14.4x over 1h+5m or 6x over 6h+30m; ticket 3x over 1d+2h or 1x over 3d+6h),
min-events 10,000, hold 5m. Traffic is 600 events a minute (10/s) on one series.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.adapters.specfiles import load_specs
from streams.core.conventions import M_SLI_BAD_EVENTS, M_SLI_EVENTS
from streams.render.alertmanager import RECEIVER_PAGE, RECEIVER_TICKET
from streams.render.outputs import ALERTMANAGER_FILE, RULES_FILE, alertmanager_file
from streams.render.promql import ALERT_NAME

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "alerts" / "_gen"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (apt-get install -y --no-install-recommends prometheus)",
)
needs_amtool = pytest.mark.skipif(
    AMTOOL is None,
    reason="amtool is not installed (apt-get install -y --no-install-recommends prometheus-alertmanager)",
)

SLO = "playback-api-availability"
SERIES = {
    "slo": SLO,
    "service": "playback-api",
    "cluster": "eu-west-1",
    "region": "eu-west",
    "platform": "kubernetes",
}


def _series(metric: str) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in {**SERIES, "instance": "worker-1"}.items())
    return f"{metric}{{{labels}}}"


def _alert_rule(severity: str) -> dict[str, Any]:
    rules = yaml.safe_load((GEN / RULES_FILE).read_text(encoding="utf-8"))
    (group,) = [g for g in rules["groups"] if g["name"] == f"slo-stream-{SLO}"]
    (rule,) = [r for r in group["rules"] if r.get("alert") == ALERT_NAME and r["labels"]["severity"] == severity]
    return dict(rule)


def _expected(severity: str, value: str) -> dict[str, Any]:
    """The alert promtool should report: its labels, and its annotations rendered with ``value``."""
    rule = _alert_rule(severity)
    annotations = {}
    for key, text in rule["annotations"].items():
        for label, label_value in SERIES.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", label_value)
        text = text.replace("{{ $value | humanizePercentage }}", value)
        assert "{{" not in text, text
        annotations[key] = text
    return {"exp_labels": {**rule["labels"], **SERIES}, "exp_annotations": annotations}


def _promtool_test(
    tmp_path: Path,
    *,
    interval: str,
    total: str,
    bad: str,
    checks: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    """Run ``promtool test rules`` on the generated rules: at each ``(eval_time, alerts)`` exactly those fire."""
    shutil.copy(GEN / RULES_FILE, tmp_path / RULES_FILE)
    test = {
        "rule_files": [RULES_FILE],
        "evaluation_interval": interval,
        "tests": [
            {
                "interval": interval,
                "input_series": [
                    {"series": _series(M_SLI_EVENTS), "values": total},
                    {"series": _series(M_SLI_BAD_EVENTS), "values": bad},
                ],
                "alert_rule_test": [
                    {"alertname": ALERT_NAME, "eval_time": at, "exp_alerts": alerts} for at, alerts in checks
                ],
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False), encoding="utf-8")
    out = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(path)], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_promtool
def test_promtool_checks_the_generated_rules() -> None:
    out = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(GEN / RULES_FILE)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    assert "duplicate" not in (out.stdout + out.stderr).lower()


@needs_promtool
def test_a_full_outage_pages_after_52_seconds_and_resolves_after_the_hold(tmp_path: Path) -> None:
    # 10 s scrapes and evaluations, like the stream's 10 s step. Six hours of clean traffic (100 events
    # every 10 s) so that the 1h and 6h windows are full, then 10 minutes of 100% errors from 21600 s
    # to 22200 s, then clean again.
    # Page: the 1h window burns faster than 14.4x once errors are more than 0.0144 x 3600 s = 51.8 s of
    # its traffic: at +50 s (500/36000 = 1.389%) not yet; at +60 s (600/36000 = 1.667%) it pages. The
    # 5m window is far above 14.4x from the first errors; the 6h window needs 0.006 x 6 h = 130 s.
    # Ticket: it fires first, an artefact of the short history: the 3d window holds only the 6 hours
    # there are, so 3d and 6h both pass 1 x 0.1% after 21.6 s of errors (at +50 s: 500/216500).
    # After the outage (errors end at 22200 s) the 6h+30m condition holds while the 30m window [t-30m, t]
    # holds more than 0.6% errors: at 23980 s two 10 s steps of errors (200/18000 = 1.1%), at 23990 s one
    # (0.56%): false from 23990 s. The stream resolves once the condition has been false for the 5m hold;
    # keep_firing_for does the same: the page still fires at 24280 s and is resolved at 24290 s. An
    # alert kept firing shows the value of its last true evaluation (23980 s: 6h ratio 6000/216000 =
    # 2.778%). The ticket's 1d+2h condition still holds (1d ratio 6000/242800, the 2h window holds the outage).
    t0 = 21600
    _promtool_test(
        tmp_path,
        interval="10s",
        total="0+100x2430",  # 0 .. 24300 s
        bad="0x2160 100+100x59 6000x209",  # errors from 21600 s to 22200 s
        checks=[
            (f"{t0}s", []),
            (f"{t0 + 50}s", [_expected("ticket", "0.2309%")]),
            (f"{t0 + 60}s", [_expected("page", "1.667%"), _expected("ticket", "0.277%")]),
            ("24280s", [_expected("page", "2.778%"), _expected("ticket", "2.471%")]),
            ("24290s", [_expected("ticket", "2.47%")]),
        ],
    )


@needs_promtool
def test_an_error_ratio_within_the_objective_never_fires(tmp_path: Path) -> None:
    # 0.05% errors (1.5 of 3000 every 5 minutes) is a 0.5x burn: below every factor of the policy, for
    # 26 hours. (5-minute scrapes and evaluations keep promtool quick; every window still holds 2 samples.)
    _promtool_test(
        tmp_path,
        interval="5m",
        total="0+3000x312",
        bad="0+1.5x312",
        checks=[(at, []) for at in ("5m", "65m", "6h30m", "1d", "1d2h")],
    )


@needs_promtool
def test_low_traffic_does_not_page_below_min_events(tmp_path: Path) -> None:
    # 10 events a minute, all failing for an hour: a 1000x burn, but the 1h window holds 600 events,
    # fewer than the 10,000 (10 / 0.001) the SLO needs before a burn may alert, as in the stream.
    _promtool_test(
        tmp_path,
        interval="1m",
        total="0+10x180",
        bad="0x60 10+10x119",
        checks=[(at, []) for at in ("61m", "90m", "2h", "3h")],
    )


@needs_promtool
def test_a_slow_burn_opens_a_ticket_only_once_its_long_window_spent_10_percent(tmp_path: Path) -> None:
    # Three days of clean traffic (600 a minute, scraped and evaluated every 5 minutes to keep promtool
    # quick), then 0.35% errors (2.1 a minute): a 3.5x burn.
    # Both ticket conditions spend 10% of the 30-day budget over their long window: the 1d ratio passes
    # 3 x 0.1% (and the 3d ratio 1 x 0.1%) once the burn has lasted 0.003 x 1440 / 0.0035 = 1234.3 min
    # (20h34m), long after the short windows (2h, 6h) passed theirs. At 20h30m of burn: no ticket;
    # at 20h40m: ticket, 1d ratio 2.1 x 1240 / 864000 = 0.3014%. 3.5x never pages (6x, 14.4x).
    _promtool_test(
        tmp_path,
        interval="5m",
        total="0+3000x1152",  # 4 days
        bad="0x864 10.5+10.5x287",  # errors from 3d (4320 min)
        checks=[
            ("4320m", []),
            (f"{4320 + 120}m", []),  # the 2h window burns at 3.5x already
            (f"{4320 + 1230}m", []),
            (f"{4320 + 1240}m", [_expected("ticket", "0.3014%")]),
        ],
    )


@needs_amtool
def test_amtool_checks_the_generated_alertmanager_config() -> None:
    out = subprocess.run(
        [str(AMTOOL), "check-config", str(GEN / ALERTMANAGER_FILE)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    assert "2 receivers" in out.stdout


@needs_amtool
@pytest.mark.parametrize(("severity", "receiver"), [("page", RECEIVER_PAGE), ("ticket", RECEIVER_TICKET)])
def test_amtool_routes_each_severity_to_its_pagerduty_receiver(
    tmp_path: Path, severity: str, receiver: str
) -> None:
    # Routing keys in files of our own (Alertmanager reads them when it sends), a local PagerDuty URL.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in (RECEIVER_PAGE, RECEIVER_TICKET):
        (secrets / name).write_text("0123456789abcdef0123456789abcdef\n", encoding="utf-8")
    config = tmp_path / ALERTMANAGER_FILE
    config.write_text(
        alertmanager_file(
            load_specs(ROOT / "alerts" / "slos"),
            pagerduty_url="http://127.0.0.1:9/v2/enqueue",
            secrets_dir=str(secrets),
        ),
        encoding="utf-8",
    )
    check = subprocess.run([str(AMTOOL), "check-config", str(config)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    routed = subprocess.run(
        [str(AMTOOL), "config", "routes", "test", f"--config.file={config}",
         f"alertname={ALERT_NAME}", f"slo={SLO}", f"severity={severity}"],
        capture_output=True, text=True, check=False,
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.split() == [receiver]
