"""Generated Prometheus rules (streams.render.prometheus) and the name checks every generator applies
(streams.render.promql)."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from streams.core.conventions import (
    M_ASSIGNED_PARTITIONS,
    M_LAST_EVALUATION,
    M_NOTIFIER_CONSUMING,
    M_SLI_BAD_EVENTS,
    M_SLI_EVENTS,
)
from streams.core.model import HOUR, AlertPolicy
from streams.render.alertmanager import alertmanager_config
from streams.render.prometheus import Liveness, prometheus_rules
from streams.render.promql import (
    ALERT_NAME,
    DOWN_ALERT,
    HEARTBEAT_ALERT,
    SERIES_LIMIT_ALERT,
    STREAMING_PATH_GROUP,
    promql_string,
)
from tests import factories


def _rules(*slos: Any) -> list[dict[str, Any]]:
    doc = prometheus_rules(list(slos))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_a_30d_slo_records_its_error_ratio_over_every_window_of_the_workbook_policy() -> None:
    records = [r for r in _rules(factories.slo()) if r.get("record", "").startswith("slo:sli_error:")]
    windows = [r["labels"]["sloth_window"] for r in records]
    assert windows == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    one_hour = records[2]
    assert one_hour["record"] == "slo:sli_error:ratio_rate1h"
    assert one_hour["labels"] == {
        "sloth_id": "playback-api-availability",
        "sloth_service": "playback-api",
        "sloth_slo": "playback-api-availability",
        "sloth_window": "1h",
    }
    by = "sum by (slo, service, cluster, region, platform)"
    assert one_hour["expr"] == (
        f'{by} (rate({M_SLI_BAD_EVENTS}{{slo="playback-api-availability"}}[1h]))\n/\n'
        f'{by} (rate({M_SLI_EVENTS}{{slo="playback-api-availability"}}[1h]))\n'
    )


def test_the_slo_meta_records_follow_sloth() -> None:
    meta = {r["record"]: r for r in _rules(factories.slo()) if r.get("record", "").startswith("slo:") and
            "sloth_window" not in r["labels"]}
    assert meta["slo:objective:ratio"]["expr"] == "vector(0.999)"
    assert meta["slo:error_budget:ratio"]["expr"] == "vector(0.001)"
    assert meta["slo:time_period:days"]["expr"] == "vector(30)"


def test_a_30d_slo_pages_at_14_4x_over_1h_and_5m_or_6x_over_6h_and_30m() -> None:
    alerts = {r["labels"]["severity"]: r for r in _rules(factories.slo()) if r.get("alert") == ALERT_NAME}
    assert set(alerts) == {"page", "ticket"}
    page = alerts["page"]
    assert page["alert"] == ALERT_NAME
    assert "for" not in page  # the policy has no "for": the short window confirms the burn
    assert page["keep_firing_for"] == "5m"  # the policy's hold
    expr = page["expr"]
    branches = expr.split("\nor\n")
    assert len(branches) == 2
    assert "slo:sli_error:ratio_rate1h{" in branches[0] and "> (14.4 * 0.001)" in branches[0]
    assert "slo:sli_error:ratio_rate5m{" in branches[0]
    assert "slo:sli_error:ratio_rate6h{" in branches[1] and "> (6 * 0.001)" in branches[1]
    assert ">= 10000)" in branches[0]  # min-events in the long window, as in the stream
    ticket = alerts["ticket"]["expr"]
    assert "ratio_rate1d{" in ticket and "> (3 * 0.001)" in ticket and "ratio_rate3d{" in ticket


def test_alerts_carry_the_slo_labels_and_its_runbook_and_dashboard() -> None:
    slo = factories.slo(
        labels=MappingProxyType({"team": "playback"}), dashboard_url="https://grafana.example.com/d/x"
    )
    (page,) = [r for r in _rules(slo) if r.get("labels", {}).get("severity") == "page" and r.get("alert") == ALERT_NAME]
    assert page["labels"]["team"] == "playback"
    assert page["labels"]["sloth_severity"] == "page"
    assert page["annotations"]["runbook"] == "https://runbooks.example.com/playback-api"
    assert page["annotations"]["dashboard"] == "https://grafana.example.com/d/x"
    assert "{{ $labels.cluster }}" in page["annotations"]["summary"]


def test_a_pages_only_policy_without_hold_has_no_ticket_alert_and_no_keep_firing_for() -> None:
    base = factories.slo()
    pages = tuple(w for w in base.policy.windows if w.severity.value == "page")
    slo = replace(base, policy=AlertPolicy(name="pages-only", windows=pages, hold_s=0))
    alerts = [r for r in _rules(slo) if r.get("alert") == ALERT_NAME]
    assert [a["labels"]["severity"] for a in alerts] == ["page"]
    assert "keep_firing_for" not in alerts[0]
    assert "slo:sli_error:ratio_rate1d" not in {r.get("record") for r in _rules(slo)}


def test_template_braces_in_free_text_print_as_themselves() -> None:
    (page, _) = [r for r in _rules(factories.slo(description="Say {{ hi }}")) if r.get("alert") == ALERT_NAME]
    assert page["annotations"]["description"].startswith('Say {{ "{{" }} hi {{ "}}" }}. ')


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"name": 'bad"name'}, id="a quote in the SLO name"),
        pytest.param({"name": "Playback"}, id="an uppercase SLO name"),
        pytest.param({"name": "a}b"}, id="a brace in the SLO name"),
        pytest.param({"service": "svc\n"}, id="a newline after the service"),
        pytest.param({"labels": MappingProxyType({"severity": "low"})}, id="a label that shadows severity"),
        pytest.param({"labels": MappingProxyType({"sloth_id": "x"})}, id="a label that shadows sloth_id"),
        pytest.param({"labels": MappingProxyType({"team": 'a"b'})}, id="a quote in a label value"),
        pytest.param({"labels": MappingProxyType({"te-am": "x"})}, id="a dash in a label name"),
    ],
)
def test_bad_names_are_refused(changes: dict[str, Any]) -> None:
    slo = factories.slo(**changes)
    with pytest.raises(ValueError):
        prometheus_rules([slo])
    with pytest.raises(ValueError):
        alertmanager_config([slo])


def test_two_slos_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        prometheus_rules([factories.slo(), factories.slo(window_s=7 * 24 * HOUR)])


def test_promql_strings_are_escaped() -> None:
    assert promql_string("a-b") == '"a-b"'
    assert promql_string('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    with pytest.raises(ValueError):
        promql_string("a\x00b")


# ---- the streaming path's liveness (docs/fallback.md) ---------------------------------------------


def test_each_slo_has_a_heartbeat_per_series_while_a_worker_evaluates_it_and_a_notifier_consumes() -> None:
    (beat,) = [r for r in _rules(factories.slo()) if r.get("alert") == HEARTBEAT_ALERT]
    assert beat["expr"] == (
        "(\n"
        "  max by (slo, service, cluster, region, platform) (\n"
        f'    {M_LAST_EVALUATION}{{slo="playback-api-availability"}}\n'
        "    and on (job, instance) (up == 1)\n"
        "  )\n"
        "  > time() - 600\n"
        ")\n"
        "and on ()\n"
        f"(max({M_NOTIFIER_CONSUMING}) == 1)\n"
    )
    assert beat["keep_firing_for"] == "2m"  # a partition's handover does not un-mute its series
    assert "severity" not in beat["labels"] and "for" not in beat


def test_the_streaming_path_down_pages_for_absent_workers_an_absent_notifier_or_stale_evaluations() -> None:
    doc = prometheus_rules([factories.slo()], liveness=Liveness(fresh_s=60, grace_s=5, down_for_s=30))
    assert [g["name"] for g in doc["groups"]] == ["slo-stream-playback-api-availability", STREAMING_PATH_GROUP]
    down = {r["labels"]["cause"]: r for r in doc["groups"][-1]["rules"] if r["alert"] == DOWN_ALERT}
    assert [r["alert"] for r in doc["groups"][-1]["rules"]] == [DOWN_ALERT] * 3 + [SERIES_LIMIT_ALERT]
    assert {cause: r["expr"] for cause, r in down.items()} == {
        "workers_absent": f"absent({M_ASSIGNED_PARTITIONS})\n",
        "notifier_absent": f"absent({M_NOTIFIER_CONSUMING} == 1)\n",
        "evaluations_stale": f"time() - max({M_LAST_EVALUATION}) > 60\n",
    }
    assert all(r["for"] == "30s" and r["labels"]["severity"] == "page" for r in down.values())
    (beat,) = [r for r in doc["groups"][0]["rules"] if r.get("alert") == HEARTBEAT_ALERT]
    assert beat["keep_firing_for"] == "5s" and "> time() - 60\n" in beat["expr"]


def test_liveness_timings_must_be_positive() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        Liveness(grace_s=0)
