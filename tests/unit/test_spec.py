"""OpenSLO v1 specs -> Slo: the examples in alerts/slos, defaults, references, and every kind of problem."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from streams.adapters.specfiles import load_specs, validate
from streams.core.errors import SpecError, SpecProblem
from streams.core.model import DAY, HOUR, MINUTE, AlertPolicy, BurnWindow, Severity, SliKind, Slo
from streams.core.spec import WHOLE_DOCUMENT, parse_specs

EXAMPLES = Path(__file__).resolve().parents[2] / "alerts" / "slos"

# A valid file that uses every kind of document; error cases edit one spot of it.
BASE = """\
apiVersion: openslo/v1
kind: Service
metadata:
  name: checkout
---
apiVersion: openslo/v1
kind: SLI
metadata:
  name: checkout-errors
spec:
  ratioMetric:
    counter: true
    bad:
      metricSource:
        type: playback
        spec:
          field: errors
    total:
      metricSource:
        type: playback
        spec:
          field: total
---
apiVersion: openslo/v1
kind: AlertCondition
metadata:
  name: slow-burn
spec:
  severity: ticket
  condition:
    kind: burnrate
    op: gt
    threshold: 1
    lookbackWindow: 3d
    alertAfter: 6h
---
apiVersion: openslo/v1
kind: AlertPolicy
metadata:
  name: checkout-policy
  annotations:
    slo-stream/min-events: "50"
    slo-stream/hold: 10m
spec:
  conditions:
    - kind: AlertCondition
      metadata:
        name: fast-burn
      spec:
        severity: page
        condition:
          kind: burnrate
          op: gt
          threshold: 14.4
          lookbackWindow: 1h
          alertAfter: 5m
    - conditionRef: slow-burn
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
  labels:
    team: payments
  annotations:
    slo-stream/runbook: https://runbooks.example.com/checkout
spec:
  description: Checkouts succeed
  service: checkout
  indicatorRef: checkout-errors
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
  alertPolicies:
    - checkout-policy
"""

SLO_DOC = "SLO/checkout-availability"
POLICY_DOC = "AlertPolicy/checkout-policy"


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """The 1-based line where the last occurrence of ``needle`` starts."""
    at = text.rfind(needle)
    assert at >= 0, f"{needle!r} not in the text"
    return text.count("\n", 0, at) + 1


def problems_of(*sources: tuple[str, str]) -> list[SpecProblem]:
    with pytest.raises(SpecError) as info:
        parse_specs(list(sources))
    return info.value.problems


def assert_reported(
    problems: list[SpecProblem], *, file: str, document: str, field: str, line: int, says: str
) -> None:
    found = [p for p in problems if (p.file, p.document, p.field, p.line) == (file, document, field, line)]
    assert found, f"no problem at {file}:{line} {document} {field}; got:\n" + "\n".join(map(str, problems))
    assert any(says in p.message for p in found), [p.message for p in found]


# -- the examples ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples() -> dict[str, Slo]:
    return {s.name: s for s in load_specs(EXAMPLES)}


WORKBOOK_30D = (
    BurnWindow(Severity.PAGE, HOUR, 5 * MINUTE, 14.4),
    BurnWindow(Severity.PAGE, 6 * HOUR, 30 * MINUTE, 6.0),
    BurnWindow(Severity.TICKET, DAY, 2 * HOUR, 3.0),
    BurnWindow(Severity.TICKET, 3 * DAY, 6 * HOUR, 1.0),
)


@pytest.mark.parametrize(
    ("name", "service", "objective", "kind", "latency_ms", "policy", "group_by", "source"),
    [
        pytest.param(
            "playback-api-availability",
            "playback-api",
            0.999,
            SliKind.RATIO,
            None,
            AlertPolicy("workbook-default", WORKBOOK_30D),
            ("cluster", "region", "platform"),
            "playback-api.yaml",
            id="playback-api is 99.9% available over 30d with the default policy",
        ),
        pytest.param(
            "playback-api-latency",
            "playback-api",
            0.99,
            SliKind.THRESHOLD,
            500.0,
            AlertPolicy("workbook-default", WORKBOOK_30D),
            ("cluster", "region", "platform"),
            "playback-api.yaml",
            id="playback-api answers 99% of starts within 500 ms over 30d",
        ),
        pytest.param(
            "stream-router-availability",
            "stream-router",
            0.9995,
            SliKind.RATIO,
            None,
            AlertPolicy("workbook-30d", WORKBOOK_30D, hold_s=10 * MINUTE),
            ("cluster", "region", "platform"),
            "stream-router.yaml",
            id="stream-router is 99.95% available and uses the shared policy from policies.yaml",
        ),
        pytest.param(
            "license-service-availability",
            "license-service",
            0.999,
            SliKind.RATIO,
            None,
            AlertPolicy("workbook-30d", WORKBOOK_30D, hold_s=10 * MINUTE),
            ("cluster", "platform"),
            "license-service.yaml",
            id="license-service is 99.9% available (targetPercent) and groups the region away",
        ),
    ],
)
def test_the_example_specs_load(
    examples: dict[str, Slo],
    name: str,
    service: str,
    objective: float,
    kind: SliKind,
    latency_ms: float | None,
    policy: AlertPolicy,
    group_by: tuple[str, ...],
    source: str,
) -> None:
    slo = examples[name]
    assert slo.service == service
    assert slo.objective == objective
    assert slo.window_s == 30 * DAY
    assert slo.indicator.kind is kind
    assert slo.indicator.latency_threshold_ms == latency_ms
    assert slo.policy == policy
    assert slo.group_by == group_by
    assert Path(slo.source) == EXAMPLES / source
    assert slo.runbook_url.startswith(f"https://runbooks.example.com/{service}")
    assert slo.dashboard_url.startswith("https://grafana.example.com/")
    assert slo.labels["team"]


def test_the_examples_are_exactly_these_slos_sorted_by_name(examples: dict[str, Slo]) -> None:
    assert list(examples) == [
        "license-service-availability",
        "playback-api-availability",
        "playback-api-latency",
        "stream-router-availability",
    ]


def test_validate_prints_ok_and_one_line_per_slo_for_the_examples() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert validate([str(EXAMPLES)], out=out, err=err) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "OK: 4 SLOs in 4 files"
    assert len(lines) == 5
    assert "playback-api-latency: service=playback-api objective=99% window=30d" in lines[3]
    assert "threshold (latency_ms <= 500)" in lines[3]
    assert "page 14.4x 1h+5m, page 6x 6h+30m, ticket 3x 1d+2h, ticket 1x 3d+6h" in lines[3]
    assert err.getvalue() == ""


# -- what the base file gives ----------------------------------------------------------------------------


def test_a_policy_combines_inline_conditions_and_condition_refs() -> None:
    (slo,) = parse_specs([("slo.yaml", BASE)])
    assert slo.policy == AlertPolicy(
        "checkout-policy",
        (
            BurnWindow(Severity.PAGE, HOUR, 5 * MINUTE, 14.4),
            BurnWindow(Severity.TICKET, 3 * DAY, 6 * HOUR, 1.0),
        ),
        min_events=50,
        hold_s=10 * MINUTE,
    )
    assert slo.source == "slo.yaml"
    assert slo.description == "Checkouts succeed"
    assert dict(slo.labels) == {"team": "payments"}
    assert slo.dashboard_url == ""


WITHOUT_POLICY = edit(BASE, "  alertPolicies:\n    - checkout-policy\n", "")


@pytest.mark.parametrize(
    ("severity", "long_s", "short_s", "factor"),
    [
        pytest.param(
            Severity.PAGE, HOUR, 5 * MINUTE, 14.4, id="30d SLO without a policy pages at 14.4x over 1h and 5m"
        ),
        pytest.param(
            Severity.PAGE,
            6 * HOUR,
            30 * MINUTE,
            6.0,
            id="30d SLO without a policy pages at 6x over 6h and 30m",
        ),
        pytest.param(
            Severity.TICKET, DAY, 2 * HOUR, 3.0, id="30d SLO without a policy tickets at 3x over 1d and 2h"
        ),
        pytest.param(
            Severity.TICKET,
            3 * DAY,
            6 * HOUR,
            1.0,
            id="30d SLO without a policy tickets at 1x over 3d and 6h",
        ),
    ],
)
def test_an_slo_without_alert_policies_gets_the_workbook_policy(
    severity: Severity, long_s: int, short_s: int, factor: float
) -> None:
    (slo,) = parse_specs([("slo.yaml", WITHOUT_POLICY)])
    assert slo.policy.name == "workbook-default"
    assert len(slo.policy.windows) == 4
    windows = {(w.severity, w.long_s, w.short_s): w.factor for w in slo.policy.windows}
    assert windows[(severity, long_s, short_s)] == pytest.approx(factor)


def test_slo_annotations_tune_the_default_policy_and_group_by() -> None:
    text = edit(
        WITHOUT_POLICY,
        "    slo-stream/runbook: https://runbooks.example.com/checkout\n",
        '    slo-stream/min-events: "10"\n'
        "    slo-stream/hold: 0s\n"
        '    slo-stream/group-by: " platform, cluster"\n',
    )
    (slo,) = parse_specs([("slo.yaml", text)])
    assert (slo.policy.min_events, slo.policy.hold_s) == (10, 0)
    assert slo.group_by == ("cluster", "platform")
    assert slo.runbook_url == ""


def test_slo_annotations_override_the_tuning_of_a_shared_policy() -> None:
    text = edit(
        BASE,
        "    slo-stream/runbook: https://runbooks.example.com/checkout\n",
        "    slo-stream/min-events: 5\n",
    )
    (slo,) = parse_specs([("slo.yaml", text)])
    assert (slo.policy.name, slo.policy.min_events, slo.policy.hold_s) == ("checkout-policy", 5, 10 * MINUTE)


def test_alert_policies_accept_the_openslo_ref_form_and_inline_policies() -> None:
    by_ref = edit(BASE, "    - checkout-policy\n", "    - alertPolicyRef: checkout-policy\n")
    assert parse_specs([("slo.yaml", by_ref)])[0].policy.name == "checkout-policy"
    inline = edit(
        BASE,
        "    - checkout-policy\n",
        "    - kind: AlertPolicy\n"
        "      metadata: {name: only-fast}\n"
        "      spec:\n"
        "        conditions:\n"
        "          - conditionRef: slow-burn\n",
    )
    (slo,) = parse_specs([("slo.yaml", inline)])
    assert slo.policy == AlertPolicy("only-fast", (BurnWindow(Severity.TICKET, 3 * DAY, 6 * HOUR, 1.0),))


THRESHOLD_SLI = """\
apiVersion: openslo/v1
kind: SLI
metadata:
  name: checkout-latency
spec:
  thresholdMetric:
    metricSource:
      type: playback
      spec:
        field: latency_ms
"""
LATENCY_SLO = edit(
    edit(WITHOUT_POLICY, "indicatorRef: checkout-errors", "indicatorRef: checkout-latency"),
    "    - target: 0.999\n",
    "    - targetPercent: 95\n      op: lte\n      value: 250\n",
)


def test_a_threshold_sli_takes_its_latency_from_the_objective() -> None:
    (slo,) = parse_specs([("sli.yaml", THRESHOLD_SLI), ("slo.yaml", LATENCY_SLO)])
    assert (slo.indicator.name, slo.indicator.kind) == ("checkout-latency", SliKind.THRESHOLD)
    assert slo.indicator.latency_threshold_ms == 250.0
    assert slo.objective == 0.95


# -- references across files -----------------------------------------------------------------------------


def split_documents(text: str) -> list[str]:
    return [d if d.startswith("apiVersion") else d.lstrip("\n") for d in text.split("---\n")]


def test_references_resolve_across_files_in_any_order() -> None:
    docs = split_documents(BASE)
    sources = [(f"{i}.yaml", d) for i, d in reversed(list(enumerate(docs)))]
    (slo,) = parse_specs(sources)
    assert slo.source == "4.yaml"
    assert [w.long_s for w in slo.policy.windows] == [HOUR, 3 * DAY]


def test_an_unknown_reference_in_another_file_is_reported_where_it_is_made() -> None:
    service, sli, _, _, slo = split_documents(BASE)
    problems = problems_of(("a.yaml", service + "---\n" + sli), ("b.yaml", slo))
    assert_reported(
        problems,
        file="b.yaml",
        document=SLO_DOC,
        field="spec.alertPolicies[0]",
        line=line_of(slo, "- checkout-policy"),
        says="no AlertPolicy named 'checkout-policy' (known: none)",
    )
    assert len(problems) == 1


def test_duplicate_names_of_one_kind_name_both_files() -> None:
    service = split_documents(BASE)[0]
    problems = problems_of(("slo.yaml", BASE), ("other.yaml", "# another\n" + service))
    assert problems == [
        SpecProblem(
            file="other.yaml",
            document="Service/checkout",
            field="metadata.name",
            line=5,
            message="duplicate Service name 'checkout': "
            "also defined in slo.yaml (line 4) and in other.yaml (line 5)",
        )
    ]


def test_the_same_name_in_two_kinds_is_fine() -> None:
    text = edit(BASE, "  name: checkout-errors\n", "  name: checkout\n")
    text = edit(text, "indicatorRef: checkout-errors", "indicatorRef: checkout")
    assert parse_specs([("slo.yaml", text)])[0].indicator.name == "checkout"


# -- problems: file, document, field, line ----------------------------------------------------------------

# (what to replace in BASE, by what, the problem's document, field, a text that starts its line, message part)
CASES = [
    pytest.param(
        "  budgetingMethod: Occurrences",
        "  budgetingMetod: Occurrences",
        SLO_DOC,
        "spec.budgetingMetod",
        "budgetingMetod",
        "unknown field 'budgetingMetod' (did you mean 'budgetingMethod'?)",
        id="a typo in a field name is an unknown field with a suggestion",
    ),
    pytest.param(
        "  name: checkout-policy\n",
        "  name: checkout-policy\n  nmae: x\n",
        POLICY_DOC,
        "metadata.nmae",
        "nmae: x",
        "unknown field 'nmae' (did you mean 'name'?)",
        id="an unknown field in metadata is reported",
    ),
    pytest.param(
        "  objectives:\n    - target: 0.999\n",
        "",
        SLO_DOC,
        "spec.objectives",
        "spec:\n  description",
        "missing field 'objectives'",
        id="a missing required field is reported at the key that should hold it",
    ),
    pytest.param(
        "    - target: 0.999",
        "    - target: 1.5",
        SLO_DOC,
        "spec.objectives[0].target",
        "target: 1.5",
        "between 0 and 1 (exclusive)",
        id="a target of 1.5 is out of range",
    ),
    pytest.param(
        "    - target: 0.999",
        "    - targetPercent: 100",
        SLO_DOC,
        "spec.objectives[0].targetPercent",
        "targetPercent: 100",
        "between 0 and 100 (exclusive)",
        id="a targetPercent of 100 is out of range",
    ),
    pytest.param(
        "    - target: 0.999",
        "    - target: '0.999'",
        SLO_DOC,
        "spec.objectives[0].target",
        "target: '0.999'",
        "expected a number, got a string",
        id="a quoted target is the wrong type",
    ),
    pytest.param(
        "    - target: 0.999",
        "    - target: 0.999\n      targetPercent: 99.9",
        SLO_DOC,
        "spec.objectives[0]",
        "- target: 0.999",
        "exactly one of 'target'",
        id="target and targetPercent together are ambiguous",
    ),
    pytest.param(
        "    - target: 0.999",
        "    - target: 0.999\n    - target: 0.99",
        SLO_DOC,
        "spec.objectives",
        "objectives:",
        "exactly one objective, not 2",
        id="two objectives are refused",
    ),
    pytest.param(
        "    - target: 0.999",
        "    - target: 0.999\n      op: lte",
        SLO_DOC,
        "spec.objectives[0].op",
        "op: lte",
        "applies to threshold SLIs only",
        id="op on a ratio SLI's objective is refused",
    ),
    pytest.param(
        "      isRolling: true",
        "      isRolling: false",
        SLO_DOC,
        "spec.timeWindow[0].isRolling",
        "isRolling: false",
        "calendar windows are not supported yet",
        id="a calendar window is not supported yet",
    ),
    pytest.param(
        "      isRolling: true",
        "      isRolling: 'yes'",
        SLO_DOC,
        "spec.timeWindow[0].isRolling",
        "isRolling: 'yes'",
        "expected a boolean",
        id="a quoted isRolling is the wrong type",
    ),
    pytest.param(
        "  budgetingMethod: Occurrences",
        "  budgetingMethod: Timeslices",
        SLO_DOC,
        "spec.budgetingMethod",
        "budgetingMethod: Timeslices",
        "Timeslices is not supported yet",
        id="Timeslices budgeting is not supported yet",
    ),
    pytest.param(
        "duration: 30d",
        "duration: 120d",
        SLO_DOC,
        "spec.timeWindow[0].duration",
        "duration: 120d",
        "between 1h and 90d",
        id="a 120d SLO window is too long",
    ),
    pytest.param(
        "duration: 30d",
        "duration: 30m",
        SLO_DOC,
        "spec.timeWindow[0].duration",
        "duration: 30m",
        "between 1h and 90d",
        id="a 30m SLO window is too short",
    ),
    pytest.param(
        "duration: 30d",
        "duration: 2h5s",
        SLO_DOC,
        "spec.timeWindow[0].duration",
        "duration: 2h5s",
        "not a multiple of 10s",
        id="an SLO window must be a whole number of 10s steps",
    ),
    pytest.param(
        "duration: 30d",
        "duration: 1d",
        "AlertCondition/slow-burn",
        "spec.condition.lookbackWindow",
        "lookbackWindow: 3d",
        "lookbackWindow 3d is longer than the 1d timeWindow of SLO 'checkout-availability' (slo.yaml)",
        id="a policy window longer than the SLO window is reported at the condition",
    ),
    pytest.param(
        "alertAfter: 5m",
        "alertAfter: 1h",
        POLICY_DOC,
        "spec.conditions[0].spec.condition.alertAfter",
        "alertAfter: 1h",
        "must be shorter than",
        id="a short window as long as the long window is refused",
    ),
    pytest.param(
        "lookbackWindow: 1h",
        "lookbackWindow: 1 hour",
        POLICY_DOC,
        "spec.conditions[0].spec.condition.lookbackWindow",
        "lookbackWindow: 1 hour",
        "invalid duration",
        id="a duration in words is refused",
    ),
    pytest.param(
        "alertAfter: 5m",
        "alertAfter: 45s",
        POLICY_DOC,
        "spec.conditions[0].spec.condition.alertAfter",
        "alertAfter: 45s",
        "not a multiple of 10s",
        id="a 45s window is not a whole number of steps",
    ),
    pytest.param(
        "threshold: 14.4",
        "threshold: 0",
        POLICY_DOC,
        "spec.conditions[0].spec.condition.threshold",
        "threshold: 0",
        "must be > 0",
        id="a zero burn-rate threshold is refused",
    ),
    pytest.param(
        "threshold: 14.4",
        "threshold: high",
        POLICY_DOC,
        "spec.conditions[0].spec.condition.threshold",
        "threshold: high",
        "expected a number",
        id="a threshold in words is the wrong type",
    ),
    pytest.param(
        "          op: gt\n          threshold: 14.4",
        "          op: lt\n          threshold: 14.4",
        POLICY_DOC,
        "spec.conditions[0].spec.condition.op",
        "op: lt",
        "must be gt or gte",
        id="a condition must fire above its threshold",
    ),
    pytest.param(
        "severity: page",
        "severity: critical",
        POLICY_DOC,
        "spec.conditions[0].spec.severity",
        "severity: critical",
        "one of page, ticket",
        id="an unknown severity is refused",
    ),
    pytest.param(
        "    kind: burnrate\n    op: gt\n    threshold: 1",
        "    kind: threshold\n    op: gt\n    threshold: 1",
        "AlertCondition/slow-burn",
        "spec.condition.kind",
        "kind: threshold",
        "must be 'burnrate'",
        id="only burn-rate conditions are supported",
    ),
    pytest.param(
        'slo-stream/min-events: "50"',
        'slo-stream/min-events: "0"',
        POLICY_DOC,
        "metadata.annotations.slo-stream/min-events",
        "slo-stream/min-events",
        "integer >= 1",
        id="min-events of 0 is refused",
    ),
    pytest.param(
        "slo-stream/hold: 10m",
        "slo-stream/hold: soon",
        POLICY_DOC,
        "metadata.annotations.slo-stream/hold",
        "slo-stream/hold",
        "invalid duration",
        id="a hold that is not a duration is refused",
    ),
    pytest.param(
        "slo-stream/hold: 10m",
        "slo-stream/hodl: 10m",
        POLICY_DOC,
        "metadata.annotations.slo-stream/hodl",
        "slo-stream/hodl",
        "did you mean 'slo-stream/hold'?",
        id="a typo in a slo-stream annotation is caught",
    ),
    pytest.param(
        "slo-stream/runbook: https://runbooks.example.com/checkout",
        "slo-stream/runbook: runbooks.example.com/checkout",
        SLO_DOC,
        "metadata.annotations.slo-stream/runbook",
        "slo-stream/runbook",
        "absolute http(s) URL",
        id="a runbook that is not an absolute URL is refused",
    ),
    pytest.param(
        "slo-stream/runbook: https://runbooks.example.com/checkout",
        "slo-stream/group-by: cluster,zone",
        SLO_DOC,
        "metadata.annotations.slo-stream/group-by",
        "slo-stream/group-by",
        "unknown dimension 'zone'",
        id="group-by names only cluster, region and platform",
    ),
    pytest.param(
        "    team: payments",
        "    severity: high",
        SLO_DOC,
        "metadata.labels.severity",
        "severity: high",
        "reserved",
        id="a label must not shadow one slo-stream sets",
    ),
    pytest.param(
        "    team: payments",
        "    team: pay ments",
        SLO_DOC,
        "metadata.labels.team",
        "team: pay ments",
        "invalid label value",
        id="a label value with a space is refused",
    ),
    pytest.param(
        "  service: checkout",
        "  service: checkuot",
        SLO_DOC,
        "spec.service",
        "service: checkuot",
        "no Service named 'checkuot' (did you mean 'checkout'?)",
        id="an SLO of an unknown service is refused",
    ),
    pytest.param(
        "indicatorRef: checkout-errors",
        "indicatorRef: checkout-error",
        SLO_DOC,
        "spec.indicatorRef",
        "indicatorRef",
        "no SLI named 'checkout-error'",
        id="an unknown SLI reference is refused",
    ),
    pytest.param(
        "  indicatorRef: checkout-errors",
        "",
        SLO_DOC,
        "spec",
        "spec:\n  description",
        "exactly one of 'indicator' (inline SLI) or 'indicatorRef'",
        id="an SLO without an indicator is refused",
    ),
    pytest.param(
        "    - checkout-policy",
        "    - checkout-polcy",
        SLO_DOC,
        "spec.alertPolicies[0]",
        "- checkout-polcy",
        "no AlertPolicy named 'checkout-polcy'",
        id="an unknown policy reference is refused",
    ),
    pytest.param(
        "    - checkout-policy",
        "    - checkout-policy\n    - other",
        SLO_DOC,
        "spec.alertPolicies",
        "alertPolicies:",
        "exactly one policy, not 2",
        id="two policies for one SLO are refused",
    ),
    pytest.param(
        "conditionRef: slow-burn",
        "conditionRef: slow-burm",
        POLICY_DOC,
        "spec.conditions[1].conditionRef",
        "conditionRef",
        "no AlertCondition named 'slow-burm'",
        id="an unknown condition reference is refused",
    ),
    pytest.param(
        "    bad:\n",
        "    good:\n",
        "SLI/checkout-errors",
        "spec.ratioMetric.good",
        "good:",
        "'good' is not supported",
        id="a good-over-total SLI is refused with the reason",
    ),
    pytest.param(
        "    counter: true",
        "    counter: false",
        "SLI/checkout-errors",
        "spec.ratioMetric.counter",
        "counter: false",
        "not supported",
        id="a gauge SLI is refused",
    ),
    pytest.param(
        "        type: playback\n        spec:\n          field: errors",
        "        type: prometheus\n        spec:\n          field: errors",
        "SLI/checkout-errors",
        "spec.ratioMetric.bad.metricSource.type",
        "type: prometheus",
        "only 'playback'",
        id="a metric source other than the playback stream is refused",
    ),
    pytest.param(
        "field: errors",
        "field: error",
        "SLI/checkout-errors",
        "spec.ratioMetric.bad.metricSource.spec.field",
        "field: error",
        "must be 'errors'",
        id="bad events are the errors field",
    ),
    pytest.param(
        "apiVersion: openslo/v1\nkind: Service",
        "apiVersion: openslo/v2\nkind: Service",
        "Service/checkout",
        "apiVersion",
        "apiVersion: openslo/v2",
        "expected 'openslo/v1'",
        id="an unknown apiVersion is refused",
    ),
    pytest.param(
        "kind: Service",
        "kind: Servise",
        "Servise/checkout",
        "kind",
        "kind: Servise",
        "did you mean 'Service'?",
        id="an unknown kind is refused with a suggestion",
    ),
    pytest.param(
        "  name: slow-burn\n",
        "  displayName: slow burn\n",
        "#3",
        "metadata.name",
        "metadata:\n  displayName",
        "missing field 'name'",
        id="a document without a name is named by its position",
    ),
    pytest.param(
        "  name: checkout\n",
        "  name: 2024\n",
        "#1",
        "metadata.name",
        "name: 2024",
        "expected a string, got an integer (quote it)",
        id="a number where a name belongs is the wrong type",
    ),
    pytest.param(
        "  description: Checkouts succeed\n",
        "  description: Checkouts succeed\n  description: twice\n",
        SLO_DOC,
        "spec.description",
        "description: twice",
        "duplicate key 'description'",
        id="a key given twice in one mapping is refused",
    ),
    pytest.param(
        "    - checkout-policy\n",
        "    - checkout-policy\n---\n- a list\n",
        "#6",
        WHOLE_DOCUMENT,
        "- a list",
        "expected a mapping, got a list",
        id="a document that is not a mapping is refused",
    ),
    pytest.param(
        "    - checkout-policy\n",
        "    - checkout-policy\n---\nkind: SLO\nspec: x: y\n",
        "#6",
        WHOLE_DOCUMENT,
        "spec: x: y",
        "YAML syntax error",
        id="a YAML syntax error is reported with its line",
    ),
]


@pytest.mark.parametrize(("old", "new", "document", "field", "line_starts", "says"), CASES)
def test_a_problem_is_reported_with_file_document_field_and_line(
    old: str, new: str, document: str, field: str, line_starts: str, says: str
) -> None:
    text = edit(BASE, old, new)
    problems = problems_of(("slo.yaml", text))
    assert_reported(
        problems, file="slo.yaml", document=document, field=field, line=line_of(text, line_starts), says=says
    )


@pytest.mark.parametrize(
    ("old", "new", "field", "line_starts", "says"),
    [
        pytest.param(
            "      value: 250\n",
            "",
            "spec.objectives[0].value",
            "- targetPercent",
            "missing field 'value'",
            id="a threshold SLI needs the latency value",
        ),
        pytest.param(
            "      op: lte\n",
            "",
            "spec.objectives[0].op",
            "- targetPercent",
            "missing field 'op'",
            id="a threshold SLI needs op lte",
        ),
        pytest.param(
            "      op: lte\n",
            "      op: gte\n",
            "spec.objectives[0].op",
            "op: gte",
            "op must be lte",
            id="a threshold objective counts latencies at or under the value as good",
        ),
        pytest.param(
            "      value: 250\n",
            "      value: -5\n",
            "spec.objectives[0].value",
            "value: -5",
            "must be > 0",
            id="a negative latency is refused",
        ),
    ],
)
def test_threshold_objectives(old: str, new: str, field: str, line_starts: str, says: str) -> None:
    text = edit(LATENCY_SLO, old, new)
    problems = problems_of(("sli.yaml", THRESHOLD_SLI), ("slo.yaml", text))
    assert_reported(
        problems, file="slo.yaml", document=SLO_DOC, field=field, line=line_of(text, line_starts), says=says
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        pytest.param(
            'a"}or vector(1)', "it contains ' ' '\"' '(' ')' '}'", id="a PromQL injection is refused"
        ),
        pytest.param("a|b", "it contains '|'", id="the series key separator is refused"),
        pytest.param("a/b", "it contains '/'", id="the dedup key separator is refused"),
        pytest.param("Checkout", "it has uppercase letters", id="uppercase is refused"),
        pytest.param("check_out", "it contains '_'", id="an underscore is refused"),
        pytest.param("-checkout", "it starts or ends with '-'", id="a leading dash is refused"),
        pytest.param("c" * 64, "it is 64 characters long", id="a name over 63 characters is refused"),
        pytest.param("caf\u00e9", "it contains '\u00e9'", id="a non-ASCII letter is refused"),
    ],
)
def test_unsafe_names_are_refused_with_the_reason(name: str, why: str) -> None:
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = edit(BASE, "  name: checkout-availability", f"  name: {quoted}")
    problems = problems_of(("slo.yaml", text))
    assert_reported(
        problems,
        file="slo.yaml",
        document=f"SLO/{name}",
        field="metadata.name",
        line=line_of(text, f"name: {quoted}"),
        says=f"invalid name {name!r}: {why}",
    )
    assert "Kafka keys, PromQL label values and YAML keys" in problems[0].message


def test_an_unsafe_reference_is_refused_before_it_is_looked_up() -> None:
    text = edit(BASE, "  service: checkout", "  service: 'checkout\"} or up'")
    problems = problems_of(("slo.yaml", text))
    assert [(p.field, p.line) for p in problems] == [("spec.service", line_of(text, "service: 'checkout"))]
    assert "invalid name" in problems[0].message


def test_every_problem_in_every_file_is_reported_at_once_in_file_and_line_order() -> None:
    text = edit(BASE, "    - target: 0.999", "    - target: 2")
    text = edit(text, "severity: page", "severity: sev1")
    text = edit(text, "field: total", "field: count")
    other = "apiVersion: openslo/v1\nkind: Service\nmetadata:\n  name: Bad_Name\n"
    problems = problems_of(("slo.yaml", text), ("other.yaml", other))
    assert [(p.file, p.field, p.line) for p in problems] == [
        ("slo.yaml", "spec.ratioMetric.total.metricSource.spec.field", line_of(text, "field: count")),
        ("slo.yaml", "spec.conditions[0].spec.severity", line_of(text, "severity: sev1")),
        ("slo.yaml", "spec.objectives[0].target", line_of(text, "target: 2")),
        ("other.yaml", "metadata.name", 4),
    ]
    line = line_of(text, "field: count")
    assert (
        str(problems[0])
        == f"slo.yaml:{line}: SLI/checkout-errors: {problems[0].field}: must be 'total', not 'count'"
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="an empty file has no SLOs"),
        pytest.param("# only a comment\n", id="a file of comments has no SLOs"),
        pytest.param("---\n---\n", id="empty documents are skipped"),
    ],
)
def test_empty_files_and_documents_are_skipped(text: str) -> None:
    assert parse_specs([("empty.yaml", text)]) == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("!!python/object:os.system {}\n", id="a python tag is only an unknown value"),
        pytest.param("a: &x [*x]\n", id="a recursive alias does not recurse"),
        pytest.param("? [a, b]\n: c\n", id="a list as a key is refused"),
        pytest.param("<<: {a: 1}\n", id="a merge key is refused"),
        pytest.param("\t- x\n", id="a tab indentation is a syntax error"),
        pytest.param("a: *nowhere\n", id="an undefined alias is a syntax error"),
        pytest.param(
            "apiVersion: openslo/v1\nkind: SLO\nmetadata: []\nspec: 1\n", id="wrong types everywhere"
        ),
    ],
)
def test_malformed_yaml_is_reported_never_raised_as_a_traceback(text: str) -> None:
    problems = problems_of(("odd.yaml", text))
    assert problems
    assert all(p.file == "odd.yaml" and p.line >= 1 and p.message for p in problems)


# -- reading files ---------------------------------------------------------------------------------------


def test_load_specs_reads_yaml_and_yml_files_recursively_and_skips_hidden_ones(tmp_path: Path) -> None:
    service, sli, condition, policy, slo = split_documents(BASE)
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "service.yml").write_text(service)
    (tmp_path / "nested" / "sli.yaml").write_text(sli)
    (tmp_path / "nested" / "deeper" / "slo.yaml").write_text(slo + "---\n" + condition + "---\n" + policy)
    (tmp_path / "nested" / "notes.txt").write_text("not a spec: {")
    (tmp_path / ".hidden" / "broken.yaml").write_text("not a spec: {")
    (slo_,) = load_specs(tmp_path)
    assert slo_.source == str(tmp_path / "nested" / "deeper" / "slo.yaml")
    assert load_specs(tmp_path / "service.yml", tmp_path / "nested") == [slo_]


def test_load_specs_reports_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"apiVersion: openslo/v1\n# caf\xe9\n")
    with pytest.raises(SpecError) as info:
        load_specs(tmp_path, tmp_path / "missing.yaml", tmp_path / "empty-dir")
    problems = {(Path(p.file).name, p.line): p.message for p in info.value.problems}
    assert problems[("latin1.yaml", 2)].startswith("not UTF-8")
    assert problems[("missing.yaml", 0)] == "no such file or directory"
    assert problems[("empty-dir", 0)] == "no such file or directory"


def test_a_directory_without_specs_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no \*\.yaml or \*\.yml spec files"):
        load_specs(tmp_path)


def test_validate_prints_every_problem_one_per_line_and_fails(tmp_path: Path) -> None:
    text = edit(BASE, "    - target: 0.999", "    - target: 2")
    text = edit(text, "  budgetingMethod: Occurrences", "  budgetingMethod: Timeslices")
    (tmp_path / "slo.yaml").write_text(text)
    out, err = io.StringIO(), io.StringIO()
    assert validate([str(tmp_path)], out=out, err=err) == 1
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    file = str(tmp_path / "slo.yaml")
    assert lines == [
        f"{file}:{line_of(text, 'budgetingMethod')}: {SLO_DOC}: spec.budgetingMethod: "
        "budgetingMethod Timeslices is not supported yet: use Occurrences",
        f"{file}:{line_of(text, 'target: 2')}: {SLO_DOC}: spec.objectives[0].target: "
        "target must be between 0 and 1 (exclusive), e.g. 0.999, not 2",
        "2 problems in SLO specs",
    ]
