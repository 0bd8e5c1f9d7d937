"""Enforcement decisions: pause only a rollout in progress, in this cluster, that a firing page blames
with high confidence, and never twice; re-check the live Deployment; record what was done."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import settings as settings_mod
from streams.adapters.enforcer import ApiCallError, Enforcer, Stopping
from streams.core import conventions as c
from streams.core.changes import ServiceChanges
from streams.core.correlation import BurnContext, RevisionCounts, correlate
from streams.core.enforce import (
    DEFAULT_ENFORCE_CONFIG,
    Action,
    EnforceConfig,
    Ledger,
    Outcome,
    Skip,
    Verdict,
    decide,
    gate_record,
    pause_patch,
    recheck,
)
from streams.core.errors import ConfigError, RecordError
from streams.core.wire.alert import Alert, decode_alert
from streams.core.wire.rollout import RolloutRef, Workload, decode_rollout
from streams.core.wire.suspect import OpaqueSuspect, RolloutSuspect, Suspect, decode_suspect, evidence_lines

NOW = 1_800_000_000.0
CLUSTER = "eu-west-1"
DEDUP = "slo-stream/playback-api-availability/page/cluster=eu-west-1/region=eu-west/platform=kubernetes"
KEY = "eu-west-1/playback/playback-api@7"


# ---- factories ------------------------------------------------------------------------------------


def suspect(**changes: Any) -> dict[str, Any]:
    """A rollout suspect as ``RolloutSuspect.to_json()`` writes it (correlation.correlate ranks them)."""
    s: dict[str, Any] = {
        "kind": "rollout", "score": 0.93, "rank": 1,
        "summary": "rollout of playback/playback-api to revision 7 (playback-api:1.8.0) in eu-west-1, started "
                   "4m10s before the burn began; revision 7 errors 12.0% vs 0.1% on revision 6",
        "service": "playback-api", "cluster": CLUSTER, "namespace": "playback", "deployment": "playback-api",
        "revision": "7", "previous_revision": "6", "images": ["registry.example.com/playback-api:1.8.0"],
        "previous_images": ["registry.example.com/playback-api:1.7.3"], "phase": "progressing", "rollback": False,
        "started_at": NOW - 400, "same_cluster": True, "migration": None,
        "evidence": [
            {"type": "timing", "detail": "rollout started 4m10s before the burn began", "strength": 0.52},
            {"type": "in_progress", "detail": "the rollout was still in progress when the burn began",
             "strength": 0.3},
            {"type": "revision_error_ratio",
             "new": {"revision": "7", "errors": 120, "total": 1000, "ratio": 0.12, "when": "during the burn"},
             "old": {"revision": "6", "errors": 1, "total": 1000, "ratio": 0.001, "when": "during the burn"},
             "test": "one-sided two-proportion z-test", "z": 10.54, "p_value": 2.8e-26, "strength": 0.9,
             "detail": "new revision 7 fails 12.00% of requests during the burn, previous 6 0.10% during the burn"},
        ],
    }
    s.update(changes)
    return s


def warning_suspect(**changes: Any) -> dict[str, Any]:
    """A Warning-events suspect as ``WarningSuspect.to_json()`` writes it."""
    s: dict[str, Any] = {"kind": "k8s_warning", "score": 0.95, "rank": 1, "cluster": CLUSTER,
                         "namespace": "playback", "workload": "playback-api", "reason": "CrashLoopBackOff",
                         "summary": "40x CrashLoopBackOff on 6 objects of playback/playback-api in eu-west-1",
                         "count": 40, "objects": ["Pod/playback-api-7d9f8c6b5-x2x7k"], "first_seen": NOW - 500,
                         "last_seen": NOW - 140, "same_cluster": True, "evidence": []}
    s.update(changes)
    return s


def alert(*suspects: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An ``slo.alerts`` value shaped like ``Alert.to_json()``'s."""
    a: dict[str, Any] = {
        "schema_version": 1, "dedup_key": DEDUP, "slo": "playback-api-availability", "service": "playback-api",
        "severity": "page", "state": "firing", "ts": int(NOW) - 130, "started_at": int(NOW) - 130,
        "dimensions": {"cluster": CLUSTER, "region": "eu-west", "platform": "kubernetes"},
        "burn_rates": {"5m": 43.2, "1h": 28.8}, "condition": "1h+5m > 14.4", "threshold": 14.4,
        "error_budget_remaining": 0.8, "objective": 0.999, "links": {},
        "suspects": list(suspects) if suspects else [suspect()], "burn_onset": int(NOW) - 400,
    }
    a.update(changes)
    return a


def deployment(*, revision: str = "7", paused: bool = False, updated: int = 1, desired: int = 3,
               generation: int = 2, observed: int = 2, total: int | None = None) -> dict[str, Any]:
    """A Deployment's JSON as the API serves it (the fields the re-check reads)."""
    spec: dict[str, Any] = {"replicas": desired}
    if paused:
        spec["paused"] = True
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "playback-api", "namespace": "playback", "generation": generation,
                     "annotations": {"deployment.kubernetes.io/revision": revision}},
        "spec": spec,
        "status": {"observedGeneration": observed, "replicas": total if total is not None else desired + 1,
                   "updatedReplicas": updated, "availableReplicas": desired, "readyReplicas": desired},
    }


def act(a: Alert | dict[str, Any], **kw: Any) -> Verdict:
    """:func:`decide` on an alert; one given as JSON is read through the ``slo.alerts`` decoder first,
    as the kube bridge does."""
    kw.setdefault("cluster", CLUSTER)
    kw.setdefault("now", NOW)
    return decide(a if isinstance(a, Alert) else decode_alert(a), **kw)


def read_or_refuse(value: Any) -> Alert | None:
    """The decoder's answer to any JSON value: an Alert, or None for a RecordError (the kube bridge
    skips it as ``bad_record``); any other exception fails the test."""
    try:
        return decode_alert(value)
    except RecordError as exc:
        assert exc.reason and exc.detail
        return None


# ---- acting ----------------------------------------------------------------------------------------


def test_a_firing_page_blaming_a_rollout_in_progress_here_with_high_confidence_pauses_it() -> None:
    record = decode_alert(alert())
    assert isinstance(record.top_suspect, RolloutSuspect), "the factory's suspect reads as a rollout"
    assert decode_alert(orjson.loads(record.encode())) == record
    v = act(record)
    assert v.skip is None and v.action is not None
    a = v.action
    assert a.target == RolloutRef(Workload(CLUSTER, "playback", "playback-api"), "7")
    assert (a.target.cluster, a.target.namespace, a.target.name, a.target.revision) == (
        CLUSTER, "playback", "playback-api", "7")
    assert a.target.key == KEY
    assert (a.alert, a.service, a.slo, a.score, a.rank, a.phase) == (
        DEDUP, "playback-api", "playback-api-availability", 0.93, 1, "progressing")
    assert a.patch == {"spec": {"paused": True}} == pause_patch(), "nothing but spec.paused"
    assert "revision 7 errors 12.0%" in a.summary
    assert a.evidence[0] == "rollout started 4m10s before the burn began" and len(a.evidence) == 3
    assert a.evidence == evidence_lines(decode_suspect(suspect()))
    assert any("score 0.93 >= 0.80" in r for r in a.reasons) and any("1h+5m > 14.4" in r for r in a.reasons)


@pytest.mark.parametrize("phase", ["started", "progressing"])
def test_both_phases_of_a_rollout_in_progress_count(phase: str) -> None:
    assert act(alert(suspect(phase=phase))).action is not None


def test_the_score_threshold_is_inclusive() -> None:
    assert act(alert(suspect(score=0.8))).action is not None
    assert act(alert(suspect(score=0.7999))).skip is Skip.BELOW_SCORE
    assert act(alert(suspect(score=0.6)), config=EnforceConfig(min_score=0.6)).action is not None


def test_an_slo_that_groups_clusters_away_may_pause_the_rollout_of_this_cluster() -> None:
    dims = {"cluster": c.ANY, "region": c.ANY, "platform": "kubernetes"}
    assert act(alert(dimensions=dims)).action is not None


def test_the_top_suspect_is_the_lowest_rank_not_the_first_listed() -> None:
    a = alert(warning_suspect(rank=2, score=0.9), suspect(rank=1))
    assert act(a).action is not None
    a = alert(suspect(rank=2), warning_suspect(rank=1))
    assert act(a).skip is Skip.TOP_SUSPECT_NOT_A_ROLLOUT, "a stronger warning means the rollout is not clearly it"


def test_a_namespace_allow_list_limits_where_it_acts() -> None:
    cfg = EnforceConfig(namespaces=frozenset({"checkout"}))
    v = act(alert(), config=cfg)
    assert v.skip is Skip.NAMESPACE_NOT_ALLOWED and "checkout" in v.message
    assert act(alert(), config=replace(cfg, namespaces=frozenset({"checkout", "playback"}))).action is not None


# ---- not acting -------------------------------------------------------------------------------------


NO_PAUSE = [
    ("a ticket never pauses", alert(severity="ticket"), Skip.NOT_A_PAGE),
    ("a resolve never pauses", alert(state="resolved"), Skip.NOT_FIRING),
    ("a low score does not pause", alert(suspect(score=0.55)), Skip.BELOW_SCORE),
    ("another cluster's rollout is for that cluster's bridge", alert(suspect(cluster="us-east-1")),
     Skip.OTHER_CLUSTER),
    ("a burn in another cluster does not pause this cluster's rollout",
     alert(dimensions={"cluster": "us-east-1", "region": "us-east", "platform": "kubernetes"}),
     Skip.BURN_IN_OTHER_CLUSTER),
    ("another service's rollout is never paused", alert(suspect(service="search-api")), Skip.OTHER_SERVICE),
    ("a warning as top suspect does not pause", alert(warning_suspect()), Skip.TOP_SUSPECT_NOT_A_ROLLOUT),
    ("a completed rollout is not in progress", alert(suspect(phase="completed")), Skip.NOT_IN_PROGRESS),
    ("a failed rollout is not in progress", alert(suspect(phase="failed")), Skip.NOT_IN_PROGRESS),
    ("a paused rollout is not paused again", alert(suspect(phase="paused")), Skip.NOT_IN_PROGRESS),
    ("a rollback is the remedy, never paused", alert(suspect(rollback=True)), Skip.ROLLBACK),
    ("no suspect, nothing to pause", alert(suspects=[]), Skip.NO_SUSPECT),
    ("an alert from an old replay is not acted on", alert(ts=int(NOW) - 3600), Skip.STALE_ALERT),
    ("a revision that is not a plain revision is never compared with the live one",
     alert(suspect(revision="7; kubectl delete ns playback")), Skip.BAD_RECORD),
]


@pytest.mark.parametrize(("value", "skip"), [(v, s) for _, v, s in NO_PAUSE], ids=[i for i, _, _ in NO_PAUSE])
def test_no_pause(value: Any, skip: Skip) -> None:
    v = act(value)
    assert v.action is None and v.skip is skip and v.message


# Malformed suspects used to make decide() answer bad_record. They are refused by the suspect decoder
# now (naming the field); inside an alert such a suspect travels on opaque, so the page still reaches
# PagerDuty, and enforcement never acts on it: its top suspect is not a rollout.
MALFORMED_SUSPECTS = [
    ("a namespace that is not a name never reaches the API path", {"namespace": "../kube-system"}, "namespace"),
    ("a deployment that is not a name never reaches the API path", {"deployment": "a/b"}, "deployment"),
    ("a score that is not a number", {"score": "high"}, "score"),
    ("a score that is true", {"score": True}, "score"),
    ("a score that is NaN", {"score": math.nan}, "score"),
]


@pytest.mark.parametrize(("changes", "field"), [(ch, f) for _, ch, f in MALFORMED_SUSPECTS],
                         ids=[i for i, _, _ in MALFORMED_SUSPECTS])
def test_a_malformed_suspect_is_refused_by_its_decoder_and_never_paused(changes: dict[str, Any],
                                                                       field: str) -> None:
    with pytest.raises(RecordError) as exc:
        decode_suspect(suspect(**changes))
    assert exc.value.reason in (c.REASON_BAD_FIELD, c.REASON_MISSING_FIELD)
    assert f"{field}=" in exc.value.detail
    a = decode_alert(alert(suspect(**changes)))
    assert isinstance(a.top_suspect, OpaqueSuspect)
    v = act(a)
    assert v.action is None and v.skip is Skip.TOP_SUSPECT_NOT_A_ROLLOUT and v.message and v.target is None


@pytest.mark.parametrize("changes", [{"phase": []}, {"phase": {"a": 1}}],
                         ids=["a phase that is a list", "a phase that is an object"])
def test_a_suspect_field_of_the_wrong_json_type_is_refused_by_its_decoder_not_a_crash(changes: dict[str, Any]) -> None:
    with pytest.raises(RecordError):
        decode_suspect(suspect(**changes))
    v = act(alert(suspect(**changes)))
    assert v.skip is Skip.TOP_SUSPECT_NOT_A_ROLLOUT and "could not be read" in v.message


def test_an_evidence_item_of_the_wrong_shape_leaves_the_rollout_suspect_actionable() -> None:
    """Evidence is for people: one unreadable item is kept as it came, the suspect is still a rollout."""
    v = act(alert(suspect(evidence=[{"type": ["timing"], "detail": "x"}])))
    assert v.action is not None


# Malformed alert records used to make decide() answer bad_record: the alert decoder refuses them now,
# naming the field (and the kube bridge skips them as bad_record: see the enforcer tests below).
MALFORMED_ALERTS = [
    ("a value that is not an object", ["not", "an", "alert"], "alert"),
    ("an alert without a dedup key", alert(dedup_key=None), "dedup_key"),
]


@pytest.mark.parametrize(("value", "field"), [(v, f) for _, v, f in MALFORMED_ALERTS],
                         ids=[i for i, _, _ in MALFORMED_ALERTS])
def test_a_malformed_alert_is_refused_by_its_decoder(value: Any, field: str) -> None:
    with pytest.raises(RecordError) as exc:
        decode_alert(value)
    assert exc.value.detail.startswith(field)


def test_a_rollout_already_acted_on_is_never_acted_on_again() -> None:
    v = act(alert(), acted={KEY})
    assert v.action is None and v.skip is Skip.ALREADY_ACTED and v.target is not None and v.target.key == KEY
    other_revision = act(alert(suspect(revision="8")), acted={KEY})
    assert other_revision.action is not None, "a later rollout of the same Deployment is another rollout"


def test_the_verdict_names_the_rollout_even_when_it_does_not_act() -> None:
    v = act(alert(suspect(score=0.5)))
    assert v.target is not None and v.target.key == KEY and "0.50 < 0.80" in v.message


# ---- with the scores correlation really gives -------------------------------------------------------

ONSET = NOW - 400


def correlated(*, revision_evidence: bool, migration: bool = True) -> Sequence[Suspect]:
    """The suspects correlation ranks for a rollout in progress that started right at the onset."""
    sc = ServiceChanges()
    sc.apply_rollout(decode_rollout({
        "schema_version": 1, "ts": ONSET, "cluster": CLUSTER, "namespace": "playback",
        "deployment": "playback-api", "service": "playback-api", "revision": "7", "previous_revision": "6",
        "template_hash": "7d9f8c6b5", "previous_template_hash": "5c4b3a291",
        "images": ["registry.example.com/playback-api:1.8.0"],
        "previous_images": ["registry.example.com/playback-api:1.7.3"], "phase": "started",
        "replicas": {"desired": 6, "updated": 1, "ready": 6, "available": 6},
        "migration": {"from": "legacy", "to": "kubernetes", "traffic_percent": 10, "step": None, "reason": None}
        if migration else None,
    }))

    def revisions(cluster: str, start: float, end: float) -> RevisionCounts:
        if not revision_evidence:
            return {}
        return {"7": (120, 1000), "6": (1, 1000)} if start >= ONSET else {"6": (2, 5000)}

    ctx = BurnContext(service="playback-api", cluster=CLUSTER, platform="kubernetes", onset_ts=ONSET,
                      at=NOW - 130)
    return correlate(ctx, sc, revisions)


def on_the_wire(suspects: Sequence[Suspect]) -> list[dict[str, Any]]:
    """Suspects as an ``slo.alerts`` record carries them; each reads back as it was written."""
    out = [s.to_json() for s in suspects]
    assert [decode_suspect(orjson.loads(orjson.dumps(x))) for x in out] == list(suspects)
    return out


def test_timing_in_progress_and_a_migration_step_alone_never_reach_the_default_score() -> None:
    suspects = correlated(revision_evidence=False)
    top = suspects[0]
    assert isinstance(top, RolloutSuspect) and 0.7 < top.score < DEFAULT_ENFORCE_CONFIG.min_score
    assert act(alert(*on_the_wire(suspects))).skip is Skip.BELOW_SCORE


def test_the_new_revisions_own_error_ratio_makes_it_confident_enough_to_pause() -> None:
    suspects = correlated(revision_evidence=True)
    v = act(alert(*on_the_wire(suspects)))
    assert v.action is not None and v.action.score >= 0.9
    assert any("new revision 7 fails 12.00%" in e for e in v.action.evidence)


# ---- the live Deployment, just before acting ----------------------------------------------------------


def the_action() -> Action:
    v = act(alert())
    assert v.action is not None
    return v.action


def test_a_deployment_still_rolling_out_the_suspect_revision_may_be_paused() -> None:
    assert recheck(the_action(), deployment()) is None
    assert recheck(the_action(), deployment(generation=3, observed=2, updated=3, total=3)) is None, \
        "the controller has not caught up with the spec yet"


@pytest.mark.parametrize(("live", "skip"), [
    (deployment(paused=True), Skip.ALREADY_PAUSED),
    (deployment(revision="8"), Skip.REVISION_CHANGED),
    (deployment(updated=3, total=3), Skip.ROLLOUT_COMPLETED),
], ids=["already paused (by a human, Argo, or us before a crash)", "its revision moved on",
        "the rollout completed meanwhile"])
def test_the_re_read_skips(live: dict[str, Any], skip: Skip) -> None:
    got = recheck(the_action(), live)
    assert got is not None and got[0] is skip and got[1]


# ---- records and the ledger ---------------------------------------------------------------------------


def test_a_paused_record_says_what_why_and_on_which_alert() -> None:
    key, value = gate_record(the_action(), outcome=Outcome.PAUSED, now=NOW)
    assert key == KEY
    assert value["action"] == "paused" and value["mode"] == "pause" and value["skip_reason"] is None
    assert (value["cluster"], value["namespace"], value["deployment"], value["revision"]) == (
        CLUSTER, "playback", "playback-api", "7")
    assert value["alert"] == DEDUP and value["ts"] == NOW and value["schema_version"] == 1
    assert value["suspect"]["score"] == 0.93 and value["suspect"]["evidence"]
    assert value["reasons"] and value["patch"] == {"spec": {"paused": True}}


def test_a_skipped_record_carries_the_reason() -> None:
    _, value = gate_record(the_action(), outcome=Outcome.SKIPPED, skip=Skip.ALREADY_PAUSED, now=NOW,
                           detail="playback/playback-api is already paused")
    assert (value["action"], value["skip_reason"], value["patch"]) == ("skipped", "already_paused", None)
    with pytest.raises(ValueError):
        gate_record(the_action(), outcome=Outcome.SKIPPED, now=NOW)


def test_the_ledger_keeps_the_latest_per_key_and_a_pause_is_final() -> None:
    ledger = Ledger()
    key, skipped = gate_record(the_action(), outcome=Outcome.SKIPPED, skip=Skip.ALREADY_PAUSED, now=NOW)
    _, paused = gate_record(the_action(), outcome=Outcome.PAUSED, now=NOW + 1)
    assert ledger.extend([(key, skipped)]) == 1 and key not in ledger.acted, "a skip is not an action"
    ledger.add(key, paused)
    ledger.add(key, skipped)
    assert key in ledger.acted and ledger.latest(key) == skipped and len(ledger) == 1
    assert not ledger.add("x", {"something": "else"}) and not ledger.add("y", None)
    assert act(alert(), acted=ledger.acted).skip is Skip.ALREADY_ACTED


# ---- configuration --------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [{"min_score": 0.0}, {"min_score": 1.5}, {"min_score": True},
                                     {"max_alert_age_s": 0}, {"namespaces": frozenset({"Bad_NS"})}])
def test_a_config_out_of_range_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EnforceConfig(**changes)


def test_enforcement_is_off_by_default_and_its_settings_are_checked() -> None:
    s = settings_mod.load({})
    assert (s.enforce, s.enforce_min_score, s.topic_rollout_gates) == ("off", 0.8, c.TOPIC_ROLLOUT_GATES)
    assert s.topics[s.topic_rollout_gates].partitions == s.partitions, "created up front with the others"
    s = settings_mod.load({"SLO_STREAM_ENFORCE": "pause", "SLO_STREAM_ENFORCE_MIN_SCORE": "0.9",
                           "SLO_STREAM_ENFORCE_NAMESPACES": "playback, checkout",
                           "SLO_STREAM_ENFORCE_MAX_ALERT_AGE": "10m"})
    assert (s.enforce, s.enforce_min_score, s.enforce_max_alert_age_s) == ("pause", 0.9, 600)
    assert settings_mod.enforce_namespaces(s) == ["playback", "checkout"]
    for env in ({"SLO_STREAM_ENFORCE": "rollback"}, {"SLO_STREAM_ENFORCE_MIN_SCORE": "0"},
                {"SLO_STREAM_ENFORCE_NAMESPACES": "Playback"}):
        with pytest.raises(ConfigError, match=next(iter(env))):
            settings_mod.load(env)


# ---- properties -------------------------------------------------------------------------------------------

clusters = st.sampled_from([CLUSTER, "us-east-1", "ap-south-1"])


def some_suspect(kind: str, **changes: Any) -> dict[str, Any]:
    """A rollout suspect, or (for ``k8s_warning``) a Warning-events suspect with the same score, rank and
    cluster (it carries the rollout fields too: they are ignored)."""
    if kind == "k8s_warning":
        return {**suspect(**changes), **warning_suspect(score=changes["score"], rank=changes["rank"],
                                                        cluster=changes["cluster"])}
    return suspect(**changes)


suspects_st = st.builds(
    some_suspect,
    kind=st.sampled_from(["rollout", "rollout", "k8s_warning"]),
    score=st.floats(0.0, 1.0),
    rank=st.integers(1, 5),
    cluster=clusters,
    service=st.sampled_from(["playback-api", "playback-api", "search-api"]),
    namespace=st.sampled_from(["playback", "edge"]),
    deployment=st.sampled_from(["playback-api", "playback-web"]),
    revision=st.sampled_from(["6", "7", "8"]),
    phase=st.sampled_from(["started", "progressing", "completed", "failed", "paused", "rolled_back"]),
    rollback=st.booleans(),
)
alerts_st = st.builds(
    lambda suspects, severity, state, burn, age: alert(
        *suspects, severity=severity, state=state, ts=int(NOW - age),
        dimensions={"cluster": burn, "region": "eu-west", "platform": "kubernetes"}),
    st.lists(suspects_st, min_size=1, max_size=3),
    st.sampled_from(["page", "ticket"]),
    st.sampled_from(["firing", "resolved"]),
    st.one_of(clusters, st.just(c.ANY)),
    st.integers(0, 2000),
)


@given(a=alerts_st, cluster=clusters, min_score=st.floats(0.05, 1.0))
def test_it_never_acts_on_another_cluster_a_ticket_a_resolve_or_below_the_score(
        a: dict[str, Any], cluster: str, min_score: float) -> None:
    v = act(a, cluster=cluster, config=EnforceConfig(min_score=min_score))
    assert (v.action is None) != (v.skip is None)
    if v.action is not None:
        top = min(a["suspects"], key=lambda s: s["rank"])
        assert a["severity"] == "page" and a["state"] == "firing"
        assert v.action.target.cluster == cluster == top["cluster"]
        assert a["dimensions"]["cluster"] in (cluster, c.ANY)
        assert top["kind"] == "rollout" and not top["rollback"] and top["service"] == a["service"]
        assert top["phase"] in ("started", "progressing") and top["score"] >= min_score


@given(sequence=st.lists(alerts_st, min_size=1, max_size=12), cluster=clusters)
def test_it_never_acts_twice_on_one_rollout_however_often_its_alerts_come(
        sequence: list[dict[str, Any]], cluster: str) -> None:
    ledger = Ledger()
    acted: list[str] = []
    for a in sequence + sequence:  # and every alert delivered twice (at least once)
        v = act(a, cluster=cluster, acted=ledger.acted)
        if v.action is not None:
            acted.append(v.action.target.key)
            ledger.add(*gate_record(v.action, outcome=Outcome.PAUSED, now=NOW))
    assert len(acted) == len(set(acted))


@given(a=alerts_st, low=st.floats(0.0, 1.0), high=st.floats(0.0, 1.0))
def test_a_higher_score_never_turns_a_pause_into_no_pause(a: dict[str, Any], low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    top = min(a["suspects"], key=lambda s: s["rank"])
    top["score"] = low
    first = act(a).action is not None
    top["score"] = high
    assert not first or act(a).action is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)


@given(value=json_values, suspect_value=json_values)
def test_any_json_gets_a_verdict_never_an_exception(value: Any, suspect_value: Any) -> None:
    """Any JSON is an Alert or the decoder's RecordError (the bridge's ``bad_record``), never another
    exception; an alert whatever its suspect is gets a verdict and no pause. A suspect that is an
    object never costs the alert it belongs to."""
    a = read_or_refuse(value)
    assert a is None or act(a).action is None
    a = read_or_refuse(alert(suspects=[suspect_value]))
    if isinstance(suspect_value, dict):
        assert a is not None
    if a is not None:
        v = act(a)
        assert v.action is None and v.skip is not None


# ---- the enforcer carrying a decision out (a scripted API, no cluster, no broker) ----------------------


class ScriptedApi:
    """A DeploymentsApi whose answers are scripted; a PATCH that "times out" may still apply."""

    def __init__(self, live: dict[str, Any], *, reads: list[Any] | None = None,
                 patches: list[Any] | None = None) -> None:
        self.live = live
        self.reads = list(reads or [])
        self.patch_script = list(patches or [])
        self.calls: list[tuple[str, Any]] = []

    def read(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("get", f"{namespace}/{name}"))
        if self.reads:
            raise self.reads.pop(0)
        return self.live

    def patch(self, namespace: str, name: str, body: Any) -> None:
        self.calls.append(("patch", body))
        outcome = self.patch_script.pop(0) if self.patch_script else None
        if outcome == "applied-then-timeout":
            self.live["spec"]["paused"] = True
            raise ApiCallError(None, "ReadTimeoutError", retryable=True)
        if isinstance(outcome, Exception):
            raise outcome
        self.live["spec"]["paused"] = True


def enforcer_with(api: ScriptedApi, counted: list[str] | None = None
                  ) -> tuple[Enforcer, list[tuple[str, str, Any]], threading.Event]:
    published: list[tuple[str, str, Any]] = []
    stopping = threading.Event()
    s = replace(settings_mod.load({}), kube_backoff_max_s=0.1)
    e = Enforcer(s, cluster=CLUSTER, deployments=api, publish=published.extend,
                 config=DEFAULT_ENFORCE_CONFIG, stopping=stopping, clock=lambda: NOW,
                 count=(counted if counted is not None else []).append)
    return e, published, stopping


@pytest.mark.parametrize("value", [b"{not json", orjson.dumps(["not", "an", "alert"]),
                                   orjson.dumps(alert(dedup_key=None))],
                         ids=["not JSON", "not an object", "no dedup key"])
def test_a_record_that_does_not_decode_is_skipped_as_a_bad_record(value: bytes) -> None:
    api = ScriptedApi(deployment())
    counted: list[str] = []
    e, published, _ = enforcer_with(api, counted)
    e.handle(value)
    assert counted == ["enforce_alerts", "enforce_ignored_bad_record"]
    assert api.calls == [] and published == []


def test_the_enforcer_re_reads_then_patches_once_and_records_it() -> None:
    api = ScriptedApi(deployment(), reads=[ApiCallError(503, "Service Unavailable", retryable=True)])
    e, published, _ = enforcer_with(api)
    e.handle(orjson.dumps(alert()))
    assert api.calls == [("get", "playback/playback-api"), ("get", "playback/playback-api"),
                         ("patch", {"spec": {"paused": True}})], "a 503 is retried from the GET"
    [(topic, key, record)] = published
    assert (topic, key, record["action"]) == ("rollout.gates", KEY, "paused")
    e.handle(orjson.dumps(alert()))
    assert len(api.calls) == 3 and len(published) == 1, "known from the ledger: nothing more"


def test_a_patch_whose_answer_was_lost_is_recorded_as_paused_not_sent_again() -> None:
    api = ScriptedApi(deployment(), patches=["applied-then-timeout"])
    e, published, _ = enforcer_with(api)
    e.handle(orjson.dumps(alert()))
    assert [c for c, _ in api.calls] == ["get", "patch", "get"]
    assert published[0][2]["action"] == "paused" and "answer was lost" in published[0][2]["detail"]


@pytest.mark.parametrize(("error", "skip"), [
    (ApiCallError(404, "Not Found", retryable=False), "deployment_gone"),
    (ApiCallError(403, "Forbidden", retryable=False), "forbidden"),
    (ApiCallError(422, "Unprocessable Entity", retryable=False), "rejected"),
])
def test_a_patch_refused_for_good_is_recorded_as_skipped(error: ApiCallError, skip: str) -> None:
    api = ScriptedApi(deployment(), patches=[error])
    e, published, _ = enforcer_with(api)
    e.handle(orjson.dumps(alert()))
    assert [c for c, _ in api.calls] == ["get", "patch"]
    assert (published[0][2]["action"], published[0][2]["skip_reason"]) == ("skipped", skip)
    assert KEY not in e.ledger.acted, "a skip does not count as acted on"


def test_stopping_while_the_api_is_down_records_nothing_and_leaves_the_alert_uncommitted() -> None:
    api = ScriptedApi(deployment(), reads=[ApiCallError(None, "connection refused", retryable=True)] * 100)
    e, published, stopping = enforcer_with(api)
    read = api.read

    def read_then_stop(namespace: str, name: str) -> dict[str, Any]:
        if len(api.calls) == 3:
            stopping.set()  # SIGTERM during the third backoff
        return read(namespace, name)

    api.read = read_then_stop  # type: ignore[method-assign]
    with pytest.raises(Stopping):
        e.handle(orjson.dumps(alert()))
    assert published == [] and [c for c, _ in api.calls] == ["get"] * 4 and not e.ledger.acted
