"""The Prometheus rules as a prometheus-operator PrometheusRule (``monitoring.coreos.com/v1``), as data.

A PrometheusRule's ``spec`` has the rule file's shape (``groups:``), so the spec *is* the data of
:func:`streams.render.prometheus.prometheus_rules`: deploy/kubernetes/base installs exactly the rules
that promtool checks in alerts/_gen/prometheus-rules.yaml. Prometheus selects PrometheusRules by label:
an overlay adds the label its Prometheus selects on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

API_VERSION = "monitoring.coreos.com/v1"
KIND = "PrometheusRule"
NAME = "slo-stream-burn-rate"
LABELS = {"app.kubernetes.io/name": "slo-stream", "app.kubernetes.io/component": "alerting"}


def prometheus_rule(rules: Mapping[str, Any]) -> dict[str, Any]:
    """The PrometheusRule object whose ``spec`` is ``rules`` (a rule file's data, ``{"groups": [...]}``)."""
    if list(rules) != ["groups"]:
        raise ValueError(f"a rule file's data has one key, groups: not {sorted(rules)}")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": NAME, "labels": dict(LABELS)},
        "spec": dict(rules),
    }
