"""Bad configuration: SLO specs and settings that must be refused at load, naming the file and field
(or the variable), and generators that never emit hostile text.

- Hostile names (PromQL and YAML injection, newlines, template braces, unicode lookalikes, zero-width
  and bidi characters) in every place a name goes are refused with the file, the field path and the
  line (:class:`SpecError` problems); so are unknown fields and impossible objectives and windows.
- A hypothesis property over whole spec documents with hostile values in every field: either a
  SpecError whose problems name the file and each hostile name's field, or generated Prometheus
  rules, Alertmanager config and Grafana dashboards that parse (YAML, JSON), whose PromQL string
  literals are plain names, whose Go-template actions are only the generator's own (free text is
  escaped and reads back verbatim), and whose markdown catalog keeps its table shape, opens no HTML
  and links each runbook to exactly its URL. One hostile-but-valid spec also passes promtool and amtool.
- The real CLI: `slo-stream validate`, `generate` and `worker` exit non-zero on such specs with one
  `error: file:line: document: field: message` line per problem (generate writes nothing); bad
  SLO_STREAM_* values make `slo-stream settings` and `slo-stream worker` exit 2 naming the variable,
  and a gate token that is refused is never echoed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from streams.core import conventions as c
from streams.core.errors import SpecError
from streams.core.spec import parse_specs
from streams.render.dashboards import OVERVIEW_FILE
from streams.render.outputs import ALERTMANAGER_FILE, RULES_FILE, alert_files, dashboard_files
from streams.render.promql import ALERT_NAME
from tests.integration.harness import ROOT, Deployment

FILE = "alerts/slos/hostile.yaml"
HOSTILE = [
    'a"} or vector(1) #', "a\nb", "line\r\nbreak", "{{ .Foo }}", "{{", "}}", '{{ template "x" }}', "pl\u0430yback",
    "\uff50layback", "play\u200bback", "abc\u202edef", "a'b", "a: b", "- x", "&anchor", "*alias", "!!python/object",
    "#comment", "$(rm -rf /)", "${__user.login}", "<script>alert(1)</script>", "](javascript:alert(1))", "|", "\\",
    "%", "UPPER", "-lead", "trail-", "a" * 64, "", " ", "\t", "\x00", "\u00e9", "x) [y](z", "sum(rate(x[5m]))",
]
hostile = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=24),
                    st.tuples(st.sampled_from(HOSTILE), st.text(max_size=8)).map("".join))


def spec_docs(*, service: str = "checkout", slo: str = "checkout-availability", sli: str = "checkout-errors",
              labels: dict[str, Any] | None = None, annotations: dict[str, Any] | None = None,
              description: Any = "Checkouts succeed", target: Any = 0.999, objective: dict[str, Any] | None = None,
              window: Any = "30d", spec_extra: dict[str, Any] | None = None, display: Any = "availability",
              policy: Any = None) -> list[dict[str, Any]]:
    """A Service and an SLO with an inline SLI, every part replaceable."""
    slo_spec: dict[str, Any] = {
        "description": description, "service": service,
        "indicator": {"metadata": {"name": sli}, "spec": {"ratioMetric": {
            "counter": True, "bad": {"metricSource": {"type": "playback", "spec": {"field": "errors"}}},
            "total": {"metricSource": {"type": "playback", "spec": {"field": "total"}}}}}},
        "timeWindow": [{"duration": window, "isRolling": True}], "budgetingMethod": "Occurrences",
        "objectives": [objective if objective is not None else {"displayName": display, "target": target}],
        **(spec_extra or {}),
    }
    if policy is not None:
        slo_spec["alertPolicies"] = [policy]
    meta: dict[str, Any] = {"name": slo}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    return [{"apiVersion": "openslo/v1", "kind": "Service", "metadata": {"name": service}},
            {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": meta, "spec": slo_spec}]


def dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


def problems(text: str) -> list[Any]:
    with pytest.raises(SpecError) as info:
        parse_specs([(FILE, text)])
    return info.value.problems


def valid_name(value: Any) -> bool:
    return isinstance(value, str) and bool(c.NAME_RE.match(value))


# ---- hostile names, one place at a time ------------------------------------------------------------

NAME_PLACES = {
    "the SLO name": (lambda v: spec_docs(slo=v), "metadata.name", "SLO"),
    "the service of the SLO": (lambda v: spec_docs(service=v), "spec.service", "SLO"),
    "the inline SLI name": (lambda v: spec_docs(sli=v), "spec.indicator.metadata.name", "SLO"),
    "a label value": (lambda v: spec_docs(labels={"team": v}), "metadata.labels.team", "SLO"),
    "a label key": (lambda v: spec_docs(labels={v: "payments"}), "metadata.labels", "SLO"),
    "an alert policy reference": (lambda v: spec_docs(policy=v), "spec.alertPolicies[0]", "SLO"),
}
HOSTILE_NAMES = ['a"} or vector(1) #', "a\nb", "{{ .Foo }}", "pl\u0430yback-api", "\uff50layback", "play\u200bback",
                 "abc\u202edef", "UPPER", "a" * 64, "-lead", "with space", "a.b", "a_b"]


@pytest.mark.parametrize("place", sorted(NAME_PLACES))
@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n)[:24] for n in HOSTILE_NAMES])
def test_a_hostile_name_is_refused_at_load_with_file_field_and_line(place: str, name: str) -> None:
    build, field, kind = NAME_PLACES[place]
    if place == "a label value" and c.LABEL_VALUE_RE.match(name):
        pytest.skip("a valid label value (labels allow '.', '_' and uppercase)")
    if place == "a label key" and re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", name):
        pytest.skip("a valid label key")
    text = dump(build(name))
    found = problems(text)
    ours = [p for p in found if p.file == FILE and p.field.startswith(field) and p.line > 0]
    assert ours, f"no problem names {field}: {[str(p) for p in found]}"
    assert all(str(p).isprintable() for p in found), [str(p) for p in found]
    assert any(p.document.startswith(kind) or p.document.startswith("#") for p in ours)


SPEC_PROBLEMS = {
    "target 1 (no error budget)": ({"target": 1}, "spec.objectives[0].target"),
    "target 0": ({"target": 0}, "spec.objectives[0].target"),
    "target above 1": ({"target": 1.5}, "spec.objectives[0].target"),
    "negative target": ({"target": -0.1}, "spec.objectives[0].target"),
    "target NaN": ({"target": float("nan")}, "spec.objectives[0].target"),
    "target infinite": ({"target": float("inf")}, "spec.objectives[0].target"),
    "target as a string": ({"target": "0.999"}, "spec.objectives[0].target"),
    "targetPercent 100": ({"objective": {"targetPercent": 100}}, "spec.objectives[0].targetPercent"),
    "target and targetPercent": ({"objective": {"target": 0.99, "targetPercent": 99}}, "spec.objectives[0]"),
    "an unknown objective field": ({"objective": {"target": 0.99, "tagret": 0.9}}, "spec.objectives[0].tagret"),
    "an unknown spec field": ({"spec_extra": {"objectivs": []}}, "spec.objectivs"),
    "a zero window": ({"window": "0s"}, "spec.timeWindow[0].duration"),
    "a window over 90d": ({"window": "100d"}, "spec.timeWindow[0].duration"),
    "a window under 1h": ({"window": "59m"}, "spec.timeWindow[0].duration"),
    "a window in no unit": ({"window": "30x"}, "spec.timeWindow[0].duration"),
    "a window off the 10s step": ({"window": "1h5s"}, "spec.timeWindow[0].duration"),
    "a runbook that is not http(s)": ({"annotations": {"slo-stream/runbook": "javascript:alert(1)"}},
                                      "metadata.annotations.slo-stream/runbook"),
    "a runbook with spaces": ({"annotations": {"slo-stream/runbook": "https://x.example/a b"}},
                              "metadata.annotations.slo-stream/runbook"),
    "an unknown slo-stream annotation": ({"annotations": {"slo-stream/runbok": "https://x.example"}},
                                         "metadata.annotations.slo-stream/runbok"),
    "a group-by injection": ({"annotations": {"slo-stream/group-by": "cluster,region) or vector(1"}},
                             "metadata.annotations.slo-stream/group-by"),
    "min-events below zero": ({"annotations": {"slo-stream/min-events": "-1"}},
                              "metadata.annotations.slo-stream/min-events"),
    "a reserved label": ({"labels": {"severity": "page"}}, "metadata.labels.severity"),
    "an inline policy that fires never": ({"policy": {"kind": "AlertPolicy", "metadata": {"name": "p"},
                                                      "spec": {"conditions": []}}}, "spec.alertPolicies[0]"),
    "a burn threshold below zero": ({"policy": {"kind": "AlertPolicy", "metadata": {"name": "p"}, "spec": {
        "conditions": [{"kind": "AlertCondition", "metadata": {"name": "c"}, "spec": {
            "severity": "page", "condition": {"kind": "burnrate", "op": "gt", "threshold": -1,
                                              "lookbackWindow": "1h", "alertAfter": "5m"}}}]}}},
        "spec.alertPolicies[0]"),
    "a short window longer than the long one": ({"policy": {"kind": "AlertPolicy", "metadata": {"name": "p"}, "spec": {
        "conditions": [{"kind": "AlertCondition", "metadata": {"name": "c"}, "spec": {
            "severity": "page", "condition": {"kind": "burnrate", "op": "gt", "threshold": 14.4,
                                              "lookbackWindow": "5m", "alertAfter": "1h"}}}]}}},
        "spec.alertPolicies[0]"),
}


@pytest.mark.parametrize("case", sorted(SPEC_PROBLEMS))
def test_invalid_specs_are_refused_at_load_with_file_and_field(case: str) -> None:
    change, field = SPEC_PROBLEMS[case]
    found = problems(dump(spec_docs(**change)))
    assert any(p.file == FILE and p.field.startswith(field) and p.line > 0 for p in found), \
        [str(p) for p in found]


def test_a_yaml_document_that_is_not_a_mapping_or_not_yaml_is_a_problem_not_a_traceback() -> None:
    for text in ("- just\n- a list\n", "kind: SLO\nmetadata: {name: [unclosed\n", "\x00\x01",
                 "!!python/object:os.system x"):
        found = problems(text)
        assert found and all(p.file == FILE and p.field for p in found), text


# ---- the property: refused, or generated safely ----------------------------------------------------

def _actions(text: str) -> list[str]:
    """The bodies of the Go-template actions in ``text`` (quoted strings inside an action skipped)."""
    out = []
    i = 0
    while (j := text.find("{{", i)) >= 0:
        k = j + 2
        while not text.startswith("}}", k):
            if k >= len(text):
                raise AssertionError(f"unterminated template action in {text!r}")
            if text[k] == '"':
                k += 1
                while text[k] != '"':
                    k += 2 if text[k] == "\\" else 1
            elif text[k] == "`":
                k = text.index("`", k + 1)
            k += 1
        out.append(text[j + 2:k].strip())
        i = k + 2
    return out


# The template actions the generator writes itself: escapes, values, and labels whose values are names it
# validated (the series labels; SloStreamSeriesLimit's slo and service, from the workers' own metric).
OWN_ACTIONS = {'"{{"', '"}}"', "$value | humanizePercentage", "$value | humanize", "$labels.slo", "$labels.service",
               *(f"$labels.{d}" for d in c.DIMENSIONS)}


def _untemplate(text: str) -> str:
    """What Go prints for the escapes the generator writes around free text."""
    return text.replace('{{ "{{" }}', "{{").replace('{{ "}}" }}', "}}")


_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SAFE_LITERAL = re.compile(r"^[A-Za-z0-9_.:|*$=~-]*\Z")


def _check_promql(expr: str, where: str) -> None:
    for lit in _STRING.findall(expr):
        assert _SAFE_LITERAL.match(lit), f"{where}: a PromQL string literal carries {lit!r}: {expr}"
    outside = _STRING.sub('""', expr)
    assert "#" not in outside and outside.isascii(), f"{where}: {expr}"


def _cells(line: str) -> int:
    """Unescaped '|' of one markdown table row."""
    n, i = 0, 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        n += line[i] == "|"
        i += 1
    return n


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "expr" and isinstance(v, str)] + \
            [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def _markdown(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["options"]["content"]] if node.get("type") == "text" and "options" in node else []
        return found + [m for v in node.values() for m in _markdown(v)]
    if isinstance(node, list):
        return [m for v in node for m in _markdown(v)]
    return []


def check_generated(slos: list[Any]) -> dict[str, str]:
    """Generate everything from accepted SLOs and check it carries no hostile text unescaped."""
    files = alert_files(slos)
    rules = yaml.safe_load(files[RULES_FILE])
    yaml.safe_load(files[ALERTMANAGER_FILE])
    boards = {name: json.loads(text) for name, text in dashboard_files(slos).items()}
    by_name = {s.name: s for s in slos}
    for group in rules["groups"]:
        for rule in group["rules"]:
            _check_promql(rule["expr"], group["name"])
            for value in rule.get("labels", {}).values():
                assert c.LABEL_VALUE_RE.match(value) or c.NAME_RE.match(value), value
            for key, text in rule.get("annotations", {}).items():
                assert set(_actions(text)) <= OWN_ACTIONS, (key, text)
            if rule.get("alert") == ALERT_NAME:  # the burn alerts (not the streaming path's liveness)
                slo = by_name[rule["labels"]["sloth_slo"]]
                ann = rule["annotations"]
                assert _untemplate(ann.get("runbook", "")) == slo.runbook_url
                assert _untemplate(ann.get("dashboard", "")) == slo.dashboard_url
                assert _untemplate(ann["description"]).startswith(slo.description.rstrip("."))
    for name, board in boards.items():
        for expr in _exprs(board):
            _check_promql(expr, name)
        for md in _markdown(board):
            assert "<" not in md, f"{name}: raw HTML in markdown: {md}"
            for line in md.split("\n"):  # markdown ends lines at \n (and \r), not at \x1e or \u2028
                if line.startswith("|"):
                    assert _cells(line) == 7, f"{name}: the catalog row lost its shape: {line}"
    catalog = "\n".join(_markdown(boards[OVERVIEW_FILE]))
    for slo in slos:
        if slo.runbook_url:
            assert any(unquote(u) == unquote(slo.runbook_url)
                       for u in re.findall(r"\[runbook\]\(([^()\s]*)\)", catalog)), catalog
    return files


NAME_DEFAULTS = {"service": "checkout", "slo": "checkout-availability", "sli": "checkout-errors",
                 "label_key": "team", "label_value": "payments", "group_by": "cluster"}
no_space = hostile.map(lambda text: re.sub(r"\s", "", text))


@settings(max_examples=200, deadline=None, derandomize=True, database=None, phases=[Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow])
@given(spoiled=st.sets(st.sampled_from(sorted(NAME_DEFAULTS)), max_size=2),
       values=st.fixed_dictionaries({k: hostile for k in NAME_DEFAULTS}), description=hostile, display=hostile,
       runbook=st.one_of(no_space, hostile), dashboard=st.one_of(st.just(""), no_space), foreign=hostile)
def test_hostile_specs_are_refused_or_generated_without_hostile_text(
    spoiled: set[str], values: dict[str, str], description: str, display: str, runbook: str, dashboard: str,
    foreign: str,
) -> None:
    """Free text everywhere, and up to two hostile names: refused with the field, or generated safely."""
    v = {k: values[k] if k in spoiled else default for k, default in NAME_DEFAULTS.items()}
    annotations = {"slo-stream/runbook": "https://runbooks.example.com/" + runbook,
                   "slo-stream/group-by": v["group_by"], "team.example/owner": foreign}
    if dashboard:
        annotations["slo-stream/dashboard"] = "https://grafana.example.com/d/" + dashboard
    text = dump(spec_docs(service=v["service"], slo=v["slo"], sli=v["sli"], labels={v["label_key"]: v["label_value"]},
                          annotations=annotations, description=description, display=display))
    try:
        slos = parse_specs([(FILE, text)])
    except SpecError as exc:
        event("refused")
        assert exc.problems
        for p in exc.problems:
            assert p.file == FILE and p.field and p.message, p
            # One problem, one line: a name with a line break must not forge more of them.
            assert str(p).isprintable(), str(p)
        fields = {p.field for p in exc.problems}
        for key, field in (("slo", "metadata.name"), ("service", "spec.service"),
                           ("sli", "spec.indicator.metadata.name")):
            if not valid_name(v[key]):
                assert any(f.startswith(field) for f in fields), (v[key], field, [str(p) for p in exc.problems])
        return
    event("accepted")
    for key in ("service", "slo", "sli"):
        assert valid_name(v[key]), f"{v[key]!r} accepted as a name"
    check_generated(slos)


def test_a_hostile_but_valid_spec_passes_promtool_and_amtool(tmp_path: Path) -> None:
    for tool in ("promtool", "amtool"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages prometheus, prometheus-alertmanager)")
    text = dump(spec_docs(
        description='Checkouts {{ template "x" }} }} {{- .Foo -}} | <img src=x onerror=alert(1)> \\ ${__user.login}',
        annotations={"slo-stream/runbook": "https://x.example/a)[click](javascript:alert(1)|{{.ExternalURL}}",
                     "slo-stream/dashboard": 'https://x.example/{{"}}"}}%7B%7B'}))
    slos = parse_specs([(FILE, text)])
    files = check_generated(slos)
    (tmp_path / "rules.yaml").write_text(files[RULES_FILE])
    (tmp_path / "am.yaml").write_text(files[ALERTMANAGER_FILE])
    out = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(["amtool", "check-config", str(tmp_path / "am.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- the real CLI ----------------------------------------------------------------------------------

def cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLO_STREAM_", "KAFKA_"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "streams", *args], env=full, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout_s)


def hostile_spec_dir(tmp_path: Path) -> tuple[Path, str]:
    specs = tmp_path / "specs"
    specs.mkdir()
    text = dump(spec_docs(slo='a"} or vector(1) #', labels={"team": "{{ .Foo }}"}, target=1.0))
    (specs / "hostile.yaml").write_text(text)
    return specs, text


def assert_problem_lines(output: str, path: Path, prefix: str = "error: ") -> None:
    """One line per problem: ``[error: ]file:line: document: field: message``."""
    lines = [ln for ln in output.splitlines() if ln.startswith(f"{prefix}{path}:")]
    for field in ("metadata.name", "metadata.labels.team", "spec.objectives[0].target"):
        assert any(re.match(rf"{re.escape(prefix + str(path))}:\d+: .*: {re.escape(field)}: ", ln) for ln in lines), \
            (field, output)
    assert "Traceback" not in output


def test_validate_and_generate_refuse_a_hostile_spec_and_write_nothing(tmp_path: Path) -> None:
    specs, _ = hostile_spec_dir(tmp_path)
    out = cli("validate", str(specs))
    assert out.returncode == 1
    assert_problem_lines(out.stderr, specs / "hostile.yaml", prefix="")
    rules, boards, rule_object = tmp_path / "rules", tmp_path / "boards", tmp_path / "deploy" / "prometheusrule.yaml"
    out = cli("generate", "--specs", str(specs), "--out", str(rules), "--dashboards-out", str(boards),
              "--prometheusrule-out", str(rule_object))
    assert out.returncode == 1
    assert_problem_lines(out.stderr, specs / "hostile.yaml")
    assert not rules.exists() and not boards.exists() and not rule_object.parent.exists()


@pytest.mark.integration
def test_a_worker_refuses_a_hostile_spec_before_it_consumes_anything(kafka_bootstrap: str, tmp_path: Path) -> None:
    specs, _ = hostile_spec_dir(tmp_path)
    dep = Deployment.create(kafka_bootstrap, tmp_path, partitions=1)
    out = cli("worker", env={**dep.env, "SLO_STREAM_SPECS": str(specs)}, timeout_s=120)
    assert out.returncode == 1
    assert_problem_lines(out.stderr, specs / "hostile.yaml")


BAD_SETTINGS = [
    ("SLO_STREAM_PARTITIONS", "0"), ("SLO_STREAM_PARTITIONS", "four"), ("SLO_STREAM_STEP", "15"),
    ("SLO_STREAM_ALLOWED_LATENESS", "2h"), ("SLO_STREAM_APP_ID", "Bad App"), ("SLO_STREAM_WEB_PORT", "70000"),
    ("SLO_STREAM_GATE_BUDGET_FLOOR", "nan"), ("SLO_STREAM_PAGERDUTY_URL", "http://pagerduty.example.com"),
    ("SLO_STREAM_CANONICAL_URL", "http://w1:6066/path"), ("SLO_STREAM_ENFORCE", "kill"),
    ("SLO_STREAM_SESSION_TIMEOUT", "nan"), ("SLO_STREAM_HEARTBEAT_INTERVAL", "30"), ("SLO_STREAM_BATCH_WITHIN", "-1"),
    ("SLO_STREAM_FETCH_MAX_BYTES", "0"), ("SLO_STREAM_MAX_SERIES_PER_SLO", "0"), ("SLO_STREAM_STALE_AFTER", "0"),
    ("SLO_STREAM_REPLICATION_FACTOR", "0"), ("SLO_STREAM_TOPIC_PLAYBACK", "playback events"),
    ("SLO_STREAM_TOPIC_DEAD_LETTER", "../dead"), ("SLO_STREAM_WEB_HOST", "0.0.0.0 evil"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost:notaport"), ("SLO_STREAM_KUBE_NAMESPACES", "a,B C"),
]


@pytest.mark.parametrize(("var", "value"), BAD_SETTINGS, ids=[f"{v}={x!r}" for v, x in BAD_SETTINGS])
def test_a_bad_setting_fails_settings_with_the_variable_name(var: str, value: str) -> None:
    out = cli("settings", env={var: value})
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith(f"error: {var}=") and "Traceback" not in out.stderr, out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize(("var", "value"), [("SLO_STREAM_SESSION_TIMEOUT", "-1"),
                                             ("SLO_STREAM_TOPIC_PLAYBACK", "bad topic"),
                                             ("SLO_STREAM_MAX_SERIES_PER_SLO", "-5")])
def test_a_bad_setting_stops_the_worker_before_it_starts_anything(var: str, value: str) -> None:
    # No KAFKA_BOOTSTRAP_SERVERS: had the settings passed, the worker would start an embedded broker.
    out = cli("worker", env={var: value}, timeout_s=60)
    assert out.returncode == 2 and f"error: {var}=" in out.stderr, out.stderr
    assert "embedded broker" not in out.stdout + out.stderr


@pytest.mark.integration
@pytest.mark.parametrize("how", ["too short", "file missing", "file empty", "both set"])
def test_a_refused_gate_token_stops_the_worker_without_echoing_it(kafka_bootstrap: str, tmp_path: Path,
                                                                  how: str) -> None:
    secret = "sh0rt-Secret"
    env = {"too short": {"SLO_STREAM_GATE_TOKEN": secret},
           "file missing": {"SLO_STREAM_GATE_TOKEN_FILE": str(tmp_path / "nope")},
           "file empty": {"SLO_STREAM_GATE_TOKEN_FILE": str(tmp_path / "empty")},
           "both set": {"SLO_STREAM_GATE_TOKEN": secret * 2, "SLO_STREAM_GATE_TOKEN_FILE": str(tmp_path / "empty")}}
    (tmp_path / "empty").write_text("\n")
    dep = Deployment.create(kafka_bootstrap, tmp_path, partitions=1)
    out = cli("worker", env={**dep.env, **env[how]}, timeout_s=120)
    assert out.returncode == 2 and "error: SLO_STREAM_GATE_TOKEN" in out.stderr, out.stderr
    assert secret not in out.stdout + out.stderr
