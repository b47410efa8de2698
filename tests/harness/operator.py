"""Run the operator as a real process (``python -m modelroute``) against the test cluster."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from tests.harness.apiserver import REPO_ROOT, Identity, free_port


class OperatorProcess:
    """One operator process; its log (JSON lines) is kept in ``log_path``."""

    def __init__(
        self,
        identity: Identity,
        workdir: Path,
        namespaces: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.identity = identity
        self._env = dict(env or {})
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log_path = workdir / f"operator-{self.metrics_port}.log"
        self._args = [
            sys.executable,
            "-m",
            "modelroute",
            "--kubeconfig",
            str(identity.kubeconfig),
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            "--bind-address",
            "127.0.0.1",
            "--log-level",
            "INFO",
            *[arg for ns in namespaces for arg in ("--namespace", ns)],
            *extra_args,
        ]
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> OperatorProcess:
        """Start the process and wait until /readyz answers."""
        env = {**os.environ, **self._env}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT / "operator"), env.get("PYTHONPATH", "")]
        )
        env.pop("KUBERNETES_SERVICE_HOST", None)  # never pick in-cluster config in tests
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self._args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self._proc.returncode}:\n{self.logs()}")
            if self.get("/readyz", self.health_port)[0] == 200:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"operator not ready after {timeout}s:\n{self.logs()[-4000:]}")

    def stop(self, timeout: float = 15.0) -> float:
        """SIGTERM and wait; returns the seconds the shutdown took."""
        if self._proc is None or self._proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            raise RuntimeError(f"operator did not stop within {timeout}s") from None
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL (a crash), no cleanup."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    @property
    def returncode(self) -> int | None:
        """Exit code once stopped."""
        return None if self._proc is None else self._proc.poll()

    def logs(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, port: int | None = None) -> tuple[int, str]:
        """GET a path on the metrics (default) or health port: (status, body); 0 if down."""
        url = f"http://127.0.0.1:{port or self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, OSError):
            return 0, ""

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample on /metrics, or None if absent."""
        from prometheus_client.parser import text_string_to_metric_families

        _, text = self.get("/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None


@contextlib.contextmanager
def running_operator(
    identity: Identity,
    workdir: Path,
    namespaces: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[OperatorProcess]:
    """An operator process for the duration of the block, stopped (or killed) after it.

    ``env`` is added to the test's own environment (e.g. the Deployment's POD_NAMESPACE)."""
    process = OperatorProcess(identity, workdir, namespaces, extra_args, env)
    try:
        yield process.start()
    finally:
        try:
            process.stop()
        finally:
            process.kill()
