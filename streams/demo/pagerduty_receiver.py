"""A local PagerDuty Events API v2 receiver on loopback (real HTTP), for the demo and the tests, following
../shared/DESIGN.md: 202 with a JSON body holding ``dedup_key`` for a valid event, 400 for an invalid
one, and scripted failures (429, 5xx, a stalled answer) to test retries. It records every request
and what it answered."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    body: Any
    status: int
    at: float


@dataclass
class PagerDutyReceiver:
    """``script``: statuses to answer, in order, before answering normally (0 = stall longer than
    any client timeout, then drop). ``reject``: a predicate on the body that makes it a 400."""

    script: list[int] = field(default_factory=list)
    reject: Callable[[Any], bool] | None = None
    stall_s: float = 15.0
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PagerDutyReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                status, answer = receiver._answer(self.path, body)
                if status == 0:
                    time.sleep(receiver.stall_s)
                    return
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            status = self.script.pop(0) if self.script else None
            if status is None:
                status, answer = self._contract(path, body)
            else:
                answer = {"status": "scripted", "message": f"scripted {status}"}
            self.received.append(Received(path, body, status, time.time()))
            return status, answer

    def _contract(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        errors = []
        if not isinstance(body, dict):
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": ["not JSON"]}
        if not body.get("routing_key"):
            errors.append("'routing_key' is missing")
        if path == "/v2/enqueue":
            action = body.get("event_action")
            if action not in ("trigger", "acknowledge", "resolve"):
                errors.append("'event_action' is invalid")
            if action == "trigger":
                payload = body.get("payload") or {}
                for name in ("summary", "source", "severity"):
                    if not payload.get(name):
                        errors.append(f"'payload.{name}' is missing")
                if payload.get("severity") not in ("critical", "error", "warning", "info"):
                    errors.append("'payload.severity' is invalid")
                if len(str(payload.get("summary", ""))) > 1024:
                    errors.append("'payload.summary' is too long")
            elif not body.get("dedup_key"):
                errors.append("'dedup_key' is required to resolve")
        elif path == "/v2/change/enqueue":
            payload = body.get("payload") or {}
            if not payload.get("summary"):
                errors.append("'payload.summary' is missing")
        else:
            return 404, {"status": "not found"}
        if self.reject is not None and self.reject(body):
            errors.append("rejected by the test")
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        if path == "/v2/enqueue":
            return 202, {"status": "success", "message": "Event processed",
                         "dedup_key": body.get("dedup_key") or uuid.uuid4().hex}
        return 202, {"status": "success", "message": "Change event processed"}

    def accepted(self, path: str = "/v2/enqueue") -> list[Any]:
        with self._lock:
            return [r.body for r in self.received if r.path == path and r.status == 202]
