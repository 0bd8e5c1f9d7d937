"""The bundled migration story played through the product's pure parts, in one process, and every
output it produces: ``slo.alerts``, ``slo.status``, dead letters, PagerDuty payloads (alerts and
Change Events), the gate's answers at the story's checkpoints and what enforcement would record.

No broker and no clock: the wall clock is simulated (the newest event time of a batch plus two
seconds, as for a live worker), batches are cut at fixed places, and a few bad records are mixed
in at fixed positions. The same code gives the same bytes, so a change that must not change
behaviour (a refactoring) is checked against ``tests/golden/story/outputs.jsonl``, recorded before
it: ``tests/unit/test_story_golden.py``.

Regenerate (only when a behaviour change is intended, and say so in the commit):
``python -m tests.story_outputs --write``.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import orjson

from streams.adapters.specfiles import load_specs
from streams.core.answer import Question, answer
from streams.core.changes import KEEP, ServiceChanges, classify
from streams.core.enforce import Outcome, gate_record
from streams.core.enforce import decide as enforce_decide
from streams.core.engine import Engine, EngineConfig
from streams.core.freezes import Freeze
from streams.core.gate import DEFAULT_GATE_CONFIG, gate_configs
from streams.core.notify import Routing, alert_event, change_event
from streams.core.wire.alert import Alert, decode_alert_bytes
from streams.core.wire.deadletter import DeadLetter, Source, refused
from streams.core.wire.rollout import RolloutRecord
from streams.demo.scenario import EVENTS, PLAYBACK, ROLLOUTS, Checkpoint, Produce, parse_scenario, timeline

ROOT = Path(__file__).resolve().parents[1]
STORY = ROOT / "streams" / "demo" / "scenarios" / "migration.yaml"
SPECS = ROOT / "alerts" / "slos"
GOLDEN = ROOT / "tests" / "golden" / "story" / "outputs.jsonl"
START = 1_790_000_000 // 60 * 60
PARTITIONS = 4
BATCH = 40  # playback messages per batch, at most
ROUTING = Routing(keys={"page": "page-key-000000000000000000000000", "ticket": "ticket-key-0000000000000000000000",
                        "change": "change-key-0000000000000000000000"})


def _inject(i: int, key: bytes, ts: float) -> list[tuple[bytes | None, bytes]]:
    """Bad playback messages mixed in after the ``i``-th playback message (fixed positions)."""
    def batch(*records: dict[str, Any]) -> bytes:
        return orjson.dumps({"schema_version": 1, "records": list(records)})

    good = {"ts": ts, "service": key.decode(), "cluster": "eu-west-1", "region": "eu-west", "platform": "kubernetes",
            "total": 5, "errors": 0}
    bad: dict[int, list[tuple[bytes | None, bytes]]] = {
        100: [(key, b"{not json")],
        200: [(key, batch(good, {**good, "errors": 9}, {**good, "platform": "mainframe"}))],
        300: [(key, batch({**good, "ts": ts - 1000}, good))],
        400: [(key, batch({**good, "ts": ts + 4000}))],
        500: [(b"someone-else", batch(good))],
        600: [(key, orjson.dumps({"schema_version": 7, "records": [good]}))],
        700: [(None, orjson.dumps(good | {"schema_version": 1}))],
        800: [(key, batch({**good, "cluster": "bad cluster!"}, {**good, "revision": "r" * 200}))],
    }
    return bad.get(i, [])


class Story:
    """Plays the story; :meth:`lines` yields one JSON line per output. ``store`` and ``changes`` are the
    engine's state store and the changes table (dicts by default); ``after_flush`` is called after each
    batch is committed, with the story and the number of batches so far (a test may replace the
    engine there, as a worker that restarts would be)."""

    def __init__(self, *, store: MutableMapping[str, bytes] | None = None,
                 changes: MutableMapping[str, bytes] | None = None,
                 after_flush: Callable[[Story, int], None] | None = None) -> None:
        self.slos = load_specs(SPECS)
        self.services = sorted({s.service for s in self.slos})
        self.partition = {svc: i % PARTITIONS for i, svc in enumerate(self.services)}
        self.store: MutableMapping[str, bytes] = {} if store is None else store
        self.changes: MutableMapping[str, bytes] = {} if changes is None else changes
        self.after_flush = after_flush
        self.flushes = 0
        self.engine = Engine(self.slos, self.store, EngineConfig(), changes=self.changes)
        self.engine.assign(set(range(PARTITIONS)))
        self.offsets = dict.fromkeys(range(PARTITIONS), 0)
        self.last_batch_wall: dict[int, float] = {}
        self.pending: dict[int, list[tuple[bytes | None, bytes | None, int]]] = {}
        self.now = float(START)
        self.configs = gate_configs(self.slos, DEFAULT_GATE_CONFIG)
        self.k8s_offset = 0
        self.status_digest: dict[str, Any] = {}

    # -- playback --

    def _add(self, key: bytes | None, value: bytes, ts: float) -> None:
        svc = key.decode() if key and key.decode() in self.partition else self.services[0]
        p = self.partition[svc]
        self.pending.setdefault(p, []).append((key, value, self.offsets[p]))
        self.offsets[p] += 1
        self.now = max(self.now, ts + 2.0)

    def _flush(self) -> Iterator[dict[str, Any]]:
        for p in sorted(self.pending):
            msgs = self.pending[p]
            if not msgs:
                continue
            res = self.engine.process(p, msgs, now=self.now)
            for a in res.alerts:
                yield from self._alert(a)
            if res.rejected:
                originals = {off: value for _, value, off in msgs}
                for rej in res.rejected:
                    letter = refused(rej, topic="playback.events", partition=p, original=originals.get(rej.offset))
                    yield {"kind": "dead_letter", "key": letter.key, "bytes": letter.encode().decode()}
            self.engine.commit(res)
            for ev in res.statuses.values():
                raw = self.engine.read.status(ev, now=self.now).encode()
                d = self.status_digest.setdefault(ev.series, {"count": 0, "sha256": hashlib.sha256()})
                d["count"] += 1
                d["sha256"].update(raw)
                d["last"] = raw.decode()
            self.last_batch_wall[p] = self.now
        if self.pending and self.after_flush is not None:
            self.flushes += 1
            self.after_flush(self, self.flushes)
        self.pending.clear()

    def _alert(self, a: Alert) -> Iterator[dict[str, Any]]:
        raw = a.encode()
        yield {"kind": "alert", "key": a.dedup_key, "bytes": raw.decode()}
        seen = decode_alert_bytes(raw)  # what the notifier and the kube bridge read
        assert seen == a, "an alert decodes to itself"
        kind, event = alert_event(seen, ROUTING)
        yield {"kind": "pagerduty", "routing": kind, "bytes": orjson.dumps(event).decode()}
        verdict = enforce_decide(seen, cluster=a.dimensions.cluster, now=float(a.ts) + 5.0)
        if verdict.action is not None:
            key, rec = gate_record(verdict.action, outcome=Outcome.PAUSED, now=float(a.ts) + 6.0)
            yield {"kind": "rollout_gate", "key": key, "bytes": orjson.dumps(rec).decode()}
        else:
            yield {"kind": "enforce_skip", "skip": str(verdict.skip), "message": verdict.message}

    # -- k8s --

    def _k8s(self, topic: str, key: bytes, value: bytes) -> Iterator[dict[str, Any]]:
        self.k8s_offset += 1
        got = classify(value, rollouts=topic == ROLLOUTS, services=frozenset(self.services), now=self.now,
                       max_future_s=300)
        src = "k8s.rollouts" if topic == ROLLOUTS else "k8s.events"
        if got.change is not None:
            sc = ServiceChanges.from_bytes(self.changes.get(got.change.service))
            sc.apply(got.change)
            self.changes[got.change.service] = sc.to_bytes()
            if isinstance(got.change.what, RolloutRecord):
                ev = change_event(got.change.what, ROUTING)
                if ev is not None:
                    yield {"kind": "pagerduty_change", "bytes": orjson.dumps(ev).decode()}
        elif got.outcome != "ignore":
            assert got.outcome != KEEP
            letter = DeadLetter(got.outcome, got.detail, Source(src, 0, self.k8s_offset), original=value)
            yield {"kind": "dead_letter", "key": letter.key, "bytes": letter.encode().decode()}

    # -- the gate --

    def _gate(self, cp: Checkpoint) -> Iterator[dict[str, Any]]:
        q = Question(cp.service, cluster=cp.cluster, revision=cp.revision, migration=cp.migration)
        inputs = self.engine.read.gate_inputs(q, now=self.now, processed_at=self.last_batch_wall, stale=(),
                                              configs=self.configs, default=DEFAULT_GATE_CONFIG)
        d = answer(q, inputs, now=self.now)
        yield {"kind": "gate", "checkpoint": f"{cp.when} {cp.describe()}", "bytes": orjson.dumps(d.to_json()).decode()}

    def lines(self) -> Iterator[dict[str, Any]]:
        sc = parse_scenario(str(STORY), STORY.read_text())
        n = 0
        freeze_done = False
        for item in timeline(sc, START):
            if isinstance(item, Checkpoint):
                yield from self._flush()
                if not freeze_done and item.when == "after":
                    # A change freeze of one service, to cover the freeze path of the gate.
                    sc_ = ServiceChanges.from_bytes(self.changes.get("stream-router"))
                    sc_.apply_freeze(Freeze(None, "golden freeze", self.now, self.now + 3600))
                    self.changes["stream-router"] = sc_.to_bytes()
                    freeze_done = True
                yield from self._gate(item)
                continue
            assert isinstance(item, Produce)
            if item.topic == PLAYBACK:
                self._add(item.key, item.value, item.ts)
                n += 1
                for key, value in _inject(n, item.key, item.ts):
                    self._add(key, value, item.ts)
                if sum(len(v) for v in self.pending.values()) >= BATCH:
                    yield from self._flush()
            else:
                assert item.topic in (ROLLOUTS, EVENTS)
                yield from self._flush()
                self.now = max(self.now, item.ts + 2.0)
                yield from self._k8s(item.topic, item.key, item.value)
        yield from self._flush()
        for series in sorted(self.status_digest):
            d = self.status_digest[series]
            yield {"kind": "status_digest", "key": series, "count": d["count"], "sha256": d["sha256"].hexdigest(),
                   "last": d["last"]}
        yield {"kind": "metrics", "lines": self._metrics()}

    def _metrics(self) -> list[str]:
        """The worker's /metrics at the end (the series, alert and suspect families; no histograms)."""
        from streams.adapters.metrics import WorkerMetrics

        text = WorkerMetrics(self.engine, {}).exposition().decode()
        return [x for x in text.splitlines() if x.startswith("slo_stream_") and "_bucket" not in x
                and "duration_seconds" not in x]


def outputs() -> list[bytes]:
    return [orjson.dumps(line, option=orjson.OPT_SORT_KEYS) for line in Story().lines()]


def main(argv: list[str]) -> int:
    lines = outputs()
    if "--write" in argv:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_bytes(b"".join(x + b"\n" for x in lines))
        print(f"wrote {len(lines)} lines to {GOLDEN}")
    else:
        print(f"{len(lines)} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
