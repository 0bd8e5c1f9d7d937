"""Security against real processes: nobody writes without the write token, no body beyond 64 KiB is
read, and no secret reaches a log line, a metric or a topic.

- The gate API of a real worker (write and read tokens set): ``POST /v1/freezes`` answers 401 without
  a token or with a malformed Authorization header, 403 with a wrong one, a near miss (a prefix, one
  character off, other case, with the read token), and 202 only with the write token; reads answer 401
  / 403 / 200 likewise, ``/metrics`` too when ``SLO_STREAM_METRICS_REQUIRE_TOKEN`` is set (the OpenAPI
  document and the probes stay open); no answer echoes a token. Bodies over 64 KiB answer 413, with a Content-Length
  and chunked without one (sent in pieces); a chunked body under the limit sent in pieces is read whole.
- Secrets: a worker (debug log level) and a notifier run with known gate tokens and PagerDuty routing
  keys (from the environment and from ``*_FILE`` paths) through an outage that pages, rollouts that
  become change events, and requests with right and wrong tokens (one in a header aiohttp cannot
  parse, whose error quotes it); the receiver proves the keys were
  used, then every log line, both /metrics pages, every topic of the deployment (alerts, status,
  dead letters, the changes topic, ...) and ``slo-stream settings`` are searched for each secret.
- RBAC least privilege of deploy/: asserted by tests/integration/test_deploy.py
  (test_rbac_grants_exactly_the_least_privilege, test_only_the_kube_bridge_gets_a_kubernetes_api_token,
  test_secrets_are_referenced_never_inlined), not repeated here.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.adapters.http_api import MAX_BODY
from streams.adapters.processes import free_port, stop_group
from streams.core import conventions as c
from streams.demo.pagerduty_receiver import PagerDutyReceiver
from tests.faults.helpers_input import alive, child_pid, report, scrape, wait_until
from tests.integration.harness import ROOT, Deployment
from tests.integration.test_spine import outage_scenario

pytestmark = pytest.mark.integration

TAG = uuid.uuid4().hex[:12]
WRITE = f"Wr1te-gate-token-{TAG}"
READ = f"R3ad-gate-token-{TAG}"
WRONG = f"Wr0ng-gate-token-{TAG}"
PD_PAGE = f"PDpage{TAG}0000000000000a"
PD_TICKET = f"PDtick{TAG}0000000000000b"
PD_CHANGE = f"PDchng{TAG}0000000000000c"
SECRETS = {"write token": WRITE, "read token": READ, "wrong token": WRONG, "page key": PD_PAGE,
           "ticket key": PD_TICKET, "change key": PD_CHANGE}


def call(port: int, method: str, path: str, *, token: str | None = None, auth: str | None = None,
         body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if auth is not None:
        headers["Authorization"] = auth
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def chunked(port: int, path: str, token: str, body: bytes, piece: int = 4096) -> tuple[int, bytes]:
    """POST ``body`` with Transfer-Encoding: chunked (no Content-Length), one small write per chunk,
    as a slow client sends it: the server sees the body arrive in pieces."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                   "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                   "Connection: close\r\n\r\n").encode())
        for i in range(0, len(body), piece):
            part = body[i:i + piece]
            try:
                s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered early (413) and closed
            time.sleep(0.002)  # the pieces arrive apart, not as one segment
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(b"0\r\n\r\n")
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def freeze(reason: str = "release train") -> dict[str, Any]:
    return {"service": "playback-api", "reason": reason, "duration": "30m"}


@contextlib.contextmanager
def secured_worker(dep: Deployment, tmp: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    (tmp / "read-token").write_text(READ + "\n")
    with dep.worker(SLO_STREAM_WEB_PORT=str(port), SLO_STREAM_GATE_TOKEN=WRITE,
                    SLO_STREAM_GATE_READ_TOKEN_FILE=str(tmp / "read-token"),
                    SLO_STREAM_METRICS_REQUIRE_TOKEN="true") as proc:
        wait_until(lambda: _ready(port), 90, "the worker to be ready", proc, dep.log_text)
        yield proc


def _ready(port: int) -> bool:
    try:
        return call(port, "GET", "/readyz")[0] == 200
    except OSError:
        return False


def test_write_endpoints_refuse_missing_and_wrong_tokens_and_bodies_over_64_kib(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path, partitions=1)
    port = free_port()
    with secured_worker(dep, tmp_path, port) as proc:
        pid = child_pid(proc)
        refused = {
            "no Authorization": (None, None, 401),
            "an empty bearer": (None, "Bearer ", 401),
            "another scheme": (None, f"Basic {WRITE}", 401),
            "the token alone": (None, WRITE, 401),
            "a wrong token": (WRONG, None, 403),
            "the read token": (READ, None, 403),
            "a prefix of the token": (WRITE[:-1], None, 403),
            "the token and more": (WRITE + "x", None, 403),
            "the token in upper case": (WRITE.upper(), None, 403),
            "one character off": (WRITE[:-1] + ("0" if WRITE[-1] != "0" else "1"), None, 403),
        }
        answers = []
        for what, (token, auth, status) in refused.items():
            got, headers, body = call(port, "POST", "/v1/freezes", token=token, auth=auth, body=freeze())
            answers.append(body)
            assert got == status, (what, got, body)
            if status == 401:
                assert headers.get("www-authenticate", "").startswith("Bearer"), what
        got, _, body = call(port, "POST", "/v1/freezes", token=WRITE, body=freeze())
        assert got == 202 and orjson.loads(body)["accepted"] is True, body

        # Reads: the read or the write token; /metrics too (SLO_STREAM_METRICS_REQUIRE_TOKEN=true).
        for path in ("/v1/freezes?service=playback-api", "/metrics"):
            for token, status in ((None, 401), (WRONG, 403), (READ, 200), (WRITE, 200)):
                got, _, body = call(port, "GET", path, token=token)
                answers.append(body)
                assert got == status, (path, token, got, body)
        # The API's description and the probes stay open.
        for path in ("/v1/openapi.json", "/healthz", "/readyz"):
            assert call(port, "GET", path)[0] == 200, path
        flagger = {"name": "playback-api", "namespace": "playback", "phase": "Progressing",
                   "metadata": {"token": WRONG}}
        got, _, body = call(port, "POST", "/v1/flagger/confirm-rollout", body=flagger)
        assert got == 403, body
        answers.append(body)

        # Body limits: 413 past 64 KiB with or without a Content-Length; within it, read whole.
        padded = orjson.dumps({**freeze(), "pad": "x" * MAX_BODY})
        assert len(padded) > MAX_BODY
        assert call(port, "POST", "/v1/freezes", token=WRITE, raw=padded)[0] == 413
        status, body = chunked(port, "/v1/freezes", WRITE, padded)
        assert status == 413, body
        status, body = chunked(port, "/v1/freezes", WRITE, b" " * (4 * MAX_BODY) + orjson.dumps(freeze()))
        assert status == 413, body
        status, body = chunked(port, "/v1/flagger/confirm-rollout", READ, padded)
        assert status == 413, body
        exact = orjson.dumps({**freeze("fits exactly"), "pad": ""})
        exact = exact[:-1] + b" " * (MAX_BODY - len(exact)) + b"}"
        assert len(exact) == MAX_BODY
        assert call(port, "POST", "/v1/freezes", token=WRITE, raw=exact)[0] == 202
        status, body = chunked(port, "/v1/freezes", WRITE, exact, piece=1024)
        assert status == 202, body
        status, body = chunked(port, "/v1/freezes", WRITE, orjson.dumps(freeze("in pieces")), piece=7)
        assert status == 202, body

        assert proc.poll() is None and alive(pid) and child_pid(proc) == pid

        def frozen() -> list[str]:
            got, _, body = call(port, "GET", "/v1/freezes?service=playback-api", token=READ)
            return [f["reason"] for f in orjson.loads(body)["freezes"]] if got == 200 else []

        # The last freeze accepted (the latest per service and cluster wins) is the one in force.
        wait_until(lambda: frozen() == ["in pieces"], 30, "the freeze sent in 7-byte chunks", proc, dep.log_text)
    for body in answers:
        for secret in (WRITE, READ, WRONG):
            assert secret.encode() not in body
    report(request, f"POST /v1/freezes refused {len(refused)} ways (401 without a usable bearer, 403 for a wrong or "
           "near-miss token or the read token), 202 with the write token; reads 401/403/200/200",
           f"413 for bodies over {MAX_BODY} bytes with a Content-Length and chunked (freezes, Flagger); "
           "a chunked body of exactly 64 KiB in 1 KiB pieces and one in 7-byte pieces read whole (202)")


@contextlib.contextmanager
def debug_worker(dep: Deployment, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """The harness's worker, at debug level: the most it ever logs."""
    env = {**os.environ, **dep.env, "SLO_STREAM_DATADIR": str(dep.tmp / "w1-data"), **extra}
    with open(dep.tmp / "w1.log", "wb") as log:
        proc = subprocess.Popen(["timeout", "-k", "10", "600", sys.executable, "-m", "streams", "worker",
                                 "--loglevel", "debug"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)


@contextlib.contextmanager
def notifier(dep: Deployment, receiver: PagerDutyReceiver, tmp: Path, metrics_port: int
             ) -> Iterator[subprocess.Popen[bytes]]:
    (tmp / "ticket-key").write_text(PD_TICKET + "\n")
    env = dict(os.environ)
    env.update(dep.env)
    env.update({"SLO_STREAM_NOTIFIER_METRICS_PORT": str(metrics_port), "SLO_STREAM_PAGERDUTY_URL": receiver.url,
                "SLO_STREAM_PAGERDUTY_TIMEOUT": "2", "SLO_STREAM_PAGERDUTY_ROUTING_KEY": PD_PAGE,
                "SLO_STREAM_PAGERDUTY_ROUTING_KEY_TICKET_FILE": str(tmp / "ticket-key"),
                "SLO_STREAM_PAGERDUTY_ROUTING_KEY_CHANGE": PD_CHANGE})
    with open(tmp / "notifier.log", "wb") as out:
        proc = subprocess.Popen(["timeout", "-k", "10", "600", sys.executable, "-m", "streams", "notifier",
                                 "--loglevel", "debug"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)


def all_topic_bytes(bootstrap: str, topics: list[str]) -> bytes:
    """Every key and value of ``topics``, read from the beginning to the end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1500)
    tps = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out = bytearray()
    try:
        for msg in consumer:
            out += (msg.key or b"") + b"\n" + (msg.value or b"") + b"\n"
    finally:
        consumer.close()
    return bytes(out)


def test_no_token_or_routing_key_reaches_a_log_line_a_metric_or_a_topic(kafka_bootstrap: str, tmp_path: Path,
                                                                        request: pytest.FixtureRequest) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path, partitions=2, SLO_STREAM_STALE_AFTER="3")
    s = dep.settings
    scenario, _ = outage_scenario()
    page_key = c.dedup_key(c.series_key("playback-api-availability", "eu-west-1", "eu-west", "kubernetes"), "page")
    receiver = PagerDutyReceiver().start()
    port, notifier_port = free_port(), free_port()
    try:
        with debug_worker(dep, SLO_STREAM_WEB_PORT=str(port), SLO_STREAM_GATE_TOKEN=WRITE,
                          SLO_STREAM_GATE_READ_TOKEN=READ, SLO_STREAM_PAGERDUTY_ROUTING_KEY=PD_PAGE) as proc, \
                notifier(dep, receiver, tmp_path, notifier_port):
            wait_until(lambda: _ready(port), 90, "the worker to be ready", proc, dep.log_text)
            dep.produce([(k, v) for _, k, v in scenario.messages()])
            rollout = {"schema_version": 1, "ts": scenario.start_ts + 7000, "cluster": "eu-west-1",
                       "namespace": "playback", "deployment": "playback-api", "service": "playback-api",
                       "revision": "42", "previous_revision": "41", "images": ["registry.example/playback-api:42"],
                       "phase": "started"}
            dep.produce([(b"eu-west-1/playback/playback-api", orjson.dumps(rollout))], topic=s.topic_k8s_rollouts)
            for token in (None, WRONG, READ, WRITE):
                call(port, "POST", "/v1/freezes", token=token, body=freeze())
                call(port, "GET", "/v1/gate?service=playback-api", token=token)
                call(port, "POST", "/v1/flagger/rollout", body={"name": "playback-api", "metadata": {"token": token}})
            call(port, "GET", "/v1/gate?service=playback-api", auth=f"Basic {WRITE}")
            # aiohttp's parser refuses a control character (400); its error quotes the header
            assert call(port, "GET", "/v1/gate?service=playback-api", auth=f"Bearer \x01{WRITE}")[0] == 400

            def delivered() -> bool:
                got = receiver.accepted()
                return any(b["dedup_key"] == page_key and b["event_action"] == "resolve" for b in got) and \
                    bool(receiver.accepted("/v2/change/enqueue"))

            wait_until(delivered, 180, "the page, its resolve and a change event at the receiver", proc,
                       dep.log_text)
            worker_metrics, _ = scrape(f"http://127.0.0.1:{port}/metrics")
            notifier_metrics, _ = scrape(f"http://127.0.0.1:{notifier_port}/metrics")
        # The keys were really used: the receiver got each where it belongs.
        events = receiver.accepted()
        assert any(b["routing_key"] == PD_PAGE for b in events)
        for b in events:
            assert b["routing_key"] == (PD_PAGE if "/page/" in b["dedup_key"] else PD_TICKET), b
        assert {b["routing_key"] for b in receiver.accepted("/v2/change/enqueue")} == {PD_CHANGE}
    finally:
        receiver.stop()
    topics = [*s.topics]
    places = {
        "worker log": dep.log_text().encode(),
        "notifier log": (tmp_path / "notifier.log").read_bytes(),
        "worker /metrics": worker_metrics.encode(),
        "notifier /metrics": notifier_metrics.encode(),
        "topics": all_topic_bytes(kafka_bootstrap, topics),
    }
    settings_out = subprocess.run(
        [sys.executable, "-m", "streams", "settings"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, **dep.env, "SLO_STREAM_GATE_TOKEN": WRITE, "SLO_STREAM_PAGERDUTY_ROUTING_KEY": PD_PAGE})
    assert settings_out.returncode == 0
    places["slo-stream settings"] = (settings_out.stdout + settings_out.stderr).encode()
    assert len(places["worker log"]) > 10_000 and b"ALERT firing" in places["worker log"]
    assert b"PagerDuty trigger accepted" in places["notifier log"]
    assert len(places["topics"]) > 100_000
    leaks = [(what, where) for what, secret in SECRETS.items() for where, text in places.items()
             if secret.encode() in text]
    assert not leaks, leaks
    # Nor a distinctive part of one (a token cut in a log line, a key's tail in a label).
    tails = [secret[-16:].encode() for secret in SECRETS.values()]
    assert not [(where, t) for where, text in places.items() for t in tails if t in text]
    report(request, f"{len(SECRETS)} secrets (gate write/read tokens, a wrong token sent, 3 routing keys) found in "
           "none of: " + ", ".join(f"{k} ({len(v):,} bytes)" for k, v in places.items()),
           f"the receiver got {len(events)} events and {len(receiver.accepted('/v2/change/enqueue'))} change events "
           "with the right keys")
