"""Correlation on the embedded broker with a real worker: each scenario and its expected ranking.

One worker evaluates five services at once, each telling one story:

- ``cart-api``: a bad rollout in eu-west-1 (blamed, with the CrashLoopBackOff storm of its new pods
  attached as evidence) while the same service also rolled out in us-east-1, which does not burn
  (not a suspect);
- ``search-api``: an outage while cart-api rolls out at the same moment (not blamed: no suspect);
- ``lyrics-api``: an outage with no rollout and only Normal events (no suspect);
- ``queue-api``: a rollout whose new revision carries the errors (revision evidence shown);
- ``radio-api``: no rollout, but probe failures reported by kubernetes-event-exporter (accepted,
  blamed as a warning suspect).
"""

from __future__ import annotations

import random
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.adapters.processes import free_port
from streams.core import conventions as c
from tests.integration.harness import Deployment, availability_specs, changelog_state

pytestmark = pytest.mark.integration

HOUR = 3600
SERVICES = ("cart-api", "search-api", "lyrics-api", "queue-api", "radio-api")
PLACEMENTS = (("eu-west-1", "eu-west", "kubernetes"), ("us-east-1", "us-east", "kubernetes"))
HEALTHY_S = 2 * HOUR
OUTAGE_S = 600



def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollout(ts: float, svc: str, cluster: str, revision: str, template_hash: str, tag: str,
            phase: str = "started") -> tuple[bytes, bytes]:
    body = {
        "schema_version": 1, "ts": ts, "cluster": cluster, "namespace": "shop", "deployment": svc,
        "service": svc, "revision": revision, "previous_revision": str(int(revision) - 1),
        "template_hash": template_hash, "previous_template_hash": "0a1b2c3d4e",
        "images": [f"registry.example.com/{svc}:{tag}"], "previous_images": [f"registry.example.com/{svc}:0.9.0"],
        "phase": phase, "replicas": {"desired": 4, "updated": 1, "ready": 4, "available": 4},
        "reason": None, "message": None, "migration": None,
    }
    return f"{cluster}/shop/{svc}".encode(), orjson.dumps(body)


def bridge_event(ts: float, cluster: str, pod: str, reason: str, count: int, kind: str = "Warning",
                 message: str = "Back-off restarting failed container") -> tuple[bytes, bytes]:
    """A core/v1 Event as our kube bridge publishes it (plus ``cluster``)."""
    body = {
        "schema_version": 1, "cluster": cluster, "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{pod}.17a{count}", "namespace": "shop", "uid": f"uid-{pod}-{reason}",
                     "resourceVersion": str(1000 + count)},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": "shop", "apiVersion": "v1"},
        "reason": reason, "message": message, "type": kind, "count": count,
        "firstTimestamp": rfc3339(ts - 30 * count), "lastTimestamp": rfc3339(ts),
        "source": {"component": "kubelet"},
    }
    return f"{cluster}/shop/Pod/{pod}".encode(), orjson.dumps(body)


def exporter_event(ts: float, cluster: str, pod: str, reason: str, count: int) -> tuple[bytes, bytes]:
    """What kubernetes-event-exporter's Kafka sink writes: key = Event UID, the core/v1 Event with
    ``clusterName`` and ``involvedObject`` extended by labels, annotations and ownerReferences."""
    uid = f"exp-{pod}-{reason}"
    body = {
        "metadata": {"name": f"{pod}.18b", "namespace": "shop", "uid": uid, "resourceVersion": "77",
                     "creationTimestamp": rfc3339(ts - 60)},
        "involvedObject": {
            "kind": "Pod", "namespace": "shop", "name": pod, "uid": f"pod-{pod}", "apiVersion": "v1",
            "labels": {"app": "radio-api", "pod-template-hash": "6b7c8d9e0f"},
            "annotations": {}, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                    "name": "radio-api-6b7c8d9e0f", "uid": "rs-1"}],
        },
        "reason": reason, "message": "Readiness probe failed: HTTP probe failed with statuscode: 503",
        "source": {"component": "kubelet", "host": "node-7"},
        "firstTimestamp": rfc3339(ts - 60), "lastTimestamp": rfc3339(ts), "count": count, "type": "Warning",
        "eventTime": None, "reportingComponent": "", "reportingInstance": "", "clusterName": cluster,
    }
    return uid.encode(), orjson.dumps(body)


def playback(start: int) -> list[tuple[bytes, bytes]]:
    """One message per service per 10 s; outages from HEALTHY_S for OUTAGE_S in eu-west-1."""
    rng = random.Random(11)
    onset = start + HEALTHY_S
    msgs = []
    for off in range(0, HEALTHY_S + OUTAGE_S, 10):
        ts = start + off
        for svc in SERVICES:
            recs: list[dict[str, Any]] = []
            for cluster, region, platform in PLACEMENTS:
                burning = cluster == "eu-west-1" and ts >= onset
                base = {"service": svc, "cluster": cluster, "region": region, "platform": platform}
                if svc == "queue-api" and cluster == "eu-west-1":
                    # The old revision stays healthy; from the rollout on, revision 42 takes 40 % of
                    # requests and fails half of them.
                    new_share = 40 if ts >= onset - 120 else 0
                    recs.append({**base, "ts": ts + rng.random() * 10, "total": 100 - new_share,
                                 "errors": 0, "revision": "41"})
                    if new_share:
                        recs.append({**base, "ts": ts + rng.random() * 10, "total": new_share,
                                     "errors": new_share // 2 if burning else 0, "revision": "42"})
                    continue
                recs.append({**base, "ts": ts + rng.random() * 10, "total": 100, "errors": 100 if burning else 0})
            msgs.append((svc.encode(), orjson.dumps({"schema_version": 1, "records": recs})))
    return msgs


def test_each_burn_is_blamed_on_the_right_rollout_or_on_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    specs = availability_specs(tmp_path / "specs", list(SERVICES), "a service of the correlation scenarios")
    dep = Deployment.create(kafka_bootstrap, tmp_path, SLO_STREAM_SPECS=str(specs), SLO_STREAM_ALLOWED_LATENESS="20")
    start = int(time.time()) // 60 * 60 - 3 * HOUR  # whole minutes: the revision counts are per minute
    onset = start + HEALTHY_S
    rollouts = [
        rollout(onset - 240, "cart-api", "eu-west-1", "12", "5f6d7c8b9a", "1.4.0"),
        rollout(onset - 200, "cart-api", "eu-west-1", "12", "5f6d7c8b9a", "1.4.0", phase="progressing"),
        rollout(onset - 360, "cart-api", "us-east-1", "12", "5f6d7c8b9a", "1.4.0"),
        rollout(onset - 120, "queue-api", "eu-west-1", "42", "7e8f9a0b1c", "2.0.0"),
        rollout(onset - 30, "checkout-web", "eu-west-1", "3", "1a2b3c4d5e", "3.1.0"),  # no SLO: ignored
    ]
    events = [bridge_event(onset + 60, "eu-west-1", f"cart-api-5f6d7c8b9a-{i:05d}", "BackOff", 4 + i)
              for i in range(8)]
    events += [bridge_event(onset + 30, "eu-west-1", "lyrics-api-9a8b7c6d5e-00001", "Pulled", 1, kind="Normal",
                            message="Container image already present on machine")]
    events += [exporter_event(onset + 45, "eu-west-1", f"radio-api-6b7c8d9e0f-{i:05d}", "Unhealthy", 20 + i)
               for i in range(3)]
    bad = [(b"eu-west-1/shop/x", orjson.dumps({"schema_version": 1, "phase": "started"})),
           (b"eu-west-1/shop/Pod/y", b"{not json")]

    port = free_port()
    with dep.worker(SLO_STREAM_WEB_PORT=str(port)) as proc:
        dep.produce(rollouts + bad[:1], topic=dep.settings.topic_k8s_rollouts)
        dep.produce(events + bad[1:], topic=dep.settings.topic_k8s_events)
        # The rollouts and warnings reach the worker's changes table before the traffic that burns
        # (live, minutes separate a rollout from its burn; a replay at full speed compresses them).
        deadline = time.time() + 60
        while time.time() < deadline:
            state = changelog_state(dep)
            cart = state.get("cart-api") or {}
            if (len(cart.get("r", {})) == 2 and len(cart.get("w", {})) == 8 and "queue-api" in state
                    and len((state.get("radio-api") or {}).get("w", {})) == 3):
                break
            assert proc.poll() is None, dep.log_text()
            time.sleep(0.3)
        else:
            raise AssertionError(f"changes never reached the table: {sorted(changelog_state(dep))}\n{dep.log_text()}")
        assert "lyrics-api" not in state, "a Normal event is not kept"
        assert "checkout-web" not in state, "a service without an SLO is not kept"

        dep.produce(playback(start))
        wanted = {f"{svc}-availability" for svc in SERVICES}

        def all_paged(alerts: list[dict[str, Any]]) -> bool:
            return wanted <= {a["slo"] for a in alerts if a["severity"] == "page" and a["state"] == "firing"}

        alerts = dep.consume(dep.settings.topic_alerts, until=all_paged, timeout_s=120, proc=proc)
        dead = dep.consume(dep.settings.topic_dead_letter, until=lambda v: len(v) >= 2, timeout_s=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()

    log = dep.log_text()
    pages = {a["slo"].removesuffix("-availability"): a for a in alerts
             if a["severity"] == "page" and a["state"] == "firing"}
    assert set(pages) == set(SERVICES), log
    assert all(a["dimensions"]["cluster"] == "eu-west-1" for a in pages.values())

    cart = pages["cart-api"]["suspects"]
    assert [(s["kind"], s["cluster"]) for s in cart] == [("rollout", "eu-west-1")], "us-east-1 does not burn"
    assert cart[0]["rank"] == 1
    assert cart[0]["deployment"] == "cart-api" and cart[0]["revision"] == "12"
    assert cart[0]["summary"].startswith("rollout of shop/cart-api to revision 12 (cart-api:1.4.0) in eu-west-1, "
                                         "started 4m00s before the burn began")
    storm = [e for e in cart[0]["evidence"] if e["type"] == "k8s_warning"]
    assert len(storm) == 5 and {e["reason"] for e in storm} == {"BackOff"}
    assert next(e for e in cart[0]["evidence"] if e["type"] == "k8s_warnings")["count"] == sum(4 + i for i in range(8))
    assert pages["cart-api"]["burn_onset"] == onset

    assert pages["search-api"]["suspects"] == [], "cart-api's concurrent rollout is not search-api's cause"
    assert pages["lyrics-api"]["suspects"] == []

    (queue,) = pages["queue-api"]["suspects"]
    rev = next(e for e in queue["evidence"] if e["type"] == "revision_error_ratio")
    assert rev["new"]["revision"] == "42" and rev["new"]["ratio"] == pytest.approx(0.5, abs=0.05)
    assert rev["old"]["revision"] == "41" and rev["old"]["ratio"] == 0.0 and rev["p_value"] < 1e-6
    assert "revision 42 errors 50.0% vs 0.0% on revision 41" in queue["summary"]

    (radio,) = pages["radio-api"]["suspects"]
    assert radio["kind"] == "k8s_warning" and radio["reason"] == "Unhealthy"
    assert radio["count"] == 20 + 21 + 22 and radio["workload"] == "radio-api"
    assert radio["summary"] == "63x Unhealthy on 3 objects of shop/radio-api in eu-west-1"

    # The same, for dashboards: rollouts to draw as annotations, and the suspects of firing alerts.
    started = [ln for ln in metrics.splitlines() if ln.startswith("slo_stream_rollout_started_timestamp_seconds{")]
    assert any('deployment="cart-api"' in ln and 'cluster="eu-west-1"' in ln and 'revision="12"' in ln
               and float(ln.rsplit(" ", 1)[1]) == onset - 240 for ln in started), started
    assert not any("checkout-web" in ln for ln in started)
    top = [ln for ln in metrics.splitlines() if ln.startswith("slo_stream_alert_suspect_score{")
           and 'service="cart-api"' in ln and 'severity="page"' in ln and 'rank="1"' in ln]
    assert top and 'suspect="rollout shop/cart-api@12 eu-west-1"' in top[0], top
    assert 'slo_stream_k8s_records_total{outcome="dead_letter"} 2.0' in metrics
    assert sorted(d["reason"] for d in dead) == [c.REASON_BAD_JSON, c.REASON_MISSING_FIELD]
    assert {d["source"]["topic"] for d in dead} == {dep.settings.topic_k8s_rollouts, dep.settings.topic_k8s_events}
