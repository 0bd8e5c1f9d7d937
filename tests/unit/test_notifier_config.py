"""The notifier's routing configuration: keys from env or files, per-SLO routes, errors with file,
line and field, and no key in any message."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from streams.adapters.notifier import load_routing
from streams.core.errors import ConfigError
from streams.core.model import Severity
from streams.core.notify import alert_event
from streams.core.wire.alert import decode_alert
from streams.settings import Settings


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_keys_from_env_and_files_per_kind(tmp_path: Path) -> None:
    env = {"SLO_STREAM_PAGERDUTY_ROUTING_KEY": "k-default",
           "SLO_STREAM_PAGERDUTY_ROUTING_KEY_TICKET_FILE": write(tmp_path / "t", "k-ticket\n")}
    r = load_routing(Settings(), env)
    assert (r.key_for("page"), r.key_for("ticket"), r.key_for("change")) == ("k-default", "k-ticket", "k-default")
    assert "k-" not in repr(r)


def test_both_a_key_and_its_file_is_an_error(tmp_path: Path) -> None:
    env = {"SLO_STREAM_PAGERDUTY_ROUTING_KEY": "x", "SLO_STREAM_PAGERDUTY_ROUTING_KEY_FILE": "/nonexistent"}
    with pytest.raises(ConfigError, match="both set"):
        load_routing(Settings(), env)


def test_per_slo_routes_override_the_severity_keys(tmp_path: Path) -> None:
    routes = write(tmp_path / "routes.yaml",
                   f"playback-api-availability:\n  page: {write(tmp_path / 'pa', 'k-playback-page')}\n")
    r = load_routing(Settings(), {"SLO_STREAM_PAGERDUTY_ROUTING_KEY": "k-default",
                                  "SLO_STREAM_PAGERDUTY_ROUTES_FILE": routes})
    alert = decode_alert({"dedup_key": "d", "slo": "playback-api-availability", "service": "playback-api",
                          "severity": "page", "state": "firing", "ts": 0,
                          "dimensions": {"cluster": "eu-west-1", "region": "eu-west", "platform": "kubernetes"},
                          "error_budget_remaining": 0.5, "objective": 0.999})
    assert alert_event(alert, r)[1]["routing_key"] == "k-playback-page"
    assert alert_event(replace(alert, severity=Severity.TICKET), r)[1]["routing_key"] == "k-default"
    assert alert_event(replace(alert, slo="other"), r)[1]["routing_key"] == "k-default"


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n- b\n", "routes.yaml:1: must map SLO names"),
    ("Bad_Name:\n  page: /x\n", "routes.yaml:1: 'Bad_Name' is not an SLO name"),
    ("good:\n  warn: /y\n", "routes.yaml:2: good.warn: only page and ticket"),
    ("good:\n  page: /nonexistent/key\n", "routes.yaml:2: good.page: cannot read /nonexistent/key"),
])
def test_bad_routes_fail_at_load_with_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    routes = write(tmp_path / "routes.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_routing(Settings(), {"SLO_STREAM_PAGERDUTY_ROUTING_KEY": "k", "SLO_STREAM_PAGERDUTY_ROUTES_FILE": routes})
    assert message in str(exc.value)
