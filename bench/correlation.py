"""How well the pages blame their cause: random incidents played through a real worker (issue 20).

    python -m bench.correlation [--seed 1] [--per-kind 6] [--json FILE] [--keep] [--bootstrap HOST:PORT]

What it does:

1. It makes up a set of incidents from the seed (``random.Random(seed)``): ``--per-kind`` of each of
   nine target kinds and of one ambiguous kind, one service each (``ev-<kind>-<n>``), with its own
   availability SLO (99.9 %, grouped by cluster and platform, policy ``workbook-30d``). Three
   clusters: eu-west-1, eu-west-2 (region eu-west) and us-east-1 (region us-east), all on
   ``kubernetes``.
2. It writes what Kubernetes would say: rollout records (started, progressing, completed; a canary:
   started, progressing, maybe paused) and Warning events (with the node in ``source.host``); and the
   services' traffic: one playback batch per service every 10 s, about 2,000 requests per cluster,
   0.01-0.03 % errors when healthy. Event time starts about 4 h ago. Every service has 2 h of
   healthy traffic before its incident.
3. It starts one worker (``python -m streams worker``) on the embedded broker (or on
   ``--bootstrap`` / ``KAFKA_BOOTSTRAP_SERVERS``). It sends the rollouts and events first and waits
   until the worker holds them. Then it sends the traffic and reads the alerts topic.
4. For each incident it takes the first page of its SLO in a cluster that burns, and compares the
   page's top suspect (rank 1) with the cause it planted.

The incidents are not clean. What makes them realistic (none of it changes the expected answer):

- Baseline noise, every service: the healthy error ratio drifts slowly in each cluster (+-15-30 %
  over 3-6 h). About once an hour a blip of 0.2-0.5 % errors lasts 1-2 min in one cluster: too short
  to page, and never within 20 min of the onset.
- Background changes: in about half of the target incidents, an extra healthy rollout of the
  service, in a cluster that does not burn within 30 min of the onset, or in the burning cluster
  90-120 min before it (to the revision running at the onset). In about a third, a few unrelated
  warnings: a BackOff on one pod 60-90 min before the onset, or FailedScheduling while a healthy
  rollout scales up.
- Gradual onsets: half of the outages build up linearly over 3-10 min.
- Canaries: half of the bad rollouts stop at one pod of 4-10 (10-25 % of the traffic), still in
  progress at the onset; the new revision fails 30-100 % of its requests. In the other half (full
  rollouts) it fails 3-10 % two times in five, else 10-60 %.
- Slow regressions: half ramp up convexly (like t squared: little at first, then faster).
- The worker is sent only what it would know at the page: no rollout record and no warning later than
  a minute before the page the generator expects.

The nine target kinds, and the top suspect each should get:

- ``bad_rollout_tagged``: a rollout whose new revision fails part of its requests; the playback
  records name the revision. Expected: that rollout.
- ``bad_rollout_untagged``: the same without revisions; half of them with BackOff /
  CrashLoopBackOff warnings on the new pods. Expected: that rollout.
- ``slow_regression``: after a rollout completes, errors grow slowly; they pass 0.1 % 15-45 min
  later and then page. Expected: that rollout.
- ``distractor_same_service``: a bad rollout, and a healthy rollout of the same service in another
  cluster within 10 minutes. Expected: the bad one.
- ``distractor_other_service``: an outage with no rollout of the service, while another service
  (``ev-bys-<n>``, healthy) rolls out in the same cluster just before. Expected: no suspect.
- ``healthy_rollout_then_outage``: a healthy rollout, then 20-110 min later an unrelated outage (in
  one cluster or in all). Expected: no suspect.
- ``node_trouble_after_rollout``: a healthy rollout, then 20-60 min later node trouble
  (NodeNotReady, Evicted, FailedScheduling on the new pods, naming 1-3 nodes) with errors.
  Expected: an ``infrastructure`` suspect; no suspect is acceptable and counted apart.
- ``regional_outage``: every cluster of one region burns; no rollout there. Expected: no suspect.
- ``warning_only``: no rollout; CrashLoopBackOff / Unhealthy / OOMKilled warnings on the service's
  pods with errors. Expected: a ``k8s_warning`` suspect of that workload.

The ambiguous kind, reported apart and left out of precision, recall and the other targets (it is in
the calibration table):

- ``coincident_healthy_rollout``: a healthy rollout of the service in one cluster starts 0-10 min
  before an outage of that cluster only (half with revisions on the records, half without; half
  completed before the onset, half still in progress). Expected: no suspect. When the records carry
  no revision nothing tells this from a bad rollout: it shows what a score built on timing alone does.

How to read the output:

- Verdict per incident: ``right`` (the expected top suspect, or no suspect when none is expected);
  ``none`` (no suspect, but one was expected); ``false_blame`` (a rollout at rank 1 that is not the
  cause); ``wrong`` (another wrong top suspect); ``no page`` (the incident did not page: a defect
  of this generator, not a correlation result).
- Precision: of the rank-1 rollout suspects of the target kinds, the share that is the causing rollout.
- Recall: of the rollout-caused incidents (the first four kinds), the share whose rank-1 suspect is
  the causing rollout.
- Kinds 5-9: the share with no suspect or the right non-rollout suspect. For node trouble, both an
  ``infrastructure`` suspect and no suspect count; the strict figure (infrastructure only) is
  printed too. For warnings only, only the right ``k8s_warning`` counts.
- Ambiguous: its verdicts and its false blames, by variant.
- Calibration: the rank-1 suspects of every kind binned by score (with how many are of the ambiguous
  kind). A well calibrated score has a share right close to its mean score. Per kind, the per-kind
  tables show the same: the mean score of the kind's rank-1 suspects and how many of them were right.

The run is an evaluation, not a test: it exits 0 whatever the figures. It exits 1 only when it could
not run (no broker, the worker died). Pages are judged as the worker computed them when they fired.
The rollouts and events are all sent before the traffic, so the generator computes when each
incident pages from its own traffic and sends no change later than that.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from tests.integration.harness import (  # noqa: E402
    Deployment,
    availability_specs,
    changelog_state,
    committed_offsets,
)

HOUR = 3600
MINUTE = 60
STEP = 10  # seconds of event time per playback batch (and per evaluation step)
HISTORY_S = 2 * HOUR  # healthy traffic before the first change of any incident
TAIL_S = 5 * MINUTE  # healthy traffic after the last incident ends
NAMESPACE = "shop"
CLUSTERS: tuple[tuple[str, str], ...] = (("eu-west-1", "eu-west"), ("eu-west-2", "eu-west"), ("us-east-1", "us-east"))
REGION = dict(CLUSTERS)
PLATFORM = "kubernetes"
OBJECTIVE = 0.999
BUDGET = 1.0 - OBJECTIVE
# workbook-30d's page conditions: (long window, short window, burn-rate threshold); a condition also
# needs 10 / (1 - objective) events in its long window.
PAGE_CONDITIONS = ((HOUR, 5 * MINUTE, 14.4), (6 * HOUR, 30 * MINUTE, 6.0))
MIN_EVENTS = round(10 / BUDGET)
MIN_INCIDENT_S = 15 * MINUTE  # errors last at least this long ...
PAGE_MARGIN_S = 5 * MINUTE  # ... and this long after the page the generator expects
BLIP_GAP_S = 70 * MINUTE  # baseline noise: the mean time between two blips of a service ...
BLIP_CLEAR_S = 20 * MINUTE  # ... and none this close to its incident's onset
HASH_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for pod-template hashes and pod suffixes

KINDS: tuple[tuple[str, str, str], ...] = (
    # (kind, abbreviation in the service name, expected top suspect)
    ("bad_rollout_tagged", "brt", "rollout"),
    ("bad_rollout_untagged", "bru", "rollout"),
    ("slow_regression", "slow", "rollout"),
    ("distractor_same_service", "dss", "rollout"),
    ("distractor_other_service", "dos", "none"),
    ("healthy_rollout_then_outage", "hro", "none"),
    ("node_trouble_after_rollout", "node", "infrastructure"),
    ("regional_outage", "reg", "none"),
    ("warning_only", "warn", "k8s_warning"),
)
# Reported apart, not in the targets: nothing in the data tells the two causes apart.
AMBIGUOUS_KINDS: tuple[tuple[str, str, str], ...] = (("coincident_healthy_rollout", "coin", "none"),)
ALL_KINDS = KINDS + AMBIGUOUS_KINDS
TARGET_KINDS = tuple(k for k, _, _ in KINDS)
ROLLOUT_KINDS = tuple(k for k, _, e in KINDS if e == "rollout")
OTHER_KINDS = tuple(k for k, _, e in KINDS if e != "rollout")
VERDICTS = ("right", "none", "false_blame", "wrong", "no_page")
SCORE_BINS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))

MESSAGES = {
    "BackOff": "Back-off restarting failed container app in pod {pod}",
    "CrashLoopBackOff": "Container app is in CrashLoopBackOff: back-off 2m40s restarting failed container",
    "Unhealthy": "Readiness probe failed: HTTP probe failed with statuscode: 503",
    "OOMKilled": "Container app was OOMKilled: memory limit 512Mi exceeded",
    "NodeNotReady": "Node is not ready",
    "Evicted": "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki.",
    "FailedScheduling": ("0/9 nodes are available: 1 node(s) had untolerated taint {{node.kubernetes.io/not-ready: "
                         "}}, 2 Insufficient memory. preemption: 0/9 nodes are available."),
}



# ---- the model of one service's traffic and changes (times in seconds relative to the scenario's
# ---- reference point H: the end of the healthy history) ----------------------------------------------


@dataclass(frozen=True)
class Version:
    """One revision of a Deployment: its revision number, pod-template hash and image tag."""

    revision: str
    template_hash: str
    tag: str


@dataclass
class Rollout:
    """A rollout of ``service`` in ``cluster`` from ``old`` to ``new``. A full rollout gives the new
    revision 25 % of the cluster's traffic at ``started`` and 100 % at ``completed``. A canary
    (``completed`` None) gives it one pod of ``desired`` from ``started`` on and stays there, in
    progress (``paused``: when it was paused, if it was)."""

    service: str
    cluster: str
    old: Version
    new: Version
    started: int
    completed: int | None
    desired: int = 4
    paused: int | None = None

    @property
    def ref(self) -> str:
        """``cluster/namespace/deployment@revision``: the identity a suspect is compared with."""
        return f"{self.cluster}/{NAMESPACE}/{self.service}@{self.new.revision}"

    def share(self, t: float) -> float:
        """The new revision's share of the cluster's traffic at ``t``."""
        if t < self.started:
            return 0.0
        if self.completed is None:
            return 1.0 / self.desired
        if t >= self.completed:
            return 1.0
        return 0.25 + 0.75 * (t - self.started) / (self.completed - self.started)

    def phases(self) -> list[tuple[str, int, int]]:
        """``(phase, time, updated replicas)`` of each record the kube bridge writes for it."""
        if self.completed is None:
            out = [("started", self.started, 1), ("progressing", self.started + MINUTE, 1)]
            if self.paused is not None:
                out.append(("paused", self.paused, 1))
            return out
        mid = (self.started + self.completed) // 2
        return [("started", self.started, 1), ("progressing", mid, 2), ("completed", self.completed, 4)]


@dataclass
class Outage:
    """Extra errors in some clusters, whatever the revision: ``ratio`` from ``start``, or reached
    linearly over ``ramp_s`` (a gradual onset)."""

    clusters: tuple[str, ...]
    start: int
    end: int
    ratio: float
    ramp_s: int = 0

    def at(self, cluster: str, t: float) -> float:
        if cluster not in self.clusters or not self.start <= t < self.end:
            return 0.0
        if t - self.start < self.ramp_s:
            return self.ratio * (t - self.start) / self.ramp_s
        return self.ratio

    @property
    def text(self) -> str:
        return f"outage {self.ratio:.0%}" + (f" built up over {self.ramp_s / MINUTE:.0f} min" if self.ramp_s else "")


@dataclass
class Blip:
    """A short burst of errors in one cluster (baseline noise: too short to page)."""

    cluster: str
    start: int
    end: int
    ratio: float


@dataclass
class BadRevision:
    """Extra errors of the new revision in one cluster: ``fail`` from ``start``, or, for a slow
    regression, a ramp: from nothing at ``start`` to the budget rate (0.1 %) ``cross_s`` later, then
    to ``peak`` over ``rise_s``, then ``peak``. The ramp is linear (in two pieces), or ``convex``: it
    grows like the square of the time, its slope never falling (little at first, then faster)."""

    cluster: str
    start: int
    end: int
    fail: float = 0.0
    cross_s: int = 0
    rise_s: int = 0
    peak: float = 0.0
    convex: bool = False

    def at(self, cluster: str, t: float, baseline: float) -> float:
        if cluster != self.cluster or not self.start <= t < self.end:
            return 0.0
        if not self.cross_s:
            return self.fail
        dt = t - self.start
        first = BUDGET - baseline  # the extra ratio at the crossing
        if dt < self.cross_s:
            x = dt / self.cross_s
            return first * (x * x if self.convex else x)
        u = dt - self.cross_s
        if u >= self.rise_s:
            return self.peak - baseline
        if not self.convex:
            return first + (self.peak - BUDGET) * u / self.rise_s
        slope = 2 * first / self.cross_s  # the slope at the crossing, kept (no kink)
        q = (self.peak - BUDGET - slope * self.rise_s) / self.rise_s ** 2
        return first + slope * u + q * u * u


@dataclass
class KubeWarning:
    """Warning events of one reason on one pod (one Event, its count and first and last times)."""

    cluster: str
    pod: str
    reason: str
    host: str
    first: int
    last: int
    count: int


@dataclass
class Service:
    """One service: its traffic per cluster, its revisions, and what happens to it."""

    name: str
    tagged: bool  # playback records carry ``revision``
    label: str  # which name of a revision they carry: "number", "hash" or "tag"
    baseline: float
    volume: dict[str, int]  # mean requests per 10 s per cluster
    old: Version
    new: Version
    pre: Version | None = None  # the revision before ``old`` (a background rollout pre -> old)
    rollouts: list[Rollout] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    bad: BadRevision | None = None
    warnings: list[KubeWarning] = field(default_factory=list)
    # baseline noise: per cluster (relative amplitude, period, phase) of a slow drift, and blips
    drift: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    blips: list[Blip] = field(default_factory=list)
    # what the worker knows when the page is expected: no change record later than this is sent
    cutoff: int | None = None

    def revision_label(self, v: Version) -> str:
        return {"number": v.revision, "hash": v.template_hash, "tag": v.tag}[self.label]

    def rollouts_in(self, cluster: str) -> list[Rollout]:
        return sorted((r for r in self.rollouts if r.cluster == cluster), key=lambda r: r.started)

    def serving(self, cluster: str, t: float) -> list[tuple[Version, float]]:
        """``(version, share of the traffic)`` of each revision serving ``cluster`` at ``t`` (the
        rollouts of one cluster never overlap)."""
        rs = self.rollouts_in(cluster)
        current = rs[0].old if rs else self.old
        for r in rs:
            if t < r.started:
                break
            s = r.share(t)
            if s < 1.0:
                return [(r.old, 1.0 - s), (r.new, s)]
            current = r.new
        return [(current, 1.0)]

    def baseline_at(self, cluster: str, t: float) -> float:
        a, period, phase = self.drift.get(cluster, (0.0, 1.0, 0.0))
        return self.baseline * (1.0 + a * math.sin(2 * math.pi * t / period + phase))

    def mix(self, cluster: str, t: float) -> list[tuple[Version, float, float]]:
        """``(version, share of the traffic, error ratio)`` of each revision serving ``cluster`` at ``t``."""
        base = self.baseline_at(cluster, t)
        healthy = 1.0 - base
        for b in self.blips:
            if b.cluster == cluster and b.start <= t < b.end:
                healthy *= 1.0 - b.ratio
        for o in self.outages:
            healthy *= 1.0 - o.at(cluster, t)
        out = []
        for v, s in self.serving(cluster, t):
            if s <= 0.0:
                continue
            ok = healthy
            if v == self.new and self.bad is not None:
                ok *= 1.0 - self.bad.at(cluster, t, base)
            out.append((v, s, 1.0 - ok))
        return out

    def expected_ratio(self, cluster: str, t: float) -> float:
        return sum(s * p for _, s, p in self.mix(cluster, t))

    def phases_sent(self, r: Rollout) -> list[tuple[str, int, int]]:
        return [p for p in r.phases() if self.cutoff is None or p[1] <= self.cutoff]

    def warnings_sent(self) -> list[KubeWarning]:
        return [w for w in self.warnings if self.cutoff is None or w.last <= self.cutoff]


@dataclass
class Incident:
    kind: str
    service: Service
    burning: tuple[str, ...]  # the clusters whose series should page
    onset: int  # when the errors start (the intended burn onset)
    end: int  # when they stop
    expected: str  # "rollout" | "none" | "infrastructure" | "k8s_warning"
    cause: Rollout | None = None
    bystander: Service | None = None  # distractor_other_service: the other service that rolled out
    expected_page: int | None = None
    nodes: tuple[str, ...] = ()
    note: str = ""
    variant: str = ""  # coincident_healthy_rollout: "tagged|untagged, completed|in progress"

    @property
    def slo(self) -> str:
        return f"{self.service.name}-availability"

    @property
    def expected_text(self) -> str:
        if self.cause is not None:
            return f"rollout {self.cause.ref}"
        if self.expected == "infrastructure":
            return f"infrastructure {self.burning[0]} ({len(self.nodes)} node{'s' if len(self.nodes) > 1 else ''})"
        if self.expected == "k8s_warning":
            return f"k8s_warning {self.burning[0]} {self.service.name}"
        return "none"


@dataclass
class Scenario:
    seed: int
    per_kind: int
    start: int  # epoch seconds of the first playback batch (a whole minute)
    h: int  # epoch seconds of the reference point (relative time 0)
    end_rel: int  # relative time of the last playback batch (exclusive)
    incidents: list[Incident]
    services: list[Service]  # every service with an SLO (incidents' and bystanders')

    def abs(self, rel: float) -> float:
        return self.h + rel


# ---- the generator -------------------------------------------------------------------------------


class Generator:
    """Makes the incidents of one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._hashes: set[str] = set()
        self._coincident = 0

    def _hash(self) -> str:
        while True:
            h = "".join(self.rng.choice(HASH_CHARS) for _ in range(10))
            if h not in self._hashes:
                self._hashes.add(h)
                return h

    def service(self, name: str, *, tagged: bool | None = None) -> Service:
        rng = self.rng
        rev = rng.randint(3, 240)
        major, minor, patch = rng.randint(1, 4), rng.randint(0, 30), rng.randint(1, 9)
        old = Version(str(rev), self._hash(), f"{major}.{minor}.{patch}")
        new = Version(str(rev + 1), self._hash(), f"{major}.{minor + 1}.0")
        return Service(
            name=name, tagged=rng.random() < 0.5 if tagged is None else tagged,
            label=rng.choice(("number", "number", "hash", "tag")), baseline=rng.uniform(0.0001, 0.0003),
            volume={c: rng.randint(1700, 2300) for c, _ in CLUSTERS}, old=old, new=new)

    def rollout(self, svc: Service, cluster: str, started: int, *, canary: int | None = None,
                old: Version | None = None, new: Version | None = None) -> Rollout:
        """A rollout of ``svc`` in ``cluster`` (old -> new unless told), full (4-8 min), or a canary
        of one pod out of ``canary`` that stays in progress (paused half of the time)."""
        rng = self.rng
        old, new = old or svc.old, new or svc.new
        if canary is None:
            r = Rollout(svc.name, cluster, old, new, started, started + rng.randint(4 * MINUTE, 8 * MINUTE))
        else:
            paused = started + rng.randint(2 * MINUTE, 5 * MINUTE) if rng.random() < 0.5 else None
            r = Rollout(svc.name, cluster, old, new, started, None, desired=canary, paused=paused)
        svc.rollouts.append(r)
        return r

    def pods(self, svc: Service, v: Version, n: int) -> list[str]:
        names: set[str] = set()
        while len(names) < n:
            names.add(f"{svc.name}-{v.template_hash}-{''.join(self.rng.choice(HASH_CHARS) for _ in range(5))}")
        return sorted(names)

    def node(self, cluster: str) -> str:
        a, b, c = (self.rng.randint(0, 255) for _ in range(3))
        return f"ip-10-{a}-{b}-{c}.{cluster}.compute.internal"

    def warnings(self, svc: Service, cluster: str, pods: Sequence[str], reasons: Sequence[str],
                 first: tuple[int, int], last: int, hosts: Sequence[str]) -> None:
        """One or two of ``reasons`` on each pod, first seen within ``first``, repeated until ``last``."""
        rng = self.rng
        for pod in pods:
            host = rng.choice(hosts)
            for reason in rng.sample(list(reasons), k=min(len(reasons), rng.randint(1, 2))):
                t0 = min(rng.randint(*first), last - 30)  # seen at least twice before ``last``
                t1 = max(t0 + 30, last)
                count = 1 + (t1 - t0) // rng.randint(30, 120)
                svc.warnings.append(KubeWarning(cluster, pod, reason, host, t0, t1, count))

    def outage(self, clusters: tuple[str, ...], onset: int, lo: float, hi: float) -> Outage:
        """An outage of ``lo``-``hi`` errors from ``onset``; half of them build up over 3-10 min."""
        rng = self.rng
        ramp = rng.randint(3 * MINUTE, 10 * MINUTE) // STEP * STEP if rng.random() < 0.5 else 0
        return Outage(clusters, onset, onset + 2 * HOUR, rng.uniform(lo, hi), ramp)

    def noise(self, svc: Service, onset: int | None) -> None:
        """Baseline noise: a slow drift of the baseline in each cluster (+-15-30 % over 3-6 h), and now
        and then (every 70 min on average) a blip of 0.2-0.5 % errors for 1-2 min in one cluster,
        never within 20 min of the onset."""
        rng = self.rng
        svc.drift = {c: (rng.uniform(0.15, 0.30), rng.uniform(3 * HOUR, 6 * HOUR), rng.uniform(0, 2 * math.pi))
                     for c, _ in CLUSTERS}
        t = -HISTORY_S + rng.randint(0, 40 * MINUTE) // STEP * STEP
        horizon = (onset or 0) + 5 * HOUR
        while t < horizon:
            d = rng.randint(6, 12) * STEP
            cluster, ratio = rng.choice(CLUSTERS)[0], rng.uniform(0.002, 0.005)
            if onset is None or t + d <= onset - BLIP_CLEAR_S or t >= onset + BLIP_CLEAR_S:
                svc.blips.append(Blip(cluster, t, t + d, ratio))
            t += d + round(rng.expovariate(1 / BLIP_GAP_S)) // STEP * STEP

    # -- the kinds --

    def make(self, kind: str, name: str, bystander_name: str) -> Incident:
        inc: Incident = getattr(self, f"_{kind}")(kind, name, bystander_name)
        if kind in TARGET_KINDS:
            self._background(inc)
        assert inc.expected_page is not None
        inc.service.cutoff = inc.expected_page - MINUTE
        return inc

    def _bad_rollout(self, kind: str, name: str, tagged: bool, warnings: bool) -> Incident:
        rng = self.rng
        svc = self.service(name, tagged=tagged)
        x = rng.choice(CLUSTERS)[0]
        started = rng.randint(0, 20 * MINUTE)
        if rng.random() < 0.5:  # a canary of one pod out of 4-10 (10-25 % of the traffic)
            desired = rng.randint(4, 10)
            r = self.rollout(svc, x, started, canary=desired)
            fail = rng.uniform(0.30, 1.0)
            what = f"canary 1/{desired} ({1 / desired:.0%}) in progress{', paused' if r.paused else ''}"
        else:
            r = self.rollout(svc, x, started)
            fail = rng.uniform(0.03, 0.10) if rng.random() < 0.4 else rng.uniform(0.10, 0.60)
            what = "full rollout"
        svc.bad = BadRevision(x, r.started, r.started + 2 * HOUR, fail=fail)
        inc = Incident(kind, svc, (x,), r.started, 0, "rollout", cause=r,
                       note=f"{what}, new revision fails {fail:.0%}, {'tagged' if tagged else 'untagged'}")
        self._finish(inc, [svc.bad])
        if warnings:
            pods = self.pods(svc, svc.new, 1 if r.completed is None else rng.randint(2, 6))
            page = inc.expected_page or inc.end
            self.warnings(svc, x, pods, ("BackOff", "CrashLoopBackOff"), (r.started + 30, r.started + 150),
                          page - 60, [self.node(x) for _ in range(3)])
            inc.note += f", {len(svc.warnings)} warning(s) on new pods"
        return inc

    def _bad_rollout_tagged(self, kind: str, name: str, _: str) -> Incident:
        return self._bad_rollout(kind, name, True, False)

    def _bad_rollout_untagged(self, kind: str, name: str, _: str) -> Incident:
        return self._bad_rollout(kind, name, False, self.rng.random() < 0.5)

    def _slow_regression(self, kind: str, name: str, _: str) -> Incident:
        rng = self.rng
        svc = self.service(name)
        x = rng.choice(CLUSTERS)[0]
        r = self.rollout(svc, x, rng.randint(0, 15 * MINUTE))
        assert r.completed is not None
        cross = rng.randint(15 * MINUTE, 45 * MINUTE)
        convex = rng.random() < 0.5
        svc.bad = BadRevision(x, r.completed, r.completed + 3 * HOUR, cross_s=cross,
                              rise_s=rng.randint(10 * MINUTE, 20 * MINUTE), peak=rng.uniform(0.025, 0.04),
                              convex=convex)
        inc = Incident(kind, svc, (x,), r.completed + cross, 0, "rollout", cause=r,
                       note=(f"{'convex' if convex else 'linear'} ramp, errors pass 0.1% {cross / MINUTE:.0f} min "
                             f"after completion, peak {svc.bad.peak:.1%}, {'tagged' if svc.tagged else 'untagged'}"))
        self._finish(inc, [svc.bad], start=r.completed)
        return inc

    def _distractor_same_service(self, kind: str, name: str, _: str) -> Incident:
        rng = self.rng
        tagged = rng.random() < 0.5
        inc = self._bad_rollout(kind, name, tagged, not tagged and rng.random() < 0.5)
        svc, x = inc.service, inc.burning[0]
        y = rng.choice([c for c, _ in CLUSTERS if c != x])
        assert inc.expected_page is not None
        latest = min(inc.onset + 10 * MINUTE, inc.expected_page - 2 * MINUTE)  # known at the page
        other = self.rollout(svc, y, rng.randint(inc.onset - 10 * MINUTE, latest))
        inc.note += f"; healthy rollout in {y} {(other.started - inc.onset) / MINUTE:+.1f} min"
        return inc

    def _distractor_other_service(self, kind: str, name: str, bystander_name: str) -> Incident:
        rng = self.rng
        svc = self.service(name)
        by = self.service(bystander_name)
        self.noise(by, None)
        x = rng.choice(CLUSTERS)[0]
        onset = rng.randint(5 * MINUTE, 25 * MINUTE)
        by_rollout = self.rollout(by, x, onset - rng.randint(0, 5 * MINUTE))
        out = self.outage((x,), onset, 0.2, 1.0)
        svc.outages.append(out)
        inc = Incident(kind, svc, (x,), onset, 0, "none", bystander=by,
                       note=(f"{out.text}; {by.name} rolled out in {x} "
                             f"{(onset - by_rollout.started) / MINUTE:.1f} min before"))
        self._finish(inc, [out])
        return inc

    def _healthy_rollout_then_outage(self, kind: str, name: str, _: str) -> Incident:
        rng = self.rng
        svc = self.service(name)
        x = rng.choice(CLUSTERS)[0]
        r = self.rollout(svc, x, rng.randint(0, 5 * MINUTE))
        assert r.completed is not None
        onset = r.completed + rng.randint(20 * MINUTE, 110 * MINUTE)
        everywhere = rng.random() < 0.5
        clusters = tuple(c for c, _ in CLUSTERS) if everywhere else (x,)
        out = self.outage(clusters, onset, 0.05, 0.5)
        svc.outages.append(out)
        inc = Incident(kind, svc, clusters, onset, 0, "none",
                       note=(f"{out.text} in {'all clusters' if everywhere else x} "
                             f"{(onset - r.completed) / MINUTE:.0f} min after the rollout in {x} completed, "
                             f"{'tagged' if svc.tagged else 'untagged'}"))
        self._finish(inc, [out])
        return inc

    def _node_trouble_after_rollout(self, kind: str, name: str, _: str) -> Incident:
        rng = self.rng
        svc = self.service(name)
        x = rng.choice(CLUSTERS)[0]
        r = self.rollout(svc, x, rng.randint(0, 20 * MINUTE))
        assert r.completed is not None
        onset = r.completed + rng.randint(20 * MINUTE, 60 * MINUTE)
        out = self.outage((x,), onset, 0.05, 0.30)
        svc.outages.append(out)
        nodes = tuple(sorted({self.node(x) for _ in range(rng.randint(1, 3))}))
        inc = Incident(kind, svc, (x,), onset, 0, "infrastructure", nodes=nodes)
        self._finish(inc, [out])
        reasons = rng.sample(["NodeNotReady", "Evicted", "FailedScheduling"], k=rng.randint(1, 3))
        page = inc.expected_page or inc.end
        self.warnings(svc, x, self.pods(svc, svc.new, rng.randint(3, 8)), reasons, (onset - 60, onset + 60),
                      page - 60, nodes)
        inc.note = (f"{out.text} {(onset - r.completed) / MINUTE:.0f} min after the rollout "
                    f"completed; {'/'.join(sorted(reasons))} on {len(nodes)} node(s), "
                    f"{'tagged' if svc.tagged else 'untagged'}")
        return inc

    def _regional_outage(self, kind: str, name: str, _: str) -> Incident:
        rng = self.rng
        svc = self.service(name)
        region = rng.choice(("eu-west", "eu-west", "us-east"))
        clusters = tuple(c for c, r in CLUSTERS if r == region)
        onset = 90 * MINUTE + rng.randint(0, 20 * MINUTE)
        out = self.outage(clusters, onset, 0.05, 0.5)
        svc.outages.append(out)
        note = f"{out.text} in {region}"
        if rng.random() < 0.5:
            started = onset - rng.randint(30 * MINUTE, 90 * MINUTE)
            for c, reg in CLUSTERS:
                if reg != region:
                    self.rollout(svc, c, started + rng.randint(0, 3 * MINUTE))
            note += f"; healthy rollout in the other region {(onset - started) / MINUTE:.0f} min before"
        inc = Incident(kind, svc, clusters, onset, 0, "none", note=note)
        self._finish(inc, [out])
        return inc

    def _warning_only(self, kind: str, name: str, _: str) -> Incident:
        rng = self.rng
        svc = self.service(name)
        x = rng.choice(CLUSTERS)[0]
        onset = rng.randint(5 * MINUTE, 60 * MINUTE)
        out = self.outage((x,), onset, 0.05, 0.5)
        svc.outages.append(out)
        inc = Incident(kind, svc, (x,), onset, 0, "k8s_warning")
        self._finish(inc, [out])
        reasons = rng.sample(["CrashLoopBackOff", "Unhealthy", "OOMKilled"], k=rng.randint(1, 3))
        page = inc.expected_page or inc.end
        self.warnings(svc, x, self.pods(svc, svc.old, rng.randint(2, 6)), reasons, (onset, onset + 90),
                      page - 60, [self.node(x) for _ in range(3)])
        inc.note = f"{out.text}; {'/'.join(sorted(reasons))} on {svc.name}'s pods"
        return inc

    def _coincident_healthy_rollout(self, kind: str, name: str, _: str) -> Incident:
        """Ambiguous by construction: a healthy rollout in X starts 0-10 min before an outage of X only.
        Tagged or not, completed before the onset or not, alternate (so that each half is there)."""
        rng = self.rng
        n = self._coincident
        self._coincident += 1
        tagged, in_progress = n % 2 == 0, n // 2 % 2 == 1
        svc = self.service(name, tagged=tagged)
        x = rng.choice(CLUSTERS)[0]
        onset = rng.randint(20 * MINUTE, 100 * MINUTE)
        if in_progress:
            lead = rng.randint(0, 6 * MINUTE)
            length = rng.randint(max(4 * MINUTE, lead + 2 * MINUTE), 10 * MINUTE)
        else:
            lead = rng.randint(5 * MINUTE, 10 * MINUTE)
            length = rng.randint(3 * MINUTE, lead - MINUTE)
        r = self.rollout(svc, x, onset - lead)
        r.completed = r.started + length
        out = self.outage((x,), onset, 0.05, 0.5)
        svc.outages.append(out)
        state = ("in progress at the onset" if in_progress
                 else f"completed {(onset - r.started - length) / MINUTE:.1f} min before")
        inc = Incident(kind, svc, (x,), onset, 0, "none",
                       variant=f"{'tagged' if tagged else 'untagged'}, {'in progress' if in_progress else 'completed'}",
                       note=(f"{out.text} in {x}; healthy rollout there started {lead / MINUTE:.1f} min before, "
                             f"{state}, {'tagged' if tagged else 'untagged'}"))
        self._finish(inc, [out])
        return inc

    # -- background changes (healthy, unrelated) --

    def _background(self, inc: Incident) -> None:
        """In about half of the incidents a healthy rollout of the service: in a cluster that does not
        burn within 30 min of the onset, or in the (first) burning cluster 90-120 min before it; in
        about a third a few unrelated warnings: a BackOff on one pod 60-90 min before the onset, or
        FailedScheduling while a healthy rollout scales up. All of them known before the page."""
        rng, svc = self.rng, inc.service
        assert inc.expected_page is not None
        page = inc.expected_page
        notes = []
        if rng.random() < 0.5:
            other = [c for c, _ in CLUSTERS if c not in inc.burning and not svc.rollouts_in(c)]
            x = inc.burning[0]
            first = min((r.started for r in svc.rollouts_in(x)), default=None)
            lo, hi = inc.onset - 120 * MINUTE, inc.onset - 90 * MINUTE
            if first is not None:
                hi = min(hi, first - 15 * MINUTE)  # done (at most 8 min) well before the next one starts
            before_ok = max(lo, -HISTORY_S) <= hi
            later = min(inc.onset + 30 * MINUTE, page - 3 * MINUTE)
            if other and (not before_ok or rng.random() < 0.5):
                c = rng.choice(other)
                r = self.rollout(svc, c, rng.randint(inc.onset - 30 * MINUTE, later))
                notes.append(f"healthy rollout in {c} {(r.started - inc.onset) / MINUTE:+.0f} min")
            elif before_ok:
                if svc.pre is None:
                    v = svc.old
                    svc.pre = Version(str(int(v.revision) - 1), self._hash(),
                                      v.tag.rsplit(".", 1)[0] + f".{int(v.tag.rsplit('.', 1)[1]) - 1}")
                r = self.rollout(svc, x, rng.randint(max(lo, -HISTORY_S), hi), old=svc.pre, new=svc.old)
                notes.append(f"earlier rollout in {x} {(inc.onset - r.started) / MINUTE:.0f} min before")
        if rng.random() < 1 / 3:
            healthy = [r for r in svc.rollouts if r is not inc.cause and r.started <= page - 4 * MINUTE]
            if healthy and rng.random() < 0.5:
                r = rng.choice(healthy)
                pods = self.pods(svc, r.new, rng.randint(1, 2))
                for pod in pods:
                    t0 = r.started + rng.randint(0, 60)
                    t1 = min(t0 + rng.randint(20, 120), page - 2 * MINUTE)
                    svc.warnings.append(KubeWarning(r.cluster, pod, "FailedScheduling", self.node(r.cluster), t0,
                                                    t1, rng.randint(1, 5)))
                notes.append(f"FailedScheduling on {len(pods)} pod(s) of the rollout in {r.cluster} as it scaled up")
            else:
                c = rng.choice(CLUSTERS)[0]
                t0 = inc.onset - rng.randint(60 * MINUTE, 90 * MINUTE)
                (v, _), *_ = svc.serving(c, t0)
                t1 = t0 + rng.randint(1 * MINUTE, 8 * MINUTE)
                svc.warnings.append(KubeWarning(c, self.pods(svc, v, 1)[0], "BackOff", self.node(c), t0, t1,
                                                rng.randint(2, 6)))
                notes.append(f"BackOff on 1 pod in {c} {(inc.onset - t0) / MINUTE:.0f} min before")
        if notes:
            inc.note += "; background: " + ", ".join(notes)

    def _finish(self, inc: Incident, faults: Sequence[Outage | BadRevision], start: int | None = None) -> None:
        """Baseline noise; when the incident is expected to page, and so when its errors stop: at
        least 15 min after they start and 5 min after the page."""
        self.noise(inc.service, inc.onset)
        page = expected_page(inc.service, inc.burning, -HISTORY_S, inc.onset + 3 * HOUR)
        if page is None:
            raise AssertionError(f"generator defect: {inc.service.name} ({inc.kind}) would never page")
        inc.expected_page = page
        begin = inc.onset if start is None else start
        inc.end = max(begin + MIN_INCIDENT_S, page + PAGE_MARGIN_S)
        for f in faults:
            f.end = inc.end


def expected_page(svc: Service, clusters: Sequence[str], t0: int, t1: int) -> int | None:
    """The first evaluation step (relative time) at which workbook-30d pages in one of ``clusters``,
    from the expected traffic (no sampling noise) between ``t0`` and ``t1``."""
    first: int | None = None
    for cluster in clusters:
        n = (t1 - t0) // STEP
        vol = svc.volume[cluster]
        tot = [0.0] * (n + 1)
        bad = [0.0] * (n + 1)
        for i in range(n):
            tot[i + 1] = tot[i] + vol
            bad[i + 1] = bad[i] + vol * svc.expected_ratio(cluster, t0 + i * STEP + STEP / 2)
        for i in range(1, n + 1):
            t = t0 + i * STEP
            if first is not None and t >= first:
                break
            if any(_fires(tot, bad, i, long_s, short_s, x) for long_s, short_s, x in PAGE_CONDITIONS):
                first = t
                break
    return first


def _fires(tot: list[float], bad: list[float], i: int, long_s: int, short_s: int, threshold: float) -> bool:
    for w in (long_s, short_s):
        j = max(0, i - w // STEP)
        t, b = tot[i] - tot[j], bad[i] - bad[j]
        if w == long_s and t < MIN_EVENTS:
            return False
        if t <= 0 or b / t <= threshold * BUDGET:
            return False
    return True


def build(seed: int, per_kind: int, now: float | None = None) -> Scenario:
    """The incidents of ``seed``: ``per_kind`` of each kind, on one shared timeline ending a few minutes
    before ``now`` (default: the clock)."""
    gen = Generator(seed)
    incidents: list[Incident] = []
    for kind, abbrev, _ in ALL_KINDS:
        for n in range(1, per_kind + 1):
            incidents.append(gen.make(kind, f"ev-{abbrev}-{n:02d}", f"ev-bys-{n:02d}"))
    services = [i.service for i in incidents] + [i.bystander for i in incidents if i.bystander is not None]
    names = [s.name for s in services]
    assert len(set(names)) == len(names), "service names must be unique"
    end_rel = max(i.end for i in incidents) + TAIL_S
    end_rel += -end_rel % MINUTE
    now_s = int(time.time() if now is None else now) // MINUTE * MINUTE
    h = now_s - 2 * MINUTE - end_rel  # the last batch two minutes before now (within max_future)
    return Scenario(seed, per_kind, h - HISTORY_S, h, end_rel, incidents, services)


# ---- what is sent: rollout records, events, playback batches -------------------------------------


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollout_messages(scn: Scenario) -> list[tuple[bytes | None, bytes]]:
    """The records of every rollout (started, progressing, then completed or, for a canary, paused),
    as the kube bridge writes them; none later than the service's cutoff."""
    out: list[tuple[bytes | None, bytes]] = []
    for svc in scn.services:
        for r in svc.rollouts:
            for phase, ts, updated in svc.phases_sent(r):
                body = {
                    "schema_version": 1, "ts": scn.abs(ts), "cluster": r.cluster, "namespace": NAMESPACE,
                    "deployment": svc.name, "service": svc.name, "revision": r.new.revision,
                    "previous_revision": r.old.revision, "template_hash": r.new.template_hash,
                    "previous_template_hash": r.old.template_hash,
                    "images": [f"registry.example.com/{svc.name}:{r.new.tag}"],
                    "previous_images": [f"registry.example.com/{svc.name}:{r.old.tag}"],
                    "phase": phase,
                    "replicas": {"desired": r.desired, "updated": updated, "ready": r.desired,
                                 "available": r.desired},
                    "reason": None, "message": None, "migration": None,
                }
                out.append((f"{r.cluster}/{NAMESPACE}/{svc.name}".encode(), orjson.dumps(body)))
    return out


def event_messages(scn: Scenario) -> list[tuple[bytes | None, bytes]]:
    """Every warning as a core/v1 Event from our kube bridge (plus ``cluster``), with its node."""
    out: list[tuple[bytes | None, bytes]] = []
    for svc in scn.services:
        for i, w in enumerate(svc.warnings_sent()):
            body = {
                "schema_version": 1, "cluster": w.cluster, "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{w.pod}.{zlib.crc32(w.reason.encode()) ^ i:08x}", "namespace": NAMESPACE,
                             "uid": f"uid-{w.pod}-{w.reason}", "resourceVersion": str(1000 + w.count)},
                "involvedObject": {"kind": "Pod", "name": w.pod, "namespace": NAMESPACE, "apiVersion": "v1"},
                "reason": w.reason, "message": MESSAGES[w.reason].format(pod=w.pod), "type": "Warning",
                "count": w.count, "firstTimestamp": rfc3339(scn.abs(w.first)),
                "lastTimestamp": rfc3339(scn.abs(w.last)),
                "source": {"component": "kubelet", "host": w.host},
            }
            out.append((f"{w.cluster}/{NAMESPACE}/Pod/{w.pod}".encode(), orjson.dumps(body)))
    return out


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw: exact for small ``n``, Poisson for rare errors, normal otherwise."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if n <= 60:
        return sum(rng.random() < p for _ in range(n))
    mean = n * p
    if mean < 30 and p < 0.1:
        limit, k, prod = math.exp(-mean), 0, rng.random()
        while prod > limit:
            k += 1
            prod *= rng.random()
        return min(k, n)
    return max(0, min(n, round(rng.gauss(mean, math.sqrt(mean * (1.0 - p))))))


def playback_messages(scn: Scenario) -> Iterator[tuple[bytes | None, bytes]]:
    """One batch message per service every 10 s (keyed by service), in event-time order: a record per
    cluster, or per revision when the service tags its records."""
    rng = random.Random(scn.seed * 1_000_003 + 17)
    for t in range(-HISTORY_S, scn.end_rel, STEP):
        for svc in scn.services:
            records: list[dict[str, Any]] = []
            for cluster, region in CLUSTERS:
                n = max(0, round(rng.gauss(svc.volume[cluster], math.sqrt(svc.volume[cluster]))))
                base = {"service": svc.name, "cluster": cluster, "region": region, "platform": PLATFORM}
                mix = svc.mix(cluster, t + STEP / 2)
                if svc.tagged:
                    left = n
                    for k, (v, share, p) in enumerate(mix):
                        m = left if k == len(mix) - 1 else round(n * share)
                        left -= m
                        if m > 0:
                            records.append({**base, "ts": round(scn.abs(t) + rng.random() * STEP, 3), "total": m,
                                            "errors": binomial(rng, m, p), "revision": svc.revision_label(v)})
                else:
                    errors, left = 0, n
                    for k, (_, share, p) in enumerate(mix):
                        m = left if k == len(mix) - 1 else round(n * share)
                        left -= m
                        errors += binomial(rng, m, p)
                    records.append({**base, "ts": round(scn.abs(t) + rng.random() * STEP, 3), "total": n,
                                    "errors": errors})
            yield svc.name.encode(), orjson.dumps({"schema_version": 1, "records": records})


# ---- playing it through a worker ------------------------------------------------------------------


@dataclass
class Played:
    alerts: list[dict[str, Any]]
    messages: int
    records: int
    seconds_changes: float  # rollouts and events sent until the worker held them
    seconds_playback: float  # traffic sent until the worker had committed all of it
    log_tail: str = ""


def _wait_changes(dep: Deployment, scn: Scenario, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    want = {s.name: (sum(bool(s.phases_sent(r)) for r in s.rollouts),
                     len({(w.cluster, w.pod, w.reason) for w in s.warnings_sent()})) for s in scn.services}
    want = {name: rw for name, rw in want.items() if rw != (0, 0)}
    deadline = time.time() + timeout_s
    missing: list[str] = sorted(want)
    while time.time() < deadline:
        state = changelog_state(dep)
        missing = [name for name, (r, w) in want.items()
                   if len((state.get(name) or {}).get("r", {})) != r or len((state.get(name) or {}).get("w", {})) != w]
        if not missing:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}:\n{dep.log_text()[-3000:]}")
        time.sleep(0.5)
    raise RuntimeError(f"the worker never held the changes of {missing[:5]} ({len(missing)} services)")


def play(scn: Scenario, bootstrap: str, tmp: Path, *, timeout_s: float = 540,
         say: Callable[[str], None] = print) -> Played:
    """Play ``scn`` through one real worker on ``bootstrap``; every alert it published."""
    from kafka import KafkaConsumer, TopicPartition

    specs = availability_specs(tmp / "specs", [svc.name for svc in scn.services],
                               "a service of the correlation evaluation (bench/correlation.py)")
    dep = Deployment.create(bootstrap, tmp, SLO_STREAM_SPECS=str(specs), SLO_STREAM_ALLOWED_LATENESS="20")
    t_start = time.time()
    messages = list(playback_messages(scn))
    records = sum(len(orjson.loads(v)["records"]) for _, v in messages)
    alerts: list[dict[str, Any]] = []
    with dep.worker() as proc:
        dep.produce(rollout_messages(scn), topic=dep.settings.topic_k8s_rollouts)
        dep.produce(event_messages(scn), topic=dep.settings.topic_k8s_events)
        _wait_changes(dep, scn, proc, timeout_s=120)
        t_changes = time.time()
        say(f"  the worker holds the rollouts and events ({t_changes - t_start:.0f} s); sending "
            f"{len(messages):,} playback messages ({records:,} records)")
        dep.produce(messages)
        say(f"  sent in {time.time() - t_changes:.0f} s; waiting for the worker to take them")
        consumer = KafkaConsumer(bootstrap_servers=dep.bootstrap, enable_auto_commit=False, **dep.kafka)
        parts = [TopicPartition(dep.settings.topic_alerts, p) for p in range(dep.settings.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        wanted = {(i.slo, c) for i in scn.incidents for c in i.burning}
        deadline = t_start + timeout_s  # the harness stops its worker after 600 s
        caught_up_at: float | None = None
        next_check = 0.0
        try:
            while time.time() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    alerts.extend(orjson.loads(m.value) for m in batch)
                paged = {(a["slo"], a["dimensions"].get("cluster")) for a in alerts
                         if a.get("severity") == "page" and a.get("state") == "firing"}
                if proc.poll() is not None:
                    raise RuntimeError(f"the worker exited with {proc.returncode}:\n{dep.log_text()[-3000:]}")
                if time.time() >= next_check:
                    next_check = time.time() + 2
                    done = sum(committed_offsets(dep.bootstrap, dep.settings.app_id, dep.settings.topic_playback,
                                                 dep.settings.partitions, security=dep.security).values())
                    if done >= len(messages) and caught_up_at is None:
                        caught_up_at = time.time()
                if wanted <= paged and caught_up_at is not None:
                    break
                if caught_up_at is not None and time.time() - caught_up_at > 5:
                    break  # everything taken: what has not paged by now will not
            else:
                say(f"  timed out after {time.time() - t_start:.0f} s: the worker had not taken all the traffic")
        finally:
            consumer.close()
        t_end = caught_up_at or time.time()
    return Played(alerts, len(messages), records, t_changes - t_start, t_end - t_changes,
                  log_tail=dep.log_text()[-2000:])


# ---- scoring ---------------------------------------------------------------------------------------


def _top(alert: dict[str, Any]) -> dict[str, Any] | None:
    suspects = alert.get("suspects") or []
    if not suspects:
        return None
    ranked = sorted(enumerate(suspects), key=lambda p: (p[1].get("rank") or 2**31, p[0]))
    top: dict[str, Any] = ranked[0][1]
    return top


def describe(s: dict[str, Any] | None) -> str:
    """A suspect in a few words: kind, cluster, what, score."""
    if s is None:
        return "none"
    kind = s.get("kind", "?")
    if kind == "rollout":
        what = f"{s.get('deployment')}@{s.get('revision')}"
    elif kind == "k8s_warning":
        what = f"{s.get('workload')}/{s.get('reason')}"
    elif kind == "infrastructure":
        nodes = s.get("nodes") or []
        what = f"{len(nodes)} node(s)/{','.join(str(r) for r in (s.get('reasons') or []))}"
    else:
        what = str(s.get("summary", ""))[:40]
    return f"{kind} {s.get('cluster', '?')} {what} {float(s.get('score') or 0):.2f}"


def verdict(inc: Incident, top: dict[str, Any] | None) -> str:
    """right | none | false_blame | wrong for the top suspect of an incident's page."""
    if top is None:
        return "right" if inc.expected == "none" else "none"
    kind = top.get("kind")
    if kind == "rollout":
        if inc.cause is not None and _is_rollout(top, inc.cause):
            return "right"
        return "false_blame"
    if inc.expected == "infrastructure" and kind == "infrastructure" and top.get("cluster") in inc.burning:
        return "right"
    if (inc.expected == "k8s_warning" and kind == "k8s_warning" and top.get("cluster") in inc.burning
            and top.get("workload") == inc.service.name):
        return "right"
    return "wrong"


def _is_rollout(s: dict[str, Any], r: Rollout) -> bool:
    return (s.get("cluster") == r.cluster and s.get("deployment") == r.service
            and str(s.get("revision")) == r.new.revision and s.get("namespace", NAMESPACE) == NAMESPACE)


@dataclass
class Row:
    """One incident's result."""

    kind: str
    service: str
    expected: str
    note: str
    burning: tuple[str, ...]
    cause: str | None  # the causing rollout's ref
    nodes: tuple[str, ...]  # the troubled nodes (node_trouble_after_rollout)
    onset: float  # intended (epoch seconds)
    expected_page: float | None
    paged: bool
    page_cluster: str | None = None
    page_ts: float | None = None
    burn_onset: float | None = None
    top: dict[str, Any] | None = None
    verdict: str = "no_page"
    suspects: int = 0
    variant: str = ""

    def to_json(self) -> dict[str, Any]:
        top = self.top
        return {
            "kind": self.kind, "service": self.service, "expected": self.expected, "note": self.note,
            "burning": list(self.burning), "cause": self.cause, "nodes": list(self.nodes), "onset": self.onset,
            "expected_page": self.expected_page,
            "paged": self.paged, "page_cluster": self.page_cluster, "page_ts": self.page_ts,
            "burn_onset": self.burn_onset, "verdict": self.verdict, "suspects": self.suspects,
            **({"variant": self.variant} if self.variant else {}),
            "top": None if top is None else {k: top.get(k) for k in (
                "kind", "score", "cluster", "deployment", "revision", "workload", "reason", "nodes", "reasons",
                "count", "summary") if k in top},
        }


def score(scn: Scenario, alerts: Sequence[dict[str, Any]]) -> list[Row]:
    """One row per incident: its first page in a burning cluster and the verdict on its top suspect."""
    pages: dict[str, list[tuple[float, int, dict[str, Any]]]] = {}
    for i, a in enumerate(alerts):
        if a.get("severity") == "page" and a.get("state") == "firing":
            pages.setdefault(a["slo"], []).append((float(a.get("ts") or 0), i, a))
    rows = []
    for inc in scn.incidents:
        mine = sorted(p for p in pages.get(inc.slo, []) if p[2]["dimensions"].get("cluster") in inc.burning)
        row = Row(inc.kind, inc.service.name, inc.expected_text, inc.note, inc.burning,
                  None if inc.cause is None else inc.cause.ref, inc.nodes, scn.abs(inc.onset),
                  None if inc.expected_page is None else scn.abs(inc.expected_page), bool(mine),
                  variant=inc.variant)
        if mine:
            a = mine[0][2]
            row.page_cluster = a["dimensions"].get("cluster")
            row.page_ts = float(a.get("ts") or 0)
            row.burn_onset = a.get("burn_onset")
            row.top = _top(a)
            row.suspects = len(a.get("suspects") or [])
            row.verdict = verdict(inc, row.top)
        rows.append(row)
    return rows


def _share(k: int, n: int) -> dict[str, Any]:
    return {"count": k, "of": n, "share": round(k / n, 4) if n else None}


def figures(scn: Scenario, rows: Sequence[Row], alerts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per kind counts, precision, recall, the other kinds' figures (the targets: the nine kinds), the
    ambiguous kind's figures apart, and the calibration (every kind)."""
    per_kind: dict[str, dict[str, Any]] = {}
    for kind, _, _ in ALL_KINDS:
        mine = [r for r in rows if r.kind == kind]
        per_kind[kind] = {"n": len(mine), **{v: sum(r.verdict == v for r in mine) for v in VERDICTS}}
        # The kind's calibration: the mean score of its rank-1 suspects against how often they were right.
        scored = [(float(r.top.get("score") or 0), r.verdict == "right") for r in mine if r.top is not None]
        per_kind[kind]["top_suspects"] = len(scored)
        per_kind[kind]["top_mean_score"] = round(sum(x for x, _ in scored) / len(scored), 4) if scored else None
        per_kind[kind]["top_right"] = sum(ok for _, ok in scored)
    paged_all = [r for r in rows if r.paged]
    paged = [r for r in paged_all if r.kind in TARGET_KINDS]
    top_rollouts = [r for r in paged if r.top is not None and r.top.get("kind") == "rollout"]
    causing = [r for r in top_rollouts if r.verdict == "right"]
    rollout_rows = [r for r in paged if r.kind in ROLLOUT_KINDS]
    other_rows = [r for r in paged if r.kind in OTHER_KINDS]

    def acceptable(r: Row) -> bool:
        return r.verdict == "right" or (r.kind == "node_trouble_after_rollout" and r.verdict == "none")

    node_rows = [r for r in paged if r.kind == "node_trouble_after_rollout"]
    calibration = []
    tops = [(float(r.top.get("score") or 0), r) for r in paged_all if r.top is not None]
    for lo, hi in SCORE_BINS:
        inside = [(s, r) for s, r in tops if lo <= s < hi or (hi == 1.0 and s >= 1.0)]
        calibration.append({"bin": f"{lo:.1f}-{hi:.1f}", "count": len(inside),
                            "mean_score": round(sum(s for s, _ in inside) / len(inside), 4) if inside else None,
                            "share_right": round(sum(r.verdict == "right" for _, r in inside) / len(inside), 4)
                            if inside else None,
                            "ambiguous": sum(r.kind not in TARGET_KINDS for _, r in inside)})
    ambiguous: dict[str, Any] = {}
    for kind, _, _ in AMBIGUOUS_KINDS:
        mine = [r for r in paged_all if r.kind == kind]
        ambiguous[kind] = {
            "false_blames": _share(sum(r.verdict == "false_blame" for r in mine), len(mine)),
            "false_blames_by_variant": {v: _share(sum(r.verdict == "false_blame" for r in mine if r.variant == v),
                                                  sum(r.variant == v for r in mine))
                                        for v in sorted({r.variant for r in mine})},
        }
    bystanders = {i.bystander.name for i in scn.incidents if i.bystander is not None}
    bystander_pages = sorted({a["slo"] for a in alerts if a.get("severity") == "page" and a.get("state") == "firing"
                              and a["slo"].removesuffix("-availability") in bystanders})
    return {
        "incidents": len(rows), "paged": len(paged_all), "no_page": [r.service for r in rows if not r.paged],
        "per_kind": per_kind,
        "precision": _share(len(causing), len(top_rollouts)),
        "recall": _share(sum(r.verdict == "right" for r in rollout_rows), len(rollout_rows)),
        "other_kinds_acceptable": _share(sum(acceptable(r) for r in other_rows), len(other_rows)),
        "other_kinds_by_kind": {k: _share(sum(acceptable(r) for r in paged if r.kind == k),
                                          sum(r.kind == k for r in paged)) for k in OTHER_KINDS},
        "node_trouble_infrastructure_only": _share(sum(r.verdict == "right" for r in node_rows), len(node_rows)),
        "false_blames": _share(sum(r.verdict == "false_blame" for r in paged), len(paged)),
        "ambiguous": ambiguous,
        "calibration": calibration,
        "bystander_pages": bystander_pages,
    }


# ---- the report ------------------------------------------------------------------------------------


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> list[str]:
    cells = [[str(c) for c in head]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                                   strict=True)))

    return [line(cells[0]).rstrip(), "  ".join("-" * w for w in widths)] + [line(r).rstrip() for r in cells[1:]]


def _pct(s: dict[str, Any]) -> str:
    return "n/a" if s["share"] is None else f"{s['share']:.0%} ({s['count']}/{s['of']})"


def _minutes(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{(a - b) / MINUTE:+.1f}"


def report(scn: Scenario, rows: Sequence[Row], figs: dict[str, Any], played: Played | None = None) -> str:
    out = [f"Correlation evaluation: seed {scn.seed}, {scn.per_kind} incidents per kind, {len(rows)} incidents "
           f"({len(scn.services)} services), event time {rfc3339(scn.start)} to {rfc3339(scn.abs(scn.end_rel))}"]
    if played is not None:
        out.append(f"Worker: {played.messages:,} playback messages ({played.records:,} records) taken in "
                   f"{played.seconds_playback:.0f} s; {len(played.alerts)} alert records")
    out += ["", "Per incident (onset and page in minutes from the planted onset; top = rank-1 suspect: "
            "kind, cluster, what, score)"]
    out += _table(("kind", "service", "expected", "page in", "onset", "page", "top suspect", "verdict"),
                  [(r.kind, r.service, r.expected, r.page_cluster or "-", _minutes(r.burn_onset, r.onset),
                    _minutes(r.page_ts, r.onset), describe(r.top) if r.paged else "-", r.verdict.replace("_", " "))
                   for r in rows])
    pk = figs["per_kind"]
    counts = ("n", "right", "none", "false_blame", "wrong", "no_page", "top_suspects")
    head = ("kind", "n", "right", "none", "false blames", "wrong", "no page", "rank-1 suspects", "mean score",
            "of them right")

    def calibrated(k: str) -> tuple[str, str]:
        c = pk[k]
        if not c["top_suspects"]:
            return "-", "-"
        return f"{c['top_mean_score']:.2f}", f"{c['top_right'] / c['top_suspects']:.0%}"

    out += ["", "Per kind (the targets)"]
    out += _table(head, [(k, *(pk[k][c] for c in counts), *calibrated(k)) for k, _, _ in KINDS],
                  right=(1, 2, 3, 4, 5, 6, 7, 8, 9))
    out += ["", "Overall (the targets)"]
    out.append(f"  precision (rank-1 rollout suspects that are the causing rollout): {_pct(figs['precision'])}")
    out.append(f"  recall (rollout-caused incidents whose rank-1 suspect is the cause): {_pct(figs['recall'])}")
    out.append("  kinds 5-9, no suspect or the right non-rollout suspect: "
               f"{_pct(figs['other_kinds_acceptable'])}")
    for k, s in figs["other_kinds_by_kind"].items():
        out.append(f"    {k}: {_pct(s)}")
    out.append("    node_trouble_after_rollout, infrastructure suspect only: "
               f"{_pct(figs['node_trouble_infrastructure_only'])}")
    out.append(f"  false blames (a rollout at rank 1 that is not the cause): {_pct(figs['false_blames'])}")
    out += ["", "Ambiguous by construction (not in the targets)"]
    out += _table(head, [(k, *(pk[k][c] for c in counts), *calibrated(k)) for k, _, _ in AMBIGUOUS_KINDS],
                  right=(1, 2, 3, 4, 5, 6, 7, 8, 9))
    for k, a in figs["ambiguous"].items():
        by = "; ".join(f"{v} {s['count']}/{s['of']}" for v, s in a["false_blames_by_variant"].items())
        out.append(f"  {k}: false blames (the healthy rollout at rank 1) {_pct(a['false_blames'])}"
                   + (f" ({by})" if by else ""))
    out.append("  A healthy rollout starts 0-10 min before an outage of its cluster only. When the records carry no")
    out.append("  revision nothing tells the two apart; a rollout at rank 1 here is what a timing-only score gives.")
    out += ["", "Calibration (rank-1 suspects by score, every kind)"]
    out += _table(("score", "count", "mean score", "share right", "of them ambiguous"),
                  [(c["bin"], c["count"], "-" if c["mean_score"] is None else f"{c['mean_score']:.2f}",
                    "-" if c["share_right"] is None else f"{c['share_right']:.0%}", c["ambiguous"])
                   for c in figs["calibration"]], right=(1, 2, 3, 4))
    out.append("")
    if figs["no_page"]:
        out.append(f"NO PAGE (a generator defect, not a correlation result): {', '.join(figs['no_page'])}")
    else:
        out.append("Every incident paged.")
    if figs["bystander_pages"]:
        out.append(f"Bystanders that paged (they should not): {', '.join(figs['bystander_pages'])}")
    return "\n".join(out)


# ---- running it ------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    scenario: Scenario
    played: Played
    rows: list[Row]
    figures: dict[str, Any]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        scn = self.scenario
        return {
            "seed": scn.seed, "per_kind": scn.per_kind, "start": scn.start, "end": scn.abs(scn.end_rel),
            "services": len(scn.services), "messages": self.played.messages, "records": self.played.records,
            "seconds": round(self.seconds, 1), "seconds_playback": round(self.played.seconds_playback, 1),
            "figures": self.figures, "incidents": [r.to_json() for r in self.rows],
        }


def evaluate(bootstrap: str, tmp: Path, *, seed: int = 1, per_kind: int = 6, timeout_s: float = 540,
             say: Callable[[str], None] = print) -> Evaluation:
    """Build the incidents of ``seed``, play them through a worker on ``bootstrap`` and score its pages."""
    t0 = time.time()
    scn = build(seed, per_kind)
    say(f"seed {seed}: {len(scn.incidents)} incidents, {len(scn.services)} services; starting a worker")
    played = play(scn, bootstrap, tmp, timeout_s=timeout_s, say=say)
    rows = score(scn, played.alerts)
    return Evaluation(scn, played, rows, figures(scn, rows, played.alerts), time.time() - t0)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1, help="random seed of the incidents (default 1)")
    ap.add_argument("--per-kind", type=int, default=6, help="incidents of each kind, 1..20 (default 6)")
    ap.add_argument("--json", metavar="FILE", help="write every figure and the per-incident rows to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (specs, worker log)")
    ap.add_argument("--bootstrap", help="a Kafka broker (default: KAFKA_BOOTSTRAP_SERVERS, else an embedded one)")
    args = ap.parse_args(argv)
    if not 1 <= args.per_kind <= 20:
        ap.error("--per-kind must be 1..20 (the test harness stops a worker after 10 minutes)")
    bootstrap = args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or None
    broker = None
    tmp = Path(tempfile.mkdtemp(prefix="slo-stream-bench-correlation-"))
    try:
        if bootstrap is None:
            from streams.adapters.broker import EmbeddedBroker

            broker = EmbeddedBroker()
            broker.start()
            bootstrap = broker.bootstrap
        try:
            ev = evaluate(bootstrap, tmp, seed=args.seed, per_kind=args.per_kind)
        except RuntimeError as exc:
            print(f"the evaluation could not run: {exc}", file=sys.stderr)
            return 1
        print()
        print(report(ev.scenario, ev.rows, ev.figures, ev.played))
        print(f"\nRun time {ev.seconds:.0f} s.")
        if args.json:
            Path(args.json).write_text(json.dumps(ev.to_json(), indent=1) + "\n")
            print(f"Figures and per-incident rows written to {args.json}.")
    finally:
        if broker is not None:
            broker.stop()
        if args.keep:
            print(f"Kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
