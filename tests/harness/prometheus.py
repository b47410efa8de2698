"""promtool and a real Prometheus (Debian's ``prometheus`` package, fetched and cached by
hack/prometheus-assets.sh), with the chart's alert rules and dashboard queries.

The rules are always the ones the chart renders (``rendered_rules``), so what promtool checks and
what a real Prometheus evaluates is exactly what ``helm install`` ships.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.apiserver import REPO_ROOT, free_port
from tests.harness.helm import CHART_DIR, find, render

ASSETS_SCRIPT = REPO_ROOT / "hack" / "prometheus-assets.sh"
RULE_TESTS_DIR = REPO_ROOT / "tests" / "prometheus"
DASHBOARD = CHART_DIR / "dashboards" / "modelroute.json"
METRIC_NAME = re.compile(r"\bmodelroute_[a-z_]+\b")
# Prometheus's own histogram and counter series suffixes, back to the family /metrics names.
_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def _required() -> bool:
    """Under CI a missing promtool or prometheus fails the test; elsewhere it is skipped."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def prometheus_bin() -> Path:
    """The directory with promtool and prometheus (hack/prometheus-assets.sh, instant when cached).

    Fails under ``CI=true`` when they cannot be produced; skips with the reason elsewhere."""
    proc = subprocess.run(["bash", str(ASSETS_SCRIPT)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        reason = f"{ASSETS_SCRIPT} failed ({proc.returncode}): {proc.stderr[-2000:]}"
        if _required():
            pytest.fail(f"{reason}; under CI=true this fails, never skips")
        pytest.skip(reason)
    return Path(proc.stdout.strip().splitlines()[-1])


def rendered_rules(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The rule file (``{groups: ...}``) of the chart's PrometheusRule, rendered with ``values``
    on top of ``metrics.prometheusRule.enabled: true``."""
    enabled: dict[str, Any] = {"metrics": {"prometheusRule": {"enabled": True}}}
    (rule,) = find(render(_merge(enabled, dict(values or {}))), "PrometheusRule")
    return dict(rule["spec"])


def write_rules(path: Path, rules: Mapping[str, Any]) -> Path:
    """Write a rule file for promtool or prometheus."""
    path.write_text(yaml.safe_dump(dict(rules), sort_keys=False))
    return path


def promtool(
    bin_dir: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller asserts on the return code with the output in the message."""
    return subprocess.run(
        [str(bin_dir / "promtool"), *args], capture_output=True, text=True, cwd=cwd, check=False
    )


def dashboard() -> dict[str, Any]:
    """The dashboard JSON the chart ships."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries(board: Mapping[str, Any]) -> dict[str, str]:
    """Every PromQL query of the dashboard, by where it is: panel targets, annotations, and the
    series selectors of ``label_values(...)`` template variables."""
    queries: dict[str, str] = {}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            queries[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for note in board["annotations"]["list"]:
        queries[f"annotation {note['name']!r}"] = note["expr"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+), *(\w+)\)", var["query"]["query"])
            assert selector, f"variable {var['name']}: not label_values(selector, label)"
            queries[f"variable {var['name']!r}"] = selector.group(1)
    return queries


def grafana_to_promql(expr: str, *, rate_interval: str) -> str:
    """A dashboard query as Grafana sends it with every variable on "All"."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$namespace", ".*")
        .replace("$route", ".*")
    )


def metric_families(expr: str) -> set[str]:
    """The modelroute metric families (as /metrics names them) a query reads."""
    names = set()
    for name in METRIC_NAME.findall(expr):
        for suffix in _SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        names.add(name)
    return names


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class PrometheusServer:
    """A running Prometheus on loopback; ``query`` and ``alerts`` use its HTTP API."""

    url: str
    log_path: Path

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the ``data`` of a successful answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (or scalar as a one-element list)."""
        data = self.api("query", query=expr)
        result = data["result"]
        return list(result) if data["resultType"] == "vector" else [{"value": result}]

    def alerts(self) -> list[dict[str, Any]]:
        """The active (pending or firing) alerts."""
        return list(self.api("alerts")["alerts"])

    def logs(self) -> str:
        """What Prometheus printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running_prometheus(
    bin_dir: Path, workdir: Path, config: Mapping[str, Any], rules: Mapping[str, Any]
) -> Iterator[PrometheusServer]:
    """Prometheus with ``config`` (``rule_files`` set to ``rules``), stopped after the block."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules_path = write_rules(workdir / "rules.yaml", rules)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump({**config, "rule_files": [str(rules_path)]}))
    port = free_port()
    log_path = workdir / "prometheus.log"
    args = [
        str(bin_dir / "prometheus"),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=info",
    ]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    server = PrometheusServer(f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(server, proc)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(
    server: PrometheusServer, proc: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            logs = server.logs()[-4000:]
            raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{logs}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus not ready after {timeout}s:\n{server.logs()[-4000:]}")
