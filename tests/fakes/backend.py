"""The fake LLM backend server: lifecycle, fault switches, counters and control endpoints.

What it answers on the API paths is up to its dialect (:mod:`tests.fakes.dialects`); this
module owns everything the dialects share.  The overview is in :mod:`tests.fakes.openai_backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from tests.fakes.dialects import BaseDialect, Dialect, dialect_class, make_dialect
from tests.fakes.faults import CONTROL_PREFIX, HTML_PAGE, MALFORMED_BODY, OTHER_MODEL, Fault

__all__ = ["FakeBackend"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeBackend:
    """An in-process fake vendor API (OpenAI, Azure OpenAI or Anthropic) with switchable faults.

    Use it as an async context manager (``async with FakeBackend(...) as backend``), or call
    :meth:`start` / :meth:`stop`.  All methods must be called from the event loop that
    started it; use :class:`~tests.fakes.thread.FakeBackendThread` from synchronous code.
    """

    def __init__(
        self,
        models: Sequence[str] | None = None,
        *,
        api_key: str | None = None,
        name: str = "fake",
        host: str = "127.0.0.1",
        port: int = 0,
        dialect: Dialect | str = Dialect.OPENAI,
        versions: Collection[str] | None = None,
        reasoning_models: Collection[str] | None = None,
    ) -> None:
        """Configure (but do not start) a backend.

        :param models: model ids served (Azure: deployment names), listed in this order;
            default: one typical model of the dialect.
        :param api_key: if set, every API request needs it, sent the dialect's way
            (``Authorization: Bearer``, ``api-key`` or ``x-api-key``).
        :param name: reported as ``owned_by`` (OpenAI) and in the ``/`` banner.
        :param host: address to listen on (loopback by default: tests must not be exposed).
        :param port: port to listen on; 0 picks a free one at :meth:`start`.
        :param dialect: ``"OpenAI"`` (default), ``"AzureOpenAI"`` or ``"Anthropic"``.
        :param versions: accepted ``api-version`` (Azure) or ``anthropic-version`` values;
            default: the real ones listed in the dialect's module.
        :param reasoning_models: (OpenAI, Azure) ids that reject ``max_tokens`` and a
            non-default temperature; default: ids starting with o1, o3, o4 or gpt-5.
        """
        if models is None:
            models = dialect_class(dialect).default_models
        elif isinstance(models, str):
            # A bare string is a Sequence[str] too; iterating it would serve one model per
            # character, which is never what the caller meant.
            models = (models,)
        self.models: tuple[str, ...] = tuple(models)
        if OTHER_MODEL in self.models:
            raise ValueError(f"{OTHER_MODEL!r} is reserved for Fault.WRONG_MODELS")
        self.name = name
        self.dialect = Dialect(dialect)
        #: The dialect's routes, admission rules and error shapes.
        self.api: BaseDialect = make_dialect(
            self.dialect,
            self,
            api_key=api_key,
            versions=versions,
            reasoning_models=reasoning_models,
        )
        self._host = host
        self._port = port
        self._fault = Fault.NONE
        self._delay = 0.0
        self._retry_after = 1
        self.requests_total = 0
        self.requests_by_path: Counter[str] = Counter()
        self.last_headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        # Serialises fault transitions: REFUSED closes/re-binds the listener across awaits.
        self._lock = asyncio.Lock()
        # Set to release every request parked by HANG (fault cleared or server stopping).
        self._release = asyncio.Event()
        self._stopping = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> str:
        """Bind the port, start serving and return the base URL (``http://host:port``)."""
        if self._runner is not None:
            raise RuntimeError(f"fake backend {self.name!r} is already started")
        # Fresh primitives: a backend may be restarted under another loop (pytest-asyncio
        # gives every test its own), and asyncio primitives stick to their first loop.
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._release = asyncio.Event()
        if self._fault is not Fault.HANG:
            self._release.set()
        app = web.Application(middlewares=[self._middleware])
        self.api.add_routes(app.router)
        app.router.add_get("/healthz", self._handle_healthz)
        app.router.add_get("/", self._handle_root)
        app.router.add_post(CONTROL_PREFIX + "fault", self._handle_control_fault)
        app.router.add_get(CONTROL_PREFIX + "stats", self._handle_control_stats)
        # access_log=None: tests run many requests and the log lines are pure noise.
        # A short shutdown_timeout bounds stop() even if a handler misbehaves; parked
        # requests are released explicitly before cleanup anyway.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        self._runner = runner
        try:
            if self._fault is not Fault.REFUSED:
                await self._bind()
            elif self._port == 0:
                # Starting in REFUSED still needs a concrete port to report and re-bind.
                self._port = self._reserve_port()
        except BaseException:
            self._runner = None
            await runner.cleanup()
            raise
        return self.url

    async def stop(self) -> None:
        """Stop serving; in-flight HANG/SLOW requests are released, not waited for."""
        runner = self._runner
        if runner is None:
            return
        self._stopping.set()
        self._release.set()
        async with self._lock:
            self._site = None
            self._runner = None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def host(self) -> str:
        """The address the backend listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The listening port (the real one once started, even if 0 was requested)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the backend, without a trailing slash and without ``/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (even while REFUSED)."""
        return self._runner is not None

    def served_models(self) -> tuple[str, ...]:
        """The models listed right now: :attr:`models`, or an unrelated one under WRONG_MODELS."""
        return (OTHER_MODEL,) if self._fault is Fault.WRONG_MODELS else self.models

    # -- faults --------------------------------------------------------------------------

    @property
    def fault(self) -> Fault:
        """The fault currently injected."""
        return self._fault

    async def set_fault(self, fault: Fault, *, delay: float = 0.0, retry_after: int = 1) -> None:
        """Switch to ``fault``; ``delay`` is used by SLOW, ``retry_after`` by RATE_LIMITED.

        Entering REFUSED closes the listening socket and drops every open connection (a
        pooled keep-alive connection would otherwise keep reaching a "down" server, and a
        request in flight is cut off); leaving it re-binds the same port.  Requests parked
        by HANG are released when leaving HANG and then answered per the new fault.
        """
        fault = Fault(fault)
        if delay < 0:
            raise ValueError("delay must be >= 0")
        if retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        async with self._lock:
            previous = self._fault
            self._fault = fault
            self._delay = float(delay)
            self._retry_after = int(retry_after)
            if previous is Fault.HANG and fault is not Fault.HANG:
                self._release.set()
            elif fault is Fault.HANG and previous is not Fault.HANG:
                self._release = asyncio.Event()
            if self._runner is None:
                # Not started: start() honours the fault (e.g. starts without listening).
                return
            if fault is Fault.REFUSED and self._site is not None:
                await self._unbind()
            elif fault is not Fault.REFUSED and self._site is None:
                await self._bind()

    async def clear_fault(self) -> None:
        """Back to normal operation; same as ``set_fault(Fault.NONE)``."""
        await self.set_fault(Fault.NONE)

    # -- counters ------------------------------------------------------------------------

    def reset_counters(self) -> None:
        """Zero :attr:`requests_total` and :attr:`requests_by_path`."""
        self.requests_total = 0
        self.requests_by_path.clear()

    def stats(self) -> dict[str, Any]:
        """The state reported by ``GET /__control/stats`` (JSON-serialisable)."""
        return {
            "name": self.name,
            "dialect": self.dialect.value,
            "fault": self._fault.value,
            "delay": self._delay,
            "retry_after": self._retry_after,
            "requests_total": self.requests_total,
            "requests_by_path": dict(self.requests_by_path),
        }

    # -- socket handling -----------------------------------------------------------------

    def _new_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Without SO_REUSEADDR re-binding after REFUSED fails while connections that
            # were accepted on the old listener linger in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _reserve_port(self) -> int:
        with self._new_socket() as sock:
            port: int = sock.getsockname()[1]
        return port

    async def _bind(self) -> None:
        assert self._runner is not None
        # Binding our own socket (rather than TCPSite) tells us the real port when 0 was
        # asked for, and re-binding uses exactly that port again.
        sock = self._new_socket()
        self._port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        try:
            await site.start()
        except BaseException:
            sock.close()
            raise
        self._site = site

    async def _unbind(self) -> None:
        assert self._runner is not None and self._site is not None
        site, self._site = self._site, None
        await site.stop()  # closes the listening socket; accepted connections survive...
        server = self._runner.server
        if server is not None:
            # ...so drop them too, as a dead server would: otherwise a client's pooled
            # keep-alive connection keeps reaching a backend that is supposed to be down.
            # (pre_shutdown() is not enough: it only marks idle connections for closing.)
            for connection in server.connections:
                connection.force_close()
            # Transports close their sockets in a later loop iteration; yield once so the
            # FIN is on the wire by the time set_fault() returns.
            await asyncio.sleep(0)

    # -- request pipeline ----------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        self.requests_total += 1
        self.requests_by_path[request.path] += 1
        self.last_headers = request.headers
        fault, api = self._fault, self.api

        if fault is Fault.HANG:
            await self._release.wait()
            if self._stopping.is_set():
                return api.outage(request, "The server is shutting down")
            fault = self._fault  # released because the fault changed: honour the new one
        if fault is Fault.REFUSED:
            # Only reachable on a keep-alive connection accepted before the listener closed
            # (the close raced with the request).  A refused server sends nothing: drop it.
            request.protocol.force_close()
            raise web.HTTPServiceUnavailable()  # never written: the transport is gone
        if fault is Fault.SLOW:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._delay)
        elif fault is Fault.OUTAGE:
            return api.outage(request)
        elif fault is Fault.SERVER_ERROR:
            return api.server_error(request)
        elif fault is Fault.RATE_LIMITED:
            return api.rate_limited(request, self._retry_after)
        elif fault is Fault.MALFORMED_JSON:
            return web.Response(text=MALFORMED_BODY, content_type="application/json")
        elif fault is Fault.HTML_PAGE:
            return web.Response(text=HTML_PAGE, content_type="text/html")
        elif (
            fault is Fault.CANNOT_GENERATE
            and request.method == "POST"
            and api.is_api_path(request.path)
        ):
            return api.server_error(request)

        if not api.is_api_path(request.path):
            return await handler(request)  # /healthz and / need no credentials
        rejected = api.admit(request)
        if rejected is not None:
            return rejected
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            return api.unknown_route(request)

    async def _handle_healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _handle_root(self, request: web.Request) -> web.Response:
        kind = "OpenAI-compatible" if self.dialect is Dialect.OPENAI else self.dialect.value
        return web.Response(text=f"fake {kind} backend {self.name!r}\n")

    async def _handle_control_fault(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be valid JSON"}, status=400)
        if not isinstance(body, dict) or "fault" not in body:
            return web.json_response(
                {"error": 'body must be a JSON object with a "fault" key'}, status=400
            )
        try:
            fault = Fault(str(body["fault"]).lower())
        except ValueError:
            valid = ", ".join(f.value for f in Fault)
            return web.json_response(
                {"error": f"unknown fault {body['fault']!r}; valid faults: {valid}"},
                status=400,
            )
        delay = body.get("delay", 0.0)
        retry_after = body.get("retry_after", 1)
        # bool is an int subclass; "delay": true is a client bug, not one second.
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            return web.json_response({"error": "delay must be a number >= 0"}, status=400)
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            return web.json_response({"error": "retry_after must be an integer >= 0"}, status=400)

        if fault is not Fault.REFUSED:
            await self.set_fault(fault, delay=delay, retry_after=retry_after)
            return web.json_response(self.stats())
        # Entering REFUSED drops every open connection, this one included, so write the
        # whole answer first (closing a transport still flushes what it has buffered):
        # the caller learns that the switch succeeded.
        state = self.stats() | {"fault": fault.value, "delay": float(delay)}
        state["retry_after"] = retry_after
        response = web.json_response(state)
        response.force_close()  # tell the client not to reuse this connection
        await response.prepare(request)
        await response.write_eof()
        await self.set_fault(fault, delay=delay, retry_after=retry_after)
        return response

    async def _handle_control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())
