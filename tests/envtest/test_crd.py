"""The generated CRD on a real API server: the canonical example is accepted, bad input is not."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client

from tests.harness.apiserver import Cluster
from tests.harness.kube import GROUP, PLURAL, VERSION, load_example


def _create(cluster: Cluster, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    api = client.CustomObjectsApi(cluster.api_client())
    body = copy.deepcopy(body)
    body["metadata"]["namespace"] = namespace
    created: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


def test_canonical_example_is_accepted_with_defaults(crd: Cluster, namespace: str) -> None:
    created = _create(crd, namespace, load_example())
    # header and prefix default by provider in the operator (OpenAI: "Authorization: Bearer"),
    # so the schema leaves them unset; the provider itself defaults to OpenAI.
    assert created["spec"]["backends"][0]["authSecretRef"] == {
        "name": "vendor-key",
        "key": "apiKey",
    }
    assert created["spec"]["backends"][0]["provider"] == "OpenAI"
    assert created["spec"]["probe"]["type"] == "OpenAIModels"
    assert created["spec"]["failback"] == {
        "mode": "Automatic",
        "stabilizationSeconds": 60,
        "stepSeconds": 30,
    }


def test_short_name_and_printer_columns_are_served(crd: Cluster) -> None:
    api = client.ApiextensionsV1Api(crd.api_client())
    crd_obj = api.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    assert crd_obj.spec.names.short_names == ["mroute"]
    columns = [c.name for c in crd_obj.spec.versions[0].additional_printer_columns]
    assert columns[:3] == ["Active", "Ready", "Healthy"]
    assert "Age" in columns


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.update(backends=[]), "spec.backends"),
        (lambda s: s["backends"][0].update(priority=-1), "spec.backends.priority"),
        (lambda s: s["backends"][0].update(name="Not_A_Label"), "spec.backends.name"),
        (lambda s: s["service"].update(port=70000), "spec.service.port"),
        (lambda s: s["probe"].update(type="Ping"), "spec.probe.type"),
        (lambda s: s["backends"][0].update(provider="Gemini"), "spec.backends.provider"),
    ],
    ids=[
        "empty-backends",
        "negative-priority",
        "bad-name",
        "port-range",
        "probe-enum",
        "provider-enum",
    ],
)
def test_invalid_specs_are_rejected_with_422(
    crd: Cluster, namespace: str, mutate: Any, field: str
) -> None:
    body = load_example()
    mutate(body["spec"])
    with pytest.raises(client.ApiException) as excinfo:
        _create(crd, namespace, body)
    assert excinfo.value.status == 422
    assert field in excinfo.value.body
    listed = client.CustomObjectsApi(crd.api_client()).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )
    assert listed["items"] == []
