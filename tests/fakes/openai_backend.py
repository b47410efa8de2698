"""Fake LLM vendor backends with fault injection, in three dialects; and their CLI.

A :class:`FakeBackend` is a tiny ``aiohttp.web`` server that speaks just enough of one vendor
API for the operator's probes, for failover tests and for the official SDKs (which
``tests/unit/test_fakes_with_sdks.py`` uses as clients to prove the fakes faithful), plus
``/healthz`` and ``/``.  The ``dialect`` is a ModelRoute ``backends[].provider`` value:

``OpenAI`` (default)
    ``GET /v1/models``, ``POST /v1/chat/completions``; key as ``Authorization: Bearer <key>``.
    Reasoning models (o1, o3, o4, gpt-5, or ``reasoning_models=``) reject ``max_tokens`` and a
    non-default ``temperature`` and take ``max_completion_tokens``.
``AzureOpenAI``
    ``GET /openai/models``, ``GET /openai/deployments`` (legacy api-versions only), ``POST
    /openai/deployments/{deployment}/chat/completions``, all with ``?api-version=``; key as
    ``api-key: <key>``.  The served models are the deployment names.
``Anthropic``
    ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/messages``; key as ``x-api-key:
    <key>``, and an ``anthropic-version`` header on every request.

Each dialect module (:mod:`tests.fakes.dialects.openai`, ``.azure``, ``.anthropic``) documents
its wire format and cites the public documentation and observed answers it follows.

Faults (see :class:`Fault`) are dialect-neutral switches, answered in the dialect's shape
(OpenAI / AzureOpenAI / Anthropic):

- OUTAGE: 503 ``server_error`` / 503 ``ServiceUnavailable`` / 529 ``overloaded_error``.
- SERVER_ERROR: 500 ``server_error`` / 500 ``InternalServerError`` / 500 ``api_error``.
- RATE_LIMITED: 429 ``rate_limit_exceeded`` / 429 ``"429"`` / 429 ``rate_limit_error``, with
  ``Retry-After`` (Azure adds ``retry-after-ms``).
- WRONG_MODELS: the list shows only an unrelated model; chat is a 404 ``model_not_found`` /
  ``DeploymentNotFound`` / ``not_found_error``.
- CANNOT_GENERATE: listing is normal; every generation request (a POST) is SERVER_ERROR's 500.
- REFUSED, HANG, SLOW, MALFORMED_JSON and HTML_PAGE are the same in every dialect.

A wrong or missing key is a 401 ``invalid_api_key`` / ``"401"`` / ``authentication_error``,
and an unknown path under the API prefix is the dialect's 404.  Faults apply to every path
but the control endpoints; keys and versions are checked on API paths only.

Faults can be switched at runtime, in-process (:meth:`FakeBackend.set_fault`) or over HTTP
through the control endpoints, so a separate process (a demo, a benchmark) can drive it:

``POST /__control/fault``
    JSON body ``{"fault": "outage", "delay": 0.5, "retry_after": 2}``; only ``fault`` is
    required.  Answers 200 with the new state, 400 on an unknown fault name or bad values.
``GET /__control/stats``
    ``{"fault": ..., "dialect": ..., "requests_total": ..., "requests_by_path": {...}}``.

Control requests bypass faults, authentication and the request counters.  The exception is
:attr:`Fault.REFUSED`: the listening socket is closed, so the control endpoints are just as
unreachable as the rest -- only an in-process caller (or a restart) can clear it.  A control
request that sets ``"refused"`` gets its 200 answer first; the listener is closed after it.

Run one from a shell (the API key comes from an environment variable because argv is
visible to every user through ``ps``)::

    MY_KEY=sk-test python -m tests.fakes.openai_backend --port 8000 --model gpt-4o \\
        --api-key-env MY_KEY --name vendor-a [--dialect Anthropic] [--version 2023-06-01]

The code lives in :mod:`tests.fakes.backend` (server, faults, control),
:mod:`tests.fakes.thread` (:class:`FakeBackendThread`), :mod:`tests.fakes.faults` and
:mod:`tests.fakes.dialects`; this module re-exports it for existing callers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from tests.fakes.backend import FakeBackend
from tests.fakes.dialects import Dialect
from tests.fakes.faults import CONTROL_PREFIX, Fault
from tests.fakes.thread import FakeBackendThread

__all__ = ["CONTROL_PREFIX", "Dialect", "FakeBackend", "FakeBackendThread", "Fault", "main"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.openai_backend",
        description="Run one fake LLM vendor backend until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    parser.add_argument("--port", type=int, default=0, help="listen port (0 = pick a free one)")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="MODEL",
        help="model id (Azure: deployment) to serve; repeatable (default: one per dialect, "
        "gpt-4o for OpenAI and AzureOpenAI)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="require the key in $VAR on API paths, sent the dialect's way (read from the "
        "environment, never from argv, which any local user can see in ps)",
    )
    parser.add_argument("--name", default="fake", help="vendor name reported as owned_by")
    parser.add_argument(
        "--dialect",
        default=Dialect.OPENAI.value,
        type=Dialect,
        choices=list(Dialect),
        help="API dialect (default: OpenAI)",
    )
    parser.add_argument(
        "--version",
        action="append",
        dest="versions",
        metavar="VERSION",
        help="accepted api-version (AzureOpenAI) or anthropic-version (Anthropic); "
        "repeatable (default: the real ones)",
    )
    parser.add_argument(
        "--reasoning-model",
        action="append",
        dest="reasoning_models",
        metavar="MODEL",
        help="(OpenAI, AzureOpenAI) treat MODEL as a reasoning model; repeatable "
        "(default: ids starting with o1, o3, o4 or gpt-5)",
    )
    parser.add_argument(
        "--fault",
        default="none",
        choices=[f.value for f in Fault],
        help="fault to start with (default: none)",
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace, api_key: str | None) -> None:
    backend = FakeBackend(
        args.models,
        api_key=api_key,
        name=args.name,
        host=args.host,
        port=args.port,
        dialect=args.dialect,
        versions=args.versions,
        reasoning_models=args.reasoning_models,
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
    except ValueError as exc:  # an option the dialect has no use for
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
