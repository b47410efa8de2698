"""Shared fixtures: the real API server (session-wide), the CRD, a fresh namespace per test.

Tests under tests/envtest/ are marked ``apiserver``. They run against a local kube-apiserver +
etcd built by hack/envtest-assets.sh, or against ``$KUBECONFIG`` with USE_EXISTING_CLUSTER=1.
If the assets cannot be produced the tests error out with the reason; they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.apiserver import Cluster, Identity, running_cluster
from tests.harness.kube import create_namespace, install_crd
from tests.harness.upstream import (
    UpstreamCRD,
    UpstreamCRDsMissing,
    crds_required,
    install_upstream_crds,
    load_upstream_crds,
)

ENVTEST_DIR = Path(__file__).parent / "envtest"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/envtest/ as needing the API server."""
    for item in items:
        if ENVTEST_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.apiserver)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The real API server for the whole session, stopped even when tests fail."""
    with running_cluster() as running:
        yield running


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> Cluster:
    """The cluster with the ModelRoute CRD from crds/ installed and Established."""
    install_crd(cluster)
    return cluster


@pytest.fixture(scope="session")
def upstream_crds(crd: Cluster) -> list[UpstreamCRD]:
    """The upstream CRDs (Gateway API, AI Gateway, ...) installed and Established.

    Read from ``$MODELROUTE_EXTRA_CRDS`` or ``../shared/third_party``. Missing under ``CI=true``
    is a failure, never a green skip; elsewhere the test is skipped with the reason.
    """
    try:
        load_upstream_crds()
    except UpstreamCRDsMissing as exc:
        if crds_required():
            pytest.fail(f"{exc}; under CI=true tests that need upstream CRDs fail, never skip")
        pytest.skip(str(exc))
    return install_upstream_crds(crd)


@pytest.fixture
def namespace(crd: Cluster) -> str:
    """A fresh namespace for one test."""
    return create_namespace(crd)


@pytest.fixture(scope="session")
def operator_identity(crd: Cluster) -> Identity:
    """An identity of the operator's own, so the audit log tells its writes from the tests'.

    Cluster-admin here; the chart's least-privilege RBAC is tested with its ServiceAccount.
    """
    if crd.is_local:
        return crd.mint_user("modelroute-operator-test", ["system:masters"])
    return crd.admin
