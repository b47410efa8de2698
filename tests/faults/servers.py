"""Backends that misbehave below HTTP, a private CA, and a recording forward proxy.

Real loopback sockets (``asyncio.start_server``), so the prober's own aiohttp stack meets each
fault exactly as it would meet a broken vendor: no mocks.  Each server counts the bytes it
managed to send, which is how the tests show a body read is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "RawServer"], Awaitable[None]]

MIB = 1 << 20
_CHUNK = 64 * 1024
_MODELS_JSON = b'{"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}'


@dataclass
class RawServer:
    """A loopback TCP server running ``handler`` for every connection."""

    handler: Handler
    ssl_context: ssl.SSLContext | None = None
    bytes_sent: int = 0
    connections: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the prober hung up: that is the point of most of these servers
        except asyncio.CancelledError:
            pass  # the server is stopping; end quietly (asyncio logs a cancelled handler)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Send ``data`` and count it once the kernel took it."""
        writer.write(data)
        await writer.drain()
        self.bytes_sent += len(data)


@contextlib.asynccontextmanager
async def raw_server(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[RawServer]:
    """Run a :class:`RawServer` on 127.0.0.1 for the block."""
    server = RawServer(handler, ssl_context)
    server._server = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server
    finally:
        server._server.close()
        for task in list(server._tasks):
            task.cancel()
        await asyncio.gather(*server._tasks, return_exceptions=True)
        await server._server.wait_closed()


@contextlib.contextmanager
def raw_server_thread(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> Iterator[RawServer]:
    """:func:`raw_server` on its own event loop in a daemon thread, for synchronous tests."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="raw-server", daemon=True)
    thread.start()
    context = raw_server(handler, ssl_context)
    try:
        yield asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(10)
    finally:
        stopped = asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop)
        stopped.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The request line and headers (the probes send small bodies we do not need)."""
    return await reader.readuntil(b"\r\n\r\n")


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


# -- the misbehaving backends ----------------------------------------------------------------


async def never_answers(
    reader: asyncio.StreamReader, _w: asyncio.StreamWriter, _s: RawServer
) -> None:
    """Accept the connection and the request, then say nothing, ever."""
    await read_head(reader)
    await asyncio.Event().wait()


async def slowloris(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: RawServer
) -> None:
    """Answer the status line, then trickle header bytes forever (one every 100 ms)."""
    await read_head(reader)
    await s.write(writer, b"HTTP/1.1 200 OK\r\nX-Trickle: ")
    while True:
        await asyncio.sleep(0.1)
        await s.write(writer, b"a")


async def header_flood(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: RawServer
) -> None:
    """A status line, then one 200 000-byte header line."""
    await read_head(reader)
    await s.write(writer, b"HTTP/1.1 200 OK\r\nX-Flood: " + b"a" * 200_000 + b"\r\n\r\n")


async def not_http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: RawServer
) -> None:
    """Another protocol on the port (an SSH server's banner), then silence."""
    await read_head(reader)
    await s.write(writer, b"SSH-2.0-OpenSSH_9.6\r\n")
    await asyncio.Event().wait()


def huge_body(*, size: int, announce_length: bool) -> Handler:
    """A 200 JSON answer whose body is ``size`` bytes, with or without Content-Length."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: RawServer
    ) -> None:
        await read_head(reader)
        headers = {"Content-Type": "application/json"}
        headers |= {"Content-Length": str(size)} if announce_length else {"Connection": "close"}
        await s.write(writer, _head("200 OK", headers) + b'{"data": [')
        sent = 0
        while sent < size:
            await s.write(writer, b" " * _CHUNK)
            sent += _CHUNK

    return handler


async def reset_mid_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: RawServer
) -> None:
    """Promise 100 000 bytes, send 1 000, then reset the connection (RST, not FIN)."""
    await read_head(reader)
    await s.write(
        writer, _head("200 OK", {"Content-Type": "application/json", "Content-Length": "100000"})
    )
    await s.write(writer, b'{"data": [' + b" " * 990)
    sock = writer.get_extra_info("socket")
    # SO_LINGER with a zero timeout: close() sends RST, as a crashed proxy or backend would.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def redirect_loop(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: RawServer
) -> None:
    """Every request is sent back to where it came from (302 to itself)."""
    while True:
        head = await read_head(reader)
        path = head.split(b" ", 2)[1].decode()
        await s.write(writer, _head("302 Found", {"Location": path, "Content-Length": "0"}))


async def sse_chat(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: RawServer
) -> None:
    """Answer a chat probe with a (complete, valid) server-sent event stream."""
    head = await read_head(reader)
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    await reader.readexactly(length)
    chunk = (
        b'{"id":"c1","object":"chat.completion.chunk",'
        b'"choices":[{"index":0,"delta":{"content":"hi"}}]}'
    )
    body = b"data: " + chunk + b"\n\ndata: [DONE]\n\n"
    headers = {"Content-Type": "text/event-stream", "Content-Length": str(len(body))}
    await s.write(writer, _head("200 OK", headers) + body)


async def models_ok(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: RawServer
) -> None:
    """A healthy ``/v1/models`` answer listing gpt-4o, for every request on the connection."""
    while True:
        await read_head(reader)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(_MODELS_JSON))}
        await s.write(writer, _head("200 OK", headers) + _MODELS_JSON)


# -- a private CA ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivateCA:
    """A throw-away CA and one server certificate it signed, for 127.0.0.1 and localhost."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


def make_private_ca(directory: Path) -> PrivateCA:
    """Generate the CA and the server certificate with the ``openssl`` command (1 day valid)."""
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        [
            "req",
            "-x509",
            *ec,
            "-keyout",
            ca_key,
            "-out",
            ca_cert,
            "-days",
            "1",
            "-subj",
            "/CN=modelroute test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_cert,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "1",
            "-extfile",
            ext,
        ],
    ):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return PrivateCA(ca_cert, cert, key)


# -- a forward proxy that records what it forwards -------------------------------------------


@dataclass
class ForwardProxy:
    """HTTP forward proxy: CONNECT tunnels (https) and absolute-URI requests (http)."""

    requests: list[str] = field(default_factory=list)
    refuse: bytes | None = None  # a status line to answer every request with, e.g. a 407

    async def __call__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: RawServer
    ) -> None:
        head = await read_head(reader)
        method, target, _version = head.split(b"\r\n", 1)[0].decode().split(" ")
        self.requests.append(f"{method} {target}")
        if self.refuse is not None:
            await s.write(writer, self.refuse + b"\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            await s.write(writer, b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            # http://host:port/path -> connect there, send the request in origin form.
            rest = target.split("://", 1)[1]
            hostport, _, path = rest.partition("/")
            host, port = hostport.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(head.replace(target.encode(), b"/" + path.encode(), 1))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
