"""Reading SLO spec files from disk: the I/O around :func:`streams.core.spec.parse_specs`.

``slo-stream validate PATH...`` calls :func:`validate`; the worker and the demo call :func:`load_specs`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from streams.core.errors import SpecError, SpecProblem
from streams.core.model import Slo, format_duration
from streams.core.spec import parse_specs

SPEC_SUFFIXES = (".yaml", ".yml")
# Problems about a whole file (missing, unreadable, not UTF-8) use this as document and field.
WHOLE_FILE = "(file)"


def load_specs(path: str | Path, *more: str | Path) -> list[Slo]:
    """The SLOs declared in ``path`` (and ``more``), sorted by name.

    Each path is a spec file or a directory, searched recursively for ``*.yaml`` and ``*.yml``
    files (in sorted order; names starting with ``.`` are skipped). References resolve across all
    the files read. Raises :class:`SpecError` with every problem: missing paths, unreadable or
    non-UTF-8 files, a directory without spec files, and everything :func:`parse_specs` reports.
    """
    sources, problems = read_sources([path, *more])
    try:
        slos = parse_specs(sources)
    except SpecError as exc:
        raise SpecError(problems + exc.problems) from None
    if problems:
        raise SpecError(problems)
    return slos


def read_sources(paths: Iterable[str | Path]) -> tuple[list[tuple[str, str]], list[SpecProblem]]:
    """``(file name, text)`` for every spec file under ``paths``, each file once, and the problems met."""
    sources: list[tuple[str, str]] = []
    problems: list[SpecProblem] = []
    seen: set[Path] = set()
    for file in _spec_files(paths, problems):
        key = file.resolve()
        if key in seen:
            continue
        seen.add(key)
        name = str(file)
        try:
            data = file.read_bytes()
        except OSError as exc:
            problems.append(SpecProblem(name, WHOLE_FILE, WHOLE_FILE, f"cannot read: {exc.strerror or exc}"))
            continue
        try:
            sources.append((name, data.decode("utf-8")))
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            problems.append(
                SpecProblem(name, WHOLE_FILE, WHOLE_FILE, f"not UTF-8: byte {exc.start} ({exc.reason})", line)
            )
    return sources, problems


def _spec_files(paths: Iterable[str | Path], problems: list[SpecProblem]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in SPEC_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                problems.append(
                    SpecProblem(
                        str(path), WHOLE_FILE, WHOLE_FILE, "no *.yaml or *.yml spec files in this directory"
                    )
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append(SpecProblem(str(path), WHOLE_FILE, WHOLE_FILE, "no such file or directory"))
    return files


def validate(paths: list[str], *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check the specs under ``paths`` together; print a summary or every problem. Returns the exit code.

    0: prints ``OK: N SLOs in M files`` and one line per SLO to ``out`` (default stdout).
    1: prints every problem, one per line (``file:line: document: field: message``), then a count,
    to ``err`` (default stderr).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    sources, problems = read_sources(paths)
    slos: list[Slo] = []
    try:
        slos = parse_specs(sources)
    except SpecError as exc:
        problems = problems + exc.problems
    if problems:
        for p in problems:
            print(p, file=err)
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in SLO specs", file=err)
        return 1
    print(f"OK: {len(slos)} SLOs in {len(sources)} files", file=out)
    for slo in slos:
        print(describe(slo), file=out)
    return 0


def describe(slo: Slo) -> str:
    """One line for ``validate``: name, service, objective, window, indicator and policy windows."""
    indicator = slo.indicator.kind.value
    if slo.indicator.latency_threshold_ms is not None:
        indicator += f" (latency_ms <= {slo.indicator.latency_threshold_ms:g})"
    windows = ", ".join(f"{w.severity.value} {w.factor:g}x {w.name}" for w in slo.policy.windows)
    return (
        f"  {slo.name}: service={slo.service} objective={slo.objective * 100:g}% "
        f"window={format_duration(slo.window_s)} indicator={indicator} "
        f"policy={slo.policy.name} [{windows}] ({slo.source})"
    )
