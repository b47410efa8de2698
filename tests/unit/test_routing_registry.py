"""Adding a routing driver is one module in ``modelroute.routing`` that defines ``DRIVER``.

A throwaway driver module, written to a temporary directory added to the package's path, is
picked up by the registry: its name joins the CRD's driver enum, its kinds join the watches and
caches, its spec checks run, and routes can create it. Nothing else in the operator changes.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelroute import crdgen, routing
from modelroute.api.models import ModelRouteSpec
from modelroute.kube.client import (
    AIGATEWAYROUTES,
    AISERVICEBACKENDS,
    HTTPROUTES,
    SERVICES,
    ObjectKind,
)
from modelroute.routing.base import DriverContext
from tests.fakes.kube import FakeKube

_MODULE = textwrap.dedent(
    '''
    """A throwaway driver: routes through a made-up Widget object."""

    from modelroute.kube.client import SERVICES, ObjectKind
    from modelroute.routing.base import DriverInfo, RoutingState

    WIDGETS = ObjectKind("example.com", "v1", "widgets", "Widget")


    class WidgetDriver:
        def __init__(self, context):
            self.context = context

        def dependencies(self, route, spec):
            return {WIDGETS: {(route.namespace, route.name)}}

        async def observe(self, route, spec):
            return RoutingState()

        async def apply(self, route, spec, split):
            return RoutingState(split=split)

        async def finalize(self, route, spec):
            return None


    def check(spec):
        return [
            f"spec.backends[{i}].endpoint: required by the Widget routing driver"
            for i, backend in enumerate(spec.backends)
            if backend.endpoint is None
        ]


    DRIVER = DriverInfo(
        name="Widget",
        kind=WIDGETS,
        create=WidgetDriver,
        check=check,
        supports_weights=True,
        reads=(SERVICES,),
    )
    '''
)
WIDGETS = ObjectKind("example.com", "v1", "widgets", "Widget")


@pytest.fixture
def widget_driver(tmp_path: Path) -> Iterator[None]:
    """The throwaway module, visible to the registry for one test."""
    (tmp_path / "widget.py").write_text(_MODULE)
    routing.__path__.append(str(tmp_path))
    routing._registry.cache_clear()
    try:
        yield
    finally:
        routing.__path__.remove(str(tmp_path))
        routing._registry.cache_clear()
        sys.modules.pop("modelroute.routing.widget", None)


def _spec(**extra: object) -> ModelRouteSpec:
    backend = {"name": "a", "priority": 0, "model": "m", "serviceRef": {"name": "s", "port": 1}}
    raw = {"service": {"name": "x", "port": 80}, "backends": [backend], **extra}
    return ModelRouteSpec.model_validate({**raw, "routing": {"driver": "Widget"}})


@pytest.mark.usefixtures("widget_driver")
def test_a_new_driver_module_is_registered_everywhere() -> None:
    assert routing.names() == ["AIGatewayRoute", "HTTPRoute", "Service", "Widget"]
    crd = crdgen.build_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["spec"]["properties"]["routing"]["properties"]["driver"][
        "enum"
    ] == ["AIGatewayRoute", "HTTPRoute", "Service", "Widget"]
    assert set(routing.watched_kinds()) == {
        SERVICES,
        HTTPROUTES,
        AIGATEWAYROUTES,
        AISERVICEBACKENDS,
        WIDGETS,
    }
    assert routing.info("Widget").supports_weights


@pytest.mark.usefixtures("widget_driver")
def test_its_spec_checks_and_its_driver_are_used() -> None:
    spec = _spec()
    assert routing.spec_problems(spec) == [
        "spec.backends[0].endpoint: required by the Widget routing driver"
    ]
    driver = routing.create("Widget", DriverContext(kube=FakeKube(), caches={}))
    assert type(driver).__name__ == "WidgetDriver"


def test_without_the_module_the_driver_is_unknown() -> None:
    assert "Widget" not in routing.names()
    with pytest.raises(
        KeyError,
        match="unknown routing driver 'Widget'; available: AIGatewayRoute, HTTPRoute, Service",
    ):
        routing.info("Widget")


def test_each_driver_routes_through_its_own_kind() -> None:
    # status.previousRouting records an object by (apiVersion, kind) only, and
    # routing.handover.Routed.recorded takes the first driver with that pair: two drivers
    # sharing one would release an object under the other's rules.
    pairs = [(routing.info(n).kind.api_version, routing.info(n).kind.kind) for n in routing.names()]
    assert len(pairs) >= 3
    assert len(set(pairs)) == len(pairs), pairs
