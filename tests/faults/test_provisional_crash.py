"""The crash rule of provisional alerts (streams.core.provisional), with the pure engine fed live: a worker
killed at any write position between publishing a provisional FIRING and the commit of its confirmation,
its partition then taken over by another worker that recovers that prefix of the changelog: every
provisional FIRING that went out is followed by its confirmation or a RESOLVED, and what the notifier's
rule sends PagerDuty (streams.core.notify.Delivered) is one incident per dedup key, opened once.

As tests/faults/test_recovery_prefix.py: a kill can land between any two writes, and a changelog recovery
can stop at any of them. The worker's order per batch is: process, provisional evaluation (the track
written, then flushed), delivery of the batch's alerts, then the commit's writes. So the alerts of the
batch in flight went out exactly when the cut lies after its provisional writes (or, for a batch that
writes none, after none of its writes)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from streams.core.engine import Engine
from streams.core.notify import Delivered
from streams.core.provisional import PROVISIONAL_PREFIX
from streams.core.wire.alert import decode_alert
from tests.faults.support import burn_scenario, run_seed, scenario_messages
from tests.faults.test_recovery_prefix import Changelog, _states, engine

P = 0


@dataclass
class Batch:
    end: int
    alerts: list[dict[str, Any]]
    writes: tuple[int, int]  # its range in the changelog
    delivered_from: int  # the first write position after which its alerts had gone out


@dataclass
class Run:
    batches: list[Batch] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def newest(value: bytes) -> float:
    return max(r["ts"] for r in orjson.loads(value)["records"])


def play(e: Engine, msgs: list[tuple[bytes, bytes, int]], sizes: list[int], store: Changelog | None = None) -> Run:
    """Feed live: each batch with the wall clock half a second after its newest event time."""
    run = Run()
    i = 0
    for n in sizes:
        part = msgs[i:i + n]
        if not part:
            break
        now = max(newest(v) for _, v, _ in part) + 0.5
        res = e.process(P, part, now=now)
        before = len(store.log) if store is not None else 0
        res.absorb(e.provisional(P, now=now))
        delivered = len(store.log) if store is not None else 0
        e.commit(res)
        alerts = [a.to_json() for a in res.alerts]
        run.alerts += alerts
        run.batches.append(Batch(i + len(part), alerts, (before, len(store.log) if store is not None else 0),
                                 delivered))
        i += len(part)
    return run


def published_at(clean: Run, cut: int, delivered: bool | None) -> list[dict[str, Any]]:
    """The alerts that went out before a kill at write position ``cut``: every batch whose alerts were
    delivered by then. The batch in flight delivered its alerts when the kill came after its provisional
    writes; at exactly that position the kill may have come before or after the delivery (``delivered``)."""
    in_flight = next((b for b in clean.batches if b.writes[0] <= cut < b.writes[1]), None)
    return [a for b in clean.batches
            if (cut >= b.delivered_from if b is not in_flight or delivered is None else delivered) for a in b.alerts]


def takeovers(clean: Run, log: list[tuple[str, bytes | None]], msgs: list[tuple[bytes, bytes, int]],
              cuts: Iterable[int], rng: random.Random, *, most: int) -> Iterator[tuple[int, bool | None,
                                                                                      list[dict[str, Any]]]]:
    """For each kill position (both cases where the delivery of the batch in flight is in doubt): another
    worker recovers that prefix of the changelog and reads on from its meta record in batches of 1..``most``
    messages; (cut, delivered, the alerts published before the kill and by the taker, in order)."""
    for cut in cuts:
        in_flight = next((b for b in clean.batches if b.writes[0] <= cut < b.writes[1]), None)
        for delivered in (True, False) if in_flight is not None and cut == in_flight.delivered_from else (None,):
            taker = engine(_states(log[:cut]))
            rest = msgs[taker.meta(P).offset + 1:]
            replay = play(taker, rest, [rng.randint(1, most) for _ in range(len(rest))])
            yield cut, delivered, published_at(clean, cut, delivered) + replay.alerts


def notified(alerts: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What the notifier sends PagerDuty for these ``slo.alerts`` records, per dedup key."""
    sent = Delivered()
    out: dict[str, list[str]] = {}
    for a in alerts:
        alert = decode_alert(a)
        if sent.confirms(alert) or sent.is_repeat(alert):
            continue
        sent.note(alert)
        out.setdefault(alert.dedup_key, []).append("trigger" if alert.firing else "resolve")
    return out


def settled(alerts: list[dict[str, Any]]) -> list[str]:
    """The dedup keys with a provisional FIRING not followed by a final FIRING or a RESOLVED."""
    open_keys: dict[str, bool] = {}
    for a in alerts:
        if a["state"] == "firing" and a.get("provisional"):
            open_keys[a["dedup_key"]] = True
        elif a["dedup_key"] in open_keys:
            open_keys[a["dedup_key"]] = False
    return [k for k, still in open_keys.items() if still]


def test_a_kill_at_any_write_between_a_provisional_page_and_its_confirmation_leaves_it_settled(
    fault_report: list[str],
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    scenario = replace(burn_scenario(healthy_before_s=25 * 60), services=("playback-api",))
    msgs = [(k, v, i) for i, (k, v) in enumerate(scenario_messages(scenario))]
    plan = [rng.randint(1, 4) for _ in range(len(msgs))]
    store = Changelog()
    clean = play(engine(store), msgs, plan, store)
    log = list(store.log)
    fired = [b for b in clean.batches if any(a.get("provisional") for a in b.alerts)]
    assert fired, "the live run fires provisionally"
    first = fired[0]
    confirmed = next(b for b in clean.batches
                     if any(k == PROVISIONAL_PREFIX + _page(clean) and v is None
                            for k, v in log[b.writes[0]:b.writes[1]]))
    assert settled(clean.alerts) == []
    clean_sent = notified(clean.alerts)
    assert all(actions.count("trigger") == 1 for actions in clean_sent.values()), clean_sent
    # Every write position from the provisional page's track to the end of the batch that confirmed it
    # (the deletion of the track), and a sample after.
    lo, hi = first.writes[0], confirmed.writes[1]
    cuts = sorted({*range(lo, hi + 1), *rng.sample(range(hi, len(log)), min(20, len(log) - hi))})
    tried = 0
    for cut, delivered, everything in takeovers(clean, log, msgs, cuts, rng, most=6):
        assert settled(everything) == [], (cut - lo, delivered, settled(everything))
        sent = notified(everything)
        assert sent == clean_sent, (cut - lo, delivered, sent, clean_sent)
        tried += 1
    assert tried >= hi - lo
    fault_report += [
        f"seed {seed}: {len(msgs)} messages fed live in {len(clean.batches)} batches; the provisional page went out "
        f"{first.end} messages in and was confirmed {confirmed.end - first.end} messages later; {tried} kills "
        f"(every write position from its track to its confirmation's commit, {hi - lo + 1}, and a sample after), "
        "each followed by another worker taking over from that changelog prefix: every provisional FIRING ended "
        "confirmed or resolved, and the notifier's rule sent the uninterrupted run's PagerDuty events, one "
        "incident per dedup key",
    ]


def late_successes(start: int) -> list[tuple[bytes, bytes, int]]:
    """playback-api in eu-west-1, one message per 10 s: 25 minutes healthy (2,000 requests per message,
    0.05% errors), then 70 s whose 1,000 errors per message arrive on time but whose 499,000 successes per
    message arrive 100 s late (within the allowed lateness: 0.2% errors in truth), then healthy again."""
    from tests.factories import batch, record

    def rec(ts: float, total: int, errors: int) -> dict[str, Any]:
        return record(ts, total=total, errors=errors, latency_ms=100.0)

    arrivals: dict[int, list[dict[str, Any]]] = {}
    onset = start + 25 * 60
    for t in range(start, onset + 15 * 60, 10):
        if onset <= t < onset + 70:
            arrivals.setdefault(t, []).append(rec(t + 1, 1000, 1000))
            arrivals.setdefault(t + 100, []).append(rec(t + 2, 499_000, 0))
        else:
            arrivals.setdefault(t, []).append(rec(t + 5, 2000, 1))
    return [(*batch(recs), i) for i, (_, recs) in enumerate(sorted(arrivals.items()))]


def test_a_kill_at_any_write_between_a_provisional_page_and_its_retraction_leaves_it_resolved(
    fault_report: list[str],
) -> None:
    """The same kills around a provisional page the final evaluation does not confirm: without its track in
    the changelog before the page went out, the worker taking over would never retract it."""
    import time

    seed = run_seed()
    rng = random.Random(seed)
    msgs = late_successes(int(time.time()) // 10 * 10 - 3 * 3600)
    store = Changelog()
    clean = play(engine(store), msgs, [1] * len(msgs), store)
    log = list(store.log)
    pages = [a for a in clean.alerts if a["severity"] == "page"]
    assert [(a.get("provisional"), a["state"], a.get("reason")) for a in pages] == [
        (True, "firing", None), (True, "resolved", "retracted")], pages
    first = next(b for b in clean.batches if any(a.get("provisional") for a in b.alerts))
    retracted = next(b for b in clean.batches if any(a.get("reason") == "retracted" for a in b.alerts))
    clean_sent = notified(clean.alerts)
    lo, hi = first.writes[0], retracted.writes[1]
    tried = 0
    page = _page(clean)
    for cut, delivered, everything in takeovers(clean, log, msgs, range(lo, hi + 1), rng, most=3):
        assert settled(everything) == [], (cut - lo, delivered, settled(everything))
        sent = notified(everything)
        went_out = [a for a in published_at(clean, cut, delivered) if a["dedup_key"] == page]
        if any(a.get("provisional") for a in went_out):
            assert sent[page] == clean_sent[page] == ["trigger", "resolve"], (cut - lo, delivered, sent)
        else:
            # Killed before the page went out: the replay fires it again and retracts it, or (its track
            # was written) retracts it alone, a resolve PagerDuty ignores; never a trigger left open.
            assert sent.get(page, []) in (["resolve"], ["trigger", "resolve"]), (cut - lo, delivered, sent)
        tried += 1
    assert tried >= hi - lo
    fault_report += [
        f"seed {seed}: a provisional page the final evaluation retracts (errors on time, their successes 100 s "
        f"late); {tried} kills at every write position from its track to its retraction's commit, each followed "
        "by another worker taking over: the page always ended resolved (retracted), PagerDuty saw at most one "
        "trigger and its resolve",
    ]


def _page(run: Run) -> str:
    return next(a["dedup_key"] for a in run.alerts if a.get("provisional") and a["severity"] == "page")
