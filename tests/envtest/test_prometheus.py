"""The chart's alerts and dashboard on a real Prometheus scraping the operator during an outage.

The operator runs against the real API server with the canonical scenario (fake backends on
loopback); Prometheus (Debian's package, hack/prometheus-assets.sh) scrapes its /metrics every
second as a ServiceMonitor of the chart would (job = the metrics Service, `namespace` = the
release namespace, honor_labels) and evaluates the rules the chart renders, with short `for`s.
The vendor goes down: ModelRouteFailedOver must fire within `for` + one scrape interval + one
evaluation interval of the operator exporting the failover. Then every dashboard query must
return data; only a query whose metrics the operator does not export at all may be empty.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_backend import Fault
from tests.harness.bounds import within
from tests.harness.kube import wait_for
from tests.harness.operator import OperatorProcess
from tests.harness.prometheus import (
    PrometheusServer,
    dashboard,
    dashboard_queries,
    grafana_to_promql,
    metric_families,
    prometheus_bin,
    rendered_rules,
    running_prometheus,
)
from tests.harness.scenario import Scenario

SCRAPE_SECONDS = 1.0
EVAL_SECONDS = 0.25
FOR_SECONDS = 3.0
# How late the test itself may notice: it polls /metrics and the alerts API this often.
POLL_SECONDS = 0.05
# What a ServiceMonitor of release "mr" in "modelroute-system" gives the operator's series.
JOB, RELEASE_NS = "mr-modelroute-operator-metrics", "modelroute-system"
SHORT_FOR: dict[str, Any] = {
    "alerts": {
        "failedOver": {"for": f"{FOR_SECONDS:g}s"},
        "allBackendsUnhealthy": {"for": f"{FOR_SECONDS:g}s"},
        "probesFailing": {"for": f"{FOR_SECONDS:g}s", "window": "30s"},
    }
}


def scrape_config(operator: OperatorProcess) -> dict[str, Any]:
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS:g}s",
            "scrape_timeout": f"{SCRAPE_SECONDS:g}s",
            "evaluation_interval": f"{int(EVAL_SECONDS * 1000)}ms",
        },
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{operator.metrics_port}"],
                        "labels": {"namespace": RELEASE_NS},
                    }
                ],
            }
        ],
    }


def firing(prom: PrometheusServer, alert: str, **labels: str) -> list[dict[str, Any]]:
    return [
        a
        for a in prom.alerts()
        if a["labels"]["alertname"] == alert
        and a["state"] == "firing"
        and labels.items() <= a["labels"].items()
    ]


def exported_families(operator: OperatorProcess) -> set[str]:
    """The metric families on the operator's /metrics (``# TYPE`` lines)."""
    _, text = operator.get("/metrics")
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


@pytest.fixture
def bin_dir() -> Path:
    """promtool + prometheus, fetched before the operator starts (fails under CI, else skips)."""
    return prometheus_bin()


def test_failover_alert_fires_on_a_real_prometheus_and_every_dashboard_query_has_data(
    bin_dir: Path, scenario: Scenario, operator: OperatorProcess, tmp_path: Path
) -> None:
    sc, ns = scenario, scenario.namespace
    rules = rendered_rules({"metrics": {"prometheusRule": SHORT_FOR}})
    with running_prometheus(
        bin_dir, tmp_path / "prometheus", scrape_config(operator), rules
    ) as prom:
        wait_for(
            lambda: prom.query('modelroute_route_failed_over{route="chat"} == 0'), 15, "a scrape"
        )
        # honor_labels: the route's own namespace; the operator's series get the release's.
        (up,) = prom.query('modelroute_backend_up{route="chat", backend="vendor"}')
        assert up["metric"]["namespace"] == ns and "exported_namespace" not in up["metric"]
        (leader,) = prom.query("modelroute_leader")
        assert leader["metric"]["namespace"] == RELEASE_NS and leader["metric"]["job"] == JOB
        time.sleep(FOR_SECONDS + SCRAPE_SECONDS)  # long enough for any alert to fire
        assert [a for a in prom.alerts() if a["state"] == "firing"] == []

        sc.vendor.set_fault(Fault.REFUSED)
        wait_for(
            lambda: operator.metric("modelroute_route_failed_over", route="chat") == 1,
            10,
            "the operator exports the failover",
            interval=POLL_SECONDS,
        )
        exported_at = time.monotonic()
        (alert,) = wait_for(
            lambda: firing(prom, "ModelRouteFailedOver", namespace=ns, route="chat"),
            FOR_SECONDS + 10,
            "ModelRouteFailedOver firing",
            interval=POLL_SECONDS,
        )
        delay = time.monotonic() - exported_at
        bound = FOR_SECONDS + SCRAPE_SECONDS + EVAL_SECONDS + POLL_SECONDS
        print(
            f"\nModelRouteFailedOver fired {delay:.2f} s after the operator exported the "
            f"failover (for {FOR_SECONDS:g} s, scrape {SCRAPE_SECONDS:g} s, "
            f"evaluation {EVAL_SECONDS:g} s: bound {bound:.2f} s)"
        )
        assert delay <= within(bound)
        assert "(traffic is on inhouse)" in alert["annotations"]["description"]
        probes = wait_for(
            lambda: firing(prom, "ModelRouteProbesFailing", route="chat", backend="vendor"),
            FOR_SECONDS + 10,
            "ModelRouteProbesFailing firing for the vendor",
            interval=POLL_SECONDS,
        )
        assert probes[0]["labels"]["reason"] == "Unavailable"
        assert firing(prom, "ModelRouteAllBackendsUnhealthy") == []

        check_dashboard_queries(prom, operator)


def check_dashboard_queries(prom: PrometheusServer, operator: OperatorProcess) -> None:
    """Every dashboard query has data, unless the operator does not export its metrics at all
    (a metric another branch adds; the exemption ends by itself once it is exported)."""
    exported = exported_families(operator)
    empty, exempt = [], []
    for where, expr in dashboard_queries(dashboard()).items():
        if prom.query(grafana_to_promql(expr, rate_interval="30s")):
            continue
        if not metric_families(expr) & exported:
            exempt.append(where)
        else:
            empty.append(f"{where}: {expr}")
    print(f"dashboard queries without data because their metrics are not exported: {exempt}")
    assert empty == [], "dashboard queries without data:\n" + "\n".join(empty)
