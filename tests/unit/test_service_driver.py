"""Tests for the Service routing driver: the pure diff, then the driver against a fake client.

The fake (``tests.fakes.kube.FakeKube``) stands in for ``modelroute.kube.client.KubeClient``,
our own boundary: it stores Services, fills in the defaults a real API server adds, rejects what
a real one rejects, and queues watch events that a test delivers to a real ``ObjectCache``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from modelroute import routing
from modelroute.api.models import Backend, ModelRouteSpec
from modelroute.core.types import Problem, RouteRef, TrafficSplit
from modelroute.kube.cache import ObjectCache, slim_object
from modelroute.kube.client import SERVICES, ApiError
from modelroute.routing.base import DriverContext, RoutingState
from modelroute.routing.ownership import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROUTE_LABEL,
    owner_reference,
    ownership,
)
from modelroute.routing.service import ServiceDriver
from modelroute.routing.service_object import BACKEND_ANNOTATION, desired_service, service_patch
from tests.fakes.kube import FakeKube, merge_patch

NS = "ai"
ROUTE = RouteRef(namespace=NS, name="chat", uid="uid-chat-2")
EARLIER_ROUTE = RouteRef(namespace=NS, name="chat", uid="uid-chat-1")
STABLE = (NS, "chat-llm")


def backend_entry(name: str, priority: int, service: str, port: int) -> dict[str, Any]:
    ref = {"name": service, "port": port}
    return {"name": name, "priority": priority, "serviceRef": ref, "model": "m"}


SPEC = ModelRouteSpec.model_validate(
    {
        "service": {"name": "chat-llm", "port": 80},
        "backends": [
            backend_entry("vendor", 0, "vendor-egress", 8080),
            backend_entry("inhouse", 1, "llama-vllm", 8000),
            backend_entry("spare", 2, "spare-vllm", 9000),
        ],
    }
)
BACKENDS = {b.name: b for b in SPEC.backends}
VENDOR, INHOUSE, SPARE = BACKENDS["vendor"], BACKENDS["inhouse"], BACKENDS["spare"]


def target(
    name: str, ports: list[dict[str, Any]], selector: dict[str, str] | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "ClusterIP", "ports": ports}
    if selector is not None:
        spec["selector"] = selector
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


# A selector-less Service (endpoints managed by hand, e.g. egress to a vendor).
# Selector-less (an egress Service in front of the vendor): reached by DNS, so it exposes the
# stable Service's port 80 as well as its own 8080.
VENDOR_SVC = target(
    "vendor-egress", [{"port": 8080, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"}], None
)
LLAMA_SVC = target(
    "llama-vllm",
    [
        {"name": "metrics", "port": 9090, "targetPort": 9091, "protocol": "TCP"},
        {"name": "http", "port": 8000, "targetPort": 18000, "protocol": "TCP"},
    ],
    {"app": "llama", "model": "llama-70b"},
)
SPARE_SVC = target("spare-vllm", [{"port": 9000, "targetPort": "http"}], {"app": "spare"})


def ours(backend: str = "inhouse", route: RouteRef = ROUTE) -> dict[str, Any]:
    """What the operator writes for ``backend`` (its desired Service)."""
    tgt = {"inhouse": LLAMA_SVC, "spare": SPARE_SVC, "vendor": VENDOR_SVC}[backend]
    desired = desired_service(route, SPEC, BACKENDS[backend], tgt, "cluster.local")
    assert isinstance(desired, dict)
    return desired


def routed(backend: str, *, wrote: bool = False) -> RoutingState:
    """The state of a Service that sends all traffic to ``backend``."""
    return RoutingState(split=TrafficSplit.single(backend), wrote=wrote)


# --- a fake KubeClient ---------------------------------------------------------------------


class World(NamedTuple):
    kube: FakeKube
    cache: ObjectCache
    driver: ServiceDriver

    async def apply(self, backend: Backend, spec: ModelRouteSpec = SPEC) -> RoutingState:
        return await self.driver.apply(ROUTE, spec, TrafficSplit.single(backend.name))

    def stable(self) -> dict[str, Any]:
        return self.kube.services[STABLE]


@pytest.fixture
def world() -> World:
    kube = FakeKube()
    for svc in (VENDOR_SVC, LLAMA_SVC, SPARE_SVC):
        kube.seed(svc)
    world = make_world(kube)
    kube.deliver(world.cache)  # the watch's initial listing
    return world


def make_world(kube: FakeKube) -> World:
    cache = ObjectCache(functools.partial(kube.get_object, SERVICES), slim_object)
    context = DriverContext(kube=kube, caches={SERVICES: cache})
    driver = ServiceDriver(context)
    cache.subscribe(ROUTE.key, driver.dependencies(ROUTE, SPEC)[SERVICES])
    return World(kube, cache, driver)


# --- desired_service -----------------------------------------------------------------------


class PortCase(NamedTuple):
    ports: list[dict[str, Any]]
    expected: dict[str, Any]


PORT_CASES = [
    pytest.param(
        PortCase([{"port": 8000, "targetPort": 18000}], {"port": 80, "targetPort": 18000}),
        id="int-target-port",
    ),
    pytest.param(
        PortCase([{"port": 8000, "targetPort": "http"}], {"port": 80, "targetPort": "http"}),
        id="named-target-port",
    ),
    pytest.param(
        PortCase([{"port": 8000}], {"port": 80, "targetPort": 8000}),
        id="target-port-defaults-to-port",
    ),
    pytest.param(
        PortCase(
            [{"port": 9090, "targetPort": 9091}, {"port": 8000, "targetPort": 8080}],
            {"port": 80, "targetPort": 8080},
        ),
        id="picks-serviceRef-port-among-several",
    ),
    pytest.param(
        PortCase(
            [{"port": 8000, "protocol": "TCP", "name": "http", "nodePort": 30080}],
            {"port": 80, "targetPort": 8000},
        ),
        id="name-and-nodePort-not-copied",
    ),
]


@pytest.mark.parametrize("case", PORT_CASES)
def test_desired_service_with_selector_maps_to_target_port(case: PortCase) -> None:
    tgt = target("llama-vllm", case.ports, {"app": "llama"})
    desired = desired_service(ROUTE, SPEC, INHOUSE, tgt, "cluster.local")
    assert isinstance(desired, dict)
    assert desired["spec"] == {
        "type": "ClusterIP",
        "selector": {"app": "llama"},
        "ports": [{"protocol": "TCP", **case.expected}],
    }


def test_desired_service_copies_the_selector() -> None:
    tgt = copy.deepcopy(LLAMA_SVC)
    desired = desired_service(ROUTE, SPEC, INHOUSE, tgt, "cluster.local")
    assert isinstance(desired, dict)
    desired["spec"]["selector"]["app"] = "changed"
    assert tgt == LLAMA_SVC  # the target (a cache entry in the driver) is not aliased


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        pytest.param("cluster.local", "vendor-egress.ai.svc.cluster.local", id="default-domain"),
        pytest.param("corp.example", "vendor-egress.ai.svc.corp.example", id="custom-domain"),
    ],
)
def test_desired_service_without_selector_is_external_name(domain: str, expected: str) -> None:
    desired = desired_service(ROUTE, SPEC, VENDOR, VENDOR_SVC, domain)
    assert isinstance(desired, dict)
    assert desired["spec"]["type"] == "ExternalName"
    assert desired["spec"]["externalName"] == expected
    assert "selector" not in desired["spec"]
    assert "clusterIP" not in desired["spec"]
    assert [p["port"] for p in desired["spec"]["ports"]] == [80]


def test_desired_service_empty_selector_counts_as_none() -> None:
    tgt = target("llama-vllm", [{"port": 8000}, {"port": 80}], {})
    desired = desired_service(ROUTE, SPEC, INHOUSE, tgt, "cluster.local")
    assert isinstance(desired, dict)
    assert desired["spec"]["type"] == "ExternalName"


def test_desired_service_target_port_missing() -> None:
    tgt = target("llama-vllm", [{"port": 9090, "targetPort": 9091}], {"app": "llama"})
    problem = desired_service(ROUTE, SPEC, INHOUSE, tgt, "cluster.local")
    assert isinstance(problem, Problem)
    assert problem.reason == "TargetPortMissing"
    for part in ("ai/llama-vllm", "8000", "inhouse"):
        assert part in problem.message


def test_desired_service_without_service_ref_is_a_problem() -> None:
    backend = Backend(name="direct", priority=0, model="m", endpoint="http://x.example")
    problem = desired_service(ROUTE, SPEC, backend, {}, "cluster.local")
    assert isinstance(problem, Problem)
    assert problem.reason == "InvalidSpec"


@pytest.mark.parametrize("backend", ["inhouse", "vendor"])
def test_desired_service_metadata(backend: str) -> None:
    meta = ours(backend)["metadata"]
    assert meta["name"] == "chat-llm"
    assert meta["namespace"] == NS
    assert meta["labels"] == {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: "chat"}
    assert meta["annotations"] == {BACKEND_ANNOTATION: backend}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "modelroute.dev/v1alpha1",
            "kind": "ModelRoute",
            "name": "chat",
            "uid": ROUTE.uid,
            "controller": True,
        }
    ]
    assert ours(backend)["apiVersion"] == "v1"
    assert ours(backend)["kind"] == "Service"


# --- service_patch -------------------------------------------------------------------------


def as_stored(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as the API server returns it after a create (defaults filled in)."""
    kube = FakeKube()
    return kube.seed(body)


def with_changes(body: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    change(changed)
    return changed


def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, leaf = path
        node = body
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    return change


NO_WRITE_CHANGES = [
    pytest.param(lambda body: None, id="identical"),
    pytest.param(_set("spec", "sessionAffinity", value="None"), id="sessionAffinity"),
    pytest.param(_set("spec", "clusterIP", value="10.96.0.7"), id="clusterIP"),
    pytest.param(_set("spec", "clusterIPs", value=["10.96.0.7"]), id="clusterIPs"),
    pytest.param(_set("spec", "ipFamilies", value=["IPv4"]), id="ipFamilies"),
    pytest.param(
        _set("spec", "internalTrafficPolicy", value="Cluster"), id="internalTrafficPolicy"
    ),
    pytest.param(_set("metadata", "labels", "team", value="ml"), id="extra-label"),
    pytest.param(_set("metadata", "annotations", "note", value="hi"), id="extra-annotation"),
    pytest.param(_set("metadata", "resourceVersion", value="42"), id="resourceVersion"),
    pytest.param(_set("status", "loadBalancer", value={}), id="status"),
    pytest.param(
        lambda body: body["metadata"]["ownerReferences"].append(
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "other"}
        ),
        id="extra-owner-reference",
    ),
]


@pytest.mark.parametrize("backend", ["inhouse", "spare", "vendor"])
@pytest.mark.parametrize("change", NO_WRITE_CHANGES)
def test_service_patch_none_when_equal(
    backend: str, change: Callable[[dict[str, Any]], None]
) -> None:
    desired = ours(backend)
    assert service_patch(with_changes(desired, change), desired) is None


@pytest.mark.parametrize("backend", ["inhouse", "spare", "vendor"])
def test_service_patch_none_after_api_server_defaults(backend: str) -> None:
    desired = ours(backend)
    stored = as_stored(desired)
    # The server filled in what the operator left out: the diff must not see it as drift.
    assert stored["spec"]["ports"][0]["protocol"] == "TCP"
    assert "targetPort" in stored["spec"]["ports"][0]
    assert service_patch(stored, desired) is None
    assert service_patch(slim_object(stored), desired) is None


def test_service_patch_none_when_server_defaults_protocol_and_target_port() -> None:
    desired = ours("inhouse")
    current = copy.deepcopy(desired)
    current["spec"]["ports"] = [{"port": 80, "targetPort": 18000}]  # protocol from defaults
    assert service_patch(current, desired) is None
    current["spec"]["ports"] = [{"protocol": "TCP", "port": 80}]  # targetPort = port
    wanted = copy.deepcopy(desired)
    wanted["spec"]["ports"] = [{"protocol": "TCP", "port": 80, "targetPort": 80}]
    assert service_patch(current, wanted) is None


def test_service_patch_removes_old_selector_keys_with_null() -> None:
    current = as_stored(ours("inhouse"))  # selector {app: llama, model: llama-70b}
    desired = ours("spare")  # selector {app: spare}
    patch = service_patch(current, desired)
    assert patch is not None
    assert patch["spec"]["selector"] == {"app": "spare", "model": None}
    assert merge_patch(current, patch)["spec"]["selector"] == {"app": "spare"}


def test_service_patch_selector_switch_keeps_type_and_cluster_ip() -> None:
    current = as_stored(ours("inhouse"))
    desired = ours("inhouse")
    desired["spec"]["selector"] = {"app": "llama-canary"}
    patch = service_patch(current, desired)
    assert patch is not None
    assert set(patch["spec"]) == {"selector"}  # no type, no clusterIP, no ports


def test_service_patch_replaces_ports() -> None:
    current = as_stored(ours("inhouse"))
    current["spec"]["ports"].append({"name": "extra", "port": 81, "targetPort": 81})
    desired = ours("inhouse")
    patch = service_patch(current, desired)
    assert patch == {"spec": {"ports": desired["spec"]["ports"]}}


def test_service_patch_maps_new_target_port() -> None:
    current = as_stored(ours("inhouse"))
    desired = ours("spare")
    patch = service_patch(current, desired)
    assert patch is not None
    assert patch["spec"]["ports"] == [{"protocol": "TCP", "port": 80, "targetPort": "http"}]
    assert patch["metadata"] == {"annotations": {BACKEND_ANNOTATION: "spare"}}


def test_service_patch_switch_to_external_name_clears_cluster_ip() -> None:
    current = as_stored(ours("inhouse"))
    patch = service_patch(current, ours("vendor"))
    assert patch is not None
    assert patch["spec"]["type"] == "ExternalName"
    assert patch["spec"]["externalName"] == "vendor-egress.ai.svc.cluster.local"
    assert patch["spec"]["selector"] is None
    assert patch["spec"]["clusterIP"] is None
    assert patch["spec"]["clusterIPs"] is None
    after = merge_patch(current, patch)
    assert "clusterIP" not in after["spec"]
    assert "selector" not in after["spec"]


def test_service_patch_switch_back_to_cluster_ip() -> None:
    current = as_stored(ours("vendor"))
    patch = service_patch(current, ours("inhouse"))
    assert patch is not None
    assert patch["spec"]["type"] == "ClusterIP"
    assert patch["spec"]["externalName"] is None
    assert patch["spec"]["selector"] == {"app": "llama", "model": "llama-70b"}
    assert "clusterIP" not in patch["spec"]  # the API server allocates one


def test_service_patch_adds_missing_owner_reference() -> None:
    current = as_stored(ours("inhouse", route=EARLIER_ROUTE))
    patch = service_patch(current, ours("inhouse"))
    assert patch == {"metadata": {"ownerReferences": [owner_reference(ROUTE)]}}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            _set("metadata", "labels", ROUTE_LABEL, value="other"),
            {"metadata": {"labels": {ROUTE_LABEL: "chat"}}},
            id="route-label-changed",
        ),
        pytest.param(
            lambda body: body["metadata"].pop("labels"),
            {"metadata": {"labels": {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: "chat"}}},
            id="labels-removed",
        ),
        pytest.param(
            _set("metadata", "annotations", BACKEND_ANNOTATION, value="spare"),
            {"metadata": {"annotations": {BACKEND_ANNOTATION: "inhouse"}}},
            id="backend-annotation-changed",
        ),
        pytest.param(
            _set("spec", "selector", "extra", value="x"),
            {"spec": {"selector": {"extra": None, "app": "llama", "model": "llama-70b"}}},
            id="selector-key-added",
        ),
    ],
)
def test_service_patch_reverts_managed_fields(
    change: Callable[[dict[str, Any]], None], expected: dict[str, Any]
) -> None:
    desired = ours("inhouse")
    assert service_patch(with_changes(as_stored(desired), change), desired) == expected


# --- ownership -----------------------------------------------------------------------------


def svc_meta(
    labels: dict[str, str] | None = None, owners: list[str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "chat-llm", "namespace": NS}
    if labels is not None:
        meta["labels"] = labels
    if owners is not None:
        meta["ownerReferences"] = [{"uid": uid, "kind": "ModelRoute"} for uid in owners]
    return {"metadata": meta, "spec": {}}


OUR_LABELS = {MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: "chat"}


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        pytest.param(svc_meta(OUR_LABELS, [ROUTE.uid]), "owned", id="owned"),
        pytest.param(svc_meta(None, ["other", ROUTE.uid]), "owned", id="owned-without-labels"),
        pytest.param(svc_meta(OUR_LABELS, [EARLIER_ROUTE.uid]), "adoptable", id="earlier-route"),
        pytest.param(svc_meta(OUR_LABELS), "adoptable", id="labels-no-owner"),
        pytest.param(svc_meta(), "foreign", id="plain-service"),
        pytest.param(svc_meta({MANAGED_BY_LABEL: MANAGED_BY}), "foreign", id="no-route-label"),
        pytest.param(svc_meta({ROUTE_LABEL: "chat"}), "foreign", id="not-managed-by-us"),
        pytest.param(
            svc_meta({MANAGED_BY_LABEL: MANAGED_BY, ROUTE_LABEL: "other"}),
            "foreign",
            id="other-route",
        ),
        pytest.param(svc_meta(None, [EARLIER_ROUTE.uid]), "foreign", id="other-owner-no-labels"),
        pytest.param({}, "foreign", id="no-metadata"),
    ],
)
def test_ownership(service: dict[str, Any], expected: str) -> None:
    assert ownership(ROUTE, service) == expected


# --- ServiceDriver against the fake --------------------------------------------------------


def test_registry_creates_the_service_driver(world: World) -> None:
    assert "Service" in routing.names()
    context = DriverContext(kube=world.kube, caches={SERVICES: world.cache})
    assert isinstance(routing.create("Service", context), ServiceDriver)


def test_dependencies_are_stable_and_target_services(world: World) -> None:
    assert world.driver.dependencies(ROUTE, SPEC) == {
        SERVICES: {STABLE, (NS, "vendor-egress"), (NS, "llama-vllm"), (NS, "spare-vllm")}
    }


@pytest.mark.parametrize("watch_caught_up", [True, False], ids=["watched", "watch-lagging"])
async def test_creates_once_then_no_writes(world: World, watch_caught_up: bool) -> None:
    state = await world.apply(INHOUSE)
    assert state == routed("inhouse", wrote=True)
    assert world.kube.calls.count("create") == 1
    stable = world.stable()
    assert stable["spec"]["type"] == "ClusterIP"
    assert stable["spec"]["selector"] == {"app": "llama", "model": "llama-70b"}
    assert stable["spec"]["ports"] == [{"protocol": "TCP", "port": 80, "targetPort": 18000}]
    assert stable["metadata"]["ownerReferences"] == [owner_reference(ROUTE)]
    if watch_caught_up:
        world.kube.deliver(world.cache)
    world.kube.calls.clear()
    for _ in range(3):
        assert await world.apply(INHOUSE) == routed("inhouse")
    assert world.kube.calls == []  # no write, and no read either: the cache answers


async def test_switch_between_selector_backends_is_one_patch(world: World) -> None:
    await world.apply(INHOUSE)
    world.kube.deliver(world.cache)
    cluster_ip = world.stable()["spec"]["clusterIP"]
    world.kube.calls.clear()
    assert await world.apply(SPARE) == routed("spare", wrote=True)
    assert world.kube.calls == ["patch"]
    stable = world.stable()
    assert stable["spec"]["clusterIP"] == cluster_ip
    assert stable["spec"]["type"] == "ClusterIP"
    assert stable["spec"]["selector"] == {"app": "spare"}
    assert stable["spec"]["ports"] == [{"protocol": "TCP", "port": 80, "targetPort": "http"}]
    assert await world.driver.observe(ROUTE, SPEC) == routed("spare")


async def test_switch_to_external_name_and_back(world: World) -> None:
    await world.apply(INHOUSE)
    world.kube.calls.clear()
    assert await world.apply(VENDOR) == routed("vendor", wrote=True)
    stable = world.stable()
    assert stable["spec"]["type"] == "ExternalName"
    assert stable["spec"]["externalName"] == "vendor-egress.ai.svc.cluster.local"
    assert "clusterIP" not in stable["spec"]
    assert "selector" not in stable["spec"]
    assert await world.apply(INHOUSE) == routed("inhouse", wrote=True)
    stable = world.stable()
    assert stable["spec"]["type"] == "ClusterIP"
    assert "externalName" not in stable["spec"]
    assert stable["spec"]["selector"] == {"app": "llama", "model": "llama-70b"}
    assert world.kube.calls == ["patch", "patch"]


DRIFTS = [
    pytest.param({"spec": {"selector": {"app": "evil"}}}, id="selector-changed"),
    pytest.param({"spec": {"selector": {"extra": "x"}}}, id="selector-key-added"),
    pytest.param({"spec": {"ports": [{"port": 80, "targetPort": 9999}]}}, id="target-port"),
    pytest.param({"metadata": {"labels": {ROUTE_LABEL: None}}}, id="route-label-removed"),
    pytest.param({"metadata": {"annotations": {BACKEND_ANNOTATION: "x"}}}, id="annotation"),
]


@pytest.mark.parametrize("drift", DRIFTS)
async def test_drift_is_reverted_with_one_patch(world: World, drift: dict[str, Any]) -> None:
    await world.apply(INHOUSE)
    world.kube.deliver(world.cache)
    desired = copy.deepcopy(world.stable())
    world.kube.mutate(STABLE, drift)  # someone else edits the Service
    woken = [world.cache.observe(t, b) for t, b in world.kube.events]
    world.kube.events.clear()
    assert woken == [{ROUTE.key}]
    world.kube.calls.clear()
    assert await world.apply(INHOUSE) == routed("inhouse", wrote=True)
    assert world.kube.calls == ["patch"]
    reverted = world.stable()
    for part in ("labels", "annotations"):
        assert reverted["metadata"].get(part) == desired["metadata"][part]
    for field in ("type", "selector", "ports", "clusterIP"):
        assert reverted["spec"][field] == desired["spec"][field]
    world.kube.deliver(world.cache)
    world.kube.calls.clear()
    await world.apply(INHOUSE)
    assert world.kube.calls == []


async def test_additions_by_others_cause_no_write(world: World) -> None:
    await world.apply(INHOUSE)
    world.kube.mutate(
        STABLE,
        {
            "metadata": {"labels": {"team": "ml"}, "annotations": {"note": "x"}},
            "spec": {"sessionAffinity": "ClientIP"},
        },
    )
    world.kube.deliver(world.cache)
    world.kube.calls.clear()
    assert await world.apply(INHOUSE) == routed("inhouse")
    assert world.kube.calls == []


async def test_recreated_after_deletion(world: World) -> None:
    await world.apply(INHOUSE)
    world.kube.deliver(world.cache)
    world.kube.delete(STABLE)
    world.kube.deliver(world.cache)  # the cache sees DELETED
    assert await world.driver.observe(ROUTE, SPEC) == RoutingState()
    world.kube.calls.clear()
    assert await world.apply(INHOUSE) == routed("inhouse", wrote=True)
    assert world.kube.calls == ["create"]
    assert STABLE in world.kube.services


async def test_foreign_service_is_never_written(world: World) -> None:
    foreign = target("chat-llm", [{"port": 80}], {"app": "someone-elses"})
    world.kube.seed(foreign)
    before = copy.deepcopy(world.stable())
    world.kube.calls.clear()
    for backend in (INHOUSE, VENDOR):
        state = await world.apply(backend)
        assert state.problem is not None
        assert state.problem.reason == "ServiceConflict"
        assert state.split is None
        assert not state.wrote
    observed = await world.driver.observe(ROUTE, SPEC)
    assert observed.problem is not None
    assert observed.problem.reason == "ServiceConflict"
    assert world.kube.writes == 0
    assert world.stable() == before


async def test_target_service_missing_then_appears(world: World) -> None:
    world.kube.delete((NS, "llama-vllm"))
    world.kube.deliver(world.cache)
    world.kube.calls.clear()
    state = await world.apply(INHOUSE)
    assert state.problem == Problem(
        "TargetServiceMissing", "Service ai/llama-vllm of backend inhouse does not exist"
    )
    assert world.kube.writes == 0
    assert STABLE not in world.kube.services
    # The missing target is cached as missing: no read on every reconcile.
    assert (await world.apply(INHOUSE)).problem is not None
    assert world.kube.calls == []
    world.kube.seed(LLAMA_SVC)  # the watch brings it in
    world.kube.deliver(world.cache)
    assert await world.apply(INHOUSE) == routed("inhouse", wrote=True)


async def test_target_port_missing_writes_nothing(world: World) -> None:
    world.kube.mutate((NS, "llama-vllm"), {"spec": {"ports": [{"port": 1234}]}})
    world.kube.deliver(world.cache)
    world.kube.calls.clear()
    state = await world.apply(INHOUSE)
    assert state.problem is not None
    assert state.problem.reason == "TargetPortMissing"
    assert world.kube.writes == 0


async def test_adopts_service_of_an_earlier_route_object(world: World) -> None:
    world.kube.seed(ours("inhouse", route=EARLIER_ROUTE))
    world.kube.calls.clear()
    assert await world.apply(INHOUSE) == routed("inhouse", wrote=True)
    assert world.kube.calls == ["get", "patch"]  # the cache miss, then the one write
    assert world.stable()["metadata"]["ownerReferences"] == [owner_reference(ROUTE)]


async def prime_missing_stable(world: World) -> None:
    """The cache has seen the stable Service missing; it appears before the watch says so."""
    assert await world.cache.get(STABLE) is None


@pytest.mark.parametrize(
    ("existing", "expected", "expected_calls"),
    [
        pytest.param(ours("inhouse"), routed("inhouse"), ["create", "get"], id="same"),
        pytest.param(
            ours("spare"),
            routed("inhouse", wrote=True),
            ["create", "get", "patch"],
            id="ours-other-backend",
        ),
        pytest.param(
            target("chat-llm", [{"port": 80}], {"app": "x"}),
            "ServiceConflict",
            ["create", "get"],
            id="foreign",
        ),
    ],
)
async def test_create_conflict_diffs_against_existing(
    world: World,
    existing: dict[str, Any],
    expected: RoutingState | str,
    expected_calls: list[str],
) -> None:
    await prime_missing_stable(world)
    world.kube.seed(existing, watched=False)
    world.kube.calls.clear()
    state = await world.apply(INHOUSE)
    if isinstance(expected, str):
        assert state.problem is not None
        assert (state.split, state.wrote, state.problem.reason) == (None, False, expected)
        assert world.stable()["spec"]["selector"] == {"app": "x"}
    else:
        assert state == expected
        assert world.stable()["metadata"]["annotations"][BACKEND_ANNOTATION] == "inhouse"
    assert world.kube.calls == expected_calls
    # The existing Service went into the cache: the next apply neither creates nor reads.
    world.kube.calls.clear()
    await world.apply(INHOUSE)
    assert "create" not in world.kube.calls
    assert "get" not in world.kube.calls


async def test_create_error_other_than_conflict_propagates(world: World) -> None:
    world.kube.fail_next_create = ApiError(403, "Forbidden", "services is forbidden")
    with pytest.raises(ApiError) as raised:
        await world.apply(INHOUSE)
    assert raised.value.status == 403
    assert await world.cache.get(STABLE) is None


async def test_observe(world: World) -> None:
    assert await world.driver.observe(ROUTE, SPEC) == RoutingState()
    await world.apply(VENDOR)
    assert await world.driver.observe(ROUTE, SPEC) == routed("vendor")


@pytest.mark.parametrize(
    ("ports", "problem"),
    [
        pytest.param([{"port": 8080}], "ExternalNamePortMismatch", id="port-80-not-exposed"),
        pytest.param([{"port": 8080}, {"port": 80}], None, id="port-80-exposed"),
        pytest.param([], None, id="no-ports-declared"),
    ],
)
def test_external_name_needs_the_stable_port_on_the_target(
    ports: list[dict[str, Any]], problem: str | None
) -> None:
    desired = desired_service(
        ROUTE, SPEC, VENDOR, target("vendor-egress", ports, None), "cluster.local"
    )
    if problem is None:
        assert isinstance(desired, dict)
        assert desired["spec"]["type"] == "ExternalName"
    else:
        assert isinstance(desired, Problem)
        assert desired.reason == problem
        assert "port 80" in desired.message


def listing_world(kube: FakeKube) -> World:
    """As the operator builds its cache: a namespace is listed at its first miss."""

    async def list_namespace(namespace: str) -> list[dict[str, Any]]:
        kube.calls.append("list")
        return [copy.deepcopy(b) for (ns, _), b in kube.store(SERVICES).items() if ns == namespace]

    cache = ObjectCache(
        functools.partial(kube.get_object, SERVICES), slim_object, list_namespace=list_namespace
    )
    driver = ServiceDriver(DriverContext(kube=kube, caches={SERVICES: cache}))
    cache.subscribe(ROUTE.key, driver.dependencies(ROUTE, SPEC)[SERVICES])
    return World(kube, cache, driver)


async def test_a_new_route_reads_no_stable_service_it_would_create() -> None:
    """Start-up of 10,000 new routes read each stable Service once only to hear 404: after
    the namespace's LIST, observe and the first apply go straight to the create."""
    kube = FakeKube()
    for svc in (VENDOR_SVC, LLAMA_SVC, SPARE_SVC):
        kube.seed(svc, watched=False)
    world = listing_world(kube)
    assert await world.driver.observe(ROUTE, SPEC) == RoutingState()
    assert await world.apply(INHOUSE) == routed("inhouse", wrote=True)
    assert kube.calls == ["list", "create"]


async def test_a_stable_service_created_after_the_list_is_diffed_not_overwritten() -> None:
    kube = FakeKube()
    for svc in (VENDOR_SVC, LLAMA_SVC, SPARE_SVC):
        kube.seed(svc, watched=False)
    world = listing_world(kube)
    assert await world.driver.observe(ROUTE, SPEC) == RoutingState()  # lists: none yet
    await world.apply(INHOUSE)  # created, then deleted by hand and made again by someone
    body = copy.deepcopy(world.stable())
    kube.delete((NS, STABLE[1]))
    world.cache.observe("DELETED", body)
    foreign = {"metadata": {"name": STABLE[1], "namespace": NS}, "spec": {"selector": {"x": "y"}}}
    kube.seed(foreign, watched=False)
    kube.calls.clear()
    state = await world.apply(INHOUSE)
    assert kube.calls == ["create", "get"]  # the 409, then the object as it is
    assert state.problem is not None  # someone else's: left alone, and said so
    assert world.stable()["spec"]["selector"] == {"x": "y"}
