"""Scenario files: a migration story played in accelerated event time (pure, deterministic by seed).

A scenario (``kind: Scenario``, YAML; docs/scenarios.md) describes placements (a Kubernetes cluster
and a legacy data centre per region), services with their traffic and the share of each region's
traffic already on Kubernetes, and a list of events in event time:

- ``migrationStep``: move a share of a region's traffic onto Kubernetes (a new revision of the
  Deployment with the ``slo-stream.io/migration-*`` annotations: a rollout record with ``migration``);
- ``rollout``: a new revision in one cluster; ``bad`` makes it fail a share of its requests and, with
  ``crashloop``, its pods crash-loop (Kubernetes Warning events);
- ``rollback``: back to the previous revision (a ``rolled_back`` rollout record);
- ``incident``: errors unrelated to any rollout (a regional network blip, a slow burn) for a while.

:func:`timeline` yields, in event-time order, the messages of the topic contracts (``playback.events``
batches keyed by service, ``k8s.rollouts``, ``k8s.events``) and :class:`Checkpoint` markers before and
after each migration step, rollout and rollback, where a player (the demo) can ask the gate. The same
file, seed and start time give the same bytes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.core import conventions as c
from streams.core.errors import SpecError, SpecProblem
from streams.core.model import format_duration
from streams.core.spec import Node, documents

PLAYBACK = "playback"
ROLLOUTS = "rollouts"
EVENTS = "events"
ROLLOUT_DONE_S = 300  # a healthy rollout completes 5 minutes after it started
WARNING_EVERY_S = 60  # a crash-looping pod reports BackOff again every minute


@dataclass(frozen=True)
class Placement:
    cluster: str
    region: str
    platform: str  # kubernetes | legacy


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    requests_per_second: float  # per region, at the daily peak
    base_error_ratio: float
    namespace: str
    revision: int  # the Kubernetes Deployment's revision at the start
    image: str  # repository, without tag
    tag: str
    kubernetes_percent: Mapping[str, float]  # region -> share of its traffic on Kubernetes at the start
    latency_ms: float = 120.0


@dataclass(frozen=True)
class Event:
    at_s: int
    kind: str  # migrationStep | rollout | rollback | incident
    service: str | None = None  # rollout, rollback, migrationStep
    services: tuple[str, ...] = ()  # incident
    region: str | None = None
    cluster: str | None = None
    to_percent: float | None = None
    tag: str | None = None
    bad_error_ratio: float | None = None
    bad_share: float = 1.0  # of the cluster's traffic served by the new revision
    crashloop: bool = False
    error_ratio: float = 0.0  # incident
    duration_s: int = 0  # incident
    note: str = ""
    line: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    duration_s: int
    slice_s: int
    placements: tuple[Placement, ...]
    services: tuple[ServiceSpec, ...]
    events: tuple[Event, ...]
    diurnal_trough: float = 0.5  # traffic at the daily low, relative to the peak
    peak_hour_utc: float = 20.0
    ask_after_s: int = 600  # checkpoints "after" an event come this long after it
    source: str = ""

    def k8s_cluster(self, region: str) -> str | None:
        return next((p.cluster for p in self.placements if p.region == region and p.platform == "kubernetes"), None)

    def region_of(self, cluster: str) -> str | None:
        return next((p.region for p in self.placements if p.cluster == cluster), None)


@dataclass(frozen=True)
class Produce:
    """A message to produce: ``topic`` is ``playback``, ``rollouts`` or ``events`` (the contract's
    topics; the player maps them to the configured names)."""

    ts: float
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Checkpoint:
    """A point where a player may stop and ask the gate: ``when`` is ``before`` (nothing of the event
    produced yet) or ``after`` (``ask_after`` later)."""

    ts: float
    when: str
    event: Event
    service: str
    cluster: str | None
    revision: str | None
    migration: bool

    def describe(self) -> str:
        e = self.event
        if e.kind == "migrationStep":
            new = f" with {e.tag}" if e.tag else ""
            return f"migration step: {e.service} in {e.region} to {e.to_percent:g}% on kubernetes{new}"
        if e.kind == "rollout":
            return f"rollout: {e.service} {e.tag} in {e.cluster}"
        if e.kind == "rollback":
            return f"rollback: {e.service} in {e.cluster}"
        return e.kind


# ---- loading ------------------------------------------------------------------------------------


def parse_scenario(file: str, text: str) -> Scenario:
    """Parse one scenario file; raise :class:`SpecError` with every problem (file, line, field)."""
    problems: list[SpecProblem] = []
    docs = list(documents(file, text, problems))
    if not docs and not problems:
        problems.append(SpecProblem(file, "#1", "(document)", "the file holds no scenario", 1))
    scenario = None
    for i, root in enumerate(docs):
        if i:
            root.problem("one scenario per file")
            break
        scenario = _scenario(root, file)
    if problems or scenario is None:
        raise SpecError(sorted(problems, key=lambda p: (p.file, p.line)))
    return scenario


def _scenario(root: Node, file: str) -> Scenario | None:
    f = root.fields(required=("apiVersion", "kind", "metadata", "spec"))
    if f is None:
        return None
    if "apiVersion" in f:
        f["apiVersion"].choice(("slo-stream/v1",))
    if "kind" in f:
        f["kind"].choice(("Scenario",))
    name = None
    description = ""
    if "metadata" in f and (m := f["metadata"].fields(required=("name",), optional=("description",))):
        name = m["name"].name() if "name" in m else None
        description = (m["description"].text() or "") if "description" in m else ""
    if "spec" not in f:
        return None
    s = f["spec"].fields(required=("seed", "duration", "placements", "services"),
                         optional=("slice", "traffic", "events", "askAfter"))
    if s is None:
        return None
    seed = s["seed"].integer() if "seed" in s else None
    duration = s["duration"].duration() if "duration" in s else None
    slice_s = s["slice"].duration() if "slice" in s else 10
    ask_after = s["askAfter"].duration() if "askAfter" in s else 600
    trough, peak_hour = 0.5, 20.0
    if "traffic" in s and (t := s["traffic"].fields(optional=("diurnalTrough", "peakHourUtc"))):
        if "diurnalTrough" in t:
            v = t["diurnalTrough"].number()
            if v is not None and not 0 < v <= 1:
                t["diurnalTrough"].problem("must be in (0, 1]: the traffic at the daily low relative to the peak")
            elif v is not None:
                trough = v
        if "peakHourUtc" in t:
            v = t["peakHourUtc"].number()
            if v is not None and not 0 <= v < 24:
                t["peakHourUtc"].problem("must be an hour of the day, 0..24")
            elif v is not None:
                peak_hour = v
    placements = _placements(s["placements"]) if "placements" in s else []
    regions = {p.region for p in placements}
    services = _services(s["services"], regions) if "services" in s else []
    known = {sv.name for sv in services}
    clusters = {p.cluster for p in placements if p.platform == "kubernetes"}
    events = _events(s["events"], known, regions, clusters, duration or 0) if "events" in s else []
    if None in (name, seed, duration, slice_s, ask_after) or not placements or not services:
        return None
    assert name is not None and seed is not None and duration is not None and slice_s is not None
    assert ask_after is not None
    return Scenario(name=name, description=description, seed=seed, duration_s=duration, slice_s=slice_s,
                    placements=tuple(placements), services=tuple(services), events=tuple(events),
                    diurnal_trough=trough, peak_hour_utc=peak_hour, ask_after_s=ask_after, source=file)


def _placements(node: Node) -> list[Placement]:
    out: list[Placement] = []
    for item in node.items() or []:
        f = item.fields(required=("cluster", "region", "platform"))
        if f is None or len(f) < 3:
            continue
        cluster, region = f["cluster"].name(), f["region"].name()
        platform = f["platform"].choice(c.PLATFORMS)
        if cluster and region and platform:
            if any(p.cluster == cluster for p in out):
                f["cluster"].problem(f"cluster {cluster!r} is listed twice")
                continue
            out.append(Placement(cluster, region, platform))
    for region in sorted({p.region for p in out}):
        kinds = [p.platform for p in out if p.region == region]
        if sorted(kinds) != ["kubernetes", "legacy"]:
            node.problem(f"region {region!r} needs exactly one kubernetes cluster and one legacy data centre, "
                         f"has {', '.join(sorted(kinds)) or 'none'}")
    return out


def _services(node: Node, regions: set[str]) -> list[ServiceSpec]:
    out: list[ServiceSpec] = []
    for item in node.items() or []:
        f = item.fields(required=("name", "requestsPerSecond", "image"),
                        optional=("baseErrorRatio", "namespace", "revision", "kubernetesPercent", "latencyMs"))
        if f is None:
            continue
        name = f["name"].name() if "name" in f else None
        rps = f["requestsPerSecond"].number() if "requestsPerSecond" in f else None
        if rps is not None and not 0 < rps <= 1_000_000:
            f["requestsPerSecond"].problem("must be in (0, 1000000]")
            rps = None
        base = f["baseErrorRatio"].number() if "baseErrorRatio" in f else 0.0002
        if base is not None and not 0 <= base < 1:
            f["baseErrorRatio"].problem("must be a ratio in [0, 1)")
            base = None
        ns = f["namespace"].name() if "namespace" in f else "default"
        rev = f["revision"].integer() if "revision" in f else 1
        image = f["image"].text() if "image" in f else None
        tag = None
        if image is not None:
            repo, sep, tag = image.rpartition(":")
            if not sep or not repo or not tag or "/" in tag:
                f["image"].problem(f"must be repository:tag, got {image!r}")
                image = None
            else:
                image = repo
        share: dict[str, float] = {r: 0.0 for r in regions}
        if "kubernetesPercent" in f:
            for key, key_at, value in f["kubernetesPercent"].entries() or []:
                v = value.number()
                if key not in regions:
                    key_at.problem(f"unknown region {key!r} (placements have {', '.join(sorted(regions))})")
                elif v is None or not 0 <= v <= 100:
                    value.problem("must be a percentage, 0..100")
                else:
                    share[key] = v
        latency = f["latencyMs"].number() if "latencyMs" in f else 120.0
        if None in (name, rps, base, ns, rev, image, latency):
            continue
        assert name and rps and base is not None and ns and rev is not None and image and tag and latency
        if any(s.name == name for s in out):
            f["name"].problem(f"service {name!r} is listed twice")
            continue
        out.append(ServiceSpec(name, rps, base, ns, rev, image, tag, share, latency))
    return out


def _events(node: Node, services: set[str], regions: set[str], clusters: set[str], duration: int) -> list[Event]:
    out: list[Event] = []
    kinds = ("migrationStep", "rollout", "rollback", "incident")
    for item in node.items() or []:
        f = item.fields(required=("at",), optional=(*kinds, "note"))
        if f is None:
            continue
        at = f["at"].duration(allow_zero=True) if "at" in f else None
        if at is not None and at >= duration > 0:
            f["at"].problem(f"is after the end of the scenario ({format_duration(duration)})")
            at = None
        present = [k for k in kinds if k in f]
        if len(present) != 1:
            item.problem(f"needs exactly one of {', '.join(kinds)}")
            continue
        kind = present[0]
        note = (f["note"].text() or "") if "note" in f else ""
        ev = _event(kind, f[kind], services, regions, clusters)
        if ev is None or at is None:
            continue
        out.append(Event(**{**ev, "at_s": at, "kind": kind, "note": note, "line": item.line}))
    ordered = sorted(out, key=lambda e: e.at_s)
    if [e.line for e in ordered] != [e.line for e in out]:
        node.problem("events must be listed in event-time order")
    return ordered


def _event(kind: str, node: Node, services: set[str], regions: set[str], clusters: set[str]) -> dict[str, Any] | None:
    """The fields of one event of ``kind`` (keyword arguments of :class:`Event`); ``None`` after
    reporting its problems."""
    known = _Known(services, regions, clusters)
    if kind == "migrationStep":
        return _migration_step(node, known)
    if kind == "rollout":
        return _rollout_event(node, known)
    if kind == "rollback":
        return _rollback_event(node, known)
    return _incident(node, known)


@dataclass(frozen=True)
class _Known:
    """What an event may name: the scenario's services, regions and kubernetes clusters."""

    services: set[str]
    regions: set[str]
    clusters: set[str]

    def service(self, f: dict[str, Node]) -> str | None:
        v = f["service"].name() if "service" in f else None
        if v is not None and v not in self.services:
            f["service"].problem(f"unknown service {v!r} (services: {', '.join(sorted(self.services))})")
            return None
        return v

    def cluster(self, f: dict[str, Node]) -> str | None:
        v = f["cluster"].name() if "cluster" in f else None
        if v is not None and v not in self.clusters:
            f["cluster"].problem(f"not a kubernetes cluster of the placements: {', '.join(sorted(self.clusters))}")
            return None
        return v


def _bad(f: dict[str, Node], out: dict[str, Any]) -> bool:
    """Read an optional ``bad`` block into ``out``; False when it has problems."""
    if "bad" not in f:
        return True
    b = f["bad"].fields(required=("errorRatio",), optional=("share", "crashloop"))
    if b is None:
        return False
    ratio = b["errorRatio"].number() if "errorRatio" in b else None
    if ratio is not None and not 0 < ratio <= 1:
        b["errorRatio"].problem("must be a ratio in (0, 1]")
        ratio = None
    share = b["share"].number() if "share" in b else 1.0
    if share is not None and not 0 < share <= 1:
        b["share"].problem("must be in (0, 1]: the share of the cluster's requests on the new revision")
        share = None
    crash = b["crashloop"].flag() if "crashloop" in b else False
    if ratio is None or share is None or crash is None:
        return False
    out.update(bad_error_ratio=ratio, bad_share=share, crashloop=crash)
    return True


def _migration_step(node: Node, known: _Known) -> dict[str, Any] | None:
    f = node.fields(required=("service", "region", "toPercent"), optional=("tag", "bad"))
    if f is None:
        return None
    region = f["region"].name() if "region" in f else None
    if region is not None and region not in known.regions:
        f["region"].problem(f"unknown region {region!r}")
        region = None
    pct = f["toPercent"].number() if "toPercent" in f else None
    if pct is not None and not 0 <= pct <= 100:
        f["toPercent"].problem("must be a percentage, 0..100")
        pct = None
    svc = known.service(f)
    step: dict[str, Any] = {"service": svc, "region": region, "to_percent": pct,
                            "tag": f["tag"].text() if "tag" in f else None}
    if not _bad(f, step) or None in (svc, region, pct) or ("tag" in f and step["tag"] is None):
        return None
    return step


def _rollout_event(node: Node, known: _Known) -> dict[str, Any] | None:
    f = node.fields(required=("service", "cluster", "tag"), optional=("bad",))
    if f is None:
        return None
    out: dict[str, Any] = {"service": known.service(f), "cluster": known.cluster(f),
                           "tag": f["tag"].text() if "tag" in f else None}
    if not _bad(f, out):
        return None
    return None if None in (out["service"], out["cluster"], out["tag"]) else out


def _rollback_event(node: Node, known: _Known) -> dict[str, Any] | None:
    f = node.fields(required=("service", "cluster"))
    if f is None:
        return None
    svc, cl = known.service(f), known.cluster(f)
    return None if None in (svc, cl) else {"service": svc, "cluster": cl}


def _incident(node: Node, known: _Known) -> dict[str, Any] | None:
    f = node.fields(required=("services", "errorRatio", "duration"), optional=("region", "cluster", "kind"))
    if f is None:
        return None
    names = []
    for it in f["services"].items() or [] if "services" in f else []:
        v = it.name()
        if v is not None and v not in known.services:
            it.problem(f"unknown service {v!r}")
        elif v is not None:
            names.append(v)
    ratio = f["errorRatio"].number() if "errorRatio" in f else None
    if ratio is not None and not 0 < ratio <= 1:
        f["errorRatio"].problem("must be a ratio in (0, 1]")
        ratio = None
    dur = f["duration"].duration() if "duration" in f else None
    region = f["region"].name() if "region" in f else None
    if region is not None and region not in known.regions:
        f["region"].problem(f"unknown region {region!r}")
        return None
    cl = known.cluster(f) if "cluster" in f else None
    note = f["kind"].choice(("network_blip", "slow_burn", "outage")) if "kind" in f else "outage"
    if not names or ratio is None or dur is None or note is None:
        return None
    return {"services": tuple(names), "error_ratio": ratio, "duration_s": dur, "region": region, "cluster": cl,
            "tag": note}


# ---- playing ------------------------------------------------------------------------------------


@dataclass
class _Deploy:
    """What one service runs in one Kubernetes cluster."""

    revision: int
    tag: str
    prev_revision: int | None = None
    prev_tag: str | None = None
    new_since: float | None = None  # a rollout in progress (serving ``new_share`` on the new revision)
    bad_ratio: float | None = None
    new_share: float = 1.0
    crashloop: bool = False
    history: dict[int, str] = field(default_factory=dict)  # revision -> tag


def _hash(service: str, tag: str) -> str:
    """A stable pod-template-hash stand-in for a (service, tag) template."""
    h = 2166136261
    for ch in f"{service}:{tag}".encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return f"{h:08x}"[:8] + "9c"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timeline(sc: Scenario, start_ts: int) -> Iterator[Produce | Checkpoint]:
    """Everything the scenario produces, in event-time order, starting at ``start_ts``."""
    rng = random.Random(sc.seed)
    deploys: dict[tuple[str, str], _Deploy] = {}
    share: dict[tuple[str, str], float] = {}
    for sv in sc.services:
        for p in sc.placements:
            if p.platform == "kubernetes":
                deploys[(sv.name, p.cluster)] = _Deploy(sv.revision, sv.tag, history={sv.revision: sv.tag})
        for region, pct in sv.kubernetes_percent.items():
            share[(sv.name, region)] = pct / 100.0
    by_name = {sv.name: sv for sv in sc.services}
    # Future k8s records and "after" checkpoints; a callable is made when it is due (it may change state).
    pending: list[tuple[float, int, Produce | Checkpoint | Callable[[], Produce]]] = []
    seq = 0

    def later(ts: float, item: Produce | Checkpoint | Callable[[], Produce]) -> None:
        nonlocal seq
        seq += 1
        pending.append((ts, seq, item))
        pending.sort(key=lambda x: (x[0], x[1]))

    events = list(sc.events)
    for off in range(0, sc.duration_s, sc.slice_s):
        ts = start_ts + off
        while events and events[0].at_s <= off:
            e = events.pop(0)
            yield from _apply(sc, e, start_ts + e.at_s, deploys, share, by_name, later)
        while pending and pending[0][0] <= ts:
            yield _due(pending.pop(0)[2])
        # Crash-looping pods report again every minute.
        if off % WARNING_EVERY_S == 0:
            for (svc, cl), d in sorted(deploys.items()):
                if d.crashloop and d.new_since is not None and ts >= d.new_since + 60:
                    n = int((ts - d.new_since) // WARNING_EVERY_S)
                    for i in range(4):
                        yield _warning(sc, by_name[svc], cl, d, i, n, ts)
        factor = _diurnal(sc, ts)
        for sv in sc.services:
            records = []
            for p in sc.placements:
                s = share[(sv.name, p.region)]
                part = s if p.platform == "kubernetes" else 1.0 - s
                total = int(sv.requests_per_second * sc.slice_s * factor * part)
                if total <= 0:
                    continue
                ratio = sv.base_error_ratio
                for inc in sc.events:
                    if (inc.kind == "incident" and sv.name in inc.services
                            and inc.at_s <= off < inc.at_s + inc.duration_s
                            and (inc.region in (None, p.region)) and (inc.cluster in (None, p.cluster))):
                        ratio = max(ratio, inc.error_ratio)
                base = {"ts": round(ts + rng.random() * sc.slice_s, 3), "service": sv.name, "cluster": p.cluster,
                        "region": p.region, "platform": p.platform,
                        "latency_ms": round(sv.latency_ms * (0.8 + 0.4 * rng.random()), 1)}
                if p.platform == "legacy":
                    records.append({**base, "total": total, "errors": _errors(rng, total, ratio)})
                    continue
                d = deploys[(sv.name, p.cluster)]
                new_part = 0
                if d.new_since is not None and d.prev_revision is not None:
                    new_part = int(total * d.new_share)
                old_part = total - new_part
                if old_part:
                    rev = d.prev_revision if new_part else d.revision
                    records.append({**base, "total": old_part, "errors": _errors(rng, old_part, ratio),
                                    "revision": str(rev)})
                if new_part:
                    bad = max(ratio, d.bad_ratio or 0.0)
                    records.append({**base, "ts": round(ts + rng.random() * sc.slice_s, 3), "total": new_part,
                                    "errors": _errors(rng, new_part, bad), "revision": str(d.revision)})
            if records:
                yield Produce(ts, PLAYBACK, sv.name.encode(),
                              orjson.dumps({"schema_version": c.SCHEMA_VERSION, "records": records}))
    while pending:
        yield _due(pending.pop(0)[2])


def _due(item: Produce | Checkpoint | Callable[[], Produce]) -> Produce | Checkpoint:
    return item if isinstance(item, Produce | Checkpoint) else item()


def _diurnal(sc: Scenario, ts: float) -> float:
    hour = (ts % 86400) / 3600.0
    wave = 0.5 + 0.5 * math.cos(2 * math.pi * (hour - sc.peak_hour_utc) / 24.0)
    return sc.diurnal_trough + (1.0 - sc.diurnal_trough) * wave


def _errors(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw: exact for small means, normal approximation otherwise."""
    if p <= 0:
        return 0
    if p >= 1:
        return n
    mean = n * p
    if mean < 30:
        # Inverse transform of a Poisson(mean), capped at n: small counts stay integral and exact enough.
        u, k, prob = rng.random(), 0, math.exp(-mean)
        cum = prob
        while u > cum and k < n:
            k += 1
            prob *= mean / k
            cum += prob
        return k
    return max(0, min(n, round(rng.gauss(mean, math.sqrt(mean * (1 - p))))))


def _apply(sc: Scenario, e: Event, ts: float, deploys: dict[tuple[str, str], _Deploy],
           share: dict[tuple[str, str], float], by_name: Mapping[str, ServiceSpec],
           later: Callable[[float, Produce | Checkpoint | Callable[[], Produce]], None]
           ) -> Iterator[Produce | Checkpoint]:
    if e.kind == "incident":
        return
    assert e.service is not None
    cluster = e.cluster or sc.k8s_cluster(e.region or "")
    assert cluster is not None
    d = deploys[(e.service, cluster)]
    sv = by_name[e.service]
    migration = e.kind == "migrationStep"
    # Before a region's first step there is no kubernetes traffic to compare with legacy: the gate
    # is asked about the SLOs alone; after it (and before later steps), about the comparison too.
    on_k8s = share.get((e.service, e.region or sc.region_of(cluster) or ""), 0.0) > 0
    # No kubernetes traffic there yet: the question is about the service as a whole.
    yield Checkpoint(ts, "before", e, e.service, cluster if on_k8s or not migration else None, None,
                     migration and on_k8s)
    if e.kind == "rollback":
        target = d.prev_revision if d.prev_revision is not None else d.revision
        old_tag = d.history.get(target, d.tag)
        bad_rev, bad_tag = d.revision, d.tag
        new_rev = max(d.history) + 1
        d.history[new_rev] = old_tag
        d.prev_revision, d.prev_tag, d.revision, d.tag = bad_rev, bad_tag, new_rev, old_tag
        d.new_since, d.bad_ratio, d.crashloop = None, None, False
        yield _rollout(sc, sv, cluster, d, ts, "rolled_back", rollback_to=str(target))
        later(ts + ROLLOUT_DONE_S, _rollout(sc, sv, cluster, d, ts + ROLLOUT_DONE_S, "completed"))
    else:
        new_rev = max(d.history) + 1
        tag = e.tag or d.tag
        assert tag is not None
        d.prev_revision, d.prev_tag = d.revision, d.tag
        d.revision, d.tag = new_rev, tag
        d.history[new_rev] = tag
        mig = None
        if migration:
            assert e.region is not None and e.to_percent is not None
            share[(e.service, e.region)] = e.to_percent / 100.0
            mig = {"from": "legacy", "to": "kubernetes", "traffic_percent": e.to_percent,
                   "step": f"{e.region} to {e.to_percent:g}%"}
        d.new_since = ts
        d.bad_ratio = e.bad_error_ratio
        d.new_share = e.bad_share if e.bad_error_ratio is not None else 1.0
        d.crashloop = e.crashloop
        yield _rollout(sc, sv, cluster, d, ts, "started", migration=mig)
        later(ts + 60, _rollout(sc, sv, cluster, d, ts + 60, "progressing", migration=mig))
        if e.bad_error_ratio is None:
            later(ts + ROLLOUT_DONE_S, _Finish(d, sc, sv, cluster, ts + ROLLOUT_DONE_S, mig, d.revision).record)
    later(ts + sc.ask_after_s, Checkpoint(ts + sc.ask_after_s, "after", e, e.service, cluster,
                                          None if e.kind == "rollback" else str(d.revision), migration))


@dataclass
class _Finish:
    d: _Deploy
    sc: Scenario
    sv: ServiceSpec
    cluster: str
    ts: float
    migration: Mapping[str, Any] | None

    revision: int = 0  # the revision this rollout brought; a newer one since then is left alone

    def record(self) -> Produce:
        if self.d.revision == self.revision:
            # The rollout is over: the previous revision no longer serves anything.
            self.d.new_since = None
        return _rollout(self.sc, self.sv, self.cluster, self.d, self.ts, "completed", migration=self.migration,
                        revision=self.revision)


def _rollout(sc: Scenario, sv: ServiceSpec, cluster: str, d: _Deploy, ts: float, phase: str, *,
             migration: Mapping[str, Any] | None = None, rollback_to: str | None = None,
             revision: int | None = None) -> Produce:
    done = phase in ("completed", "rolled_back")
    if revision is not None and revision != d.revision:
        # A record about an older revision than the one now running (its completion came late).
        d = _Deploy(revision, d.history.get(revision, d.tag), d.prev_revision, d.prev_tag, history=d.history)
    body = {
        "schema_version": c.SCHEMA_VERSION, "ts": ts, "cluster": cluster, "namespace": sv.namespace,
        "deployment": sv.name, "service": sv.name, "revision": str(d.revision),
        "previous_revision": None if d.prev_revision is None else str(d.prev_revision),
        "template_hash": _hash(sv.name, d.tag),
        "previous_template_hash": None if d.prev_tag is None else _hash(sv.name, d.prev_tag),
        "images": [f"{sv.image}:{d.tag}"],
        "previous_images": [] if d.prev_tag is None else [f"{sv.image}:{d.prev_tag}"],
        "phase": phase, "replicas": {"desired": 6, "updated": 6 if done else 2, "ready": 6, "available": 6},
        "reason": None, "message": None, "migration": dict(migration) if migration else None,
        "rollback_to_revision": rollback_to,
    }
    return Produce(ts, ROLLOUTS, f"{cluster}/{sv.namespace}/{sv.name}".encode(), orjson.dumps(body))


def _warning(sc: Scenario, sv: ServiceSpec, cluster: str, d: _Deploy, i: int, n: int, ts: float) -> Produce:
    pod = f"{sv.name}-{_hash(sv.name, d.tag)}-{'bcdfg'[i]}{i}x9q"
    body = {
        "schema_version": c.SCHEMA_VERSION, "cluster": cluster, "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{pod}.{i}", "namespace": sv.namespace, "uid": f"{sc.name}-{pod}"},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": sv.namespace, "apiVersion": "v1"},
        "reason": "BackOff", "message": f"Back-off restarting failed container {sv.name}", "type": "Warning",
        "count": n, "firstTimestamp": _rfc3339((d.new_since or ts) + 60), "lastTimestamp": _rfc3339(ts),
        "source": {"component": "kubelet"},
    }
    return Produce(ts, EVENTS, f"{cluster}/{sv.namespace}/Pod/{pod}".encode(), orjson.dumps(body))


def summary(sc: Scenario) -> list[str]:
    """The story in a few lines, for the demo's header and ``slo-stream replay --plan``."""
    lines = [f"{sc.name}: {format_duration(sc.duration_s)} of event time, seed {sc.seed}; "
             f"{len(sc.services)} services in {len({p.region for p in sc.placements})} regions "
             f"({', '.join(p.cluster for p in sc.placements)})"]
    for e in sc.events:
        when = format_duration(e.at_s)
        if e.kind == "migrationStep":
            what = f"{e.service}: {e.region} to {e.to_percent:g}% on kubernetes" + (f" with {e.tag}" if e.tag else "")
        elif e.kind == "rollout":
            what = f"{e.service}: rollout of {e.tag} in {e.cluster}"
        elif e.kind == "rollback":
            what = f"{e.service}: rollback in {e.cluster}"
        else:
            where = e.cluster or e.region or "everywhere"
            what = (f"{e.tag.replace('_', ' ') if e.tag else 'incident'} in {where}: {', '.join(e.services)} "
                    f"{e.error_ratio:.2%} errors for {format_duration(e.duration_s)}")
        lines.append(f"  +{when:>6}  {what}" + (f"  ({e.note})" if e.note else ""))
    return lines


def messages(sc: Scenario, start_ts: int) -> Sequence[Produce]:
    """Every message of the scenario (no checkpoints)."""
    return [x for x in timeline(sc, start_ts) if isinstance(x, Produce)]
