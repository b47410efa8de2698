"""hack/envtest-assets.sh: the deb-src line follows the machine's apt sources; caches are stamped.

The script is sourced (it builds nothing then) and its functions are called on fixture files.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "envtest-assets.sh"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _call(function: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}" && {function}'],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def _apt_etc(tmp_path: Path, files: dict[str, str]) -> dict[str, str]:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (etc / name).write_text(text)
    return {"MODELROUTE_APT_ETC": str(etc)}


def test_deb822_sources_give_the_main_archive_not_updates_or_security(tmp_path: Path) -> None:
    env = _apt_etc(
        tmp_path,
        {
            "sources.list.d/debian.sources": (
                "Types: deb\n"
                "URIs: http://deb.debian.org/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n\n"
                "Types: deb\n# a comment inside the stanza\n"
                "URIs: http://mirror.example.internal/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
                f"Signed-By: {KEYRING}\n"
            ),
        },
    )
    proc = _call("deb_src_line", env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"deb-src [signed-by={KEYRING}] http://mirror.example.internal/debian bookworm main"
    )


def test_one_line_sources_and_disabled_stanzas(tmp_path: Path) -> None:
    env = _apt_etc(
        tmp_path,
        {
            "sources.list": (
                "# deb http://commented.example/debian bookworm main\n"
                "deb [arch=amd64] http://proxy.example:3142/debian bookworm main contrib\n"
            ),
            "sources.list.d/off.sources": (
                "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\n"
                "Components: main\nEnabled: no\n"
            ),
        },
    )
    proc = _call("apt_source_entries", env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["http://proxy.example:3142/debian bookworm -"]
    line = _call("deb_src_line", env).stdout.strip()
    assert line == f"deb-src [signed-by={KEYRING}] http://proxy.example:3142/debian bookworm main"


def test_a_newer_release_mirror_still_serves_the_bookworm_source(tmp_path: Path) -> None:
    env = _apt_etc(tmp_path, {"sources.list": "deb http://mirror.example/debian trixie main\n"})
    line = _call("deb_src_line", env).stdout.strip()
    assert line.endswith(" http://mirror.example/debian bookworm main")


def test_no_debian_source_is_a_clear_error(tmp_path: Path) -> None:
    env = _apt_etc(tmp_path, {"sources.list": "deb https://packages.example.com/apt stable main\n"})
    proc = _call("deb_src_line", env)
    assert proc.returncode != 0
    assert "MODELROUTE_DEB_SRC_URI" in proc.stderr


def test_an_explicit_mirror_wins(tmp_path: Path) -> None:
    env = {**_apt_etc(tmp_path, {}), "MODELROUTE_DEB_SRC_URI": "http://override.example/debian"}
    line = _call("deb_src_line", env).stdout.strip()
    assert line == f"deb-src [signed-by={KEYRING}] http://override.example/debian bookworm main"


def _fake_assets(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "assets" / "bin"
    bin_dir.mkdir(parents=True)
    for name, version in (("etcd", "etcd Version: 3.4.23"), ("kube-apiserver", "v1.20.2")):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho 'Kubernetes {version}'\n")
        tool.chmod(0o755)
    return {"MODELROUTE_ASSETS_DIR": str(tmp_path / "assets")}


@pytest.mark.parametrize("stamp", [None, "1"])
def test_a_cache_from_another_build_recipe_is_rebuilt(tmp_path: Path, stamp: str | None) -> None:
    env = _fake_assets(tmp_path)
    if stamp is not None:
        (tmp_path / "assets" / "recipe").write_text(stamp + "\n")
    assert _call("assets_ok", env).returncode != 0


def test_a_cache_of_this_recipe_is_reused(tmp_path: Path) -> None:
    env = _fake_assets(tmp_path)
    recipe = _call('echo "$RECIPE_VERSION"', env).stdout.strip()
    assert recipe
    (tmp_path / "assets" / "recipe").write_text(recipe + "\n")
    assert _call("assets_ok", env).returncode == 0, "a matching stamp must reuse the cache"


def test_the_null_check_patch_fails_loudly_when_the_pattern_is_gone(tmp_path: Path) -> None:
    for rel in (
        "vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go",
        "vendor/github.com/go-openapi/validate/type.go",
    ):
        (tmp_path / rel).parent.mkdir(parents=True)
        (tmp_path / rel).write_text("if data == nil {\n")
    proc = _call(f'patch_null_check "{tmp_path}"', {})
    assert proc.returncode != 0
    assert "pattern not found" in proc.stderr


def test_the_null_check_patch_rewrites_both_validators(tmp_path: Path) -> None:
    original = (
        "\tif data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), "
        "reflect.ValueOf(data)) {\n"
    )
    rels = (
        "vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go",
        "vendor/github.com/go-openapi/validate/type.go",
    )
    for rel in rels:
        (tmp_path / rel).parent.mkdir(parents=True)
        (tmp_path / rel).write_text(original)
    proc = _call(f'patch_null_check "{tmp_path}"', {})
    assert proc.returncode == 0, proc.stderr
    for rel in rels:
        assert (tmp_path / rel).read_text() == "\tif data == nil {\n"
