"""The examples in deploy/examples/ speak the gate's real contract."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from streams.core.gate import FlaggerHook

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
METADATA_KEYS = {"service", "cluster", "platform", "revision", "step", "token"}


def argo_metric() -> dict:
    doc = yaml.safe_load((EXAMPLES / "argo-analysis-template.yaml").read_text())
    assert doc["apiVersion"] == "argoproj.io/v1alpha1" and doc["kind"] == "AnalysisTemplate"
    (metric,) = doc["spec"]["metrics"]
    return metric


def test_the_argo_template_reads_the_decision_and_fails_only_on_rollback() -> None:
    m = argo_metric()
    web = m["provider"]["web"]
    assert web["jsonPath"] == "{$.decision}"
    assert m["successCondition"] == 'result == "proceed"'
    assert m["failureCondition"] == 'result == "rollback"'
    url = urlsplit(web["url"])
    assert url.path == "/v1/gate"
    assert set(parse_qs(url.query)) == {"service", "cluster", "revision"}
    assert web["headers"] == [{"key": "Authorization", "value": "Bearer {{args.gate-token}}"}]


def test_the_flagger_canary_uses_real_hooks_and_known_metadata() -> None:
    doc = yaml.safe_load((EXAMPLES / "flagger-canary.yaml").read_text())
    assert doc["apiVersion"] == "flagger.app/v1beta1" and doc["kind"] == "Canary"
    hooks = doc["spec"]["analysis"]["webhooks"]
    assert {h["type"] for h in hooks} == {"confirm-traffic-increase", "confirm-promotion", "rollback"}
    for h in hooks:
        assert urlsplit(h["url"]).path == f"/v1/flagger/{FlaggerHook(h['type']).value}"
        assert set(h["metadata"]) <= METADATA_KEYS
        assert h["metadata"]["service"] == doc["spec"]["targetRef"]["name"]
