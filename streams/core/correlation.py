"""Correlation: which rollout, or which Kubernetes warning, most likely caused a burn (pure).

State per service (:class:`ServiceChanges`, kept in a Faust table co-partitioned with the service's
playback records): the recent rollouts of its Deployments and the Warning events of its objects,
bounded in number and age. When an alert fires, :func:`correlate` ranks suspects:

- **Rollouts of the same service** that started within ``lookback_s`` before the burn onset (or
  shortly after it: the onset is estimated at one-minute resolution), or were still in progress
  when it began. Never a rollout of another service: the state is per service and every suspect is
  checked against the alert's service again.
- **Evidence** per rollout, each a strength in [0, 1] combined as a noisy-OR (any one strong piece
  of evidence makes a strong suspect; more pieces only add):
  time from the rollout start to the onset (decays with ``proximity_tau_s``), the rollout being in
  progress / failed / paused at the onset, the new revision's error ratio against the previous
  revision's when playback records carry ``revision`` (one-sided two-proportion z-test), Warning
  events of the rollout's own objects, and a migration step onto Kubernetes.
- **Weights**: a rollout in another cluster than the burning series is multiplied by
  ``other_cluster_weight``; a burn on the ``legacy`` platform by ``legacy_platform_weight`` (a
  Deployment rollout rarely breaks the legacy orchestrator); a rollout whose previous revision fails
  just as much (the revision evidence exonerates it) by ``exonerated_weight``.
- **Warnings** not explained by a rollout suspect are suspects of their own, grouped per workload
  and reason (a CrashLoopBackOff storm over 30 pods is one suspect with a count).

Scores below ``min_score`` are dropped: an empty list means "no suspect", which the page says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from streams.core.stats import Proportion, two_proportion_z

PHASES = ("started", "progressing", "completed", "failed", "paused", "rolled_back")
ACTIVE_PHASES = frozenset({"started", "progressing", "failed", "paused"})

# How much a Warning reason says about a broken workload (others: DEFAULT_REASON_WEIGHT).
REASON_WEIGHTS: Mapping[str, float] = {
    "CrashLoopBackOff": 1.0,
    "BackOff": 0.9,
    "OOMKilled": 1.0,
    "OOMKilling": 0.9,
    "Unhealthy": 0.8,
    "ProgressDeadlineExceeded": 0.9,
    "Failed": 0.7,
    "ErrImagePull": 0.9,
    "ImagePullBackOff": 0.9,
    "FailedCreate": 0.7,
    "FailedScheduling": 0.6,
    "FailedMount": 0.6,
    "Evicted": 0.6,
}
DEFAULT_REASON_WEIGHT = 0.4


@dataclass(frozen=True)
class CorrelationConfig:
    lookback_s: int = 2 * 3600  # rollouts started this long before the onset are considered
    in_progress_lookback_s: int = 12 * 3600  # ... or this long, if still in progress at the onset
    after_onset_grace_s: int = 120  # a rollout this soon after the (minute-resolution) onset counts
    proximity_tau_s: int = 1800  # time evidence = 0.6 * exp(-minutes before onset / tau)
    warning_lookback_s: int = 3600  # warnings last seen within this before the alert
    other_cluster_weight: float = 0.4
    legacy_platform_weight: float = 0.5
    exonerated_weight: float = 0.3
    min_score: float = 0.05
    max_suspects: int = 5
    max_rollouts: int = 32  # per service, newest kept
    max_warnings: int = 64  # per service, newest kept
    max_uids_per_warning: int = 16
    retention_s: int = 2 * 86400  # state older than this (event time) is dropped
    min_revision_events: int = 20  # per revision, for revision evidence
    revision_p_value: float = 0.01
    revision_min_ratio_x: float = 2.0


DEFAULT_CONFIG = CorrelationConfig()


# ---- state ----------------------------------------------------------------------------------------


def rollout_key(r: Mapping[str, Any]) -> str:
    return f"{r['cluster']}/{r['namespace']}/{r['deployment']}@{r['revision']}"


def warning_key(w: Mapping[str, Any]) -> str:
    return f"{w['cluster']}/{w['namespace']}/{w['kind']}/{w['name']}/{w['reason']}"


class ServiceChanges:
    """The recent rollouts and Warning events of one service. Merging is idempotent: a record
    delivered twice (at-least-once) leaves the state as once."""

    __slots__ = ("freezes", "newest_ts", "rollouts", "warnings")

    def __init__(self) -> None:
        self.rollouts: dict[str, dict[str, Any]] = {}
        self.warnings: dict[str, dict[str, Any]] = {}
        # Change freezes set through the gate API, per cluster ("*": the whole service).
        self.freezes: dict[str, dict[str, Any]] = {}
        self.newest_ts = 0.0

    # -- serialisation (the table value) --
    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {"r": self.rollouts, "w": self.warnings, "t": self.newest_ts}
        if self.freezes:
            body["f"] = self.freezes
        return orjson.dumps(body)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> ServiceChanges:
        sc = cls()
        if raw:
            d = orjson.loads(raw)
            sc.rollouts = d.get("r") or {}
            sc.warnings = d.get("w") or {}
            sc.freezes = d.get("f") or {}
            sc.newest_ts = float(d.get("t") or 0.0)
        return sc

    def apply_freeze(self, f: Mapping[str, Any]) -> None:
        """Set (``reason``, ``until``) or lift (``lift: true``) a change freeze of one cluster or, with
        no cluster, of the whole service (lifting without a cluster lifts every freeze). Wall-clock
        times: a freeze is an operator's decision, not an event of the stream. Records are applied in
        order of their ``ts``, so a redelivered older record cannot undo a newer one."""
        where = f.get("cluster") or "*"
        ts = float(f["ts"])
        for k in [k for k, v in self.freezes.items() if v["until"] <= ts]:
            del self.freezes[k]  # expired
        if f.get("lift"):
            for k in [k for k, v in self.freezes.items() if (where == "*" or k == where) and v["ts"] <= ts]:
                del self.freezes[k]
            return
        cur = self.freezes.get(where)
        if cur is None or cur["ts"] <= ts:
            self.freezes[where] = {"cluster": f.get("cluster"), "reason": str(f["reason"])[:500], "ts": ts,
                                   "until": float(f["until"])}

    def active_freezes(self, now: float) -> list[dict[str, Any]]:
        return [dict(v) for _, v in sorted(self.freezes.items()) if v["until"] > now]

    # -- merging --
    def apply_rollout(self, r: Mapping[str, Any], cfg: CorrelationConfig = DEFAULT_CONFIG) -> None:
        """Merge one ``k8s.rollouts`` record (validated by ``streams.core.kube.parse_rollout``)."""
        key = rollout_key(r)
        ts = float(r["ts"])
        phase = str(r["phase"])
        cur = self.rollouts.get(key)
        if cur is None:
            cur = self.rollouts[key] = {
                "cluster": r["cluster"], "namespace": r["namespace"], "deployment": r["deployment"],
                "service": r["service"], "revision": str(r["revision"]),
                "previous_revision": _opt_str(r.get("previous_revision")),
                "template_hash": r.get("template_hash"), "previous_template_hash": r.get("previous_template_hash"),
                "images": list(r.get("images") or []), "previous_images": list(r.get("previous_images") or []),
                "started_ts": ts, "started_seen": phase == "started", "phase": phase, "phase_ts": ts,
                "completed_ts": None, "failed_ts": None, "paused_ts": None, "rollback": phase == "rolled_back",
                "migration": r.get("migration"), "replicas": r.get("replicas"),
            }
        else:
            if phase == "started" or (phase == "rolled_back" and not cur["started_seen"]):
                if not cur["started_seen"] or ts < cur["started_ts"]:
                    cur["started_ts"] = ts
                cur["started_seen"] = True
            elif ts < cur["started_ts"] and not cur["started_seen"]:
                cur["started_ts"] = ts  # an earlier progress record arrived late
            for f in ("template_hash", "previous_template_hash", "previous_revision", "migration"):
                if r.get(f) and not cur.get(f):
                    cur[f] = r[f]
            if r.get("images") and not cur["images"]:
                cur["images"] = list(r["images"])
            if r.get("previous_images") and not cur["previous_images"]:
                cur["previous_images"] = list(r["previous_images"])
            if ts >= cur["phase_ts"]:
                cur["phase"], cur["phase_ts"] = phase, ts
                if r.get("replicas") is not None:
                    cur["replicas"] = r["replicas"]
        if phase == "rolled_back":
            cur["rollback"] = True
        # A newer revision of the same Deployment (a rollout, a rollback) ends the older ones.
        for other in self.rollouts.values():
            if (other is not cur and other["cluster"] == cur["cluster"] and other["namespace"] == cur["namespace"]
                    and other["deployment"] == cur["deployment"] and _rev_lt(other["revision"], cur["revision"])
                    and (other.get("superseded_ts") is None or ts < other["superseded_ts"])
                    and other["started_ts"] <= ts):
                other["superseded_ts"] = ts
        for name, field in (("completed", "completed_ts"), ("failed", "failed_ts"), ("paused", "paused_ts")):
            if phase == name and (cur[field] is None or ts < cur[field]):
                cur[field] = ts
        self.newest_ts = max(self.newest_ts, ts)
        self.prune(cfg)

    def apply_warning(self, w: Mapping[str, Any], cfg: CorrelationConfig = DEFAULT_CONFIG) -> None:
        """Merge one normalised Warning event (``streams.core.kube.normalise_event``). An Event's
        ``count`` is cumulative per uid, so repeats and redeliveries keep the highest count."""
        key = warning_key(w)
        last = float(w.get("last_ts") or w.get("first_ts") or 0.0)
        first = float(w.get("first_ts") or last)
        count = min(max(1, int(w.get("count") or 1)), 2**31 - 1)
        uid = str(w.get("uid") or "")
        cur = self.warnings.get(key)
        if cur is None:
            cur = self.warnings[key] = {
                "cluster": w["cluster"], "namespace": w["namespace"], "kind": w["kind"], "name": w["name"],
                "reason": w["reason"], "message": str(w.get("message") or "")[:300],
                "owner_kind": w.get("owner_kind"), "owner_name": w.get("owner_name"),
                "first_ts": first, "last_ts": last, "uids": {},
            }
        uids: dict[str, int] = cur["uids"]
        if count > uids.get(uid, 0):
            uids[uid] = count
        if len(uids) > cfg.max_uids_per_warning:
            # Keep the largest counts; the dropped uids are old recreations of the same Event.
            for k in sorted(uids, key=lambda u: (uids[u], u))[: len(uids) - cfg.max_uids_per_warning]:
                del uids[k]
        if first < cur["first_ts"]:
            cur["first_ts"] = first
        if last >= cur["last_ts"]:
            cur["last_ts"] = last
            if w.get("message"):
                cur["message"] = str(w["message"])[:300]
        self.newest_ts = max(self.newest_ts, last)
        self.prune(cfg)

    def prune(self, cfg: CorrelationConfig = DEFAULT_CONFIG) -> None:
        """Bound the state: drop what is older than the retention, then the oldest beyond the caps."""
        horizon = self.newest_ts - cfg.retention_s
        for k in [k for k, r in self.rollouts.items() if r["phase_ts"] < horizon]:
            del self.rollouts[k]
        for k in [k for k, w in self.warnings.items() if w["last_ts"] < horizon]:
            del self.warnings[k]
        if len(self.rollouts) > cfg.max_rollouts:
            for k in sorted(self.rollouts, key=lambda k: (self.rollouts[k]["phase_ts"], k))[
                : len(self.rollouts) - cfg.max_rollouts
            ]:
                del self.rollouts[k]
        if len(self.warnings) > cfg.max_warnings:
            for k in sorted(self.warnings, key=lambda k: (self.warnings[k]["last_ts"], k))[
                : len(self.warnings) - cfg.max_warnings
            ]:
                del self.warnings[k]


def _rev_lt(a: Any, b: Any) -> bool:
    """Deployment revisions are integers; anything else compares as text."""
    try:
        return int(a) < int(b)
    except (TypeError, ValueError):
        return str(a) < str(b)


def warning_count(w: Mapping[str, Any]) -> int:
    return sum(w["uids"].values()) or 1


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


# ---- which service an object belongs to -----------------------------------------------------------


def service_of_event(ev: Mapping[str, Any], services: Iterable[str]) -> str | None:
    """The service a normalised event belongs to: its ``service`` field (set by our bridge when it
    knows the owning Deployment), the object's labels ``app.kubernetes.io/name`` or ``app``
    (kubernetes-event-exporter sends them), else the longest known service name that the owning
    workload's or the object's name starts with (``playback-api-7d9f8c-x2x`` -> ``playback-api``).
    None when nothing matches: such events are not kept."""
    known = set(services)
    direct = ev.get("service")
    if isinstance(direct, str) and direct in known:
        return direct
    labels = ev.get("labels") or {}
    if isinstance(labels, Mapping):
        for label in ("app.kubernetes.io/name", "app"):
            v = labels.get(label)
            if isinstance(v, str) and v in known:
                return v
    best: str | None = None
    for name in (ev.get("owner_name"), ev.get("name")):
        if not isinstance(name, str):
            continue
        for s in known:
            if (name == s or name.startswith(s + "-")) and (best is None or len(s) > len(best)):
                best = s
        if best is not None:
            return best
    return None


def workload_of(kind: str, name: str, owner_kind: str | None = None, owner_name: str | None = None) -> str:
    """The Deployment-level name of an object: a Pod ``web-7d9f8c-x2x`` -> ``web``, a ReplicaSet
    ``web-7d9f8c`` -> ``web``. A best guess from the naming Kubernetes uses for Deployments."""
    if owner_kind == "ReplicaSet" and owner_name:
        return owner_name.rsplit("-", 1)[0] if "-" in owner_name else owner_name
    if owner_kind == "Deployment" and owner_name:
        return owner_name
    if kind == "Pod" and name.count("-") >= 2:
        return name.rsplit("-", 2)[0]
    if kind == "ReplicaSet" and "-" in name:
        return name.rsplit("-", 1)[0]
    return name


def _belongs_to_rollout(w: Mapping[str, Any], r: Mapping[str, Any]) -> bool:
    """Is the warning about an object of this rollout's Deployment (its new ReplicaSet's pods when the
    template hash is known)?"""
    if w["cluster"] != r["cluster"] or w["namespace"] != r["namespace"]:
        return False
    dep, kind, name = r["deployment"], w["kind"], w["name"]
    if kind == "Deployment":
        return bool(name == dep)
    h = r.get("template_hash")
    if h:
        prefix = f"{dep}-{h}"
        if kind == "ReplicaSet":
            return bool(name == prefix)
        if kind == "Pod":
            return bool(name.startswith(prefix + "-") or w.get("owner_name") == prefix)
    return bool(workload_of(kind, name, w.get("owner_kind"), w.get("owner_name")) == dep)


# ---- revision evidence ----------------------------------------------------------------------------


def revision_aliases(r: Mapping[str, Any], *, previous: bool) -> set[str]:
    """What a playback record's ``revision`` may say for this rollout's new (or previous) revision:
    the Deployment revision number, the pod-template-hash, a full image or its tag."""
    pre = "previous_" if previous else ""
    out: set[str] = set()
    for f in (f"{pre}revision", f"{pre}template_hash"):
        v = r.get(f)
        if v:
            out.add(str(v))
    for image in r.get(f"{pre}images") or []:
        out.add(image)
        tail = image.rsplit("/", 1)[-1]
        if "@" in tail:
            out.add(tail.split("@", 1)[1])
        elif ":" in tail:
            out.add(tail.rsplit(":", 1)[1])
    return out


RevisionCounts = Mapping[str, tuple[int, int]]  # playback revision -> (errors, total) in a window
# (cluster, start, end) -> (errors, total) per playback revision in that cluster over [start, end)
RevisionsOf = Callable[[str, float, float], RevisionCounts]


# ---- scoring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BurnContext:
    """The burning series an alert is about."""

    service: str
    cluster: str  # "*" when the SLO groups clusters away
    platform: str  # "kubernetes" | "legacy" | "*"
    onset_ts: float  # estimated start of the burn (event time)
    at: float  # event time of the evaluation that fired


def _fmt_age(seconds: float) -> str:
    s = round(abs(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _noisy_or(strengths: Iterable[float]) -> float:
    miss = 1.0
    for e in strengths:
        miss *= 1.0 - min(1.0, max(0.0, e))
    return 1.0 - miss


def time_strength(seconds_before_onset: float, cfg: CorrelationConfig = DEFAULT_CONFIG) -> float:
    """Evidence from timing alone: 0.6 for a rollout that started at the onset, decaying with the
    time between them (non-increasing in that time; negative times, inside the grace, count as 0)."""
    return 0.6 * math.exp(-max(0.0, seconds_before_onset) / cfg.proximity_tau_s)


def _rollout_suspect(r: Mapping[str, Any], ctx: BurnContext, warnings: Sequence[Mapping[str, Any]],
                     revisions: RevisionsOf, cfg: CorrelationConfig) -> dict[str, Any] | None:
    started = float(r["started_ts"])
    dt = ctx.onset_ts - started  # > 0: started before the onset
    completed = r.get("completed_ts")
    superseded = r.get("superseded_ts")
    ended = min(x for x in (completed, superseded, math.inf) if x is not None)
    in_progress = started <= ctx.onset_ts < ended
    if dt < -cfg.after_onset_grace_s or started > ctx.at:
        return None  # started after the burn began: a reaction to it, not its cause
    if dt > cfg.lookback_s and not (in_progress and dt <= cfg.in_progress_lookback_s):
        return None
    strengths: list[float] = []
    evidence: list[dict[str, Any]] = []
    ts_e = time_strength(dt, cfg)
    strengths.append(ts_e)
    when = f"{_fmt_age(dt)} before the burn began" if dt >= 0 else f"{_fmt_age(dt)} after the burn began"
    evidence.append({"type": "timing", "detail": f"rollout started {when}",
                     "seconds_before_onset": round(dt, 1), "strength": round(ts_e, 3)})
    phase_at_alert = "superseded" if superseded is not None and superseded <= ctx.at else r["phase"]
    if r.get("failed_ts") is not None and r["failed_ts"] <= ctx.at:
        strengths.append(0.4)
        evidence.append({"type": "rollout_failed", "detail": "the rollout failed its progress deadline",
                         "strength": 0.4})
    elif in_progress:
        strengths.append(0.3)
        evidence.append({"type": "in_progress", "detail": "the rollout was still in progress when the burn began",
                         "strength": 0.3})
    if r.get("paused_ts") is not None and r["paused_ts"] <= ctx.at:
        evidence.append({"type": "paused", "detail": "the rollout is paused", "strength": 0.0})
    weight = 1.0
    same_cluster = ctx.cluster in ("*", r["cluster"])
    if not same_cluster:
        weight *= cfg.other_cluster_weight
        evidence.append({"type": "other_cluster",
                         "detail": f"rolled out in {r['cluster']}, the burn is in {ctx.cluster}",
                         "weight": cfg.other_cluster_weight})
    if ctx.platform == "legacy":
        weight *= cfg.legacy_platform_weight
        evidence.append({"type": "platform", "detail": "the burn is on the legacy platform",
                         "weight": cfg.legacy_platform_weight})
    mig = r.get("migration")
    if isinstance(mig, Mapping) and mig.get("to") == "kubernetes" and ctx.platform in ("kubernetes", "*"):
        strengths.append(0.2)
        pct = mig.get("traffic_percent")
        evidence.append({"type": "migration_step",
                         "detail": f"migration step {mig.get('from', '?')} -> kubernetes"
                                   + (f" at {pct}% of traffic" if pct is not None else ""),
                         "migration": dict(mig), "strength": 0.2})
    # Revision evidence: the new revision's errors against the previous revision's.
    new_aliases = revision_aliases(r, previous=False)
    old_aliases = revision_aliases(r, previous=True) - new_aliases
    # Both revisions during the burn; when the previous one served too little then (the rollout
    # had completed), its own traffic before the burn is the baseline.
    during = revisions(r["cluster"], ctx.onset_ts, ctx.at + 1)
    new = _sum_revisions(during, new_aliases)
    old = _sum_revisions(during, old_aliases)
    old_when = "during the burn"
    if old.total < cfg.min_revision_events:
        before = revisions(r["cluster"], ctx.onset_ts - cfg.lookback_s, ctx.onset_ts)
        old = _sum_revisions(before, old_aliases)
        old_when = "before the burn"
    revision_note = ""
    if new.total >= cfg.min_revision_events:
        test = two_proportion_z(new, old)
        rev_ev: dict[str, Any] = {
            "type": "revision_error_ratio",
            "new": {"revision": r["revision"], "errors": new.bad, "total": new.total, "ratio": round(new.ratio, 6)},
            "old": ({"revision": r.get("previous_revision"), "errors": old.bad, "total": old.total,
                     "ratio": round(old.ratio, 6), "when": old_when} if old.total else None),
            "test": "one-sided two-proportion z-test",
            "z": round(test.z, 3), "p_value": float(f"{test.p_value:.3g}"),
        }
        if old.total >= cfg.min_revision_events:
            worse = (test.p_value < cfg.revision_p_value and test.ratio_of_ratios >= cfg.revision_min_ratio_x)
            if worse:
                strengths.append(0.9)
                rev_ev["strength"] = 0.9
                rev_ev["detail"] = (f"new revision {r['revision']} fails {new.ratio:.2%} of requests during "
                                    f"the burn, previous {r.get('previous_revision')} {old.ratio:.2%} {old_when}")
                revision_note = (f"; revision {r['revision']} errors {new.ratio:.1%} vs {old.ratio:.1%} on "
                                 f"revision {r.get('previous_revision')}")
            elif old.ratio >= 0.5 * new.ratio:
                weight *= cfg.exonerated_weight
                rev_ev["weight"] = cfg.exonerated_weight
                rev_ev["detail"] = (f"the previous revision fails as much ({old.ratio:.2%} vs {new.ratio:.2%}): "
                                    "the new revision does not explain the burn")
            else:
                rev_ev["detail"] = (f"new revision {new.ratio:.2%} vs previous {old.ratio:.2%}: "
                                    "not a significant difference")
        else:
            # Nothing left on the old revision to compare with: the new one alone serves the errors.
            if new.bad and new.ratio > 0:
                strengths.append(0.5)
                rev_ev["strength"] = 0.5
            rev_ev["detail"] = (f"new revision {r['revision']} fails {new.ratio:.2%} of requests; "
                                "too little traffic on the previous revision to compare")
        evidence.append(rev_ev)
    # Warnings of the rollout's own objects.
    mine = [w for w in warnings if _belongs_to_rollout(w, r) and w["last_ts"] >= started - 60]
    if mine:
        total = sum(warning_count(w) for w in mine)
        top = max(mine, key=lambda w: (REASON_WEIGHTS.get(w["reason"], DEFAULT_REASON_WEIGHT), warning_count(w)))
        rw = REASON_WEIGHTS.get(top["reason"], DEFAULT_REASON_WEIGHT)
        e = min(0.6, 0.3 * rw + 0.1 * math.log10(1 + total))
        strengths.append(e)
        evidence.append({"type": "k8s_warnings", "count": total, "strength": round(e, 3),
                         "detail": f"{total} Warning events on the rollout's own objects"})
        for w in sorted(mine, key=lambda w: (-warning_count(w), w["reason"], w["name"]))[:5]:
            evidence.append(_warning_evidence(w))
    score = weight * _noisy_or(strengths)
    images = ", ".join(_short_image(i) for i in r.get("images") or []) or "no image list"
    kind = "rollback" if r.get("rollback") else "rollout"
    summary = (f"{kind} of {r['namespace']}/{r['deployment']} to revision {r['revision']} ({images}) in "
               f"{r['cluster']}, started {when}{revision_note}")
    if mine:
        reasons = sorted({w["reason"] for w in mine})
        summary += f"; {sum(warning_count(w) for w in mine)} warnings ({', '.join(reasons[:3])})"
    return {
        "kind": "rollout",
        "score": round(score, 4),
        "summary": summary,
        "service": r["service"],
        "cluster": r["cluster"],
        "namespace": r["namespace"],
        "deployment": r["deployment"],
        "revision": r["revision"],
        "previous_revision": r.get("previous_revision"),
        "template_hash": r.get("template_hash"),  # what Argo Rollouts passes as the revision
        "images": list(r.get("images") or []),
        "previous_images": list(r.get("previous_images") or []),
        "phase": phase_at_alert,
        "rollback": bool(r.get("rollback")),
        "started_at": started,
        "same_cluster": same_cluster,
        "migration": dict(mig) if isinstance(mig, Mapping) else None,
        "evidence": evidence,
        "_warnings": [warning_key(w) for w in mine],
    }


def _short_image(image: str) -> str:
    return image.rsplit("/", 1)[-1]


def _sum_revisions(revisions: RevisionCounts, aliases: set[str]) -> Proportion:
    bad = total = 0
    for a in aliases:
        got = revisions.get(a)
        if got is not None:
            bad += got[0]
            total += got[1]
    return Proportion(bad, total)


def _warning_evidence(w: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "k8s_warning",
        "reason": w["reason"],
        "object": f"{w['kind']}/{w['name']}",
        "namespace": w["namespace"],
        "cluster": w["cluster"],
        "count": warning_count(w),
        "first_seen": w["first_ts"],
        "last_seen": w["last_ts"],
        "message": w.get("message") or "",
        "detail": f"{warning_count(w)}x {w['reason']} on {w['kind']}/{w['name']}",
    }


def _warning_suspects(warnings: Sequence[Mapping[str, Any]], ctx: BurnContext,
                      cfg: CorrelationConfig) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
    for w in warnings:
        wl = workload_of(w["kind"], w["name"], w.get("owner_kind"), w.get("owner_name"))
        groups.setdefault((w["cluster"], w["namespace"], wl, w["reason"]), []).append(w)
    out = []
    for (cluster, namespace, wl, reason), ws in groups.items():
        count = sum(warning_count(w) for w in ws)
        last = max(w["last_ts"] for w in ws)
        first = min(w["first_ts"] for w in ws)
        age = max(0.0, ctx.at - last)
        rw = REASON_WEIGHTS.get(reason, DEFAULT_REASON_WEIGHT)
        e = rw * min(0.5, 0.15 + 0.1 * math.log10(1 + count)) * math.exp(-age / cfg.warning_lookback_s)
        weight = 1.0
        same_cluster = ctx.cluster in ("*", cluster)
        if not same_cluster:
            weight *= cfg.other_cluster_weight
        if ctx.platform == "legacy":
            weight *= cfg.legacy_platform_weight
        objects = sorted({f"{w['kind']}/{w['name']}" for w in ws})
        evidence = [_warning_evidence(w) for w in sorted(ws, key=lambda w: (-warning_count(w), w["name"]))[:5]]
        evidence.insert(0, {"type": "timing",
                            "detail": f"first seen {_fmt_age(ctx.onset_ts - first)} "
                                      f"{'before' if first <= ctx.onset_ts else 'after'} the burn began, "
                                      f"last {_fmt_age(age)} before the alert"})
        out.append({
            "kind": "k8s_warning",
            "score": round(weight * e, 4),
            "summary": f"{count}x {reason} on {len(objects)} object{'s' if len(objects) != 1 else ''} of "
                       f"{namespace}/{wl} in {cluster}",
            "cluster": cluster,
            "namespace": namespace,
            "workload": wl,
            "reason": reason,
            "count": count,
            "objects": objects[:10],
            "first_seen": first,
            "last_seen": last,
            "same_cluster": same_cluster,
            "evidence": evidence,
        })
    return out


def correlate(ctx: BurnContext, changes: ServiceChanges | None, revisions: RevisionsOf,
              cfg: CorrelationConfig = DEFAULT_CONFIG) -> list[dict[str, Any]]:
    """Ranked suspects for a burn (best first, each with ``rank``, ``score`` in [0, 1] and
    ``evidence``); empty when nothing fits ("no suspect")."""
    if changes is None:
        return []
    warnings = [w for w in changes.warnings.values()
                if ctx.at - cfg.warning_lookback_s <= w["last_ts"] and w["first_ts"] <= ctx.at]
    suspects: list[dict[str, Any]] = []
    explained: set[str] = set()
    for r in changes.rollouts.values():
        if r.get("service") != ctx.service:
            continue  # never blame another service's rollout
        s = _rollout_suspect(r, ctx, warnings, revisions, cfg)
        if s is not None:
            explained.update(s.pop("_warnings"))
            suspects.append(s)
    rest = [w for w in warnings if warning_key(w) not in explained]
    suspects.extend(_warning_suspects(rest, ctx, cfg))
    suspects = [s for s in suspects if s["score"] >= cfg.min_score]
    suspects.sort(key=lambda s: (-s["score"], not s["same_cluster"], -float(s.get("started_at")
                                 or s.get("last_seen") or 0.0), s["summary"]))
    suspects = suspects[: cfg.max_suspects]
    for i, s in enumerate(suspects, 1):
        s["rank"] = i
    return suspects
