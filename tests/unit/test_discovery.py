"""Which routing drivers the operator serves: enabled (--routing-drivers) and served by the API.

Discovery runs once at start-up through the KubeApi boundary (FakeKube here; the envtest
tests/envtest/test_driver_availability.py runs it against a real API server). The start-up
handler then registers kopf watches for the served drivers' kinds only.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from modelroute import routing
from modelroute.control import discovery
from modelroute.control.discovery import DriverAvailability, discover_drivers
from modelroute.kube.client import (
    AIGATEWAYROUTES,
    AISERVICEBACKENDS,
    HTTPROUTES,
    MODELROUTES,
    SERVICES,
    ApiError,
    ObjectKind,
)
from modelroute.settings import Settings
from tests.fakes.kube import FakeKube

GATEWAYS = ObjectKind("gateway.networking.k8s.io", "v1", "gateways", "Gateway")
GADGETS = ObjectKind("example.com", "v1", "gadgets", "Gadget")
SPROCKETS = ObjectKind("example.com", "v1", "sprockets", "Sprocket")
WHY_RESTART = (
    "(kinds are resolved once at start-up: the operator has no RBAC on "
    "CustomResourceDefinitions to notice a new one)"
)
NOT_INSTALLED = (
    "the HTTPRoute CRD (gateway.networking.k8s.io/v1) is not installed on this cluster; "
    f"install it and restart the operator {WHY_RESTART}"
)
AI_GATEWAY_NOT_INSTALLED = (
    "the AIGatewayRoute CRD (aigateway.envoyproxy.io/v1beta1) and the AIServiceBackend CRD "
    "(aigateway.envoyproxy.io/v1beta1) are not installed on this cluster; install them and "
    f"restart the operator {WHY_RESTART}"
)


def require_httproute() -> None:
    assert "HTTPRoute" in routing.names(), (
        "the HTTPRoute routing driver is not registered (operator/modelroute/routing/ defines "
        f"{routing.names()}): this test needs it"
    )


def discover(kube: FakeKube, enabled: tuple[str, ...] = ()) -> DriverAvailability:
    return asyncio.run(discover_drivers(kube, enabled))


def test_a_bare_cluster_serves_the_service_driver_only() -> None:
    require_httproute()
    kube = FakeKube()
    found = discover(kube)
    assert found.available == ("Service",)
    assert dict(found.unavailable) == {
        "AIGatewayRoute": AI_GATEWAY_NOT_INSTALLED,
        "HTTPRoute": NOT_INSTALLED,
    }
    assert found.watched_kinds == [SERVICES]  # no watch or cache of a kind the cluster lacks
    assert kube.writes == 0 and kube.calls == []  # discovery only: no read, no write


def test_with_the_gateway_api_installed_both_drivers_are_served() -> None:
    require_httproute()
    kube = FakeKube()
    kube.serve(HTTPROUTES)
    found = discover(kube)
    assert found.available == ("HTTPRoute", "Service")
    assert dict(found.unavailable) == {"AIGatewayRoute": AI_GATEWAY_NOT_INSTALLED}
    assert set(found.watched_kinds) == {SERVICES, HTTPROUTES}


def test_with_the_ai_gateway_installed_its_driver_watches_both_of_its_kinds() -> None:
    kube = FakeKube()
    kube.serve(AIGATEWAYROUTES)
    kube.serve(AISERVICEBACKENDS)
    found = discover(kube, ("AIGatewayRoute", "Service"))
    assert found.available == ("AIGatewayRoute", "Service")
    assert set(found.watched_kinds) == {SERVICES, AIGATEWAYROUTES, AISERVICEBACKENDS}
    assert kube.discovery_calls == ["aigateway.envoyproxy.io/v1beta1", "v1"]  # once per group


def test_a_kind_a_driver_only_reads_must_be_served_too() -> None:
    kube = FakeKube()
    kube.serve(AIGATEWAYROUTES)  # but no AIServiceBackend CRD
    assert discover(kube).unavailable["AIGatewayRoute"] == (
        "the AIServiceBackend CRD (aigateway.envoyproxy.io/v1beta1) is not installed on this "
        f"cluster; install it and restart the operator {WHY_RESTART}"
    )


def test_a_group_served_without_the_kind_is_a_missing_crd() -> None:
    """gateway.networking.k8s.io/v1 answers (Gateways installed) but lists no httproutes."""
    require_httproute()
    kube = FakeKube()
    kube.serve(GATEWAYS)
    assert discover(kube).unavailable["HTTPRoute"] == NOT_INSTALLED
    kube.serve(HTTPROUTES)
    kube.unserve(HTTPROUTES)  # its CRD deleted again
    assert "gateway.networking.k8s.io/v1" in kube.served
    assert discover(kube).unavailable["HTTPRoute"] == NOT_INSTALLED


def test_a_driver_not_enabled_is_unavailable_and_its_kinds_are_not_even_looked_up() -> None:
    require_httproute()
    kube = FakeKube()
    kube.serve(HTTPROUTES)
    found = discover(kube, ("Service",))
    assert found.available == ("Service",)
    assert dict(found.unavailable) == {
        name: f"routing driver {name} is not enabled on this operator "
        "(--routing-drivers; Helm value routing.drivers)"
        for name in ("AIGatewayRoute", "HTTPRoute")
    }
    assert found.watched_kinds == [SERVICES]
    assert kube.discovery_calls == ["v1"]


def test_only_the_httproute_driver() -> None:
    require_httproute()
    kube = FakeKube()
    kube.serve(HTTPROUTES)
    found = discover(kube, ("HTTPRoute",))
    assert found.available == ("HTTPRoute",)
    assert found.unavailable["Service"] == discovery.not_enabled("Service")
    assert found.watched_kinds == [HTTPROUTES]  # not even Services
    assert kube.discovery_calls == ["gateway.networking.k8s.io/v1"]


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ApiError(500, "InternalError", "etcd is having a moment"), id="500"),
        pytest.param(ApiError(403, "Forbidden", "discovery denied"), id="403"),
        pytest.param(ConnectionResetError("reset by peer"), id="connection"),
    ],
)
def test_a_failing_discovery_is_raised_not_taken_for_a_missing_crd(error: Exception) -> None:
    """Only a 404 means "not installed": anything else must not disable a driver for good
    (the start-up handler fails and kopf retries it)."""
    kube = FakeKube()
    kube.discovery_error = error
    with pytest.raises(type(error)):
        discover(kube)


def test_a_missing_kind_counts_only_from_an_api_server_that_says_it_is_ready() -> None:
    """A kube-apiserver that has just started answers before its CRDs are loaded: discovery
    would read a CRD group as not installed, for good. Not ready: raised (kopf retries the
    start-up in a few seconds). Every enabled driver found: /readyz does not matter."""
    kube = FakeKube()
    kube.not_ready = ApiError(500, "Internal Server Error", "poststarthook/crd-informer-synced")
    assert discover(kube, ("Service",)).available == ("Service",)
    with pytest.raises(ApiError):
        discover(kube, ("Service", "HTTPRoute"))  # no Gateway API served: is it loaded yet?
    kube.not_ready = None
    found = discover(kube, ("Service", "HTTPRoute"))
    assert found.available == ("Service",) and "HTTPRoute" in found.unavailable


def test_an_unknown_enabled_driver_is_an_error_naming_the_available_ones() -> None:
    with pytest.raises(KeyError, match="unknown routing driver 'Nope'; available: "):
        discover(FakeKube(), ("Nope",))


# --- a driver reading kinds of its own: every missing CRD named, one request per group -----------

_GADGET_MODULE = textwrap.dedent(
    '''
    """A throwaway driver that routes through Gadgets and reads Sprockets and Services."""

    from modelroute.kube.client import SERVICES, ObjectKind
    from modelroute.routing.base import DriverInfo

    GADGETS = ObjectKind("example.com", "v1", "gadgets", "Gadget")
    SPROCKETS = ObjectKind("example.com", "v1", "sprockets", "Sprocket")

    DRIVER = DriverInfo(
        name="Gadget",
        kind=GADGETS,
        create=lambda context: None,
        check=lambda spec: [],
        reads=(SPROCKETS, SERVICES),
    )
    '''
)


@pytest.fixture
def gadget_driver(tmp_path: Path) -> Iterator[None]:
    """The throwaway module, visible to the registry for one test."""
    (tmp_path / "gadget.py").write_text(_GADGET_MODULE)
    routing.__path__.append(str(tmp_path))
    routing._registry.cache_clear()
    try:
        yield
    finally:
        routing.__path__.remove(str(tmp_path))
        routing._registry.cache_clear()
        sys.modules.pop("modelroute.routing.gadget", None)


@pytest.mark.usefixtures("gadget_driver")
def test_every_missing_kind_is_named_and_each_group_version_asked_once() -> None:
    kube = FakeKube()
    found = discover(kube, ("Gadget", "Service"))
    assert found.unavailable["Gadget"] == (
        "the Gadget CRD (example.com/v1) and the Sprocket CRD (example.com/v1) are not installed "
        f"on this cluster; install them and restart the operator {WHY_RESTART}"
    )
    assert sorted(kube.discovery_calls) == ["example.com/v1", "v1"]
    kube.serve(GADGETS)
    reason = discover(kube, ("Gadget",)).unavailable["Gadget"]
    assert reason.startswith("the Sprocket CRD (example.com/v1) is not installed on this cluster")
    assert "install it and restart the operator" in reason
    kube.serve(SPROCKETS)
    found = discover(kube, ("Gadget",))
    assert found.available == ("Gadget",)
    assert found.watched_kinds == [GADGETS, SPROCKETS, SERVICES]


# --- the kopf handlers: watches registered at start-up, for the served drivers' kinds only -------


def watched_resources(registry: kopf.OperatorRegistry) -> set[tuple[str | None, object]]:
    """(group, plural) of every on-event handler kopf would watch (a private kopf attribute,
    read the way kopf's own resource observer reads it; ``kopf.on.event(group, version,
    plural)`` keeps the plural as the selector's ``any_name``)."""
    return {
        (h.selector.group, h.selector.plural or h.selector.any_name)
        for h in registry._watching.get_all_handlers()
        if h.selector is not None
    }


def test_the_startup_handler_leaves_only_modelroutes_to_kopf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf watches ModelRoutes only: the drivers' kinds and Secrets are the runtime's own
    watches (kube.watch, started by ``Runtime.start_routes``), so the start-up handler registers
    no kopf watch, and an unavailable driver's kind is watched by nobody."""
    from modelroute.control import handlers
    from modelroute.control.runtime import Runtime

    registry = kopf.get_default_registry()
    served = DriverAvailability(("Service",), {"HTTPRoute": NOT_INSTALLED})
    listed: list[bool] = []

    async def start_routes() -> None:  # the start-up list (control.prelist), then the watches
        listed.append(True)

    runtime = SimpleNamespace(watched_kinds=served.watched_kinds, start_routes=start_routes)
    started: list[Settings] = []

    async def fake_start(settings: Settings) -> Any:
        started.append(settings)
        return runtime

    monkeypatch.setattr(Runtime, "start", staticmethod(fake_start))
    before = watched_resources(registry)
    assert before == {(MODELROUTES.group, MODELROUTES.plural)}
    memo = kopf.Memo(settings=Settings(routing_drivers=("Service",)))
    for _ in range(2):  # a retried start-up handler registers nothing either
        asyncio.run(handlers.start(settings=kopf.OperatorSettings(), memo=memo))
    assert watched_resources(registry) == before
    assert memo["runtime"] is runtime and len(started) == 2 and len(listed) == 2


# --- KubeClient.api_resources against a loopback server playing the API server's discovery -------

_DISCOVERY: dict[str, tuple[int, dict[str, Any]]] = {
    "/api/v1": (
        200,
        {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {"name": "services", "kind": "Service", "namespaced": True},
                {"name": "services/status", "kind": "Service", "namespaced": True},
                {"name": "secrets", "kind": "Secret", "namespaced": True},
            ],
        },
    ),
    "/apis/gateway.networking.k8s.io/v1": (
        404,
        {"kind": "Status", "reason": "NotFound", "message": "the server could not find it"},
    ),
    "/apis/flaky.example.com/v1": (503, {"kind": "Status", "reason": "ServiceUnavailable"}),
}


@contextlib.asynccontextmanager
async def client_of(handle: Callable[[Any], Awaitable[Any]]) -> AsyncIterator[Any]:
    """A KubeClient of a loopback server answering every GET with ``handle``."""
    from aiohttp import web

    from modelroute.kube.client import KubeClient
    from modelroute.kube.credentials import Credentials

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server = f"http://127.0.0.1:{runner.addresses[0][1]}"
    client = KubeClient(Credentials(server=server, ssl_context=False), field_manager="test")
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


async def test_the_client_reads_discovery_and_answers_none_when_not_served() -> None:
    from aiohttp import web

    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        status, body = _DISCOVERY[request.path]
        return web.json_response(body, status=status)

    async with client_of(handle) as client:
        assert await client.api_resources("v1") == {"services", "secrets"}  # no subresources
        assert await client.api_resources("gateway.networking.k8s.io/v1") is None
        with pytest.raises(ApiError) as failed:
            await client.api_resources("flaky.example.com/v1")
        assert failed.value.status == 503
        found = await discover_drivers(client, ("Service",))
        assert found.available == ("Service",)
    assert seen[:3] == [
        "GET /api/v1",
        "GET /apis/gateway.networking.k8s.io/v1",
        "GET /apis/flaky.example.com/v1",
    ]


@pytest.mark.parametrize(
    ("status", "ready"),
    [(200, True), (500, False), (503, False), (401, True), (403, True), (404, True)],
)
async def test_the_client_reads_readyz_as_text_and_counts_an_answer_it_may_not_give_as_ready(
    status: int, ready: bool
) -> None:
    """kube-apiserver answers /readyz in plain text ("ok", or the failed checks); RBAC may deny
    it (401, 403) or a server may not have it (404): then discovery decides, as before."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        assert request.path == "/readyz"
        text = "ok" if status == 200 else "[-]poststarthook/crd-informer-synced failed"
        return web.Response(status=status, text=text)

    async with client_of(handle) as client:
        if ready:
            await client.api_ready()
        else:
            with pytest.raises(ApiError) as refused:
                await client.api_ready()
            assert refused.value.status == status
