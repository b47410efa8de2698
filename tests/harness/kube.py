"""Small synchronous helpers over the kubernetes client for tests, the demo and benchmarks."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client

from tests.harness.apiserver import REPO_ROOT, Cluster
from tests.harness.bounds import within

CRD_FILE = REPO_ROOT / "crds" / "modelroute.dev_modelroutes.yaml"
GROUP, VERSION, PLURAL = "modelroute.dev", "v1alpha1", "modelroutes"
T = TypeVar("T")


def install_crd(cluster: Cluster, path: Path = CRD_FILE, timeout: float = 30.0) -> None:
    """Create or update the CRD in ``path`` and wait until it is Established."""
    install_crd_body(cluster, yaml.safe_load(path.read_text()), timeout)


def install_crd_body(cluster: Cluster, body: dict[str, Any], timeout: float = 30.0) -> None:
    """Create or update one CustomResourceDefinition and wait until it is Established."""
    api = client.ApiextensionsV1Api(cluster.api_client())
    name = body["metadata"]["name"]
    try:
        current = api.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        api.replace_custom_resource_definition(name, body)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        api.create_custom_resource_definition(body)

    def established() -> bool:
        crd = api.read_custom_resource_definition(name)
        conditions = crd.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, timeout, f"CRD {name} Established")


def create_namespace(cluster: Cluster, prefix: str = "t") -> str:
    """A new namespace with a unique name (namespaces are never reused between tests)."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    api = client.CoreV1Api(cluster.api_client())
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` on timeout.

    ``timeout`` gets CI slack in ``make test`` (tests/harness/bounds.py): a ceiling that only
    guards a hang must not fail a loaded 2-core CI machine; ``make faults`` keeps it exact."""
    timeout = within(timeout)
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)
        last = predicate()
    return last


def load_example(name: str = "chat.yaml") -> dict[str, Any]:
    """A manifest from examples/ as a dict."""
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / name).read_text())
    return loaded
