"""The LiteLLM harness's offline guard: an outbound request reaches the trap, not the network."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness.litellm import (
    MAKE_TARGET,
    MASTER_KEY,
    ConnectTrap,
    LiteLLMMissing,
    litellm_executable,
    offline_env,
    proxy_config,
)

# The clients LiteLLM downloads with (httpx) and the standard library's; both honour the
# proxy variables, so with the offline environment a download is caught, never made.
CLIENTS = {
    "urllib": "import urllib.request; urllib.request.urlopen('{url}', timeout=5)",
    "httpx": "import httpx; httpx.get('{url}', timeout=5)",
}


@pytest.fixture
def trap() -> Iterator[ConnectTrap]:
    caught = ConnectTrap()
    try:
        yield caught
    finally:
        caught.close()


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_download_reaches_the_trap_and_fails(trap: ConnectTrap, client: str) -> None:
    code = CLIENTS[client].format(url="https://raw.githubusercontent.com/BerriAI/litellm/x.json")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=offline_env(trap.url),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0, "the download worked: the offline environment leaks"
    (attempt,) = trap.attempts
    assert attempt.startswith("CONNECT raw.githubusercontent.com:443 HTTP/1."), attempt


def test_loopback_is_not_proxied(trap: ConnectTrap) -> None:
    env = offline_env(trap.url)
    assert env["NO_PROXY"] == env["no_proxy"] == "127.0.0.1,localhost"
    assert env["HTTPS_PROXY"] == env["https_proxy"] == trap.url
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def test_config_serves_mock_answers_behind_the_master_key() -> None:
    config = yaml.safe_load(yaml.safe_dump(proxy_config(["gpt-4o"])))
    (model,) = config["model_list"]
    assert model["model_name"] == "gpt-4o"
    assert model["litellm_params"]["model"] == "openai/gpt-4o"
    assert model["litellm_params"]["mock_response"]
    assert config["general_settings"]["master_key"] == MASTER_KEY


def test_a_missing_environment_names_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(LiteLLMMissing, match=MAKE_TARGET):
        litellm_executable(tmp_path / "no-such-env")
