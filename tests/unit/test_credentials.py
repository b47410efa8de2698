"""Credentials: the ``kubernetes`` package's token refresh hook runs at most once per
``refresh_seconds`` (it re-applies the whole configuration, and that scans the environment),
and before the first request after the API server refused the token (401): the operator's
request client and its watch client both say so."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client
from kubernetes.config.incluster_config import (
    SERVICE_HOST_ENV_NAME,
    SERVICE_PORT_ENV_NAME,
    InClusterConfigLoader,
)

from modelroute.kube.client import SERVICES, ApiError, KubeClient
from modelroute.kube.credentials import Credentials, credentials_from_configuration
from modelroute.kube.stream import WatchClient


@dataclass
class Rotating:
    """A ``kubernetes.client.Configuration`` stand-in whose refresh hook reads the token
    ``on_disk`` (as the in-cluster loader re-reads its token file), counting its runs."""

    on_disk: str = "t0k3n"
    runs: int = 0
    api_key: dict[str, str] = field(default_factory=dict)

    def refresh(self, configuration: Any) -> None:
        assert configuration is self
        self.runs += 1
        self.api_key["BearerToken"] = self.on_disk


class Clock:
    """A fake ``time.monotonic``: tests move ``now`` by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rotating(server: str = "https://kube.invalid") -> tuple[Credentials, Rotating, Clock]:
    """Credentials whose hook reads ``Rotating.on_disk``, on a fake clock."""
    config, clock = Rotating(), Clock()
    credentials = Credentials(
        server=server,
        ssl_context=False,
        refresh=config.refresh,
        configuration=config,
        refresh_seconds=1.0,
        clock=clock,
    )
    return credentials, config, clock


def test_the_refresh_hook_runs_at_most_once_per_refresh_seconds() -> None:
    credentials, config, clock = rotating()
    assert credentials.authorization() == "Bearer t0k3n"
    config.on_disk = "r0tat3d"
    for _ in range(1000):  # a burst of requests: one refresh, the token it read
        assert credentials.authorization() == "Bearer t0k3n"
    clock.now += 0.999
    assert credentials.authorization() == "Bearer t0k3n"
    assert config.runs == 1
    clock.now += 0.001
    assert credentials.authorization() == "Bearer r0tat3d"
    assert config.runs == 2


def test_expire_refreshes_before_the_next_request() -> None:
    credentials, config, _ = rotating()
    credentials.authorization()
    config.on_disk = "r0tat3d"
    credentials.expire()
    assert credentials.authorization() == "Bearer r0tat3d"
    assert credentials.authorization() == "Bearer r0tat3d"
    assert config.runs == 2


def test_refresh_seconds_zero_runs_the_hook_before_every_request() -> None:
    credentials, config, _ = rotating()
    credentials.refresh_seconds = 0.0
    for n in range(1, 4):
        config.on_disk = f"t{n}"
        assert credentials.authorization() == f"Bearer t{n}"
    assert config.runs == 3


@pytest.mark.parametrize(
    ("stored", "token"),
    [
        ("Bearer abc.def", "abc.def"),  # the kubeconfig loader
        ("bearer abc.def", "abc.def"),  # the in-cluster loader
        ("BEARER  abc.def ", "abc.def"),
        ("abc.def", "abc.def"),  # a client that stores the bare token
    ],
)
def test_the_header_carries_the_token_once_whatever_the_loader_stored(
    stored: str, token: str
) -> None:
    credentials = credentials_from_configuration(_Configuration({"BearerToken": stored}))
    assert credentials.token == token
    assert credentials.authorization() == f"Bearer {token}"


def test_the_token_stays_out_of_the_repr() -> None:
    credentials = Credentials(server="https://kube.invalid", ssl_context=False, token="s3cret")
    assert "s3cret" not in repr(credentials)


def test_a_static_token_has_no_hook_to_run() -> None:
    credentials = Credentials(server="https://kube.invalid", ssl_context=False, token="s3cret")
    credentials.expire()
    assert credentials.authorization() == "Bearer s3cret"


def test_credentials_from_a_configuration_take_the_refresh_interval() -> None:
    config = Rotating()
    configuration = _Configuration({"BearerToken": "Bearer t0k3n"}, config.refresh)
    credentials = credentials_from_configuration(configuration, refresh_seconds=7.5)
    assert credentials.refresh_seconds == 7.5
    assert credentials.token == "t0k3n" and credentials.refresh == config.refresh


@dataclass
class _Configuration:
    """The few attributes of ``kubernetes.client.Configuration`` credentials are made from."""

    api_key: dict[str, str]
    refresh_api_key_hook: Any = None
    verify_ssl: bool = False
    host: str = "https://kube.invalid/"


class TokenServer:
    """Accepts only the ``valid`` token; anything else gets the API server's 401 Status."""

    def __init__(self) -> None:
        self.valid = "t0k3n"
        self.seen: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "")
        self.seen.append(token)
        if token != f"Bearer {self.valid}":
            status = {"kind": "Status", "reason": "Unauthorized", "message": "Unauthorized"}
            return web.json_response(status, status=401)
        if request.path.endswith("/services"):  # a LIST
            return web.json_response({"items": [], "metadata": {"resourceVersion": "10"}})
        return web.json_response({"metadata": {"name": "chat-llm"}})


@pytest.fixture
async def token_server() -> AsyncIterator[tuple[TokenServer, str]]:
    server = TokenServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield server, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_a_401_makes_the_client_send_the_rotated_token_next(
    token_server: tuple[TokenServer, str],
) -> None:
    server, url = token_server
    credentials, config, _ = rotating(url)
    client = KubeClient(credentials, field_manager="test")
    try:
        assert await client.get_object(SERVICES, "ai", "chat-llm") is not None
        config.on_disk = server.valid = "r0tat3d"  # rotated within the refresh interval
        with pytest.raises(ApiError) as refused:
            await client.get_object(SERVICES, "ai", "chat-llm")
        assert refused.value.status == 401
        assert await client.patch_object(SERVICES, "ai", "chat-llm", {}) is not None
    finally:
        await client.close()
    assert server.seen == ["Bearer t0k3n", "Bearer t0k3n", "Bearer r0tat3d"]
    assert config.runs == 2


async def test_a_401_makes_the_watch_client_send_the_rotated_token_next(
    token_server: tuple[TokenServer, str],
) -> None:
    server, url = token_server
    credentials, config, _ = rotating(url)
    api = WatchClient(credentials, request_timeout_s=5, idle_timeout_s=5)
    try:
        await api.list_page(SERVICES, "ai", limit=500)
        config.on_disk = server.valid = "r0tat3d"  # rotated within the refresh interval
        with pytest.raises(ApiError) as refused:
            await api.list_page(SERVICES, "ai", limit=500)
        assert refused.value.status == 401
        await api.list_page(SERVICES, "ai", limit=500)
        config.on_disk = server.valid = "n3w"
        with pytest.raises(ApiError) as watch_refused:
            await api.watch(SERVICES, "ai", "10", 30)
        assert watch_refused.value.status == 401
        await api.list_page(SERVICES, "ai", limit=500)
    finally:
        await api.close()
    tokens = ["t0k3n", "t0k3n", "r0tat3d", "r0tat3d", "n3w"]
    assert server.seen == [f"Bearer {token}" for token in tokens]
    assert config.runs == 3


def in_cluster(tmp_path: Path, jwt: str) -> tuple[client.Configuration, InClusterConfigLoader]:
    """A configuration the ``kubernetes`` package's own in-cluster loader set up, from a
    ServiceAccount token file as a Pod has it."""
    (tmp_path / "token").write_text(jwt)
    (tmp_path / "ca.crt").write_text("not read: TLS is off in these tests")
    loader = InClusterConfigLoader(
        token_filename=str(tmp_path / "token"),
        cert_filename=str(tmp_path / "ca.crt"),
        environ={SERVICE_HOST_ENV_NAME: "10.96.0.1", SERVICE_PORT_ENV_NAME: "443"},
    )
    configuration = client.Configuration()
    loader.load_and_set(configuration)
    configuration.verify_ssl = False
    return configuration, loader


async def test_in_cluster_the_service_account_token_is_sent_and_its_rotation_taken(
    token_server: tuple[TokenServer, str], tmp_path: Path
) -> None:
    """In a Pod: the token the in-cluster loader read is sent as ``Bearer <token>`` (it stores
    ``bearer <token>``: sent as read, the API server refused every request with 401). When the
    kubelet rotates the file, the loader re-reads it once its own period passed; a 401
    answered meanwhile makes the next request run the loader's hook."""
    server, url = token_server
    server.valid = "eyJhbGciOiJSUzI1NiJ9.first.sig"
    configuration, loader = in_cluster(tmp_path, server.valid)
    clock = Clock()
    credentials = credentials_from_configuration(configuration)
    credentials.server, credentials.clock = url, clock
    api = KubeClient(credentials, field_manager="test")
    try:
        assert await api.get_object(SERVICES, "ai", "chat-llm") is not None
        server.valid = "eyJhbGciOiJSUzI1NiJ9.second.sig"
        (tmp_path / "token").write_text(server.valid)
        loader.token_expires_at = datetime.datetime.now()  # the loader's minute has passed
        with pytest.raises(ApiError) as refused:  # within our refresh interval: the old one
            await api.get_object(SERVICES, "ai", "chat-llm")
        assert refused.value.status == 401
        assert await api.get_object(SERVICES, "ai", "chat-llm") is not None
    finally:
        await api.close()
    first, second = "eyJhbGciOiJSUzI1NiJ9.first.sig", "eyJhbGciOiJSUzI1NiJ9.second.sig"
    assert server.seen == [f"Bearer {first}", f"Bearer {first}", f"Bearer {second}"]
