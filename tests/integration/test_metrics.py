"""GET /metrics on a real worker process: SLO series and pipeline health during and after the outage
scenario; and a real Prometheus scraping it."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from streams.adapters.processes import free_port, stop_group
from streams.core import conventions as c
from tests.integration.harness import Deployment
from tests.integration.test_spine import BAD_MESSAGES, outage_scenario

pytestmark = pytest.mark.integration

SLO = "playback-api-availability"
OUTAGE_DIMS = {"cluster": "eu-west-1", "region": "eu-west", "platform": "kubernetes"}


def scrape(port: int) -> list[Sample]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain"), resp.headers["Content-Type"]
        body = resp.read().decode()
    return [s for fam in text_string_to_metric_families(body) for s in fam.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the one sample ``name`` whose labels include ``labels``; None if there is none."""
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def poll(port: int, until: Callable[[list[Sample]], bool], *, timeout_s: float, what: str,
         proc: subprocess.Popen[bytes], log: Callable[[], str]) -> list[Sample]:
    deadline = time.time() + timeout_s
    samples: list[Sample] = []
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{log()[-4000:]}")
        try:
            samples = scrape(port)
        except (urllib.error.URLError, ConnectionError):
            samples = []  # the web server is not up yet
        if samples and until(samples):
            return samples
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last scrape:\n"
                         + "\n".join(f"{s.name}{s.labels} {s.value}" for s in samples if "bucket" not in s.name)
                         + f"\n{log()[-4000:]}")


def test_metrics_show_the_outage_series_the_page_and_the_pipeline_counts(kafka_bootstrap: str,
                                                                          tmp_path: Path) -> None:
    dep = Deployment.create(kafka_bootstrap, tmp_path)
    scenario, outage = outage_scenario()
    produced = list(scenario.messages())
    # First up to five minutes into the outage (event time stops there: the page is firing), then the rest.
    cut = scenario.start_ts + outage.start_s + 300
    first = [(k, v) for ts, k, v in produced if ts < cut]
    rest = [(k, v) for ts, k, v in produced if ts >= cut]
    for i, bad in enumerate(BAD_MESSAGES.values()):
        first.insert(100 + 50 * i, bad)
    records = [r for _, _, v in produced for r in orjson.loads(v)["records"]]
    port = free_port()
    series = {"slo": SLO, **OUTAGE_DIMS}

    def page(samples: list[Sample]) -> float | None:
        return value(samples, c.M_ALERT_FIRING, severity="page", **series)

    with dep.worker("w1", SLO_STREAM_WEB_PORT=str(port)) as proc:
        def wait(until: Callable[[list[Sample]], bool], what: str) -> list[Sample]:
            return poll(port, until, timeout_s=120, what=what, proc=proc, log=dep.log_text)

        dep.produce(first)
        during = wait(lambda s: page(s) == 1, "the page to fire")
        burn_5m = value(during, c.M_BURN_RATE, window="5m", **series)
        assert burn_5m is not None and burn_5m > 14.4
        budget = value(during, c.M_BUDGET_REMAINING, **series)
        assert budget is not None and budget < 1
        assert value(during, c.M_ALERT_FIRING, severity="page", slo=SLO, cluster="us-east-1") == 0
        last_eval = value(during, c.M_LAST_EVALUATION, **series)
        assert last_eval is not None and scenario.start_ts + outage.start_s < last_eval < cut

        dep.produce(rest)
        after = wait(lambda s: value(s, c.M_RECORDS) == len(records) and page(s) == 0,
                     "every record counted and the page resolved")
        # The evaluations trail the newest record by the allowed lateness; the counters do not.
        time.sleep(0.5)
        after = scrape(port)

    log = dep.log_text()
    # Per series, the cumulative counters are exactly the scenario's sums (one worker, no restart).
    for cluster, region, platform in scenario.placements:
        mine = [r for r in records if r["service"] == "playback-api" and r["cluster"] == cluster]
        labels = {"slo": SLO, "service": "playback-api", "cluster": cluster, "region": region,
                  "platform": platform}
        assert value(after, c.M_SLI_EVENTS, **labels) == sum(r["total"] for r in mine), (labels, log[-3000:])
        assert value(after, c.M_SLI_BAD_EVENTS, **labels) == sum(r["errors"] for r in mine), labels
    # Every latency was under the 500 ms threshold: counted, none bad.
    lat = {"slo": "playback-api-latency", **OUTAGE_DIMS}
    assert value(after, c.M_SLI_BAD_EVENTS, **lat) == 0
    assert value(after, c.M_SLI_EVENTS, **lat) == sum(r["total"] for r in records if r["service"] == "playback-api"
                                                       and r["cluster"] == "eu-west-1")
    assert value(after, c.M_OBJECTIVE, slo=SLO, service="playback-api") == 0.999
    assert value(after, c.M_RECORDS) == len(records)
    assert value(after, c.M_MESSAGES) == len(first) + len(rest)
    for reason in BAD_MESSAGES:
        assert value(after, c.M_DEAD_LETTERS, reason=reason) == 1, reason
    assert value(after, c.M_DEAD_LETTERS, reason=c.REASON_LATE) is None  # nothing late in this scenario
    evaluations = value(after, c.M_EVALUATIONS)
    assert evaluations is not None and evaluations > 0
    assert value(after, c.M_ASSIGNED_PARTITIONS) == dep.settings.partitions
    assert value(after, c.M_OFFSET_REREADS) is not None
    # The state held: at least one level-0 chunk per series (122 int64 values each), plus meta records.
    n_series = len([s for s in after if s.name == c.M_LAST_EVALUATION])
    entries, size = value(after, c.M_STATE_ENTRIES), value(after, c.M_STATE_BYTES)
    assert n_series > 0 and entries is not None and size is not None
    assert entries >= n_series and size >= n_series * 122 * 8, (n_series, entries, size)
    lags = [s for s in after if s.name == c.M_CONSUMER_LAG]
    assert lags and all(s.value == 0 for s in lags), lags
    batches = value(after, c.M_BATCH_SECONDS + "_count")
    evals = value(after, c.M_EVALUATION_SECONDS + "_count")
    assert batches is not None and batches > 0 and evals == batches
    # The notifier's counters are served by the notifier process, not by workers.
    assert value(after, c.M_NOTIFIER_DELIVERIES) is None
    assert {s.labels[c.L_WINDOW] for s in after if s.name == c.M_BURN_RATE} >= {"5m", "30m", "1h", "6h", "1d", "3d"}


def test_a_real_prometheus_scrapes_the_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    dep = Deployment.create(kafka_bootstrap, tmp_path)
    scenario, outage = outage_scenario()
    cut = scenario.start_ts + outage.start_s + 300
    port, prom_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: slo-stream\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n"
    )
    prom_log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    with dep.worker("w1", SLO_STREAM_WEB_PORT=str(port)) as proc:
        dep.produce([(k, v) for ts, k, v in scenario.messages() if ts < cut])
        prom = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=prom_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            def query(q: str) -> list[Any]:
                url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
                with urllib.request.urlopen(url, timeout=5) as resp:
                    body = orjson.loads(resp.read())
                assert body["status"] == "success", body
                return list(body["data"]["result"])

            deadline = time.time() + 90
            result: list[Any] = []
            while time.time() < deadline:
                assert proc.poll() is None, f"worker exited:\n{dep.log_text()[-4000:]}"
                assert prom.poll() is None, (tmp_path / "prometheus.log").read_text(errors="replace")[-4000:]
                try:
                    result = query(f'{c.M_BURN_RATE}{{slo="{SLO}",cluster="eu-west-1",window="5m"}}')
                except (urllib.error.URLError, ConnectionError):
                    result = []  # Prometheus is still starting
                if result and float(result[0]["value"][1]) > 14.4:
                    break
                time.sleep(0.5)
            assert result, (tmp_path / "prometheus.log").read_text(errors="replace")[-4000:]
            assert float(result[0]["value"][1]) > 14.4, result
            assert result[0]["metric"]["service"] == "playback-api"
            assert len(query(c.M_BURN_RATE)) > 1
            assert [float(r["value"][1]) for r in query('up{job="slo-stream"}')] == [1.0]
            firing = query(f'{c.M_ALERT_FIRING}{{slo="{SLO}",cluster="eu-west-1",severity="page"}}')
            assert [float(r["value"][1]) for r in firing] == [1.0]
        finally:
            stop_group(prom)
            prom_log.close()
