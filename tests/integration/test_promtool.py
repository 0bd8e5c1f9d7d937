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

from streams.adapters.processes import free_port, stop_group
from streams.adapters.specfiles import load_specs
from streams.core.conventions import (
    M_ASSIGNED_PARTITIONS,
    M_LAST_EVALUATION,
    M_NOTIFIER_CONSUMING,
    M_SERIES_REFUSED,
    M_SLI_BAD_EVENTS,
    M_SLI_EVENTS,
)
from streams.render.alertmanager import RECEIVER_NONE, RECEIVER_PAGE, RECEIVER_TICKET
from streams.render.outputs import ALERTMANAGER_FILE, RULES_FILE, alertmanager_file
from streams.render.promql import ALERT_NAME, DOWN_ALERT, HEARTBEAT_ALERT, SERIES_LIMIT_ALERT
from tests.waiting import wait_for

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
    _run_promtool(tmp_path, test)


def _run_promtool(tmp_path: Path, test: dict[str, Any]) -> None:
    """``promtool test rules`` on a unit test file (the rules file copied into ``tmp_path``)."""
    shutil.copy(GEN / RULES_FILE, tmp_path / RULES_FILE)
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
    assert "3 receivers" in out.stdout  # page, ticket, and the heartbeats' receiver without integrations
    assert "1 inhibit rules" in out.stdout


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


# ---- the streaming path's liveness: heartbeats mute the fallback, its absence pages (docs/fallback.md) ----
# The committed rules' timings: an evaluation is fresh for 10m, a heartbeat outlives its series by 2m
# (keep_firing_for), the streaming path is down after 5m. Samples every 30 s; the value of a series'
# last evaluation is its event time, here the evaluation time itself (a worker keeping up).

EAST = {**SERIES, "cluster": "us-east-1", "region": "us-east"}


def _labelled(metric: str, **labels: str) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _liveness_rule(alertname: str, **labels: str) -> dict[str, Any]:
    rules = yaml.safe_load((GEN / RULES_FILE).read_text(encoding="utf-8"))
    found = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == alertname
             and all(r["labels"].get(k) == v for k, v in labels.items())]
    return dict(found[0])


def _heartbeat(series: dict[str, str]) -> dict[str, Any]:
    rule = _liveness_rule(HEARTBEAT_ALERT, sloth_slo=series["slo"])
    annotations = dict(rule["annotations"])
    for label, value in series.items():
        annotations = {k: v.replace(f"{{{{ $labels.{label} }}}}", value) for k, v in annotations.items()}
    return {"exp_labels": {**rule["labels"], **series}, "exp_annotations": annotations}


def _down(cause: str) -> dict[str, Any]:
    rule = _liveness_rule(DOWN_ALERT, cause=cause)
    return {"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}


def _liveness_test(tmp_path: Path, series: list[tuple[str, str]],
                   checks: list[tuple[str, str, list[dict[str, Any]]]]) -> None:
    _run_promtool(tmp_path, {
        "rule_files": [RULES_FILE],
        "evaluation_interval": "30s",
        "tests": [{
            "interval": "30s",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{"alertname": name, "eval_time": at, "exp_alerts": alerts}
                                for at, name, alerts in checks],
        }],
    })


@needs_promtool
def test_a_dead_worker_unmutes_exactly_the_series_it_evaluated_after_the_grace(tmp_path: Path) -> None:
    # worker-1 evaluates the eu-west-1 series, worker-2 the us-east-1 one; worker-2 dies at 5m (its
    # target down, its series marked stale, as Prometheus does for a failed scrape).
    job = {"job": "slo-stream-worker"}
    _liveness_test(tmp_path, [
        (_labelled("up", **job, instance="worker-1"), "1x60"),
        (_labelled("up", **job, instance="worker-2"), "1x9 0x50"),
        (_labelled(M_ASSIGNED_PARTITIONS, **job, instance="worker-1"), "2x60"),
        (_labelled(M_LAST_EVALUATION, **SERIES, **job, instance="worker-1"), "0+30x60"),
        (_labelled(M_LAST_EVALUATION, **EAST, **job, instance="worker-2"), "0+30x9 stale"),
        (_labelled(M_NOTIFIER_CONSUMING, job="slo-stream-notifier", instance="notifier"), "1x60"),
    ], [
        ("4m", HEARTBEAT_ALERT, [_heartbeat(SERIES), _heartbeat(EAST)]),
        ("6m30s", HEARTBEAT_ALERT, [_heartbeat(SERIES), _heartbeat(EAST)]),  # keep_firing_for 2m
        ("7m30s", HEARTBEAT_ALERT, [_heartbeat(SERIES)]),  # us-east-1's burn alerts may page now
        ("15m", DOWN_ALERT, []),  # one worker is left and the notifier consumes: nothing is down
    ])


@needs_promtool
@pytest.mark.parametrize("cause", ["workers_absent", "notifier_absent", "evaluations_stale"])
def test_the_streaming_path_down_pages_after_5_minutes(tmp_path: Path, cause: str) -> None:
    # Everything healthy for 5 minutes, then: both workers stop (workers_absent), the notifier stops
    # consuming (notifier_absent), or the workers run but evaluate nothing newer (evaluations_stale: the
    # evaluations freeze at 5m, are 10m old at 15m, the alert fires 5m later).
    job = {"job": "slo-stream-worker"}
    dead = cause == "workers_absent"
    workers = [
        (_labelled("up", **job, instance=w), "1x9 0x70" if dead else "1x80") for w in ("worker-1", "worker-2")
    ] + [
        (_labelled(M_ASSIGNED_PARTITIONS, **job, instance=w), "2x9 stale" if dead else "2x80")
        for w in ("worker-1", "worker-2")
    ]
    evaluations = {"workers_absent": "0+30x9 stale", "evaluations_stale": "0+30x9 300x70"}.get(cause, "0+30x80")
    notifier = "1x9 0x70" if cause == "notifier_absent" else "1x80"
    fires = {"workers_absent": 10, "notifier_absent": 10, "evaluations_stale": 20}[cause]
    _liveness_test(tmp_path, [
        *workers,
        (_labelled(M_LAST_EVALUATION, **SERIES, **job, instance="worker-1"), evaluations),
        (_labelled(M_NOTIFIER_CONSUMING, job="slo-stream-notifier", instance="notifier"), notifier),
    ], [
        ("4m", DOWN_ALERT, []),
        ("4m", HEARTBEAT_ALERT, [_heartbeat(SERIES)]),
        (f"{fires - 1}m", DOWN_ALERT, []),  # pending for 5m
        (f"{fires}m30s", DOWN_ALERT, [_down(cause)]),
        (f"{fires}m30s", HEARTBEAT_ALERT, []),  # every burn alert may page
    ])


@needs_promtool
def test_records_refused_at_the_series_limit_open_a_ticket_per_slo_for_ten_minutes(tmp_path: Path) -> None:
    # Two workers export the refusals of one SLO; refusals start at 5m on worker-2 and stop at 7m. Another
    # SLO refuses nothing. The ticket names the SLO and its service, fires at once and lasts while the
    # refusals are within the last 10 minutes.
    slo = {"slo": SERIES["slo"], "service": SERIES["service"]}
    other = {"slo": "stream-router-availability", "service": "stream-router"}
    job = {"job": "slo-stream-worker"}
    rule = _liveness_rule(SERIES_LIMIT_ALERT)
    assert rule["labels"] == {"severity": "ticket"}

    def ticket(value: str) -> dict[str, Any]:
        annotations = {k: v.replace("{{ $labels.slo }}", slo["slo"]).replace("{{ $labels.service }}", slo["service"])
                       .replace("{{ $value | humanize }}", value) for k, v in rule["annotations"].items()}
        return {"exp_labels": {**rule["labels"], **slo}, "exp_annotations": annotations}

    _liveness_test(tmp_path, [
        (_labelled(M_SERIES_REFUSED, **slo, **job, instance="worker-1"), "0x40"),
        (_labelled(M_SERIES_REFUSED, **slo, **job, instance="worker-2"), "0x9 100+100x4 500x30"),
        (_labelled(M_SERIES_REFUSED, **other, **job, instance="worker-1"), "0x40"),
    ], [
        ("4m30s", SERIES_LIMIT_ALERT, []),
        ("7m", SERIES_LIMIT_ALERT, [ticket("500")]),
        ("16m30s", SERIES_LIMIT_ALERT, [ticket("100")]),
        ("17m30s", SERIES_LIMIT_ALERT, []),
    ])


@needs_amtool
@pytest.mark.parametrize(("labels", "receiver"), [
    ({"alertname": HEARTBEAT_ALERT, **SERIES}, RECEIVER_NONE),
    ({"alertname": DOWN_ALERT, "severity": "page", "cause": "workers_absent"}, RECEIVER_PAGE),
    ({"alertname": SERIES_LIMIT_ALERT, "severity": "ticket", "slo": SERIES["slo"]}, RECEIVER_TICKET),
])
def test_amtool_routes_the_heartbeat_nowhere_and_the_streaming_path_down_to_the_page_receiver(
    labels: dict[str, str], receiver: str
) -> None:
    routed = subprocess.run(
        [str(AMTOOL), "config", "routes", "test", f"--config.file={GEN / ALERTMANAGER_FILE}",
         *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True, check=False,
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.split() == [receiver]


@needs_amtool
def test_a_running_alertmanager_mutes_the_burn_of_exactly_the_series_with_a_heartbeat(tmp_path: Path) -> None:
    # The generated config in a real Alertmanager; alerts posted with amtool: a heartbeat for eu-west-1
    # only, and a page for eu-west-1 and for us-east-1. Only eu-west-1's page is inhibited.
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if alertmanager is None:
        pytest.skip("prometheus-alertmanager is not installed")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in (RECEIVER_PAGE, RECEIVER_TICKET):
        (secrets / name).write_text("0123456789abcdef0123456789abcdef\n", encoding="utf-8")
    config = tmp_path / ALERTMANAGER_FILE
    config.write_text(alertmanager_file(load_specs(ROOT / "alerts" / "slos"), pagerduty_url="http://127.0.0.1:9/x",
                                        secrets_dir=str(secrets)), encoding="utf-8")
    port = free_port()
    url = f"--alertmanager.url=http://127.0.0.1:{port}"
    proc = subprocess.Popen([alertmanager, f"--config.file={config}", "--cluster.listen-address=",
                             f"--web.listen-address=127.0.0.1:{port}", f"--storage.path={tmp_path / 'data'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def amtool(*args: str) -> str:
        out = subprocess.run([str(AMTOOL), *args, url], capture_output=True, text=True, check=False, timeout=10)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def labels(series: dict[str, str], **more: str) -> list[str]:
        return [f"{k}={v}" for k, v in {**more, **series}.items()]

    try:
        wait_for(lambda: subprocess.run([str(AMTOOL), "config", "show", url], capture_output=True,
                                        check=False).returncode == 0, "Alertmanager up", every_s=0.2)
        amtool("alert", "add", *labels(SERIES, alertname=HEARTBEAT_ALERT))
        for series in (SERIES, EAST):
            amtool("alert", "add", *labels(series, alertname=ALERT_NAME, severity="page"))
        query = ["-o", "json", "alert", "query"]
        inhibited = yaml.safe_load(amtool(*query, "--inhibited", f"alertname={ALERT_NAME}"))
        active = yaml.safe_load(amtool(*query, f"alertname={ALERT_NAME}"))  # neither silenced nor inhibited
    finally:
        stop_group(proc)
    assert [a["labels"]["cluster"] for a in inhibited] == [SERIES["cluster"]]
    assert inhibited[0]["status"]["inhibitedBy"]  # the heartbeat's fingerprint
    assert [a["labels"]["cluster"] for a in active] == [EAST["cluster"]]
