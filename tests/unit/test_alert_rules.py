"""The chart's alerts and dashboard, offline: `promtool check rules` and `promtool test rules`
(tests/prometheus/*.test.yaml) on exactly the PrometheusRule the chart renders, the values that
tune them, and the dashboard ConfigMap. tests/envtest/test_prometheus.py runs them for real.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelroute.metrics import Metrics
from tests.harness.apiserver import REPO_ROOT
from tests.harness.helm import find, render
from tests.harness.prometheus import (
    DASHBOARD,
    RULE_TESTS_DIR,
    dashboard,
    dashboard_queries,
    grafana_to_promql,
    metric_families,
    prometheus_bin,
    promtool,
    rendered_rules,
    write_rules,
)

ALERTS = {
    "failedOver": "ModelRouteFailedOver",
    "allBackendsUnhealthy": "ModelRouteAllBackendsUnhealthy",
    "failbackPending": "ModelRouteFailbackPending",
    "probesFailing": "ModelRouteProbesFailing",
    "operatorDown": "ModelRouteOperatorDown",
    "operatorNotLeading": "ModelRouteOperatorNotLeading",
}
TUNED: dict[str, Any] = {
    "labels": {"release": "kube-prometheus-stack"},
    "alertLabels": {"team": "ml-platform"},
    "runbookUrl": "https://git.example.com/ml/modelroute/blob/main/docs/troubleshooting.md",
    "operatorSelector": 'job="llm-operator"',
    "alerts": {
        "failedOver": {"for": "30s", "severity": "page"},
        "probesFailing": {"window": "10m", "minFailures": 3},
        "operatorNotLeading": {"enabled": False},
    },
}


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return prometheus_bin()


def rules_by_alert(groups: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups["groups"] for rule in group["rules"]}


def check(bin_dir: Path, path: Path, *args: str) -> str:
    proc = promtool(bin_dir, *args, str(path), cwd=path.parent)
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("values", [{}, TUNED], ids=["default", "tuned"])
def test_promtool_check_rules_accepts_the_rendered_rules(
    bin_dir: Path, tmp_path: Path, values: dict[str, Any]
) -> None:
    rules = rendered_rules({"metrics": {"prometheusRule": values}})
    out = check(bin_dir, write_rules(tmp_path / "rules.yaml", rules), "check", "rules")
    assert f"SUCCESS: {len(rules_by_alert(rules))} rules found" in out


def test_promtool_unit_tests_of_every_alert_pass(bin_dir: Path, tmp_path: Path) -> None:
    # The test files name rules.yaml beside them: the chart's default rendering.
    write_rules(tmp_path / "rules.yaml", rendered_rules())
    tests = sorted(RULE_TESTS_DIR.glob("*.test.yaml"))
    assert tests
    for test in tests:
        copied = Path(shutil.copy(test, tmp_path))
        assert "SUCCESS" in check(bin_dir, copied, "test", "rules")


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    cases: dict[str, set[bool]] = {}
    for test in RULE_TESTS_DIR.glob("*.test.yaml"):
        for group in yaml.safe_load(test.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    assert set(rules_by_alert(rendered_rules())) == set(ALERTS.values())
    assert cases == {name: {True, False} for name in ALERTS.values()}


def test_the_rules_read_only_metrics_the_operator_exports() -> None:
    exported = {  # the names /metrics shows: prometheus_client keeps counters' _total apart
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    for name, rule in rules_by_alert(rendered_rules()).items():
        text = rule["expr"] + rule["annotations"]["description"]
        assert metric_families(text) <= exported, name


def test_the_prometheus_rule_is_off_by_default_and_tuned_by_values() -> None:
    assert find(render(), "PrometheusRule") == []
    docs = render({"metrics": {"prometheusRule": {**TUNED, "enabled": True}}})
    (rule,) = find(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = rules_by_alert(rule["spec"])
    assert "ModelRouteOperatorNotLeading" not in alerts
    failed_over = alerts["ModelRouteFailedOver"]
    assert failed_over["for"] == "30s"
    assert failed_over["labels"] == {"severity": "page", "team": "ml-platform"}
    probes = alerts["ModelRouteProbesFailing"]["expr"]
    assert "[10m]" in probes and probes.endswith(">= 3")
    assert alerts["ModelRouteOperatorDown"]["expr"] == 'absent(up{job="llm-operator"} == 1)'
    for name, alert in alerts.items():
        anchor = name.lower()
        assert alert["annotations"]["runbook_url"] == f"{TUNED['runbookUrl']}#{anchor}"
    for alert in rules_by_alert(rendered_rules()).values():
        assert "runbook_url" not in alert["annotations"]  # no URL configured, no annotation


def test_every_alert_has_a_runbook_section_in_troubleshooting() -> None:
    doc = (REPO_ROOT / "docs" / "troubleshooting.md").read_text()
    headings = {h.lower() for h in re.findall(r"^### `(\w+)`$", doc, re.MULTILINE)}
    for name, alert in rules_by_alert(rendered_rules()).items():
        assert f"docs/troubleshooting.md#{name.lower()}" in alert["annotations"]["description"]
        assert name.lower() in headings, f"docs/troubleshooting.md: no '### `{name}`' section"


# --- the dashboard --------------------------------------------------------------------------------


def test_the_dashboard_config_map_is_off_by_default_and_carries_the_json_file() -> None:
    assert find(render(), "ConfigMap") == []
    (config_map,) = find(render({"metrics": {"grafanaDashboard": {"enabled": True}}}), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "modelroute-system"
    assert config_map["data"] == {"modelroute.json": DASHBOARD.read_text().rstrip("\n")}
    tuned = {
        "enabled": True,
        "namespace": "monitoring",
        "label": "dashboards.example.com/grafana",
        "labelValue": "",
        "labels": {"team": "ml"},
        "annotations": {"grafana_folder": "LLM"},
    }
    (config_map,) = find(render({"metrics": {"grafanaDashboard": tuned}}), "ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    labels = config_map["metadata"]["labels"]
    assert labels["dashboards.example.com/grafana"] == "" and labels["team"] == "ml"
    assert "grafana_dashboard" not in labels
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "LLM"}


def test_dashboard_panels_are_well_formed() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    titles = " ".join(panel["title"].lower() for panel in board["panels"])
    for subject in ("traffic per backend", "failovers", "probe latency", "by reason", "drills"):
        assert subject in titles


def test_every_dashboard_query_is_valid_promql(bin_dir: Path, tmp_path: Path) -> None:
    """promtool parses each query (with the variables as Grafana fills them) as a recording rule."""
    queries = dashboard_queries(dashboard())
    rules = [
        {"record": f"dashboard:query_{n}", "expr": grafana_to_promql(expr, rate_interval="1m")}
        for n, expr in enumerate(queries.values())
    ]
    path = write_rules(tmp_path / "dashboard.yaml", {"groups": [{"name": "q", "rules": rules}]})
    assert f"SUCCESS: {len(rules)} rules found" in check(bin_dir, path, "check", "rules")


def test_the_metrics_reference_documents_every_metric_and_alert() -> None:
    doc = (REPO_ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(modelroute_\w+)` \|", doc, re.MULTILINE))
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    assert exported - documented == set(), "docs/metrics.md: metrics missing from the table"
    for name in rules_by_alert(rendered_rules()):
        assert f"| `{name}` (" in doc, f"docs/metrics.md: no row for {name}"
    assert "(docs/metrics.md)" in (REPO_ROOT / "README.md").read_text()


def test_with_shards_each_operator_deployment_has_its_own_down_and_not_leading_alerts(
    bin_dir: Path, tmp_path: Path
) -> None:
    # A shard that is down or leaderless must page on its own, not hide behind the main one.
    rules = rendered_rules({"shards": ["a", "b"]})
    check(bin_dir, write_rules(tmp_path / "rules.yaml", rules), "check", "rules")
    every = [rule for group in rules["groups"] for rule in group["rules"]]
    for alert in ("ModelRouteOperatorDown", "ModelRouteOperatorNotLeading"):
        pairs = {
            (rule["labels"].get("shard", ""), re.search(r'job="([^"]+)"', rule["expr"])[1])
            for rule in every
            if rule["alert"] == alert
        }
        assert pairs == {
            ("", "mr-modelroute-operator-metrics"),
            ("a", "mr-modelroute-operator-a-metrics"),
            ("b", "mr-modelroute-operator-b-metrics"),
        }, alert
