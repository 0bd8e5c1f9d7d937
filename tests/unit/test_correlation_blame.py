"""Blame only what changed (issue 20): evidence that compares like with like, warnings by kind, timing
that decays after a rollout completed. Each test is one situation an on-call engineer meets, played on
a per-minute traffic model of two clusters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import orjson
import pytest

from streams.core.changes import ServiceChanges
from streams.core.correlation import (
    DEFAULT_CONFIG,
    BurnContext,
    CorrelationConfig,
    WarningKind,
    correlate,
    time_strength,
    warning_kind,
)
from streams.core.errors import RecordError
from streams.core.model import HOUR
from streams.core.wire import suspect as w
from streams.core.wire.k8s_event import KubeEvent, decode_event
from streams.core.wire.rollout import Phase, RolloutRecord
from tests.factories import changes_of, kube_event, rollout_record

T0 = 1_700_000_000 // 3600 * 3600
ONSET = T0 + 5 * HOUR
MIN = 60
OK = 0.0002  # a healthy error ratio (the budget rate at 99.9 % is 0.001)
PER_MINUTE = 12_000
NEW_PODS = "playback-api-7d9f8c6b5"  # the template hash of revision 42 (tests.factories)


@dataclass
class Traffic:
    """Requests per minute by cluster and playback revision (``None``: records without ``revision``)."""

    cells: dict[tuple[str, str | None, int], tuple[int, int]] = field(default_factory=dict)

    def serve(self, cluster: str, revision: str | None, t0: float, t1: float, ratio: float | tuple[float, float],
              per_minute: int = PER_MINUTE) -> None:
        """``revision`` serves ``cluster`` over [t0, t1) at ``ratio`` (or rising linearly from a to b)."""
        a, b = ratio if isinstance(ratio, tuple) else (ratio, ratio)
        minutes = range(int(t0 // MIN), int(t1 // MIN))
        for i, m in enumerate(minutes):
            r = a + (b - a) * i / max(1, len(minutes) - 1)
            self.cells[(cluster, revision, m)] = (round(per_minute * r), per_minute)

    def revisions(self, cluster: str, start: float, end: float) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for (cl, rev, m), (e, t) in self.cells.items():
            if cl == cluster and rev is not None and start // MIN <= m < end // MIN:
                got = out.get(rev, (0, 0))
                out[rev] = (got[0] + e, got[1] + t)
        return out

    def traffic(self, cluster: str, start: float, end: float) -> tuple[int, int]:
        bad = total = 0
        for (cl, _, m), (e, t) in self.cells.items():
            if cl == cluster and start // MIN <= m < end // MIN:
                bad += e
                total += t
        return bad, total


def ctx(**changes: object) -> BurnContext:
    base: dict[str, object] = {"service": "playback-api", "cluster": "eu-west-1", "platform": "kubernetes",
                               "onset_ts": ONSET, "at": ONSET + 5 * MIN, "clusters": ("eu-west-1", "us-east-1")}
    base.update(changes)
    return BurnContext(**base)  # type: ignore[arg-type]


def completed_rollout(started: float, completed: float) -> list[RolloutRecord]:
    """playback-api 41 -> 42 in eu-west-1."""
    return [rollout_record(ts=float(started), phase=Phase.STARTED),
            rollout_record(ts=float(completed), phase=Phase.COMPLETED)]


def blame(traffic: Traffic, sc: ServiceChanges, cfg: CorrelationConfig = DEFAULT_CONFIG,
          **ctx_changes: object) -> list[w.RolloutSuspect | w.WarningSuspect | w.InfraSuspect]:
    return correlate(ctx(**ctx_changes), sc, traffic.revisions, cfg, traffic=traffic.traffic)


def everything(traffic: Traffic, sc: ServiceChanges, **ctx_changes: object) -> w.RolloutSuspect:
    """The rollout suspect with every piece of evidence, however low its score."""
    got = blame(traffic, sc, CorrelationConfig(min_score=0.0), **ctx_changes)
    return next(s for s in got if isinstance(s, w.RolloutSuspect))


def healthy_rollout_then_outage(*, tagged: bool, everywhere: bool, completed_before: int = 40 * MIN) -> Traffic:
    """Revision 42 rolled out in eu-west-1 and ran well until an unrelated outage at ONSET; us-east-1
    stays on 41 and burns too when ``everywhere``."""
    t = Traffic()
    new, old = ("42", "41") if tagged else (None, None)
    done = ONSET - completed_before
    t.serve("eu-west-1", old, ONSET - 3 * HOUR, done - 5 * MIN, OK)
    t.serve("eu-west-1", new, done - 5 * MIN, ONSET, OK)
    t.serve("eu-west-1", new, ONSET, ONSET + 5 * MIN, 0.2)
    t.serve("us-east-1", old, ONSET - 3 * HOUR, ONSET, OK)
    t.serve("us-east-1", old, ONSET, ONSET + 5 * MIN, 0.2 if everywhere else OK)
    return t


@pytest.mark.parametrize("tagged", [True, False], ids=["revision-tagged", "untagged"])
@pytest.mark.parametrize("everywhere", [True, False], ids=["outage-everywhere", "outage-in-the-cluster"])
def test_a_healthy_rollout_is_not_blamed_for_a_later_unrelated_outage(tagged: bool, everywhere: bool) -> None:
    done = ONSET - 40 * MIN
    sc = changes_of(*completed_rollout(done - 5 * MIN, done))
    traffic = healthy_rollout_then_outage(tagged=tagged, everywhere=everywhere)
    assert blame(traffic, sc) == [], "no suspect: the page says so"
    s = everything(traffic, sc)
    history = next(e for e in s.evidence if isinstance(e, w.RevisionHistory))
    assert history.verdict == "healthy_run" and history.weight == DEFAULT_CONFIG.healthy_run_weight
    # From the completion to a minute before the onset (the onset's resolution): revision 42's own
    # requests when tagged, the cluster's otherwise.
    run = 40 * MIN - MIN
    assert history.seconds == run and history.after.total == 39 * PER_MINUTE
    assert "served well" in history.detail
    assert not any(isinstance(e, w.RevisionErrorRatio) and e.strength for e in s.evidence), \
        "the new revision during the burn is not compared with the old one before it"
    if everywhere:
        other = next(e for e in s.evidence if isinstance(e, w.OtherClusters))
        assert other.clusters == ("us-east-1",) and other.weight == DEFAULT_CONFIG.exonerated_weight
        assert other.others.ratio == pytest.approx(0.2, abs=0.01) and "fail as much" in other.detail


def test_the_same_outage_right_after_the_rollout_blames_it() -> None:
    """The counterpart: errors from the moment the new revision serves (a bad rollout)."""
    sc = changes_of(*completed_rollout(ONSET - 4 * MIN, ONSET - MIN))
    t = Traffic()
    t.serve("eu-west-1", "41", ONSET - 3 * HOUR, ONSET - 4 * MIN, OK)
    t.serve("eu-west-1", "42", ONSET - 4 * MIN, ONSET + 5 * MIN, 0.2)
    t.serve("us-east-1", "41", ONSET - 3 * HOUR, ONSET + 5 * MIN, OK)
    (top, *_) = blame(t, sc)
    assert isinstance(top, w.RolloutSuspect) and top.score >= 0.8
    other = next(e for e in top.evidence if isinstance(e, w.OtherClusters))
    assert other.strength == 0.6 and other.burning.revision == "42" and other.others.revision == "41"
    assert "during the burn" in other.detail and "in other clusters" in top.summary


@pytest.mark.parametrize("baseline", [OK, 0.0004], ids=["baseline-0.02%", "baseline-0.04%"])
def test_a_slow_regression_after_the_rollout_stays_blamed(baseline: float) -> None:
    """Errors grow from the completion on, below the budget rate until the onset 40 minutes later (with
    a baseline of 0.04 % the run's mean is under twice the baseline: the growth still shows)."""
    done = ONSET - 40 * MIN
    sc = changes_of(*completed_rollout(done - 5 * MIN, done))
    for tagged in (True, False):
        t = Traffic()
        new, old = ("42", "41") if tagged else (None, None)
        t.serve("eu-west-1", old, ONSET - 3 * HOUR, done - 5 * MIN, baseline)
        t.serve("eu-west-1", new, done - 5 * MIN, ONSET, (baseline, 0.0009))
        t.serve("eu-west-1", new, ONSET, ONSET + 5 * MIN, (0.002, 0.03))
        t.serve("us-east-1", old, ONSET - 3 * HOUR, ONSET + 5 * MIN, OK)
        (top, *_) = blame(t, sc)
        assert isinstance(top, w.RolloutSuspect) and top.score >= 0.5, (tagged, top)
        grew = next(e for e in top.evidence if isinstance(e, w.RevisionHistory))
        assert grew.verdict == "errors_grew" and grew.after.ratio > 1.25 * grew.before.ratio
        assert grew.strength == 0.8 and "in each quarter" in grew.detail
        assert "errors grew after it" in top.summary


def test_an_outage_that_builds_up_late_in_a_healthy_run_is_not_the_rollouts() -> None:
    """30 healthy minutes after the rollout, then errors build up over 10 minutes before crossing the
    budget rate: the growth did not start with the rollout."""
    done = ONSET - 40 * MIN
    sc = changes_of(*completed_rollout(done - 5 * MIN, done))
    t = Traffic()
    t.serve("eu-west-1", None, ONSET - 3 * HOUR, ONSET - 10 * MIN, OK)
    t.serve("eu-west-1", None, ONSET - 10 * MIN, ONSET, (OK, 0.0009))
    t.serve("eu-west-1", None, ONSET, ONSET + 5 * MIN, 0.1)
    t.serve("us-east-1", None, ONSET - 3 * HOUR, ONSET + 5 * MIN, OK)
    assert blame(t, sc) == []
    history = next(e for e in everything(t, sc).evidence if isinstance(e, w.RevisionHistory))
    assert history.verdict == "healthy_run"


def test_node_trouble_after_a_healthy_rollout_is_its_own_suspect_naming_the_nodes() -> None:
    done = ONSET - 30 * MIN
    trouble = [kube_event(first_ts=float(ONSET + i), last_ts=float(ONSET + 60 + i), reason=reason,
                          name=f"{NEW_PODS}-{i:05d}", uid=f"u{i}", count=2, node=f"node-{i % 2 + 1}")
               for i, reason in enumerate(["NodeNotReady", "NodeNotReady", "Evicted", "FailedScheduling"])]
    sc = changes_of(*completed_rollout(done - 5 * MIN, done), *trouble)
    t = Traffic()
    t.serve("eu-west-1", None, ONSET - 3 * HOUR, ONSET, OK)
    t.serve("eu-west-1", None, ONSET, ONSET + 5 * MIN, 0.1)
    t.serve("us-east-1", None, ONSET - 3 * HOUR, ONSET + 5 * MIN, OK)
    got = blame(t, sc)
    assert [s.kind for s in got] == ["infrastructure"]
    (infra,) = got
    assert isinstance(infra, w.InfraSuspect)
    assert infra.nodes == ("node-1", "node-2") and infra.cluster == "eu-west-1" and infra.count == 8
    assert dict(infra.reasons) == {"NodeNotReady": 4, "Evicted": 2, "FailedScheduling": 2}
    assert infra.workloads == ("playback/playback-api",)
    assert infra.summary.startswith("infrastructure trouble in eu-west-1 on nodes node-1, node-2: 4 NodeNotReady")
    rollout = everything(t, sc)
    assert not any(isinstance(e, w.WarningCount | w.WarningSeen) for e in rollout.evidence), \
        "infrastructure warnings are never evidence for a rollout"
    assert w.decode_suspect(infra.to_json()) == infra


def test_node_trouble_during_a_rollout_is_not_its_evidence_either() -> None:
    sc = changes_of(rollout_record(ts=float(ONSET - 3 * MIN), phase=Phase.STARTED),
                    kube_event(first_ts=float(ONSET), last_ts=float(ONSET), reason="FailedScheduling",
                               name=f"{NEW_PODS}-00001", count=30))
    s = everything(Traffic(), sc)
    assert not any(isinstance(e, w.WarningCount) for e in s.evidence)


def test_a_crash_loop_long_after_the_rollout_completed_is_not_the_rollouts_evidence() -> None:
    done = ONSET - 40 * MIN
    crash = kube_event(first_ts=float(ONSET), last_ts=float(ONSET + 120), reason="CrashLoopBackOff",
                       name=f"{NEW_PODS}-00001", count=12)
    sc = changes_of(*completed_rollout(done - 5 * MIN, done), crash)
    got = blame(Traffic(), sc)
    assert [s.kind for s in got] == ["k8s_warning"]
    early = kube_event(first_ts=float(done - 2 * MIN), last_ts=float(ONSET + 120), reason="CrashLoopBackOff",
                       name=f"{NEW_PODS}-00001", count=12)
    sc = changes_of(*completed_rollout(done - 5 * MIN, done), early)
    s = everything(Traffic(), sc)
    assert any(isinstance(e, w.WarningCount) for e in s.evidence), "seen while it rolled out: its own"


def test_timing_decays_with_the_time_since_completion() -> None:
    dt = 45 * MIN
    values = [time_strength(dt, completed_before_onset=g) for g in (None, 0, 300, 600, 1200, 3600)]
    assert values[0] == values[1] == values[2], "within the grace the completion changes nothing"
    assert values[2] > values[3] > values[4] > values[5] and values[5] < 0.01
    assert math.isclose(values[3], values[2] * math.exp(-300 / DEFAULT_CONFIG.completion_tau_s))


def test_timing_alone_an_hour_after_completion_is_no_suspect_and_ranks_below_a_warning_storm() -> None:
    done = ONSET - 60 * MIN
    storm = [kube_event(first_ts=float(ONSET - 60 + i), last_ts=float(ONSET + i), reason="FailedScheduling",
                        name=f"playback-api-5c4b3a291-{i:05d}", uid=f"s{i}", count=3) for i in range(20)]
    sc = changes_of(*completed_rollout(done - 5 * MIN, done), *storm)
    got = blame(Traffic(), sc)
    assert [s.kind for s in got] == ["infrastructure"]


@pytest.mark.parametrize(("reason", "kind"), [
    ("CrashLoopBackOff", WarningKind.REVISION), ("ErrImagePull", WarningKind.REVISION),
    ("Unhealthy", WarningKind.REVISION), ("NodeNotReady", WarningKind.INFRASTRUCTURE),
    ("FailedScheduling", WarningKind.INFRASTRUCTURE), ("FailedMount", WarningKind.INFRASTRUCTURE),
    ("Evicted", WarningKind.INFRASTRUCTURE), ("SomethingCustom", WarningKind.OTHER)])
def test_warning_reasons_by_kind(reason: str, kind: WarningKind) -> None:
    assert warning_kind(reason) is kind


def test_the_node_of_an_event_is_read_from_whoever_wrote_it() -> None:
    base = {"cluster": "eu-west-1", "metadata": {"uid": "e1"}, "type": "Warning", "reason": "NodeNotReady",
            "firstTimestamp": "2026-12-07T10:00:00Z", "lastTimestamp": "2026-12-07T10:00:00Z",
            "involvedObject": {"kind": "Pod", "name": "playback-api-7d9f8c6b5-x2x9q", "namespace": "playback"}}
    assert decode_event({**base, "source": {"component": "kubelet", "host": "node-7"}},
                        default_cluster=None).node == "node-7"
    assert decode_event({**base, "involvedObject": {"kind": "Node", "name": "node-3"}},
                        default_cluster=None).node == "node-3"
    v1 = {"apiVersion": "events.k8s.io/v1", "cluster": "eu-west-1", "metadata": {"uid": "e2"}, "type": "Warning",
          "reason": "Evicted", "eventTime": "2026-12-07T10:00:00.000000Z", "reportingController": "kubelet",
          "reportingInstance": "node-9", "regarding": base["involvedObject"]}
    assert decode_event(v1, default_cluster=None).node == "node-9"
    bad = decode_event({**base, "source": {"host": "Not A Node/../x"}}, default_cluster=None)
    assert bad.node is None, "a node name that could not be one is dropped, the event is kept"
    assert KubeEvent.from_json(bad.to_json()) == bad


def test_a_healthy_revision_taking_traffic_while_an_outage_builds_up_is_not_made_to_look_worse() -> None:
    """Revision 42 rolls out in eu-west-1 from ONSET - 2 min while errors of every revision rise over
    8 minutes: over the whole burn it served more of the worst minutes, minute by minute it fails as
    often as 41."""
    sc = changes_of(rollout_record(ts=float(ONSET - 2 * MIN), phase=Phase.STARTED))
    t = Traffic()
    t.serve("eu-west-1", "41", ONSET - 3 * HOUR, ONSET - 2 * MIN, OK)
    t.serve("us-east-1", "41", ONSET - 3 * HOUR, ONSET + 10 * MIN, OK)
    for i in range(12):
        m = ONSET - 2 * MIN + i * MIN
        share = min(1.0, 0.1 + 0.1 * i)
        ratio = OK if m < ONSET else min(0.4, 0.05 * (i - 1))
        t.serve("eu-west-1", "42", m, m + MIN, ratio, per_minute=round(PER_MINUTE * share))
        t.serve("eu-west-1", "41", m, m + MIN, ratio, per_minute=round(PER_MINUTE * (1 - share)))
    got = blame(t, sc, at=ONSET + 10 * MIN)
    assert not any(isinstance(s, w.RolloutSuspect) for s in got), got
    ev = next(e for e in everything(t, sc, at=ONSET + 10 * MIN).evidence if isinstance(e, w.RevisionErrorRatio))
    assert ev.weight == DEFAULT_CONFIG.exonerated_same_cluster_weight and "1.0x minute by minute" in ev.detail
    assert "over 7 minutes" in ev.detail and ev.p_value > 0.1  # the minutes both served
    assert ev.new.ratio > 1.3 * (ev.old.ratio if ev.old else 0), "pooled over the burn, 42 looks worse"


def test_a_rollout_in_a_cluster_that_is_not_burning_is_not_a_suspect() -> None:
    """The same service rolls out in us-east-1 six minutes before eu-west-1 burns; us-east-1 is fine."""
    sc = changes_of(rollout_record(ts=float(ONSET - 6 * MIN), phase=Phase.STARTED, cluster="us-east-1"))
    t = Traffic()
    t.serve("eu-west-1", None, ONSET - 3 * HOUR, ONSET, OK)
    t.serve("eu-west-1", None, ONSET, ONSET + 5 * MIN, 0.3)
    t.serve("us-east-1", None, ONSET - 3 * HOUR, ONSET + 5 * MIN, OK)
    assert blame(t, sc) == []
    s = everything(t, sc)
    note = next(e for e in s.evidence if isinstance(e, w.Note) and e.type == "own_cluster_healthy")
    assert note.weight == DEFAULT_CONFIG.exonerated_weight
    assert "us-east-1, where it rolled out, is not burning" in note.detail
    assert w.decode_suspect(s.to_json()) == s


def _history(s: w.RolloutSuspect) -> w.RevisionHistory | None:
    return next((e for e in s.evidence if isinstance(e, w.RevisionHistory)), None)


def test_a_run_of_blips_is_no_healthy_run_and_minutes_without_requests_do_not_count() -> None:
    done = ONSET - 40 * MIN
    sc = changes_of(*completed_rollout(done - 5 * MIN, done))
    blippy = healthy_rollout_then_outage(tagged=False, everywhere=False)
    for k in range(3):  # three minutes at 5x the budget rate in the run
        blippy.serve("eu-west-1", None, done + (10 + 10 * k) * MIN, done + (11 + 10 * k) * MIN, 0.005)
    assert _history(everything(blippy, sc)) is None, "3 blips > max_blips: no verdict"
    blippy.serve("eu-west-1", None, done + 30 * MIN, done + 31 * MIN, OK)
    history = _history(everything(blippy, sc))
    assert history is not None and history.verdict == "healthy_run" and "2 blip minutes left out" in history.detail
    assert history.seconds == (39 - 2) * MIN
    # Revision 42 took requests only in the last 3 minutes of a 39-minute run: too little to judge.
    t = Traffic()
    t.serve("eu-west-1", "41", ONSET - 3 * HOUR, ONSET - 3 * MIN, OK)
    t.serve("eu-west-1", "42", ONSET - 4 * MIN, ONSET + 5 * MIN, OK)
    t.serve("eu-west-1", "41", ONSET - 3 * MIN, ONSET + 5 * MIN, OK)
    assert _history(everything(t, sc)) is None


def test_a_canary_with_too_few_requests_is_not_exonerated_by_the_old_revisions_health() -> None:
    """Records carry revisions and the canary served 15 requests, all failing: the cluster's whole
    traffic (the old revision's) says nothing about it."""
    sc = changes_of(rollout_record(ts=float(ONSET - 40 * MIN), phase=Phase.STARTED))
    t = Traffic()
    t.serve("eu-west-1", "41", ONSET - 3 * HOUR, ONSET + 5 * MIN, OK)
    t.serve("eu-west-1", "42", ONSET - 40 * MIN, ONSET - 39 * MIN, 1.0, per_minute=15)
    assert _history(everything(t, sc)) is None


def test_the_new_revision_worse_in_the_same_minutes_outweighs_a_healthy_run() -> None:
    """A canary healthy for 30 minutes, then failing 30 % while revision 41 beside it stays healthy."""
    sc = changes_of(rollout_record(ts=float(ONSET - 35 * MIN), phase=Phase.STARTED))
    t = Traffic()
    t.serve("eu-west-1", "41", ONSET - 3 * HOUR, ONSET + 5 * MIN, OK)
    t.serve("eu-west-1", "42", ONSET - 35 * MIN, ONSET, OK, per_minute=1200)
    t.serve("eu-west-1", "42", ONSET, ONSET + 5 * MIN, 0.3, per_minute=1200)
    (top, *_) = blame(t, sc)
    assert isinstance(top, w.RolloutSuspect) and top.score >= 0.8
    ratio = next(e for e in top.evidence if isinstance(e, w.RevisionErrorRatio))
    assert ratio.strength == 0.9 and "over 5 minutes" in ratio.detail and ratio.p_value < 1e-9
    history = _history(top)
    assert history is not None and history.weight is None and "same minutes" in history.detail


def test_other_clusters_are_told_by_code_not_by_revision_number() -> None:
    """us-east-1's Deployment counts revisions on its own: its revision 97 is the old code, and
    eu-west-2's revision 7 is the new code (same template hash)."""
    new = rollout_record(ts=float(ONSET - 4 * MIN), phase=Phase.STARTED)
    done = rollout_record(ts=float(ONSET - MIN), phase=Phase.COMPLETED)
    old_there = rollout_record(ts=float(ONSET - 5 * HOUR), phase=Phase.COMPLETED, cluster="us-east-1", revision="97",
                               previous_revision="96", template_hash="5c4b3a291",
                               images=("registry.example.com/playback-api:1.7.3",))
    new_there = rollout_record(ts=float(ONSET - 30 * MIN), phase=Phase.COMPLETED, cluster="eu-west-2", revision="7",
                               previous_revision="6")
    sc = changes_of(new, done, old_there, new_there)
    t = Traffic()
    t.serve("eu-west-1", "5c4b3a291", ONSET - 3 * HOUR, ONSET - 4 * MIN, OK)
    t.serve("eu-west-1", "7d9f8c6b5", ONSET - 4 * MIN, ONSET + 5 * MIN, 0.2)
    t.serve("us-east-1", "5c4b3a291", ONSET - 3 * HOUR, ONSET + 5 * MIN, OK)
    t.serve("eu-west-2", "7d9f8c6b5", ONSET - 3 * HOUR, ONSET + 5 * MIN, 0.2)
    (top, *_) = blame(t, sc, clusters=("eu-west-1", "eu-west-2", "us-east-1"))
    assert isinstance(top, w.RolloutSuspect) and top.ref.workload.cluster == "eu-west-1"
    other = next(e for e in top.evidence if isinstance(e, w.OtherClusters))
    assert other.clusters == ("us-east-1",), "eu-west-2 runs the new code, us-east-1 the old one"
    assert other.strength == 0.6 and other.others.total == 5 * PER_MINUTE  # the burn's 5 minutes


def test_a_warning_first_seen_before_the_rollout_is_not_its_own() -> None:
    sc = changes_of(rollout_record(ts=float(ONSET - 3 * MIN), phase=Phase.STARTED),
                    kube_event(first_ts=float(ONSET - 50 * MIN), last_ts=float(ONSET), reason="CrashLoopBackOff",
                               name=f"{NEW_PODS}-00001", count=40))
    s = everything(Traffic(), sc)
    assert not any(isinstance(e, w.WarningCount) for e in s.evidence)


def test_warnings_of_a_rollout_too_weak_to_list_stay_a_suspect_of_their_own() -> None:
    """A healthy rollout an hour before: not listed; the crash loop on its pods that began at the onset
    is listed on its own."""
    done = ONSET - 60 * MIN
    crash = kube_event(first_ts=float(done + 5 * MIN), last_ts=float(ONSET + 60), reason="CrashLoopBackOff",
                       name=f"{NEW_PODS}-00001", count=120)
    sc = changes_of(*completed_rollout(done - 5 * MIN, done), crash)
    got = blame(healthy_rollout_then_outage(tagged=False, everywhere=False, completed_before=60 * MIN), sc)
    assert [s.kind for s in got] == ["k8s_warning"]


def test_stored_warnings_without_a_node_read_and_a_bad_node_name_is_refused() -> None:
    sc = changes_of(kube_event(first_ts=float(ONSET), last_ts=float(ONSET), reason="Evicted", node="node-1"))
    raw = orjson.loads(sc.to_bytes())
    for wj in raw["w"].values():
        del wj["node"]
    back = ServiceChanges.from_bytes(orjson.dumps(raw))
    assert [x.node for x in back.warnings.values()] == [None]
    infra = {"kind": "infrastructure", "score": 0.5, "summary": "s", "cluster": "eu-west-1", "nodes": ["Bad/Node"],
             "reasons": {"Evicted": 1}, "count": 1, "workloads": [], "objects": [], "first_seen": 1.0,
             "last_seen": 2.0, "same_cluster": True}
    with pytest.raises(RecordError, match="nodes"):
        w.decode_suspect(infra)
    assert isinstance(w.decode_suspects([infra])[0], w.OpaqueSuspect)


def test_the_node_of_a_warning_does_not_depend_on_the_order_its_events_arrive_in() -> None:
    a = kube_event(first_ts=float(ONSET), last_ts=float(ONSET), reason="Evicted", uid="a", node="node-2")
    b = kube_event(first_ts=float(ONSET), last_ts=float(ONSET), reason="Evicted", uid="b", node="node-1")
    later = kube_event(first_ts=float(ONSET), last_ts=float(ONSET + 9), reason="Evicted", uid="c", node="node-3")
    one, other = changes_of(a, b).warnings, changes_of(b, a).warnings
    assert [x.node for x in one.values()] == [x.node for x in other.values()] == ["node-1"]
    assert [x.uids for x in one.values()] == [x.uids for x in other.values()]
    assert [x.node for x in changes_of(a, b, later).warnings.values()] == ["node-3"]


def test_minutes_where_the_previous_revision_did_not_burn_exonerate_nothing() -> None:
    """The canary and revision 41 shared one error-free minute; then the canary alone failed 26 %."""
    sc = changes_of(rollout_record(ts=float(ONSET - MIN), phase=Phase.STARTED))
    t = Traffic()
    t.serve("eu-west-1", "41", ONSET - 3 * HOUR, ONSET + MIN, 0.0)
    t.serve("eu-west-1", "42", ONSET, ONSET + MIN, 0.0, per_minute=1000)
    t.serve("eu-west-1", "42", ONSET + MIN, ONSET + 5 * MIN, 0.26)
    t.serve("us-east-1", "41", ONSET - 3 * HOUR, ONSET + 5 * MIN, OK)
    (top, *_) = blame(t, sc)
    assert isinstance(top, w.RolloutSuspect) and top.score >= 0.5
    assert not any(getattr(e, "weight", None) == DEFAULT_CONFIG.exonerated_same_cluster_weight for e in top.evidence)
    assert any(isinstance(e, w.OtherClusters) and e.strength == 0.6 for e in top.evidence)


def test_the_same_cluster_comparison_uses_the_burns_minutes_not_those_after_the_evaluation() -> None:
    """Both revisions fail 1 % for five minutes; in the minute the evaluation falls in (records after it
    arrive within the allowed lateness) revision 42 fails 50 %: not counted."""
    at = ONSET + 5 * MIN + 30
    sc = changes_of(rollout_record(ts=float(ONSET - 10 * MIN), phase=Phase.STARTED))
    t = Traffic()
    t.serve("eu-west-1", "41", ONSET - 3 * HOUR, ONSET - 10 * MIN, OK)
    for rev in ("41", "42"):
        t.serve("eu-west-1", rev, ONSET - 10 * MIN, ONSET, OK, per_minute=6000)
        t.serve("eu-west-1", rev, ONSET, ONSET + 5 * MIN, 0.01, per_minute=6000)
    t.serve("eu-west-1", "41", ONSET + 5 * MIN, ONSET + 6 * MIN, 0.01, per_minute=6000)
    t.serve("eu-west-1", "42", ONSET + 5 * MIN, ONSET + 6 * MIN, 0.5, per_minute=6000)
    ev = next(e for e in everything(t, sc, at=at).evidence if isinstance(e, w.RevisionErrorRatio))
    assert ev.weight == DEFAULT_CONFIG.exonerated_same_cluster_weight and "over 5 minutes" in ev.detail


def test_an_infrastructure_suspect_scores_each_reason_by_its_own_count() -> None:
    """One NodeNotReady beside 500 FailedScheduling is not 501 NodeNotReady."""
    def infra(*events: KubeEvent) -> w.InfraSuspect:
        (s,) = blame(Traffic(), changes_of(*events))
        assert isinstance(s, w.InfraSuspect)
        return s

    def ev(reason: str, count: int, uid: str) -> KubeEvent:
        return kube_event(first_ts=float(ONSET), last_ts=float(ONSET + 60), reason=reason, name=f"{NEW_PODS}-{uid}",
                          uid=uid, count=count)

    mixed = infra(ev("NodeNotReady", 1, "a"), ev("FailedScheduling", 500, "b"))
    one = infra(ev("NodeNotReady", 1, "a")).score
    many = infra(ev("FailedScheduling", 500, "b")).score
    assert mixed.score == pytest.approx(1 - (1 - one) * (1 - many), abs=1e-3)
    assert mixed.score < infra(ev("NodeNotReady", 501, "a")).score
    assert dict(mixed.reasons) == {"FailedScheduling": 500, "NodeNotReady": 1}
