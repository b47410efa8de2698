"""Ready to ship: the license, the version in step everywhere, and the changelog.

The LICENSE file is the Apache License 2.0 exactly as apache.org publishes it (LICENSE-2.0.txt),
and every place that declares a license says Apache-2.0. The version in pyproject.toml is the one
source: the installed package, the chart's appVersion (hence the default image tag), the image's
version label and the changelog's latest release follow it.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from importlib import metadata
from typing import Any

import yaml

from modelroute.version import DISTRIBUTION, version
from tests.harness.apiserver import REPO_ROOT
from tests.harness.helm import CHART_DIR, find, render

LICENSE = REPO_ROOT / "LICENSE"
# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt (202 lines, with the appendix).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
SPDX = "Apache-2.0"
PYPROJECT: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]
CHART: dict[str, Any] = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
CHANGELOG = (REPO_ROOT / "CHANGELOG.md").read_text()


def dockerfile_labels() -> dict[str, str]:
    """The final stage's LABEL key="value" pairs (line continuations joined)."""
    final = DOCKERFILE.replace("\\\n", " ").split("\nFROM ")[-1]
    labels: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("LABEL "):
            labels.update(re.findall(r'(\S+)="([^"]*)"', line))
    return labels


# --- license ---------------------------------------------------------------------------------


def test_license_is_the_apache_2_text_unmodified() -> None:
    text = LICENSE.read_text()
    lines = text.splitlines()
    assert lines[1].strip() == "Apache License"
    assert lines[2].strip() == "Version 2.0, January 2004"
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    assert lines[-1].strip() == "limitations under the License."
    # Every clause, byte for byte: the canonical file's digest.
    assert hashlib.sha256(LICENSE.read_bytes()).hexdigest() == APACHE_2_SHA256


def test_pyproject_declares_apache_2() -> None:
    assert PYPROJECT["project"]["license"] == {"text": SPDX}


def test_installed_metadata_declares_apache_2() -> None:
    meta = metadata.metadata(DISTRIBUTION)
    declared = {meta.get("License"), meta.get("License-Expression")} - {None}
    assert declared == {SPDX}


def test_chart_declares_apache_2() -> None:
    assert CHART["annotations"]["artifacthub.io/license"] == SPDX


def test_image_declares_apache_2() -> None:
    assert dockerfile_labels()["org.opencontainers.image.licenses"] == SPDX


# --- version ---------------------------------------------------------------------------------


def test_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION), VERSION


def test_the_operator_reports_the_pyproject_version() -> None:
    assert version() == VERSION
    assert metadata.version(DISTRIBUTION) == VERSION, "stale install: run `make install`"


def test_chart_app_version_is_the_package_version() -> None:
    assert CHART["appVersion"] == VERSION, (
        "charts/modelroute-operator/Chart.yaml appVersion must be pyproject.toml's version "
        "(and bump the chart's own version with it)"
    )


def test_default_image_tag_follows_app_version() -> None:
    # values.yaml leaves image.tag empty: the chart's appVersion is the tag.
    (deployment,) = find(render(), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].rpartition(":")[2] == CHART["appVersion"] == VERSION


def test_image_version_label_is_the_package_version() -> None:
    assert dockerfile_labels()["org.opencontainers.image.version"] == VERSION


# --- changelog -------------------------------------------------------------------------------


def changelog_versions() -> list[str]:
    return re.findall(r"^## \[([^\]]+)\]", CHANGELOG, flags=re.MULTILINE)


def test_changelog_follows_keep_a_changelog() -> None:
    assert CHANGELOG.startswith("# Changelog\n")
    assert "https://keepachangelog.com/" in CHANGELOG
    versions = changelog_versions()
    assert versions[0] == "Unreleased"
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in versions[1:]), versions
    kinds = set(re.findall(r"^### (.+)$", CHANGELOG, flags=re.MULTILINE))
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds


def test_changelog_has_the_current_version() -> None:
    # The latest release in the changelog is the version the package and chart carry.
    assert changelog_versions()[1] == VERSION
