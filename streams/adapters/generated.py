"""Generated files on disk: write them, or say which differ (``slo-stream generate [--check]``).

The text comes from :func:`streams.render.outputs.outputs` (pure); this is the only code that reads or
writes a generated file. Each file is written to a hidden temporary file next to it and renamed over
it, so a reader never sees half a file. In a directory an :class:`~streams.render.outputs.Output`
owns (dashboards/_gen), the files of its glob that are no longer generated are removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from streams.render.outputs import Output

DIFFERS = "differs from a fresh generation"
MISSING = "missing"
NOT_GENERATED = "is no longer generated"


def stale(outputs: Sequence[Output]) -> list[tuple[Path, str]]:
    """Each generated file that differs from its text (:data:`DIFFERS`), is missing (:data:`MISSING`), or
    is no longer generated (:data:`NOT_GENERATED`), with that state; empty when all are up to date.
    Writes nothing."""
    problems: list[tuple[Path, str]] = []
    for output in outputs:
        for name, text in output.files.items():
            path = Path(output.directory) / name
            try:
                same = path.read_bytes() == text.encode("utf-8")
            except OSError:
                same = False
            if not same:
                problems.append((path, DIFFERS if path.exists() else MISSING))
        problems += [(path, NOT_GENERATED) for path in _not_generated(output)]
    return problems


def write(outputs: Sequence[Output]) -> list[str]:
    """Write every generated file (atomically, creating directories) and remove those no longer
    generated; one line per file written or removed, in that order."""
    done: list[str] = []
    for output in outputs:
        directory = Path(output.directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in output.files.items():
            path = directory / name
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_text(text, encoding="utf-8", newline="\n")
            tmp.replace(path)
            done.append(f"wrote {path}")
        for path in _not_generated(output):
            path.unlink()
            done.append(f"removed {path} (no longer generated)")
    return done


def _not_generated(output: Output) -> list[Path]:
    """Files of the output's owned glob in its directory that are not among its files."""
    directory = Path(output.directory)
    if output.owned is None or not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(output.owned) if p.name not in output.files)
