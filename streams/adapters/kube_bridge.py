"""The kube bridge: Deployments, ReplicaSets and Events of one cluster to ``k8s.rollouts`` and ``k8s.events``.

The only module that imports ``kubernetes`` (an import-linter contract). One thread per watched
resource (and per namespace when a list of namespaces is configured) runs list-then-watch:

- LIST (paged), hand every object to the pure trackers of :mod:`streams.core.kube`, publish what they
  return, then WATCH from the list's resourceVersion with ``allowWatchBookmarks`` and a server-side
  ``timeoutSeconds``;
- a watch that ends (timeout) or drops (connection reset, read timeout) resumes from the last
  resourceVersion whose records were published; bookmarks move that resourceVersion forward;
- ``410 Gone`` (an HTTP 410, or an ERROR watch event with code 410) relists: the trackers and the
  event deduper remember what went out, so a relist publishes only what changed meanwhile;
- other errors back off exponentially with jitter, capped (``SLO_STREAM_KUBE_BACKOFF_MAX``).

Records are published with a kafka-python producer (``acks="all"``, idempotent), flushed, and only
then does the tracker state or the resourceVersion advance: a record that failed to go out is
derived again when the watch resumes. Delivery is at least once; consumers key on the Event uid
and count, or on the rollout's revision and phase.

Credentials come from the in-cluster service account (when ``KUBERNETES_SERVICE_HOST`` is set and no
kubeconfig is given) or a kubeconfig; they appear in no log line.

Enforcement (``SLO_STREAM_ENFORCE=pause``, off by default): one more thread,
:class:`streams.adapters.enforcer.Enforcer`, reads ``slo.alerts`` and pauses a Deployment whose
rollout a page blames with high confidence, through :class:`DeploymentsClient` (GET and a merge
PATCH of ``spec.paused`` only: the bridge's only writes), recording each action on ``rollout.gates``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from streams.adapters import kafka_security
from streams.adapters.enforcer import ApiCallError, Enforcer
from streams.core import enforce, kube
from streams.core.backoff import backoff_s
from streams.core.errors import ConfigError, RecordError
from streams.core.wire import fields
from streams.core.wire.k8s_event import KubeEvent, event_record
from streams.settings import Settings, enforce_namespaces

log = logging.getLogger("slo_stream.kube_bridge")

EVENTS_CORE = "core/v1"
EVENTS_V1 = "events.k8s.io/v1"
EVENTS_APIS = ("auto", EVENTS_CORE, EVENTS_V1)
RESOURCES = ("deployments", "replicasets", "events")
_LIST_PAGE = 500
_CONNECT_TIMEOUT_S = 10.0
_LIST_READ_TIMEOUT_S = 60.0
_PUBLISH_TIMEOUT_S = 30.0
_PROGRESS_EVERY_S = 60.0
_WRITE_TIMEOUT_S = 15.0
FIELD_MANAGER = "slo-stream-enforcer"  # names the bridge in the Deployment's managedFields


class Gone(Exception):
    """The resourceVersion we asked for is older than the API server's history (410): relist."""


class WatchError(RuntimeError):
    """The API server ended a watch with an ERROR event other than 410. A retry may help."""

    retryable = True


class PublishError(RuntimeError):
    """Records could not be written to Kafka; nothing was marked as published. A retry may help."""

    retryable = True


def load_api_client(*, kubeconfig: str | None = None, context: str | None = None,
                    environ: Mapping[str, str] | None = None) -> client.ApiClient:
    """An API client for the in-cluster service account when ``KUBERNETES_SERVICE_HOST`` is set and
    no kubeconfig is named, else for ``kubeconfig`` (default ``$KUBECONFIG`` or ``~/.kube/config``)
    and ``context`` (default: its current context). Raises ConfigError without any credential in it."""
    env = os.environ if environ is None else environ
    cfg = client.Configuration()
    try:
        if kubeconfig is None and env.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
        else:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    except (ConfigException, OSError) as exc:
        where = "the in-cluster service account" if kubeconfig is None and env.get("KUBERNETES_SERVICE_HOST") \
            else f"kubeconfig {kubeconfig or env.get('KUBECONFIG') or '~/.kube/config'}"
        # The loader's messages name files, keys and contexts, never the credentials themselves.
        raise ConfigError(f"cannot load Kubernetes credentials from {where}: {str(exc)[:300]}") from None
    return client.ApiClient(configuration=cfg)


class DeploymentsClient:
    """GET and PATCH of one Deployment, for the enforcer: the only write the bridge ever makes, and
    only with ``SLO_STREAM_ENFORCE=pause`` (RBAC: get and patch on deployments, deploy/enforcement/)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._apps = client.AppsV1Api(api_client)

    def read(self, namespace: str, name: str) -> dict[str, Any]:
        """The Deployment's JSON as the API serves it now. Raises ApiCallError."""
        try:
            resp: Any = self._apps.read_namespaced_deployment(
                name, namespace, _preload_content=False, _request_timeout=(_CONNECT_TIMEOUT_S, _WRITE_TIMEOUT_S))
            try:
                doc = json.loads(resp.data)
            finally:
                resp.release_conn()
        except ApiException as exc:
            raise _api_error(exc) from exc
        except Exception as exc:  # connection refused or reset, timeouts, a proxy's HTML
            raise ApiCallError(None, _describe(exc), retryable=True) from exc
        if not isinstance(doc, dict):
            raise ApiCallError(None, "the Deployment is not a JSON object", retryable=True)
        return doc

    def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """PATCH ``body`` as a JSON merge patch (only what it names changes). Raises ApiCallError."""
        try:
            resp: Any = self._apps.patch_namespaced_deployment(
                name, namespace, dict(body), field_manager=FIELD_MANAGER,
                _content_type=enforce.PATCH_CONTENT_TYPE, _preload_content=False,
                _request_timeout=(_CONNECT_TIMEOUT_S, _WRITE_TIMEOUT_S))
            resp.release_conn()
        except ApiException as exc:
            raise _api_error(exc) from exc
        except Exception as exc:
            raise ApiCallError(None, _describe(exc), retryable=True) from exc


def _api_error(exc: ApiException) -> ApiCallError:
    status = exc.status or None
    # 409: the object changed under us, 429: throttled, 5xx: the server's trouble; the rest is ours.
    retryable = status is None or status in (409, 429) or status >= 500
    return ApiCallError(status, str(exc.reason or "")[:200], retryable=retryable)


@dataclass
class Stats:
    """Counters of one bridge (thread-safe); logged every minute and when it stops."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self.counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def summary(self) -> str:
        snap = self.snapshot()
        return ", ".join(f"{k}={v}" for k, v in sorted(snap.items())) or "nothing yet"


@dataclass
class _Cursor:
    """Where one watch loop stands: the resourceVersion up to which everything was published."""

    resource_version: str | None = None


class KubeBridge:
    """List+watch loops over one cluster, publishing to Kafka. :meth:`run` blocks until :meth:`stop`."""

    def __init__(self, settings: Settings, *, cluster: str, api_client: client.ApiClient,
                 namespaces: Sequence[str] = (), events_api: str = "auto",
                 producer: KafkaProducer | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        if events_api not in EVENTS_APIS:
            raise ConfigError(f"events API {events_api!r}: must be one of {', '.join(EVENTS_APIS)}")
        self.s = settings
        self.cluster = fields.check_cluster(cluster)
        self.api = api_client
        self.namespaces = tuple(dict.fromkeys(namespaces))
        self.events_api_setting = events_api
        self.events_api: str | None = None  # decided by discovery in run()
        self.stats = Stats()
        self.tracker = kube.RolloutTracker(cluster=self.cluster)
        self.deduper = kube.EventDeduper(max_entries=settings.kube_event_cache)
        self._producer = producer
        self._own_producer = producer is None
        self._clock = clock
        self._rng = rng or random.Random()
        self._stopping = threading.Event()
        self._rollouts_lock = threading.Lock()  # the tracker: Deployment and ReplicaSet threads
        self._events_lock = threading.Lock()  # the deduper: one events thread per namespace
        self._open: set[Any] = set()  # open watch responses, shut down by stop()
        self._open_lock = threading.Lock()
        self._stop_requested = False  # set by a signal handler (request_stop), read by run()
        self._cursors: dict[tuple[str, str | None], _Cursor] = {}
        self._threads: list[threading.Thread] = []
        self.ready = threading.Event()  # every loop has finished its first list
        self.enforcer: Enforcer | None = None
        if settings.enforce == enforce.Mode.PAUSE:
            allowed = enforce_namespaces(settings)
            outside = sorted(set(allowed) - set(self.namespaces)) if self.namespaces else []
            if outside:
                raise ConfigError(f"SLO_STREAM_ENFORCE_NAMESPACES names {', '.join(outside)}, which the bridge "
                                  "does not watch: it never sees their rollouts")
            config = enforce.EnforceConfig(min_score=settings.enforce_min_score,
                                           namespaces=frozenset(allowed or self.namespaces),
                                           max_alert_age_s=float(settings.enforce_max_alert_age_s))
            self.enforcer = Enforcer(settings, cluster=self.cluster, deployments=DeploymentsClient(api_client),
                                     publish=self._publish, config=config, stopping=self._stopping,
                                     count=self.stats.add, clock=clock, rng=self._rng)

    # ---- public ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask every loop to end; open watches are shut down so no thread waits on a socket."""
        self._stopping.set()
        with self._open_lock:
            responses = list(self._open)
        for resp in responses:
            _shutdown(resp)

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop, from a signal handler: takes no lock. A handler that calls
        :meth:`stop` can deadlock: it runs in the main thread, which may hold the very lock that
        ``Event.set`` takes (inside ``Event.wait``), or be inside an earlier call (a second SIGTERM)."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def resource_version(self, resource: str, namespace: str | None = None) -> str | None:
        """The resourceVersion up to which ``resource`` (in ``namespace``) is published."""
        cursor = self._cursors.get((resource, namespace))
        return cursor.resource_version if cursor else None

    def run(self) -> None:
        """Discover the events API, start the loops, wait for :meth:`stop`, then flush and close."""
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.s.bootstrap, acks="all", linger_ms=5,
                client_id=f"{self.s.app_id}-kube-bridge-{self.cluster}",
                request_timeout_ms=int(_PUBLISH_TIMEOUT_S * 1000),
                **kafka_security.kafka_python(kafka_security.from_settings(self.s)))
        try:
            self.events_api = self._discover_events_api()
            if self.events_api is None:
                return  # stopped during discovery
            scopes: list[str | None] = list(self.namespaces) or [None]
            log.info("kube bridge for cluster %s: %s, events from %s, to %s and %s", self.cluster,
                     "namespaces " + ", ".join(self.namespaces) if self.namespaces else "all namespaces",
                     self.events_api, self.s.topic_k8s_rollouts, self.s.topic_k8s_events)
            listed = _Latch(len(RESOURCES) * len(scopes), self.ready)
            for resource in RESOURCES:
                for ns in scopes:
                    self._cursors[(resource, ns)] = _Cursor()
                    t = threading.Thread(target=self._loop, args=(resource, ns, listed),
                                         name=f"kube-{resource}-{ns or 'all'}", daemon=True)
                    self._threads.append(t)
                    t.start()
            if self.enforcer is not None:
                t = threading.Thread(target=self._enforce, name="kube-enforcer", daemon=True)
                self._threads.append(t)
                t.start()
            next_progress = time.monotonic() + _PROGRESS_EVERY_S
            announced = False
            while not self._stop_requested and not self._stopping.wait(timeout=0.2):
                if self.ready.is_set() and not announced:
                    announced = True
                    log.info("initial lists published: %s", self.stats.summary())
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + _PROGRESS_EVERY_S
                    log.info("progress: %s", self.stats.summary())
        finally:
            self.stop()
            for t in self._threads:
                t.join(timeout=10)
            if self._own_producer and self._producer is not None:
                try:
                    self._producer.flush(timeout=_PUBLISH_TIMEOUT_S)
                finally:
                    self._producer.close(timeout=5)
            log.info("kube bridge stopped: %s", self.stats.summary())

    def _enforce(self) -> None:
        """The enforcer's loop, started again after a failure (Kafka unreachable, ...) with backoff."""
        assert self.enforcer is not None
        attempt = 0
        while not self._stopping.is_set():
            try:
                self.enforcer.run()
                return
            except Exception as exc:
                if self._stopping.is_set():
                    return
                attempt += 1
                self.stats.add("errors_enforcer")
                self._pause(attempt, f"enforcer: {_describe(exc)}")

    # ---- discovery -------------------------------------------------------------------------------

    def _discover_events_api(self) -> str | None:
        """events.k8s.io/v1 when the API server serves it (``GET /apis``), else core/v1: the same
        Events either way, so only one of them is watched (never both: that would publish each twice)."""
        if self.events_api_setting != "auto":
            return self.events_api_setting
        attempt = 0
        while not self._stopping.is_set() and not self._stop_requested:  # runs in the main thread
            try:
                resp: Any = client.ApisApi(self.api).get_api_versions(  # the raw response, not a model
                    _preload_content=False, _request_timeout=(_CONNECT_TIMEOUT_S, _LIST_READ_TIMEOUT_S))
                doc = json.loads(resp.data)
                for group in doc.get("groups") or []:
                    if group.get("name") == "events.k8s.io" and any(
                            v.get("version") == "v1" for v in group.get("versions") or []):
                        return EVENTS_V1
                return EVENTS_CORE
            except ApiException as exc:
                if exc.status in (401, 403, 404):
                    log.warning("API discovery (GET /apis) answered %s %s: watching core/v1 Events",
                                exc.status, exc.reason)
                    return EVENTS_CORE
                attempt += 1
                self._pause(attempt, f"API discovery failed: {exc.status} {exc.reason}")
            except Exception as exc:  # connection refused, timeouts, a proxy's HTML
                attempt += 1
                self._pause(attempt, f"API discovery failed: {_describe(exc)}")
        return None

    # ---- the loop --------------------------------------------------------------------------------

    def _loop(self, resource: str, namespace: str | None, listed: _Latch) -> None:
        cursor = self._cursors[(resource, namespace)]
        what = f"{resource} in {namespace or 'all namespaces'}"
        failures = 0
        gone_in_a_row = 0
        first_list = True
        while not self._stopping.is_set():
            try:
                if cursor.resource_version is None:
                    cursor.resource_version = self._list(resource, namespace, relist=not first_list)
                    if first_list:
                        first_list = False
                        listed.count_down()
                    failures = 0
                self._watch(resource, namespace, cursor)
                failures = 0
                gone_in_a_row = 0
                continue  # the server ended the watch (timeoutSeconds): resume at once
            except Gone:
                gone_in_a_row += 1
                self.stats.add(f"relists_{resource}")
                log.info("%s: resourceVersion %s is too old (410 Gone): relisting", what,
                         cursor.resource_version)
                cursor.resource_version = None
                if gone_in_a_row < 2:
                    continue
                failures += 1
                reason = "410 Gone again right after a relist"
            except ApiException as exc:
                if exc.status == 410:
                    self.stats.add(f"relists_{resource}")
                    log.info("%s: resourceVersion %s is too old (HTTP 410): relisting", what,
                             cursor.resource_version)
                    cursor.resource_version = None
                    gone_in_a_row += 1
                    if gone_in_a_row < 2:
                        continue
                    reason = "410 Gone again right after a relist"
                elif exc.status in (401, 403):
                    reason = (f"{exc.status} {exc.reason}: the bridge needs get, list and watch on {resource} "
                              "(docs/kube-bridge.md, RBAC)")
                else:
                    reason = f"{exc.status} {exc.reason}"
                failures += 1
            except PublishError as exc:
                failures += 1
                reason = f"publishing failed, resuming from {cursor.resource_version}: {exc}"
            except Exception as exc:  # dropped connections, read timeouts, bad JSON, an ERROR event
                if self._stopping.is_set():
                    break
                failures += 1
                reason = _describe(exc)
            if self._stopping.is_set():
                break
            self.stats.add(f"errors_{resource}")
            self._pause(failures, f"{what}: {reason}")
        if first_list:
            listed.count_down()

    def _pause(self, attempt: int, why: str) -> None:
        wait = min(self.s.kube_backoff_max_s, backoff_s(attempt, base_s=0.2, cap_s=self.s.kube_backoff_max_s,
                                                        jitter=self._rng.random()))
        log.warning("%s; retry %d in %.1fs", why, attempt, wait)
        deadline = time.monotonic() + wait
        # In slices: discovery backs off in the main thread, where only request_stop() can reach it.
        while not self._stop_requested and time.monotonic() < deadline:
            if self._stopping.wait(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                return

    def _api_call(self, resource: str, namespace: str | None) -> Callable[..., Any]:
        if resource == "deployments":
            apps = client.AppsV1Api(self.api)
            return apps.list_namespaced_deployment if namespace else apps.list_deployment_for_all_namespaces
        if resource == "replicasets":
            apps = client.AppsV1Api(self.api)
            return apps.list_namespaced_replica_set if namespace else apps.list_replica_set_for_all_namespaces
        if self.events_api == EVENTS_V1:
            ev = client.EventsV1Api(self.api)
            return ev.list_namespaced_event if namespace else ev.list_event_for_all_namespaces
        core = client.CoreV1Api(self.api)
        return core.list_namespaced_event if namespace else core.list_event_for_all_namespaces

    def _list(self, resource: str, namespace: str | None, *, relist: bool) -> str:
        """LIST every page, publish what the objects imply, return the list's resourceVersion."""
        call = self._api_call(resource, namespace)
        scope: dict[str, Any] = {"namespace": namespace} if namespace else {}
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            resp = call(**scope, limit=_LIST_PAGE, _continue=token, _preload_content=False,
                        _request_timeout=(_CONNECT_TIMEOUT_S, _LIST_READ_TIMEOUT_S))
            try:
                doc = json.loads(resp.data)
            finally:
                resp.release_conn()
            items.extend(i for i in doc.get("items") or [] if isinstance(i, dict))
            meta = doc.get("metadata") or {}
            token = meta.get("continue") or None
            if token is None:
                break
        rv = meta.get("resourceVersion")
        if not isinstance(rv, str) or not rv:
            raise WatchError(f"the {resource} list carries no resourceVersion")
        kind, api_version = _kind_of(resource, self.events_api)
        for item in items:  # list items come without kind and apiVersion; published values carry them
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        self._handle(resource, [("ADDED", item) for item in items])
        if resource == "deployments":
            present = {(i["metadata"].get("namespace"), i["metadata"].get("name")) for i in items
                       if isinstance(i.get("metadata"), dict)}
            with self._rollouts_lock:
                for ns, name in self.tracker.retain(present, namespace=namespace):
                    log.info("deployment %s/%s is gone (not in the relist)", ns, name)
        self.stats.add(f"{'relisted' if relist else 'listed'}_{resource}", len(items))
        log.info("%s %d %s in %s at resourceVersion %s", "relisted" if relist else "listed", len(items),
                 resource, namespace or "all namespaces", rv)
        return rv

    def _watch(self, resource: str, namespace: str | None, cursor: _Cursor) -> None:
        """WATCH from ``cursor`` until the server ends the stream; advance the cursor as objects are
        published and bookmarks arrive. Raises :class:`Gone` on 410."""
        call = self._api_call(resource, namespace)
        scope: dict[str, Any] = {"namespace": namespace} if namespace else {}
        timeout = self.s.kube_watch_timeout_s
        resp = call(**scope, watch=True, resource_version=cursor.resource_version, allow_watch_bookmarks=True,
                    timeout_seconds=timeout, _preload_content=False,
                    _request_timeout=(_CONNECT_TIMEOUT_S, timeout + 30.0))
        with self._open_lock:
            self._open.add(resp)
        try:
            if self._stopping.is_set():
                return
            for line in _lines(resp):
                if self._stopping.is_set():
                    return
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object")
                if not isinstance(obj, dict):
                    raise WatchError(f"watch event {kind} without an object")
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message"))
                    raise WatchError(f"watch ERROR {obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._handle(resource, [(kind, obj)])
                elif kind == "BOOKMARK":
                    self.stats.add(f"bookmarks_{resource}")
                if isinstance(rv, str) and rv:
                    cursor.resource_version = rv
        finally:
            with self._open_lock:
                self._open.discard(resp)
            resp.release_conn()

    # ---- objects to records ----------------------------------------------------------------------

    def _handle(self, resource: str, items: list[tuple[str, dict[str, Any]]]) -> None:
        if resource == "events":
            self._handle_events(items)
        else:
            self._handle_rollouts(resource, items)

    def _skip(self, resource: str, obj: Mapping[str, Any], exc: RecordError) -> None:
        raw = obj.get("metadata")
        meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        self.stats.add(f"skipped_{resource}_{exc.reason}")
        log.warning("skipped %s %s/%s: %s", resource, str(meta.get("namespace"))[:64],
                    str(meta.get("name"))[:253], exc)

    def _handle_rollouts(self, resource: str, items: list[tuple[str, dict[str, Any]]]) -> None:
        now = self._clock()
        with self._rollouts_lock:
            observations: list[kube.Observation] = []
            deleted: list[tuple[str, str]] = []
            for kind, obj in items:
                try:
                    if resource == "deployments":
                        if kind == "DELETED":
                            meta = obj.get("metadata") or {}
                            deleted.append((str(meta.get("namespace")), str(meta.get("name"))))
                            continue
                        observations.append(self.tracker.observe_deployment(obj, now=now))
                    elif kind != "DELETED":  # a deleted ReplicaSet's revision stays in the history
                        observations.append(self.tracker.observe_replicaset(obj, now=now))
                except RecordError as exc:
                    self._skip(resource, obj, exc)
            records = [r for obs in observations for r in obs.records]
            self._publish([(self.s.topic_k8s_rollouts, r.key, r.to_json()) for r in records])
            for obs in observations:
                self.tracker.commit(obs)
            for ns, name in deleted:
                self.tracker.forget(ns, name)
        for r in records:
            self.stats.add(f"rollouts_{r.phase}")
            log.info("rollout %s: %s revision %s (%s -> %s)", r.phase, r.key, r.revision, r.previous_revision,
                     r.revision)

    def _handle_events(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        now = self._clock()
        max_age = self.s.kube_event_max_age_s
        with self._events_lock:
            out: list[tuple[str, str, Mapping[str, Any]]] = []
            seen: list[KubeEvent] = []
            forget: list[str] = []
            for kind, obj in items:
                if kind == "DELETED":  # expired (1 h TTL by default): nothing to tell, stop remembering
                    uid = (obj.get("metadata") or {}).get("uid")
                    if isinstance(uid, str):
                        forget.append(uid)
                    continue
                try:
                    key, value, norm = event_record(obj, cluster=self.cluster)
                except RecordError as exc:
                    self._skip("events", obj, exc)
                    continue
                if not self.deduper.is_new(norm):
                    self.stats.add("events_already_published")
                    continue
                seen.append(norm)
                if max_age and now - norm.last_ts > max_age:
                    self.stats.add("events_too_old")
                    continue
                out.append((self.s.topic_k8s_events, key, value))
            self._publish(out)
            for norm in seen:
                self.deduper.remember(norm)
            for uid in forget:
                self.deduper.forget(uid)
        if out:
            self.stats.add("events_published", len(out))

    def _publish(self, messages: list[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Send, flush, and check every record; raise :class:`PublishError` if any did not go out."""
        if not messages:
            return
        producer = self._producer
        assert producer is not None
        try:
            futures = [producer.send(topic, key=key.encode(), value=orjson.dumps(value))
                       for topic, key, value in messages]
            producer.flush(timeout=_PUBLISH_TIMEOUT_S)
            for fut in futures:
                fut.get(timeout=0)
        except KafkaError as exc:
            self.stats.add("publish_failures")
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc


def _lines(resp: Any) -> Iterator[str]:
    """Lines of a streamed (chunked) watch response, as they arrive."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line.decode("utf-8", errors="replace")
    if buffer.strip():
        yield buffer.decode("utf-8", errors="replace")


def _shutdown(resp: Any) -> None:
    try:
        resp.shutdown()
    except Exception:
        try:
            resp.close()
        except Exception as exc:
            log.debug("closing a watch response: %s", exc)


class _Latch:
    """Counts the loops that finished their first list; sets ``done`` when all have."""

    def __init__(self, n: int, done: threading.Event) -> None:
        self._n = n
        self._lock = threading.Lock()
        self._done = done

    def count_down(self) -> None:
        with self._lock:
            self._n -= 1
            if self._n <= 0:
                self._done.set()


def _kind_of(resource: str, events_api: str | None) -> tuple[str, str]:
    if resource == "deployments":
        return "Deployment", "apps/v1"
    if resource == "replicasets":
        return "ReplicaSet", "apps/v1"
    return "Event", "events.k8s.io/v1" if events_api == EVENTS_V1 else "v1"


def _describe(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:300]}"
