"""Handover between drivers whose objects share a name with what a gateway generates: the
Envoy AI Gateway writes an HTTPRoute under its AIGatewayRoute's name (updating one that exists
in place). Releasing the previous HTTPRoute must never delete the AI Gateway's, the opposite
switch must say why it is stuck, and nothing is released before the gateway accepted the new
object. FakeKube, no worker."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelroute.api.models import ModelRouteSpec
from modelroute.control.handover import Handover
from modelroute.control.route import Driven
from modelroute.core.types import Problem, RouteRef, TrafficSplit, Verdict
from modelroute.kube.cache import ObjectCache, slim_object
from modelroute.kube.client import AIGATEWAYROUTES, HTTPROUTES, SERVICES, ApiError, ObjectKind
from modelroute.routing import aigatewayroute, httproute, service
from modelroute.routing.base import DriverContext, DriverInfo, RoutingState
from modelroute.routing.handover import Routed, explain, release
from modelroute.routing.ownership import (
    GENERATED_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROUTE_LABEL,
    owner_reference,
)
from tests.fakes.kube import FakeKube
from tests.unit.test_worker import running_world

NS = "ai"
ROUTE = RouteRef(namespace=NS, name="chat", uid="uid-chat")
KEY = (NS, "chat")
GATEWAY = {"name": "ai-gateway", "namespace": "gateway-system"}
BACKENDS: list[dict[str, Any]] = [
    {
        "name": "vendor",
        "priority": 0,
        "aiServiceBackendRef": {"name": "vendor"},
        "serviceRef": {"name": "vendor-egress", "port": 443},
        "endpoint": "https://api.openai.com",
        "model": "gpt-4o",
    },
]


def spec(driver: str, policy: str = "Delete", **routing: Any) -> ModelRouteSpec:
    body = {"driver": driver, "deletionPolicy": policy, **routing}
    raw = {"routing": body, "backends": copy.deepcopy(BACKENDS)}
    if driver == "Service":
        raw["service"] = {"name": "chat-stable", "port": 80}
    return ModelRouteSpec.model_validate(raw)


def http(policy: str = "Delete") -> Routed:
    return Routed(httproute.DRIVER, spec("HTTPRoute", policy, httpRoute={"parentRefs": [GATEWAY]}))


def aigw(policy: str = "Delete") -> Routed:
    routing = {"aiGatewayRoute": {"parentRefs": [GATEWAY]}}
    return Routed(aigatewayroute.DRIVER, spec("AIGatewayRoute", policy, **routing))


def world() -> FakeKube:
    kube = FakeKube(default_kind=HTTPROUTES)
    kube.serve(AIGATEWAYROUTES)
    kube.serve(SERVICES)
    return kube


def ours(kind: ObjectKind, **meta: Any) -> dict[str, Any]:
    """An object of the route's, under its ownerReference and labels."""
    labels = {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: ROUTE.name}
    metadata = {"name": KEY[1], "namespace": NS, "labels": labels}
    metadata["ownerReferences"] = [owner_reference(ROUTE)]
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": metadata | meta}


def refs(kube: FakeKube, kind: ObjectKind = HTTPROUTES) -> list[tuple[str, str, bool]]:
    stored = kube.store(kind)[KEY]["metadata"].get("ownerReferences") or []
    return [(o["kind"], o["uid"], bool(o.get("controller"))) for o in stored]


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
async def test_httproute_to_aigatewayroute_hands_the_httproute_to_the_aigatewayroute(
    policy: str,
) -> None:
    # The AI Gateway took our HTTPRoute over in place (same name), keeping our ownerReference.
    kube = world()
    kube.seed(ours(HTTPROUTES))
    generator = kube.seed(ours(AIGATEWAYROUTES), kind=AIGATEWAYROUTES)
    await release(kube, ROUTE, http(), aigw(policy))
    assert "delete" not in kube.calls
    assert KEY in kube.store(HTTPROUTES), "the AI Gateway's live HTTPRoute was deleted"
    # Ours gone (never adopted back, never kept alive by the route), the AIGatewayRoute's
    # controller reference in its place, so it goes with the AIGatewayRoute.
    assert refs(kube) == [("AIGatewayRoute", generator["metadata"]["uid"], True)]


async def test_an_object_marked_generated_by_the_ai_gateway_is_never_deleted() -> None:
    kube = world()
    kube.seed(ours(HTTPROUTES, annotations={GENERATED_ANNOTATION: "true"}))
    to_service = Routed(service.DRIVER, spec("Service"))
    await release(kube, ROUTE, http(), to_service)
    assert "delete" not in kube.calls
    assert refs(kube) == []  # only our ownerReference dropped


async def test_the_delete_holds_only_while_the_object_is_as_read() -> None:
    class ChangedAfterRead(FakeKube):
        async def get_object(
            self, kind: ObjectKind, namespace: str, name: str
        ) -> dict[str, Any] | None:
            read = await super().get_object(kind, namespace, name)
            self.mutate((namespace, name), {"metadata": {"labels": {"team": "b"}}}, kind=kind)
            return read

    kube = ChangedAfterRead(default_kind=HTTPROUTES)
    kube.seed(ours(HTTPROUTES))
    with pytest.raises(ApiError) as raised:
        await release(kube, ROUTE, http(), aigw_renamed())
    assert raised.value.status == 409
    assert KEY in kube.store(HTTPROUTES)


class ChangedOnce(FakeKube):
    """An object labelled by someone else right after the first read only."""

    async def get_object(
        self, kind: ObjectKind, namespace: str, name: str
    ) -> dict[str, Any] | None:
        read = await super().get_object(kind, namespace, name)
        if self.calls.count("get") <= 1:
            self.mutate((namespace, name), {"metadata": {"labels": {"team": "b"}}}, kind=kind)
        return read


async def test_a_conflict_is_decided_again_on_a_fresh_read_of_the_same_object() -> None:
    kube = ChangedOnce(default_kind=HTTPROUTES)
    kube.seed(ours(HTTPROUTES))
    await release(kube, ROUTE, http(), aigw_renamed())  # no 409: read again, deleted
    assert kube.calls.count("delete") == 2
    assert KEY not in kube.store(HTTPROUTES)


async def test_a_conflict_with_an_object_recreated_under_the_name_leaves_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Recreated(FakeKube):
        async def get_object(
            self, kind: ObjectKind, namespace: str, name: str
        ) -> dict[str, Any] | None:
            read = await super().get_object(kind, namespace, name)
            if self.calls.count("get") <= 1:
                self.delete((namespace, name), kind=kind)
                self.seed(ours(HTTPROUTES))  # another uid, same name
            return read

    kube = Recreated(default_kind=HTTPROUTES)
    kube.seed(ours(HTTPROUTES))
    with caplog.at_level(logging.INFO, logger="modelroute.routing.handover"):
        await release(kube, ROUTE, http(), aigw_renamed())
    assert kube.calls.count("delete") == 1  # the one refused: not the object it read
    assert KEY in kube.store(HTTPROUTES)
    # The caller takes it as released (it is not ours): said, not silent.
    [said] = [r for r in caplog.records if "recreated" in r.getMessage()]
    assert said.levelno == logging.INFO
    assert said.__dict__["object"] == "httproutes/chat"


def aigw_renamed() -> Routed:
    routing = {"aiGatewayRoute": {"name": "chat-v2", "parentRefs": [GATEWAY]}}
    return Routed(aigatewayroute.DRIVER, spec("AIGatewayRoute", **routing))


@contextlib.asynccontextmanager
async def handing_over(kube: FakeKube, *previous: Routed) -> AsyncIterator[Handover]:
    """A Handover of ``previous`` on test_worker's Deps, talking to ``kube``."""
    async with running_world() as w:
        yield Handover(list(previous), dataclasses.replace(w.controller._deps, kube=kube))


def driven(routed: Routed, kube: FakeKube) -> Driven:
    info: DriverInfo = routed.info
    cache = ObjectCache(functools.partial(kube.get_object, info.kind), slim_object)
    driver = info.create(DriverContext(kube=kube, caches={k: cache for k in info.watched_kinds}))
    return Driven(routed.spec, info, driver)


async def test_aigatewayroute_to_httproute_under_one_name_says_why_and_keeps_the_old() -> None:
    kube = world()
    generator = kube.seed(ours(AIGATEWAYROUTES), kind=AIGATEWAYROUTES)
    controller = {
        "apiVersion": AIGATEWAYROUTES.api_version,
        "kind": "AIGatewayRoute",
        "name": KEY[1],
        "uid": generator["metadata"]["uid"],
        "controller": True,
    }
    kube.seed(ours(HTTPROUTES, ownerReferences=[controller]))  # the AI Gateway's HTTPRoute
    now = driven(http(), kube)
    state = await now.driver.apply(ROUTE, now.spec, TrafficSplit.single("vendor"))
    async with handing_over(kube, aigw()) as handover:
        await explained(handover, now, state, kube)
    # A conflict with an object nothing of the route's generates is left as the driver said.
    assert explain(ROUTE, http(), [], state) == state


async def explained(handover: Handover, now: Driven, state: RoutingState, kube: FakeKube) -> None:
    assert state.problem is not None and str(state.problem.reason) == "RouteConflict"
    told = handover.explain(ROUTE, now, state)
    assert told.problem is not None and str(told.problem.reason) == "RouteConflict"
    assert told.problem.message == (
        "HTTPRoute ai/chat is generated by AIGatewayRoute ai/chat that this route routed "
        "through before; set spec.routing.httpRoute.name to another name (traffic stays on "
        "the AIGatewayRoute until then)"
    )
    await handover.settle(ROUTE, now, told)
    assert KEY in kube.store(AIGATEWAYROUTES) and handover.previous  # nothing released


@pytest.mark.parametrize(
    ("verdict", "released"),
    [
        (Verdict("Unknown", "Pending", "waiting for a gateway"), False),
        (Verdict("True", "Accepted", "accepted"), True),
    ],
)
async def test_nothing_is_released_before_the_gateway_accepted_the_new_object(
    verdict: Verdict, released: bool
) -> None:
    kube = world()
    stable = ours(SERVICES)
    stable["metadata"]["name"] = "chat-stable"
    stable["spec"] = {"selector": {"app": "vendor"}, "ports": [{"port": 80}]}
    kube.seed(stable, kind=SERVICES)
    old = Routed(service.DRIVER, spec("Service"))
    now = driven(http(), kube)
    carried = RoutingState(split=TrafficSplit.single("vendor"), verdict=verdict)
    async with handing_over(kube, old) as handover:
        await handover.settle(ROUTE, now, carried)
        assert ((NS, "chat-stable") not in kube.store(SERVICES)) is released
        assert (handover.previous == []) is released


def test_a_problem_is_never_explained_away() -> None:
    state = RoutingState(problem=Problem(httproute.HTTPRouteReason.GATEWAY_REJECTED, "no"))
    assert explain(ROUTE, http(), [aigw()], state) == state
