"""The test API server behaves like a real one where we depend on it (issue: "" is not null).

The 1.20 kube-apiserver built with Go >= 1.19 took an empty string inside a custom resource for
null; hack/envtest-assets.sh patches the vendored validator back. These tests keep it honest:
``""`` round-trips, ``default: ""`` is accepted, and every upstream CRD we write objects for
installs, accepts a valid object and rejects an invalid one with 422.
"""

from __future__ import annotations

import copy
import re
import secrets
from typing import Any

import pytest
from kubernetes import client

from tests.envtest.conftest import FAST_PROBE
from tests.harness.apiserver import Cluster
from tests.harness.kube import install_crd_body, wait_for
from tests.harness.operator import OperatorProcess
from tests.harness.scenario import VENDOR_KEY, canonical_scenario
from tests.harness.upstream import UpstreamCRD

GROUP = "fidelity.modelroute.dev"
_STRING = {"type": "string"}


def _fidelity_crd() -> dict[str, Any]:
    spec_schema = {
        "type": "object",
        "properties": {
            "s": _STRING,
            "nested": {"type": "object", "properties": {"t": _STRING}},
            "list": {"type": "array", "items": _STRING},
            "defaulted": {**_STRING, "default": ""},
            "required": _STRING,
        },
        "required": ["required"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"samples.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "samples", "singular": "sample", "kind": "Sample"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec_schema},
                        }
                    },
                }
            ],
        },
    }


def test_empty_strings_round_trip_in_a_custom_resource(crd: Cluster, namespace: str) -> None:
    # A CRD with `default: ""` is accepted (it was rejected as "null" before the patch).
    install_crd_body(crd, _fidelity_crd())
    api = client.CustomObjectsApi(crd.api_client())
    spec = {"s": "", "nested": {"t": ""}, "list": ["", "x"], "required": ""}
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Sample", "metadata": {"name": "empty"}}
    api.create_namespaced_custom_object(GROUP, "v1", namespace, "samples", {**body, "spec": spec})

    stored = api.get_namespaced_custom_object(GROUP, "v1", namespace, "samples", "empty")

    assert stored["spec"] == {**spec, "defaulted": ""}


def test_null_is_still_rejected_where_a_string_is_required(crd: Cluster, namespace: str) -> None:
    # The patch makes "" a string again; it must not make a real null one.
    install_crd_body(crd, _fidelity_crd())
    api = client.CustomObjectsApi(crd.api_client())
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Sample",
        "metadata": {"name": "null"},
        "spec": {"required": 5},
    }
    with pytest.raises(client.ApiException) as raised:
        api.create_namespaced_custom_object(GROUP, "v1", namespace, "samples", body)
    assert raised.value.status == 422
    assert "spec.required" in str(raised.value.body)


def test_an_empty_auth_prefix_is_stored_and_the_probe_sends_the_bare_key(
    crd: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    with canonical_scenario(crd, namespace, create_route=False, **FAST_PROBE) as sc:
        # The in-house fake accepts any header; it records what the probe sent.
        sc.route["spec"]["backends"][1]["authSecretRef"] = {
            "name": "vendor-key",
            "key": "apiKey",
            "header": "X-Api-Key",
            "prefix": "",
        }
        sc.create_route()

        stored = sc.get_route()["spec"]["backends"][1]["authSecretRef"]
        assert stored["prefix"] == ""
        inhouse = sc.inhouse.backend
        assert inhouse is not None
        wait_for(
            lambda: inhouse.last_headers.get("X-Api-Key") == VENDOR_KEY,
            15,
            "a probe carrying the bare key",
        )
        wait_for(lambda: sc.routed_to() == "vendor-egress", 15, "routing")


# One valid and one invalid object per upstream kind. The invalid one breaks an OpenAPI rule
# (not a CEL rule, which the 1.20 server ignores); the field named must appear in the 422.
_VALID: dict[str, dict[str, Any]] = {
    "GatewayClass": {"controllerName": "example.com/gateway-controller"},
    "Gateway": {
        "gatewayClassName": "eg",
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
    },
    "HTTPRoute": {
        "parentRefs": [{"name": "ai-gateway", "namespace": "gateway-system"}],
        "hostnames": ["llm.ai.example.com"],
        "rules": [
            {
                "name": "chat",
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [
                    {
                        "group": "gateway.envoyproxy.io",
                        "kind": "Backend",
                        "name": "openai",
                        "port": 443,
                        "weight": 100,
                    },
                    {
                        "group": "inference.networking.k8s.io",
                        "kind": "InferencePool",
                        "name": "llama-pool",
                        "weight": 0,
                    },
                ],
            }
        ],
    },
    "GRPCRoute": {"rules": [{"backendRefs": [{"name": "grpc", "port": 9000, "weight": 1}]}]},
    "ReferenceGrant": {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "ai"}],
        "to": [{"group": "", "kind": "Service"}],
    },
    "BackendTLSPolicy": {
        "targetRefs": [{"group": "", "kind": "Service", "name": "vendor-egress"}],
        "validation": {"hostname": "api.openai.com", "wellKnownCACertificates": "System"},
    },
    "InferencePool": {
        "selector": {"matchLabels": {"app": "llama-vllm"}},
        "targetPorts": [{"number": 8000}],
        "endpointPickerRef": {"name": "llama-epp", "port": {"number": 9002}},
    },
    "Backend": {"endpoints": [{"fqdn": {"hostname": "api.openai.com", "port": 443}}]},
    "BackendTrafficPolicy": {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "c"}],
        "loadBalancer": {"type": "RoundRobin"},
    },
    "AIGatewayRoute": {
        "parentRefs": [{"name": "ai-gateway", "namespace": "gateway-system"}],
        "rules": [
            {
                "matches": [
                    {"headers": [{"type": "Exact", "name": "x-ai-eg-model", "value": "gpt-4o"}]}
                ],
                "backendRefs": [
                    {"name": "openai", "priority": 0},
                    {"name": "anthropic", "priority": 1, "modelNameOverride": "claude-sonnet-4-5"},
                ],
            }
        ],
    },
    "AIServiceBackend": {
        "schema": {"name": "Anthropic"},
        "backendRef": {"name": "anthropic", "kind": "Backend", "group": "gateway.envoyproxy.io"},
    },
    "BackendSecurityPolicy": {
        "type": "AnthropicAPIKey",
        "anthropicAPIKey": {"secretRef": {"name": "anthropic-key"}},
        "targetRefs": [
            {"group": "aigateway.envoyproxy.io", "kind": "AIServiceBackend", "name": "anthropic"}
        ],
    },
}

# kind -> (dotted path into spec, bad value, field the 422 must name). 1.20 names list items
# without their index (spec.rules.backendRefs.weight), newer servers with it: indices are
# dropped from the answer before comparing.
_INVALID: dict[str, tuple[str, Any, str]] = {
    "GatewayClass": ("controllerName", None, "spec.controllerName"),
    "Gateway": ("listeners.0.port", 0, "spec.listeners.port"),
    "HTTPRoute": ("rules.0.backendRefs.0.weight", -1, "spec.rules.backendRefs.weight"),
    "GRPCRoute": ("rules.0.backendRefs.0.weight", -1, "spec.rules.backendRefs.weight"),
    "ReferenceGrant": ("from", [], "spec.from"),
    "BackendTLSPolicy": ("targetRefs", [], "spec.targetRefs"),
    "InferencePool": ("targetPorts.0.number", 0, "spec.targetPorts.number"),
    "Backend": ("endpoints.0.fqdn.port", 70000, "spec.endpoints.fqdn.port"),
    "BackendTrafficPolicy": ("loadBalancer.type", "Bogus", "spec.loadBalancer.type"),
    "AIGatewayRoute": ("rules.0.backendRefs.0.name", "", "spec.rules.backendRefs.name"),
    "AIServiceBackend": ("schema.name", "Bogus", "spec.schema.name"),
    "BackendSecurityPolicy": ("type", "Bogus", "spec.type"),
}


def _with(spec: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``spec`` with ``dotted`` set to ``value`` (``None`` removes the field)."""
    result = copy.deepcopy(spec)
    *parents, last = dotted.split(".")
    node: Any = result
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return result


def _create(
    cluster: Cluster, upstream: UpstreamCRD, namespace: str, spec: dict[str, Any]
) -> dict[str, Any]:
    api = client.CustomObjectsApi(cluster.api_client())
    version = upstream.storage_version
    body = {
        "apiVersion": f"{upstream.group}/{version}",
        "kind": upstream.kind,
        "metadata": {"name": f"x-{secrets.token_hex(3)}"},
        "spec": spec,
    }
    args = (upstream.group, version, upstream.plural)
    if upstream.body["spec"]["scope"] == "Cluster":
        created: dict[str, Any] = api.create_cluster_custom_object(*args, body)
        api.delete_cluster_custom_object(*args, body["metadata"]["name"])
    else:
        created = api.create_namespaced_custom_object(args[0], args[1], namespace, args[2], body)
    return created


def test_every_upstream_kind_has_a_valid_and_an_invalid_object(
    upstream_crds: list[UpstreamCRD],
) -> None:
    kinds = {crd.kind for crd in upstream_crds}
    assert kinds == set(_VALID) == set(_INVALID)


@pytest.mark.parametrize("kind", sorted(_VALID))
def test_upstream_crd_accepts_a_valid_object_and_rejects_an_invalid_one(
    crd: Cluster, upstream_crds: list[UpstreamCRD], namespace: str, kind: str
) -> None:
    upstream = next((c for c in upstream_crds if c.kind == kind), None)
    assert upstream is not None, f"no upstream CRD defines {kind}"
    created = _create(crd, upstream, namespace, _VALID[kind])
    assert created["kind"] == kind

    path, value, field = _INVALID[kind]
    with pytest.raises(client.ApiException) as raised:
        _create(crd, upstream, namespace, _with(_VALID[kind], path, value))
    assert raised.value.status == 422, raised.value.body
    assert field in re.sub(r"\[\d+\]", "", str(raised.value.body)), raised.value.body
