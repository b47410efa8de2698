"""A fake backend on its own event loop in a daemon thread, for synchronous callers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, TypeVar

from tests.fakes.backend import FakeBackend
from tests.fakes.faults import Fault

__all__ = ["FakeBackendThread"]

_T = TypeVar("_T")


class FakeBackendThread:
    """Runs a :class:`FakeBackend` on a private event loop in a daemon thread.

    For synchronous callers (benchmarks, scripts, sync tests, SDK clients).  Constructor
    arguments are those of :class:`FakeBackend` (``dialect=`` included).  The wrapped backend
    is :attr:`backend`; its counters can be read from any thread (single int/Counter reads),
    but anything that awaits must go through this class.
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
        thread = threading.Thread(target=loop.run_forever, name="fake-backend", daemon=True)
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
