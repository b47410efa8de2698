"""A small HTTP/1.1 keep-alive client for the operator's own requests to the API server.

Why not aiohttp here: its client costs about 300 us of CPU per request (timers, tracing hooks,
cookie and proxy handling, URL objects, redirect bookkeeping) against under 100 us for this one
(measured on this machine, loopback, the same request and answer). A mass failover makes three
requests per route in a burst, on one event loop that also has to read their answers: at 1,000
routes that is most of a second of CPU. Only what the API server needs is spoken: a request
with Content-Length, an answer framed by Content-Length, chunks, or the connection's end.

The connections are kept open and reused (the caller bounds how many are in flight:
``kube.lanes``). A connection the server closed while idle is seen when its answer does not
come: the request is then sent once more on a new connection, but only if not one byte of the
answer came back (the server did not take it). Every failure to connect, send or read is an
``aiohttp.ClientConnectionError`` (what the operator treats as "the API server is not there"),
and the whole exchange, connecting included, is bounded by ``timeout_seconds`` (TimeoutError).

Watches stay on aiohttp (kube.stream): one long-lived stream each, where the per-request cost
does not matter.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import aiohttp

_STREAM_LIMIT = 1 << 20  # longest header line read (bytes); bodies are read by length


class Answer:
    """One HTTP answer: status, reason phrase and the whole body."""

    __slots__ = ("body", "reason", "status")

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.body = body


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to one server (``https://host:port[/prefix]``)."""

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext | bool,
        *,
        timeout_seconds: float,
        max_idle: int = 50,
    ) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the API server address {server!r} is not an http(s) URL")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl = _context(ssl_context) if parts.scheme == "https" else None
        self._authority = parts.netloc.rpartition("@")[2]
        self._idle: list[_Conn] = []
        self._max_idle = max_idle
        self._timeout = timeout_seconds

    async def request(self, method: str, target: str, headers: bytes, body: bytes | None) -> Answer:
        """Send ``method target`` with ``headers`` (``b"Name: value\\r\\n"`` lines) and
        ``body``; the answer, or ClientConnectionError / TimeoutError."""
        head = f"{method} {self._prefix}{target} HTTP/1.1\r\nHost: {self._authority}\r\n"
        length = b"" if body is None else b"Content-Length: %d\r\n" % len(body)
        data = head.encode("ascii") + headers + length + b"\r\n" + (body or b"")
        async with asyncio.timeout(self._timeout):
            while self._idle:
                conn = self._idle.pop()
                answered, answer = await self._exchange(conn, data, reused=True)
                if answered:
                    return answer
            conn = await self._open()
            return (await self._exchange(conn, data, reused=False))[1]

    async def close(self) -> None:
        """Close the idle connections (those in use close when their exchange ends)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def _open(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
                limit=_STREAM_LIMIT,
            )
        except OSError as exc:  # refused, unreachable, a name that does not resolve, TLS
            raise aiohttp.ClientConnectionError(
                f"cannot connect to {self._host}:{self._port}: {exc}"
            ) from exc
        return _Conn(reader, writer)

    async def _exchange(self, conn: _Conn, data: bytes, *, reused: bool) -> tuple[bool, Answer]:
        """(False, _) when a reused connection turned out closed before any answer: the
        request was not taken, and the caller sends it again on another connection."""
        keep = False
        try:
            conn.writer.write(data)
            status_line = await conn.reader.readline()
            if not status_line:
                if reused:
                    return False, Answer(0, "", b"")
                raise aiohttp.ServerDisconnectedError("the API server closed the connection")
            answer, keep = await _read_answer(conn.reader, status_line)
            return True, answer
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
            if reused and isinstance(exc, ConnectionResetError | BrokenPipeError):
                return False, Answer(0, "", b"")  # reset while idle, before it answered
            raise aiohttp.ClientConnectionError(f"API server connection failed: {exc!r}") from exc
        finally:
            if keep and len(self._idle) < self._max_idle:
                self._idle.append(conn)
            else:
                conn.close()


async def _read_answer(reader: asyncio.StreamReader, status_line: bytes) -> tuple[Answer, bool]:
    """The answer whose status line was read, and whether the connection can be reused."""
    version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    length: int | None = None
    chunked = False
    keep = version != "HTTP/1.0"
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise EOFError("the API server closed the connection in the headers")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = b"close" not in value.lower()
    status = int(code)
    if chunked:
        body = await _read_chunks(reader)
    elif length is not None:
        body = await reader.readexactly(length)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body, keep = await reader.read(), False  # framed by the connection's end
    return Answer(status, reason, body), keep


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readline()
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the CRLF after each chunk


def _context(given: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The TLS context: the credentials' own, the system's (True), or unverified (False: the
    kubeconfig said insecure-skip-tls-verify)."""
    if isinstance(given, ssl.SSLContext):
        return given
    context = ssl.create_default_context()
    if not given:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
