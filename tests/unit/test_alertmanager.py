"""Generated Alertmanager config (streams.render.alertmanager): pages and tickets to PagerDuty."""

from __future__ import annotations

from streams.render.alertmanager import alertmanager_config
from tests import factories


def test_alertmanager_routes_page_and_ticket_to_pagerduty() -> None:
    config = alertmanager_config(
        [factories.slo()], pagerduty_url="http://127.0.0.1:8080/v2/enqueue", secrets_dir="/s/"
    )
    route = config["route"]
    assert route["group_by"] == ["alertname", "slo", "cluster", "region", "platform"]
    assert [(r["matchers"], r["receiver"]) for r in route["routes"]] == [
        (['alertname="SloStreamHeartbeat"'], "streaming-path-heartbeat"),
        (['severity="page"'], "pagerduty-page"),
        (['severity="ticket"'], "pagerduty-ticket"),
    ]
    receivers = {r["name"]: r["pagerduty_configs"][0] for r in config["receivers"] if "pagerduty_configs" in r}
    assert receivers["pagerduty-page"]["severity"] == "critical"
    assert receivers["pagerduty-ticket"]["severity"] == "warning"
    for name, pd in receivers.items():
        assert pd["routing_key_file"] == f"/s/{name}"
        assert pd["url"] == "http://127.0.0.1:8080/v2/enqueue"
        assert pd["send_resolved"] is True
        assert "{{ .CommonAnnotations.runbook }}" in pd["links"][0]["href"]
        assert pd["details"]["dashboard"] == "{{ .CommonAnnotations.dashboard }}"


def test_the_default_pagerduty_endpoint_and_key_files() -> None:
    pd = alertmanager_config([factories.slo()])["receivers"][0]["pagerduty_configs"][0]
    assert pd["url"] == "https://events.pagerduty.com/v2/enqueue"
    assert pd["routing_key_file"] == "/etc/alertmanager/secrets/pagerduty-page"


def test_burn_alerts_are_muted_per_series_while_the_streaming_path_heartbeat_fires() -> None:
    config = alertmanager_config([factories.slo()])
    assert config["inhibit_rules"] == [{
        "source_matchers": ['alertname="SloStreamHeartbeat"'],
        "target_matchers": ['alertname="SloErrorBudgetBurn"'],
        # The series labels, all of them: a dead worker un-mutes exactly the series it evaluated.
        "equal": ["slo", "service", "cluster", "region", "platform"],
    }]
    # The heartbeat reaches no one: a receiver without integrations, matched before any severity route.
    assert {"name": "streaming-path-heartbeat"} in config["receivers"]
    assert config["route"]["routes"][0] == {
        "receiver": "streaming-path-heartbeat", "matchers": ['alertname="SloStreamHeartbeat"']}
