"""A small fake Kubernetes API server on loopback, for the kube bridge's tests.

It serves what the bridge uses, in the real JSON shapes: discovery (``/api``, ``/apis``), LIST and
WATCH of Deployments and ReplicaSets (apps/v1) and Events (core/v1, and the same Events as
events.k8s.io/v1 when that group is enabled), all namespaces or one.

- LIST answers every object with the current ``metadata.resourceVersion`` (one counter for every
  kind, as etcd has).
- WATCH streams ``{"type", "object"}`` lines (chunked) for changes after ``resourceVersion``, then
  waits for more; honours ``timeoutSeconds`` (ends the stream cleanly, after a BOOKMARK) and
  ``allowWatchBookmarks`` (BOOKMARK events on :meth:`FakeKube.send_bookmarks` and at the end).
- A test can push changes (:meth:`apply`, :meth:`delete`), drop open watches abruptly
  (:meth:`drop_watches`: the socket is shut down mid-stream), compact the history (:meth:`compact`:
  older resourceVersions then get 410 Gone, as an ERROR watch event or as an HTTP 410, ``gone=``),
  and read every request it answered (:attr:`requests`).
- A bearer token is required when ``token`` is set (401 otherwise).
- GET and PATCH of one Deployment (``.../deployments/NAME``): a PATCH applies a JSON merge patch
  (``application/merge-patch+json``, or ``strategic-merge-patch+json``, the same for what the
  bridge sends), bumps ``metadata.generation`` when the spec changes, and is seen by watches.
  Each request records its verb, content type, body and bearer token.
- A fake RBAC (``grants``: token -> ``(api group, resource, verb)`` triples, e.g. from a ClusterRole
  with :func:`rules_of`): a token not in it gets 401, a request its rules do not allow 403.
  Discovery is open to every authenticated token (``system:discovery``).

:class:`Controller` plays the deployment controller on top of it: it creates Deployments with their
ReplicaSets and walks rollouts through the states the real controller writes, in the same order.
"""

from __future__ import annotations

import copy
import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.waiting import wait_for

KINDS = {
    "deployments": ("apps/v1", "Deployment"),
    "replicasets": ("apps/v1", "ReplicaSet"),
    "events": ("v1", "Event"),
}


def now_iso(offset_s: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_iso(offset_s: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Request:
    """One request the fake answered."""

    method: str
    path: str
    query: dict[str, str]
    resource: str | None  # deployments | replicasets | events | events.k8s.io | None (discovery)
    namespace: str | None
    watch: bool
    status: int
    at: float = field(default_factory=time.monotonic)
    verb: str = ""  # get | list | watch | patch ("" for discovery)
    name: str | None = None  # of one object (GET or PATCH of a Deployment)
    content_type: str | None = None
    body: Any = None  # the request body, parsed JSON (or the raw text when it is not JSON)
    token: str | None = None  # the bearer token it carried

    @property
    def resource_version(self) -> str | None:
        return self.query.get("resourceVersion")


class _Stop(Exception):
    pass


Grant = tuple[str, str, str]  # (api group, resource, verb); "" is the core group, "*" matches any


def rules_of(role: Mapping[str, Any]) -> set[Grant]:
    """The grants of a ClusterRole or Role document (its ``rules``), verbs and resources as written."""
    out: set[Grant] = set()
    for rule in role.get("rules") or []:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    out.add((group, resource, verb))
    return out


def _allowed(grants: Iterable[Grant], group: str, resource: str, verb: str) -> bool:
    return any(g in ("*", group) and r in ("*", resource) and v in ("*", verb) for g, r, v in grants)


class FakeKube:
    def __init__(self, *, token: str | None = "fake-token", events_v1: bool = True, gone: str = "event",
                 grants: Mapping[str, Iterable[Grant]] | None = None) -> None:
        assert gone in ("event", "http")
        self.token = token
        # None: ``token`` may do anything; else each token's grants (and ``token`` must be one of them)
        self.grants = {t: set(g) for t, g in grants.items()} if grants is not None else None
        self.events_v1 = events_v1
        self.gone = gone
        self.requests: list[Request] = []
        self._cond = threading.Condition()
        self._rv = 100
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k: {} for k in KINDS}
        self._log: dict[str, list[tuple[int, str, dict[str, Any]]]] = {k: [] for k in KINDS}
        self._compacted = 0  # watches from a resourceVersion below this get 410
        self._drop_epoch = 0
        self._drop_filter: str | None = None
        self._bookmark_epoch = 0
        self._held = False
        self._open_watches = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeKube:
        fake = self

        class Handler(_Handler):
            kube = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.drop_watches()
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: Any, *, context: str = "fake", token: str | None = None) -> str:
        """Write a kubeconfig for this server (bearer ``token``, default :attr:`token`) to ``path``."""
        token = token or self.token
        user: dict[str, Any] = {"token": token} if token else {}
        doc = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "fake-cluster", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": user}],
            "contexts": [{"name": context, "context": {"cluster": "fake-cluster", "user": "tester"}}],
            "current-context": context,
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)  # JSON is YAML
        return str(path)

    # ---- state the tests drive --------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def apply(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (by namespace and name); return the stored copy."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        api_version, kind = KINDS[resource]
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        with self._cond:
            old = self._objects[resource].get(key)
            meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", old["metadata"]["creationTimestamp"] if old else now_iso())
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            self._objects[resource][key] = obj
            self._log[resource].append((self._rv, "MODIFIED" if old else "ADDED", copy.deepcopy(obj)))
            self._cond.notify_all()
            return copy.deepcopy(obj)

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            return copy.deepcopy(self._objects[resource][(namespace, name)])

    def merge_patch(self, resource: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7386) to a stored object, as the API server does: a spec
        change bumps ``metadata.generation``; watches see a MODIFIED. KeyError when it does not exist."""
        with self._cond:
            obj = copy.deepcopy(self._objects[resource][(namespace, name)])
            before = copy.deepcopy(obj.get("spec"))
            merged = _merge(obj, patch)
            if merged.get("spec") != before and isinstance(merged["metadata"].get("generation"), int):
                merged["metadata"]["generation"] += 1
            return self.apply(resource, merged)

    def patches(self) -> list[Request]:
        """Every PATCH request the server received (answered or refused), in order."""
        with self._cond:
            return [r for r in self.requests if r.method == "PATCH"]

    def delete(self, resource: str, namespace: str, name: str) -> None:
        with self._cond:
            obj = self._objects[resource].pop((namespace, name))
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._log[resource].append((self._rv, "DELETED", obj))
            self._cond.notify_all()

    def compact(self) -> int:
        """Forget the change history: a watch from any older resourceVersion now gets 410 Gone."""
        with self._cond:
            self._compacted = self._rv
            for entries in self._log.values():
                entries.clear()
            return self._rv

    def drop_watches(self, resource: str | None = None) -> None:
        """Shut down open watch connections (of ``resource``, or all) without ending the stream."""
        with self._cond:
            self._drop_epoch += 1
            self._drop_filter = resource
            self._cond.notify_all()

    def hold_watches(self, held: bool = True) -> None:
        """While held, open watches send nothing (changes pile up, as behind a stalled connection)."""
        with self._cond:
            self._held = held
            self._cond.notify_all()

    def send_bookmarks(self) -> None:
        """Every open watch that allows bookmarks gets one with the current resourceVersion."""
        with self._cond:
            self._bookmark_epoch += 1
            self._cond.notify_all()

    def changes(self, since: int = 0, resources: tuple[str, ...] = ("deployments", "replicasets")
                ) -> list[tuple[int, str, str, dict[str, Any]]]:
        """``(resourceVersion, resource, type, object)`` of every change after ``since``, in order
        (what watches would deliver; unit tests feed it to the trackers without a server)."""
        with self._cond:
            out = [(rv, res, kind, copy.deepcopy(obj)) for res in resources for rv, kind, obj in self._log[res]
                   if rv > since]
        return sorted(out, key=lambda e: e[0])

    @property
    def open_watches(self) -> int:
        with self._cond:
            return self._open_watches

    # ---- request log ------------------------------------------------------------------------------

    def requests_for(self, resource: str, *, watch: bool | None = None) -> list[Request]:
        with self._cond:
            return [r for r in self.requests if r.resource == resource and (watch is None or r.watch == watch)]

    def wait_for(self, cond: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
        wait_for(cond, what, timeout_s)

    # ---- internals --------------------------------------------------------------------------------

    def _record(self, req: Request) -> None:
        with self._cond:
            self.requests.append(req)

    def _list(self, resource: str, namespace: str | None, view: str) -> dict[str, Any]:
        with self._cond:
            items = [copy.deepcopy(o) for (ns, _), o in sorted(self._objects[resource].items())
                     if namespace is None or ns == namespace]
            rv = self._rv
        if view == "events.k8s.io":
            items = [to_events_v1(o) for o in items]
            api_version, kind = "events.k8s.io/v1", "EventList"
        else:
            api_version, kind = KINDS[resource][0], KINDS[resource][1] + "List"
        for item in items:  # a real list carries kind and apiVersion on the list only
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": str(rv)}, "items": items}

    def _stream(self, resource: str, namespace: str | None, view: str, since: int, bookmarks: bool,
                timeout_s: float) -> Iterator[dict[str, Any] | None]:
        """Watch events after ``since``; None means: drop the connection now."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            drop_epoch = self._drop_epoch
            bookmark_epoch = self._bookmark_epoch
            self._open_watches += 1
        pos = since
        try:
            while True:
                with self._cond:
                    while True:
                        pending = [] if self._held else [e for e in self._log[resource] if e[0] > pos]
                        dropped = self._drop_epoch != drop_epoch and self._drop_filter in (None, resource)
                        marked = self._bookmark_epoch != bookmark_epoch and not self._held
                        left = deadline - time.monotonic()
                        if pending or dropped or marked or left <= 0:
                            break
                        self._cond.wait(timeout=min(left, 0.5))
                    bookmark_epoch = self._bookmark_epoch
                    current = self._rv
                    held = self._held
                if dropped:
                    yield None
                    return
                for rv, kind, obj in pending:
                    pos = rv
                    if namespace is not None and obj["metadata"].get("namespace") != namespace:
                        continue
                    yield {"type": kind, "object": to_events_v1(obj) if view == "events.k8s.io" else obj}
                if (marked or left <= 0) and bookmarks and not held:
                    api_version, kind_name = ("events.k8s.io/v1", "Event") if view == "events.k8s.io" \
                        else KINDS[resource]
                    pos = max(pos, current)
                    yield {"type": "BOOKMARK", "object": {"kind": kind_name, "apiVersion": api_version,
                                                          "metadata": {"resourceVersion": str(pos)}}}
                if left <= 0:
                    return
        finally:
            with self._cond:
                self._open_watches -= 1


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


_GROUPS = {"core": "", "apps": "apps", "events.k8s.io": "events.k8s.io"}
_MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _json(self, code: int, body: dict[str, Any], req: Request | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

    def _authorize(self, token: str | None, group: str, resource: str | None, verb: str, namespace: str | None,
                   name: str | None) -> int:
        """200, or 401 (unknown token) / 403 (the fake RBAC does not allow it); answers the error."""
        known = token is not None and (token in self.kube.grants if self.kube.grants is not None
                                       else token == self.kube.token)
        if (self.kube.token or self.kube.grants is not None) and not known:
            self._json(401, _status(401, "Unauthorized", "Unauthorized"))
            return 401
        if self.kube.grants is None or resource is None or token is None:
            return 200
        if _allowed(self.kube.grants[token], group, resource, verb):
            return 200
        what = f'{resource}{"." + group if group else ""}' + (f' "{name}"' if name else "")
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        self._json(403, _status(403, "Forbidden", f'{what} is forbidden: User "system:serviceaccount:test:bridge" '
                                                  f'cannot {verb} resource "{resource}" in API group "{group}"{where}'))
        return 403

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        watch = query.get("watch") in ("true", "1")
        named = _route_deployment(parts)
        if named is not None:
            self._deployment("GET", url.path, query, *named)
            return
        resource, namespace, view = _route(parts, self.kube.events_v1)
        verb = "" if resource is None else "watch" if watch else "list"
        token = self._bearer()

        def record(status: int) -> None:
            self.kube._record(Request("GET", url.path, query, view if view == "events.k8s.io" else resource,
                                      namespace, watch, status, verb=verb, token=token))

        status = self._authorize(token, _GROUPS.get(view, ""), resource, verb, namespace, None)
        if status != 200:
            record(status)
            return
        if parts == ["api"]:
            record(200)
            self._json(200, {"kind": "APIVersions", "versions": ["v1"],
                             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "fake:443"}]})
            return
        if parts == ["apis"]:
            record(200)
            self._json(200, _groups(self.kube.events_v1))
            return
        if resource is None:
            record(404)
            self._json(404, _status(404, "NotFound", f"the server could not find the requested resource ({url.path})"))
            return
        if not watch:
            record(200)
            self._json(200, self.kube._list(resource, namespace, view))
            return
        self._watch(resource, namespace, view, query, record)

    def do_PATCH(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        named = _route_deployment([p for p in url.path.split("/") if p])
        if named is None:
            self._read_body()
            self.kube._record(Request("PATCH", url.path, query, None, None, False, 405, verb="patch",
                                      token=self._bearer()))
            self._json(405, _status(405, "MethodNotAllowed", "the fake patches Deployments only"))
            return
        self._deployment("PATCH", url.path, query, *named)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _deployment(self, method: str, path: str, query: dict[str, str], namespace: str, name: str) -> None:
        """GET or PATCH one Deployment."""
        token = self._bearer()
        verb = "get" if method == "GET" else "patch"
        raw = self._read_body() if method == "PATCH" else b""
        content_type = self.headers.get("Content-Type")
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", errors="replace")

        def record(status: int) -> None:
            self.kube._record(Request(method, path, query, "deployments", namespace, False, status, verb=verb,
                                      name=name, content_type=content_type if method == "PATCH" else None,
                                      body=body, token=token))

        status = self._authorize(token, "apps", "deployments", verb, namespace, name)
        if status != 200:
            record(status)
            return
        if method == "PATCH":
            base_type = (content_type or "").split(";")[0].strip()
            if base_type not in _MERGE_TYPES:
                record(415)
                self._json(415, _status(415, "UnsupportedMediaType", f"the fake applies merge patches only, "
                                                                     f"not {content_type!r}"))
                return
            if not isinstance(body, dict):
                record(400)
                self._json(400, _status(400, "BadRequest", "a merge patch must be a JSON object"))
                return
        try:
            obj = self.kube.merge_patch("deployments", namespace, name, body) if method == "PATCH" \
                else self.kube.get("deployments", namespace, name)
        except KeyError:
            record(404)
            self._json(404, _status(404, "NotFound", f'deployments.apps "{name}" not found'))
            return
        record(200)
        self._json(200, obj)

    def _watch(self, resource: str, namespace: str | None, view: str, query: dict[str, str],
               record: Callable[[int], None]) -> None:
        raw_rv = query.get("resourceVersion", "")
        since = int(raw_rv) if raw_rv.isdigit() else self.kube.resource_version
        timeout_s = float(query.get("timeoutSeconds", "1800"))
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        too_old = 0 < since < self.kube._compacted
        message = f"too old resource version: {since} ({self.kube._compacted})"
        if too_old and self.kube.gone == "http":
            record(410)
            self._json(410, _status(410, "Expired", message))
            return
        record(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if too_old:
                self._chunk({"type": "ERROR", "object": _status(410, "Expired", message)})
            else:
                for event in self.kube._stream(resource, namespace, view, since, bookmarks, timeout_s):
                    if event is None:  # abrupt: no last chunk, the socket just goes away
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self._chunk(event)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _route(parts: list[str], events_v1: bool) -> tuple[str | None, str | None, str]:
    """(resource, namespace, view) of a collection path, or (None, None, "") for anything else."""
    namespace = None
    if parts[:2] == ["api", "v1"]:
        rest, view = parts[2:], "core"
        allowed = {"events"}
    elif parts[:3] == ["apis", "apps", "v1"]:
        rest, view = parts[3:], "apps"
        allowed = {"deployments", "replicasets"}
    elif parts[:3] == ["apis", "events.k8s.io", "v1"] and events_v1:
        rest, view = parts[3:], "events.k8s.io"
        allowed = {"events"}
    else:
        return None, None, ""
    if len(rest) == 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if len(rest) == 1 and rest[0] in allowed:
        return rest[0], namespace, view
    return None, None, ""


def _route_deployment(parts: list[str]) -> tuple[str, str] | None:
    """(namespace, name) of ``/apis/apps/v1/namespaces/NS/deployments/NAME``, else None."""
    if len(parts) == 7 and parts[:4] == ["apis", "apps", "v1", "namespaces"] and parts[5] == "deployments":
        return parts[4], parts[6]
    return None


def _groups(events_v1: bool) -> dict[str, Any]:
    def group(name: str) -> dict[str, Any]:
        gv = {"groupVersion": f"{name}/v1", "version": "v1"}
        return {"name": name, "versions": [gv], "preferredVersion": gv}

    names = ["apps", "batch", "policy"] + (["events.k8s.io"] if events_v1 else [])
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group(n) for n in names]}


def to_events_v1(core: dict[str, Any]) -> dict[str, Any]:
    """The events.k8s.io/v1 view of a core/v1 Event, converted as the API server does."""
    out: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": copy.deepcopy(core["metadata"]),
        "eventTime": core.get("eventTime"),
        "reportingController": core.get("reportingComponent") or core.get("source", {}).get("component"),
        "reportingInstance": core.get("reportingInstance") or core.get("source", {}).get("host"),
        "action": core.get("action"),
        "reason": core.get("reason"),
        "regarding": copy.deepcopy(core.get("involvedObject")),
        "note": core.get("message"),
        "type": core.get("type"),
        "deprecatedSource": copy.deepcopy(core.get("source")),
        "deprecatedFirstTimestamp": core.get("firstTimestamp"),
        "deprecatedLastTimestamp": core.get("lastTimestamp"),
        "deprecatedCount": core.get("count"),
    }
    if core.get("series"):
        out["series"] = copy.deepcopy(core["series"])
    return {k: v for k, v in out.items() if v is not None}


# ==== real shapes ===================================================================================

_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SafeEncodeString alphabet


def pod_template(app: str, image: str, *, env: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": app, "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}], "resources": {},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    return {
        "metadata": {"labels": {"app": app, "app.kubernetes.io/name": app}},
        "spec": {"containers": [container], "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                 "dnsPolicy": "ClusterFirst", "securityContext": {}, "schedulerName": "default-scheduler"},
    }


def template_hash(template: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:10])


def core_event(*, namespace: str, kind: str, name: str, reason: str, message: str, type: str = "Warning",
               count: int = 1, first: str | None = None, last: str | None = None, uid: str | None = None,
               component: str = "kubelet", host: str = "node-1") -> dict[str, Any]:
    """A core/v1 Event about ``kind/name`` as the kubelet or a controller writes it."""
    first = first or now_iso()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {
            "name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace, "uid": uid or str(uuid.uuid4()),
            "creationTimestamp": first,
            "managedFields": [{"manager": component, "operation": "Update", "apiVersion": "v1", "time": first,
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:count": {}, "f:message": {}}}],
        },
        "involvedObject": {"kind": kind, "namespace": namespace, "name": name, "uid": str(uuid.uuid4()),
                           "apiVersion": "v1" if kind == "Pod" else "apps/v1", "resourceVersion": "4242",
                           **({"fieldPath": f"spec.containers{{{name.split('-')[0]}}}"} if kind == "Pod" else {})},
        "reason": reason, "message": message,
        "source": {"component": component, "host": host},
        "firstTimestamp": first, "lastTimestamp": last or first, "count": count, "type": type,
        "eventTime": None, "reportingComponent": component, "reportingInstance": host,
    }


class Controller:
    """Plays the deployment controller against a :class:`FakeKube`: each method writes the objects
    the real controller writes, in its order (template edit, then the new ReplicaSet, then the
    revision annotation and status as pods come up)."""

    def __init__(self, kube: FakeKube, namespace: str = "playback") -> None:
        self.kube = kube
        self.namespace = namespace
        # Called after each write with (resource, stored object): a test can wait there until the
        # bridge has published it, so separate watches deliver in the order the controller wrote.
        self.on_apply: Callable[[str, dict[str, Any]], None] | None = None

    def _apply(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        stored = self.kube.apply(resource, obj)
        if self.on_apply is not None:
            self.on_apply(resource, stored)
        return stored

    # ---- helpers ----------------------------------------------------------------------------------

    def deployment(self, name: str) -> dict[str, Any]:
        return self.kube.get("deployments", self.namespace, name)

    def replicasets(self, name: str) -> list[dict[str, Any]]:
        with self.kube._cond:
            return [copy.deepcopy(o) for (ns, _), o in self.kube._objects["replicasets"].items()
                    if ns == self.namespace and o["metadata"]["ownerReferences"][0]["name"] == name]

    def _rs(self, dep: dict[str, Any], template: dict[str, Any], revision: int, replicas: int,
            history: str | None = None) -> dict[str, Any]:
        h = template_hash(template)
        tpl = copy.deepcopy(template)
        tpl["metadata"]["labels"]["pod-template-hash"] = h
        name = dep["metadata"]["name"]
        annotations = {"deployment.kubernetes.io/revision": str(revision),
                       "deployment.kubernetes.io/desired-replicas": str(dep["spec"]["replicas"]),
                       "deployment.kubernetes.io/max-replicas": str(dep["spec"]["replicas"] + 1)}
        if history:
            annotations["deployment.kubernetes.io/revision-history"] = history
        return {
            "metadata": {
                "name": f"{name}-{h}", "namespace": self.namespace,
                "labels": {**template["metadata"]["labels"], "pod-template-hash": h},
                "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                     "uid": dep["metadata"]["uid"], "controller": True,
                                     "blockOwnerDeletion": True}],
            },
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name, "pod-template-hash": h}},
                     "template": tpl},
            "status": {"replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": replicas,
                       "availableReplicas": replicas, "observedGeneration": 1},
        }

    @staticmethod
    def _conditions(progress_reason: str, progress_message: str, *, progressing: str = "True",
                    at: str | None = None) -> list[dict[str, Any]]:
        at = at or now_iso()
        return [
            {"type": "Available", "status": "True", "lastUpdateTime": at, "lastTransitionTime": at,
             "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
            {"type": "Progressing", "status": progressing, "lastUpdateTime": at, "lastTransitionTime": at,
             "reason": progress_reason, "message": progress_message},
        ]

    # ---- what users and the controller do ---------------------------------------------------------

    def create(self, name: str, image: str, *, replicas: int = 3, annotations: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A Deployment at revision 1, fully rolled out, with its ReplicaSet."""
        template = pod_template(name, image)
        dep: dict[str, Any] = {
            "metadata": {"name": name, "namespace": self.namespace, "uid": str(uuid.uuid4()), "generation": 1,
                         "labels": labels if labels is not None else {"app.kubernetes.io/name": name},
                         "annotations": {"deployment.kubernetes.io/revision": "1", **(annotations or {})},
                         "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template,
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                     "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
        }
        rs = self._rs(dep, template, 1, replicas)
        dep["status"] = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                         "readyReplicas": replicas, "availableReplicas": replicas,
                         "conditions": self._conditions(REASON_AVAILABLE,
                                                        f'ReplicaSet "{rs["metadata"]["name"]}" has '
                                                        "successfully progressed.")}
        self._apply("replicasets", rs)
        return self._apply("deployments", dep)

    def set_image(self, name: str, image: str, *, env: dict[str, str] | None = None) -> str:
        """The user edits the template; the controller creates the new ReplicaSet, bumps the revision
        and starts scaling (1 new pod). Returns the new ReplicaSet's pod-template-hash."""
        return self._roll(name, pod_template(name, image, env=env))

    def undo(self, name: str, to_revision: int) -> str:
        """``kubectl rollout undo --to-revision``: the template of an old ReplicaSet comes back and that
        ReplicaSet gets the next revision (its old one goes to revision-history)."""
        old = next(rs for rs in self.replicasets(name)
                   if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == str(to_revision))
        template = copy.deepcopy(old["spec"]["template"])
        del template["metadata"]["labels"]["pod-template-hash"]
        return self._roll(name, template)

    def _roll(self, name: str, template: dict[str, Any]) -> str:
        dep = self.deployment(name)
        revision = int(dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) + 1
        # 1. the user's edit: new template, generation + 1, the controller has not seen it yet
        dep["spec"]["template"] = template
        dep["metadata"]["generation"] += 1
        dep = self._apply("deployments", dep)
        # 2. the controller: the new ReplicaSet (or the old one with this template, relabelled)
        h = template_hash(template)
        existing = next((rs for rs in self.replicasets(name) if rs["metadata"]["name"] == f"{name}-{h}"), None)
        if existing is not None:
            history = existing["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            rs = self._rs(dep, template, revision, 1, history=history)
        else:
            rs = self._rs(dep, template, revision, 1)
        self._apply("replicasets", rs)
        # 3. the controller: revision annotation, observedGeneration, progress
        desired = dep["spec"]["replicas"]
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(revision)
        dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": desired + 1,
                         "updatedReplicas": 1, "readyReplicas": desired, "availableReplicas": desired,
                         "unavailableReplicas": 1,
                         "conditions": self._conditions("ReplicaSetUpdated",
                                                        f'ReplicaSet "{name}-{h}" is progressing.')}
        self._apply("deployments", dep)
        return h

    def progress(self, name: str, *, updated: int, available: int, total: int | None = None) -> None:
        dep = self.deployment(name)
        h = template_hash(dep["spec"]["template"])
        desired = dep["spec"]["replicas"]
        dep["status"].update({"updatedReplicas": updated, "availableReplicas": available,
                              "readyReplicas": available, "replicas": total if total is not None else desired + 1,
                              "conditions": self._conditions("ReplicaSetUpdated",
                                                             f'ReplicaSet "{name}-{h}" is progressing.')})
        self._apply("deployments", dep)

    def complete(self, name: str) -> None:
        dep = self.deployment(name)
        h = template_hash(dep["spec"]["template"])
        desired = dep["spec"]["replicas"]
        for rs in self.replicasets(name):  # old ReplicaSets scaled to zero
            if rs["metadata"]["name"] != f"{name}-{h}" and rs["spec"]["replicas"]:
                rs["spec"]["replicas"] = 0
                rs["status"].update({"replicas": 0, "readyReplicas": 0, "availableReplicas": 0,
                                     "fullyLabeledReplicas": 0})
                self._apply("replicasets", rs)
        dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": desired,
                         "updatedReplicas": desired, "readyReplicas": desired, "availableReplicas": desired,
                         "conditions": self._conditions(REASON_AVAILABLE,
                                                        f'ReplicaSet "{name}-{h}" has successfully progressed.')}
        self._apply("deployments", dep)

    def fail(self, name: str, *, at: str | None = None) -> None:
        """The progress deadline passes: Progressing=False, ProgressDeadlineExceeded."""
        dep = self.deployment(name)
        h = template_hash(dep["spec"]["template"])
        dep["status"]["conditions"] = self._conditions(
            "ProgressDeadlineExceeded", f'ReplicaSet "{name}-{h}" has timed out progressing.',
            progressing="False", at=at)
        self._apply("deployments", dep)

    def annotate(self, name: str, annotations: dict[str, str]) -> None:
        dep = self.deployment(name)
        dep["metadata"]["annotations"].update(annotations)
        self._apply("deployments", dep)


REASON_AVAILABLE = "NewReplicaSetAvailable"
