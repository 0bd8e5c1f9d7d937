"""Every file ``slo-stream generate`` writes, as text: each generator's data through :mod:`~streams.render.writer`.

- ``<out>/prometheus-rules.yaml``: :func:`streams.render.prometheus.prometheus_rules`;
- ``<out>/alertmanager.yaml``: :func:`streams.render.alertmanager.alertmanager_config`;
- ``<dashboards_out>/*.json``: :func:`streams.render.dashboards.dashboards`, and their ConfigMaps for
  kustomize (``<dashboards_out>/kustomization.yaml``, :func:`streams.render.kustomize.dashboards_kustomization`);
- ``<prometheusrule_out>``: :func:`streams.render.prometheusrule.prometheus_rule` of the same rules data.

Pure: :mod:`streams.adapters.generated` writes the :class:`Output` list to disk, or compares it with
what is there for ``--check``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from streams.core.model import Slo
from streams.render.alertmanager import DEFAULT_PAGERDUTY_URL, DEFAULT_SECRETS_DIR, alertmanager_config
from streams.render.dashboards import dashboards
from streams.render.kustomize import KUSTOMIZATION_FILE, dashboards_kustomization
from streams.render.prometheus import DEFAULT_LIVENESS, Liveness, prometheus_rules
from streams.render.prometheusrule import prometheus_rule
from streams.render.writer import json_file, yaml_file

RULES_FILE = "prometheus-rules.yaml"
ALERTMANAGER_FILE = "alertmanager.yaml"
DEFAULT_OUT = "alerts/_gen"
DEFAULT_DASHBOARDS_OUT = "dashboards/_gen"
DEFAULT_PROMETHEUSRULE_OUT = "deploy/kubernetes/base/prometheusrule.yaml"

_RULES_WHAT = "Prometheus recording and alerting rules: SLO burn-rate alerts (fallback path)."
_ALERTMANAGER_WHAT = "Alertmanager config: SLO burn-rate alerts to PagerDuty (fallback path)."
_PROMETHEUSRULE_WHAT = (
    "PrometheusRule (prometheus-operator): the SLO burn-rate rules of alerts/_gen/prometheus-rules.yaml."
)
_KUSTOMIZATION_WHAT = (
    "Kustomization: one ConfigMap per generated dashboard, labelled for the Grafana sidecar "
    "(deploy/kubernetes/base includes it)."
)
_PROMETHEUSRULE_NOTES = ("Prometheus selects PrometheusRules by label: add the label yours selects on in an overlay.",)


@dataclass(frozen=True)
class Output:
    """Generated files of one directory: name -> text. With ``owned``, the files of that glob in the
    directory are all ours, so one not among ``files`` is no longer generated (and goes)."""

    directory: PurePath
    files: Mapping[str, str]
    owned: str | None = field(default=None, kw_only=True)


def outputs(
    slos: Iterable[Slo],
    *,
    out: str = DEFAULT_OUT,
    dashboards_out: str = DEFAULT_DASHBOARDS_OUT,
    prometheusrule_out: str = DEFAULT_PROMETHEUSRULE_OUT,
) -> list[Output]:
    """Every generated file of ``slos``, by directory. Raises ValueError where a generator does."""
    slos = list(slos)
    rules = prometheus_rules(slos)
    rule_object = PurePath(prometheusrule_out)
    boards = dashboard_files(slos)
    return [
        Output(PurePath(out), {RULES_FILE: rules_file(rules), ALERTMANAGER_FILE: alertmanager_file(slos)}),
        # dashboards/_gen holds only generated dashboards: one no longer generated (a service gone) must go.
        Output(PurePath(dashboards_out), {**boards, KUSTOMIZATION_FILE: dashboards_kustomization_file(boards)},
               owned="*.json"),
        Output(rule_object.parent, {rule_object.name: prometheusrule_file(rules)}),
    ]


def alert_files(
    slos: Iterable[Slo],
    *,
    pagerduty_url: str = DEFAULT_PAGERDUTY_URL,
    secrets_dir: str = DEFAULT_SECRETS_DIR,
    liveness: Liveness = DEFAULT_LIVENESS,
) -> dict[str, str]:
    """The files of ``<out>`` (alerts/_gen): name -> text, for other PagerDuty endpoints, key files or
    liveness timings too."""
    slos = list(slos)
    return {
        RULES_FILE: rules_file(prometheus_rules(slos, liveness=liveness)),
        ALERTMANAGER_FILE: alertmanager_file(slos, pagerduty_url=pagerduty_url, secrets_dir=secrets_dir),
    }


def rules_file(rules: Mapping[str, Any]) -> str:
    """prometheus-rules.yaml of the rules data."""
    return yaml_file(rules, what=_RULES_WHAT)


def alertmanager_file(
    slos: Iterable[Slo], *, pagerduty_url: str = DEFAULT_PAGERDUTY_URL, secrets_dir: str = DEFAULT_SECRETS_DIR
) -> str:
    """alertmanager.yaml for PagerDuty at ``pagerduty_url``, routing keys in ``secrets_dir``."""
    return yaml_file(alertmanager_config(slos, pagerduty_url=pagerduty_url, secrets_dir=secrets_dir),
                     what=_ALERTMANAGER_WHAT)


def prometheusrule_file(rules: Mapping[str, Any]) -> str:
    """The PrometheusRule of the rules data (deploy/kubernetes/base/prometheusrule.yaml)."""
    return yaml_file(prometheus_rule(rules), what=_PROMETHEUSRULE_WHAT, notes=_PROMETHEUSRULE_NOTES)


def dashboard_files(slos: Iterable[Slo]) -> dict[str, str]:
    """The files of ``<dashboards_out>`` (dashboards/_gen): name -> JSON text."""
    return {name: json_file(board) for name, board in dashboards(slos).items()}


def dashboards_kustomization_file(boards: Iterable[str]) -> str:
    """``<dashboards_out>/kustomization.yaml``: the ConfigMaps of the dashboard files ``boards``."""
    return yaml_file(dashboards_kustomization(boards), what=_KUSTOMIZATION_WHAT)
