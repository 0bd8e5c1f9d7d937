"""State survives compaction: a worker that recovers its tables from only the latest record per key of
each changelog (what a compacted Kafka log keeps, tombstones removed) holds the state it had, and
goes on exactly as the worker that never stopped.

Every write of the engine's state table and of the changes table is recorded as its changelog would
carry it (a value, or a tombstone for a delete). At a few points of the bundled story the worker is
replaced by a new one whose tables are the compacted changelogs; the story's outputs (alerts,
statuses, dead letters, PagerDuty payloads, gate answers) must be those of the uninterrupted run, and
so must the state at the end.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

import orjson
import pytest

from streams.core.engine import Engine, EngineConfig
from tests.story_outputs import PARTITIONS, Story


class Changelog(MutableMapping[str, bytes]):
    """A table that records each write as its changelog topic carries it."""

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        """``data``: a table recovered from a (compacted) changelog, whose records the log starts with."""
        self.data: dict[str, bytes] = dict(data or {})
        self.log: list[tuple[str, bytes | None]] = list(self.data.items())

    def __getitem__(self, key: str) -> bytes:
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.data[key] = value
        self.log.append((key, value))

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.log.append((key, None))  # a tombstone

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def compacted(self) -> dict[str, bytes]:
        """What a compacted log gives back: the latest record per key, without the tombstones."""
        latest: dict[str, bytes | None] = {}
        for key, value in self.log:
            latest[key] = value
        return {k: v for k, v in latest.items() if v is not None}


def _outputs(story: Story) -> list[bytes]:
    """Every output; of ``slo.status``, the latest record per series (what its compacted topic keeps: a
    restarted worker may publish more statuses of a quiet series, the same evaluations). The worker's
    cumulative counters (Prometheus counters) start again at 0 after a restart, as any process's do:
    the metrics line is left out."""
    out = []
    for line in story.lines():
        if line["kind"] == "metrics":
            continue
        if line["kind"] == "status_digest":
            line = {"kind": "status", "key": line["key"], "last": line["last"]}
        out.append(orjson.dumps(line, option=orjson.OPT_SORT_KEYS))
    return out


def _restart_from_compacted_logs(story: Story) -> None:
    assert isinstance(story.store, Changelog) and isinstance(story.changes, Changelog)
    store, changes = Changelog(story.store.compacted()), Changelog(story.changes.compacted())
    assert store.data == story.store.data and changes.data == story.changes.data, \
        "every key's latest record is its value: nothing is kept only in an overwritten record"
    story.store, story.changes = store, changes
    story.engine = Engine(story.slos, store, EngineConfig(), changes=changes)
    story.engine.assign(set(range(PARTITIONS)))


def _quiet_and_close(got: bytes, want: bytes) -> bool:
    """Two latest statuses of a series that has gone quiet, the restarted worker's evaluated at most one
    5-minute bucket later. Once a quiet series' 10 s buckets expire (3 hours), a recovered worker knows
    its last data only to the 5-minute bucket (an upper bound, never too early), and may evaluate it a
    little longer: the same quiet series, nothing firing."""
    g, w = (orjson.loads(orjson.loads(x)["last"]) for x in (got, want))
    quiet = all(v == 0 for k, v in g["burn_rates"].items() if k in ("5m", "30m", "1h", "2h"))
    calm = all(a["state"] == "ok" for st in (g, w) for a in st["alerts"].values())
    return quiet and calm and 0 < g["evaluated_at"] - w["evaluated_at"] <= 300


@pytest.fixture(scope="module")
def uninterrupted() -> tuple[Story, list[bytes]]:
    story = Story(store=Changelog(), changes=Changelog())
    return story, _outputs(story)


@pytest.mark.parametrize("restarts", [(30,), (60, 61), (15, 45, 75, 105)],
                         ids=["one restart", "two in a row (during the bad step)", "four restarts"])
def test_a_worker_recovered_from_compacted_changelogs_goes_on_as_if_it_never_stopped(
        restarts: tuple[int, ...], uninterrupted: tuple[Story, list[bytes]]) -> None:
    clean, want = uninterrupted

    def after_flush(story: Story, n: int) -> None:
        if n in restarts:
            _restart_from_compacted_logs(story)

    restarted = Story(store=Changelog(), changes=Changelog(), after_flush=after_flush)
    got = _outputs(restarted)
    assert restarted.flushes > max(restarts), "every restart happened"
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if orjson.loads(w)["kind"] == "status" and g != w:
            assert _quiet_and_close(g, w), f"the latest status of a series differs after a restart: {g[:300]!r}"
            continue
        assert g == w, f"output {i} differs after a restart from compacted changelogs"
    assert isinstance(restarted.store, Changelog) and isinstance(clean.store, Changelog)
    assert restarted.store.data == clean.store.data, "the same state at the end"
    assert restarted.changes == clean.changes


def test_the_story_writes_tombstones_and_overwrites_so_compaction_has_something_to_drop(
        uninterrupted: tuple[Story, list[bytes]]) -> None:
    """The equivalence above is not a tautology of a log without deletes: counter chunks expire, alert
    tracks go idle, and most keys are written many times."""
    story, _ = uninterrupted
    assert isinstance(story.store, Changelog)
    log = story.store.log
    assert sum(1 for _, v in log if v is None) > 0, "deletes (tombstones) happen"
    assert len(log) > 5 * len(story.store.compacted()), "keys are overwritten many times"
