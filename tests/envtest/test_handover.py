"""End to end, a driver switch: the canonical route, routed by the Service driver, is switched
to the HTTPRoute driver (spec.routing.driver). Once the HTTPRoute carries the traffic, the
stable Service the route no longer routes through is deleted (deletionPolicy Delete) or kept
without the route's ownerReference, still pointing where it last pointed (Retain). The real API
server with the upstream Gateway API CRDs; nothing is released until a (played) gateway accepts
the HTTPRoute: a new object that is then rejected must still have the old one to fall back on."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from modelroute.kube.client import HTTPROUTES

# The operator serving the Service and HTTPRoute drivers (started after the upstream CRDs).
from tests.envtest.test_httproute import operator as operator
from tests.harness.gateway import FakeGatewayController, GatewayVerdict
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess
from tests.harness.scenario import Scenario

TO_HTTPROUTE = {
    "driver": "HTTPRoute",
    "httpRoute": {"parentRefs": [{"name": "ai-gateway", "namespace": "gateway-system"}]},
}


def http_route(sc: Scenario) -> dict[str, Any] | None:
    try:
        got: dict[str, Any] = sc.custom.get_namespaced_custom_object(
            HTTPROUTES.group, HTTPROUTES.version, sc.namespace, HTTPROUTES.plural, "chat"
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return got


def accept(sc: Scenario) -> None:
    """The Service is kept while no gateway answered; then a gateway accepts the HTTPRoute."""
    pending = lambda: (sc.condition("RoutingAccepted") or {}).get("status") == "Unknown"  # noqa: E731
    wait_for(pending, 10, "RoutingAccepted Unknown")
    assert sc.stable_service() is not None, "released before the gateway accepted the new one"
    FakeGatewayController(sc.cluster, sc.namespace, "chat").set_verdict(GatewayVerdict())


def weights(sc: Scenario) -> dict[str, int] | None:
    """backendRef name -> weight of the HTTPRoute's rule, once it exists."""
    body = http_route(sc)
    if body is None:
        return None
    refs = body["spec"]["rules"][0]["backendRefs"]
    return {ref["name"]: ref.get("weight", 1) for ref in refs}


def test_switching_service_to_httproute_deletes_the_stable_service_after_the_switch(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    sc = scenario
    uid = sc.get_route()["metadata"]["uid"]
    sc.patch_route({"spec": {"routing": TO_HTTPROUTE}})
    routed = wait_for(lambda: weights(sc), 15, "the HTTPRoute created")
    assert routed == {"vendor-egress": 100, "llama-vllm": 0}
    body = http_route(sc)
    assert body is not None
    assert [o["uid"] for o in body["metadata"]["ownerReferences"]] == [uid]
    accept(sc)
    wait_for(lambda: sc.stable_service() is None, 10, "the stable Service deleted")
    wait_for(lambda: (sc.get_route()["status"].get("activeBackend")) == "vendor", 5, "status")


def test_switching_under_retain_keeps_the_stable_service_without_our_owner_reference(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    sc = scenario
    before = sc.stable_service()
    assert before is not None and before.metadata.owner_references
    routing = {**TO_HTTPROUTE, "deletionPolicy": "Retain"}
    sc.patch_route({"spec": {"routing": routing}})
    wait_for(lambda: weights(sc), 15, "the HTTPRoute created")
    accept(sc)

    def released() -> client.V1Service | None:
        svc = sc.stable_service()
        return svc if svc is not None and not svc.metadata.owner_references else None

    kept = wait_for(released, 10, "the stable Service released")
    assert kept.metadata.uid == before.metadata.uid
    assert kept.spec.cluster_ip == before.spec.cluster_ip
    assert sc.routed_to() == "vendor-egress"  # where it last pointed
    assert http_route(sc) is not None


def test_an_operator_killed_before_the_release_leaves_it_to_the_next_one(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    # The switch is written, the gateway has not answered yet: the Service is still to release,
    # and only the route's status says so when the operator dies.
    sc = scenario
    stable = sc.route["spec"]["service"]["name"]
    sc.patch_route({"spec": {"routing": TO_HTTPROUTE}})
    wait_for(lambda: weights(sc), 15, "the HTTPRoute created")
    recorded = [{"apiVersion": "v1", "kind": "Service", "name": stable}]
    previous = lambda: sc.get_route()["status"].get("previousRouting")  # noqa: E731
    wait_for(lambda: previous() == recorded, 10, "status.previousRouting written")
    operator.kill()
    operator.start()
    accept(sc)
    wait_for(lambda: sc.stable_service() is None, 15, "the stable Service deleted")
    wait_for(lambda: previous() is None, 10, "status.previousRouting unset")
