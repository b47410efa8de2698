"""hack/prometheus-assets.sh: a stamped cache is reused as is; anything else is fetched again.

The script is sourced (it fetches nothing then) and its functions run on a fake cache.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.harness.prometheus import ASSETS_SCRIPT


def _call(command: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELROUTE_PROMETHEUS_DIR": str(cache)}
    return subprocess.run(
        ["bash", "-c", f'source "{ASSETS_SCRIPT}" && {command}'],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def _fake_cache(tmp_path: Path, stamp: str | None) -> Path:
    cache = tmp_path / "prometheus"
    (cache / "bin").mkdir(parents=True)
    for name in ("promtool", "prometheus"):
        tool = cache / "bin" / name
        tool.write_text(f"#!/bin/sh\necho '{name}, version 2.42.0+ds'\n")
        tool.chmod(0o755)
    if stamp is not None:
        (cache / "recipe").write_text(stamp + "\n")
    return cache


def test_a_cache_of_this_recipe_is_reused_without_fetching(tmp_path: Path) -> None:
    recipe = _call('echo "$RECIPE_VERSION"', tmp_path).stdout.strip()
    cache = _fake_cache(tmp_path, recipe)
    proc = _call("main", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(cache / "bin")
    assert "reusing" in proc.stderr


def test_an_unstamped_or_broken_cache_is_not_reused(tmp_path: Path) -> None:
    assert _call("assets_ok", _fake_cache(tmp_path / "a", None)).returncode != 0
    cache = _fake_cache(tmp_path / "b", _call('echo "$RECIPE_VERSION"', tmp_path).stdout.strip())
    (cache / "bin" / "promtool").write_text("#!/bin/sh\nexit 1\n")
    assert _call("assets_ok", cache).returncode != 0
