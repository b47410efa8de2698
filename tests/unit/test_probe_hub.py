"""ProbeHub: identical probes run once; loops are independent and stop with their subscribers."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from modelroute.api.models import AuthSecretRef, Backend, ProbeSpec, ProbeType, Provider
from modelroute.kube.cache import ObjectCache, slim_secret
from modelroute.metrics import Metrics
from modelroute.probing import prober
from modelroute.probing.dialects import TokenLimit
from modelroute.probing.hub import ProbeHub, ProbeKey
from tests.fakes.openai_backend import FakeBackend, Fault

PROBE = ProbeSpec(interval_seconds=1, timeout_seconds=1)
SECRETS: dict[tuple[str, str], dict[str, Any]] = {
    ("ai", "vendor-key"): {
        "metadata": {"name": "vendor-key", "namespace": "ai"},
        "data": {"apiKey": base64.b64encode(b"sk-hub\n").decode()},
    },
}


async def _fetch_secret(namespace: str, name: str) -> dict[str, Any] | None:
    return SECRETS.get((namespace, name))


@pytest.fixture
async def hub() -> AsyncIterator[ProbeHub]:
    secrets = ObjectCache(_fetch_secret, slim_secret)
    secrets.subscribe(("ai", "chat"), [("ai", "vendor-key")])
    probe_hub = ProbeHub(
        session=prober.new_session(connection_limit=0, connection_limit_per_host=10),
        secrets=secrets,
        metrics=Metrics(),
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        start_jitter_seconds=0.0,
        max_retry_after_seconds=60.0,
    )
    yield probe_hub
    await probe_hub.close()


def _key(url: str, model: str = "gpt-4o", **changes: Any) -> ProbeKey:
    backend = Backend(name="b", priority=0, model=model, endpoint=url)
    return ProbeKey.for_backend("ai", backend, PROBE.model_copy(update=changes))


class Inbox:
    """Collects results; waits for the n-th without sleeping blindly."""

    def __init__(self) -> None:
        self.results: list[prober.ProbeResult] = []
        self._event = asyncio.Event()

    def __call__(self, result: prober.ProbeResult) -> None:
        self.results.append(result)
        self._event.set()

    async def wait(self, count: int, within: float = 30.0) -> None:  # a hang guard only
        async with asyncio.timeout(within):
            while len(self.results) < count:
                self._event.clear()
                await self._event.wait()


async def test_identical_probes_run_once_for_all_subscribers(hub: ProbeHub) -> None:
    async with FakeBackend() as backend:
        first, second = Inbox(), Inbox()
        hub.subscribe(_key(backend.url), first)
        hub.subscribe(_key(backend.url), second)
        await first.wait(2)
        await second.wait(2)
        assert len(hub) == 1
        assert backend.requests_by_path["/v1/models"] == max(
            len(first.results), len(second.results)
        )
        assert first.results[0] is second.results[0]
        assert first.results[0].ok


async def test_different_settings_are_different_loops(hub: ProbeHub) -> None:
    async with FakeBackend() as backend:
        a, b = Inbox(), Inbox()
        hub.subscribe(_key(backend.url), a)
        hub.subscribe(_key(backend.url, latency_threshold_ms=5000), b)
        await a.wait(1)
        await b.wait(1)
        assert len(hub) == 2


async def test_a_hung_backend_does_not_delay_another(hub: ProbeHub) -> None:
    async with FakeBackend() as hung, FakeBackend() as fine:
        await hung.set_fault(Fault.HANG)
        stuck, healthy = Inbox(), Inbox()
        hub.subscribe(_key(hung.url, timeout_seconds=3), stuck)
        hub.subscribe(_key(fine.url), healthy)
        # Two results of the healthy loop (at 0 s and 1 s) arrive while the hung probe is still
        # in flight: its 3 s timeout leaves a loaded machine 2 s of margin, not a 2.5 s ceiling.
        await healthy.wait(2)
        assert stuck.results == []
        assert all(r.ok for r in healthy.results)
        await stuck.wait(1)
        assert stuck.results[0].message == "timeout after 3s"
        await hung.clear_fault()


async def test_loop_stops_with_its_last_subscriber(hub: ProbeHub) -> None:
    async with FakeBackend() as backend:
        a, b = Inbox(), Inbox()
        key = _key(backend.url)
        hub.subscribe(key, a)
        hub.subscribe(key, b)
        await a.wait(1)
        hub.unsubscribe(key, a)
        assert len(hub) == 1
        hub.unsubscribe(key, b)
        assert len(hub) == 0
        count = backend.requests_total
        await asyncio.sleep(1.5)  # longer than the interval: a live loop would have probed
        assert backend.requests_total == count


async def test_auth_header_comes_from_the_secret(hub: ProbeHub) -> None:
    async with FakeBackend(api_key="sk-hub") as backend, FakeBackend(api_key="x") as other:
        ok, missing = Inbox(), Inbox()
        ref = AuthSecretRef(name="vendor-key", key="apiKey")
        with_key = Backend(
            name="v", priority=0, model="gpt-4o", endpoint=backend.url, auth_secret_ref=ref
        )
        no_secret = Backend(
            name="o",
            priority=0,
            model="gpt-4o",
            endpoint=other.url,
            auth_secret_ref=AuthSecretRef(name="absent", key="apiKey"),
        )
        hub.subscribe(ProbeKey.for_backend("ai", with_key, PROBE), ok)
        hub.subscribe(ProbeKey.for_backend("ai", no_secret, PROBE), missing)
        await ok.wait(1)
        await missing.wait(1)
        assert ok.results[0].ok, ok.results[0].message
        assert backend.last_headers["Authorization"] == "Bearer sk-hub"
        assert missing.results[0].message == "Secret ai/absent not found"
        assert other.requests_total == 0


def test_provider_and_its_version_make_a_different_probe() -> None:
    def key(**fields: Any) -> ProbeKey:
        backend = Backend(name="b", priority=0, model="m", endpoint="http://h:1", **fields)
        return ProbeKey.for_backend("ai", backend, PROBE)

    openai, azure = key(), key(provider=Provider.AZURE_OPENAI)
    azure_preview = key(provider=Provider.AZURE_OPENAI, provider_version="2025-04-01-preview")
    assert len({openai, azure, azure_preview}) == 3
    assert (azure_preview.provider, azure_preview.provider_version) == (
        Provider.AZURE_OPENAI,
        "2025-04-01-preview",
    )


def test_old_and_new_type_names_are_one_probe() -> None:
    old = _key("http://h:1", type=ProbeType.OPENAI_CHAT)
    new = _key("http://h:1", type=ProbeType.CHAT)
    assert old == new and old.type is ProbeType.CHAT
    assert old.probe_spec().type is ProbeType.CHAT


class Recorder:
    """A loopback server that records (path, headers, body) and answers with ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.seen: list[tuple[str, Any, Any]] = []
        self._answer = answer
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> str:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.json() if request.can_read_body else None
            self.seen.append((request.path_qs, request.headers, body))
            response: web.StreamResponse = self._answer(request.path_qs, body)
            return response

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


COMPLETION = {"choices": [{"message": {"content": "p"}, "finish_reason": "length"}]}


def _refuses_max_completion_tokens(path: str, body: Any) -> web.Response:
    if "max_completion_tokens" in body:
        detail = [{"type": "extra_forbidden", "loc": ["body", "max_completion_tokens"]}]
        return web.json_response({"detail": detail}, status=422)
    return web.json_response(COMPLETION)


async def test_loop_remembers_the_token_field_a_server_takes(hub: ProbeHub) -> None:
    recorder = Recorder(_refuses_max_completion_tokens)
    async with recorder as url:
        inbox = Inbox()
        hub.subscribe(_key(url, type=ProbeType.CHAT), inbox)
        await inbox.wait(2)
        fields = [next(f for f in body if f.startswith("max_")) for _p, _h, body in recorder.seen]
        # The first probe is refused once and retried; the second starts with what worked.
        assert fields[:3] == ["max_completion_tokens", "max_tokens", "max_tokens"]
        assert all(r.ok for r in inbox.results[:2])
        assert inbox.results[0].token_limit is TokenLimit.MAX_TOKENS


async def test_provider_defaults_pick_the_auth_header(hub: ProbeHub) -> None:
    def message(path: str, body: Any) -> web.Response:
        return web.json_response({"type": "message", "content": []})

    recorder = Recorder(message)
    async with recorder as url:
        backend = Backend(
            name="claude",
            priority=0,
            model="claude-sonnet-4-5",
            endpoint=url,
            provider=Provider.ANTHROPIC,
            auth_secret_ref=AuthSecretRef(name="vendor-key", key="apiKey"),
        )
        inbox = Inbox()
        hub.subscribe(
            ProbeKey.for_backend("ai", backend, PROBE.model_copy(update={"type": ProbeType.CHAT})),
            inbox,
        )
        await inbox.wait(1)
        assert inbox.results[0].ok, inbox.results[0].message
        path, headers, _body = recorder.seen[0]
        assert path == "/v1/messages"
        assert headers["x-api-key"] == "sk-hub"
        assert headers["anthropic-version"] == "2023-06-01"
        assert "Authorization" not in headers
