"""Which topic configs the product needs, and what is wrong with an existing topic's (pure)."""

from __future__ import annotations

import pytest

from streams import settings as settings_mod
from streams.core.topology import Cleanup, TopicSpec, check, latest_per_key, stream

STATE = latest_per_key("app-state-changelog", 4, holds_state=True)
STATUS = latest_per_key("slo.status", 4)
PLAYBACK = stream("playback.events", 4, 7)


@pytest.mark.parametrize(("spec", "configs", "fatal"), [
    (STATE, {"cleanup.policy": "compact"}, None),
    (STATE, {"cleanup.policy": "delete"}, True),
    (STATE, {}, True),  # no policy reported: Kafka's default, delete
    (STATE, {"cleanup.policy": "compact,delete"}, True),  # compacted, but old keys still deleted
    (STATUS, {"cleanup.policy": "compact"}, None),
    (STATUS, {"cleanup.policy": "compact,delete"}, None),
    (STATUS, {"cleanup.policy": "delete"}, False),  # a warning: keys not updated within retention go
    (PLAYBACK, {"cleanup.policy": "delete", "retention.ms": "3600000"}, None),
    (PLAYBACK, {"cleanup.policy": "compact"}, None),
], ids=["a compacted changelog", "a changelog that deletes", "a changelog with the broker's default",
        "a changelog that compacts and deletes", "a compacted status topic", "a status topic that also deletes",
        "a status topic that deletes", "a stream with its retention", "a stream that compacts (not our concern)"])
def test_what_is_wrong_with_an_existing_topic(spec: TopicSpec, configs: dict[str, str], fatal: bool | None) -> None:
    p = check(spec, configs, bootstrap="kafka:9092")
    assert (None if p is None else p.fatal) is fatal
    if p is not None:
        assert p.fix == ("kafka-configs.sh --bootstrap-server kafka:9092 --alter --entity-type topics "
                         f"--entity-name {spec.name} --add-config cleanup.policy=compact")


def test_every_latest_per_key_topic_is_compacted_and_every_stream_has_a_retention() -> None:
    s = settings_mod.load({"SLO_STREAM_APP_ID": "app"})
    compacted = {t.name for t in s.topics.values() if t.cleanup is Cleanup.COMPACT}
    assert compacted == {"slo.status", "rollout.gates", "app-state-changelog", "app-changes-changelog"}
    assert {t.name for t in s.topics.values() if t.holds_state} == {"app-state-changelog", "app-changes-changelog"}
    days = {t.name: (t.retention_s or 0) // 86400 for t in s.topics.values() if t.cleanup is Cleanup.DELETE}
    assert days == {"playback.events": 7, "k8s.events": 7, "k8s.rollouts": 7, "slo.alerts": 30, "dead-letter": 14,
                    "app-changes-by-service": 7}
