"""Waiting for a condition in tests: poll it, fail with what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(cond: Callable[[], object], what: str, timeout_s: float = 20.0, *, every_s: float = 0.02) -> None:
    """Return once ``cond()`` is true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")
