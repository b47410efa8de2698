"""How one request to the API server is sent and its answer read (for :mod:`.client`).

Kept cheap per request, because a mass failover sends a few thousand in a burst: header lines
are built once per token, request bodies are compact JSON sent as bytes, the path goes out as
it was quoted, over keep-alive connections of :mod:`.http1` (not aiohttp's client: see there).
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import urlencode

from modelroute.kube.credentials import Credentials
from modelroute.kube.http1 import Http1Pool
from modelroute.kube.lanes import MAX_IN_FLIGHT

#: Request bodies without the default ", " and ": " padding: less to encode, send and parse.
#: ASCII with escapes: a lone surrogate (from a vendor's error text) then goes as ``\ud83d``
#: and cannot raise UnicodeEncodeError, which no caller treats as an API failure.
_COMPACT: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)
USER_AGENT: Final = "modelroute-operator"


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Transport:
    """The connections to the API server and the encoding of requests and answers."""

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
        self._timeout = timeout_seconds
        self._pool: Http1Pool | None = None
        # Header lines by (Authorization, Content-Type): built once, not per request.
        self._headers: dict[tuple[str | None, str | None], bytes] = {}

    async def close(self) -> None:
        """Close the connections."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _connections(self) -> Http1Pool:
        if self._pool is None:
            credentials = self._credentials
            self._pool = Http1Pool(
                credentials.server,
                credentials.ssl_context,
                timeout_seconds=self._timeout,
                max_idle=self._max_connections,
            )
        return self._pool

    def _headers_for(self, content_type: str | None) -> bytes:
        # Asked per request: a rotating token changes the header, and then the key.
        auth = self._credentials.authorization()
        headers = self._headers.get((auth, content_type))
        if headers is None:
            if len(self._headers) >= 8:  # tokens rotated: drop the stale ones
                self._headers.clear()
            lines = ["Accept: application/json", f"User-Agent: {USER_AGENT}"]
            if auth:
                lines.append(f"Authorization: {auth}")
            if content_type is not None:
                lines.append(f"Content-Type: {content_type}")
            headers = self._headers[(auth, content_type)] = "".join(
                f"{line}\r\n" for line in lines
            ).encode("latin-1")
        return headers

    async def send(
        self, method: str, path: str, body: Any, content_type: str
    ) -> dict[str, Any] | None:
        """Send one request; ``None`` for 404 on reads, :class:`ApiError` for other failures."""
        data = None if body is None else _COMPACT.encode(body).encode("ascii")
        target = path
        if method != "GET":
            target += self._write_query  # built once: query building was 6 % of a mass failover
        headers = self._headers_for(None if data is None else content_type)
        # ``path`` (and its query) is quoted already (ObjectKind.path): sent as it is.
        answer = await self._connections().request(method, target, headers, data)
        # The body is read whatever the framing: the API server answers chunked at times.
        payload = _json_object(answer.body)
        if answer.status == 404 and method == "GET":
            return None
        self._credentials.answered(answer.status)  # a 401: the next request refreshes the token
        if not 200 <= answer.status < 300:  # a redirect is no answer either: nothing was done
            message = payload.get("message", answer.reason)
            reason = payload.get("reason", answer.reason)
            raise ApiError(answer.status, str(reason), str(message))
        return payload


def _json_object(body: bytes) -> dict[str, Any]:
    # A proxy in front of the API server may answer with HTML: that is no object, not a crash.
    try:
        value = json.loads(body) if body.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
