"""Correlation: the right rollout blamed, an unrelated one never, evidence concrete."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.changes import DEFAULT_LIMITS, ServiceChanges, service_of_event
from streams.core.correlation import (
    DEFAULT_CONFIG,
    BurnContext,
    CorrelationConfig,
    RevisionCounts,
    correlate,
    time_strength,
    workload_of,
)
from streams.core.engine import Engine, EngineConfig
from streams.core.model import HOUR, Severity
from streams.core.tracks import TRACK_PREFIX, AlertTracks
from streams.core.wire import suspect as w
from streams.core.wire.alert import Alert
from streams.core.wire.k8s_event import KubeEvent
from streams.core.wire.rollout import Phase, RolloutRecord, revision_aliases
from tests.factories import (
    batch,
    changes_of,
    kube_event,
    record,
    rollout_record,
    rollout_suspect,
    slo,
    warning_suspect,
)

T0 = 1_700_000_000 // 3600 * 3600
ONSET = T0 + 5 * HOUR


def rollout(ts: float, phase: str = "started", **changes: Any) -> RolloutRecord:
    """playback/playback-api in eu-west-1, revision 41 -> 42 (``cluster=``, ``deployment=`` vary the workload)."""
    return rollout_record(ts=float(ts), phase=Phase(phase), **changes)


def warning(ts: float, reason: str = "BackOff", name: str = "playback-api-7d9f8c6b5-x2x9q", count: int = 1,
            **changes: Any) -> KubeEvent:
    """A Warning event on a pod (one uid per pod and reason) seen once at ``ts`` (a float, as decoded)."""
    return kube_event(first_ts=float(ts), last_ts=float(ts), reason=reason, name=name, count=count,
                      uid=f"uid-{name}-{reason}", **changes)


def ctx(**changes: Any) -> BurnContext:
    base = {"service": "playback-api", "cluster": "eu-west-1", "platform": "kubernetes",
            "onset_ts": ONSET, "at": ONSET + 60}
    base.update(changes)
    return BurnContext(**base)


def rollouts_only(suspects: list[w.RolloutSuspect | w.WarningSuspect]) -> list[w.RolloutSuspect]:
    assert all(isinstance(s, w.RolloutSuspect) for s in suspects), suspects
    return [s for s in suspects if isinstance(s, w.RolloutSuspect)]


def no_revisions(cluster: str, start: float, end: float) -> RevisionCounts:
    return {}


def test_a_rollout_of_the_service_in_the_burning_cluster_is_blamed_first() -> None:
    sc = changes_of(
        rollout(ONSET - 180, cluster="us-east-1", deployment="playback-api", revision="7", previous_revision="6"),
        rollout(ONSET - 240),
    )
    got = rollouts_only(correlate(ctx(), sc, no_revisions))
    assert [(s.cluster, s.revision) for s in got] == [("eu-west-1", "42"), ("us-east-1", "7")]
    assert got[0].rank == 1 and got[0].score > got[1].score
    assert got[0].summary.startswith("rollout of playback/playback-api to revision 42 (playback-api:1.8.0) "
                                     "in eu-west-1, started 4m00s before the burn began")
    timing = got[0].evidence[0]
    assert timing == w.Timing(detail="rollout started 4m00s before the burn began", seconds_before_onset=240.0,
                            strength=round(time_strength(240), 3))
    assert any(e.type == "other_cluster" for e in got[1].evidence)


def test_an_outage_with_no_rollout_and_no_warning_has_no_suspect() -> None:
    assert correlate(ctx(), ServiceChanges(), no_revisions) == []
    assert correlate(ctx(), None, no_revisions) == []


def test_a_rollout_of_another_service_is_never_blamed_even_if_it_got_into_the_state() -> None:
    sc = changes_of(rollout(ONSET - 60, service="search-api", deployment="search-api"))
    assert correlate(ctx(), sc, no_revisions) == []


def test_a_rollout_started_after_the_burn_began_is_a_reaction_not_a_cause() -> None:
    sc = changes_of(rollout(ONSET + 30 * 60))
    assert correlate(ctx(at=ONSET + 3600), sc, no_revisions) == []


def test_a_rollout_older_than_the_lookback_is_not_a_suspect_unless_still_in_progress() -> None:
    old = ONSET - DEFAULT_CONFIG.lookback_s - 600
    done = changes_of(rollout(old), rollout(old + 300, phase="completed"))
    assert correlate(ctx(), done, no_revisions) == []
    stuck = changes_of(rollout(old), rollout(old + 300, phase="progressing"))
    got = correlate(ctx(), stuck, no_revisions)
    assert len(got) == 1 and any(e.type == "in_progress" for e in got[0].evidence)


def test_the_new_revision_carrying_the_errors_is_shown_as_evidence_and_raises_the_score() -> None:
    sc = changes_of(rollout(ONSET - 600))

    def revisions(cluster: str, start: float, end: float) -> RevisionCounts:
        return {"42": (180, 1000), "41": (2, 3000)} if cluster == "eu-west-1" else {}

    with_rev = correlate(ctx(), sc, revisions)[0]
    without = correlate(ctx(), sc, no_revisions)[0]
    assert with_rev.score > without.score >= 0.3
    ev = next(e for e in with_rev.evidence if isinstance(e, w.RevisionErrorRatio))
    assert ev.new == w.RevisionSide(revision="42", errors=180, total=1000, ratio=0.18, when="during the burn")
    assert ev.old is not None and ev.old.errors == 2 and ev.old.total == 3000
    assert ev.test == "one-sided Cochran-Mantel-Haenszel, minute by minute" and ev.z > 10 and ev.p_value < 1e-9
    assert "revision 42 errors 18.0% vs 0.1% on revision 41" in with_rev.summary


def test_image_tags_and_template_hashes_in_playback_records_match_the_rollout() -> None:
    r = rollout(ONSET)
    assert {"42", "7d9f8c6b5", "1.8.0", "registry.example.com/playback-api:1.8.0"} <= revision_aliases(
        r.revision, r.template_hash, r.images)
    assert {"41", "5c4b3a291", "1.7.3"} <= revision_aliases(r.previous_revision, r.previous_template_hash,
                                                            r.previous_images)


def test_a_rollout_whose_previous_revision_fails_as_much_is_exonerated() -> None:
    sc = changes_of(rollout(ONSET - 300))

    def revisions(cluster: str, start: float, end: float) -> RevisionCounts:
        return {"42": (50, 1000), "41": (150, 3000)}

    everything = CorrelationConfig(min_score=0.0)
    blip = correlate(ctx(), sc, revisions, everything)
    plain = correlate(ctx(), sc, no_revisions, everything)
    assert blip[0].score == pytest.approx(plain[0].score * DEFAULT_CONFIG.exonerated_same_cluster_weight, abs=1e-3)
    ev = next(e for e in blip[0].evidence if isinstance(e, w.RevisionErrorRatio))
    assert "does not explain the burn" in ev.detail


def test_a_crashloop_storm_of_the_new_pods_is_attached_to_the_rollout_as_evidence() -> None:
    pods = [f"playback-api-7d9f8c6b5-{i:05d}" for i in range(30)]
    storm = [warning(ONSET + i, name=p, count=3 + i % 4) for i, p in enumerate(pods)]
    sc = changes_of(rollout(ONSET - 300), *storm)
    got = correlate(ctx(at=ONSET + 120), sc, no_revisions)
    assert len(got) == 1, "the warnings are explained by the rollout, not separate suspects"
    ev = got[0].evidence
    summary = next(e for e in ev if isinstance(e, w.WarningCount))
    assert summary.count == sum(3 + i % 4 for i in range(30))
    assert [e.reason for e in ev if isinstance(e, w.WarningSeen)] == ["BackOff"] * 5
    assert "warnings (BackOff)" in got[0].summary
    plain = correlate(ctx(at=ONSET + 120), changes_of(rollout(ONSET - 300)), no_revisions)[0]
    assert got[0].score > plain.score


def test_warnings_without_a_rollout_are_one_suspect_per_workload_and_reason() -> None:
    sc = changes_of(*[warning(ONSET - 30 + i, reason="Unhealthy", name=f"playback-api-5c4b3a291-{i:05d}")
                      for i in range(12)])
    got = correlate(ctx(), sc, no_revisions)
    assert len(got) == 1
    (ws,) = got
    assert isinstance(ws, w.WarningSuspect) and ws.kind == "k8s_warning" and ws.count == 12
    assert ws.summary == "12x Unhealthy on 12 objects of playback/playback-api in eu-west-1"


def test_a_repeated_event_keeps_its_highest_count_and_redelivery_changes_nothing() -> None:
    sc = changes_of(warning(ONSET, count=3), warning(ONSET + 30, count=7), warning(ONSET + 30, count=7))
    (tracked,) = sc.warnings.values()
    assert tracked.uids == {"uid-playback-api-7d9f8c6b5-x2x9q-BackOff": 7}
    again = ServiceChanges.from_bytes(sc.to_bytes())
    again.apply_warning(warning(ONSET + 30, count=7))
    assert again.to_bytes() == sc.to_bytes()


def test_state_is_bounded_per_service() -> None:
    sc = ServiceChanges()
    for i in range(200):
        sc.apply_rollout(rollout(ONSET + i, revision=str(i)))
        sc.apply_warning(warning(ONSET + i, name=f"p-{i}"))
    assert len(sc.rollouts) == DEFAULT_LIMITS.max_rollouts and len(sc.warnings) == DEFAULT_LIMITS.max_warnings
    assert min(int(r.revision) for r in sc.rollouts.values()) == 200 - DEFAULT_LIMITS.max_rollouts


@pytest.mark.parametrize(("event", "expected"), [
    ({"owner_kind": "ReplicaSet", "owner_name": "search-api-5c4b3a291", "name": "x"}, "search-api"),
    ({"labels": {"app.kubernetes.io/name": "search-api"}, "name": "x"}, "search-api"),
    ({"labels": {"app": "playback-api"}, "name": "x"}, "playback-api"),
    ({"name": "playback-api-edge-6f7d-abcde", "kind": "Pod"}, "playback-api-edge"),
    ({"name": "playback-api-7d9f8c6b5-abcde", "kind": "Pod"}, "playback-api"),
    ({"name": "unrelated-7d9f8c6b5-abcde", "kind": "Pod"}, None),
], ids=["the owning workload's name", "app.kubernetes.io/name label", "app label",
        "the longest matching service name", "a pod of a deployment", "an object of no known service"])
def test_which_service_an_event_belongs_to(event: dict[str, Any], expected: str | None) -> None:
    ev = kube_event(**event)
    assert service_of_event(ev, ["playback-api", "playback-api-edge", "search-api"]) == expected


def test_workload_names_from_kubernetes_naming() -> None:
    assert workload_of("Pod", "web-7d9f8c-x2x") == "web"
    assert workload_of("ReplicaSet", "web-7d9f8c") == "web"
    assert workload_of("Pod", "anything", "ReplicaSet", "api-5c4b") == "api"
    assert workload_of("Deployment", "web") == "web"


# ---- properties ------------------------------------------------------------------------------------

minutes = st.integers(min_value=0, max_value=DEFAULT_CONFIG.lookback_s // 60)


@settings(max_examples=200, deadline=None)
@given(a=minutes, b=minutes, cluster=st.sampled_from(["eu-west-1", "us-east-1"]),
       phase=st.sampled_from(["started", "progressing", "completed", "failed"]))
def test_score_is_monotone_in_time_proximity(a: int, b: int, cluster: str, phase: str) -> None:
    near, far = sorted((a, b))

    def score(minutes_before: int) -> float:
        start = ONSET - 60 * minutes_before
        recs = [rollout(start, cluster=cluster)]
        if phase != "started":
            recs.append(rollout(start + 1, phase=phase, cluster=cluster))
        got = correlate(ctx(), changes_of(*recs), no_revisions)
        return float(got[0].score) if got else 0.0

    assert score(near) >= score(far)


@settings(max_examples=200, deadline=None)
@given(services=st.lists(st.sampled_from(["search-api", "ads-api", "playback-api-edge"]), min_size=1, max_size=6),
       offsets=st.lists(st.integers(min_value=-7200, max_value=600), min_size=6, max_size=6),
       with_revisions=st.booleans())
def test_another_services_rollout_is_never_blamed(services: list[str], offsets: list[int],
                                                  with_revisions: bool) -> None:
    sc = ServiceChanges()
    for i, (svc, off) in enumerate(zip(services, offsets, strict=False)):
        sc.apply_rollout(rollout(ONSET + off, service=svc, deployment=svc, revision=str(i)))

    def revisions(cluster: str, start: float, end: float) -> RevisionCounts:
        return {str(i): (500, 1000) for i in range(6)} if with_revisions else {}

    assert all(s.service == "playback-api" for s in correlate(ctx(), sc, revisions)
               if isinstance(s, w.RolloutSuspect))
    assert [s for s in correlate(ctx(), sc, revisions) if s.kind == "rollout"] == []


# ---- the engine attaches suspects to the alerts it fires -------------------------------------------


def outage_with_revisions(bad_revision: str, good_revision: str) -> list[tuple[bytes, bytes]]:
    """2 h healthy on the good revision, then the bad revision serves a third of requests with 60 %
    errors (a canary gone wrong) for 10 minutes."""
    msgs = []
    for s in range(0, 2 * 3600 + 600):
        t = T0 + s
        if s < 2 * 3600:
            recs = [record(t + i / 10, revision=good_revision) for i in range(10)]
        else:
            recs = [record(t + i / 10, revision=good_revision) for i in range(6)]
            recs += [record(t + 0.6 + i / 10, revision=bad_revision, errors=1 if i < 3 else 0) for i in range(4)]
        msgs.append(batch(recs))
    return msgs


def first_page(engine: Engine, msgs: list[tuple[bytes, bytes]], per_batch: int = 100) -> Alert:
    """Feed ``msgs`` to partition 0 in batches, committing each; the first page it fires."""
    alerts = []
    for i in range(0, len(msgs), per_batch):
        res = engine.process(0, [(k, v, i + j) for j, (k, v) in enumerate(msgs[i:i + per_batch])],
                             now=T0 + 86400)
        engine.commit(res)
        alerts.extend(res.alerts)
    return next(a for a in alerts if a.severity is Severity.PAGE)


def test_the_engine_fires_a_page_naming_the_rollout_with_revision_evidence() -> None:
    changes: dict[str, bytes] = {}
    sc = ServiceChanges()
    sc.apply_rollout(rollout(T0 + 2 * 3600 - 120, revision="42", previous_revision="41"))
    sc.apply_rollout(rollout(T0 + 2 * 3600 - 100, service="search-api", deployment="search-api", revision="9"))
    changes["playback-api"] = sc.to_bytes()
    store: dict[str, bytes] = {}
    msgs = outage_with_revisions("42", "41")
    page = first_page(Engine([slo()], store, EngineConfig(allowed_lateness_s=0), changes=changes), msgs)
    assert page.burn_onset == T0 + 2 * 3600
    top = page.suspects[0]
    assert isinstance(top, w.RolloutSuspect) and top.ref.name == "playback-api" and top.revision == "42"
    rev = next(e for e in top.evidence if isinstance(e, w.RevisionErrorRatio))
    assert rev.new.ratio == pytest.approx(0.75, abs=0.01) and rev.old is not None and rev.old.ratio == 0.0
    assert all(not (isinstance(s, w.RolloutSuspect) and s.ref.name == "search-api") for s in page.suspects)
    body = page.to_json()
    assert body["suspects"][0]["rank"] == 1 and body["burn_onset"] == page.burn_onset
    # The suspects are committed with the alert track: a restarted worker still knows them.
    restarted = Engine([slo()], store, EngineConfig(allowed_lateness_s=0), changes=changes)
    restarted.assign({0})
    again = restarted.tracks.suspects(page.dedup_key)[0]
    assert isinstance(again, w.RolloutSuspect) and again.revision == "42"
    assert orjson.loads(store["~rev|playback-api|eu-west-1"])["o"] == len(msgs) - 1


def test_revision_counts_are_not_doubled_by_a_replay_after_a_crash() -> None:
    msgs = [batch([record(T0 + s, revision="a", errors=s % 2)]) for s in range(120)]
    store: dict[str, bytes] = {}
    engine = Engine([slo()], store, EngineConfig(allowed_lateness_s=0))
    res = engine.process(0, [(k, v, i) for i, (k, v) in enumerate(msgs)], now=T0 + 86400)
    engine.commit(res)
    del store["~meta|0"]  # as if the worker died after writing the revisions but before the meta record
    again = Engine([slo()], store, EngineConfig(allowed_lateness_s=0))
    again.assign({0})
    again.commit(again.process(0, [(k, v, i) for i, (k, v) in enumerate(msgs)], now=T0 + 86400))
    assert again.revisions.counts("playback-api", "eu-west-1", T0, T0 + 3600) == {"a": (60, 120)}


def test_a_series_gone_quiet_is_evaluated_at_its_partitions_step_not_left_behind() -> None:
    # legacy traffic stops (the end of a migration) while kubernetes goes on: the quiet series must not
    # look stale to the gate for weeks; its current status is as of the partition's last step.
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0))
    msgs = []
    for s in range(0, 9 * 3600, 10):
        recs = [record(T0 + s, total=10)]
        if s < 3600:
            recs.append(record(T0 + s, total=10, cluster="dc-ams", platform="legacy"))
        msgs.append(batch(recs))
    for i in range(0, len(msgs), 200):
        engine.commit(engine.process(0, [(k, v, i + j) for j, (k, v) in enumerate(msgs[i:i + 200])], now=T0 + 86400))
    legacy = "playback-api-availability|dc-ams|eu-west|legacy"
    at = engine.meta(0).evaluated_to
    # No data in any short window (6 h here) for a series that is not firing: the step skips it.
    assert engine.read.last_status[legacy].at < at - 3600, "the step skips a quiet series"
    current = engine.read.current_status(legacy)
    assert current is not None and current.at == at
    assert current.burn_rates["5m"] == 0.0


def test_a_batch_message_that_spans_an_evaluation_step_counts_every_record_of_every_revision() -> None:
    """60 s messages (one record per second each, two revisions) cross several 10 s steps each: the
    records after the step inside a message used to be taken for already applied (the offset check
    compared with the message's own offset), and the revision split lost most of them."""
    msgs = [batch([record(T0 + m * 60 + s, revision="new" if s % 2 else "old", errors=1 if s % 2 else 0)
                   for s in range(60)]) for m in range(10)]
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0))
    for i, (k, v) in enumerate(msgs):
        engine.commit(engine.process(0, [(k, v, i)], now=T0 + 86400))
    got = engine.revisions.counts("playback-api", "eu-west-1", T0, T0 + 3600)
    assert got == {"new": (300, 300), "old": (0, 300)}


def test_the_revision_counts_of_a_cluster_that_stopped_sending_are_deleted_after_three_hours() -> None:
    """A cluster that comes and goes (or a junk cluster name) leaves no per-revision entry behind:
    after 3 hours without data it is deleted, also when a restarted worker found it in its changelog."""
    store: dict[str, bytes] = {}
    engine = Engine([slo()], store, EngineConfig(allowed_lateness_s=0))
    gone = [batch([record(T0 + s, cluster="eu-west-2", revision="a")]) for s in range(60)]
    msgs = [(k, v, i) for i, (k, v) in enumerate(gone)]
    engine.commit(engine.process(0, msgs, now=T0 + 86400))
    assert "~rev|playback-api|eu-west-2" in store
    restarted = Engine([slo()], store, EngineConfig(allowed_lateness_s=0))
    restarted.assign({0})
    later = [batch([record(T0 + 60 + m * 60, revision="b")]) for m in range(4 * 60)]  # eu-west-1 goes on
    for i, (k, v) in enumerate(later):
        restarted.commit(restarted.process(0, [(k, v, len(gone) + i)], now=T0 + 86400))
    assert "~rev|playback-api|eu-west-2" not in store, "deleted 3 hours after its last minute"
    assert "~rev|playback-api|eu-west-1" in store, "a cluster that goes on keeps its entry"


def test_a_rollout_with_kilobytes_of_image_names_is_blamed_and_its_suspect_reads_back_after_a_restart() -> None:
    """A careless producer's image list (each reference is accepted up to 4096 characters) makes a
    summary far beyond what a suspect may carry; the engine clips it, so the suspect it stores with the
    alert track reads back typed (a restarted worker's gate and metrics still see the rollout)."""
    images = tuple(f"registry.example.com/{'x' * 3000}-{i}:1.8.0" for i in range(4))
    sc = ServiceChanges()
    sc.apply_rollout(rollout(T0 + 2 * 3600 - 120, revision="42", previous_revision="41", images=images))
    changes = {"playback-api": sc.to_bytes()}
    store: dict[str, bytes] = {}
    page = first_page(Engine([slo()], store, EngineConfig(allowed_lateness_s=0), changes=changes),
                      outage_with_revisions("42", "41"))
    top = page.suspects[0]
    assert isinstance(top, w.RolloutSuspect) and top.images == images
    assert len(top.summary) == w.MAX_SUMMARY_LEN and top.summary.endswith("…")
    restarted = Engine([slo()], store, EngineConfig(allowed_lateness_s=0), changes=changes)
    restarted.assign({0})
    assert restarted.tracks.suspects(page.dedup_key) == page.suspects


def test_a_stored_suspect_this_version_cannot_read_is_kept_opaque_and_the_others_stay_typed() -> None:
    """The engine's own stored track outlives versions: a suspect an older or newer writer stored that
    does not read now must not stop the commit, the metrics or the gate that read the track."""
    broken = w.RolloutSuspect.to_json(rollout_suspect())
    broken["summary"] = "s" * 5000
    store = {TRACK_PREFIX + "k": orjson.dumps({"suspects": [broken, warning_suspect().to_json()]})}
    got = AlertTracks(store).stored_suspects("k")
    assert isinstance(got[0], w.OpaqueSuspect) and got[0].to_json() == broken
    assert got[1] == warning_suspect()


def test_every_suspect_built_from_the_largest_input_accepted_reads_back_as_built() -> None:
    """What correlation writes, its own reader takes: reasons and images at the reader's limit, an owner
    name longer than Kubernetes allows (dropped), a pod name at the longest an object name may be."""
    long_reason = "R" * 4096
    pod = "playback-api-7d9f8c6b5-" + "x" * (253 - len("playback-api-7d9f8c6b5-"))
    images = tuple(f"registry.example.com/{'i' * 4000}:{n}" for n in range(3))
    sc = changes_of(
        rollout(ONSET - 240, images=images),
        warning(ONSET - 30, reason=long_reason, name=pod),
        warning(ONSET - 20, reason="BackOff", name="cart-7c9-abcde", namespace="shop",
                owner_kind="ReplicaSet", owner_name="o" * 300))
    got = correlate(ctx(), sc, no_revisions)
    assert {type(s) for s in got} == {w.RolloutSuspect, w.WarningSuspect}
    for s in got:
        assert w.decode_suspect(orjson.loads(orjson.dumps(s.to_json()))) == s, s.label[:80]
        assert len(s.summary) <= w.MAX_SUMMARY_LEN
