"""The fault suite (``make test-faults``; not part of ``make test``): every test collected under
tests/faults carries the ``faults`` marker, and the figures the tests record are printed at the end
of the session and written to build/faults-report.txt."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.support import REPORT

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault injection against real processes (make test-faults)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines for this test's section of the report (the test's name is the title)."""
    lines = REPORT.section(request.node.name)
    started = time.monotonic()
    try:
        yield lines
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            lines.append("FAILED (figures above were measured before the failure)")
        took = rep.duration if rep is not None else time.monotonic() - started
        lines.append(f"wall time {took:.0f}s")
        REPORT.write()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.sections:
        return
    path = REPORT.write()
    terminalreporter.write_sep("=", f"fault suite report ({path.relative_to(HERE.parents[1])})")
    terminalreporter.write(REPORT.text())
