"""The HTTP API on every worker: the rollout gate, SLO status, Flagger hooks, change freezes, probes.

Any worker answers any service: a request about a service is answered by the worker that owns the
service's ``playback.events`` partition (where its counts, alert tracks and suspects live); another
worker forwards it there (method, body and ``Authorization`` header) and returns the answer. A
forwarded request carries ``X-Slo-Stream-Forwarded`` and is never forwarded again: during a
rebalance the answer is a 503 with ``Retry-After`` rather than a loop.

Authentication: bearer tokens, compared in constant time, never logged. ``SLO_STREAM_GATE_TOKEN``
(or ``..._FILE``) is required for the endpoints that change state (change freezes); without it they
answer 403. ``SLO_STREAM_GATE_READ_TOKEN`` (optional) makes reads require a token too (the read or
the write token). Flagger cannot send headers, so a Flagger hook may carry the read token as
``metadata.token``: only then is a body read before the token is checked, and only within the body
limits. ``/healthz``, ``/readyz`` and ``/v1/openapi.json`` (the API's description, no data) are
always open; ``/metrics`` needs the read token when ``SLO_STREAM_METRICS_REQUIRE_TOKEN`` is true.

Request bodies are limited to 64 KiB and to ``SLO_STREAM_HTTP_BODY_TIMEOUT`` (408 after it); the
head and idle deadlines are in :mod:`streams.adapters.http_server`. Bad input is a 4xx and at most
one log line.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import faust
import orjson
from faust.web import View
from yarl import URL

from streams.adapters import http_server
from streams.adapters.metrics import CONTENT_TYPE_LATEST
from streams.core import conventions as c
from streams.core.answer import Question, answer
from streams.core.errors import ConfigError
from streams.core.freezes import MAX_REASON, Freeze, Lift, Order
from streams.core.gate import DEFAULT_GATE_CONFIG, Decision, FlaggerHook, GateConfig, GateDecision, flagger_accepts
from streams.core.gate import gate_configs as gate_configs
from streams.core.model import Slo, format_duration, parse_duration
from streams.core.readmodel import ReadModel
from streams.core.wire.change import Change
from streams.core.wire.status import Status
from streams.settings import Settings, read_secret

log = logging.getLogger("slo_stream.http")

FORWARDED = "X-Slo-Stream-Forwarded"
ANSWERED_BY = "X-Slo-Stream-Answered-By"  # the worker that made the answer (after forwarding too)
MAX_BODY = 64 * 1024
FORWARD_TIMEOUT_S = 5.0
TOKEN_ENV = "SLO_STREAM_GATE_TOKEN"
READ_TOKEN_ENV = "SLO_STREAM_GATE_READ_TOKEN"
FREEZE_MAX_S = 7 * 86400
CACHE_S = 1.0  # a gate answer is reused for the same question for at most this long
CACHE_MAX = 2_000  # answers of a few KiB each
QUERY_PARAMS = frozenset({"service", "cluster", "platform", "revision", "step"})


@dataclass(frozen=True)
class Tokens:
    write: str | None = None
    read: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Tokens:
        env = os.environ if env is None else env
        return cls(write=_secret(env, TOKEN_ENV), read=_secret(env, READ_TOKEN_ENV))

    def check(self, settings: Settings) -> Tokens:
        """These tokens, or a ConfigError when the settings ask for one that is not set."""
        if settings.metrics_require_token and not self.read:
            raise ConfigError(f"SLO_STREAM_METRICS_REQUIRE_TOKEN=true but {READ_TOKEN_ENV} (or "
                              f"{READ_TOKEN_ENV}_FILE) is not set: there is no token for /metrics to require")
        return self

    def __repr__(self) -> str:  # never show a token, even in a traceback
        return f"Tokens(write={'set' if self.write else 'unset'}, read={'set' if self.read else 'unset'})"


def _secret(env: Mapping[str, str], name: str) -> str | None:
    value = read_secret(env, name)
    if value is not None and len(value) < 16:
        raise ConfigError(f"{name}: a token needs at least 16 characters")
    return value


def _same(a: str, b: str | None) -> bool:
    # surrogateescape: a header's undecodable bytes compare unequal instead of raising
    return b is not None and hmac.compare_digest(a.encode(errors="surrogateescape"), b.encode())


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def _param(query: Mapping[str, Any], name: str, *, required: bool = False, pattern: re.Pattern[str] = c.NAME_RE
            ) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"the query parameter {name!r} is required")
        return None
    if not isinstance(value, str) or not pattern.match(value):
        value = str(value)
        raise ApiError(400, f"{name}={value[:80]!r} is not a valid name")
    return value


async def _read_body(request: Any) -> bytes:
    # read(n) returns what has arrived so far (one piece of a chunked body): read to the end, or to
    # one byte past the limit.
    parts: list[bytes] = []
    size = 0
    while part := await request.content.read(MAX_BODY + 1 - size):
        parts.append(part)
        size += len(part)
        if size > MAX_BODY:
            raise ApiError(413, f"the body exceeds {MAX_BODY} bytes")
    return b"".join(parts)


REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}\Z")


def view_bytes(view: Any, body: bytes, answered_by: str, status: int = 200) -> Any:
    return view.bytes(body, content_type="application/json", status=status, headers={ANSWERED_BY: answered_by})


def default_gate_config(s: Settings) -> GateConfig:
    """The gate's defaults from the settings (SLO_STREAM_GATE_*)."""
    return replace(DEFAULT_GATE_CONFIG, budget_floor=s.gate_budget_floor, stale_after_s=float(s.gate_stale_after_s),
                   max_evaluation_lag_s=float(s.gate_max_evaluation_lag_s))


class _View(View):  # type: ignore[misc]
    """A view of the API: errors become JSON answers, every request is timed. Each page is a
    subclass made by :class:`Api` with ``api`` set."""

    api: Api

    async def dispatch(self, request: Any) -> Any:
        api = self.api
        t0 = time.perf_counter()
        try:
            response = await super().dispatch(request)
        except ApiError as exc:
            response = api.error(self, exc)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = api.error(self, ApiError(500, "internal error; see the worker log"))
        api.pipeline.metrics.observe_request(type(self).__name__.lower(), request.method, response.status,
                                             time.perf_counter() - t0)
        return response


class _Healthz(_View):
    async def get(self, request: Any) -> Any:
        return self.api.json(self, {"status": "ok"})


class _Readyz(_View):
    async def get(self, request: Any) -> Any:
        ready, why = self.api.ready()
        return self.api.json(self, {"ready": ready, "reason": why}, status=200 if ready else 503)


class _OpenApi(_View):
    async def get(self, request: Any) -> Any:  # open: the API's description holds no data
        return self.api.json(self, openapi_document())


class _Metrics(_View):
    async def get(self, request: Any) -> Any:
        api = self.api
        if api.settings.metrics_require_token:
            api.authorize_read(request)
        # aiohttp refuses a charset inside content_type=, so the whole header goes in headers.
        text = await api.pipeline.metrics.exposition_in_steps()
        return self.bytes(text, headers={"Content-Type": CONTENT_TYPE_LATEST})


class _Slos(_View):
    async def get(self, request: Any) -> Any:
        api = self.api
        api.authorize_read(request)
        return api.json(self, {"slos": [api.slo_json(s) for s in sorted(api.slos.values(), key=lambda s: s.name)]})


class _SloDetail(_View):
    async def get(self, request: Any, name: str) -> Any:
        api = self.api
        api.authorize_read(request)
        slo = api.slos.get(name)
        if slo is None:
            raise ApiError(404, f"no SLO named {name[:80]!r}", slos=sorted(api.slos))
        routed = await api.forward(self, request, slo.service)
        if routed is not None:
            return routed
        body = api.slo_json(slo)
        body["series"] = [st.to_json() for st in api.statuses(slo.service, time.time()) if st.slo == slo.name]
        return api.json(self, body)


class _Gate(_View):
    async def get(self, request: Any) -> Any:
        api = self.api
        api.authorize_read(request)
        q = request.query
        step = q.get("step")
        if step not in (None, "", "migration"):
            raise ApiError(400, "step must be 'migration' when given")
        question = _question(q, migration=step == "migration")
        routed = await api.forward(self, request, question.service)
        if routed is not None:
            return routed
        return view_bytes(self, api.decision_body(question, now=time.time()), api.answered_by)


class _Flagger(_View):
    async def post(self, request: Any, hook: str) -> Any:
        api = self.api
        try:
            kind = FlaggerHook(hook)
        except ValueError:
            raise ApiError(404, f"unknown Flagger hook {hook[:40]!r}", hooks=[h.value for h in FlaggerHook]) from None
        # The token is checked before the body is read, unless it can only be in the body (a read
        # token is set and no Authorization header came): then the body is read within its limits.
        in_header = request.headers.get("Authorization") is not None
        if in_header:
            api.authorize_read(request)
        payload = await api.read_json(request)
        meta = payload.get("metadata") or {}
        if not isinstance(meta, Mapping):
            raise ApiError(400, "metadata must be an object of strings")
        if not in_header:
            api.authorize_read(request, body_token=meta.get("token"))
        name = payload.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "the Flagger payload needs 'name' (the canary)")
        question = _question({"service": meta.get("service") or name, "cluster": meta.get("cluster") or "",
                              "platform": meta.get("platform") or "", "revision": meta.get("revision") or ""},
                             migration=str(meta.get("step", "")) == "migration")
        routed = await api.forward(self, request, question.service, body=payload)
        if routed is not None:
            return routed
        d = api.decide(question, now=time.time())
        accepted = flagger_accepts(d.decision, kind)
        body = d.to_json()
        body["flagger"] = {"hook": kind.value, "accepted": accepted, "canary": name,
                           "namespace": payload.get("namespace"), "phase": payload.get("phase")}
        # 200 lets Flagger go on (or, for the rollback hook, roll back); any other status halts the
        # canary. 412: the gate's precondition for this hook is not met.
        return api.json(self, body, status=200 if accepted else 412)


class _Freezes(_View):
    async def get(self, request: Any) -> Any:
        api = self.api
        api.authorize_read(request)
        service = _param(request.query, "service", required=True)
        assert service is not None
        routed = await api.forward(self, request, service)
        if routed is not None:
            return routed
        return api.json(self, {"service": service, "freezes": [x.to_json() for x in api.freezes(service, time.time())]})

    async def post(self, request: Any) -> Any:
        api = self.api
        api.authorize_write(request)
        payload = await api.read_json(request)
        return api.json(self, await api.freeze(payload), status=202)


# path, page name, view (the view's class name, lower case, is the endpoint label of the metrics)
_PAGES = (
    ("/healthz", "healthz", _Healthz), ("/readyz", "readyz", _Readyz), ("/v1/openapi.json", "openapi", _OpenApi),
    ("/v1/slos", "slos", _Slos), ("/v1/slos/{name}", "slo", _SloDetail), ("/v1/gate", "gate", _Gate),
    ("/v1/flagger/{hook}", "flagger", _Flagger), ("/v1/freezes", "freezes", _Freezes),
    ("/metrics", "metrics", _Metrics),
)


def _question(query: Mapping[str, Any], *, migration: bool) -> Question:
    """A gate question from query parameters (or a Flagger hook's metadata), validated."""
    service = _param(query, "service", required=True)
    assert service is not None
    platform = _param(query, "platform")
    if platform is not None and platform not in c.PLATFORMS:
        raise ApiError(400, f"platform must be one of {', '.join(c.PLATFORMS)}")
    return Question(service, cluster=_param(query, "cluster", pattern=c.LABEL_VALUE_RE), platform=platform,
                    revision=_param(query, "revision", pattern=REVISION_RE), migration=migration)


class Api:
    """Registers the views on a faust.App. ``pipeline`` is the worker's :class:`Pipeline`."""

    def __init__(self, app: faust.App, settings: Settings, pipeline: Any, slos: list[Slo],
                 tokens: Tokens, default: GateConfig = DEFAULT_GATE_CONFIG) -> None:
        self.app = app
        self.settings = settings
        self.pipeline = pipeline
        self.engine = pipeline.engine
        self.slos = {s.name: s for s in slos}
        self.services = sorted({s.service for s in slos})
        self.tokens = tokens
        self.default = default
        self.configs = gate_configs(slos, default)
        self._cache: dict[Question, tuple[tuple[int, int], float, bytes, str]] = {}
        self._partitions: dict[str, int] = {}
        self._forwarded: dict[str, tuple[float, int, bytes, str]] = {}
        for path, name, view in _PAGES:
            app.page(path, name=name)(type(view.__name__.lstrip("_"), (view,), {"api": self}))
        http_server.install(app, header_timeout_s=settings.http_header_timeout_s,
                            body_timeout_s=settings.http_body_timeout_s, idle_timeout_s=settings.http_idle_timeout_s)

    # ---- plumbing -------------------------------------------------------------------------------

    def json(self, view: Any, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Any:
        h = {ANSWERED_BY: str(self.app.conf.canonical_url)}
        h.update(headers or {})
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status, headers=h)

    def error(self, view: Any, exc: ApiError) -> Any:
        headers = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="slo-stream"'
        if exc.status == 503:
            headers["Retry-After"] = "2"
        return self.json(view, {"error": exc.message, "status": exc.status, **exc.extra}, status=exc.status,
                         headers=headers)

    def _bearer(self, request: Any) -> str | None:
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        # isprintable: no control character, and none of the surrogates that stand for bytes that
        # are not UTF-8
        if scheme.lower() != "bearer" or not token.strip() or not token.isprintable():
            raise ApiError(401, "Authorization must be 'Bearer <token>'")
        return token.strip()

    def authorize_read(self, request: Any, *, body_token: Any = None) -> None:
        if self.tokens.read is None:
            return
        token = self._bearer(request) or (body_token if isinstance(body_token, str) else None)
        if token is None:
            raise ApiError(401, "a bearer token is required")
        if not (_same(token, self.tokens.read) or _same(token, self.tokens.write)):
            raise ApiError(403, "the token is not valid for this endpoint")

    def authorize_write(self, request: Any) -> None:
        if self.tokens.write is None:
            raise ApiError(403, f"write endpoints are disabled: set {TOKEN_ENV} (or {TOKEN_ENV}_FILE)")
        token = self._bearer(request)
        if token is None:
            raise ApiError(401, "a bearer token is required")
        if not _same(token, self.tokens.write):
            raise ApiError(403, "the token is not valid for this endpoint")

    async def read_json(self, request: Any) -> dict[str, Any]:
        """The body as a JSON object: at most MAX_BODY bytes (413), arrived within the body timeout
        (408; the connection then closes)."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ApiError(413, f"the body exceeds {MAX_BODY} bytes")
        timeout_s = self.settings.http_body_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                body = await _read_body(request)
        except TimeoutError:
            raise ApiError(408, f"the body did not arrive within {timeout_s}s") from None
        try:
            doc = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "the body must be a JSON object")
        return doc

    def ready(self) -> tuple[bool, str]:
        app = self.app
        if not self.pipeline.started:
            return False, "the worker has not joined the consumer group yet"
        if app.rebalancing:
            return False, "rebalancing"
        recovery = app.tables.recovery
        if recovery.in_recovery or not recovery.completed.is_set():
            return False, "recovering tables from their changelogs"
        owned = self.pipeline.owned()
        missing = owned - self.engine.assigned()
        if missing:
            return False, f"partitions {sorted(missing)} not loaded yet"
        return True, f"{len(owned)} partitions"

    async def forward(self, view: Any, request: Any, service: str, body: Any = None) -> Any | None:
        """The answer of the worker owning ``service``, or None when this worker owns it."""
        topic = self.pipeline.playback
        if self.partition(service) in self.engine.assigned():
            return None
        if request.headers.get(FORWARDED):
            raise ApiError(503, "the partition of this service is moving between workers; retry")
        try:
            dest: URL = self.app.router.external_topic_key_store(topic, service.encode())
        except (KeyError, AttributeError):
            raise ApiError(503, "no worker owns this service's partition yet; retry") from None
        if (dest.host, dest.port) == (URL(str(self.app.conf.canonical_url)).host,
                                      URL(str(self.app.conf.canonical_url)).port):
            return None  # ours by the assignment, not loaded yet: answer with what we have
        # Keyed by the validated parameters only: junk in the query string makes no new entries.
        cache_key = None
        if request.method == "GET":
            known = sorted((k, v) for k, v in request.query.items() if k in QUERY_PARAMS)
            cache_key = f"{request.path}?{known}"
        if cache_key is not None:
            hit = self._forwarded.get(cache_key)
            if hit is not None and time.monotonic() - hit[0] < CACHE_S:
                return view.bytes(hit[2], content_type="application/json", status=hit[1],
                                  headers={ANSWERED_BY: hit[3]})
        headers = {FORWARDED: "1", "Accept": "application/json"}
        auth = request.headers.get("Authorization")
        if auth:
            headers["Authorization"] = auth
        url = dest.with_path(request.path).with_query(request.query)
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        import aiohttp

        try:
            async with self.app.http_client.request(request.method, url, headers=headers, data=data,
                                                    timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
                                                    ) as resp:
                payload = await resp.read()
                h = {ANSWERED_BY: resp.headers.get(ANSWERED_BY, str(dest))}
                if cache_key is not None and resp.status == 200:
                    # The same question asked again within CACHE_S gets the owner's answer again
                    # (the owner caches the same way), without another hop.
                    if len(self._forwarded) >= CACHE_MAX:
                        self._forwarded.clear()
                    self._forwarded[cache_key] = (time.monotonic(), resp.status, payload, h[ANSWERED_BY])
                if resp.headers.get("Retry-After"):
                    h["Retry-After"] = resp.headers["Retry-After"]
                return view.bytes(payload, content_type="application/json", status=resp.status, headers=h)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(503, f"the worker owning this service did not answer ({type(exc).__name__})") from None

    # ---- answers --------------------------------------------------------------------------------

    def partition(self, service: str) -> int:
        """The playback partition of ``service`` (the producer's partitioner on the key)."""
        p = self._partitions.get(service)
        if p is None:
            p = self.app.producer.key_partition(self.settings.topic_playback, service.encode()).partition
            if len(self._partitions) < CACHE_MAX:
                self._partitions[service] = p
        return int(p)

    @property
    def answered_by(self) -> str:
        return str(self.app.conf.canonical_url)

    def decision_body(self, q: Question, *, now: float) -> bytes:
        """The JSON answer of ``GET /v1/gate``. The same question is answered from a cache while the
        service's partition has committed no new batch and for at most ``CACHE_S``: robots poll the
        gate, and an answer a second old is as good as a fresh one (its ``at`` says when it was made)."""
        p = self.partition(q.service)
        # Any merge into the changes table (a rollout, a warning, a freeze) may change the answer too.
        version = (self.pipeline.batches.get(p, 0), self.pipeline.stats.get("k8s.merged", 0))
        hit = self._cache.get(q)
        if hit is not None and hit[0] == version and now - hit[1] < CACHE_S:
            self.pipeline.metrics.observe_decision(q.service, hit[3])
            return hit[2]
        d = self.decide(q, now=now)
        body = orjson.dumps(d.to_json())
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[q] = (version, now, body, str(d.decision))
        return body

    def slo_json(self, slo: Slo) -> dict[str, Any]:
        return {
            "name": slo.name,
            "service": slo.service,
            "objective": slo.objective,
            "window": format_duration(slo.window_s),
            "indicator": str(slo.indicator.kind),
            "group_by": list(slo.group_by),
            "policy": {"name": slo.policy.name, "hold": format_duration(slo.policy.hold_s),
                       "min_events": slo.min_events,
                       "windows": [{"severity": str(w.severity), "windows": w.name, "factor": w.factor}
                                   for w in slo.policy.windows]},
            "links": {k: v for k, v in (("runbook", slo.runbook_url), ("dashboard", slo.dashboard_url)) if v},
            "gate": {"budget_floor": self.configs[slo.name].budget_floor,
                     "stale_after_s": self.configs[slo.name].stale_after_s,
                     "fail_open_when_stale": self.configs[slo.name].fail_open_when_stale},
            "href": f"/v1/slos/{slo.name}",
        }

    def statuses(self, service: str, now: float) -> list[Status]:
        """The statuses of ``service``'s series held here, marked stale where the worker says so."""
        read: ReadModel = self.engine.read
        return read.statuses(service, now=now, processed_at=self.pipeline.last_batch_wall,
                                         stale=self.pipeline.stale_partitions())

    def decide(self, q: Question, *, now: float) -> GateDecision:
        d = answer(q, self.pipeline.gate_inputs(q, now=now, configs=self.configs, default=self.default), now=now)
        self.pipeline.metrics.observe_decision(q.service, str(d.decision))
        return d

    # ---- change freezes ---------------------------------------------------------------------------

    def freezes(self, service: str, now: float) -> tuple[Freeze, ...]:
        sc = self.engine.read.service_changes(service)
        return sc.freezes.active(now) if sc is not None else ()

    async def freeze(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Record a change freeze (``{"service", "cluster"?, "reason", "duration"}``) or lift one
        (``{"service", "lift": true}``): written to the changes topic, merged by the owning worker."""
        service = payload.get("service")
        if not isinstance(service, str) or service not in self.services:
            raise ApiError(400, f"service must be one with an SLO: {', '.join(self.services)}")
        cluster = payload.get("cluster")
        if cluster is not None and (not isinstance(cluster, str) or not c.LABEL_VALUE_RE.match(cluster)):
            raise ApiError(400, "cluster is not a valid name")
        now = time.time()
        order: Order
        if payload.get("lift") is True:
            order = Lift(cluster, now)
        else:
            reason = payload.get("reason")
            if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
                raise ApiError(400, f"reason is required (a short text, at most {MAX_REASON} characters)")
            try:
                duration = parse_duration(str(payload.get("duration", "1h")))
            except ValueError as exc:
                raise ApiError(400, f"duration: {exc}") from None
            if not 0 < duration <= FREEZE_MAX_S:
                raise ApiError(400, f"duration must be in (0, {format_duration(FREEZE_MAX_S)}]")
            order = Freeze(cluster, reason.strip(), now, now + duration)
        await (await self.pipeline.changes.forward(Change(service, order)))
        log.warning("change freeze %s for %s%s", "lifted" if isinstance(order, Lift) else "set", service,
                    f" in {cluster}" if cluster else "")
        return {"accepted": True, **order.to_json(), "service": service}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API (served at /v1/openapi.json)."""
    name = {"type": "string", "pattern": c.NAME_RE.pattern}
    decision_ref = {"$ref": "#/components/schemas/GateDecision"}
    err = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    q = {"in": "query"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "slo-stream", "version": "1",
                 "description": "SLO status and the rollout gate. Every decision is a 200; non-2xx only when "
                                "the gate cannot answer. Argo Rollouts: jsonPath {$.decision}, "
                                "successCondition result == \"proceed\", failureCondition result == \"rollback\"."},
        "components": _openapi_components(),
        "security": [{}, {"bearer": []}],
        "paths": {
            "/v1/gate": {"get": {
                "summary": "May a rollout (or a migration step) of this service go on?",
                "parameters": [
                    {**q, "name": "service", "required": True, "schema": name},
                    {**q, "name": "cluster", "schema": {"type": "string"}},
                    {**q, "name": "platform", "schema": {"enum": list(c.PLATFORMS)}},
                    {**q, "name": "revision", "schema": {"type": "string"},
                     "description": "Deployment revision, pod-template-hash, image or image tag"},
                    {**q, "name": "step", "schema": {"enum": ["migration"]},
                     "description": "also compare kubernetes with legacy (migration step gate)"}],
                "responses": {"200": {"description": "the decision",
                                      "content": {"application/json": {"schema": decision_ref}}},
                              "400": err, "401": err, "403": err, "503": err}}},
            "/v1/flagger/{hook}": {"post": {
                "summary": "Flagger webhook: 200 lets the canary go on (rollback hook: rolls it back)",
                "parameters": [{"in": "path", "name": "hook", "required": True,
                                "schema": {"enum": [h.value for h in FlaggerHook]}}],
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                   "phase": {"type": "string"}, "checksum": {"type": "string"},
                                   "metadata": {"type": "object", "additionalProperties": {"type": "string"},
                                                "description": "service, cluster, platform, revision, "
                                                               "step=migration, token"}}}}}},
                "responses": {"200": {"description": "accepted",
                                      "content": {"application/json": {"schema": decision_ref}}},
                              "412": {"description": "not accepted: the canary halts",
                                      "content": {"application/json": {"schema": decision_ref}}},
                              "400": err, "401": err, "403": err, "404": err, "413": err, "503": err}}},
            "/v1/slos": {"get": {"summary": "Every SLO", "responses": {"200": {"description": "the SLOs"}}}},
            "/v1/slos/{name}": {"get": {"summary": "One SLO and the latest status of each of its series",
                                        "parameters": [{"in": "path", "name": "name", "required": True,
                                                        "schema": name}],
                                        "responses": {"200": {"description": "the SLO"}, "404": err}}},
            "/v1/freezes": {
                "get": {"summary": "Active change freezes of a service",
                        "parameters": [{**q, "name": "service", "required": True, "schema": name}],
                        "responses": {"200": {"description": "the freezes"}}},
                "post": {"summary": "Set or lift a change freeze (the gate holds the service's rollouts)",
                         "security": [{"bearer": []}],
                         "requestBody": {"content": {"application/json": {"schema": {
                             "type": "object", "required": ["service"],
                             "properties": {"service": name, "cluster": {"type": "string"},
                                            "reason": {"type": "string"}, "duration": {"type": "string"},
                                            "lift": {"type": "boolean"}}}}}},
                         "responses": {"202": {"description": "recorded"}, "400": err, "401": err, "403": err,
                                       "413": err}}},
            "/healthz": {"get": {"summary": "The process is alive", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Tables recovered and partitions loaded",
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not yet"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
        },
    }


def _openapi_components() -> dict[str, Any]:
    return {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error", "status"],
                      "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
            "GateDecision": {"type": "object", "required": ["decision", "exit_code", "summary", "reasons"],
                             "properties": {
                                 "decision": {"enum": [d.value for d in Decision]},
                                 "exit_code": {"type": "integer", "enum": [0, 1, 2, 3]},
                                 "summary": {"type": "string"},
                                 "reasons": {"type": "array", "items": {"type": "object"}},
                                 "series": {"type": "array", "items": {"type": "object"}},
                                 "suspects": {"type": "array", "items": {"type": "object"}},
                                 "migration": {"type": ["object", "null"]}}},
        },
    }
