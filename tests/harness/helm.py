"""The chart through the real Helm v4 engine (``helm-python-sdk``, imported as ``helm_python``).

Offline: lint, schema validation and rendering. Against the test cluster: install and uninstall
releases, with Helm's own discovery of the API server (so ``.Capabilities`` are the cluster's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import helm_python as helm
import yaml

from tests.harness.apiserver import REPO_ROOT, Cluster

CHART_DIR = REPO_ROOT / "charts" / "modelroute-operator"
NOTES = "templates/NOTES.txt"
WARNING = 2  # helm lint severities: 0 unknown, 1 info, 2 warning, 3 error


def objects(manifest: str) -> list[dict[str, Any]]:
    """The Kubernetes objects in a multi-document YAML manifest (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "mr",
    namespace: str = "modelroute-system",
) -> list[dict[str, Any]]:
    """Render the chart offline (Helm's default capabilities) and return its objects."""
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith(NOTES):
            docs += objects(text)
    return docs


def notes(values: dict[str, Any] | None = None, *, release: str = "mr") -> str:
    """The rendered NOTES.txt."""
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(values, name=release, namespace="modelroute-system")
    return next(text for path, text in rendered.items() if path.endswith(NOTES))


def validate(values: dict[str, Any]) -> None:
    """Validate values against values.schema.json with Helm's validator (HelmValuesError)."""
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(values)


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """``helm lint --strict`` of the chart with ``values``."""
    return helm.lint(CHART_DIR, values, strict=True)


def chart_crds() -> list[dict[str, Any]]:
    """The CRDs Helm finds in the chart's crds/ folder."""
    with helm.Chart.load(CHART_DIR) as chart:
        return [doc for entry in chart.crds for doc in objects(entry["data"])]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """The objects of ``kind`` (and ``name``) among ``docs``."""
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


@dataclass
class Release:
    """An installed release: its name, namespace and the objects Helm created."""

    name: str
    namespace: str
    objects: list[dict[str, Any]]

    def only(self, kind: str) -> dict[str, Any]:
        """The single object of ``kind``."""
        found = find(self.objects, kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]


@contextlib.contextmanager
def installed(
    cluster: Cluster, release: str, namespace: str, values: dict[str, Any] | None = None
) -> Iterator[Release]:
    """``helm install`` (CRDs from crds/ first, no waiting) for the block, uninstalled after."""
    with helm.Config(kubeconfig_path=str(cluster.kubeconfig), namespace=namespace) as config:
        result = config.install(CHART_DIR, release, values, namespace=namespace)
        assert result["status"] == "deployed", result
        try:
            yield Release(release, namespace, objects(result.get("manifest", "")))
        finally:
            config.uninstall(release)
