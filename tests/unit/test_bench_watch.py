"""The benchmark's Service watch (bench/common.py ServiceWatch): a stream that stops delivering
in the middle of a burst, while the API server holds it open, is re-listed and watched again,
never waited on until the timeout; a re-list never takes a Service back to an older state."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from bench.common import ServiceWatch

VENDOR, INHOUSE, ALT = {"app": "vendor-egress"}, {"app": "llama-vllm"}, {"app": "alt-vllm"}


def service(name: str, rv: int, selector: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv)}, "spec": {"selector": selector}}


class _Socket:
    def __init__(self, stream: _Stream) -> None:
        self._stream = stream

    def shutdown(self, how: int) -> None:
        self._stream.lines.put(b"")  # what a blocked read returns once its socket is shut


class _Raw:
    def __init__(self, stream: _Stream) -> None:
        self._sock = _Socket(stream)


class _Fp:
    def __init__(self, stream: _Stream) -> None:
        self.raw = _Raw(stream)


class _Stream:
    """A watch response: lines put in ``lines``; blocks (a stalled stream) until one comes."""

    def __init__(self) -> None:
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.fp = _Fp(self)

    def readline(self) -> bytes:
        return self.lines.get()

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeApi:
    """LIST answers from ``services``; each WATCH opens a new :class:`_Stream`."""

    def __init__(self, services: list[dict[str, Any]], rv: int) -> None:
        self.services = services
        self.rv = rv
        self.streams: list[_Stream] = []
        self.opened = threading.Event()
        self.fail_lists = False

    def get(self, path: str) -> dict[str, Any]:
        if self.fail_lists:
            raise TimeoutError("the API server did not answer")
        return {"items": list(self.services), "metadata": {"resourceVersion": str(self.rv)}}

    def open(self, path: str, timeout: float = 30.0) -> _Stream:
        stream = _Stream()
        self.streams.append(stream)
        self.opened.set()
        return stream


def event(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def until(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextlib.contextmanager
def watching(api: FakeApi, stall_s: float = 0.2) -> Iterator[ServiceWatch]:
    """A started watch on ``api`` (its first stream open), stopped at the end."""
    watch = ServiceWatch(api, "ns", stall_s=stall_s)  # type: ignore[arg-type]
    assert api.opened.wait(5)
    try:
        yield watch
    finally:
        watch.stop()
        api.streams[-1].lines.put(b"")  # unblocks the thread's read


def test_a_stream_that_stalls_mid_burst_is_relisted_and_watched_again() -> None:
    api = FakeApi([service("r0", 10, VENDOR), service("r1", 10, VENDOR)], rv=10)
    names = ["r0", "r1"]
    with watching(api) as watch:
        # r1's switch arrives; r0's happens on the server but the stream delivers no more.
        api.streams[0].lines.put(event("MODIFIED", service("r1", 11, INHOUSE)))
        api.services, api.rv = [service("r0", 12, INHOUSE), service("r1", 11, INHOUSE)], 12
        began = time.monotonic()
        assert watch.wait(lambda: watch.count(names, "inhouse") == 2, timeout=120)
        # Re-listed at the stall (0.2 s), not at the timeout's last look.
        assert time.monotonic() - began < 60
        assert watch.resyncs == 1 and watch.resync_failures == 0
        # The bench then takes r0's switch time from the audit log, not from the re-list.
        (r0_at, _), (r1_at, _) = watch.history["r0"][-1], watch.history["r1"][-1]
        assert watch.seen_by_list("r0", r0_at) and not watch.seen_by_list("r1", r1_at)
        # The stalled stream was ended: the thread watches again, from the listing.
        assert until(lambda: len(api.streams) == 2)
        # A replay from before the listing does not take r0 back.
        api.streams[-1].lines.put(event("MODIFIED", service("r0", 10, VENDOR)))
        api.streams[-1].lines.put(event("MODIFIED", service("r1", 13, ALT)))
        # The stream is read in order: once r1 is on alt, r0's replay was read before it.
        assert watch.wait(lambda: watch.current.get("r1") == "alt", timeout=30)
        assert watch.current == {"r0": "inhouse", "r1": "alt"}
        assert [t for _, t in watch.history["r0"]] == ["vendor", "inhouse"]


def test_a_wait_without_events_is_not_relisted_before_its_timeout() -> None:
    api = FakeApi([service("r0", 10, VENDOR)], rv=10)
    with watching(api) as watch:
        # Nothing switches: no event came during the wait, so nothing looks stalled.
        assert not watch.wait(lambda: watch.count(["r0"], "inhouse") == 1, timeout=1.0)
        assert watch.resyncs == 1  # only the last look at the timeout


def test_a_failed_relist_is_counted_and_the_wait_goes_on() -> None:
    api = FakeApi([service("r0", 10, VENDOR)], rv=10)
    with watching(api) as watch:
        api.fail_lists = True
        api.streams[0].lines.put(event("MODIFIED", service("r0", 11, VENDOR)))
        assert not watch.wait(lambda: watch.count(["r0"], "inhouse") == 1, timeout=1.5)
        assert watch.resync_failures >= 1 and watch.resyncs >= 1
