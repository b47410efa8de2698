"""The CRDs other projects publish (Gateway API, Inference Extension, Envoy Gateway, AI Gateway).

They are read, unmodified, from ``MODELROUTE_EXTRA_CRDS`` (default: ``../shared/third_party``
beside the repository, when present) and never copied into this repository. Under ``CI=true`` a
missing directory is an error, so a test that needs them can never pass by skipping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness.apiserver import REPO_ROOT, Cluster
from tests.harness.kube import install_crd_body

DEFAULT_EXTRA_CRDS = REPO_ROOT.parent / "shared" / "third_party"
ENV_VAR = "MODELROUTE_EXTRA_CRDS"


class UpstreamCRDsMissing(RuntimeError):
    """The upstream CRD directory is not there (or holds no CRD)."""


@dataclass(frozen=True)
class UpstreamCRD:
    """One upstream CustomResourceDefinition and where it came from."""

    path: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        """The kind it defines, e.g. ``HTTPRoute``."""
        return str(self.body["spec"]["names"]["kind"])

    @property
    def group(self) -> str:
        """Its API group."""
        return str(self.body["spec"]["group"])

    @property
    def storage_version(self) -> str:
        """The version stored in etcd (the one tests create objects in)."""
        return next(v["name"] for v in self.body["spec"]["versions"] if v.get("storage"))

    @property
    def plural(self) -> str:
        """Its plural resource name."""
        return str(self.body["spec"]["names"]["plural"])


def extra_crds_dir() -> Path:
    """``$MODELROUTE_EXTRA_CRDS``, or ``../shared/third_party`` beside the repository."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured) if configured else DEFAULT_EXTRA_CRDS


def load_upstream_crds(directory: Path | None = None) -> list[UpstreamCRD]:
    """Every CustomResourceDefinition in the YAML files under ``directory``, sorted by path."""
    root = directory or extra_crds_dir()
    if not root.is_dir():
        raise UpstreamCRDsMissing(
            f"upstream CRD directory {root} does not exist "
            f"(set {ENV_VAR}, or put shared/third_party beside the repository)"
        )
    crds = []
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(UpstreamCRD(path, doc))
    if not crds:
        raise UpstreamCRDsMissing(f"no CustomResourceDefinition in any YAML file under {root}")
    return crds


def install_upstream_crds(cluster: Cluster, directory: Path | None = None) -> list[UpstreamCRD]:
    """Install every upstream CRD and wait until each is Established."""
    crds = load_upstream_crds(directory)
    for crd in crds:
        try:
            install_crd_body(cluster, crd.body)
        except Exception as exc:
            raise AssertionError(f"installing {crd.kind} from {crd.path} failed: {exc}") from exc
    return crds


def crds_required() -> bool:
    """True under CI, where a missing upstream CRD directory must fail, not skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
