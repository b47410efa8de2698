"""The API server client's HTTP/1.1 (kube.http1), against a scripted loopback server: framing
by length, chunks or the connection's end; keep-alive reuse; a connection the server closed
while idle retried once, never a request the server may have taken; failures as aiohttp's
connection errors; the whole exchange under one timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from modelroute.kube.http1 import IDLE_SECONDS, Http1Pool

Script = Callable[[int, bytes], bytes | None]  # (request number, request) -> raw answer


class Server:
    """Answers each request with ``script(n, request)``; None closes without answering."""

    def __init__(self, script: Script, close_after: bool = False) -> None:
        self.script = script
        self.close_after = close_after
        self.reset_after = False  # reset (RST) instead of closing after the answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.script(len(self.requests), request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.reset_after:  # linger 0: the close is a RST, not a FIN
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if self.close_after:
                    break
        writer.close()


def ok(body: bytes = b'{"kind":"Service"}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@contextlib.asynccontextmanager
async def serving(server: Server, prefix: str = "") -> AsyncIterator[Http1Pool]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    pool = Http1Pool(f"http://127.0.0.1:{port}{prefix}", False, timeout_seconds=5)
    try:
        yield pool
    finally:
        await pool.close()
        for writer in server.writers:
            writer.close()
        listener.close()


HEADERS = b"Accept: application/json\r\n"


async def test_answers_by_length_reuse_one_connection() -> None:
    server = Server(lambda n, _: ok(b'{"n":%d}' % n))
    async with serving(server) as pool:
        first = await pool.request("GET", "/api/v1/services", HEADERS, None)
        second = await pool.request("PATCH", "/api/v1/x?fieldManager=m", HEADERS, b"{}")
    assert (first.status, first.body, second.body) == (200, b'{"n":1}', b'{"n":2}')
    assert server.connections == 1
    assert server.requests[1].startswith(b"PATCH /api/v1/x?fieldManager=m HTTP/1.1\r\n")
    assert b"Content-Length: 2\r\n" in server.requests[1] and server.requests[1].endswith(b"{}")


async def test_a_chunked_answer_is_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;ext=1\r\n{"a":\r\n3\r\n1}\n\r\n0\r\nTrailer: x\r\n\r\n'
    )
    server = Server(lambda n, _: chunked)
    async with serving(server) as pool:
        answer = await pool.request("GET", "/api/v1/services", HEADERS, None)
        again = await pool.request("GET", "/api/v1/services", HEADERS, None)
    assert answer.body == b'{"a":1}\n' == again.body
    assert server.connections == 1


async def test_an_answer_framed_by_the_connections_end_is_read_and_not_reused() -> None:
    server = Server(lambda n, _: b"HTTP/1.1 500 Oops\r\n\r\n{}", close_after=True)
    async with serving(server) as pool:
        answer = await pool.request("GET", "/x", HEADERS, None)
        await pool.request("GET", "/x", HEADERS, None)
    assert (answer.status, answer.reason, answer.body) == (500, "Oops", b"{}")
    assert server.connections == 2


async def test_connection_close_is_honoured() -> None:
    server = Server(lambda n, _: ok(extra=b"Connection: close\r\n"))
    async with serving(server) as pool:
        await pool.request("GET", "/x", HEADERS, None)
        await pool.request("GET", "/x", HEADERS, None)
    assert server.connections == 2


async def test_a_connection_closed_while_idle_is_replaced_and_the_request_sent_once() -> None:
    server = Server(lambda n, _: ok())
    async with serving(server) as pool:
        await pool.request("GET", "/x", HEADERS, None)
        server.writers[0].close()  # the server's idle timeout
        await asyncio.sleep(0.01)
        answer = await pool.request("PATCH", "/y", HEADERS, b"{}")
    assert answer.status == 200
    assert server.connections == 2
    assert [r.split(b" ")[0] for r in server.requests] == [b"GET", b"PATCH"]


async def test_a_fresh_connection_closed_without_an_answer_is_an_error() -> None:
    server = Server(lambda n, _: None)
    async with serving(server) as pool:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await pool.request("PATCH", "/y", HEADERS, b"{}")
    assert len(server.requests) == 1  # not sent again: the server may have taken it


async def test_an_answer_cut_short_is_an_error_and_not_retried() -> None:
    server = Server(lambda n, _: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", True)
    async with serving(server) as pool:
        with pytest.raises(aiohttp.ClientConnectionError):
            await pool.request("PATCH", "/y", HEADERS, b"{}")
    assert len(server.requests) == 1


async def test_a_refused_connection_is_a_connection_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    pool = Http1Pool(f"https://127.0.0.1:{port}", True, timeout_seconds=5)
    with pytest.raises(aiohttp.ClientConnectionError, match="cannot connect"):
        await pool.request("GET", "/x", HEADERS, None)


@pytest.mark.looptime
async def test_a_silent_server_times_out() -> None:
    server = Server(lambda n, _: b"")  # takes the request, never answers
    async with serving(server) as pool:
        pool._timeout = 30
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/x", HEADERS, None)
        assert loop.time() - start == pytest.approx(30)


async def test_a_path_prefix_and_the_host_are_sent() -> None:
    server = Server(lambda n, _: ok())
    async with serving(server, prefix="/k8s/clusters/c-1/") as pool:
        await pool.request("GET", "/api/v1/namespaces", HEADERS, None)
    head = server.requests[0]
    assert head.startswith(b"GET /k8s/clusters/c-1/api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1:")


def test_only_http_servers_are_taken() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Pool("unix:///var/run/k8s.sock", False, timeout_seconds=1)


@pytest.mark.looptime
async def test_a_connection_idle_longer_than_the_keepalive_is_not_reused() -> None:
    # A load balancer may drop a quiet flow without a word: a write on it would hang.
    server = Server(lambda n, _: ok())
    async with serving(server) as pool:
        await pool.request("GET", "/x", HEADERS, None)
        await asyncio.sleep(IDLE_SECONDS - 1)
        await pool.request("GET", "/x", HEADERS, None)
        assert server.connections == 1
        await asyncio.sleep(IDLE_SECONDS + 1)
        await pool.request("GET", "/x", HEADERS, None)
    assert server.connections == 2


@pytest.mark.looptime
async def test_idle_connections_are_closed_once_stale_without_another_request() -> None:
    """A burst opens many connections; a quiet operator then sends nothing that would find
    them stale. Each holds a TLS buffer of 256 KiB: they are closed by a timer (the server
    sees each connection end), the newest last."""
    server = Server(lambda n, _: ok())
    async with serving(server) as pool:
        await asyncio.gather(*(pool.request("GET", "/x", HEADERS, None) for _ in range(3)))
        assert server.connections == 3
        await asyncio.sleep(5)
        await pool.request("GET", "/x", HEADERS, None)  # one of them is used again
        await asyncio.sleep(IDLE_SECONDS - 4)  # 1 s past the first two's IDLE_SECONDS
        await asyncio.sleep(1.5)  # and the pruning's grace
        assert len(pool._idle) == 1
        await asyncio.sleep(5)
        assert not pool._idle
        await asyncio.sleep(0.1)
        assert all(w.is_closing() for w in server.writers)  # the server saw them end
        await pool.request("GET", "/x", HEADERS, None)  # a new one when needed
    assert server.connections == 4


async def test_a_reset_after_part_of_the_answer_is_not_sent_again() -> None:
    server = Server(lambda n, _: ok())
    async with serving(server) as pool:
        await pool.request("GET", "/x", HEADERS, None)
        server.script = lambda n, _: b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"
        server.reset_after = True
        with pytest.raises(aiohttp.ClientConnectionError):
            await pool.request("POST", "/events", HEADERS, b"{}")
    assert [r.split(b" ")[0] for r in server.requests] == [b"GET", b"POST"]


async def test_an_interim_answer_is_skipped() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    server = Server(lambda n, _: interim + ok(b'{"n":%d}' % n))
    async with serving(server) as pool:
        first = await pool.request("POST", "/x", HEADERS, b"{}")
        second = await pool.request("POST", "/x", HEADERS, b"{}")
    assert (first.status, first.body, second.body) == (200, b'{"n":1}', b'{"n":2}')


async def test_a_connection_in_use_at_close_is_not_kept() -> None:
    server = Server(lambda n, _: ok())
    async with serving(server) as pool:
        pending = asyncio.create_task(pool.request("GET", "/x", HEADERS, None))
        await asyncio.sleep(0)  # the request is on its way
        await pool.close()
        await pending
        assert not pool._idle  # closed with its exchange, not left open in a dropped pool
