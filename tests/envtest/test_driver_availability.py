"""A route whose routing driver the operator cannot serve, on a real API server.

Beside the canonical Service-driver route, the canonical chat-gw route (HTTPRoute driver, probe
endpoints on fake backends) is ``Ready=False``, reason ``DriverUnavailable``, saying why; the
Service route routes as usual (drift reverted through the Service watch registered at start-up);
the process stays up, healthy and quiet (no error, no warning repeated), and never lists,
watches or even asks for a kind it does not serve. Two ways a driver is unavailable:

1. Not enabled: the chart's default (``routing.drivers: [Service]``) with the Gateway API CRDs
   installed, the operator running as the chart's ServiceAccount without RBAC on httproutes
   (kopf stops the whole operator after a watch it is forbidden to make: none is started).
2. Enabled, its CRD missing: the HTTPRoute CRD is taken away for the test if an earlier test
   installed it, and put back afterwards, so the test passes whatever ran before it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from modelroute import routing
from modelroute.kube.client import HTTPROUTES
from tests.envtest.test_chart import denied_requests, operator_args, operator_env
from tests.fakes.openai_backend import FakeBackendThread
from tests.harness.apiserver import Cluster, Identity
from tests.harness.helm import installed
from tests.harness.kube import GROUP, PLURAL, VERSION, create_namespace, install_crd_body, wait_for
from tests.harness.operator import OperatorProcess, running_operator
from tests.harness.scenario import Scenario, canonical_scenario
from tests.harness.upstream import UpstreamCRD

FAST_PROBE = {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2}
HTTPROUTE_CRD = f"{HTTPROUTES.plural}.{HTTPROUTES.group}"
UNAVAILABLE = "DriverUnavailable"
NOT_ENABLED = (
    "routing driver HTTPRoute is not enabled on this operator "
    "(--routing-drivers; Helm value routing.drivers)"
)
NOT_INSTALLED = (
    "the HTTPRoute CRD (gateway.networking.k8s.io/v1) is not installed on this cluster; "
    "install it and restart the operator"
)


@pytest.fixture(autouse=True)
def httproute_driver() -> None:
    """These tests route a ModelRoute through the HTTPRoute driver: it must be registered."""
    assert "HTTPRoute" in routing.names(), (
        "the HTTPRoute routing driver is not registered (operator/modelroute/routing/ defines "
        f"{routing.names()}); tests/envtest/test_driver_availability.py needs it"
    )


# The canonical chat-gw example of shared/design/modelroute-api.md, as written there, with fast
# probes; its namespace and probe endpoints are filled in by chat_gw().
CHAT_GW = """
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat-gw, namespace: ai}
spec:
  model: gpt-4o
  routing:
    driver: HTTPRoute
    httpRoute:
      parentRefs: [{name: ai-gateway, namespace: gateway-system}]
      hostnames: [llm.ai.example.com]
  backends:
    - name: vendor
      priority: 0
      backendRef: {group: gateway.envoyproxy.io, kind: Backend, name: openai, port: 443}
      endpoint: https://api.openai.com
      model: gpt-4o
      authSecretRef: {name: vendor-key, key: apiKey}
    - name: inhouse
      priority: 1
      backendRef: {group: inference.networking.k8s.io, kind: InferencePool, name: llama-pool}
      endpoint: http://llama-vllm.ai.svc:8000
      model: gpt-4o          # the pool serves the client's name (vLLM --served-model-name)
  failback: {mode: Automatic, stabilizationSeconds: 60, steps: [10, 50, 100], stepSeconds: 30}
"""


def chat_gw(namespace: str, vendor_url: str, inhouse_url: str) -> dict[str, Any]:
    """The canonical chat-gw route in ``namespace``, its probes on the fake backends."""
    route: dict[str, Any] = yaml.safe_load(CHAT_GW)
    route["metadata"]["namespace"] = namespace
    vendor, inhouse = route["spec"]["backends"]
    vendor["endpoint"], inhouse["endpoint"] = vendor_url, inhouse_url
    route["spec"]["probe"] = dict(FAST_PROBE)
    return route


@contextlib.contextmanager
def routes(cluster: Cluster, namespace: str) -> Iterator[Scenario]:
    """The canonical Service-driver route, and chat-gw (HTTPRoute driver) beside it."""
    with (
        canonical_scenario(cluster, namespace, **FAST_PROBE) as sc,
        FakeBackendThread(("gpt-4o",), name="inhouse-gw") as inhouse_gw,
    ):
        sc.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, chat_gw(namespace, sc.vendor.url, inhouse_gw.url)
        )
        try:
            yield sc
        finally:
            for name in ("chat-gw", sc.route["metadata"]["name"]):
                with contextlib.suppress(client.ApiException):
                    sc.custom.delete_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL, name
                    )


def ready(sc: Scenario, name: str) -> dict[str, Any]:
    """The Ready condition of route ``name`` ({} while there is none)."""
    route = sc.custom.get_namespaced_custom_object(GROUP, VERSION, sc.namespace, PLURAL, name)
    for condition in (route.get("status") or {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(condition)
    return {}


def assert_driver_unavailable(sc: Scenario, message: str) -> None:
    """chat-gw is Ready=False, DriverUnavailable, saying why; chat routes as usual."""
    condition = wait_for(
        lambda: (c := ready(sc, "chat-gw")).get("reason") == UNAVAILABLE and c,
        20,
        "chat-gw Ready=False, reason DriverUnavailable",
    )
    assert condition["status"] == "False"
    assert message in condition["message"], condition["message"]
    wait_for(lambda: sc.routed_to() == "vendor-egress", 20, "chat routed to the vendor")
    wait_for(lambda: ready(sc, "chat").get("status") == "True", 15, "chat Ready=True")
    # Drift on the stable Service is reverted: its watch (registered by the start-up handler,
    # after discovery) reaches the worker.
    stable = sc.route["spec"]["service"]["name"]
    sc.core.patch_namespaced_service(stable, sc.namespace, {"spec": {"selector": {"app": "x"}}})
    wait_for(lambda: sc.routed_to() == "vendor-egress", 15, "drift on chat-llm reverted")
    assert ready(sc, "chat-gw")["reason"] == UNAVAILABLE  # still, and unchanged


def log_records(operator: OperatorProcess) -> list[dict[str, Any]]:
    """The operator's JSON log lines."""
    return [json.loads(line) for line in operator.logs().splitlines() if line.startswith("{")]


def assert_alive_and_quiet(operator: OperatorProcess, expected_warnings: list[str]) -> None:
    """Up, healthy, no error logged, each warning once: ``expected_warnings`` and the Warning
    Event of chat-gw turning Ready=False (Events are logged too), nothing else."""
    time.sleep(5)  # a few probe intervals: anything that repeats shows by now
    assert operator.returncode is None, operator.logs()[-4000:]
    assert operator.get("/healthz", operator.health_port) == (200, "ok\n")
    records = log_records(operator)
    assert records, operator.logs()[-4000:]
    problems = [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    assert problems == [], problems
    warnings = [r for r in records if r["level"] == "WARNING"]
    event = [r for r in warnings if (r.get("route"), r.get("reason")) == ("chat-gw", UNAVAILABLE)]
    assert len(event) == 1, warnings
    others = Counter(r["message"] for r in warnings if r not in event)
    assert sorted(others) == sorted(expected_warnings), others
    assert set(others.values()) <= {1}, others
    assert "Unresolved resources" not in operator.logs()  # kopf was never asked for the kind


def requests_about_gateway_api(cluster: Cluster, identity: Identity, since: float) -> list[str]:
    """Every request of ``identity`` under /apis/gateway.networking.k8s.io (audit log)."""
    return [
        f"{e['verb']} {e['requestURI']}"
        for e in cluster.audit_events(username=identity.username, since=since)
        if e["requestURI"].startswith(f"/apis/{HTTPROUTES.group}/")
    ]


def services_listed(cluster: Cluster, identity: Identity, namespace: str, since: float) -> bool:
    """kopf listed Services in ``namespace`` (the start of its watch): the operator never lists
    them itself (its caches read single objects)."""
    return any(
        e["verb"] == "list" and e.get("objectRef", {}).get("resource") == "services"
        for e in cluster.audit_events(username=identity.username, since=since)
        if e.get("objectRef", {}).get("namespace") == namespace
    )


def served(cluster: Cluster) -> set[str] | None:
    """The resources gateway.networking.k8s.io/v1 serves (discovery), None when not served."""
    custom = client.CustomObjectsApi(cluster.api_client())
    try:
        found = custom.get_api_resources(HTTPROUTES.group, HTTPROUTES.version)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {r.name for r in found.resources or [] if "/" not in r.name}


def require_audit_log(cluster: Cluster) -> None:
    if cluster.audit_log is None:
        pytest.skip(
            "these checks read the local API server's audit log (not with USE_EXISTING_CLUSTER=1)"
        )


def test_a_driver_not_enabled_is_never_watched_even_with_its_crd_installed(
    crd: Cluster, upstream_crds: list[UpstreamCRD]
) -> None:
    """The chart's default install: Service driver only, no RBAC on httproutes."""
    require_audit_log(crd)
    assert any(c.kind == "HTTPRoute" for c in upstream_crds)
    wait_for(lambda: HTTPROUTES.plural in (served(crd) or set()), 30, "httproutes served")
    release_ns, routes_ns = create_namespace(crd, "mr-system"), create_namespace(crd, "ai")
    with installed(crd, "mr-drivers", release_ns, {"watchNamespaces": [routes_ns]}) as release:
        args, env = operator_args(release), operator_env(release)
        assert "--routing-drivers=Service" in args
        rules = [r for role in release.objects if role["kind"] == "Role" for r in role["rules"]]
        assert not any(HTTPROUTES.plural in rule["resources"] for rule in rules)
        identity = crd.mint_service_account(
            release_ns, release.only("ServiceAccount")["metadata"]["name"]
        )
        started = time.time() - 1
        with (
            running_operator(identity, crd.workdir, extra_args=args, env=env) as operator,
            routes(crd, routes_ns) as sc,
        ):
            assert_driver_unavailable(sc, NOT_ENABLED)
            assert_alive_and_quiet(operator, expected_warnings=[])  # the driver was not enabled
            assert denied_requests(crd, identity, started) == []  # no 403, ever
            assert requests_about_gateway_api(crd, identity, started) == []
            assert services_listed(crd, identity, routes_ns, started)
            httproutes = client.CustomObjectsApi(crd.api_client()).list_namespaced_custom_object(
                HTTPROUTES.group, HTTPROUTES.version, routes_ns, HTTPROUTES.plural
            )
            assert httproutes["items"] == []


@contextlib.contextmanager
def without_httproute_crd(cluster: Cluster) -> Iterator[None]:
    """The HTTPRoute CRD absent for the block; put back as it was if it was installed."""
    api = client.ApiextensionsV1Api(cluster.api_client())
    crds = DynamicClient(cluster.api_client()).resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    try:
        saved = crds.get(name=HTTPROUTE_CRD).to_dict()  # as stored, no field dropped
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        saved = None
    if saved is not None:
        if not cluster.is_local:
            pytest.skip(f"would delete {HTTPROUTE_CRD} of an existing cluster")
        api.delete_custom_resource_definition(HTTPROUTE_CRD)
    wait_for(lambda: HTTPROUTES.plural not in (served(cluster) or set()), 60, "httproutes gone")
    try:
        yield
    finally:
        if saved is not None:
            kept = ("apiVersion", "kind", "spec")  # metadata: only what a fresh create takes
            body = {k: copy.deepcopy(saved[k]) for k in kept}
            meta = saved["metadata"].items()
            body["metadata"] = {k: v for k, v in meta if k in ("name", "labels", "annotations")}
            install_crd_body(cluster, body, 60)
            wait_for(lambda: HTTPROUTES.plural in (served(cluster) or set()), 60, "httproutes back")


def test_an_enabled_driver_without_its_crd_is_unavailable_and_never_watched(
    crd: Cluster, namespace: str, operator_identity: Identity
) -> None:
    require_audit_log(crd)
    with without_httproute_crd(crd):
        started = time.time() - 1
        with (
            running_operator(
                operator_identity,
                crd.workdir,
                namespaces=[namespace],
                extra_args=["--routing-drivers", "Service,HTTPRoute"],
            ) as operator,
            routes(crd, namespace) as sc,
        ):
            assert_driver_unavailable(sc, NOT_INSTALLED)
            message = ready(sc, "chat-gw")["message"]
            assert "restart the operator (kinds are resolved once at start-up" in message
            # Said once at start-up, with the reason; otherwise only chat-gw's Warning Event.
            assert_alive_and_quiet(
                operator, expected_warnings=[f"routing driver HTTPRoute unavailable: {message}"]
            )
            # Discovery asked for the group/version once; nothing listed or watched in it.
            asked = requests_about_gateway_api(crd, operator_identity, started)
            assert asked == [f"get /apis/{HTTPROUTES.api_version}"], asked
            assert services_listed(crd, operator_identity, namespace, started)
