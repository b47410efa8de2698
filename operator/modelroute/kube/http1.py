"""A small HTTP/1.1 keep-alive client for the operator's own requests to the API server.

Why not aiohttp here: its client costs about 300 us of CPU per request (timers, tracing hooks,
cookie and proxy handling, URL objects, redirect bookkeeping) against under 100 us for this one
(measured on this machine, loopback, the same request and answer). A mass failover makes three
requests per route in a burst, on one event loop that also has to read their answers: at 1,000
routes that is most of a second of CPU. Only what the API server needs is spoken: a request
with Content-Length, an answer framed by Content-Length, chunks, or the connection's end.

The connections are kept open and reused (the caller bounds how many are in flight:
``kube.lanes``), and closed about a second after ``IDLE_SECONDS`` idle. A connection the server
closed while idle is seen when its answer does not come: the request is then sent once more on a
new connection, but only if not one byte of the answer came back (the server did not take it).
Every failure to connect, send or read is an ``aiohttp.ClientConnectionError`` (what the
operator treats as "the API server is not there"), and the whole exchange, connecting included,
is bounded by ``timeout_seconds`` (TimeoutError).

Watches stay on aiohttp (kube.stream): one long-lived stream each, where the per-request cost
does not matter.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from urllib.parse import urlsplit

import aiohttp

_STREAM_LIMIT = 1 << 20  # longest header line read (bytes); bodies are read by length
# Seconds an idle connection is kept for reuse (aiohttp's default, which this replaces): a
# load balancer or NAT on the way may forget a quiet flow without a word, and a write on it
# would wait for the whole timeout (a failover's, after an hour of steady state).
IDLE_SECONDS = 15.0
# Idle connections past IDLE_SECONDS are closed at most this much later (seconds), by a timer:
# each holds a TLS read buffer of 256 KiB (asyncio's), and a burst of routing writes opens up
# to 100 that a quiet operator would otherwise keep until each was tried again.
_PRUNE_GRACE_SECONDS = 1.0


class Answer:
    """One HTTP answer: status, reason phrase and the whole body."""

    __slots__ = ("body", "reason", "status")

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.body = body


class _Conn:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        self.writer.close()

    def usable(self, now: float) -> bool:
        """Idle for less than IDLE_SECONDS, and not closed by the server meanwhile."""
        fresh = now - self.idle_since < IDLE_SECONDS
        return fresh and not self.reader.at_eof() and not self.writer.is_closing()


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
        # Oldest first: requests take the newest, stale ones are closed from the left.
        self._idle: collections.deque[_Conn] = collections.deque()
        self._pruner: asyncio.TimerHandle | None = None
        self._pruner_loop: asyncio.AbstractEventLoop | None = None
        self._max_idle = max_idle
        self._timeout = timeout_seconds
        self._closed = False

    async def request(self, method: str, target: str, headers: bytes, body: bytes | None) -> Answer:
        """Send ``method target`` with ``headers`` (``b"Name: value\\r\\n"`` lines) and
        ``body``; the answer, or ClientConnectionError / TimeoutError."""
        head = f"{method} {self._prefix}{target} HTTP/1.1\r\nHost: {self._authority}\r\n"
        length = b"" if body is None else b"Content-Length: %d\r\n" % len(body)
        data = head.encode("ascii") + headers + length + b"\r\n" + (body or b"")
        async with asyncio.timeout(self._timeout):
            while (conn := self._reusable()) is not None:
                answered, answer = await self._exchange(conn, data, reused=True)
                if answered:
                    return answer
            conn = await self._open()
            return (await self._exchange(conn, data, reused=False))[1]

    async def close(self) -> None:
        """Close the idle connections (those in use close when their exchange ends)."""
        self._closed = True
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None
        idle, self._idle = self._idle, collections.deque()
        for conn in idle:
            conn.close()

    def _reusable(self) -> _Conn | None:
        """The most recently used idle connection still usable; stale ones are closed."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    def _keep(self, conn: _Conn) -> None:
        """Put ``conn`` back for reuse, and make sure the idle ones are closed once stale."""
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.append(conn)
        # A timer of another loop (closed since, in tests) would never fire on this one.
        if self._pruner is None or self._pruner_loop is not loop:
            if self._pruner is not None:
                self._pruner.cancel()
            self._pruner, self._pruner_loop = loop.call_at(self._expiry(), self._prune), loop

    def _expiry(self) -> float:
        return self._idle[0].idle_since + IDLE_SECONDS + _PRUNE_GRACE_SECONDS

    def _prune(self) -> None:
        """Close the idle connections past IDLE_SECONDS (oldest first); again when the next
        one will be."""
        self._pruner = None
        now = asyncio.get_running_loop().time()
        while self._idle and not self._idle[0].usable(now):
            self._idle.popleft().close()
        if self._idle and not self._closed:
            self._pruner = asyncio.get_running_loop().call_at(self._expiry(), self._prune)

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
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a peer gone without a word is noticed (as client-go does)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return _Conn(reader, writer)

    async def _exchange(self, conn: _Conn, data: bytes, *, reused: bool) -> tuple[bool, Answer]:
        """(False, _) when a reused connection turned out closed before any byte of an
        answer: the request was not taken, and the caller sends it on another connection."""
        keep = started = False
        try:
            conn.writer.write(data)
            status_line = await conn.reader.readline()
            started = bool(status_line)
            if not started:
                if reused:
                    return False, Answer(0, "", b"")
                raise aiohttp.ServerDisconnectedError("the API server closed the connection")
            answer, keep = await _read_answer(conn.reader, status_line)
            while 100 <= answer.status < 200:  # an interim answer: the final one follows
                if answer.status == 101:
                    raise ValueError("the API server switched protocols")
                answer, keep = await _read_answer(conn.reader, await conn.reader.readline())
            return True, answer
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
            if reused and not started and isinstance(exc, ConnectionResetError | BrokenPipeError):
                return False, Answer(0, "", b"")  # reset while idle, before it answered
            raise aiohttp.ClientConnectionError(f"API server connection failed: {exc!r}") from exc
        finally:
            if keep and not self._closed and len(self._idle) < self._max_idle:
                self._keep(conn)
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
