"""The topics the product uses and the configs their semantics need (pure; docs/semantics.md, "How long
state lives").

Two kinds. **Latest per key**: the workers' table changelogs (the 30-day counts, alert tracks,
per-service change state), ``slo.status`` and ``rollout.gates`` are read as "the latest value of each
key": they must be compacted, so that Kafka keeps every key's latest value for as long as the key
lives, whatever the retention. **Streams**: the data topics are read once, in order: they are deleted
after a retention long enough for a backfill, an investigation or a notifier outage.

A changelog that deletes instead of compacting loses state silently: a worker recovering on day 10
would rebuild a 30-day budget from 7 days of counts. :func:`check` says so for a topic that exists
with the wrong policy; a state topic with it stops the worker (unless told otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

DAY = 86400
KAFKA_DEFAULT_POLICY = "delete"  # log.cleanup.policy when a topic sets none


class Cleanup(StrEnum):
    COMPACT = "compact"
    DELETE = "delete"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its partition count, cleanup policy and, for a stream, its retention."""

    name: str
    partitions: int
    cleanup: Cleanup = Cleanup.DELETE
    retention_s: int | None = None  # a stream's retention; None: the broker's default
    holds_state: bool = False  # a worker's table is recovered from it

    def configs(self) -> dict[str, str]:
        """The topic configs to create it with."""
        if self.cleanup is Cleanup.COMPACT:
            return {"cleanup.policy": "compact"}
        out = {"cleanup.policy": "delete"}
        if self.retention_s is not None:
            out["retention.ms"] = str(self.retention_s * 1000)
        return out


def stream(name: str, partitions: int, retention_days: int) -> TopicSpec:
    return TopicSpec(name, partitions, Cleanup.DELETE, retention_days * DAY)


def latest_per_key(name: str, partitions: int, *, holds_state: bool = False) -> TopicSpec:
    return TopicSpec(name, partitions, Cleanup.COMPACT, None, holds_state)


@dataclass(frozen=True)
class TopicProblem:
    """A topic that exists with a config its semantics cannot live with. ``fatal``: a worker must not
    start on it (its state would be deleted)."""

    topic: str
    fatal: bool
    message: str
    fix: str


def check(spec: TopicSpec, configs: Mapping[str, str], *, bootstrap: str) -> TopicProblem | None:
    """What is wrong with ``spec``'s topic as it exists with ``configs`` (as the broker describes them;
    a policy it does not report is Kafka's default, ``delete``), or None."""
    if spec.cleanup is not Cleanup.COMPACT:
        return None
    policies = {p.strip() for p in configs.get("cleanup.policy", KAFKA_DEFAULT_POLICY).split(",")}
    fix = (f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
           f"--entity-name {spec.name} --add-config cleanup.policy=compact")
    if spec.holds_state and policies != {Cleanup.COMPACT.value}:
        return TopicProblem(spec.name, True, f"topic {spec.name} holds a worker's state but has cleanup.policy="
                            f"{','.join(sorted(policies))}: Kafka would delete that state after the topic's "
                            "retention (a restart would then rebuild a 30-day budget from what is left)", fix)
    if Cleanup.COMPACT.value not in policies:
        return TopicProblem(spec.name, False, f"topic {spec.name} is read as the latest value per key but has "
                            f"cleanup.policy={','.join(sorted(policies))}: keys not updated within its retention "
                            "will disappear", fix)
    return None
