"""Provisional alerts (streams.core.provisional): fired on live data, then confirmed or retracted by the
final evaluation; guards, hold, replay identity, crash rule and the gate."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from streams.core import conventions as c
from streams.core.answer import Question, answer
from streams.core.engine import BatchResult, Engine, EngineConfig
from streams.core.gate import DEFAULT_GATE_CONFIG, Decision
from streams.core.model import HOUR, Severity, Slo
from streams.core.provisional import PROVISIONAL_PREFIX, Outcome
from streams.core.wire.alert import Alert, AlertState, decode_alert
from streams.core.wire.rollout import Phase
from tests.factories import batch, changes_of, record, rollout_record, slo

T0 = 1_700_000_000 // 3600 * 3600
ONSET = T0 + 7 * HOUR
SERIES = c.series_key("playback-api-availability", "eu-west-1", "eu-west", "kubernetes")
PAGE_KEY = c.dedup_key(SERIES, "page")


def pages_only(*, min_events: int | None = None, hold_s: int = 300) -> Slo:
    """The availability SLO with its page conditions only (its tickets would fire on the same burns)."""
    base = slo()
    return replace(base, policy=replace(base.policy, min_events=min_events, hold_s=hold_s, windows=tuple(
        w for w in base.policy.windows if w.severity is Severity.PAGE)))


def seconds(start: int, n: int, *, bad: bool = False, per_second: int = 10) -> list[tuple[float, list[dict]]]:
    """``n`` seconds of traffic from ``start``: (the second, its records)."""
    return [(float(s), [record(s + i / per_second, errors=1 if bad else 0) for i in range(per_second)])
            for s in range(start, start + n)]


class Live:
    """Feeds an engine one message per second of event time with the wall clock just after it (a live
    partition), as the worker does: process, due evaluations, provisional evaluation, commit."""

    def __init__(self, engine: Engine, *, offset: int = 0) -> None:
        self.engine = engine
        self.offset = offset
        self.alerts: list[tuple[float, Alert]] = []  # (wall clock it went out, alert)
        self.outcomes: dict[str, int] = {}

    def send(self, msgs: list[tuple[float, tuple[bytes, bytes]]], *, now: float | None = None,
             commit: bool = True) -> BatchResult:
        wall = now if now is not None else max(t for t, _ in msgs) + 1.0
        res = self.engine.process(0, [(k, v, self.offset + i) for i, (_, (k, v)) in enumerate(msgs)], now=wall)
        res.absorb(self.engine.provisional(0, now=wall))
        self.offset += len(msgs)
        self.alerts += [(wall, a) for a in res.alerts]
        for k, n in res.provisional.items():
            self.outcomes[k] = self.outcomes.get(k, 0) + n
        if commit:
            self.engine.commit(res)
        return res

    def play(self, secs: list[tuple[float, list[dict]]], *, per_message: int = 1) -> None:
        for i in range(0, len(secs), per_message):
            part = secs[i:i + per_message]
            self.send([(t, batch(recs)) for t, recs in part])

    def pages(self) -> list[tuple[float, Alert]]:
        return [(w, a) for w, a in self.alerts if a.severity is Severity.PAGE]


def history(engine: Engine, hours: float = 7) -> Live:
    """A live feed after ``hours`` of healthy traffic, fed as a replay (wall clock far ahead: no
    provisional evaluation), then one live minute."""
    live = Live(engine)
    past = seconds(T0, int(hours * HOUR) - 60)
    live.send([(t, batch(r)) for t, r in past], now=T0 + 30 * 86400)
    live.play(seconds(ONSET - 60, 60))
    assert not live.alerts
    return live


def test_a_live_outage_pages_provisionally_within_a_batch_and_the_final_evaluation_confirms_it() -> None:
    engine = Engine([pages_only()], {}, EngineConfig(allowed_lateness_s=120))
    live = history(engine)
    live.play(seconds(ONSET, 200, bad=True))
    pages = live.pages()
    first_wall, first = pages[0]
    assert first.provisional and first.state is AlertState.FIRING
    # The 1h burn passes 14.4 after 51.84 s of full errors: the provisional page goes out with the batch
    # that holds the 52nd second, evaluated at the next step (60 s); the final one waits for the watermark.
    assert first_wall - ONSET == pytest.approx(53, abs=1)
    assert first.ts == ONSET + 60 and first.seen_at == pytest.approx(ONSET + 52 - 0.1, abs=0.2)
    assert first.suspects == () and first.burn_onset is not None
    finals = [(w, a) for w, a in pages if not a.provisional]
    assert [a.state for _, a in finals] == [AlertState.FIRING]
    final_wall, final = finals[0]
    assert final_wall - ONSET >= 120 + 52  # the allowed lateness later
    # Confirmed: the final FIRING is not newer than the provisional one (the notifier folds it in) and
    # no retraction follows.
    assert final.ts <= first.ts
    assert live.outcomes == {Outcome.FIRED: 1, Outcome.CONFIRMED: 1}
    assert not any(a.reason for _, a in live.alerts)
    assert len(engine.provisionals) == 0 and not [k for k in engine.store if k.startswith(PROVISIONAL_PREFIX)]
    # It travels as it is made.
    assert decode_alert(orjson.loads(first.encode())) == first
    assert orjson.loads(first.encode())["provisional"] is True
    assert "provisional" not in orjson.loads(final.encode())


def test_errors_that_arrive_before_their_late_successes_fire_provisionally_then_retract() -> None:
    engine = Engine([pages_only()], {}, EngineConfig(allowed_lateness_s=120))
    live = history(engine)
    # 70 s in which only the errors arrive on time (10/s); the same seconds' 990 successes/s arrive
    # 100 s late, within the allowed lateness: 1% errors in truth, 100% in what is seen at first.
    bad = seconds(ONSET, 70, bad=True)
    for i in range(70 + 100 + 200):
        t = ONSET + i
        msgs = []
        if i < 70:
            msgs.append((float(t), batch(bad[i][1])))
        else:
            msgs.append((float(t), batch([record(t + j / 10) for j in range(10)])))
        if 100 <= i < 170:
            msgs.append((float(t), batch([record(t - 100 + 0.5, total=990)])))
        live.send(msgs)
    pages = live.pages()
    assert [(a.provisional, a.state, a.reason) for _, a in pages] == [
        (True, AlertState.FIRING, None), (True, AlertState.RESOLVED, "retracted")]
    fired, retracted = pages[0][1], pages[1][1]
    assert retracted.ts >= fired.ts and retracted.started_at == fired.ts and retracted.seen_at == fired.seen_at
    assert live.outcomes == {Outcome.FIRED: 1, Outcome.RETRACTED: 1}
    assert len(engine.provisionals) == 0


def test_too_few_events_fire_nothing_provisionally() -> None:
    engine = Engine([pages_only(min_events=100_000)], {}, EngineConfig(allowed_lateness_s=120))
    live = history(engine, hours=1)
    live.play(seconds(ONSET, 200, bad=True))
    assert not live.alerts
    assert engine.read.last_status[SERIES].conditions[0].insufficient_data


def test_an_open_final_alert_takes_no_provisional_one_during_its_hold_and_one_incident_has_one_provisional_page(
) -> None:
    engine = Engine([pages_only(hold_s=600)], {}, EngineConfig(allowed_lateness_s=60))
    live = history(engine)
    live.play(seconds(ONSET, 300, bad=True), per_message=5)
    live.play(seconds(ONSET + 300, 3600), per_message=20)  # recovered: the page holds, then resolves
    live.play(seconds(ONSET + 3900, 30, bad=True))  # a second burn after the resolve (1h still hot)
    pages = [(a.provisional, a.state) for _, a in live.pages()]
    assert pages == [(True, AlertState.FIRING), (False, AlertState.FIRING), (False, AlertState.RESOLVED),
                     (True, AlertState.FIRING)]
    # While the final page was open (firing, then holding) no provisional page fired.
    assert live.outcomes == {Outcome.FIRED: 2, Outcome.CONFIRMED: 1}
    assert len(engine.provisionals) == 1


def test_a_replay_of_a_live_run_gives_exactly_its_final_alerts() -> None:
    store: dict[str, bytes] = {}
    engine = Engine([pages_only()], store, EngineConfig(allowed_lateness_s=30))
    live = history(engine)
    live.play(seconds(ONSET, 600, bad=True), per_message=3)
    live.play(seconds(ONSET + 600, 2 * HOUR), per_message=30)
    finals = [a for _, a in live.alerts if not a.provisional]
    assert any(a.provisional for _, a in live.alerts)
    assert {a.state for a in finals} == {AlertState.FIRING, AlertState.RESOLVED}
    # The same records replayed (wall clock far ahead, other batch boundaries): no provisional alert.
    replay = Engine([pages_only()], {}, EngineConfig(allowed_lateness_s=30))
    out: list[Alert] = []
    everything = seconds(T0, 7 * HOUR - 60) + seconds(ONSET - 60, 60) + seconds(ONSET, 600, bad=True) + \
        seconds(ONSET + 600, 2 * HOUR)
    off = 0
    for i in range(0, len(everything), 997):
        part = everything[i:i + 997]
        res = replay.process(0, [(*batch(r), off + j) for j, (_, r) in enumerate(part)], now=T0 + 60 * 86400)
        res.absorb(replay.provisional(0, now=T0 + 60 * 86400))
        replay.commit(res)
        off += len(part)
        out += res.alerts
    assert out == finals


def test_a_crash_after_the_provisional_page_went_out_is_settled_by_the_worker_that_takes_over() -> None:
    store: dict[str, bytes] = {}
    engine = Engine([pages_only()], store, EngineConfig(allowed_lateness_s=120))
    live = history(engine)
    live.play(seconds(ONSET, 45, bad=True))
    assert not live.alerts
    committed = live.offset
    # The batch that fires: its provisional track is written at once, then the page goes out, then the
    # worker dies before the batch commits.
    res = live.send([(t, batch(r)) for t, r in seconds(ONSET + 45, 10, bad=True)], commit=False)
    assert [a.provisional for a in res.alerts] == [True]
    assert PROVISIONAL_PREFIX + PAGE_KEY in store
    # Another worker takes the partition over from the same store and reads from the committed offset.
    taker = Engine([pages_only()], store, EngineConfig(allowed_lateness_s=120))
    taker.assign({0})
    assert len(taker.provisionals) == 1
    after = Live(taker, offset=committed)
    after.play(seconds(ONSET + 45, 200, bad=True))
    assert [(a.provisional, a.state) for _, a in after.pages()] == [(False, AlertState.FIRING)]
    assert after.outcomes == {Outcome.CONFIRMED: 1}  # not fired again: the track was found
    assert after.pages()[0][1].ts <= res.alerts[0].ts
    assert PROVISIONAL_PREFIX + PAGE_KEY not in store


def test_a_provisional_page_the_final_evaluation_does_not_see_is_retracted_after_a_takeover() -> None:
    store: dict[str, bytes] = {}
    engine = Engine([pages_only()], store, EngineConfig(allowed_lateness_s=120))
    live = history(engine)
    live.play(seconds(ONSET, 55, bad=True))
    assert [a.provisional for _, a in live.alerts] == [True]
    # Taken over; the records after the takeover are healthy and the late successes of the errors'
    # seconds arrive: the final evaluation never fires.
    taker = Engine([pages_only()], store, EngineConfig(allowed_lateness_s=120))
    taker.assign({0})
    after = Live(taker, offset=live.offset)
    for i in range(250):
        msgs = [(float(ONSET + 55 + i), batch([record(ONSET + 55 + i + j / 10) for j in range(10)]))]
        if i < 55:
            msgs.append((float(ONSET + 55 + i), batch([record(ONSET + i + 0.5, total=2000)])))
        after.send(msgs)
    assert [(a.provisional, a.state, a.reason) for _, a in after.pages()] == [
        (True, AlertState.RESOLVED, "retracted")]
    assert PROVISIONAL_PREFIX + PAGE_KEY not in store


def test_the_gate_sees_a_provisional_page_at_once_and_rolls_back_the_rollout_it_blames() -> None:
    changes = changes_of(
        rollout_record(ts=ONSET - 30, phase=Phase.STARTED, template_hash="bad1"),
        rollout_record(ts=ONSET - 10, phase=Phase.COMPLETED, template_hash="bad1"))
    engine = Engine([pages_only()], {}, EngineConfig(allowed_lateness_s=120),
                    changes={"playback-api": changes.to_bytes()})
    live = history(engine)
    live.play(seconds(ONSET, 60, bad=True))
    assert [a.provisional for _, a in live.alerts] == [True]
    now = ONSET + 61
    inputs = engine.read.gate_inputs(Question("playback-api", revision="42"), now=now, processed_at={0: now},
                                     stale=(), configs={}, default=DEFAULT_GATE_CONFIG)
    d = answer(Question("playback-api", revision="42"), inputs, now=now)
    assert d.decision is Decision.ROLLBACK
    page = next(r for r in d.reasons if r.code == "page_firing")
    assert page.message.startswith("provisional page alert firing") and page.figures["provisional"] == "true"
    assert any("provisional page" in r.message for r in d.reasons if r.code == "suspect_rollout")
    # Before the provisional evaluation the same answer is no worse than hold, after it the status the
    # gate read is the provisional evaluation (newer than the final one).
    assert d.series[0].evaluated_at == ONSET + 60


def test_the_notifier_pages_once_per_incident_whether_confirmed_or_retracted() -> None:
    from streams.core.notify import Delivered, Routing, alert_event
    from tests.factories import alert

    early = alert(ts=int(ONSET + 60), provisional=True, seen_at=ONSET + 51.9)
    sent = Delivered()
    assert not sent.confirms(early) and not sent.is_repeat(early)
    sent.note(early)
    # The final FIRING at the same step or an earlier one confirms it: not sent again.
    for ts in (ONSET + 60, ONSET + 50):
        final = alert(ts=int(ts))
        assert sent.confirms(final)
    # A retraction goes out; a final page after it is a new incident, not a confirmation.
    retraction = alert(ts=int(ONSET + 60), state=AlertState.RESOLVED, provisional=True, reason="retracted")
    assert not sent.is_repeat(retraction)
    sent.note(retraction)
    later = alert(ts=int(ONSET + 90))
    assert not sent.confirms(later) and not sent.is_repeat(later)
    # What PagerDuty reads of a provisional page.
    _, body = alert_event(early, Routing(keys={"page": "k"}))
    assert body["payload"]["summary"].startswith("[PAGE FIRING, PROVISIONAL] ")
    assert body["payload"]["custom_details"]["provisional"] is True
    assert body["payload"]["custom_details"]["seen_at"].endswith("Z")
    _, final_body = alert_event(alert(ts=int(ONSET + 60)), Routing(keys={"page": "k"}))
    assert "provisional" not in final_body["payload"]["custom_details"]
    assert final_body["payload"]["summary"].startswith("[PAGE FIRING] ")


def test_an_earlier_incident_in_a_replayed_batch_does_not_confirm_a_later_provisional_page() -> None:
    """One live batch fires a final page, resolves it and opens a provisional page; the worker dies before
    it commits. The next worker (no longer live) replays the batch: the old incident's firing steps come
    before the provisional step and must not confirm it; the late successes then retract it."""
    store: dict[str, bytes] = {}
    slo_ = pages_only(hold_s=60)
    engine = Engine([slo_], store, EngineConfig(allowed_lateness_s=120))
    live = history(engine)
    committed = live.offset
    burst = seconds(ONSET, 120, bad=True) + seconds(ONSET + 120, 490) + seconds(ONSET + 610, 10, bad=True)
    msgs = [(t, batch(recs)) for t, recs in burst]
    res = live.send(msgs, commit=False)
    assert [(a.provisional, a.state) for a in res.alerts] == [
        (False, AlertState.FIRING), (False, AlertState.RESOLVED), (True, AlertState.FIRING)]
    taker = Engine([slo_], store, EngineConfig(allowed_lateness_s=120))
    taker.assign({0})
    after = Live(taker, offset=committed)
    late = ONSET + 620 + 300  # the takeover comes five minutes later: not live any more
    after.send(msgs, now=late)
    for i in range(300):
        t = ONSET + 620 + i
        m = [(float(t), batch([record(t + j / 10) for j in range(10)]))]
        if i < 10:  # the late successes of the 10 bad seconds, within the allowed lateness
            m.append((float(t), batch([record(ONSET + 610 + i + 0.5, total=2000)])))
        after.send(m, now=late + i)
    assert [(a.provisional, a.state, a.reason) for _, a in after.alerts if a.ts > ONSET + 600] == [
        (True, AlertState.RESOLVED, "retracted")]
    assert after.outcomes.get(Outcome.CONFIRMED) is None and len(taker.provisionals) == 0


def test_a_provisional_page_of_a_series_displaced_at_the_series_limit_is_retracted() -> None:
    cfg = EngineConfig(allowed_lateness_s=120, max_series_per_slo=1, series_allow=(("cluster", "trusted-*"),))
    engine = Engine([pages_only()], {}, cfg)
    live = history(engine)
    live.play(seconds(ONSET, 55, bad=True))
    assert [(a.provisional, a.state) for _, a in live.pages()] == [(True, AlertState.FIRING)]
    # A trusted placement takes the only place of the SLO: the burning series is displaced.
    for i in range(3):
        t = ONSET + 55 + i
        live.send([(float(t), batch([record(t + j / 10, cluster="trusted-1") for j in range(10)]))])
    assert not engine.counters.has_series(SERIES)
    pages = [(a.provisional, a.state, a.reason, a.dimensions.cluster) for _, a in live.pages()]
    assert pages == [(True, AlertState.FIRING, None, "eu-west-1"),
                     (True, AlertState.RESOLVED, "retracted", "eu-west-1")]
    assert len(engine.provisionals) == 0 and not [k for k in engine.store if k.startswith(PROVISIONAL_PREFIX)]


def test_the_provisional_pass_goes_in_bounded_steps_with_the_same_alerts() -> None:
    calls = {1: 0, None: 0}

    def run(step: int | None) -> list[Alert]:
        engine = Engine([pages_only()], {}, EngineConfig(allowed_lateness_s=120))
        live = history(engine)
        out = []
        for t, recs in seconds(ONSET, 70, bad=True):
            others = [replace_cluster(r, cl) for cl in ("us-east-1", "ap-south-1") for r in recs]
            msgs = [(*batch(recs + others), live.offset)]
            res = engine.process(0, msgs, now=t + 1.0)
            live.offset += 1
            res.absorb(engine.provisional(0, now=t + 1.0, max_evaluations=step))
            calls[step] += 1
            while engine.provisional_due(0):
                res.absorb(engine.provisional(0, now=t + 1.0, max_evaluations=step))
                calls[step] += 1
            engine.commit(res)
            out += res.alerts
        return out

    stepped, whole = run(1), run(None)
    assert stepped == whole and any(a.provisional for a in whole)
    assert calls[1] > calls[None] == 70  # three series a second, one evaluation per call


def replace_cluster(r: dict, cluster: str) -> dict:
    return {**r, "cluster": cluster}


def test_the_demo_counts_a_confirmed_provisional_page_as_one_page() -> None:
    from streams.demo.story import raised
    from tests.factories import alert

    early = alert(ts=int(ONSET + 60), provisional=True)
    final = alert(ts=int(ONSET + 60))
    resolved = alert(ts=int(ONSET + 900), state=AlertState.RESOLVED)
    again = alert(ts=int(ONSET + 2000))
    assert raised([early, final, resolved, again]) == [early, again]
    retraction = alert(ts=int(ONSET + 60), state=AlertState.RESOLVED, provisional=True, reason="retracted")
    assert raised([early, retraction, final]) == [early, final]


def test_a_takeover_does_not_retract_the_provisional_page_of_a_series_it_has_not_counted_again_yet() -> None:
    """A batch creates a series and fires its provisional page; the worker dies before the batch commits.
    The taker's first batch from the committed offset does not hold that series' records yet: the series'
    absence is no displacement, and the page must wait for its final evaluation, not be retracted."""
    store: dict[str, bytes] = {}
    engine = Engine([pages_only()], store, EngineConfig(allowed_lateness_s=120))
    live = history(engine)
    committed = live.offset
    t = float(ONSET)
    healthy = (t, batch([record(t + j / 10) for j in range(10)]))
    burst = (t, batch([record(t + 0.5, cluster="us-east-1", region="us-east", total=20_000, errors=20_000)]))
    res = live.send([healthy, burst], commit=False)
    assert [(a.provisional, a.dimensions.cluster) for a in res.alerts] == [(True, "us-east-1")]
    taker = Engine([pages_only()], store, EngineConfig(allowed_lateness_s=120))
    taker.assign({0})
    after = Live(taker, offset=committed)
    after.send([healthy])  # the series of the burst is not counted again yet
    after.send([burst])
    for i in range(1, 200):
        s = ONSET + i
        after.send([(float(s), batch([record(s + j / 10) for j in range(10)] + [
            record(s + j / 10, cluster="us-east-1", region="us-east", errors=1) for j in range(10)]))])
    east = [(a.provisional, a.state, a.reason) for _, a in after.pages() if a.dimensions.cluster == "us-east-1"]
    assert east == [(False, AlertState.FIRING, None)], east
    assert after.outcomes.get(Outcome.RETRACTED) is None and after.outcomes[Outcome.CONFIRMED] == 1
