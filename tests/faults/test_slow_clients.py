"""Slow and idle clients against a real worker: each connection is closed within its deadline.

One worker (read and write tokens set; header and body timeouts at their defaults of 10 s, the idle
timeout lowered to 20 s to keep the test short) and, at once, on real sockets:

- a connection that sends nothing (idle timeout);
- request heads sent 1 byte per 10 s (the attack of issue 19) and 1 byte per second (which a timer
  that restarts on every read would never stop): 408 and closed at the header timeout;
- a Flagger body without an Authorization header (the token could be in the body, so it is read)
  at 1 byte per 10 s and 1 byte per second: 408 at the body timeout, then closed;
- slow bodies behind a missing or wrong token (``POST /v1/freezes``, a Flagger hook with a wrong
  bearer), to a path that does not exist or with a method it does not take: answered 401 / 403 /
  404 / 405 before any body byte is read, and closed within the drain time, with no second answer.

Meanwhile the worker answers other requests at once, and its log has no traceback.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.adapters.http_server import LINGER_S
from streams.adapters.processes import free_port
from tests.faults.helpers_input import report, wait_until
from tests.faults.test_security import READ, WRITE, WRONG, call
from tests.integration.harness import Deployment

pytestmark = pytest.mark.integration

HEADER_S = 10.0  # the defaults
BODY_S = 10.0
IDLE_S = 20.0
MARGIN_S = 1.5  # scheduling and polling slack on a 2-core machine
FLAGGER = b'{"name": "playback-api", "metadata": {"service": "playback-api", "token": "%s"}}'


@dataclass
class Held:
    """What a connection got: the seconds until the server closed it and the answer's status line."""

    what: str
    closed_after_s: float | None = None
    status: str = ""
    answers: int = 0  # status lines received (a 408 after the answer would be a second)


def trickle(port: int, held: Held, *, head: bytes, body: bytes = b"", every_s: float, cap_s: float) -> None:
    """Send ``head`` (a byte at a time when ``body`` is empty, else at once) then ``body`` a byte at a
    time, one byte per ``every_s``, until the server closes the connection or ``cap_s`` passes."""
    slow = body or head
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        if body:
            s.sendall(head)
        answer = b""
        sent = 0
        next_send = t0
        while time.monotonic() - t0 < cap_s:
            now = time.monotonic()
            if now >= next_send and sent < len(slow):
                try:
                    s.sendall(slow[sent:sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += 1
                next_send = now + every_s
            ready, _, _ = select.select([s], [], [], max(0.0, min(0.2, next_send - time.monotonic())))
            if ready:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    held.closed_after_s = time.monotonic() - t0
                    break
                answer += chunk
        held.status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        held.answers = answer.count(b"HTTP/1.1 ")


def post_head(path: str, length: int, auth: str | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {length}"]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_idle_slow_head_and_slow_body_connections_are_closed_within_their_timeouts(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path, partitions=1)
    port = free_port()
    flagger = FLAGGER % READ.encode()
    freeze = b'{"service": "playback-api", "reason": "slow", "duration": "5m"}'
    get_head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    cap = IDLE_S + 15
    plans = {
        "idle": (Held("an idle connection"), {"head": b"", "every_s": cap}),
        "head 1 B/10 s": (Held("a request head at 1 byte per 10 s"), {"head": get_head, "every_s": 10.0}),
        "head 1 B/s": (Held("a request head at 1 byte per second"), {"head": get_head, "every_s": 1.0}),
        "body 1 B/10 s": (Held("a Flagger body, token in it, at 1 byte per 10 s"),
                          {"head": post_head("/v1/flagger/rollout", len(flagger)), "body": flagger, "every_s": 10.0}),
        "body 1 B/s": (Held("a Flagger body, token in it, at 1 byte per second"),
                       {"head": post_head("/v1/flagger/rollout", len(flagger)), "body": flagger, "every_s": 1.0}),
        "freeze, no token": (Held("a freeze body at 1 byte per second without a token"),
                             {"head": post_head("/v1/freezes", len(freeze)), "body": freeze, "every_s": 1.0}),
        "flagger, wrong bearer": (Held("a Flagger body at 1 byte per second with a wrong bearer"),
                                  {"head": post_head("/v1/flagger/rollout", len(flagger), f"Bearer {WRONG}"),
                                   "body": flagger, "every_s": 1.0}),
        "unknown path": (Held("a body at 1 byte per second to a path that does not exist"),
                         {"head": post_head("/v1/nowhere", len(freeze)), "body": freeze, "every_s": 1.0}),
        "wrong method": (Held("a body at 1 byte per second to a GET-only path"),
                         {"head": post_head("/healthz", len(freeze)), "body": freeze, "every_s": 1.0}),
    }
    expected = {  # (status line starts with, closed no later than; no earlier than)
        "idle": ("", IDLE_S - 1, IDLE_S + MARGIN_S),
        "head 1 B/10 s": ("HTTP/1.1 408", HEADER_S - 0.5, HEADER_S + MARGIN_S),
        "head 1 B/s": ("HTTP/1.1 408", HEADER_S - 0.5, HEADER_S + MARGIN_S),
        "body 1 B/10 s": ("HTTP/1.1 408", BODY_S - 0.5, BODY_S + LINGER_S + MARGIN_S),
        "body 1 B/s": ("HTTP/1.1 408", BODY_S - 0.5, BODY_S + LINGER_S + MARGIN_S),
        "freeze, no token": ("HTTP/1.1 401", 0.0, LINGER_S + MARGIN_S),
        "flagger, wrong bearer": ("HTTP/1.1 403", 0.0, LINGER_S + MARGIN_S),
        "unknown path": ("HTTP/1.1 404", 0.0, LINGER_S + MARGIN_S),
        "wrong method": ("HTTP/1.1 405", 0.0, LINGER_S + MARGIN_S),
    }
    with dep.worker(SLO_STREAM_WEB_PORT=str(port), SLO_STREAM_GATE_TOKEN=WRITE, SLO_STREAM_GATE_READ_TOKEN=READ,
                    SLO_STREAM_HTTP_IDLE_TIMEOUT=str(int(IDLE_S))) as proc:
        wait_until(lambda: _answers(port), 90, "the worker to answer", proc, dep.log_text)
        threads = [threading.Thread(target=trickle, args=(port, held), kwargs={**kw, "cap_s": cap}, daemon=True)
                   for held, kw in plans.values()]
        for t in threads:
            t.start()
        # While they are held, the worker answers others at once.
        quick = []
        for _ in range(5):
            t0 = time.monotonic()
            assert call(port, "GET", "/v1/gate?service=playback-api", token=READ)[0] == 200
            quick.append(time.monotonic() - t0)
            time.sleep(1)
        for t in threads:
            t.join(cap + 10)
        assert proc.poll() is None
    log = dep.log_text()
    lines = []
    for key, (held, _) in plans.items():
        status, earliest, latest = expected[key]
        lines.append(f"{held.what}: {held.status or 'no answer'}, closed after "
                     + (f"{held.closed_after_s:.1f}s" if held.closed_after_s is not None else f"more than {cap}s"))
        assert held.closed_after_s is not None, (key, held)
        assert earliest <= held.closed_after_s <= latest, (key, held)
        assert held.status.startswith(status), (key, held)
        assert held.answers == (1 if status else 0), (key, held)
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    report(request, *lines, f"meanwhile GET /v1/gate answered in at most {max(quick) * 1000:.0f} ms")


def _answers(port: int) -> bool:
    try:
        return call(port, "GET", "/readyz")[0] == 200
    except OSError:
        return False
