"""The HTTP server's deadlines and the /metrics choice: documented defaults, durations read like every
other, and a value out of range refused naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streams import settings as settings_mod
from streams.adapters.http_api import Tokens
from streams.core.errors import ConfigError


def test_the_defaults_are_the_documented_ones() -> None:
    s = settings_mod.load({})
    assert (s.http_header_timeout_s, s.http_body_timeout_s, s.http_idle_timeout_s) == (10, 10, 60)
    assert s.metrics_require_token is False


@pytest.mark.parametrize("env, field, value", [
    ({"SLO_STREAM_HTTP_HEADER_TIMEOUT": "5"}, "http_header_timeout_s", 5),
    ({"SLO_STREAM_HTTP_BODY_TIMEOUT": "30s"}, "http_body_timeout_s", 30),
    ({"SLO_STREAM_HTTP_IDLE_TIMEOUT": "2m"}, "http_idle_timeout_s", 120),
    ({"SLO_STREAM_METRICS_REQUIRE_TOKEN": "true", "SLO_STREAM_GATE_READ_TOKEN": "r" * 32}, "metrics_require_token",
     True),
], ids=["a header timeout in seconds", "a body timeout as 30s", "an idle timeout as 2m", "metrics behind the token"])
def test_read_from_the_environment(env: dict[str, str], field: str, value: object) -> None:
    assert getattr(settings_mod.load(env), field) == value


@pytest.mark.parametrize("name, raw", [
    ("SLO_STREAM_HTTP_HEADER_TIMEOUT", "0"), ("SLO_STREAM_HTTP_HEADER_TIMEOUT", "10m"),
    ("SLO_STREAM_HTTP_BODY_TIMEOUT", "0s"), ("SLO_STREAM_HTTP_BODY_TIMEOUT", "11m"),
    ("SLO_STREAM_HTTP_IDLE_TIMEOUT", "2h"), ("SLO_STREAM_HTTP_IDLE_TIMEOUT", "soon"),
    ("SLO_STREAM_METRICS_REQUIRE_TOKEN", "maybe"),
], ids=lambda v: str(v))
def test_out_of_range_is_refused_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        settings_mod.load({name: raw})



@pytest.mark.parametrize("token", [{}, {"SLO_STREAM_GATE_READ_TOKEN": ""}], ids=["unset", "empty"])
def test_a_worker_asked_for_metrics_behind_a_token_without_a_read_token_refuses_to_start(
        token: dict[str, str]) -> None:
    """Without a read token every read is open: /metrics would be too, contrary to what was asked. Only
    the worker serves that /metrics: the other commands, sharing its configuration, load it as it is."""
    env = {"SLO_STREAM_METRICS_REQUIRE_TOKEN": "true", "SLO_STREAM_SPECS": "/nonexistent", **token}
    with pytest.raises(ConfigError, match="SLO_STREAM_METRICS_REQUIRE_TOKEN=true but SLO_STREAM_GATE_READ_TOKEN"):
        Tokens.from_env(env).check(settings_mod.load(env))
    assert settings_mod.load(env).metrics_require_token, "the notifier and the rest load the settings"
    assert Tokens.from_env({**env, "SLO_STREAM_GATE_READ_TOKEN": "r" * 32}).check(settings_mod.load(env)).read
    env_cli = {k: v for k, v in os.environ.items() if not k.startswith(("SLO_STREAM_", "KAFKA_"))}
    worker = subprocess.run([sys.executable, "-m", "streams", "worker"], env={**env_cli, **env},
                            capture_output=True, text=True, timeout=60, check=False)
    lines = worker.stderr.strip().splitlines()
    assert worker.returncode == 2 and len(lines) == 1, worker.stderr
    assert "SLO_STREAM_METRICS_REQUIRE_TOKEN=true but SLO_STREAM_GATE_READ_TOKEN" in lines[0]
