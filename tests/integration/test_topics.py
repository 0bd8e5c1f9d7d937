"""Topics get the configs their semantics need, read back from the broker; a worker refuses a state
changelog that would delete its state (docs/semantics.md, "How long state lives").

What the embedded broker (Tansu 0.6) does with configs, as measured here: it keeps the configs a topic
is created with and reports them on DescribeConfigs (as defaults); it reports nothing for a topic
created without configs (Kafka's default policy, ``delete``, applies then); it refuses to alter an
existing topic's configs; and it does not compact (so this test checks configs, not compaction: the
compaction-equivalence of the state is tests/unit/test_compaction.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from streams import settings as settings_mod
from streams.adapters.processes import free_port, stop_group
from streams.adapters.topics import ensure_topics, topic_configs
from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def _env(bootstrap: str, **extra: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SLO_STREAM_APP_ID": f"tp-{tag}", "SLO_STREAM_PARTITIONS": "2",
           "SLO_STREAM_SPECS": str(ROOT / "alerts" / "slos"), "SLO_STREAM_SESSION_TIMEOUT": "2",
           "SLO_STREAM_HEARTBEAT_INTERVAL": "0.5"}
    for name in ("PLAYBACK", "ALERTS", "STATUS", "DEAD_LETTER", "K8S_EVENTS", "K8S_ROLLOUTS", "ROLLOUT_GATES"):
        env[f"SLO_STREAM_TOPIC_{name}"] = f"{tag}.{name.lower().replace('_', '-')}"
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def test_slo_stream_topics_creates_every_topic_with_its_configs_and_the_broker_reports_them(
        kafka_bootstrap: str) -> None:
    env = _env(kafka_bootstrap)
    s = settings_mod.load(env)
    out = _run(["topics"], env)
    assert out.returncode == 0, out.stderr
    configs = topic_configs(kafka_bootstrap, list(s.topics))
    for spec in s.topics.values():
        assert configs[spec.name] == spec.configs(), spec.name
        assert f"{spec.name}: 2 partitions, cleanup.policy=" in out.stdout
    assert configs[f"{s.app_id}-state-changelog"] == {"cleanup.policy": "compact"}
    assert configs[s.topic_status] == {"cleanup.policy": "compact"}
    assert configs[s.topic_playback] == {"cleanup.policy": "delete", "retention.ms": str(7 * 86400 * 1000)}
    assert ensure_topics(kafka_bootstrap, s.topics) == [], "a second run finds nothing wrong"


@pytest.mark.parametrize("created_with", [{"cleanup.policy": "delete"}, {}],
                         ids=["a changelog created with cleanup.policy=delete",
                              "a changelog created without configs (the broker reports none: Kafka's default)"])
def test_a_worker_refuses_a_state_changelog_that_deletes_and_says_how_to_fix_it(
        kafka_bootstrap: str, tmp_path: Path, created_with: dict[str, str]) -> None:
    env = _env(kafka_bootstrap, SLO_STREAM_WEB_PORT=str(free_port()), SLO_STREAM_DATADIR=str(tmp_path / "data"))
    s = settings_mod.load(env)
    changelog = f"{s.app_id}-state-changelog"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics({changelog: {"num_partitions": 2, "replication_factor": 1, "configs": created_with}})
    finally:
        admin.close()

    refused = _run(["worker"], env)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    lines = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, refused.stderr
    assert f"topic {changelog} holds a worker's state but has cleanup.policy=delete" in lines[0]
    assert (f"kafka-configs.sh --bootstrap-server {kafka_bootstrap} --alter --entity-type topics "
            f"--entity-name {changelog} --add-config cleanup.policy=compact") in lines[0]
    assert "SLO_STREAM_ALLOW_STATE_DELETION=true" in lines[0]
    assert "Traceback" not in refused.stderr

    # `slo-stream topics` says the same (and exits 2); the other topics it creates as usual.
    topics = _run(["topics"], env)
    assert topics.returncode == 2 and f"topic {changelog} holds a worker's state" in topics.stderr
    assert topic_configs(kafka_bootstrap, [s.topic_status])[s.topic_status] == {"cleanup.policy": "compact"}

    # Those who know can start anyway: the problem is a warning then.
    allowed = {**env, "SLO_STREAM_ALLOW_STATE_DELETION": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env={**os.environ, **allowed}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "worker " in line and "SLOs from" in line:
                break
        else:
            raise AssertionError("".join(seen)[-3000:])
        assert any(x.startswith("warning: topic " + changelog) for x in seen), "".join(seen)[-3000:]
    finally:
        stop_group(proc)
