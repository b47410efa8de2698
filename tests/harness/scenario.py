"""The canonical ModelRoute scenario on a cluster, with fake backends on loopback.

Shared by the end-to-end tests, the demo and the benchmarks: target Services with selectors,
the vendor's API key Secret, two fake OpenAI-compatible backends (the vendor requires the key),
and the canonical example with ``endpoint`` pointing the probes at the fakes.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from tests.fakes.openai_backend import FakeBackendThread
from tests.harness.apiserver import Cluster
from tests.harness.kube import GROUP, PLURAL, VERSION, load_example

VENDOR_KEY = "sk-test-vendor-9f8e7d6c5b4a"
SELECTORS = {"vendor-egress": {"app": "vendor-egress"}, "llama-vllm": {"app": "llama-vllm"}}


@dataclass
class Scenario:
    """Handles on everything the canonical scenario created."""

    cluster: Cluster
    namespace: str
    vendor: FakeBackendThread
    inhouse: FakeBackendThread
    route: dict[str, Any]

    @property
    def core(self) -> client.CoreV1Api:
        """CoreV1Api as admin."""
        return client.CoreV1Api(self.cluster.api_client())

    @property
    def custom(self) -> client.CustomObjectsApi:
        """CustomObjectsApi as admin."""
        return client.CustomObjectsApi(self.cluster.api_client())

    def create_route(self) -> None:
        """Create ``self.route`` on the cluster."""
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.route
        )

    def patch_route(self, patch: dict[str, Any]) -> None:
        """Merge-patch the route."""
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.route["metadata"]["name"], patch
        )

    def backend_status(self, name: str) -> dict[str, Any]:
        """status.backends[name] of the route ({} if absent)."""
        for entry in (self.get_route().get("status") or {}).get("backends", []):
            if entry["name"] == name:
                return dict(entry)
        return {}

    def get_route(self) -> dict[str, Any]:
        """The ModelRoute as stored."""
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.route["metadata"]["name"]
        )
        return got

    def stable_service(self) -> client.V1Service | None:
        """The operator's stable Service, or None."""
        try:
            return self.core.read_namespaced_service(
                self.route["spec"]["service"]["name"], self.namespace
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def routed_to(self) -> str | None:
        """Which target Service the stable Service's selector mirrors, if any."""
        svc = self.stable_service()
        if svc is None:
            return None
        for target, selector in SELECTORS.items():
            if svc.spec.selector == selector:
                return target
        return None

    def condition(self, ctype: str) -> dict[str, Any] | None:
        """One status condition of the route."""
        for cond in (self.get_route().get("status") or {}).get("conditions", []):
            if cond["type"] == ctype:
                return dict(cond)
        return None

    def events(self, reason: str | None = None) -> list[client.CoreV1Event]:
        """Events on the route, optionally of one reason."""
        items = self.core.list_namespaced_event(self.namespace).items
        name = self.route["metadata"]["name"]
        return [
            e
            for e in items
            if e.involved_object.name == name and (reason is None or e.reason == reason)
        ]


def canonical_route(
    namespace: str, vendor_url: str, inhouse_url: str, **probe: Any
) -> dict[str, Any]:
    """The canonical example in ``namespace`` with probe endpoints on the fakes."""
    route = copy.deepcopy(load_example())
    route["metadata"]["namespace"] = namespace
    route["spec"]["backends"][0]["endpoint"] = vendor_url
    route["spec"]["backends"][1]["endpoint"] = inhouse_url
    route["spec"]["probe"].update(probe)
    return route


def create_target_services(core: client.CoreV1Api, namespace: str) -> None:
    """vendor-egress:8080 and llama-vllm:8000, each with a selector (no Pods are needed)."""
    for name, port, target in (("vendor-egress", 8080, 8080), ("llama-vllm", 8000, "http")):
        core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1ServiceSpec(
                    selector=SELECTORS[name],
                    ports=[client.V1ServicePort(port=port, target_port=target, protocol="TCP")],
                ),
            ),
        )


def create_vendor_secret(core: client.CoreV1Api, namespace: str, key: str = VENDOR_KEY) -> None:
    """The vendor's API key Secret of the canonical example."""
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="vendor-key"),
            data={"apiKey": base64.b64encode(key.encode()).decode()},
        ),
    )


@contextmanager
def canonical_scenario(
    cluster: Cluster, namespace: str, *, create_route: bool = True, **probe: Any
) -> Iterator[Scenario]:
    """Fake backends, target Services, Secret and (optionally) the route; backends stop after."""
    with ExitStack() as stack:
        vendor = stack.enter_context(
            FakeBackendThread(("gpt-4o",), api_key=VENDOR_KEY, name="vendor")
        )
        inhouse = stack.enter_context(
            FakeBackendThread(("llama-3.1-70b-instruct",), name="inhouse")
        )
        core = client.CoreV1Api(cluster.api_client())
        create_target_services(core, namespace)
        create_vendor_secret(core, namespace)
        route = canonical_route(namespace, vendor.url, inhouse.url, **probe)
        scenario = Scenario(cluster, namespace, vendor, inhouse, route)
        if create_route:
            scenario.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, route
            )
        yield scenario
