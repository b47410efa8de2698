"""How one request to the API server is sent and its answer read (for :mod:`.client`).

Kept cheap per request, because a mass failover sends a few thousand in a burst: headers are
built once per token, request bodies are compact JSON sent as bytes, the URL is handed to aiohttp
already quoted, and there is no cookie jar to consult.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from modelroute.kube.credentials import Credentials
from modelroute.kube.lanes import MAX_IN_FLIGHT

#: Request bodies without the default ", " and ": " padding: less to encode, send and parse.
#: ASCII with escapes: a lone surrogate (from a vendor's error text) then goes as ``\ud83d``
#: and cannot raise UnicodeEncodeError, which no caller treats as an API failure.
_COMPACT: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Transport:
    """The HTTP session to the API server and the encoding of requests and answers."""

    def __init__(
        self,
        credentials: Credentials,
        field_manager: str,
        timeout_seconds: float,
        max_connections: int = MAX_IN_FLIGHT,
    ) -> None:
        self._credentials = credentials
        self._max_connections = max_connections
        self._write_query = "?" + urlencode({"fieldManager": field_manager})
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        # Headers by (Authorization, Content-Type): built once, not per request.
        self._headers: dict[tuple[str | None, str | None], Mapping[str, str]] = {}

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def http(self) -> aiohttp.ClientSession:
        """The session, made on first use (with the event loop running)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._credentials.ssl_context, limit=self._max_connections
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                # The API server keeps no cookies: no jar to look up on every request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _headers_for(self, content_type: str | None) -> Mapping[str, str]:
        # Asked per request: a rotating token changes the header, and then the key.
        auth = self._credentials.authorization()
        headers = self._headers.get((auth, content_type))
        if headers is None:
            if len(self._headers) >= 8:  # tokens rotated: drop the stale ones
                self._headers.clear()
            built = {"Accept": "application/json"}
            if auth:
                built["Authorization"] = auth
            if content_type is not None:
                built["Content-Type"] = content_type
            headers = self._headers[(auth, content_type)] = built
        return headers

    async def send(
        self, method: str, path: str, body: Any, content_type: str
    ) -> dict[str, Any] | None:
        """Send one request; ``None`` for 404 on reads, :class:`ApiError` for other failures."""
        data = None if body is None else _COMPACT.encode(body).encode("ascii")
        url = self._credentials.server + path
        if method != "GET":
            # Built once, not per request: aiohttp's query building was 6 % of the operator's
            # CPU in a mass failover (py-spy, bench mass).
            url += self._write_query
        # encoded: the path is quoted already (ObjectKind.path), so yarl need not quote again.
        async with self.http().request(
            method,
            URL(url, encoded=True),
            data=data,
            headers=self._headers_for(None if data is None else content_type),
        ) as response:
            # Read the body whatever the framing: the API server answers chunked at times.
            payload = _json_object(await response.read())
            if response.status == 404 and method == "GET":
                return None
            if response.status >= 400:
                message = payload.get("message", response.reason or "")
                reason = payload.get("reason", response.reason or "")
                raise ApiError(response.status, str(reason), str(message))
            return payload


def _json_object(body: bytes) -> dict[str, Any]:
    # A proxy in front of the API server may answer with HTML: that is no object, not a crash.
    try:
        value = json.loads(body) if body.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
