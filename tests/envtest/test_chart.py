"""The chart on the real API server: ``helm install`` with Helm v4, then the operator as the chart.

1. Every object of every variant is installed by Helm (CRDs from crds/ first) and accepted; Helm
   discovers the server's APIs, so the PodDisruptionBudget is policy/v1beta1 on a 1.20 server.
2. The failover scenario passes with the operator authenticated as the chart's ServiceAccount,
   with nothing but the chart's RBAC, in namespaced and cluster-wide mode (with leader election),
   with the Deployment's own arguments and environment; the audit log shows no request of it was
   denied, and actions outside the RBAC are Forbidden.
3. Two replicas as the chart deploys them: one leads (holds the Lease) and does every write, the
   other stands by; when the leader stops, the standby takes over and handles the next failover.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from modelroute.settings import Settings
from tests.fakes.openai_backend import Fault
from tests.harness.apiserver import WRITE_VERBS, Cluster, Identity
from tests.harness.helm import Release, installed
from tests.harness.kube import GROUP, PLURAL, VERSION, create_namespace, install_crd, wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.scenario import Scenario, canonical_scenario
from tests.unit.test_health_lua import argo_health, kstatus

FAST_PROBE = {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2}
# Flags the harness sets itself (loopback, free ports); every other argument is the chart's.
HARNESS_FLAGS = ("--metrics-port", "--health-port", "--bind-address")


# The Prometheus Operator's ServiceMonitor and PrometheusRule, each reduced to what the API server
# needs to accept one (their content is checked offline: tests/unit/test_alert_rules.py).
def monitoring_crd(kind: str) -> dict[str, Any]:
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def monitoring(crd: Cluster) -> Cluster:
    """The cluster with ServiceMonitor and PrometheusRule CRDs, for the monitoring values."""
    import yaml

    for kind in ("ServiceMonitor", "PrometheusRule"):
        path = crd.workdir / f"{kind.lower()}-crd.yaml"
        path.write_text(yaml.safe_dump(monitoring_crd(kind)))
        install_crd(crd, path)
    return crd


def stored(cluster: Cluster, obj: dict[str, Any]) -> Any:
    """The object as the API server stores it (dynamic client, found by discovery)."""
    dynamic = DynamicClient(cluster.api_client())
    resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    namespace = obj["metadata"].get("namespace")
    return resource.get(name=obj["metadata"]["name"], namespace=namespace)


def served_pdb_version(cluster: Cluster) -> str:
    groups = client.ApisApi(cluster.api_client()).get_api_versions().groups
    policy = next(g for g in groups if g.name == "policy")
    return "policy/v1" if any(v.version == "v1" for v in policy.versions) else "policy/v1beta1"


# --- 1. every object is accepted ------------------------------------------------------------------


def test_every_rendered_object_is_installed_and_accepted(monitoring: Cluster) -> None:
    cluster = monitoring
    release_ns = create_namespace(cluster, "mr-system")
    team_a, team_b = create_namespace(cluster, "team-a"), create_namespace(cluster, "team-b")
    everything_namespaced = {
        "watchNamespaces": [team_a, team_b],
        "leaderElection": {"enabled": True},
        "replicaCount": 2,
        "podDisruptionBudget": {"enabled": True},
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
    }
    with installed(cluster, "mr-all", release_ns, everything_namespaced) as release:
        assert sorted(o["kind"] for o in release.objects) == [
            "ConfigMap",  # the Grafana dashboard
            "Deployment",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Role",
            "Role",
            "Role",  # the leader-election Lease, in the release namespace
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
        for obj in release.objects:
            live = stored(cluster, obj)
            assert live.metadata.labels["app.kubernetes.io/instance"] == "mr-all", obj["kind"]
        assert release.only("PodDisruptionBudget")["apiVersion"] == served_pdb_version(cluster)
        deployment = stored(cluster, release.only("Deployment"))
        assert deployment.spec.replicas == 2
        pod = deployment.spec.template.spec
        assert pod.securityContext.runAsNonRoot is True
        assert pod.containers[0].securityContext.readOnlyRootFilesystem is True
        (pod_ns,) = [e for e in pod.containers[0].env if e.name == "POD_NAMESPACE"]
        assert pod_ns.valueFrom.fieldRef.fieldPath == "metadata.namespace"
        roles = [r for r in release.objects if r["kind"] == "Role"]
        assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(
            [team_a, team_b, release_ns]
        )

    cluster_wide = {
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
        "metrics": {"serviceMonitor": {"enabled": True}},
    }
    with installed(cluster, "mr-cw", create_namespace(cluster, "mr-system"), cluster_wide) as rel:
        assert sorted(o["kind"] for o in rel.objects) == [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
        for obj in rel.objects:
            assert stored(cluster, obj).metadata.labels["app.kubernetes.io/instance"] == "mr-cw"

    # Shards: a Deployment, PodDisruptionBudget and metrics Service more per shard, all accepted;
    # the Lease Role names every shard's Lease (docs/sharding.md).
    sharded = {**cluster_wide, "shards": ["a", "b"], "leaderElection": {"enabled": True}}
    with installed(cluster, "mr-sh", create_namespace(cluster, "mr-system"), sharded) as rel:
        kinds = sorted(o["kind"] for o in rel.objects)
        assert [kinds.count(k) for k in ("Deployment", "PodDisruptionBudget", "Service")] == [3] * 3
        for obj in rel.objects:
            live = stored(cluster, obj)
            assert live.metadata.labels["app.kubernetes.io/instance"] == "mr-sh"
            if obj["kind"] == "Deployment":  # the server accepted each selector as rendered
                assert (
                    live.spec.selector.matchLabels.to_dict()
                    == obj["spec"]["selector"]["matchLabels"]
                )
        (role,) = [o for o in rel.objects if o["kind"] == "Role"]
        names = stored(cluster, role).rules[0].resourceNames
        assert names == ["modelroute-operator", "modelroute-operator-a", "modelroute-operator-b"]

    # crds/ holds only the ModelRoute CRD (already installed, left alone): no kopf.dev CRDs.
    crds = client.ApiextensionsV1Api(cluster.api_client()).list_custom_resource_definition()
    assert [c.metadata.name for c in crds.items if c.spec.group == "kopf.dev"] == []


# --- 2. the operator as the chart's ServiceAccount ------------------------------------------------


def operator_args(release: Release) -> list[str]:
    """The Deployment's arguments, less the ports and address the harness chooses."""
    (container,) = release.only("Deployment")["spec"]["template"]["spec"]["containers"]
    return [a for a in container["args"] if not a.startswith(HARNESS_FLAGS)]


def operator_env(release: Release) -> dict[str, str]:
    """The Deployment's environment as the kubelet would set it for a Pod of the release."""
    (container,) = release.only("Deployment")["spec"]["template"]["spec"]["containers"]
    downward = {"metadata.namespace": release.namespace}
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = downward[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def forbidden(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except client.ApiException as exc:
        return exc.status == 403
    return False


def denied_requests(cluster: Cluster, identity: Identity, since: float) -> list[str]:
    if cluster.audit_log is None:
        return []  # USE_EXISTING_CLUSTER: no audit log to read
    return [
        f"{e['verb']} {e['requestURI']}"
        for e in cluster.audit_events(username=identity.username, since=since)
        if e.get("responseStatus", {}).get("code") == 403
    ]


@contextlib.contextmanager
def route_deleted_after(sc: Scenario) -> Iterator[Scenario]:
    """Delete the route afterwards, so no later cluster-wide operator picks it up."""
    try:
        yield sc
    finally:
        with contextlib.suppress(client.ApiException):
            sc.custom.delete_namespaced_custom_object(
                GROUP, VERSION, sc.namespace, PLURAL, sc.route["metadata"]["name"]
            )


def lease(cluster: Cluster, namespace: str) -> client.V1Lease | None:
    """The leader-election Lease (the operator's default name, as the chart passes it)."""
    api = client.CoordinationV1Api(cluster.api_client())
    try:
        return api.read_namespaced_lease(Settings().leader_election_lease, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def fail_over(sc: Scenario) -> None:
    """Routed to the vendor and Ready, then the vendor goes down: traffic moves in-house."""
    wait_for(lambda: sc.routed_to() == "vendor-egress", 30, "initial route to the vendor")
    wait_for(lambda: (sc.condition("Ready") or {}).get("status") == "True", 15, "Ready=True")
    assert argo_health(sc.get_route())["status"] == "Healthy"
    sc.vendor.set_fault(Fault.REFUSED)
    wait_for(lambda: sc.routed_to() == "llama-vllm", 15, "failover to in-house")
    wait_for(
        lambda: (sc.get_route().get("status") or {}).get("activeBackend") == "inhouse",
        10,
        "status.activeBackend=inhouse",
    )
    wait_for(lambda: sc.events("FailedOver"), 10, "a FailedOver event")
    route = sc.get_route()
    assert route["status"]["failoverCount"] == 1
    health = argo_health(route)
    assert health["status"] == "Healthy"
    assert "degraded: unhealthy: vendor" in health["message"]
    assert kstatus(route)[0] == "Current"


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_failover_as_the_chart_service_account_under_only_its_rbac(crd: Cluster, mode: str) -> None:
    release_ns = create_namespace(crd, "mr-system")
    routes_ns = create_namespace(crd, "ai")
    second_ns = create_namespace(crd, "team")
    unwatched_ns = create_namespace(crd, "other")
    values: dict[str, Any] = {"leaderElection": {"enabled": True}}
    if mode == "namespaced":
        values["watchNamespaces"] = [routes_ns, second_ns]
    admin = client.CoreV1Api(crd.api_client())
    admin.create_namespaced_secret(
        unwatched_ns,
        client.V1Secret(metadata=client.V1ObjectMeta(name="not-yours"), string_data={"k": "v"}),
    )

    with installed(crd, f"mr-{mode}", release_ns, values) as release:
        account = release.only("ServiceAccount")["metadata"]["name"]
        identity = crd.mint_service_account(release_ns, account)
        started = time.time() - 1
        args, env = operator_args(release), operator_env(release)
        with (
            running_operator(identity, crd.workdir, extra_args=args, env=env) as operator,
            canonical_scenario(crd, routes_ns, **FAST_PROBE) as scenario,
            route_deleted_after(scenario) as sc,
        ):
            fail_over(sc)
            assert denied_requests(crd, identity, started) == []
            held = lease(crd, release_ns)  # in the release namespace, from POD_NAMESPACE
            assert held is not None and held.spec.holder_identity, "no Lease held"
            assert operator.metric("modelroute_leader") == 1.0
            assert " 403 " not in operator.logs() and "Forbidden" not in operator.logs()

            # Outside the chart's RBAC, for the same identity.
            api = crd.api_client(identity)
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            custom, rbac = client.CustomObjectsApi(api), client.RbacAuthorizationV1Api(api)
            deployment = release.only("Deployment")["metadata"]["name"]
            name = sc.route["metadata"]["name"]
            spec_patch = {"spec": {"failback": {"mode": "Manual"}}}
            assert forbidden(apps.delete_namespaced_deployment, deployment, release_ns)
            assert forbidden(
                custom.patch_namespaced_custom_object,
                GROUP, VERSION, routes_ns, PLURAL, name, spec_patch,
            )  # fmt: skip
            assert forbidden(
                custom.delete_namespaced_custom_object, GROUP, VERSION, routes_ns, PLURAL, name
            )
            # Deleting a routing object's kind is granted (a driver switch or rename releases the
            # previous object, routing/handover.py); the operator itself deletes only an object
            # whose ownerReference names the route, with a uid precondition.
            assert forbidden(core.delete_namespaced_secret, "vendor-key", routes_ns)
            assert forbidden(
                core.patch_namespaced_secret, "vendor-key", routes_ns, {"data": {"apiKey": ""}}
            )
            assert forbidden(
                core.create_namespaced_secret,
                routes_ns,
                client.V1Secret(metadata=client.V1ObjectMeta(name="planted")),
            )
            assert forbidden(rbac.list_cluster_role)
            assert forbidden(core.list_namespace)
            if mode == "namespaced":
                assert forbidden(core.read_namespaced_secret, "not-yours", unwatched_ns)
                assert forbidden(core.list_secret_for_all_namespaces)
                assert forbidden(core.list_namespaced_secret, release_ns)
                assert forbidden(core.list_service_for_all_namespaces)
                assert forbidden(core.delete_namespaced_service, "llama-vllm", unwatched_ns)
            else:
                assert core.read_namespaced_secret("not-yours", unwatched_ns).data is not None


# --- 3. two replicas with leader election -----------------------------------------------------

WRITE_RESOURCES = ("services", "modelroutes/status")  # what modelroute_api_writes_total counts


def leading(replicas: list[OperatorProcess]) -> list[float | None]:
    """Each replica's modelroute_leader (None when it does not answer)."""
    return [r.metric("modelroute_leader") for r in replicas]


def the_leader(replicas: list[OperatorProcess]) -> OperatorProcess | None:
    """The replica reporting modelroute_leader 1 while every other one reports 0, else None."""
    values = leading(replicas)
    if values.count(1.0) != 1 or values.count(0.0) != len(replicas) - 1:
        return None
    return replicas[values.index(1.0)]


def writes_counted(replica: OperatorProcess) -> dict[str, float]:
    """The replica's own count of its API writes (modelroute_api_writes_total), by resource."""
    counted = {
        r: replica.metric("modelroute_api_writes_total", resource=r) for r in WRITE_RESOURCES
    }
    return {r: value or 0.0 for r, value in counted.items()}


def audited_writes(
    cluster: Cluster, identity: Identity, namespace: str, since: float
) -> dict[str, float]:
    """Successful writes of ``identity`` to services and ModelRoute status in ``namespace``, by
    resource, from the audit log: the same things modelroute_api_writes_total counts."""
    found = dict.fromkeys(WRITE_RESOURCES, 0.0)
    for event in cluster.audit_events(username=identity.username, verbs=WRITE_VERBS, since=since):
        ref = event.get("objectRef", {})
        if ref.get("namespace") != namespace or event["responseStatus"]["code"] >= 400:
            continue
        resource = "/".join(filter(None, (ref.get("resource"), ref.get("subresource"))))
        if resource in found:
            found[resource] += 1
    return found


def unexpected_writes(cluster: Cluster, identity: Identity, since: float) -> list[str]:
    """Writes of ``identity`` other than the chart's RBAC lets the operator make."""
    allowed = {
        ("create", "services", ""),
        ("patch", "services", ""),
        ("delete", "services", ""),
        ("patch", "modelroutes", "status"),
        ("create", "events", ""),
        ("create", "leases", ""),
        ("update", "leases", ""),
    }
    found = []
    for event in cluster.audit_events(username=identity.username, verbs=WRITE_VERBS, since=since):
        ref = event.get("objectRef", {})
        key = (event["verb"], ref.get("resource", ""), ref.get("subresource", ""))
        if key not in allowed:
            found.append(f"{event['verb']} {event['requestURI']}")
    return found


def assert_audited(
    cluster: Cluster, identity: Identity, namespace: str, since: float, expected: dict[str, float]
) -> None:
    """The audit log shows exactly ``expected`` writes (it may lag the responses a little)."""
    deadline = time.monotonic() + 15
    while (found := audited_writes(cluster, identity, namespace, since)) != expected:
        assert time.monotonic() < deadline, f"audit log {found} != counted {expected}"
        time.sleep(0.5)


def settled(read: Any, seconds: float = 3.0) -> Any:
    """``read()``'s value once it has not changed for ``seconds`` (no write in flight)."""
    last, since = read(), time.monotonic()
    deadline = since + 60
    while time.monotonic() - since < seconds:
        assert time.monotonic() < deadline, "never settled"
        time.sleep(0.5)
        value = read()
        if value != last:
            last, since = value, time.monotonic()
    return last


def test_two_replicas_with_leader_election_serve_routes(crd: Cluster) -> None:
    """Two replicas with the chart's flags, environment, ServiceAccount and RBAC.

    Both replicas are the same ServiceAccount, so the audit log cannot tell them apart: each
    replica's own /metrics (modelroute_leader, modelroute_api_writes_total) says which one acted,
    and the audit log proves the leader's count is every write the ServiceAccount made.
    """
    release_ns, routes_ns = create_namespace(crd, "mr-system"), create_namespace(crd, "ai")
    values = {
        "leaderElection": {"enabled": True},
        "replicaCount": 2,
        "watchNamespaces": [routes_ns],
    }
    with installed(crd, "mr-ha", release_ns, values) as release:
        assert release.only("Deployment")["spec"]["replicas"] == 2
        identity = crd.mint_service_account(
            release_ns, release.only("ServiceAccount")["metadata"]["name"]
        )
        args, env = operator_args(release), operator_env(release)
        assert "--leader-election" in args and env["POD_NAMESPACE"] == release_ns
        audited = crd.audit_log is not None  # not with USE_EXISTING_CLUSTER
        started = time.time() - 1
        with contextlib.ExitStack() as stack:
            replicas = [
                stack.enter_context(
                    running_operator(identity, crd.workdir, extra_args=args, env=env)
                )
                for _ in range(2)
            ]
            sc = stack.enter_context(
                canonical_scenario(crd, routes_ns, create_route=False, **FAST_PROBE)
            )
            stack.enter_context(route_deleted_after(sc))
            sc.route["spec"]["failback"]["stabilizationSeconds"] = 2
            sc.create_route()

            # Exactly one leader; it holds the Lease in the release namespace.
            leader = wait_for(lambda: the_leader(replicas), 30, "exactly one leader")
            (standby,) = [r for r in replicas if r is not leader]
            first = lease(crd, release_ns)
            assert first is not None and first.spec.holder_identity

            # The leader fails over and back; the standby stays standby and writes nothing.
            fail_over(sc)
            sc.vendor.clear_fault()
            wait_for(lambda: sc.routed_to() == "vendor-egress", 30, "failback to the vendor")
            wait_for(lambda: sc.events("FailedBack"), 10, "a FailedBack event")
            assert the_leader(replicas) is leader, leading(replicas)
            counted = settled(lambda: writes_counted(leader))
            assert counted["services"] >= 3 and counted["modelroutes/status"] >= 1, counted
            assert writes_counted(standby) == {r: 0.0 for r in WRITE_RESOURCES}
            assert standby.metric("modelroute_routes") in (None, 0.0)  # no route worker
            assert standby.metric("modelroute_probe_duration_seconds_count") is None  # no probe
            if audited:  # every write the ServiceAccount made is one the leader counted
                assert_audited(crd, identity, routes_ns, started, counted)
            failovers = sc.get_route()["status"]["failoverCount"]

            # A graceful stop releases the Lease; the standby takes over without waiting for
            # the Lease to expire, and handles the next failover and failback alone.
            leader.stop()
            wait_for(lambda: standby.metric("modelroute_leader") == 1.0, 15, "takeover")
            logs = leader.logs()
            assert "stopped leading: shutting down" in logs
            assert "could not release the lease" not in logs
            taken = lease(crd, release_ns)
            assert taken is not None and taken.spec.holder_identity
            assert taken.spec.holder_identity != first.spec.holder_identity
            assert (taken.spec.lease_transitions or 0) > (first.spec.lease_transitions or 0)

            sc.vendor.set_fault(Fault.REFUSED)
            wait_for(lambda: sc.routed_to() == "llama-vllm", 20, "failover by the new leader")
            sc.vendor.clear_fault()
            wait_for(lambda: sc.routed_to() == "vendor-egress", 30, "failback by the new leader")
            wait_for(
                lambda: sc.get_route()["status"]["failoverCount"] == failovers + 2,
                15,
                "two more moves counted",
            )
            taken_over = settled(lambda: writes_counted(standby))
            assert taken_over["services"] >= 2, taken_over
            if audited:  # ... and since then, the new leader's
                total = {r: counted[r] + taken_over[r] for r in WRITE_RESOURCES}
                assert_audited(crd, identity, routes_ns, started, total)
                assert unexpected_writes(crd, identity, started) == []
                assert denied_requests(crd, identity, started) == []
