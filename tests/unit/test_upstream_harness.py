"""tests/harness/upstream.py: where the upstream CRDs are read from, and what a missing one does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import upstream

_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, kind: Widget}
  versions:
    - {name: v1alpha1, served: true, storage: false}
    - {name: v1, served: true, storage: true}
"""


def test_every_crd_in_every_yaml_file_is_found(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.yaml").write_text("---\n" + _CRD + "---\nkind: ConfigMap\n---\n")
    (tmp_path / "LICENSE").write_text("Apache-2.0")
    crds = upstream.load_upstream_crds(tmp_path)
    assert [(c.kind, c.group, c.plural, c.storage_version) for c in crds] == [
        ("Widget", "example.com", "widgets", "v1")
    ]


def test_the_environment_variable_chooses_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(upstream.ENV_VAR, str(tmp_path))
    assert upstream.extra_crds_dir() == tmp_path
    monkeypatch.delenv(upstream.ENV_VAR)
    assert upstream.extra_crds_dir() == upstream.DEFAULT_EXTRA_CRDS


def test_a_missing_directory_or_one_without_crds_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(upstream.UpstreamCRDsMissing, match="does not exist"):
        upstream.load_upstream_crds(tmp_path / "absent")
    (tmp_path / "x.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(upstream.UpstreamCRDsMissing, match="no CustomResourceDefinition"):
        upstream.load_upstream_crds(tmp_path)


@pytest.mark.parametrize(("value", "required"), [("true", True), ("1", True), ("", False)])
def test_ci_requires_the_crds(monkeypatch: pytest.MonkeyPatch, value: str, required: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert upstream.crds_required() is required
