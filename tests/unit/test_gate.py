"""The rollout gate: proceed / hold / rollback / unknown, with the reasons and numbers behind them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core import conventions as c
from streams.core.engine import Engine, EngineConfig
from streams.core.errors import RecordError
from streams.core.freezes import Freeze, decide_freeze
from streams.core.gate import (
    DEFAULT_GATE_CONFIG,
    Decision,
    FlaggerHook,
    GateConfig,
    GateDecision,
    ReasonCode,
    combine,
    decide,
    decide_migration,
    flagger_accepts,
)
from streams.core.stats import Proportion
from streams.core.wire.status import Status, decode_status
from streams.core.wire.suspect import RolloutSuspect, Suspect, WarningSuspect, decode_suspect
from tests.factories import batch, record, slo

NOW = 1_700_000_000.0
SERVICE = "playback-api"
SLO = "playback-api-availability"


# ---- factories ----------------------------------------------------------------------------------


def series_key(cluster: str = "eu-west-1", platform: str = "kubernetes", slo_name: str = SLO) -> str:
    return c.series_key(slo_name, cluster, "eu-west", platform)


def status_json(
    *,
    cluster: str = "eu-west-1",
    platform: str = "kubernetes",
    slo_name: str = SLO,
    page: bool = False,
    ticket: bool = False,
    low_traffic_burn: bool = False,
    budget: float = 0.8,
    processed_age: float = 5.0,
    evaluation_lag: float = 130.0,
    **extra: Any,
) -> dict[str, Any]:
    """An ``slo.status`` value shaped like ``Status.to_json()``'s (what the engine's read model builds)."""
    def cond(sev: str, windows: str, factor: float, burning: bool, enough: bool = True) -> dict[str, Any]:
        burn = factor * 2 if burning else factor / 10
        return {"severity": sev, "windows": windows, "factor": factor, "long_burn": burn,
                "short_burn": burn * 1.5, "met": burning and enough, "insufficient_data": burning and not enough}

    body: dict[str, Any] = {
        "schema_version": 1,
        "series": series_key(cluster, platform, slo_name),
        "slo": slo_name,
        "service": SERVICE,
        "dimensions": {"cluster": cluster, "region": "eu-west", "platform": platform},
        "objective": 0.999,
        "evaluated_at": int(NOW - evaluation_lag),
        "newest_event_ts": NOW - evaluation_lag + 9.5,
        "processed_at": round(NOW - processed_age, 3),
        "burn_rates": {"5m": 43.2 if page else 0.4, "1h": 28.8 if page else 0.3, "3d": 2.0 if ticket else 0.2},
        "error_budget_remaining": budget,
        "good_total": {"5m": {"bad": 3, "total": 30000}, "30d": {"bad": 20000, "total": 100_000_000}},
        "conditions": [
            cond("page", "1h+5m", 14.4, page or low_traffic_burn, enough=not low_traffic_burn),
            cond("page", "6h+30m", 6.0, False),
            cond("ticket", "1d+2h", 3.0, False),
            cond("ticket", "3d+6h", 1.0, ticket),
        ],
        "alerts": {"page": {"state": "firing" if page else "ok", "since": int(NOW - 600) if page else None},
                   "ticket": {"state": "firing" if ticket else "ok", "since": int(NOW - 900) if ticket else None}},
    }
    body.update(extra)
    return body


def status(**options: Any) -> Status:
    """:func:`status_json`, read as the gate gets it: through the ``slo.status`` decoder."""
    return decode_status(status_json(**options))


def suspect_json(**changes: Any) -> dict[str, Any]:
    """A rollout suspect shaped like ``RolloutSuspect.to_json()``'s (what ``correlation.correlate`` ranks)."""
    s: dict[str, Any] = {
        "kind": "rollout", "score": 0.82, "rank": 1,
        "summary": "rollout of playback/playback-api to revision 7 (playback-api:1.8.0) in eu-west-1, "
                   "started 4m10s before the burn began",
        "service": SERVICE, "cluster": "eu-west-1", "namespace": "playback", "deployment": "playback-api",
        "revision": "7", "previous_revision": "6",
        "images": ["registry.example.com/playback-api:1.8.0"],
        "previous_images": ["registry.example.com/playback-api:1.7.3"],
        "phase": "progressing", "rollback": False, "started_at": NOW - 900, "same_cluster": True,
        "evidence": [{"type": "timing", "detail": "rollout started 4m10s before the burn began", "strength": 0.52},
                     {"type": "in_progress", "detail": "the rollout was still in progress when the burn began"}],
    }
    s.update(changes)
    return s


def suspect(**changes: Any) -> RolloutSuspect:
    """:func:`suspect_json`, read through the suspect decoder."""
    s = decode_suspect(suspect_json(**changes))
    assert isinstance(s, RolloutSuspect)
    return s


def warning_suspect() -> WarningSuspect:
    """Warning events of the same workload in the same cluster, not explained by a rollout."""
    s = decode_suspect({
        "kind": "k8s_warning", "score": 0.82, "rank": 1,
        "summary": "40x CrashLoopBackOff on 6 objects of playback/playback-api in eu-west-1",
        "cluster": "eu-west-1", "namespace": "playback", "workload": "playback-api", "reason": "CrashLoopBackOff",
        "count": 40, "objects": ["Pod/playback-api-7d9f8c6b5-x2x7k"], "first_seen": NOW - 900,
        "last_seen": NOW - 60, "same_cluster": True, "evidence": [],
    })
    assert isinstance(s, WarningSuspect)
    return s


def page_suspects(*suspects: Suspect, cluster: str = "eu-west-1") -> dict[str, list[Suspect]]:
    return {c.dedup_key(series_key(cluster), "page"): list(suspects)}


def gate(statuses: Sequence[Status], **kw: Any) -> GateDecision:
    kw.setdefault("service", SERVICE)
    kw.setdefault("now", NOW)
    return decide(statuses=statuses, **kw)


def codes(d: GateDecision) -> list[str]:
    return [str(r.code) for r in d.reasons]


# ---- the SLO gate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "kwargs", "decision", "reason_codes"),
    [
        pytest.param([status()], {}, Decision.PROCEED, ["healthy"], id="a healthy service proceeds"),
        pytest.param([status(page=True)], {}, Decision.HOLD, ["page_firing"], id="a firing page holds"),
        pytest.param([status(page=True)], {"revision": "7", "suspects": page_suspects(suspect())},
                     Decision.ROLLBACK, ["suspect_rollout", "page_firing"],
                     id="a firing page whose suspect is the asked revision rolls back"),
        pytest.param([status(page=True)], {"revision": "1.8.0", "suspects": page_suspects(suspect())},
                     Decision.ROLLBACK, ["suspect_rollout", "page_firing"],
                     id="the asked revision may be named by its image tag"),
        pytest.param([status(page=True)], {"revision": "7", "suspects": page_suspects(suspect(score=0.3))},
                     Decision.HOLD, ["page_firing", "suspect_below_threshold"],
                     id="a weak suspect of the asked revision holds and says why it does not roll back"),
        pytest.param([status(page=True)], {"revision": "8", "suspects": page_suspects(suspect())},
                     Decision.HOLD, ["page_firing"], id="a page blaming another revision holds"),
        pytest.param([status(page=True)], {"suspects": page_suspects(suspect())},
                     Decision.ROLLBACK, ["suspect_rollout", "page_firing"],
                     id="with no revision asked the rollout in progress is the one blamed"),
        pytest.param([status(page=True)], {"suspects": page_suspects(suspect(phase="completed"))},
                     Decision.HOLD, ["page_firing"],
                     id="with no revision asked a completed rollout is not blamed"),
        pytest.param([status(page=True)], {"revision": "7", "suspects": page_suspects(warning_suspect())},
                     Decision.HOLD, ["page_firing"], id="a warning suspect is not a rollout to roll back"),
        pytest.param([status(page=True)], {"revision": "7", "suspects": page_suspects(suspect(service="billing"))},
                     Decision.HOLD, ["page_firing"], id="another service's rollout is never blamed"),
        pytest.param([status(page=True, cluster="*")],
                     {"cluster": "eu-west-1", "revision": "7",
                      "suspects": page_suspects(suspect(cluster="us-east-1"), cluster="*")},
                     Decision.HOLD, ["page_firing"], id="a suspect in another cluster than the asked one holds"),
        pytest.param([status(ticket=True)], {"revision": "7", "suspects": {
                         c.dedup_key(series_key(), "ticket"): [suspect()]}},
                     Decision.HOLD, ["ticket_firing"], id="a firing ticket holds and its suspects never roll back"),
        pytest.param([status()], {"revision": "7", "suspects": page_suspects(suspect())},
                     Decision.PROCEED, ["healthy"], id="suspects of an alert no longer firing are ignored"),
        pytest.param([status(budget=0.05)], {}, Decision.HOLD, ["budget_below_floor"],
                     id="a budget below the floor holds"),
        pytest.param([status(budget=-0.5)], {}, Decision.HOLD, ["budget_below_floor"],
                     id="an overspent budget holds"),
        pytest.param([status(budget=0.1)], {}, Decision.PROCEED, ["healthy"],
                     id="a budget exactly at the floor proceeds"),
        pytest.param([status(low_traffic_burn=True)], {}, Decision.HOLD, ["insufficient_data"],
                     id="a burn on too few events to page holds"),
        pytest.param([status(stale=True, stale_reason="no records on partition 3 for 75s")], {},
                     Decision.HOLD, ["stale"], id="a series the worker marked stale fails closed"),
        pytest.param([status(processed_age=121)], {}, Decision.HOLD, ["stale"],
                     id="a status built more than 120s ago is stale"),
        pytest.param([status(evaluation_lag=301)], {}, Decision.HOLD, ["stale"],
                     id="an evaluation more than 300s behind the wall clock is stale"),
        pytest.param([status(processed_age=119, evaluation_lag=299)], {}, Decision.PROCEED, ["healthy"],
                     id="just inside both freshness limits is fresh"),
        pytest.param([status(stale=True, page=True)], {"revision": "7", "suspects": page_suspects(suspect())},
                     Decision.ROLLBACK, ["suspect_rollout", "stale", "page_firing"],
                     id="stale data does not clear a page already blamed on the revision"),
        pytest.param([], {}, Decision.UNKNOWN, ["no_data"], id="no status at all is unknown"),
        pytest.param([status()], {"service": "billing"}, Decision.UNKNOWN, ["no_data"],
                     id="an unknown service is unknown"),
        pytest.param([status()], {"cluster": "us-east-1"}, Decision.UNKNOWN, ["no_data"],
                     id="a cluster with no series of the service is unknown"),
        pytest.param([status(page=True), status(cluster="us-east-1", budget=0.01)], {}, Decision.HOLD,
                     ["page_firing", "budget_below_floor"], id="every series' reasons are given"),
    ],
)
def test_decision(statuses: list[Status], kwargs: dict[str, Any], decision: Decision,
                  reason_codes: list[str]) -> None:
    d = gate(statuses, **kwargs)
    assert d.decision is decision
    assert codes(d) == reason_codes
    assert d.exit_code == decision.exit_code


def test_a_rollback_names_the_suspect_and_its_figures() -> None:
    d = gate([status(page=True)], revision="7", cluster="eu-west-1", suspects=page_suspects(suspect()))
    top = d.reasons[0]
    assert top.code is ReasonCode.SUSPECT_ROLLOUT
    assert "revision 7" in top.message and "score 0.82 >= 0.50" in top.message
    assert top.figures["score"] == 0.82 and top.figures["threshold"] == 0.5
    assert top.figures["alert"] == c.dedup_key(series_key(), "page")
    assert [s.suspect.revision for s in d.suspects] == ["7"]
    assert d.suspects[0].decisive is True
    body = d.suspects[0].to_json()
    assert (body["revision"], body["decisive"], body["alert"]) == ("7", True, c.dedup_key(series_key(), "page"))
    assert body["evidence"] == ["rollout started 4m10s before the burn began",
                                "the rollout was still in progress when the burn began"]
    assert d.summary.startswith("rollback playback-api cluster=eu-west-1 revision=7: rollout of playback/")


def test_a_page_reason_gives_the_condition_and_burn_rates() -> None:
    d = gate([status(page=True)])
    r = d.reasons[0]
    assert r.message == f"page alert firing on {series_key()}: 1h+5m burning 28.8x and 43.2x (> 14.4)"
    assert (r.figures["condition"], r.figures["long_burn"], r.figures["factor"]) == ("1h+5m", 28.8, 14.4)
    assert d.series[0].alerts == {"page": "firing", "ticket": "ok"}


def test_budget_and_stale_reasons_carry_their_figures() -> None:
    d = gate([status(budget=0.04, processed_age=600)])
    by = {r.code: r for r in d.reasons}
    assert by[ReasonCode.BUDGET_BELOW_FLOOR].figures["error_budget_remaining"] == 0.04
    assert by[ReasonCode.BUDGET_BELOW_FLOOR].message.endswith("4.0% of the error budget left, below the 10% floor")
    stale = by[ReasonCode.STALE]
    assert stale.figures["processed_age_s"] == pytest.approx(600)
    assert "last status built 10m ago" in stale.message and "failing closed" in stale.message
    assert d.series[0].stale and d.series[0].processed_age_s == pytest.approx(600)


def test_stale_data_fails_open_when_configured_and_says_so() -> None:
    cfg = replace(DEFAULT_GATE_CONFIG, fail_open_when_stale=True)
    d = gate([status(stale=True, stale_reason="no records on partition 3 for 75s")], default=cfg)
    assert d.decision is Decision.PROCEED
    assert codes(d) == ["stale", "healthy"]
    assert d.reasons[0].decision is Decision.PROCEED
    assert "ignored (fail open): no records on partition 3 for 75s" in d.reasons[0].message
    # Failing open ignores the staleness, not what the last numbers say.
    assert gate([status(stale=True, page=True)], default=cfg).decision is Decision.HOLD


def test_a_low_traffic_burn_need_not_hold() -> None:
    cfg = replace(DEFAULT_GATE_CONFIG, hold_on_insufficient_data=False)
    d = gate([status(low_traffic_burn=True)], default=cfg)
    assert d.decision is Decision.PROCEED
    assert codes(d) == ["insufficient_data", "healthy"]


def test_each_slo_has_its_own_config() -> None:
    statuses = [status(budget=0.15), status(slo_name="playback-api-latency", budget=0.15)]
    d = gate(statuses, configs={"playback-api-latency": replace(DEFAULT_GATE_CONFIG, budget_floor=0.2)})
    assert d.decision is Decision.HOLD
    assert [r.figures.get("slo") for r in d.reasons] == ["playback-api-latency"]


@pytest.mark.parametrize(
    ("kwargs", "decision"),
    [
        pytest.param({}, Decision.HOLD, id="without a filter the burning cluster holds the service"),
        pytest.param({"cluster": "eu-west-1"}, Decision.PROCEED, id="the healthy cluster proceeds"),
        pytest.param({"cluster": "us-east-1"}, Decision.HOLD, id="the burning cluster holds"),
        pytest.param({"platform": "legacy"}, Decision.PROCEED, id="the healthy platform proceeds"),
        pytest.param({"cluster": "us-east-1", "platform": "legacy"}, Decision.PROCEED,
                     id="cluster and platform filters combine"),
        pytest.param({"cluster": "ap-south-1"}, Decision.UNKNOWN, id="a cluster without series is unknown"),
    ],
)
def test_cluster_and_platform_filters(kwargs: dict[str, Any], decision: Decision) -> None:
    statuses = [status(), status(cluster="us-east-1", page=True),
                status(cluster="us-east-1", platform="legacy")]
    assert gate(statuses, **kwargs).decision is decision


def test_a_status_grouped_over_clusters_applies_to_every_cluster() -> None:
    statuses = [status(), status(cluster="*", platform="*", slo_name="playback-api-latency", ticket=True)]
    d = gate(statuses, cluster="eu-west-1", platform="kubernetes")
    assert d.decision is Decision.HOLD
    assert [v.series for v in d.series] == sorted([series_key(), series_key("*", "*", "playback-api-latency")])


def test_the_newest_status_of_a_series_wins_whatever_the_order() -> None:
    old, new = status(page=True, processed_age=30), status(processed_age=3)
    assert gate([old, new]).decision is Decision.PROCEED
    assert gate([new, old]).decision is Decision.PROCEED


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        pytest.param("error_budget_remaining", None, c.REASON_MISSING_FIELD, id="a status without its budget"),
        pytest.param("processed_at", "five seconds ago", c.REASON_BAD_FIELD, id="a build time that is not a number"),
        pytest.param("series", "playback-api-availability", c.REASON_BAD_FIELD, id="a series that is not a key"),
    ],
)
def test_an_unreadable_status_is_refused_at_the_edge_and_names_the_field(field: str, value: Any,
                                                                          reason: str) -> None:
    """The gate used to fail closed on an unreadable status (reason ``invalid_status``). Statuses are
    decoded at the edge now, so an unreadable one never reaches the gate: ``decode_status`` refuses
    it with a RecordError that names the field."""
    broken = status_json()
    if value is None:
        del broken[field]
    else:
        broken[field] = value
    with pytest.raises(RecordError) as exc:
        decode_status(broken)
    assert exc.value.reason == reason
    assert field in exc.value.detail


def test_unknown_says_whether_the_service_exists_elsewhere() -> None:
    assert gate([]).reasons[0].message.startswith("no slo.status for playback-api")
    elsewhere = gate([status()], cluster="us-east-1").reasons[0]
    assert elsewhere.message == ("no SLO series of playback-api matches cluster=us-east-1 (1 series elsewhere): "
                                 "cannot tell")
    assert elsewhere.figures["series_of_service"] == 1


# ---- the contract with the engine and with Argo Rollouts / Flagger --------------------------------


def _engine_statuses(outage_s: int) -> tuple[list[Status], float]:
    t0 = 1_700_000_000 // 3600 * 3600
    engine = Engine([slo()], {}, EngineConfig(allowed_lateness_s=0))
    msgs = [batch([record(t0 + s + i / 5, errors=1 if s >= 7200 else 0) for i in range(5)])
            for s in range(7200 + outage_s)]
    now = t0 + 7200 + outage_s + 20.0
    for i in range(0, len(msgs), 1000):
        res = engine.process(0, [(k, v, i + j) for j, (k, v) in enumerate(msgs[i:i + 1000])], now=now)
        engine.commit(res)
    statuses = [engine.read.status(ev, now=now) for ev in engine.read.last_status.values()]
    for built in statuses:  # the read model's current status of each series is that same evaluation
        ev = engine.read.current_status(built.series)
        assert ev is not None and engine.read.status(ev, now=now) == built
    return statuses, now


@pytest.mark.parametrize(
    ("outage_s", "decision", "first_code"),
    [
        pytest.param(0, Decision.PROCEED, "healthy", id="the engine's status of steady traffic proceeds"),
        pytest.param(300, Decision.HOLD, "page_firing", id="the engine's status during an outage holds"),
    ],
)
def test_statuses_built_by_the_engine(outage_s: int, decision: Decision, first_code: str) -> None:
    statuses, now = _engine_statuses(outage_s)
    # What the engine builds is what travels on slo.status: it reads back equal.
    assert [decode_status(json.loads(s.encode())) for s in statuses] == statuses
    d = decide(service=SERVICE, statuses=statuses, now=now)
    assert d.decision is decision
    assert codes(d)[0] == first_code
    # Evaluated at the last 10 s boundary before the newest event (10 s back), then 20 s of wall clock.
    assert d.series[0].evaluated_age_s == pytest.approx(30.0)


def test_the_http_body_is_strict_json_that_argo_reads_with_decision() -> None:
    d = gate([status(page=True)], revision="7", suspects=page_suspects(suspect(score=0.9)))
    body = d.to_json()
    json.dumps(body, allow_nan=False)
    assert body["decision"] == "rollback" and body["exit_code"] == 2
    assert body["summary"] == d.summary and "\n" not in body["summary"]
    assert set(body) == {"schema_version", "decision", "exit_code", "summary", "service", "cluster", "platform",
                         "revision", "at", "reasons", "series", "suspects", "migration"}
    assert body["reasons"][0] == {
        "code": "suspect_rollout", "decision": "rollback", "message": d.reasons[0].message,
        "figures": dict(d.reasons[0].figures),
    }
    s = body["series"][0]
    assert s["burn_rates"] == {"5m": 43.2, "1h": 28.8, "3d": 0.2}
    assert s["alerts"] == {"page": "firing", "ticket": "ok"}
    assert s["freshness"] == {"processed_age_s": 5.0, "evaluated_age_s": 130.0, "newest_event_age_s": 120.5,
                              "stale": False, "stale_reason": None}


@pytest.mark.parametrize(
    ("decision", "exit_code", "argo"),
    [
        pytest.param(Decision.PROCEED, 0, "Successful", id="proceed exits 0 and is an Argo success"),
        pytest.param(Decision.HOLD, 1, "Inconclusive", id="hold exits 1 and is inconclusive for Argo"),
        pytest.param(Decision.ROLLBACK, 2, "Failed", id="rollback exits 2 and fails the Argo analysis"),
        pytest.param(Decision.UNKNOWN, 3, "Inconclusive", id="unknown exits 3 and is inconclusive for Argo"),
    ],
)
def test_decisions_map_to_exit_codes_and_argo_phases(decision: Decision, exit_code: int, argo: str) -> None:
    # docs/gate.md: jsonPath "{$.decision}", successCondition result == "proceed",
    # failureCondition result == "rollback"; neither matching is Inconclusive.
    result = GateDecision(decision=decision, service=SERVICE, reasons=()).to_json()["decision"]
    phase = "Failed" if result == "rollback" else "Successful" if result == "proceed" else "Inconclusive"
    assert (decision.exit_code, phase) == (exit_code, argo)


def test_exit_codes_are_one_to_one() -> None:
    assert sorted(d.exit_code for d in Decision) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("hook", "accepted"),
    [
        pytest.param(FlaggerHook.CONFIRM_PROMOTION, {Decision.PROCEED},
                     id="confirm-promotion advances only on proceed"),
        pytest.param(FlaggerHook.CONFIRM_TRAFFIC_INCREASE, {Decision.PROCEED},
                     id="confirm-traffic-increase advances only on proceed"),
        pytest.param(FlaggerHook.ROLLOUT, {Decision.PROCEED}, id="a rollout hook fails a check unless proceed"),
        pytest.param(FlaggerHook.ROLLBACK, {Decision.ROLLBACK}, id="the rollback hook answers 2xx only for rollback"),
        pytest.param(FlaggerHook.EVENT, set(Decision), id="event hooks are always acknowledged"),
    ],
)
def test_flagger_hooks(hook: FlaggerHook, accepted: set[Decision]) -> None:
    assert {d for d in Decision if flagger_accepts(d, hook)} == accepted


# ---- the migration step gate --------------------------------------------------------------------


def migrate(k8s: tuple[int, int], legacy: tuple[int, int], **kw: Any) -> GateDecision:
    return decide_migration(service=SERVICE, cluster="eu-west-1", kubernetes=Proportion(*k8s),
                            legacy=Proportion(*legacy), window_s=1800, **kw)


@pytest.mark.parametrize(
    ("k8s", "legacy", "decision", "code"),
    [
        pytest.param((3, 400), (50, 50_000), Decision.HOLD, "migration_not_enough_data",
                     id="400 kubernetes events are not enough data"),
        pytest.param((10, 5000), (0, 999), Decision.HOLD, "migration_not_enough_data",
                     id="999 legacy events are not enough data"),
        pytest.param((400, 500), (50, 50_000), Decision.HOLD, "migration_not_enough_data",
                     id="even a terrible error ratio holds rather than rolls back on too little data"),
        pytest.param((30, 1000), (10, 1000), Decision.ROLLBACK, "migration_kubernetes_worse",
                     id="3 percent against 1 percent in 1000 events each rolls back"),
        pytest.param((10, 1000), (10, 1000), Decision.PROCEED, "migration_not_significantly_worse",
                     id="equal error ratios proceed"),
        pytest.param((5, 10_000), (40, 10_000), Decision.PROCEED, "migration_not_significantly_worse",
                     id="kubernetes better than legacy proceeds"),
        pytest.param((16, 1000), (10, 1000), Decision.PROCEED, "migration_not_significantly_worse",
                     id="1.6 against 1.0 percent in 1000 events is not significant and proceeds"),
        pytest.param((1200, 1_000_000), (1000, 1_000_000), Decision.PROCEED, "migration_within_tolerance",
                     id="a significant but 1.2x difference is within tolerance"),
        pytest.param((30, 1_000_000), (0, 1_000_000), Decision.PROCEED, "migration_within_tolerance",
                     id="30 errors in a million against none is under the absolute floor"),
        pytest.param((600, 1_000_000), (0, 1_000_000), Decision.ROLLBACK, "migration_kubernetes_worse",
                     id="600 errors in a million against none rolls back"),
    ],
)
def test_migration_step(k8s: tuple[int, int], legacy: tuple[int, int], decision: Decision, code: str) -> None:
    d = migrate(k8s, legacy)
    assert d.decision is decision
    assert codes(d) == [code]
    f = d.reasons[0].figures
    assert (f["kubernetes_errors"], f["kubernetes_total"], f["legacy_errors"], f["legacy_total"]) == (*k8s, *legacy)
    assert f["test"] == "fisher_exact_one_sided"


def test_a_migration_rollback_names_the_test_and_its_figures() -> None:
    d = migrate((30, 1000), (10, 1000))
    r = d.reasons[0]
    assert r.message == (
        "kubernetes is worse: kubernetes 30/1000 (3.00%) vs legacy 10/1000 (1.00%) over 30m; one-sided Fisher's "
        "exact test p=0.001 < alpha 0.01 (z=3.19); 3.00x and +2.000 points (rollback from 1.5x and +0.050)")
    assert r.figures["p_value"] == pytest.approx(0.0010042, rel=1e-4)
    assert r.figures["z"] == pytest.approx(3.1944, abs=1e-4)
    assert (r.figures["kubernetes_ratio"], r.figures["legacy_ratio"]) == (0.03, 0.01)
    assert d.migration is not None and d.migration.significant and d.migration.practically_worse
    body = d.to_json()
    json.dumps(body, allow_nan=False)
    assert body["migration"]["kubernetes"]["interval_95"][0] < 0.03 < body["migration"]["kubernetes"]["interval_95"][1]


def test_not_enough_data_gives_the_counts() -> None:
    r = migrate((3, 400), (50, 50_000)).reasons[0]
    assert r.message.startswith("not enough data on kubernetes: kubernetes 3/400 (0.75%) vs legacy 50/50000")
    assert r.message.endswith("need 1000 events on each side")
    assert r.figures["min_events"] == 1000


def test_an_infinite_ratio_is_null_in_json() -> None:
    body = migrate((600, 1_000_000), (0, 1_000_000)).to_json()
    assert body["reasons"][0]["figures"]["ratio_x"] is None
    assert body["migration"]["ratio_x"] is None
    json.dumps(body, allow_nan=False)


@st.composite
def migration_counts(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    k_total = draw(st.integers(0, 5000))
    l_total = draw(st.integers(0, 5000))
    k_bad = draw(st.integers(0, k_total))
    more = draw(st.integers(0, k_total - k_bad))
    return k_bad, k_bad + more, k_total, draw(st.integers(0, l_total)), l_total


@given(migration_counts(), st.sampled_from([1, 100, 1000]))
def test_more_kubernetes_errors_never_make_a_migration_step_look_better(
    counts: tuple[int, int, int, int, int], min_events: int
) -> None:
    k_bad, k_worse, k_total, l_bad, l_total = counts
    cfg = replace(DEFAULT_GATE_CONFIG, migration_min_events=min_events)
    before = migrate((k_bad, k_total), (l_bad, l_total), config=cfg).decision
    after = migrate((k_worse, k_total), (l_bad, l_total), config=cfg).decision
    assert after.severity >= before.severity
    if before is Decision.ROLLBACK:
        assert after is Decision.ROLLBACK


# ---- combining ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "combined"),
    [
        pytest.param((Decision.PROCEED, Decision.PROCEED), Decision.PROCEED, id="proceed and proceed proceed"),
        pytest.param((Decision.PROCEED, Decision.ROLLBACK), Decision.ROLLBACK, id="any rollback rolls back"),
        pytest.param((Decision.UNKNOWN, Decision.PROCEED), Decision.UNKNOWN, id="not knowing is never a proceed"),
        pytest.param((Decision.UNKNOWN, Decision.HOLD), Decision.HOLD, id="a known reason to hold beats not knowing"),
        pytest.param((Decision.HOLD, Decision.ROLLBACK), Decision.ROLLBACK, id="rollback beats hold"),
    ],
)
def test_combine_takes_the_worst(parts: tuple[Decision, ...], combined: Decision) -> None:
    ds = [GateDecision(decision=p, service=SERVICE, reasons=()) for p in parts]
    assert combine(*ds).decision is combined


def test_a_migration_step_combines_the_slo_gate_and_the_comparison() -> None:
    slo_gate = gate([status(budget=0.05)], cluster="eu-west-1")
    step = migrate((30, 1000), (10, 1000))
    d = combine(slo_gate, step)
    assert d.decision is Decision.ROLLBACK
    assert codes(d) == ["migration_kubernetes_worse", "budget_below_floor"]
    assert d.series == slo_gate.series and d.migration is step.migration
    assert (d.cluster, d.at) == ("eu-west-1", NOW)


def test_combine_refuses_nothing_and_mixed_services() -> None:
    with pytest.raises(ValueError, match="at least one"):
        combine()
    with pytest.raises(ValueError, match="different services"):
        combine(gate([status()]), replace(gate([status()]), service="billing"))


# ---- properties ---------------------------------------------------------------------------------


status_options = st.fixed_dictionaries({
    "cluster": st.sampled_from(["eu-west-1", "us-east-1", "*"]),
    "platform": st.sampled_from(["kubernetes", "legacy"]),
    "page": st.booleans(),
    "ticket": st.booleans(),
    "low_traffic_burn": st.booleans(),
    "budget": st.floats(-2.0, 1.0),
    "processed_age": st.floats(0.0, 400.0),
    "evaluation_lag": st.floats(0.0, 600.0),
})


@given(st.lists(status_options, max_size=6), st.sampled_from([None, "eu-west-1", "us-east-1"]),
       st.sampled_from([None, "7"]), st.randoms(use_true_random=False))
def test_decisions_are_worst_of_reasons_and_do_not_depend_on_order(
    options: list[dict[str, Any]], cluster: str | None, revision: str | None, rnd: Any
) -> None:
    statuses = [status(**o) for o in options]
    # One status per series (several per series is the "newest wins" test).
    statuses = list({s.series: s for s in statuses}.values())
    # A rollout is in one cluster: the suspect of a series grouped over clusters rolls out in eu-west-1.
    sus: dict[str, list[Suspect]] = {
        c.dedup_key(s.series, "page"): [suspect(cluster="eu-west-1" if s.dimensions.cluster == c.ANY
                                                else s.dimensions.cluster)]
        for s in statuses}
    d = gate(statuses, cluster=cluster, revision=revision, suspects=sus)
    shuffled = statuses[:]
    rnd.shuffle(shuffled)
    again = gate(shuffled, cluster=cluster, revision=revision, suspects=sus)
    assert again.to_json() == d.to_json()
    assert d.reasons and d.decision is max((r.decision for r in d.reasons), key=lambda x: x.severity)
    assert "\n" not in d.summary
    json.dumps(d.to_json(), allow_nan=False)


@given(st.lists(status_options, min_size=1, max_size=4), st.integers(0, 3))
def test_a_firing_page_or_staleness_never_makes_a_decision_better(options: list[dict[str, Any]], i: int) -> None:
    statuses = [status(**o) for o in options]
    i %= len(statuses)
    before = gate(statuses).decision
    for change in ({"page": True}, {"stale": True}):
        worse = list(statuses)
        worse[i] = status(**{**options[i], **change})
        assert gate(worse).decision.severity >= before.severity


def test_a_config_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="migration_alpha"):
        GateConfig(migration_alpha=0.0)
    with pytest.raises(ValueError, match="suspect_rollback_score"):
        GateConfig(suspect_rollback_score=1.5)


# ---- change freezes -----------------------------------------------------------------------------


def test_a_freeze_holds_its_cluster_and_the_whole_service_but_not_another_cluster() -> None:
    frozen = Freeze(cluster="eu-west-1", reason="black friday", ts=NOW - 60, until=NOW + 3600)
    here = decide_freeze(service=SERVICE, freezes=[frozen], cluster="eu-west-1", now=NOW)
    assert here.decision is Decision.HOLD and codes(here) == ["change_freeze"]
    assert here.reasons[0].message == "change freeze in eu-west-1 for 1h more: black friday"
    assert decide_freeze(service=SERVICE, freezes=[frozen], cluster=None, now=NOW).decision is Decision.HOLD
    assert decide_freeze(service=SERVICE, freezes=[frozen], cluster="us-east-1", now=NOW).decision \
        is Decision.PROCEED
    everywhere = replace(frozen, cluster=None)
    assert decide_freeze(service=SERVICE, freezes=[everywhere], cluster="us-east-1", now=NOW).decision \
        is Decision.HOLD
