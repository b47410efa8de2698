"""Sharding on the real API server: the chart's main Deployment and two shard Deployments, each
run as an operator process with that Deployment's own arguments, environment, ServiceAccount and
RBAC (``helm install`` with ``shards: [a, b]``).

Every route is served by exactly one operator: the one whose label selector matches it (the API
server filters each operator's watch), as each operator's metrics say; the audit log shows every
stable Service created once and every write of the ServiceAccount counted by exactly one of
them. Each shard elects its leader in its own Lease. A route
relabelled to another shard is handed over: the old shard drops it without touching its Service,
the new one takes the Service over (never creating a second one) and handles its next failover.
"""

from __future__ import annotations

import copy
import time
from contextlib import ExitStack
from typing import Any

from kubernetes import client

from tests.envtest.conftest import FAST_PROBE
from tests.envtest.test_chart import (
    WRITE_RESOURCES,
    assert_audited,
    denied_requests,
    settled,
    stored,
    writes_counted,
)
from tests.fakes.openai_backend import Fault
from tests.harness.apiserver import WRITE_VERBS, Cluster
from tests.harness.helm import installed
from tests.harness.kube import GROUP, PLURAL, VERSION, create_namespace, wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.scenario import Scenario, canonical_scenario

SHARD_KEY = "modelroute.dev/shard"
HARNESS_FLAGS = ("--metrics-port", "--health-port", "--bind-address")
# route name -> its shard label ("" for none: the main Deployment's)
ROUTES = {"chat-a1": "a", "chat-a2": "a", "chat-b1": "b", "chat-main": ""}


def args_and_env(deployment: dict[str, Any], namespace: str) -> tuple[list[str], dict[str, str]]:
    """A Deployment's arguments (less the ports the harness picks) and environment, as the
    kubelet would give them to its Pod in ``namespace``."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [a for a in container["args"] if not a.startswith(HARNESS_FLAGS)]
    env = {}
    for var in container["env"]:
        downward = {"metadata.namespace": namespace}
        env[var["name"]] = var.get("value") or downward[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return args, env


def create_route(sc: Scenario, name: str, shard: str) -> None:
    """The canonical route as ``name`` with its own stable Service, labelled for ``shard``."""
    route = copy.deepcopy(sc.route)
    route["metadata"]["name"] = name
    route["metadata"]["labels"] = {SHARD_KEY: shard} if shard else {}
    route["spec"]["service"]["name"] = f"{name}-llm"
    sc.custom.create_namespaced_custom_object(GROUP, VERSION, sc.namespace, PLURAL, route)


def relabel(sc: Scenario, name: str, shard: str | None) -> None:
    """Move a route to ``shard`` (None: remove the label, to the main Deployment)."""
    patch = {"metadata": {"labels": {SHARD_KEY: shard}}}
    sc.custom.patch_namespaced_custom_object(GROUP, VERSION, sc.namespace, PLURAL, name, patch)


def routed_to(sc: Scenario, name: str) -> str | None:
    """The target Service a route's stable Service selects (None when it does not exist)."""
    try:
        svc = sc.core.read_namespaced_service(f"{name}-llm", sc.namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return str(svc.spec.selector.get("app"))


def served(operator: OperatorProcess) -> set[str]:
    """The routes an operator reports an active backend for (its route workers' metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    _, text = operator.get("/metrics")
    return {
        sample.labels["route"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelroute_active_backend"
    }


def expected(shards: dict[str, str]) -> dict[str, set[str]]:
    """The routes each operator ("" main, "a", "b") should serve, given the routes' labels."""
    return {op: {r for r, s in shards.items() if s == op} for op in ("", "a", "b")}


def assert_each_route_served_once(
    operators: dict[str, OperatorProcess], shards: dict[str, str]
) -> None:
    """Each operator serves exactly its own routes (and counts them in modelroute_routes)."""
    want = expected(shards)
    wait_for(
        lambda: {op: served(p) for op, p in operators.items()} == want,
        30,
        f"routes served as {want}",
    )
    for op, process in operators.items():
        assert process.metric("modelroute_routes") == len(want[op]), op
        assert process.metric("modelroute_leader") == 1.0, op


def service_creates(cluster: Cluster, username: str, namespace: str, since: float) -> list[str]:
    """Every attempt (any outcome) of ``username`` to create a Service in ``namespace``."""
    return sorted(
        e["objectRef"].get("name") or e["requestObject"]["metadata"]["name"]
        for e in cluster.audit_events(username=username, verbs=WRITE_VERBS, since=since)
        if e["verb"] == "create"
        and e["objectRef"].get("resource") == "services"
        and e["objectRef"].get("namespace") == namespace
    )


def test_shards_serve_each_route_once_and_hand_over_a_relabelled_route(crd: Cluster) -> None:
    release_ns, routes_ns = create_namespace(crd, "mr-system"), create_namespace(crd, "ai")
    values = {
        "shards": ["a", "b"],
        "leaderElection": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
        "watchNamespaces": [routes_ns],
    }
    with installed(crd, "mr-shards", release_ns, values) as release, ExitStack() as stack:
        for obj in release.objects:  # every object, every shard's too, is accepted as rendered
            assert stored(crd, obj).metadata.name == obj["metadata"]["name"]
        deployments = {
            d["metadata"]["labels"].get(SHARD_KEY, ""): d
            for d in release.objects
            if d["kind"] == "Deployment"
        }
        account = release.only("ServiceAccount")["metadata"]["name"]
        identity = crd.mint_service_account(release_ns, account)
        audited = crd.audit_log is not None
        started = time.time() - 1
        operators = {}
        for shard in ("", "a", "b"):
            args, env = args_and_env(deployments[shard], release_ns)
            operators[shard] = stack.enter_context(
                running_operator(identity, crd.workdir, extra_args=args, env=env)
            )
        sc = stack.enter_context(
            canonical_scenario(crd, routes_ns, create_route=False, **FAST_PROBE)
        )
        sc.route["spec"]["failback"]["stabilizationSeconds"] = 1
        shards = dict(ROUTES)
        for name, shard in shards.items():
            create_route(sc, name, shard)

        # Every route routed and served by exactly the operator its label selects.
        for name in shards:
            wait_for(lambda n=name: routed_to(sc, n) == "vendor-egress", 30, f"{name} routed")
        assert_each_route_served_once(operators, shards)
        # Three Leases, one per Deployment, each held by its own operator.
        coordination = client.CoordinationV1Api(crd.api_client())
        holders = {
            name: coordination.read_namespaced_lease(name, release_ns).spec.holder_identity
            for name in ("modelroute-operator", "modelroute-operator-a", "modelroute-operator-b")
        }
        assert all(holders.values()) and len(set(holders.values())) == 3, holders

        # Hand-overs: a2 from shard a to shard b, b1 from shard b to the main Deployment.
        before = {n: sc.core.read_namespaced_service(f"{n}-llm", routes_ns) for n in shards}
        relabel(sc, "chat-a2", "b")
        relabel(sc, "chat-b1", None)
        shards.update({"chat-a2": "b", "chat-b1": ""})
        assert_each_route_served_once(operators, shards)
        assert "another shard serves it now" in operators["a"].logs()
        assert "another shard serves it now" in operators["b"].logs()
        for name, service in before.items():  # never deleted or re-created
            now = sc.core.read_namespaced_service(f"{name}-llm", routes_ns)
            assert now.metadata.uid == service.metadata.uid, name

        # The next failover of each route is made by the operator now serving it.
        sc.vendor.set_fault(Fault.REFUSED)
        for name in shards:
            wait_for(lambda n=name: routed_to(sc, n) == "llama-vllm", 20, f"{name} failed over")
        for op, process in operators.items():
            # Counters are exported at 0 for every backend: ask for the one that took the traffic.
            moved = {
                r
                for r in shards
                if process.metric("modelroute_failovers_total", route=r, backend="inhouse")
            }
            assert moved == expected(shards)[op], op
        assert denied_requests(crd, identity, started) == []
        # Every write the ServiceAccount made was counted by exactly one of the operators.
        counted = settled(lambda: {op: writes_counted(p) for op, p in operators.items()})
        assert all(c["modelroutes/status"] >= 1 for c in counted.values()), counted
        total = {r: sum(c[r] for c in counted.values()) for r in WRITE_RESOURCES}
        if audited:
            assert_audited(crd, identity, routes_ns, started, total)
        if audited:  # each stable Service was created once, by one operator, ever
            creates = service_creates(crd, identity.username, routes_ns, started)
            assert creates == sorted(f"{n}-llm" for n in shards), creates
