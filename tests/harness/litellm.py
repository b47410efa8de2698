"""LiteLLM's proxy server (``litellm --config ... --port N``) as a real backend nobody here wrote.

The proxy comes from PyPI into its own environment (``make litellm-env`` syncs the ``litellm``
dependency group of uv.lock into ``.venv-litellm``; it conflicts with the dev group, see
pyproject.toml) and runs as a subprocess on a free loopback port.  It serves OpenAI's API
(``GET /v1/models``, ``POST /v1/chat/completions``) behind a master key, answering chats with a
``mock_response``, so no model and no vendor is ever called.

Offline, and shown to be: the local copies of every file LiteLLM would otherwise fetch
(``LITELLM_LOCAL_*``: the model cost map, blog posts, beta headers, policy templates, autorouter
presets), telemetry off, no database.  Every proxy variable (``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY``) points at a :class:`ConnectTrap` on loopback, with ``NO_PROXY`` for loopback
only: a download attempt by any client that honours them (httpx, requests, urllib, aiohttp with
``trust_env``) reaches the trap instead of the network, is refused, and is recorded for the test
to report -- it can never silently work.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.harness.apiserver import REPO_ROOT, free_port

LITELLM_ENV = REPO_ROOT / ".venv-litellm"
MAKE_TARGET = "make litellm-env"
#: The proxy's master key: the API key clients (and the operator's probes) must send.
MASTER_KEY = "sk-litellm-master-3c1d9e7a5b"
#: What every chat completion answers: LiteLLM's mock, no model behind it.
MOCK_ANSWER = "pong"
_OFFLINE_FLAGS = (
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "LITELLM_LOCAL_BLOG_POSTS",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS",
    "LITELLM_LOCAL_POLICY_TEMPLATES",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS",
)
_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


class LiteLLMMissing(RuntimeError):
    """The proxy's environment is not installed."""


def under_ci() -> bool:
    """True under CI, where a missing LiteLLM environment must fail, not skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def litellm_executable(env: Path = LITELLM_ENV) -> Path:
    """The ``litellm`` CLI of ``env``; :class:`LiteLLMMissing` naming the make target if absent."""
    exe = env / "bin" / "litellm"
    if not exe.is_file():
        raise LiteLLMMissing(f"LiteLLM's proxy is not installed at {exe}: run `{MAKE_TARGET}`")
    return exe


class ConnectTrap:
    """A loopback listener standing in for the outside world: records and drops every connection.

    Used as the proxy for all outbound HTTP(S); :attr:`attempts` holds the first line of each
    request that reached it (``CONNECT raw.githubusercontent.com:443 HTTP/1.1``)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.attempts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="connect-trap", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0]
                except OSError:
                    first = b""
                self.attempts.append(first.decode(errors="replace") or "(no request line)")

    def close(self) -> None:
        """Stop listening."""
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def offline_env(trap_url: str) -> dict[str, str]:
    """The proxy's environment: this one, minus any real proxy, plus the offline switches."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in {*_PROXY_VARS, "NO_PROXY"}}
    env.update({var: trap_url for var in _PROXY_VARS})
    env.update({var.lower(): trap_url for var in _PROXY_VARS})
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(dict.fromkeys(_OFFLINE_FLAGS, "True"))
    env["LITELLM_DONT_SHOW_FEEDBACK_BOX"] = "True"
    env.pop("DATABASE_URL", None)
    return env


def proxy_config(models: Sequence[str]) -> dict[str, Any]:
    """A proxy config serving ``models`` (OpenAI provider) with mock answers, behind the key."""
    return {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "mock_response": MOCK_ANSWER,
                    # Never sent anywhere: the mock answers before any provider call.
                    "api_key": "sk-unused-mock",
                },
            }
            for model in models
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"telemetry": False},
    }


class LiteLLMProxy:
    """One LiteLLM proxy server on a fixed loopback port, that can be stopped and started again."""

    def __init__(self, workdir: Path, models: Sequence[str], trap: ConnectTrap) -> None:
        self.models = tuple(models)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"litellm-{self.port}.log"
        self._config = workdir / f"litellm-{self.port}.yaml"
        self._config.write_text(yaml.safe_dump(proxy_config(self.models)))
        self._args = [
            str(litellm_executable()),
            *("--config", str(self._config), "--host", "127.0.0.1", "--port", str(self.port)),
        ]
        self.trap = trap
        self._env = offline_env(trap.url)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300.0) -> float:
        """Start the server; return the seconds until it listed its models to a keyed client."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("the LiteLLM proxy is already running")
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._config.parent,
                start_new_session=True,
            )
        while time.monotonic() - started < timeout:
            if self._proc.poll() is not None:
                raise RuntimeError(f"LiteLLM exited with {self._proc.returncode}:\n{self.tail()}")
            if set(self.models) <= set(self.listed_models()):
                return time.monotonic() - started
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"LiteLLM not serving after {timeout:.0f}s:\n{self.tail()}")

    def listed_models(self) -> list[str]:
        """Model ids of ``GET /v1/models`` with the master key; [] while it does not answer."""
        request = urllib.request.Request(
            f"{self.url}/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                doc = json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return []
        entries = doc.get("data") if isinstance(doc, dict) else None
        return [str(e.get("id")) for e in entries or [] if isinstance(e, dict)]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group and wait; SIGKILL if it lingers. Idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)

    def logs(self) -> str:
        """Everything the server printed so far (all runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        """The end of :meth:`logs`, for error messages."""
        return self.logs()[-chars:]


@contextlib.contextmanager
def litellm_proxy(workdir: Path, models: Sequence[str]) -> Iterator[tuple[LiteLLMProxy, float]]:
    """A started proxy and its start-up seconds; stopped, and its trap closed, after the block."""
    trap = ConnectTrap()
    proxy = LiteLLMProxy(workdir, models, trap)
    try:
        yield proxy, proxy.start()
    finally:
        try:
            proxy.stop()
        finally:
            trap.close()
