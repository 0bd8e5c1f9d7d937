"""``slo-stream gate check``: ask a worker's gate from a CI pipeline; the answer is the exit code.

Exit 0 proceed, 1 hold, 2 rollback, 3 cannot tell (no data for the service, or no worker answered).
One line on stdout: the decision's summary (``--json`` prints the whole body instead). Text from the
answer (a summary quoting a freeze's reason, an error) is printed with control characters escaped
(``\x1b``), so an answer cannot drive the terminal of whoever reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from streams.core.model import parse_duration

CANNOT_TELL = 3
EXIT = {"proceed": 0, "hold": 1, "rollback": 2, "unknown": 3}


def add_parser(sub: Any) -> None:
    g = sub.add_parser("gate", help="ask the rollout gate (for CI pipelines and scripts)")
    gsub = g.add_subparsers(dest="gate_command", metavar="SUBCOMMAND", required=True)
    ck = gsub.add_parser(
        "check", help="may a rollout of this service go on? exit 0 proceed, 1 hold, 2 rollback, 3 cannot tell",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Asks GET /v1/gate of a worker (any worker answers any service) and exits with the "
                    "decision:\n  0 proceed   1 hold   2 rollback   3 cannot tell (no data, or no answer)\n"
                    "The token, when the workers require one for reads, comes from SLO_STREAM_GATE_READ_TOKEN "
                    "or SLO_STREAM_GATE_TOKEN (or the same names with _FILE).")
    ck.add_argument("--service", required=True)
    ck.add_argument("--cluster")
    ck.add_argument("--platform", choices=["kubernetes", "legacy"])
    ck.add_argument("--revision", help="the revision being rolled out (revision number, template hash, image tag)")
    ck.add_argument("--migration", action="store_true",
                    help="a migration step: also compare kubernetes with legacy")
    ck.add_argument("--url", default=None,
                    help="a worker's base URL (default: SLO_STREAM_GATE_URL, else http://SLO_STREAM_WEB_HOST:"
                         "SLO_STREAM_WEB_PORT)")
    ck.add_argument("--wait", default="0s",
                    help="keep asking while the answer is hold or cannot tell, up to this long (e.g. 10m); "
                         "proceed and rollback end the wait")
    ck.add_argument("--interval", default="10s", help="between two questions while waiting (default 10s)")
    ck.add_argument("--timeout", type=float, default=5.0, help="seconds per HTTP request (default 5)")
    ck.add_argument("--json", action="store_true", help="print the whole JSON answer")

    def usage_error(message: str) -> None:
        # argparse exits 2 on a usage error, which a pipeline would read as "rollback".
        ck.print_usage(sys.stderr)
        print(f"slo-stream gate check: error: {message} (exit 3: cannot tell)", file=sys.stderr)
        sys.exit(CANNOT_TELL)

    ck.error = usage_error  # type: ignore[method-assign]


def printable(text: str) -> str:
    """``text`` with every character that is not printable (ESC and the other C0/C1 controls, line
    breaks, bidi overrides, ...) written as a Python escape; a space stays a space."""
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)


def _token() -> str | None:
    for name in ("SLO_STREAM_GATE_READ_TOKEN", "SLO_STREAM_GATE_TOKEN"):
        if os.environ.get(name):
            return os.environ[name]
        path = os.environ.get(f"{name}_FILE")
        if path:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
    return None


def _ask(url: str, token: str | None, timeout: float) -> tuple[int, dict[str, Any] | None, str]:
    """(exit code, body, one line)."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", "")
        except (ValueError, AttributeError):
            detail = ""
        return CANNOT_TELL, None, f"cannot tell: the gate answered {exc.code}{': ' + detail if detail else ''}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return CANNOT_TELL, None, f"cannot tell: no answer from {url.split('/v1/')[0]} ({reason})"
    except ValueError:
        return CANNOT_TELL, None, "cannot tell: the answer is not JSON"
    if not isinstance(body, dict):
        return CANNOT_TELL, None, "cannot tell: the answer is not a JSON object"
    decision = body.get("decision")
    return EXIT.get(decision, CANNOT_TELL), body, str(body.get("summary") or decision)


def run(args: argparse.Namespace) -> int:
    """Never an exit code that means something else: any local problem (settings, token file, a bad
    duration) is "cannot tell" (3), with the reason on stderr."""
    try:
        return _run(args)
    except Exception as exc:  # ConfigError, OSError, ValueError...
        print(printable(f"cannot tell: {exc}"), file=sys.stderr)
        return CANNOT_TELL


def _run(args: argparse.Namespace) -> int:
    from streams import settings as settings_mod

    base = args.url or os.environ.get("SLO_STREAM_GATE_URL")
    if not base:
        s = settings_mod.load()
        base = f"http://{s.web_host}:{s.web_port}"
    params = {"service": args.service}
    for name in ("cluster", "platform", "revision"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    if args.migration:
        params["step"] = "migration"
    url = f"{base.rstrip('/')}/v1/gate?{urllib.parse.urlencode(params)}"
    wait_s = parse_duration(args.wait) if args.wait not in ("0", "0s") else 0
    interval_s = max(1, parse_duration(args.interval))
    deadline = time.monotonic() + wait_s
    token = _token()
    while True:
        code, body, line = _ask(url, token, args.timeout)
        if code in (0, 2) or time.monotonic() + interval_s > deadline:
            break
        print(f"{printable(line)} (asking again in {interval_s}s)", file=sys.stderr, flush=True)
        time.sleep(interval_s)
    # json.dumps escapes control characters (and, ensure_ascii, everything else beyond ASCII)
    print(json.dumps(body, indent=2) if args.json and body is not None else printable(line))
    return code
