"""Errors raised at the core's boundaries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecProblem:
    """One problem in an SLO spec file: where it is and what is wrong.

    ``document`` names the YAML document (``kind/name`` when known, else ``#index``);
    ``field`` is a dotted path such as ``spec.objectives[0].target``; ``line`` is 1-based or 0 when unknown.
    """

    file: str
    document: str
    field: str
    message: str
    line: int = 0

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.document}: {self.field}: {self.message}"
        # One problem, one line: a name or key with a line break (or a bidi control) is shown escaped,
        # so it cannot forge other lines of the output that reports it.
        return text if text.isprintable() else "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class SpecError(ValueError):
    """Raised when SLO specs are invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(ValueError):
    """Raised for an invalid setting (environment variable or command-line option)."""


class RecordError(ValueError):
    """A record (a topic value, a Kubernetes object) that cannot be used: ``reason`` is a short code
    (the dead-letter reasons of :mod:`streams.core.conventions`), ``detail`` says what is wrong.

    Permanent: the same input fails the same way, so a retry cannot help; dead-letter or skip it and
    say why. Raised by the decoders of :mod:`streams.core.wire` at the edge, never further in."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
