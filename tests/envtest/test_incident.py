"""End to end, the incident controls and kstatus: the operator process, the real API server, the
canonical scenario's fake backends on loopback (probes every 1 s, failureThreshold 2,
successThreshold 2, stabilization 3 s).

- ``spec.suspend``: probes and status go on, the stable Service is never written; resuming
  routes at once.
- ``spec.drill``: the real failover and failback with every backend healthy, marked as a drill in
  status, Events and metrics.
- ``spec.routing.deletionPolicy: Retain`` and ``spec.routing.adopt``: the stable Service outlives
  its ModelRoute with its ClusterIP, and a renamed ModelRoute takes it over.
- kstatus (``Reconciling``/``Stalled``) as the API server stores it, read as Flux's kstatus and
  Argo CD's health.lua read it, in each state: awaiting probes, routed, suspended, a conflict, an
  invalid spec (a staged failback: tests/envtest/test_httproute.py).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from kubernetes import client

from tests.envtest.conftest import STABILIZATION_SECONDS
from tests.fakes.openai_backend import Fault
from tests.harness.kube import GROUP, PLURAL, VERSION, wait_for
from tests.harness.operator import OperatorProcess
from tests.harness.scenario import Scenario
from tests.unit.test_health_lua import argo_health, kstatus


def readers(route: dict[str, Any]) -> tuple[str, str]:
    """(kstatus, Argo CD health) of the route as stored."""
    return kstatus(route)[0], argo_health(route)["status"]


def kinds(sc: Scenario) -> tuple[tuple[str, str], tuple[str, str]]:
    """(status, reason) of Reconciling and of Stalled."""
    rec, stalled = sc.condition("Reconciling") or {}, sc.condition("Stalled") or {}
    return (rec.get("status"), rec.get("reason")), (stalled.get("status"), stalled.get("reason"))


def ready_reason(sc: Scenario) -> str | None:
    return (sc.condition("Ready") or {}).get("reason")


def route_exists(sc: Scenario, name: str) -> bool:
    try:
        sc.custom.get_namespaced_custom_object(GROUP, VERSION, sc.namespace, PLURAL, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def owners(svc: client.V1Service) -> list[str]:
    """uids of the Service's ownerReferences."""
    return [ref.uid for ref in svc.metadata.owner_references or []]


def test_suspend_holds_routing_while_health_goes_on_and_resume_routes_at_once(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    sc = scenario
    cluster_ip = sc.stable_service().spec.cluster_ip
    assert kinds(sc) == (("False", "Reconciled"), ("False", "NotStalled"))
    assert readers(sc.get_route()) == ("Current", "Healthy")

    sc.patch_route({"spec": {"suspend": True}})
    wait_for(lambda: ready_reason(sc) == "Suspended", 5, "Ready=False Suspended")
    assert kinds(sc) == (("False", "Suspended"), ("False", "NotStalled"))
    assert readers(sc.get_route()) == ("Current", "Suspended")
    assert operator.metric("modelroute_route_suspended", route="chat") == 1.0
    suspended = wait_for(lambda: sc.events("Suspended"), 5, "a Suspended Event")
    assert suspended[0].type == "Normal"

    sc.vendor.set_fault(Fault.REFUSED)
    wait_for(lambda: sc.backend_status("vendor").get("healthy") is False, 5, "vendor unhealthy")
    message = wait_for(
        lambda: "would move traffic to inhouse" in (m := sc.condition("Ready")["message"]) and m,
        5,
        "Ready says what the operator would do",
    )
    assert "traffic stays where it is (vendor 100%)" in message
    assert (sc.condition("Degraded") or {}).get("status") == "True"
    assert sc.routed_to() == "vendor-egress"  # never written while suspended
    assert not sc.events("FailedOver")

    sc.patch_route({"spec": {"suspend": False}})
    wait_for(lambda: sc.routed_to() == "llama-vllm", 3, "routed at once on resume")
    wait_for(lambda: sc.events("Resumed"), 5, "a Resumed Event")
    wait_for(lambda: ready_reason(sc) == "Routed", 5, "Ready=True again")
    assert operator.metric("modelroute_route_suspended", route="chat") == 0.0
    assert sc.stable_service().spec.cluster_ip == cluster_ip


def test_a_drill_fails_over_and_back_with_every_backend_healthy(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    sc = scenario
    until = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=6)
    stamp = until.isoformat().replace("+00:00", "Z")
    sc.patch_route({"spec": {"drill": {"backend": "vendor", "until": stamp}}})

    wait_for(lambda: sc.routed_to() == "llama-vllm", 5, "the drill's real failover")
    status = sc.get_route()["status"]
    assert status["drill"] == {"backend": "vendor", "until": stamp, "phase": "Active"}
    failed_over = wait_for(lambda: sc.events("FailedOver"), 5, "a FailedOver Event")
    assert failed_over[0].message.startswith("Drill: "), failed_over[0].message
    assert sc.events("DrillStarted")
    degraded = sc.condition("Degraded") or {}
    assert (degraded.get("status"), degraded.get("reason")) == ("True", "Drill")
    assert (sc.condition("Ready") or {}).get("status") == "True"
    assert operator.metric("modelroute_drill_active", route="chat", backend="vendor") == 1.0
    assert operator.metric("modelroute_drill_active", route="chat", backend="inhouse") == 0.0
    assert kinds(sc) == (("False", "Reconciled"), ("False", "NotStalled"))

    # The drill ends by itself; traffic returns under the normal failback rules.
    wait_for(lambda: sc.events("DrillEnded"), 10, "a DrillEnded Event")
    back = wait_for(lambda: sc.events("FailedBack"), 10 + STABILIZATION_SECONDS, "FailedBack")
    assert back[0].message.startswith("Drill: "), back[0].message
    assert back[0].last_timestamp >= until + dt.timedelta(seconds=STABILIZATION_SECONDS)
    assert sc.routed_to() == "vendor-egress"
    wait_for(lambda: "drill" not in sc.get_route()["status"], 5, "status.drill cleared")
    assert operator.metric("modelroute_drill_active", route="chat", backend="vendor") == 0.0
    assert sc.vendor.backend is not None and sc.vendor.backend.requests_total > 0


def test_retain_keeps_the_service_and_a_renamed_route_adopts_it(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    sc = scenario
    old_uid = sc.get_route()["metadata"]["uid"]
    svc = sc.stable_service()
    cluster_ip, service_uid = svc.spec.cluster_ip, svc.metadata.uid
    assert owners(svc) == [old_uid]

    sc.patch_route({"spec": {"routing": {"deletionPolicy": "Retain"}}})
    wait_for(lambda: owners(sc.stable_service()) == [], 5, "the ownerReference removed")
    sc.custom.delete_namespaced_custom_object(GROUP, VERSION, sc.namespace, PLURAL, "chat")
    wait_for(lambda: not route_exists(sc, "chat"), 5, "the ModelRoute gone")
    kept = sc.stable_service()
    assert kept is not None and kept.metadata.uid == service_uid
    assert kept.spec.cluster_ip == cluster_ip
    assert sc.routed_to() == "vendor-egress"  # pointing where it last pointed
    assert kept.metadata.labels["app.kubernetes.io/managed-by"] == "modelroute-operator"

    # A renamed route: a conflict (Stalled) until it asks to adopt.
    renamed = copy.deepcopy(sc.route)
    renamed["metadata"]["name"] = "chat-renamed"
    sc.route = renamed
    sc.create_route()
    wait_for(lambda: ready_reason(sc) == "ServiceConflict", 10, "ServiceConflict without adopt")
    assert kinds(sc) == (("False", "Reconciled"), ("True", "ServiceConflict"))
    assert readers(sc.get_route()) == ("Failed", "Degraded")
    sc.patch_route({"spec": {"routing": {"adopt": True}}})
    new_uid = sc.get_route()["metadata"]["uid"]
    wait_for(lambda: owners(sc.stable_service()) == [new_uid], 10, "adopted by chat-renamed")
    adopted = sc.stable_service()
    assert adopted.metadata.uid == service_uid
    assert adopted.spec.cluster_ip == cluster_ip
    assert adopted.metadata.labels["modelroute.dev/route"] == "chat-renamed"
    wait_for(lambda: ready_reason(sc) == "Routed", 10, "the renamed route Ready")
    assert sc.routed_to() == "vendor-egress"
    assert readers(sc.get_route()) == ("Current", "Healthy")


def test_kstatus_while_awaiting_probes_and_for_an_invalid_spec(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    sc = scenario
    # A second route whose preferred backend hangs: the first routing waits for its probe.
    sc.vendor.set_fault(Fault.HANG)
    waiting = copy.deepcopy(sc.route)
    waiting["metadata"]["name"] = "waiting"
    waiting["spec"]["service"]["name"] = "waiting-llm"
    waiting["spec"]["probe"]["timeoutSeconds"] = 20
    sc.route = waiting
    sc.create_route()
    wait_for(lambda: ready_reason(sc) == "AwaitingFirstProbes", 10, "AwaitingFirstProbes")
    assert kinds(sc) == (("True", "AwaitingFirstProbes"), ("False", "NotStalled"))
    assert readers(sc.get_route()) == ("InProgress", "Progressing")
    sc.vendor.clear_fault()

    # An invalid spec: a drill of a backend the route does not have.
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    sc.patch_route({"spec": {"drill": {"backend": "nosuch", "until": until}}})
    wait_for(lambda: ready_reason(sc) == "InvalidSpec", 10, "InvalidSpec")
    stalled = sc.condition("Stalled") or {}
    assert (stalled.get("status"), stalled.get("reason")) == ("True", "InvalidSpec")
    assert stalled["message"].startswith("spec.drill.backend: no backend is named 'nosuch'")
    assert readers(sc.get_route()) == ("Failed", "Degraded")
