"""Issue 13, scenario 8: bad input, each kind rejected with the field named, nothing disturbed.

Two ways a bad ModelRoute is stopped, both through the real API server:

- the CRD's OpenAPI schema rejects it at admission (HTTP 422 naming the field): nothing is
  stored, the operator never sees it;
- the schema accepts it but the operator cannot work with it: ``Ready=False``, reason
  ``InvalidSpec``, the message naming the field, and the route is neither probed nor routed.

Meanwhile a good route in the same namespace stays routed and Ready, and the operator keeps
running.  The kinds are listed in docs/reliability.md ("Bad input").
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.harness.apiserver import Cluster, Identity
from tests.harness.kube import GROUP, PLURAL, VERSION, wait_for
from tests.harness.operator import running_operator
from tests.harness.scenario import canonical_route, canonical_scenario

pytestmark = pytest.mark.apiserver

Route = dict[str, Any]
Mutation = Callable[[Route], None]


def _backend(index: int, **changes: Any) -> Mutation:
    def mutate(route: Route) -> None:
        route["spec"]["backends"][index].update(changes)

    return mutate


def _spec(path: str, value: Any) -> Mutation:
    def mutate(route: Route) -> None:
        *parents, last = path.split(".")
        node = route["spec"]
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def _too_many_backends(route: Route) -> None:
    template = route["spec"]["backends"][1]
    route["spec"]["backends"] = [template | {"name": f"b{i}"} for i in range(17)]


def _misspelt_backends(route: Route) -> None:
    route["spec"]["backend"] = route["spec"].pop("backends")


# (id, change, field the API server names, words of its message)
SCHEMA_KINDS: list[tuple[str, Mutation, str, str]] = [
    ("no-backends", _spec("backends", []), "spec.backends", "should have at least 1 items"),
    ("17-backends", _too_many_backends, "spec.backends", "should have at most 16 items"),
    ("misspelt-backends", _misspelt_backends, "spec.backends", "Required value"),
    ("name-not-dns-label", _backend(0, name="Vendor_1"), "spec.backends.name", "should match"),
    ("negative-priority", _backend(0, priority=-1), "spec.backends.priority", "greater than"),
    ("missing-model", lambda r: r["spec"]["backends"][0].pop("model"), "model", "Required value"),
    ("empty-model", _backend(0, model=""), "spec.backends.model", "at least 1 chars"),
    (
        "port-out-of-range",
        _backend(0, serviceRef={"name": "vendor-egress", "port": 70000}),
        "spec.backends.serviceRef.port",
        "less than or equal to 65535",
    ),
    (
        "endpoint-not-http-url",
        _backend(0, endpoint="ftp://vendor.example.com"),
        "spec.backends.endpoint",
        "should match",
    ),
    (
        "unknown-provider",
        _backend(0, provider="Gemini"),
        "spec.backends.provider",
        "supported values",
    ),
    (
        "auth-header-with-space",
        _backend(0, authSecretRef={"name": "vendor-key", "key": "apiKey", "header": "X Api Key"}),
        "spec.backends.authSecretRef.header",
        "should match",
    ),
    ("unknown-probe-type", _spec("probe.type", "Ping"), "spec.probe.type", "supported values"),
    ("zero-interval", _spec("probe.intervalSeconds", 0), "spec.probe.intervalSeconds", "greater"),
    (
        "timeout-as-text",
        _spec("probe.timeoutSeconds", "2s"),
        "spec.probe.timeoutSeconds",
        "integer",
    ),
    (
        "unknown-failback-mode",
        _spec("failback.mode", "Sometimes"),
        "spec.failback.mode",
        "supported",
    ),
    (
        "stabilization-over-a-day",
        _spec("failback.stabilizationSeconds", 86_401),
        "spec.failback.stabilizationSeconds",
        "less than or equal to 86400",
    ),
    ("unknown-driver", _spec("routing.driver", "Istio"), "spec.routing.driver", "supported values"),
    (
        "service-name-uppercase",
        _spec("service.name", "Chat-LLM"),
        "spec.service.name",
        "should match",
    ),
    (
        "ca-bundle-empty-name",
        _backend(0, caBundleSecretRef={"name": ""}),
        "spec.backends.caBundleSecretRef.name",
        "at least 1 chars",
    ),
    (
        "ca-bundle-without-name",
        _backend(0, caBundleSecretRef={"key": "ca.crt"}),
        "spec.backends.caBundleSecretRef.name",
        "Required value",
    ),
]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [kind[1:] for kind in SCHEMA_KINDS],
    ids=[kind[0] for kind in SCHEMA_KINDS],
)
def test_the_schema_rejects_it_naming_the_field(
    crd: Cluster, namespace: str, change: Mutation, field: str, words: str
) -> None:
    route = canonical_route(namespace, "http://127.0.0.1:9", "http://127.0.0.1:9")
    change(route)
    custom = client.CustomObjectsApi(crd.api_client())
    with pytest.raises(client.ApiException) as raised:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, route)
    assert raised.value.status == 422
    message = json.loads(raised.value.body)["message"]
    print(f"\nFIGURE schema: {message}")
    assert field in message and words in message, message
    # Nothing was stored.
    assert custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"] == []


def _drop_service_ref(route: Route) -> None:
    del route["spec"]["backends"][0]["serviceRef"]


def _route_to_itself(route: Route) -> None:
    route["spec"]["backends"][0]["serviceRef"]["name"] = route["spec"]["service"]["name"]


def _drop_service(route: Route) -> None:
    del route["spec"]["service"]


# (route name, change, words of the InvalidSpec message, field included)
INVALID_SPEC_KINDS: list[tuple[str, Mutation, str]] = [
    ("duplicate-names", _backend(1, name="vendor"), "spec.backends[1].name: duplicate"),
    (
        "no-service-ref",
        _drop_service_ref,
        "spec.backends[0].serviceRef: required by the Service routing driver",
    ),
    ("no-service", _drop_service, "spec.service: required by the Service routing driver"),
    (
        "routes-to-itself",
        _route_to_itself,
        "spec.backends[0].serviceRef.name: must differ from spec.service.name",
    ),
    ("steps-decrease", _spec("failback.steps", [50, 10]), "spec.failback.steps: must increase"),
    (
        "steps-on-service-driver",
        _spec("failback.steps", [10, 50]),
        "spec.failback.steps: the Service routing driver cannot split traffic",
    ),
]


def test_invalid_specs_are_reported_naming_the_field_and_disturb_nothing(
    crd: Cluster, namespace: str, operator_identity: Identity
) -> None:
    fast = {"intervalSeconds": 1, "timeoutSeconds": 1}
    with (
        canonical_scenario(crd, namespace, **fast) as good,
        running_operator(operator_identity, crd.workdir, [namespace]) as operator,
    ):
        wait_for(lambda: good.routed_to() == "vendor-egress", 15, "the good route routed")
        for name, change, _words in INVALID_SPEC_KINDS:
            route = copy.deepcopy(good.route)
            route["metadata"] = {"name": name, "namespace": namespace}
            route["spec"]["service"] = {"name": f"{name}-svc", "port": 80}
            change(route)
            good.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, route)
        for name, _change, words in INVALID_SPEC_KINDS:
            ready = wait_for(lambda n=name: _ready(good, n), 15, f"{name}: Ready condition")
            print(f"\nFIGURE InvalidSpec {name}: {ready['message']}")
            assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
            assert words in ready["message"], ready["message"]
            assert (
                good.core.list_namespaced_service(
                    namespace, field_selector=f"metadata.name={name}-svc"
                ).items
                == []
            )
        # The good route never noticed; the operator is still running.
        assert good.routed_to() == "vendor-egress"
        assert (good.condition("Ready") or {}).get("status") == "True"
        assert operator.returncode is None


def _ready(sc: Any, name: str) -> dict[str, Any] | None:
    route = sc.custom.get_namespaced_custom_object(GROUP, VERSION, sc.namespace, PLURAL, name)
    for cond in (route.get("status") or {}).get("conditions", []):
        if cond["type"] == "Ready":
            return dict(cond)
    return None
