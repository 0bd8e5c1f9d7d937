"""SLOs -> the Alertmanager config of the fallback path, as data: pages and tickets to PagerDuty.

The fallback pages only where the streaming path cannot (docs/fallback.md): an inhibit rule mutes
:data:`~streams.render.promql.ALERT_NAME` while :data:`~streams.render.promql.HEARTBEAT_ALERT` fires with
the same series labels (``slo``, ``service``, ``cluster``, ``region``, ``platform``), and the heartbeats
themselves go to a receiver without integrations (:data:`RECEIVER_NONE`). The streaming path's own
:data:`~streams.render.promql.DOWN_ALERT` carries ``severity: page`` and pages like a burn.

Pure: :mod:`streams.render.writer` serialises what :func:`alertmanager_config` returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.core.conventions import DIMENSIONS, L_SEVERITY, SERIES_LABELS
from streams.core.model import Severity, Slo
from streams.render.promql import (
    A_DASHBOARD,
    A_DESCRIPTION,
    A_RUNBOOK,
    A_SUMMARY,
    ALERT_NAME,
    HEARTBEAT_ALERT,
    check_slo,
    promql_string,
)

RECEIVER_PAGE = "pagerduty-page"
RECEIVER_TICKET = "pagerduty-ticket"
RECEIVER_NONE = "streaming-path-heartbeat"  # no integration: heartbeats only feed the inhibition
DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
DEFAULT_SECRETS_DIR = "/etc/alertmanager/secrets"
# Alertmanager groups one alert per SLO series and severity (severities take different routes).
AM_GROUP_BY = ("alertname", "slo", *DIMENSIONS)
_RECEIVERS = {Severity.PAGE: RECEIVER_PAGE, Severity.TICKET: RECEIVER_TICKET}
_PAGERDUTY_SEVERITY = {Severity.PAGE: "critical", Severity.TICKET: "warning"}
# (group_wait, group_interval, repeat_interval): a page goes out at once, tickets can wait a little.
_TIMINGS = {Severity.PAGE: ("10s", "1m", "4h"), Severity.TICKET: ("1m", "5m", "24h")}


def alertmanager_config(
    slos: Iterable[Slo],
    *,
    pagerduty_url: str = DEFAULT_PAGERDUTY_URL,
    secrets_dir: str = DEFAULT_SECRETS_DIR,
) -> dict[str, Any]:
    """The Alertmanager config as data: ``severity=page`` -> PagerDuty (critical), ``ticket`` ->
    PagerDuty (warning), the heartbeats -> nowhere; burn alerts muted where a heartbeat fires.

    The routing keys are read from ``{secrets_dir}/pagerduty-page`` and ``{secrets_dir}/pagerduty-ticket``
    (``routing_key_file``, Alertmanager >= 0.25); ``pagerduty_url`` is the Events API v2 endpoint.
    Alerts of any other severity take the ticket receiver rather than being dropped. The SLOs are only
    checked: the routes are the same for every SLO.
    """
    for slo in slos:
        check_slo(slo)
    for text, what in ((pagerduty_url, "pagerduty_url"), (secrets_dir, "secrets_dir")):
        if not text or any(c.isspace() or c in "{}" for c in text):
            raise ValueError(f"{what} must be non-empty, without spaces or braces: {text!r}")
    heartbeat = {"receiver": RECEIVER_NONE, "matchers": [f"alertname={promql_string(HEARTBEAT_ALERT)}"]}
    routes = [heartbeat] + [
        {
            "receiver": _RECEIVERS[sev],
            "matchers": [f"{L_SEVERITY}={promql_string(sev.value)}"],
            "group_wait": _TIMINGS[sev][0],
            "group_interval": _TIMINGS[sev][1],
            "repeat_interval": _TIMINGS[sev][2],
        }
        for sev in Severity
    ]
    return {
        "route": {
            "receiver": RECEIVER_TICKET,
            "group_by": list(AM_GROUP_BY),
            "group_wait": _TIMINGS[Severity.TICKET][0],
            "group_interval": _TIMINGS[Severity.TICKET][1],
            "repeat_interval": _TIMINGS[Severity.TICKET][2],
            "routes": routes,
        },
        "inhibit_rules": [
            {
                "source_matchers": [f"alertname={promql_string(HEARTBEAT_ALERT)}"],
                "target_matchers": [f"alertname={promql_string(ALERT_NAME)}"],
                "equal": list(SERIES_LABELS),
            }
        ],
        "receivers": [
            *(_receiver(sev, pagerduty_url=pagerduty_url, secrets_dir=secrets_dir) for sev in Severity),
            {"name": RECEIVER_NONE},
        ],
    }


def _receiver(severity: Severity, *, pagerduty_url: str, secrets_dir: str) -> dict[str, Any]:
    name = _RECEIVERS[severity]

    def common(key: str) -> str:
        return f"{{{{ .CommonAnnotations.{key} }}}}"

    def link(key: str) -> dict[str, str]:
        # A link needs an href: without the annotation, link to Alertmanager itself and say so.
        present = f"{{{{ if .CommonAnnotations.{key} }}}}"
        return {
            "href": f"{present}{common(key)}{{{{ else }}}}{{{{ .ExternalURL }}}}{{{{ end }}}}",
            "text": f"{present}{key}{{{{ else }}}}Alertmanager (no {key}){{{{ end }}}}",
        }

    details = {label: f"{{{{ .CommonLabels.{label} }}}}" for label in (*SERIES_LABELS, L_SEVERITY)}
    details |= {
        A_DESCRIPTION: common(A_DESCRIPTION),
        A_RUNBOOK: common(A_RUNBOOK),
        A_DASHBOARD: common(A_DASHBOARD),
        "firing": '{{ template "pagerduty.default.instances" .Alerts.Firing }}',
        "resolved": '{{ template "pagerduty.default.instances" .Alerts.Resolved }}',
        "num_firing": "{{ .Alerts.Firing | len }}",
        "num_resolved": "{{ .Alerts.Resolved | len }}",
    }
    pagerduty = {
        "routing_key_file": f"{secrets_dir.rstrip('/')}/{name}",
        "url": pagerduty_url,
        "send_resolved": True,
        "severity": _PAGERDUTY_SEVERITY[severity],
        "class": "slo-burn",
        "component": "{{ .CommonLabels.service }}",
        "group": "{{ .CommonLabels.slo }}",
        "description": (
            f"{{{{ if .CommonAnnotations.{A_SUMMARY} }}}}{common(A_SUMMARY)}"
            '{{ else }}{{ template "pagerduty.default.description" . }}{{ end }}'
        ),
        "details": details,
        "links": [link(A_RUNBOOK), link(A_DASHBOARD)],
    }
    return {"name": name, "pagerduty_configs": [pagerduty]}
