"""Faust's aiohttp server with deadlines for slow and idle clients.

aiohttp closes a connection on which no request is under way after its keep-alive timeout (counted
from the connection's start and from each answer), but it has no deadline for a request's head or
body: a client sending one byte every 10 s held a connection (and its memory) for as long as it
liked. :func:`install` adds:

- **idle** (``SLO_STREAM_HTTP_IDLE_TIMEOUT``): aiohttp's keep-alive timeout; a connection with no
  request under way (a fresh one too) is closed.
- **header** (``SLO_STREAM_HTTP_HEADER_TIMEOUT``): from the first byte of a request to the end of its
  head; then a 408 and the connection closed (:class:`_Watch`, one per connection).
- **body** (``SLO_STREAM_HTTP_BODY_TIMEOUT``): the API reads a body under this deadline or answers
  408 (``streams.adapters.http_api``). A body the API does not read (an answer before it: 401, 403,
  413, a GET) ends the connection after the answer: aiohttp drains it for at most ``LINGER_S`` so that
  the client reads the answer, then closes.

A request aiohttp cannot parse (a control character in a header, a bad method) is its 400 and one
log line naming the error's kind: aiohttp's own line is an ERROR with a traceback whose message
quotes the offending bytes, an ``Authorization`` header among them (:class:`_ServerLog`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("slo_stream.http")

LINGER_S = 2.0  # at most this long reading (and dropping) a body the API did not read, after the answer
_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _Watch(asyncio.Protocol):
    """One connection: aiohttp's protocol behind a deadline for each request's head.

    The deadline starts with the first byte received while no request is under way and ends when
    the request reaches a handler (the middleware calls :meth:`started`). Bytes that arrive while a
    request is handled (its body, a pipelined next request) start no deadline: the body has its
    own, and a pipelined request's remainder falls under the idle timeout."""

    def __init__(self, inner: Any, header_timeout_s: float, watches: dict[Any, _Watch]) -> None:
        self.inner = inner
        self.header_timeout_s = header_timeout_s
        self.watches = watches
        self.transport: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.busy = False  # a request is being handled
        self.closing = False  # the last answer said Connection: close (aiohttp is draining, then closes)

    # ---- asyncio.Protocol, delegated -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.watches[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.deadline is None and not self.busy and not self.closing:
            self.deadline = asyncio.get_running_loop().call_later(self.header_timeout_s, self._expired)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[no-any-return]

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self.transport is not None:
            self.watches.pop(self.transport, None)
        self.inner.connection_lost(exc)

    # ---- requests ------------------------------------------------------------------------------

    def started(self) -> None:
        self.busy = True
        self._cancel()

    def finished(self, *, keep_alive: bool) -> None:
        self.busy = False
        self.closing = not keep_alive

    def _cancel(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        t = self.transport
        if t is None or t.is_closing():
            return
        log.info("closed a connection from %s: no complete request head within %ss",
                 t.get_extra_info("peername"), self.header_timeout_s)
        t.write(_REQUEST_TIMEOUT)
        t.close()


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, with a request that could not be parsed logged as one line, without
    the message or traceback of the parser's error (they quote the request's bytes)."""

    def log(self, level: int, msg: object, *args: object, exc_info: Any = None, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1] if exc_info is True else None
        if isinstance(exc, HttpProcessingError):
            level, msg, args, exc_info = (min(level, logging.INFO), f"{msg}: %s %s", (*args, exc.code,
                                          type(exc).__name__), None)
        super().log(level, msg, *args, exc_info=exc_info, **kwargs)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _middleware(watches: dict[Any, _Watch]) -> Any:
    @web.middleware
    async def deadlines(request: web.Request, handler: Handler) -> web.StreamResponse:
        watch = watches.get(request.transport)
        if watch is not None:
            watch.started()
        keep_alive = True
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # a 404, 405, ... raised by the router: itself the response
            keep_alive = _end_unread(request, exc)
            raise
        else:
            keep_alive = _end_unread(request, response)
            return response
        finally:
            if watch is not None:
                watch.finished(keep_alive=keep_alive)

    return deadlines


def _end_unread(request: web.Request, response: web.StreamResponse) -> bool:
    """Close the connection after ``response`` when the handler answered before reading the body (no
    next request on it: its remaining bytes would only be the rest of that body, which aiohttp drains
    without a request-head deadline). Whether the connection stays open."""
    if not request.content.at_eof():
        response.force_close()
    return response.keep_alive is not False


class _Runner(web.AppRunner):
    """aiohttp's runner whose sites get a :class:`_Watch` around each connection's protocol."""

    def __init__(self, app: web.Application, *, header_timeout_s: float, watches: dict[Any, _Watch],
                 **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.watches = watches

    @property
    def server(self) -> Any:
        server = super().server
        if server is None:
            return None
        return lambda: _Watch(server(), self.header_timeout_s, self.watches)


def install(app: faust.App, *, header_timeout_s: float, body_timeout_s: float, idle_timeout_s: float) -> None:
    """Put the deadlines on ``app``'s web server (before the worker starts)."""
    web_driver: Any = app.web  # faust.web.drivers.aiohttp.Web (typed as the base driver)
    watches: dict[Any, _Watch] = {}
    web_driver.web_app.middlewares.append(_middleware(watches))
    # Faust's aiohttp driver makes its runner with no protocol options and serves whatever runner
    # it holds; this one has the idle timeout and the watch (faust-streaming 0.15, aiohttp 3.x).
    web_driver._runner = _Runner(web_driver.web_app, header_timeout_s=header_timeout_s, watches=watches,
                                 access_log=None, logger=_ServerLog(logging.getLogger("aiohttp.server"), {}),
                                 keepalive_timeout=idle_timeout_s,
                                 lingering_time=min(LINGER_S, body_timeout_s))
