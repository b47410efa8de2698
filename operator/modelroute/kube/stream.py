"""LIST and WATCH requests of the kinds the operator caches, behind the :class:`WatchApi`
Protocol (our own boundary, which the tests' FakeKube implements).

A session of its own, apart from :class:`~modelroute.kube.client.KubeClient`'s: a watch holds
its connection for minutes, and must neither take one of the request lanes' slots nor wait
behind a mass failover's writes. Same credentials (token refresh included).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
from aiohttp.http_exceptions import LineTooLong

from modelroute.kube.client import ApiError, ObjectKind
from modelroute.kube.credentials import Credentials

# Longest watch event line read (bytes): an object is at most ~1.5 MiB in etcd; one longer is
# not parsed, the watch relists instead (a LIST body has no such bound).
MAX_LINE = 8 * 1024 * 1024


class StreamError(Exception):
    """A LIST page or watch event that cannot be read (too long, not JSON, not the shape of
    one: a proxy's HTML page): never taken as empty; the loop retries (and relists)."""


class WatchApi(Protocol):
    """Paged LISTs and WATCH streams of one kind, in a namespace or cluster-wide (None)."""

    async def list_page(
        self, kind: ObjectKind, namespace: str | None, *, limit: int, token: str = ""
    ) -> dict[str, Any]:
        """One page of a LIST: ``items``, ``metadata.resourceVersion``, ``metadata.continue``
        (empty on the last page). Failures raise :class:`ApiError` (410: token expired)."""
        ...

    async def watch(
        self, kind: ObjectKind, namespace: str | None, resource_version: str, timeout_s: int
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Open a WATCH from ``resource_version`` with bookmarks, which the server ends after
        ``timeout_s``; the events (``type``, ``object``) as they come. Failing to open raises
        :class:`ApiError` (410: too old) or a connection error; a bad line, StreamError."""
        ...


def collection_path(kind: ObjectKind, namespace: str | None) -> str:
    """The REST path of ``kind``'s collection in ``namespace``, or across all of them."""
    if namespace is not None:
        return kind.path(namespace)
    prefix = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    return f"{prefix}/{kind.plural}"


class WatchClient:
    """The real :class:`WatchApi`, on aiohttp."""

    def __init__(
        self, credentials: Credentials, *, request_timeout_s: float, idle_timeout_s: float
    ) -> None:
        """``request_timeout_s``: a LIST page's; ``idle_timeout_s``: how long a watch may stay
        silent (the server ends it sooner, and sends bookmarks) before it is given up."""
        self._credentials = credentials
        self._list_timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._watch_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=idle_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the session (the watches' connections with it)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No pool limit: one connection per watch, a bounded few (kinds x namespaces).
            connector = aiohttp.TCPConnector(ssl=self._credentials.ssl_context, limit=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _api_error(self, response: aiohttp.ClientResponse, payload: Any) -> ApiError:
        self._credentials.answered(response.status)  # a 401: the next request refreshes it
        return _api_error(response, payload)

    def _headers(self) -> dict[str, str]:
        auth = self._credentials.authorization()
        return {"Accept": "application/json", **({"Authorization": auth} if auth else {})}

    async def list_page(
        self, kind: ObjectKind, namespace: str | None, *, limit: int, token: str = ""
    ) -> dict[str, Any]:
        """One page of a LIST (see :class:`WatchApi`)."""
        query = urlencode({"limit": limit, **({"continue": token} if token else {})})
        url = f"{self._credentials.server}{collection_path(kind, namespace)}?{query}"
        async with self._http().get(
            url, headers=self._headers(), timeout=self._list_timeout
        ) as response:
            try:
                payload = json.loads(await response.read() or b"{}")
            except ValueError:
                payload = None  # a proxy's HTML page: no object
            if response.status >= 400:
                raise self._api_error(response, payload)
            return _page(payload)

    async def watch(
        self, kind: ObjectKind, namespace: str | None, resource_version: str, timeout_s: int
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Open a WATCH (see :class:`WatchApi`)."""
        query = urlencode(
            {
                "watch": "true",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": timeout_s,
            }
        )
        url = f"{self._credentials.server}{collection_path(kind, namespace)}?{query}"
        response = await self._http().get(url, headers=self._headers(), timeout=self._watch_timeout)
        if response.status >= 400:
            try:
                payload = json.loads(await response.read() or b"{}")
            except ValueError:
                payload = {}
            finally:
                response.release()
            raise self._api_error(response, payload)
        return _events(response)


async def _events(response: aiohttp.ClientResponse) -> AsyncGenerator[dict[str, Any], None]:
    """The watch's events, one JSON object a line, until the server ends the stream."""
    try:
        while True:
            try:
                line = await response.content.readuntil(b"\n", max_size=MAX_LINE)
            except LineTooLong as exc:
                raise StreamError(f"watch event longer than {MAX_LINE} bytes") from exc
            if not line:
                return
            if line.isspace():
                continue
            try:
                event = json.loads(line)
            except ValueError as exc:
                raise StreamError("watch event is not JSON") from exc
            if not isinstance(event, dict):
                raise StreamError("watch event is not an object")
            if not isinstance(event.get("type"), str) or not isinstance(event.get("object"), dict):
                raise StreamError("watch event has no type and object")
            yield event
    finally:
        response.close()


def _page(payload: Any) -> dict[str, Any]:
    """A 2xx LIST page, checked: taking anything else as an empty page would delete every
    object the caches hold."""
    if not isinstance(payload, dict):
        raise StreamError("LIST answer is not a JSON object")
    meta = payload.get("metadata")
    items = payload.get("items")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    if not isinstance(version, str) or not version or not isinstance(items, list | None):
        raise StreamError("LIST answer has no items and metadata.resourceVersion")
    return payload


def _api_error(response: aiohttp.ClientResponse, payload: Any) -> ApiError:
    body = payload if isinstance(payload, dict) else {}
    reason = str(body.get("reason") or response.reason or "")
    return ApiError(response.status, reason, str(body.get("message") or reason))
