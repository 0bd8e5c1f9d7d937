"""The SLO_STREAM_KAFKA_* settings: validated at load (naming the variable), secrets never in Settings,
and the one adapter's arguments for kafka-python, aiokafka and Faust."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from streams import settings as settings_mod
from streams.adapters import kafka_security
from streams.core.errors import ConfigError

SASL = {"SLO_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SLO_STREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SLO_STREAM_KAFKA_SASL_USERNAME": "slo-stream", "SLO_STREAM_KAFKA_SASL_PASSWORD": "pw-123"}


@pytest.mark.parametrize(("env", "names"), [
    pytest.param({"SLO_STREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SLO_STREAM_KAFKA_SECURITY_PROTOCOL",
                 id="an unknown protocol"),
    pytest.param({**SASL, "SLO_STREAM_KAFKA_SASL_MECHANISM": ""}, "SLO_STREAM_KAFKA_SASL_MECHANISM",
                 id="SASL without a mechanism"),
    pytest.param({**SASL, "SLO_STREAM_KAFKA_SASL_USERNAME": ""}, "SLO_STREAM_KAFKA_SASL_USERNAME",
                 id="SASL without a user"),
    pytest.param({**SASL, "SLO_STREAM_KAFKA_SASL_PASSWORD": ""}, "SLO_STREAM_KAFKA_SASL_PASSWORD",
                 id="SASL without a password"),
    pytest.param({**SASL, "SLO_STREAM_KAFKA_SASL_PASSWORD_FILE": "/nonexistent"}, "SLO_STREAM_KAFKA_SASL_PASSWORD",
                 id="a password both set and as a file"),
    pytest.param({"SLO_STREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "SLO_STREAM_KAFKA_SSL_CERTFILE": __file__},
                 "SLO_STREAM_KAFKA_SSL_KEYFILE", id="a certificate without its key"),
    pytest.param({"SLO_STREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "SLO_STREAM_KAFKA_SSL_CAFILE": "/nonexistent"},
                 "SLO_STREAM_KAFKA_SSL_CAFILE", id="a CA file that cannot be read"),
    pytest.param({"SLO_STREAM_KAFKA_SSL_CAFILE": __file__}, "SLO_STREAM_KAFKA_SSL_CAFILE",
                 id="a TLS file with PLAINTEXT"),
    pytest.param({"SLO_STREAM_KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "SLO_STREAM_KAFKA_SSL_CHECK_HOSTNAME",
                 id="a hostname check that is not a boolean"),
])
def test_a_bad_security_setting_is_refused_at_load_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_mod.load(env)
    assert names in str(err.value)
    assert "pw-123" not in str(err.value)


def test_the_secret_is_no_part_of_settings_and_plaintext_changes_no_client_argument() -> None:
    s = settings_mod.load({**SASL, "SLO_STREAM_KAFKA_SSL_CHECK_HOSTNAME": "false"})
    assert "pw-123" not in repr(s) and s.kafka_ssl_check_hostname is False
    sec = kafka_security.from_settings(s, SASL)
    assert "pw-123" not in repr(sec)
    plain = kafka_security.from_settings(settings_mod.load({}), {})
    assert kafka_security.kafka_python(plain) == {} and kafka_security.aiokafka(plain) == {}
    assert kafka_security.faust_credentials(plain) is None


def test_sasl_ssl_gives_each_library_the_same_context_and_credentials(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw-123\n")
    env = {**SASL, "SLO_STREAM_KAFKA_SASL_PASSWORD": "", "SLO_STREAM_KAFKA_SASL_PASSWORD_FILE": str(secret)}
    sec = kafka_security.from_settings(settings_mod.load(env), env)
    kp, ak = kafka_security.kafka_python(sec), kafka_security.aiokafka(sec)
    assert isinstance(ak["ssl_context"], ssl.SSLContext) and kp["ssl_context"] is ak["ssl_context"]
    assert ak["security_protocol"] == "SASL_SSL" and ak["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (ak["sasl_plain_username"], ak["sasl_plain_password"]) == ("slo-stream", "pw-123")
    assert kp["ssl_check_hostname"] is True
    creds = kafka_security.faust_credentials(sec)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.ssl_context is ak["ssl_context"] and "pw-123" not in repr(creds)
