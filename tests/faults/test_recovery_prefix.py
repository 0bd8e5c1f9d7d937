"""Crash points inside the state writes, with the pure engine: whatever prefix of the changelog a
replacement recovers, replaying from its meta record (or from the log's start when it has none, as
the worker does) ends with the uninterrupted run's counts, and the alert changes published before the
crash plus those of the replay are the uninterrupted sequence, at least once, per dedup key.

A kill can land between any two writes of a batch, and on Tansu a changelog recovery stops short of
the changelog's last batch of writes (docs/semantics.md), so every prefix is a state a worker can
start from. The prefixes tried: within the batch that fires the page and the ticket (a catch-up
batch spanning many evaluation steps before the firing one), within the batch that resolves the page,
within an ordinary batch, and within the partition's first batch (before any meta record exists);
within one batch holding a whole incident, and one that resolves the page and fires it again; and a
second crash inside the replay of the resolving batch. A replay publishes only changes of the
uninterrupted run (repeats of the batch in flight), and what the notifier's rule lets through
(streams.core.notify.Delivered) is exactly the uninterrupted sequence."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

from streams.core.engine import Engine, EngineConfig
from streams.core.tracks import TRACK_PREFIX
from streams.core.watermarks import META_PREFIX
from tests.faults.support import burn_scenario, chains, run_seed, scenario_messages, specs

P = 0


class Changelog(dict[str, bytes]):
    """A dict store that records every write and delete, in order, as a changelog does."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, bytes | None]] = []

    def __setitem__(self, key: str, value: bytes) -> None:
        self.log.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.log.append((key, None))
        super().__delitem__(key)


@dataclass
class Batch:
    start: int  # index of the first message
    end: int
    alerts: list[dict[str, Any]]
    writes: tuple[int, int]  # its range in the changelog


@dataclass
class Run:
    batches: list[Batch] = field(default_factory=list)
    log: list[tuple[str, bytes | None]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)


NOW = time.time()


def engine(store: dict[str, bytes]) -> Engine:
    e = Engine(specs(), store, EngineConfig())
    e.assign({P})
    return e


def play(e: Engine, msgs: list[tuple[bytes, bytes, int]], sizes: list[int], store: Changelog | None = None) -> Run:
    run = Run()
    i = 0
    for n in sizes:
        part = msgs[i:i + n]
        if not part:
            break
        res = e.process(P, part, now=NOW)
        before = len(store.log) if store is not None else 0
        e.commit(res)
        alerts = [a.to_json() for a in res.alerts]
        run.alerts += alerts
        run.batches.append(Batch(i, i + len(part), alerts, (before, len(store.log) if store is not None else 0)))
        i += len(part)
    # The latest evaluation of every series: made in this run, or (a replay that crossed no further
    # step) the one the recovered state stands at.
    for series in sorted(e.counters.all_series()):
        ev = e.read.current_status(series)
        if ev is not None:
            run.statuses[series] = e.read.status(ev, now=NOW).to_json()
    return run


def one_outage() -> tuple[list[tuple[bytes, bytes, int]], int, int]:
    """playback-api alone (its four series), 25 minutes of traffic before a 10 minute outage (enough
    events in the 1h window to page; a replay of the rest is quick): the messages, the index of the
    outage's first one, and the end of the batch (of 10) that resolves the page."""
    scenario = replace(burn_scenario(healthy_before_s=25 * 60), services=("playback-api",))
    msgs = [(k, v, i) for i, (k, v) in enumerate(scenario_messages(scenario))]
    outage = next(i for i, (_, v, _) in enumerate(msgs) if b'"errors":100' in v)
    probe = play(engine({}), msgs, [10] * len(msgs))
    resolved_at = next(b.end for b in probe.batches if any(a["state"] == "resolved" for a in b.alerts))
    return msgs, outage, resolved_at


def test_any_prefix_of_the_state_writes_replays_to_the_uninterrupted_counts_and_alerts(
    fault_report: list[str],
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    msgs, outage, resolved_at = one_outage()
    # Small batches, and two catch-up batches (as after a restart) that span many evaluation steps:
    # one from 10 minutes before the outage to 10 minutes into it (it fires the ticket and the page
    # after many quiet steps), one from 20 minutes before the page resolves to just after (its first
    # steps still burn, then the hold runs out).
    bigs = [(outage - 60, outage + 60), (resolved_at - 130, resolved_at + 10)]
    plan: list[int] = []
    first_big = 0
    for big_from, big_to in bigs:
        while sum(plan) < big_from:
            plan.append(min(rng.randint(5, 40), big_from - sum(plan)))
        first_big = first_big or len(plan)
        plan.append(big_to - big_from)
    plan += [rng.randint(5, 40) for _ in range(len(msgs))]

    store = Changelog()
    clean = play(engine(store), msgs, plan, store)
    log = list(store.log)
    fire = next(b for b in clean.batches if any(a["state"] == "firing" for a in b.alerts))
    resolve = next(b for b in clean.batches if any(a["state"] == "resolved" for a in b.alerts))
    plain = clean.batches[first_big // 2]
    first = clean.batches[0]

    def cuts(b: Batch, *, every_track: bool) -> list[int]:
        """Write positions to crash at inside batch ``b``: before its meta record, somewhere among its
        writes and, with ``every_track``, after each alert-track write, at both ends and at every
        position from its meta record on."""
        lo, hi = b.writes
        keys = [k for k, _ in log[lo:hi]]
        meta = next(lo + i for i, k in enumerate(keys) if k.startswith(META_PREFIX))
        points = {rng.randint(lo, meta), meta}
        if every_track:
            points |= {lo, hi, *range(meta, hi + 1),
                       *(lo + i + 1 for i, k in enumerate(keys) if k.startswith(TRACK_PREFIX))}
        return sorted(points)

    tried = 0
    for name, b, every in (("first", first, False), ("plain", plain, False), ("firing", fire, True),
                           ("resolving", resolve, True)):
        for cut in cuts(b, every_track=every):
            e = recover(log, cut)
            start = e.meta(P).offset + 1  # the worker's rule: the log's start when there is no meta
            # What went out before the kill: every batch up to this one (its alerts are delivered
            # before any of its writes).
            published = [a for done in clean.batches if done.end <= b.end for a in done.alerts]
            rest = msgs[start:]
            replay = play(e, rest, [rng.randint(5, 60) for _ in range(len(rest))])
            assert chains(published + replay.alerts) == chains(clean.alerts), (name, cut - b.writes[0])
            for series, status in clean.statuses.items():
                got = replay.statuses.get(series)
                assert got is not None and got["good_total"] == status["good_total"], (name, series)
                assert got["alerts"] == status["alerts"], (name, series)
            tried += 1
    assert tried >= 8
    fault_report += [
        f"seed {seed}: {len(msgs)} messages in {len(clean.batches)} batches; two catch-up batches, of "
        f"{bigs[0][1] - bigs[0][0]} messages (publishes "
        + ", ".join(f"{a['severity']} {a['state']}" for a in fire.alerts)
        + f") and {bigs[1][1] - bigs[1][0]} (publishes "
        + ", ".join(f"{a['severity']} {a['state']}" for a in resolve.alerts) + ")",
        f"{tried} crash points (prefixes of the changelog) inside the first, an ordinary, the firing and the "
        "resolving batch; each replay ended with the uninterrupted counts and alert states, and the alerts "
        "published before and after each crash fold into the uninterrupted sequence per dedup key",
    ]



def recover(log: list[tuple[str, bytes | None]], cut: int) -> Engine:
    """A worker that recovered the first ``cut`` writes of the changelog."""
    return engine(_states(log[:cut]))


def test_a_crash_inside_a_batch_holding_a_whole_incident_sends_pagerduty_nothing_twice(
    fault_report: list[str],
) -> None:
    """One catch-up batch fires and resolves the page. A crash anywhere in its writes replays it from
    the older meta record, publishing its trigger and resolve again after both went out; the
    notifier's rule (streams.core.notify.Delivered: a change not newer than the last one delivered
    for its dedup key is not sent) leaves exactly the uninterrupted run's changes."""
    seed = run_seed()
    rng = random.Random(seed)
    msgs, outage, resolved_at = one_outage()
    plan = [outage - 60, resolved_at + 10 - (outage - 60)] + [rng.randint(5, 40) for _ in range(len(msgs))]

    store = Changelog()
    clean = play(engine(store), msgs, plan, store)
    log = list(store.log)
    whole = clean.batches[1]
    page = [a for a in whole.alerts if a["severity"] == "page"]
    assert [a["state"] for a in page] == ["firing", "resolved"], "the batch holds the whole page incident"

    lo, hi = whole.writes
    cuts = sorted({lo, hi, *range(lo, hi + 1, max(1, (hi - lo) // 12))})
    replayed_twice = 0
    for cut in cuts:
        e = recover(log, cut)
        rest = msgs[e.meta(P).offset + 1:]
        replay = play(e, rest, [rng.randint(5, 60) for _ in range(len(rest))])
        published = [a for done in clean.batches if done.end <= whole.end for a in done.alerts]
        _assert_replay_matches(clean, published, replay, cut - lo)
        replayed_twice += chains(published + replay.alerts) != chains(clean.alerts)
    # The crash points before the batch's meta record did replay the whole incident onto the topic.
    assert replayed_twice >= 1
    fault_report += [
        f"seed {seed}: one catch-up batch of {whole.end - whole.start} messages fires and resolves the page "
        f"({len(whole.alerts)} changes); {len(cuts)} crash points in its {hi - lo} writes; {replayed_twice} "
        "replays published its changes again, and what the notifier would send is exactly the uninterrupted "
        "sequence every time",
    ]


def _states(log: list[tuple[str, bytes | None]], base: dict[str, bytes] | None = None) -> dict[str, bytes]:
    out = dict(base or {})
    for k, v in log:
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def _assert_replay_matches(clean: Run, published: list[dict[str, Any]], replay: Run, where: Any) -> None:
    """The replay publishes only changes of the uninterrupted run, byte for byte (repeats of the batch
    in flight, never a new incident), the notifier's rule leaves exactly the uninterrupted sequence,
    and the final counts and alert states are the uninterrupted ones."""
    from streams.core.notify import Delivered
    from streams.core.wire.alert import decode_alert

    assert all(a in clean.alerts for a in replay.alerts), (where, [a for a in replay.alerts if a not in clean.alerts])
    sent = Delivered()
    out = []
    for a in published + replay.alerts:
        alert = decode_alert(a)
        if not sent.is_repeat(alert):
            sent.note(alert)
            out.append(a)
    assert chains(out) == chains(clean.alerts), where
    for series, status in clean.statuses.items():
        got = replay.statuses.get(series)
        assert got is not None and got["good_total"] == status["good_total"], (where, series)
        assert got["alerts"] == status["alerts"], (where, series)


def test_a_second_crash_while_replaying_the_resolving_batch_opens_no_second_incident(
    fault_report: list[str],
) -> None:
    """A crash inside the batch that resolves the page, then another one inside the replacement's
    first commit (the replay of that batch; on Tansu a changelog recovery can also stop short of it):
    the third worker still finds the incident as it was and publishes nothing new."""
    seed = run_seed()
    rng = random.Random(seed)
    msgs, _, resolved_at = one_outage()
    head = resolved_at - 130
    plan = [head, 140] + [rng.randint(5, 40) for _ in range(len(msgs))]
    store = Changelog()
    clean = play(engine(store), msgs, plan, store)
    log = list(store.log)
    resolve = clean.batches[1]
    assert any(a["state"] == "resolved" and a["severity"] == "page" for a in resolve.alerts)
    lo, hi = resolve.writes
    meta = next(lo + i for i, (k, _) in enumerate(log[lo:hi]) if k.startswith(META_PREFIX))
    published = [a for b in clean.batches if b.end <= resolve.end for a in b.alerts]
    tried = 0
    for cut in sorted({lo, meta, *(lo + i + 1 for i, (k, _) in enumerate(log[lo:hi]) if k.startswith(TRACK_PREFIX))}):
        first_state = _states(log[:cut])
        e1_store = Changelog()
        e1_store.update(first_state)
        e1 = Engine(specs(), e1_store, EngineConfig())
        e1.assign({P})
        rest = msgs[e1.meta(P).offset + 1:]
        # The replacement's first batch replays the crashed batch whole (and a little more).
        first = play(e1, rest, [resolve.end - (e1.meta(P).offset + 1) + 5, len(rest)], e1_store)
        lo2, hi2 = first.batches[0].writes
        for cut2 in range(lo2, hi2 + 1):
            e2 = engine(_states(e1_store.log[:cut2], first_state))
            rest2 = msgs[e2.meta(P).offset + 1:]
            replay2 = play(e2, rest2, [rng.randint(5, 60) for _ in range(len(rest2))])
            again = first.batches[0].alerts  # what the replacement published before it died
            _assert_replay_matches(clean, published + again, replay2, (cut - lo, cut2 - lo2))
            tried += 1
    assert tried >= 10
    fault_report += [f"seed {seed}: {tried} double crashes (inside the resolving batch, then inside its replay's "
                     "first commit): no second incident, the uninterrupted counts and alert states"]


def test_a_crash_inside_a_batch_that_resolves_and_fires_again_reopens_nothing(fault_report: list[str]) -> None:
    """One batch resolves the page and fires it again (a second outage right after): a crash before
    its meta record replays it from a state where the first incident is still open."""
    from streams.demo.traffic import Outage

    seed = run_seed()
    rng = random.Random(seed)
    base = replace(burn_scenario(healthy_before_s=25 * 60), services=("playback-api",))
    probe_msgs = [(k, v, i) for i, (k, v) in enumerate(scenario_messages(base))]
    probe = play(engine({}), probe_msgs, [10] * len(probe_msgs))
    resolved_ts = next(a["ts"] for b in probe.batches for a in b.alerts
                       if a["state"] == "resolved" and a["severity"] == "page")
    first = base.outages[0]
    again_s = resolved_ts - base.start_ts + 60  # the second outage starts a minute after the resolve
    second = Outage(first.service, start_s=again_s, end_s=again_s + 10 * 60, cluster=first.cluster,
                    platform=first.platform)
    scenario = replace(base, outages=(first, second), duration_s=again_s + 50 * 60)
    msgs = [(k, v, i) for i, (k, v) in enumerate(scenario_messages(scenario))]
    probe = play(engine({}), msgs, [10] * len(msgs))
    page_batches = [b.end for b in probe.batches for a in b.alerts if a["severity"] == "page"]
    assert len(page_batches) >= 3, "the page fires, resolves and fires again"
    big_from, big_to = page_batches[1] - 40, page_batches[2] + 10
    plan = [big_from, big_to - big_from] + [rng.randint(5, 40) for _ in range(len(msgs))]
    store = Changelog()
    clean = play(engine(store), msgs, plan, store)
    log = list(store.log)
    big = clean.batches[1]
    assert [a["state"] for a in big.alerts if a["severity"] == "page"] == ["resolved", "firing"]
    lo, hi = big.writes
    published = [a for b in clean.batches if b.end <= big.end for a in b.alerts]
    cuts = sorted({lo, hi, *range(lo, hi + 1, max(1, (hi - lo) // 10))})
    for cut in cuts:
        e = recover(log, cut)
        rest = msgs[e.meta(P).offset + 1:]
        replay = play(e, rest, [rng.randint(5, 60) for _ in range(len(rest))])
        _assert_replay_matches(clean, published, replay, cut - lo)
    fault_report += [f"seed {seed}: one batch of {big.end - big.start} messages resolves the page and fires it "
                     f"again; {len(cuts)} crash points in its {hi - lo} writes: the replays publish only repeats "
                     "of it and end in the uninterrupted state"]
