"""Fake OpenAI-compatible LLM backends with fault injection.

A :class:`FakeBackend` is a tiny ``aiohttp.web`` server that speaks just enough of the
OpenAI HTTP API (``GET /v1/models``, ``POST /v1/chat/completions``) for the operator's
probes and for failover tests, plus ``/healthz`` and ``/``.  Faults (see :class:`Fault`)
can be switched at runtime, either in-process (:meth:`FakeBackend.set_fault`) or over HTTP
through the control endpoints, so a separate process (a demo, a benchmark) can drive it:

``POST /__control/fault``
    JSON body ``{"fault": "outage", "delay": 0.5, "retry_after": 2}``; only ``fault`` is
    required.  Answers 200 with the new state, 400 on an unknown fault name or bad values.
``GET /__control/stats``
    ``{"fault": ..., "requests_total": ..., "requests_by_path": {...}}``.

Control requests bypass faults, authentication and the request counters.  The exception is
:attr:`Fault.REFUSED`: the listening socket is closed, so the control endpoints are just as
unreachable as the rest -- only an in-process caller (or a restart) can clear it.  A control
request that sets ``"refused"`` gets its 200 answer first; the listener is closed after it.

Run one from a shell (the API key comes from an environment variable because argv is
visible to every user through ``ps``)::

    MY_KEY=sk-test python -m tests.fakes.openai_backend --port 8000 --model gpt-4o \\
        --api-key-env MY_KEY --name vendor-a
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["CONTROL_PREFIX", "FakeBackend", "FakeBackendThread", "Fault", "main"]

#: Paths under this prefix are the control plane of the fake, never subject to faults.
CONTROL_PREFIX = "/__control/"

_T = TypeVar("_T")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Truncated mid-array on purpose: looks like the start of a models list, so a client that
# only sniffs the first bytes or the content-type is fooled, but a JSON parser is not.
_MALFORMED_BODY = '{"object": "list", "data": ['

_HTML_PAGE = """<!DOCTYPE html>
<html>
<head><title>Sign in - Guest Wi-Fi</title></head>
<body>
<h1>Welcome to Guest Wi-Fi</h1>
<form method="post" action="/login">
<label>Username <input name="username"></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button>
</form>
</body>
</html>
"""

# The only model advertised under WRONG_MODELS; it must never be a configured one.
_OTHER_MODEL = "some-other-model"


class Fault(enum.StrEnum):
    """A failure mode the fake backend can simulate.

    The values are the lower-case names accepted by ``POST /__control/fault``.  A StrEnum
    (a ``str`` and an ``Enum``) so members compare equal to, and format as, those names.
    """

    NONE = "none"
    #: 503 JSON error on every request.
    OUTAGE = "outage"
    #: Listening socket closed: new connects get ECONNREFUSED. Clearing re-binds the port.
    REFUSED = "refused"
    #: 500 JSON error on every request.
    SERVER_ERROR = "server_error"
    #: 429 JSON error with a ``Retry-After`` header (``retry_after`` seconds).
    RATE_LIMITED = "rate_limited"
    #: Requests are held open until the fault is cleared or the backend stops.
    HANG = "hang"
    #: Requests are answered normally after ``delay`` seconds.
    SLOW = "slow"
    #: 200 ``application/json`` whose body is not valid JSON.
    MALFORMED_JSON = "malformed_json"
    #: 200 ``text/html`` captive-portal style login page.
    HTML_PAGE = "html_page"
    #: ``/v1/models`` lists only an unrelated model; chat with a configured one is a 404.
    WRONG_MODELS = "wrong_models"


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json_error(
    status: int,
    message: str,
    type_: str,
    code: str | None,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        _error_body(message, type_, code, param), status=status, headers=headers
    )


def _count_prompt_tokens(messages: list[Any]) -> int:
    # A whitespace word count is deterministic and close enough for tests that only
    # check that usage is present and consistent (total == prompt + completion).
    words = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += len(content.split())
    return max(words, 1)


class FakeBackend:
    """An in-process fake OpenAI-compatible server with switchable faults.

    Use it as an async context manager (``async with FakeBackend(...) as backend``), or call
    :meth:`start` / :meth:`stop`.  All methods must be called from the event loop that
    started it; use :class:`FakeBackendThread` from synchronous code or other threads.
    """

    def __init__(
        self,
        models: Sequence[str] = ("gpt-4o",),
        *,
        api_key: str | None = None,
        name: str = "fake",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Configure (but do not start) a backend.

        :param models: model ids served; ``/v1/models`` lists them in this order.
        :param api_key: if set, every ``/v1/*`` request needs ``Authorization: Bearer <key>``.
        :param name: reported as ``owned_by`` in the models list and in the ``/`` banner.
        :param host: address to listen on (loopback by default: tests must not be exposed).
        :param port: port to listen on; 0 picks a free one at :meth:`start`.
        """
        if isinstance(models, str):
            # A bare string is a Sequence[str] too; iterating it would serve one model per
            # character, which is never what the caller meant.
            models = (models,)
        self.models: tuple[str, ...] = tuple(models)
        if _OTHER_MODEL in self.models:
            raise ValueError(f"{_OTHER_MODEL!r} is reserved for Fault.WRONG_MODELS")
        self.name = name
        self._api_key = api_key
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
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
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
        fault = self._fault

        if fault is Fault.HANG:
            await self._release.wait()
            if self._stopping.is_set():
                return _json_error(503, "The server is shutting down", "server_error", None)
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
            return _json_error(
                503,
                "The server is temporarily unavailable (injected outage)",
                "server_error",
                "service_unavailable",
            )
        elif fault is Fault.SERVER_ERROR:
            return _json_error(
                500,
                "The server had an error while processing your request",
                "server_error",
                None,
            )
        elif fault is Fault.RATE_LIMITED:
            return _json_error(
                429,
                "Rate limit reached for requests",
                "requests",
                "rate_limit_exceeded",
                headers={"Retry-After": str(self._retry_after)},
            )
        elif fault is Fault.MALFORMED_JSON:
            return web.Response(text=_MALFORMED_BODY, content_type="application/json")
        elif fault is Fault.HTML_PAGE:
            return web.Response(text=_HTML_PAGE, content_type="text/html")

        if self._api_key is not None and request.path.startswith("/v1/"):
            expected = f"Bearer {self._api_key}"
            if request.headers.get("Authorization") != expected:
                # Never echo the received key: the message ends up in operator logs/events.
                return _json_error(
                    401,
                    "Incorrect API key provided",
                    "invalid_request_error",
                    "invalid_api_key",
                )
        return await handler(request)

    def _served_models(self) -> tuple[str, ...]:
        return (_OTHER_MODEL,) if self._fault is Fault.WRONG_MODELS else self.models

    async def _handle_models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [
            {"id": model, "object": "model", "created": created, "owned_by": self.name}
            for model in self._served_models()
        ]
        return web.json_response({"object": "list", "data": data})

    async def _handle_chat(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json_error(
                400,
                "We could not parse the JSON body of your request",
                "invalid_request_error",
                None,
            )
        if not isinstance(body, dict):
            return _json_error(
                400, "The request body must be a JSON object", "invalid_request_error", None
            )
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _json_error(
                400,
                "you must provide a model parameter",
                "invalid_request_error",
                None,
                param="model",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _json_error(
                400,
                "'messages' must be a non-empty array",
                "invalid_request_error",
                None,
                param="messages",
            )
        if model not in self._served_models():
            return _json_error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                param="model",
            )
        prompt_tokens = _count_prompt_tokens(messages)
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "pong"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": 1,
                    "total_tokens": prompt_tokens + 1,
                },
            }
        )

    async def _handle_healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _handle_root(self, request: web.Request) -> web.Response:
        return web.Response(text=f"fake OpenAI-compatible backend {self.name!r}\n")

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


class FakeBackendThread:
    """Runs a :class:`FakeBackend` on a private event loop in a daemon thread.

    For synchronous callers (benchmarks, scripts, sync tests).  Constructor arguments are
    those of :class:`FakeBackend`.  The wrapped backend is :attr:`backend`; its counters can
    be read from any thread (single int/Counter reads), but anything that awaits must go
    through this class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Configure the wrapped backend; nothing runs until :meth:`start`."""
        self._args = args
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.backend: FakeBackend | None = None

    def start(self, timeout: float = 10.0) -> str:
        """Start the loop thread and the backend; return the backend's base URL."""
        if self._thread is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-openai-backend", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

        async def _create_and_start() -> str:
            # Created inside the loop so its asyncio primitives belong to that loop.
            self.backend = FakeBackend(*self._args, **self._kwargs)
            return await self.backend.start()

        try:
            return self._call(_create_and_start(), timeout)
        except BaseException:
            self.stop(timeout)
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the backend, the loop and the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self.backend is not None:
                self._call(self.backend.stop(), timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None

    def set_fault(
        self, fault: Fault, *, delay: float = 0.0, retry_after: int = 1, timeout: float = 10.0
    ) -> None:
        """Thread-safe :meth:`FakeBackend.set_fault`; blocks until the switch is done."""
        backend = self._require_backend()
        self._call(backend.set_fault(fault, delay=delay, retry_after=retry_after), timeout)

    def clear_fault(self, timeout: float = 10.0) -> None:
        """Thread-safe :meth:`FakeBackend.clear_fault`."""
        self._call(self._require_backend().clear_fault(), timeout)

    @property
    def url(self) -> str:
        """Base URL of the running backend."""
        return self._require_backend().url

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _require_backend(self) -> FakeBackend:
        if self.backend is None:
            raise RuntimeError("not started")
        return self.backend

    def _call(self, coro: Awaitable[_T], timeout: float = 10.0) -> _T:
        if self._loop is None:
            raise RuntimeError("not started")

        async def _wrap() -> _T:
            return await coro

        future: Future[_T] = asyncio.run_coroutine_threadsafe(_wrap(), self._loop)
        return future.result(timeout)


# -- CLI ---------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.openai_backend",
        description="Run one fake OpenAI-compatible backend until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    parser.add_argument("--port", type=int, default=0, help="listen port (0 = pick a free one)")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="MODEL",
        help="model id to serve; repeatable (default: gpt-4o)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="require 'Authorization: Bearer $VAR' on /v1/* (key read from the environment, "
        "never from argv, which any local user can see in ps)",
    )
    parser.add_argument("--name", default="fake", help="vendor name reported as owned_by")
    parser.add_argument(
        "--fault",
        default="none",
        choices=[f.value for f in Fault],
        help="fault to start with (default: none)",
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace, api_key: str | None) -> None:
    backend = FakeBackend(
        args.models or ("gpt-4o",),
        api_key=api_key,
        name=args.name,
        host=args.host,
        port=args.port,
    )
    await backend.set_fault(Fault(args.fault))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with backend:
        # Parents (demo scripts, benchmarks) read this line to learn the port.
        print(backend.url, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tests.fakes.openai_backend``; returns the exit code."""
    args = _parse_args(argv)
    api_key: str | None = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            print(
                f"error: environment variable {args.api_key_env} is unset or empty", file=sys.stderr
            )
            return 2
    try:
        asyncio.run(_serve(args, api_key))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
