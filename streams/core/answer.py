"""The gate's whole answer to one question (pure): SLO rules, change freezes and, for a migration step,
kubernetes against legacy. The HTTP API, the Flagger hooks and any other caller gather the
:class:`GateInputs` (the engine's read model does: :meth:`streams.core.readmodel.ReadModel.gate_inputs`)
and call :func:`answer`; they only validate parameters and encode the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from streams.core.freezes import Freeze, decide_freeze
from streams.core.gate import DEFAULT_GATE_CONFIG, GateConfig, GateDecision, combine, decide, decide_migration
from streams.core.stats import Proportion
from streams.core.wire.status import Status
from streams.core.wire.suspect import Suspect

_NO_SUSPECTS: Mapping[str, tuple[Suspect, ...]] = MappingProxyType({})
_NO_CONFIGS: Mapping[str, GateConfig] = MappingProxyType({})


@dataclass(frozen=True)
class Question:
    """May a rollout of ``service`` (in ``cluster``, on ``platform``, of ``revision``) go on? With
    ``migration``, the question is about a migration step: kubernetes is compared with legacy too."""

    service: str
    cluster: str | None = None
    platform: str | None = None
    revision: str | None = None
    migration: bool = False


@dataclass(frozen=True)
class PlatformCounts:
    """One ratio SLO's errors on each platform over its migration window."""

    slo: str
    kubernetes: Proportion
    legacy: Proportion
    window_s: int


@dataclass(frozen=True)
class GateInputs:
    """What the answer is made of."""

    # The service's series that cover the question's cluster and platform, marked stale where the
    # worker says so; ``others`` counts the service's series left out.
    statuses: tuple[Status, ...]
    # The suspects of each firing alert (by dedup key), with each rollout's phase as of now.
    suspects: Mapping[str, tuple[Suspect, ...]] = field(default_factory=lambda: _NO_SUSPECTS)
    freezes: tuple[Freeze, ...] = ()  # the service's active change freezes
    platforms: tuple[PlatformCounts, ...] = ()  # for a migration step: one per ratio SLO of the service
    configs: Mapping[str, GateConfig] = field(default_factory=lambda: _NO_CONFIGS)  # per SLO name
    default: GateConfig = DEFAULT_GATE_CONFIG
    others: int = 0


def answer(q: Question, inputs: GateInputs, *, now: float) -> GateDecision:
    """The decision for ``q`` at wall-clock ``now`` (epoch seconds): the worst of the SLO rules, the
    freezes and, for a migration step, each ratio SLO's platform comparison."""
    d = decide(service=q.service, cluster=q.cluster, platform=q.platform, revision=q.revision,
               statuses=inputs.statuses, suspects=inputs.suspects, now=now, configs=inputs.configs,
               default=inputs.default, others=inputs.others)
    if inputs.freezes:
        d = combine(d, decide_freeze(service=q.service, freezes=inputs.freezes, cluster=q.cluster, now=now))
    if q.migration:
        parts = [d]
        for pc in inputs.platforms:
            parts.append(decide_migration(service=q.service, cluster=q.cluster, kubernetes=pc.kubernetes,
                                          legacy=pc.legacy, window_s=pc.window_s,
                                          config=inputs.configs.get(pc.slo, inputs.default), now=now))
        d = combine(*parts)
    return d
