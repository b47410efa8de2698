"""Our own list-then-watch of the kinds the caches hold (routing objects, Secrets), the way
client-go's reflector does it, instead of kopf's per-event machinery.

Why: in a 1,000-route mass failover kopf's processing of the watch echoes of our own writes
(each event through its per-object queue, worker, body wrapper and handler dispatch) was 18-20 %
of the operator's CPU, on the loop the routing writes need (issue 12, py-spy, bench mass). Here
an event costs one ``json.loads`` of its line and one call of ``deliver``.

A loop LISTs (paged) and delivers every object with type None, as kopf did, then a
``SYNCED`` event (cache.SYNCED: the consumer drops what it holds and the LIST lacked); then
WATCHes from the list's resourceVersion, with bookmarks; a watch the server ends is resumed
from the last resourceVersion seen. 410 Gone (the resourceVersion was compacted away) relists,
and an object known before and missing from the relist is delivered as DELETED (deleted during
the gap). A connection error is retried after a short backoff, doubled up to a cap; one info
line per outage. Nothing stops a loop but cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from modelroute.kube.cache import SYNCED, ObjectKey, object_key
from modelroute.kube.client import SECRETS, ApiError, ObjectKind
from modelroute.kube.stream import StreamError, WatchApi

logger = logging.getLogger("modelroute.kube.watch")

Deliver = Callable[[str | None, dict[str, Any]], None]  # (event type, object); None: listed
PAGE = 500
# Secrets are listed in smaller pages: Helm keeps each release in one, up to ~1 MiB apiece.
SECRETS_PAGE = 100
GONE = 410
REPEAT_WARNING_S = 300.0  # a LIST or WATCH still refused (4xx) is warned of again after this
# Failures after which the loop retries (a LIST or WATCH that could not be sent or read).
_RETRIED = (aiohttp.ClientError, TimeoutError, ApiError, ConnectionError)


@dataclass(frozen=True)
class WatchConfig:
    """How the loops watch and retry (from the operator's settings)."""

    server_timeout_s: int = 300  # the API server ends each watch after this long
    retry_first_s: float = 0.5  # first retry after a failure
    retry_max_s: float = 4.0  # retries back off (doubling) up to this


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class _Hasty(Exception):
    """The server ended a watch at once with nothing in it: wait before the next one, so a
    misbehaving server (or proxy) is not asked again and again in a busy loop."""


class WatchLoop:
    """List-then-watch of one kind in one namespace (None: cluster-wide)."""

    def __init__(
        self,
        api: WatchApi,
        kind: ObjectKind,
        namespace: str | None,
        deliver: Deliver,
        config: WatchConfig,
        on_listed: Callable[[], None] | None = None,
    ) -> None:
        """``deliver`` gets every event (the object body as parsed, never copied);
        ``on_listed`` is called after every completed LIST."""
        self._on_listed = on_listed
        self._api = api
        self._kind = kind
        self._namespace = namespace
        self._deliver = deliver
        self._config = config
        self._known: set[ObjectKey] = set()  # objects present, as far as the loop has seen
        self.resource_version = ""  # where the next watch starts; empty: relist first
        self.lists = 0  # completed LISTs (the first one and every relist)
        self._down_since: float | None = None  # when the current outage began
        self._quiet = False  # no watch event since the last LIST (a relist then waits)
        self._warned_at: float | None = None  # the last warning of a refused LIST or WATCH

    @property
    def name(self) -> str:
        """``<plural>`` and its namespace, for logs."""
        return f"{self._kind.plural} in {self._namespace or 'all namespaces'}"

    async def run(self) -> None:
        """List, watch, resume, relist and retry until cancelled."""
        delay = self._config.retry_first_s
        while True:
            try:
                if not self.resource_version:
                    await self._relist()
                    self._recovered()
                await self._watch()
                delay = self._config.retry_first_s
            except _Hasty:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.retry_max_s)
            except _Gone:
                logger.info("watch of %s expired (410 Gone): relisting", self.name)
                delay = await self._pace(delay)
            except StreamError as exc:
                # Unreadable (a proxy's page?): relist, after a wait, as it may come again.
                logger.warning("watch of %s: %s; relisting", self.name, exc)
                self.resource_version = ""
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.retry_max_s)
            except _RETRIED as exc:
                if isinstance(exc, ApiError) and exc.status == GONE:
                    delay = await self._pace(delay)  # an expired LIST continue token
                    continue
                self._lost(exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.retry_max_s)
            except Exception:  # the last resort: only cancellation ends a loop
                self._failed()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.retry_max_s)

    async def _pace(self, delay: float) -> float:
        """Relist; first wait (``delay``, returned doubled) if no event came since the last
        LIST: a server answering every watch with 410 gets no back-to-back full LISTs."""
        self.resource_version = ""
        if not self._quiet:
            return self._config.retry_first_s
        await asyncio.sleep(delay)
        return min(delay * 2, self._config.retry_max_s)

    async def _relist(self) -> None:
        """A full paged LIST: deliver every object, then the ones gone since the last."""
        seen: set[ObjectKey] = set()
        token, version = "", ""
        while True:
            limit = SECRETS_PAGE if self._kind == SECRETS else PAGE
            page = await self._api.list_page(self._kind, self._namespace, limit=limit, token=token)
            meta = page.get("metadata") or {}
            version = version or str(meta.get("resourceVersion") or "")
            for body in page.get("items") or []:
                key = object_key(body)
                seen.add(key)
                self._known.add(key)  # a relist cut short still knows it (to delete later)
                self._emit(None, body)
            token = str(meta.get("continue") or "")
            if not token:
                break
        for namespace, name in self._known - seen:
            # Deleted while no watch ran: the cache and its routes must still hear of it.
            gone = {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}}
            self._emit("DELETED", gone)
        # And what the consumer knows from elsewhere (reads before this LIST) is reconciled.
        synced = {"metadata": {"namespace": self._namespace, "resourceVersion": version}}
        self._emit(SYNCED, {**synced, "listed": seen})
        self._known = seen
        self.resource_version = version or "0"  # none given: from the server's cache ("any")
        self.lists += 1
        self._quiet = True  # until a watch delivers something
        if self._on_listed is not None:
            self._on_listed()

    async def _watch(self) -> None:
        """One watch, from ``resource_version`` until the server ends it."""
        try:
            events = await self._api.watch(
                self._kind, self._namespace, self.resource_version, self._config.server_timeout_s
            )
        except ApiError as exc:
            if exc.status == GONE:
                raise _Gone from exc
            raise
        self._recovered()
        opened, count = asyncio.get_running_loop().time(), 0
        async with contextlib.aclosing(events):
            async for event in events:
                self._on_event(event)
                count += 1
        if not count and asyncio.get_running_loop().time() - opened < 1.0:
            raise _Hasty

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        body = event.get("object")
        if not isinstance(body, dict):
            return
        if kind == "ERROR":
            if body.get("code") == GONE:
                raise _Gone
            raise ApiError(int(body.get("code") or 500), "WatchError", str(body.get("message")))
        meta = body.get("metadata") or {}
        version = meta.get("resourceVersion")
        if version:
            self.resource_version = str(version)
        self._quiet = False
        if kind == "BOOKMARK":
            return  # only its resourceVersion matters
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if kind == "DELETED":
            self._known.discard(key)
        else:
            self._known.add(key)
        self._emit(kind, body)

    def _emit(self, event_type: str | None, body: dict[str, Any]) -> None:
        try:
            self._deliver(event_type, body)
        except Exception:  # a consumer's bug must not end the watch of every route's objects
            logger.exception("watch of %s: an event could not be handled", self.name)

    def _lost(self, exc: BaseException, delay: float) -> None:
        now = asyncio.get_running_loop().time()
        if isinstance(exc, ApiError) and 400 <= exc.status < 500:
            # Refused (RBAC drift, a CRD removed): no retry heals it, an admin must hear of it.
            if self._warned_at is None or now - self._warned_at >= REPEAT_WARNING_S:
                self._warned_at = now
                logger.warning("watch of %s refused (%s); retrying", self.name, exc)
            self._down_since = self._down_since or now
        elif self._down_since is None:
            self._down_since = now
            logger.info("watch of %s lost (%s); retrying", self.name, exc or type(exc).__name__)
        else:
            logger.debug("watch of %s: retry in %.1f s (%s)", self.name, delay, exc)

    def _failed(self) -> None:
        # A bug or a surprise (a token refresh hook failing, a malformed ERROR event): logged
        # with its traceback once per outage, then retried like a connection error.
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
            logger.exception("watch of %s failed; retrying", self.name)
        else:
            logger.debug("watch of %s failed again", self.name, exc_info=True)

    def _recovered(self) -> None:
        if self._down_since is not None:
            down = asyncio.get_running_loop().time() - self._down_since
            self._down_since = None
            logger.info("watch of %s resumed after %.1f s", self.name, down)


class Watches:
    """The running loops: one per kind and watched namespace (or one cluster-wide)."""

    def __init__(
        self,
        api: WatchApi,
        config: WatchConfig,
        *,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Loops are added with :meth:`start`; ``close`` (the API's connections) is awaited
        once they stopped."""
        self._api = api
        self._config = config
        self._close = close
        self.loops: list[WatchLoop] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(
        self,
        kind: ObjectKind,
        namespaces: Iterable[str],
        deliver: Deliver,
        on_listed: Callable[[], None] | None = None,
    ) -> list[WatchLoop]:
        """Watch ``kind`` in each of ``namespaces`` (none: cluster-wide), as kopf watched."""
        scopes: list[str | None] = list(namespaces) or [None]
        started = [
            WatchLoop(self._api, kind, ns, deliver, self._config, on_listed) for ns in scopes
        ]
        for loop in started:
            task = asyncio.create_task(loop.run(), name=f"watch:{loop.name}")
            task.add_done_callback(_ended)
            self._tasks.append(task)
        self.loops.extend(started)
        return started

    async def stop(self) -> None:
        """Cancel every loop and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._close is not None:
            await self._close()


def _ended(task: asyncio.Task[None]) -> None:
    """A loop ends only when cancelled: anything else leaves a cache unfed, say so."""
    if task.cancelled():
        return
    logger.error("%s ended unexpectedly", task.get_name(), exc_info=task.exception())
