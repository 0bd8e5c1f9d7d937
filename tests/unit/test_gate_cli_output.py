"""``slo-stream gate check`` prints what a worker says with control characters escaped: a freeze reason
holding ESC sequences cannot clear, retitle or recolour the terminal of the CI log reading it."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from streams import gate_cli

HOSTILE = "release train \x1b[2J\x1b]0;owned\x07\x1b[31mred\u202eevil\r\nsecond line\x9b"


def serve(status: int, body: Any) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def worker(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from serve(*request.param)


def check(url: str, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    gate_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["gate", "check", "--url", url, "--service", "playback-api", *extra])


@pytest.mark.parametrize("worker", [
    pytest.param((200, {"decision": "hold", "summary": f"hold playback-api: change freeze ({HOSTILE})"}),
                 id="a hold whose summary quotes a freeze reason"),
    pytest.param((400, {"error": HOSTILE, "status": 400}), id="an error message"),
], indirect=True)
def test_control_characters_from_the_answer_are_printed_escaped(worker: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = gate_cli.run(check(worker))
    out = capsys.readouterr().out
    assert code in (1, 3)
    assert out.count("\n") == 1 and out.endswith("\n")
    assert not any(not ch.isprintable() for ch in out[:-1].replace(" ", "")), repr(out)
    assert "\\x1b[2J\\x1b]0;owned\\x07\\x1b[31mred\\u202eevil\\r\\nsecond line\\x9b" in out


@pytest.mark.parametrize("worker", [pytest.param((200, {"decision": "hold", "summary": HOSTILE}), id="json")],
                         indirect=True)
def test_the_json_output_escapes_them_too(worker: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate_cli.run(check(worker, "--json")) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\u001b[2J" in out and json.loads(out)["summary"] == HOSTILE


@pytest.mark.parametrize("text, shown", [
    ("plain ASCII and accents: été", "plain ASCII and accents: été"),
    ("tab\there", "tab\\there"),
    ("\x00\x7f", "\\x00\\x7f"),
    ("bidi \u202e override", "bidi \\u202e override"),
], ids=["printable text is unchanged", "a tab", "NUL and DEL", "a bidi override"])
def test_printable(text: str, shown: str) -> None:
    assert gate_cli.printable(text) == shown
