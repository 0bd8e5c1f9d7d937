"""The bundled story's outputs are byte-for-byte those recorded in tests/golden/story/outputs.jsonl:
alerts, statuses, dead letters, PagerDuty payloads, gate answers and enforcement records
(tests/story_outputs.py says how they are made and how to regenerate them)."""

from __future__ import annotations

import orjson

from tests.story_outputs import GOLDEN, outputs


def _what(line: bytes) -> str:
    d = orjson.loads(line)
    return f"{d['kind']} {d.get('key') or d.get('checkpoint') or ''}".strip()


def test_the_bundled_story_gives_the_recorded_outputs_byte_for_byte() -> None:
    want = GOLDEN.read_bytes().splitlines()
    got = outputs()
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        assert g == w, f"line {i + 1} ({_what(w)}) differs:\n  recorded: {w[:600]!r}\n  now:      {g[:600]!r}"
    assert len(got) == len(want), f"{len(got)} lines now, {len(want)} recorded"
    kinds = {orjson.loads(x)["kind"] for x in want}
    # The story covers every kind of output (a check that the recording itself is not empty of them).
    assert kinds >= {"alert", "pagerduty", "pagerduty_change", "dead_letter", "gate", "rollout_gate",
                     "enforce_skip", "status_digest", "metrics"}
