"""The gate and status API over real HTTP against real workers on the embedded broker."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.adapters.processes import free_port
from tests.integration.harness import ROOT, Deployment, availability_specs
from tests.integration.test_suspects import playback, rollout

pytestmark = pytest.mark.integration

HOUR = 3600
READ = "read-token-0123456789abcdef"
WRITE = "write-token-0123456789abcdef"
SERVICES = ("cart-api", "search-api", "lyrics-api", "queue-api", "radio-api")


def call(url: str, *, token: str | None = None, body: Any = None, raw: bytes | None = None,
         method: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def raw_status(port: int, method: str, path: str, headers: dict[str, bytes], body: bytes = b"") -> int:
    """The status of one request whose header values are bytes as given (not necessarily UTF-8)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path)
        for name, value in {**headers, "Content-Length": str(len(body)).encode()}.items():
            conn.putheader(name, value)
        conn.endheaders(body or None)
        return conn.getresponse().status
    finally:
        conn.close()


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Any, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert proc.poll() is None, log()
        try:
            status, _, _ = call(f"{base}/readyz")
            if status == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"never ready\n{log()}")


def argo_measurement(body: dict[str, Any], *, json_path: str, success: str, failure: str) -> str:
    """How Argo Rollouts' web provider judges a response: ``jsonPath`` picks ``result`` and the
    conditions (``result == "<value>"``, the form docs/gate.md recommends) decide."""
    m = re.fullmatch(r"\{\$\.(\w+)\}", json_path)
    assert m, json_path
    result = body[m.group(1)]

    def holds(cond: str) -> bool:
        cm = re.fullmatch(r'result == "(\w+)"', cond)
        assert cm, cond
        return bool(result == cm.group(1))

    if holds(success):
        return "Successful"
    if holds(failure):
        return "Failed"
    return "Inconclusive"


@pytest.fixture()
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Deployment:
    specs = availability_specs(tmp_path / "specs", list(SERVICES), "a service of the gate API tests")
    return Deployment.create(kafka_bootstrap, tmp_path, SLO_STREAM_SPECS=str(specs),
                             SLO_STREAM_ALLOWED_LATENESS="20", SLO_STREAM_GATE_READ_TOKEN=READ,
                             SLO_STREAM_GATE_TOKEN=WRITE, SLO_STREAM_STALE_AFTER="1h",
                             # The scenario is history replayed now: its event time is hours behind.
                             SLO_STREAM_GATE_MAX_EVALUATION_LAG="6h", SLO_STREAM_GATE_STALE_AFTER="1h")


def test_the_gate_answers_each_endpoint_with_auth_and_errors_then_blames_the_bad_rollout(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start = int(time.time()) // 60 * 60 - 3 * HOUR
    onset = start + 2 * HOUR
    with dep.worker(SLO_STREAM_WEB_PORT=str(port)) as proc:
        wait_ready(base, proc, dep.log_text)
        # Probes and the OpenAPI document need no token; nor does /metrics by default
        # (SLO_STREAM_METRICS_REQUIRE_TOKEN: tests/faults/test_security.py).
        assert call(f"{base}/healthz")[:2] == (200, {"status": "ok"})
        status, doc, _ = call(f"{base}/v1/openapi.json")
        assert status == 200 and doc["openapi"].startswith("3.") and "/v1/gate" in doc["paths"]
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            assert resp.status == 200 and b"slo_stream_" in resp.read()
        # Reads need the read (or write) token when one is configured.
        status, body, headers = call(f"{base}/v1/slos")
        assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert call(f"{base}/v1/slos", token="wrong-token-0123456789")[0] == 403
        status, body, _ = call(f"{base}/v1/slos", token=READ)
        assert status == 200 and sorted(s["name"] for s in body["slos"]) == sorted(f"{s}-availability"
                                                                                   for s in SERVICES)
        assert call(f"{base}/v1/slos/cart-api-availability", token=WRITE)[0] == 200
        assert call(f"{base}/v1/slos/nope", token=READ)[0] == 404
        # Bad parameters: 400 with a message.
        status, body, _ = call(f"{base}/v1/gate", token=READ)
        assert status == 400 and "service" in body["error"]
        status, body, _ = call(f"{base}/v1/gate?service=cart-api&platform=mainframe", token=READ)
        assert status == 400 and "platform" in body["error"]
        status, body, _ = call(f"{base}/v1/gate?service=DROP%20TABLE", token=READ)
        assert status == 400 and "not a valid name" in body["error"]
        # Nothing counted yet: the gate cannot tell (never proceed).
        status, body, _ = call(f"{base}/v1/gate?service=cart-api", token=READ)
        assert status == 200 and body["decision"] == "unknown" and body["exit_code"] == 3

        # Healthy history: proceed, and Argo's success condition holds on the real body.
        dep.produce(playback(start)[: 5 * 6 * 60])  # the first hour of the five services
        deadline = time.time() + 60
        while time.time() < deadline:
            status, body, _ = call(f"{base}/v1/gate?service=cart-api&cluster=eu-west-1", token=READ)
            if body.get("decision") == "proceed":
                break
            time.sleep(0.3)
        assert body["decision"] == "proceed", body
        assert body["series"] and all(s["decision"] == "proceed" for s in body["series"])
        # The conditions of deploy/examples/argo-analysis-template.yaml, as Argo would evaluate them.
        from tests.unit.test_examples import argo_metric

        m = argo_metric()
        argo = {"json_path": m["provider"]["web"]["jsonPath"], "success": m["successCondition"],
                "failure": m["failureCondition"]}
        assert argo_measurement(body, **argo) == "Successful"
        flagger = {"name": "cart-api", "namespace": "shop", "phase": "Progressing", "checksum": "abc",
                   "metadata": {"cluster": "eu-west-1", "revision": "12"}}
        status, body, _ = call(f"{base}/v1/flagger/confirm-promotion", body=flagger, token=READ)
        assert status == 200 and body["flagger"]["accepted"] is True
        status, body, _ = call(f"{base}/v1/flagger/rollback", body=flagger, token=READ)
        assert status == 412 and body["flagger"]["accepted"] is False, "a healthy canary is not rolled back"
        # Flagger cannot send headers: the read token may ride in metadata.
        status, _, _ = call(f"{base}/v1/flagger/confirm-promotion",
                            body={**flagger, "metadata": {**flagger["metadata"], "token": READ}})
        assert status == 200
        assert call(f"{base}/v1/flagger/confirm-promotion", body=flagger)[0] == 401
        assert call(f"{base}/v1/flagger/not-a-hook", body=flagger, token=READ)[0] == 404
        assert call(f"{base}/v1/flagger/rollout", raw=b"{broken", token=READ)[0] == 400
        assert call(f"{base}/v1/flagger/rollout", raw=b"{" + b" " * 70_000 + b"}", token=READ)[0] == 413
        # A metadata field that is not a string: 400, not a traceback.
        for field in ("service", "cluster", "platform", "revision"):
            for junk in (12, ["cart-api"], {"name": "cart-api"}, True):
                bad = {**flagger, "metadata": {**flagger["metadata"], field: junk}}
                status, body, _ = call(f"{base}/v1/flagger/confirm-rollout", body=bad, token=READ)
                assert status == 400 and field in body["error"], (field, junk, status, body)
        # An Authorization header that is not UTF-8: 401 on every protected endpoint (a control
        # character in it: 400 from aiohttp's parser, before any view).
        protected = [("GET", "/v1/slos", b""), ("GET", "/v1/slos/cart-api-availability", b""),
                     ("GET", "/v1/gate?service=cart-api", b""), ("GET", "/v1/freezes?service=cart-api", b""),
                     ("POST", "/v1/freezes", orjson.dumps({"service": "cart-api", "reason": "x"})),
                     ("POST", "/v1/flagger/rollout", orjson.dumps(flagger))]
        for auth, expected in ((b"Bearer \xff\xfe" + READ.encode(), 401), (b"Bearer " + READ.encode() + b"\xe9", 401),
                               (b"\xc3\x28 x", 401), (b"Bearer \x01" + READ.encode(), 400)):
            for method, path, data in protected:
                got = raw_status(port, method, path, {"Authorization": auth, "Content-Type": b"application/json"},
                                 data)
                assert got == expected, (auth, method, path, got)

        # Change freezes: a write, so the write token and nothing else.
        freeze = {"service": "search-api", "reason": "migration window of the search team", "duration": "30m"}
        assert call(f"{base}/v1/freezes", body=freeze)[0] == 401
        assert call(f"{base}/v1/freezes", body=freeze, token=READ)[0] == 403
        assert call(f"{base}/v1/freezes", body={**freeze, "duration": "30y"}, token=WRITE)[0] == 400
        status, body, _ = call(f"{base}/v1/freezes", body=freeze, token=WRITE)
        assert status == 202 and body["accepted"] is True
        deadline = time.time() + 30
        while time.time() < deadline:
            status, body, _ = call(f"{base}/v1/gate?service=search-api", token=READ)
            if body.get("decision") == "hold":
                break
            time.sleep(0.2)
        assert [r["code"] for r in body["reasons"]][:1] == ["change_freeze"], body
        assert "migration window of the search team" in body["summary"]
        status, _, _ = call(f"{base}/v1/freezes", body={"service": "search-api", "lift": True}, token=WRITE)
        assert status == 202

        # The bad rollout of cart-api in eu-west-1, then its burn: the gate says rollback for that
        # revision, Argo fails the analysis, Flagger's rollback hook answers 200.
        dep.produce([rollout(onset - 240, "cart-api", "eu-west-1", "12", "5f6d7c8b9a", "1.4.0")],
                    topic=dep.settings.topic_k8s_rollouts)
        deadline = time.time() + 30
        while time.time() < deadline and "cart-api" not in _changelog_keys(dep):
            time.sleep(0.2)
        dep.produce(playback(start)[5 * 6 * 60:])
        deadline = time.time() + 90
        while time.time() < deadline:
            status, body, _ = call(f"{base}/v1/gate?service=cart-api&cluster=eu-west-1&revision=12", token=READ)
            if body.get("decision") == "rollback":
                break
            time.sleep(0.3)
        assert body["decision"] == "rollback", body
        assert body["reasons"][0]["code"] == "suspect_rollout" and body["suspects"][0]["revision"] == "12"
        assert argo_measurement(body, **argo) == "Failed"
        status, body, _ = call(f"{base}/v1/flagger/rollback", body=flagger, token=READ)
        assert status == 200 and body["decision"] == "rollback"
        status, body, _ = call(f"{base}/v1/flagger/confirm-traffic-increase", body=flagger, token=READ)
        assert status == 412
        # Another service burning with no rollout of its own: hold (a page), never rollback.
        status, body, _ = call(f"{base}/v1/gate?service=search-api&cluster=eu-west-1&revision=3", token=READ)
        assert body["decision"] == "hold" and body["reasons"][0]["code"] == "page_firing"

        # The CLI for CI pipelines: exit codes 2 (rollback), 1 (hold), 3 (unknown / no answer).
        env = {**os.environ, "SLO_STREAM_GATE_READ_TOKEN": READ}
        cli = [sys.executable, "-m", "streams", "gate", "check", "--url", base]
        got = subprocess.run([*cli, "--service", "cart-api", "--cluster", "eu-west-1", "--revision", "12"],
                             env=env, capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert got.returncode == 2 and got.stdout.startswith("rollback cart-api"), got
        got = subprocess.run([*cli, "--service", "search-api"], env=env, capture_output=True, text=True,
                             cwd=ROOT, timeout=30)
        assert got.returncode == 1 and got.stdout.startswith("hold search-api"), got
        got = subprocess.run([*cli, "--service", "no-such-service"], env=env, capture_output=True, text=True,
                             cwd=ROOT, timeout=30)
        assert got.returncode == 3, got
        got = subprocess.run([sys.executable, "-m", "streams", "gate", "check", "--url",
                              f"http://127.0.0.1:{free_port()}", "--service", "cart-api"],
                             env=env, capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert got.returncode == 3 and "cannot tell: no answer" in got.stdout, got
    log = dep.log_text()
    for secret in (READ, WRITE):
        assert secret not in log
    # Bad input is answered, not logged as a failure.
    assert "Traceback" not in log and " failed" not in log, log[-3000:]


def _changelog_keys(dep: Deployment) -> set[str]:
    from tests.integration.harness import changelog_state

    return set(changelog_state(dep))


def test_any_worker_answers_any_service_by_asking_the_owner(deployment: Deployment) -> None:
    dep = deployment
    ports = [free_port(), free_port()]
    start = int(time.time()) // 60 * 60 - 2 * HOUR
    with dep.worker("w1", SLO_STREAM_WEB_PORT=str(ports[0])) as p1, \
            dep.worker("w2", SLO_STREAM_WEB_PORT=str(ports[1])) as p2:
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        dep.produce(playback(start)[: 5 * 6 * 60])
        answered: dict[str, set[str]] = {}
        deadline = time.time() + 90
        while time.time() < deadline:
            answered.clear()
            ok = True
            for svc in SERVICES:
                for base in bases:
                    try:
                        status, body, headers = call(f"{base}/v1/gate?service={svc}", token=READ)
                    except (urllib.error.URLError, ConnectionError):
                        ok = False
                        continue
                    ok = ok and status == 200 and body.get("decision") == "proceed"
                    answered.setdefault(svc, set()).add(headers.get("X-Slo-Stream-Answered-By", ""))
            if ok and all(len(v) == 1 for v in answered.values()):
                break
            assert p1.poll() is None and p2.poll() is None, dep.log_text("w1") + dep.log_text("w2")
            time.sleep(0.5)
        assert ok, answered
        # Each service is answered by one worker whichever worker was asked, and both workers own some.
        owners = {next(iter(v)) for v in answered.values()}
        assert all(len(v) == 1 for v in answered.values()), answered
        assert owners == set(bases), f"both workers own services: {answered}"
