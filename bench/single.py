"""single: one route, interval 1 s, failureThreshold 2, many vendor outages.

Per outage: overhead = (when the stable Service's selector points at the fallback, seen on a
WATCH) - (outage start + floor), floor = failureThreshold x intervalSeconds. Outages alternate
REFUSED (listener closed) and OUTAGE (503); each starts at a random phase of the probe
schedule, and the next one waits until traffic has failed back.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.common import (
    Fleet,
    log,
    make_fleet,
    operator_identity,
    running_operator,
)
from bench.stats import summary
from tests.harness.apiserver import Cluster

PROBE = {
    "type": "OpenAIModels",
    "intervalSeconds": 1,
    "timeoutSeconds": 1,
    "failureThreshold": 2,
    "successThreshold": 1,
}
STABILIZATION_S = 1


def run_once(cluster: Cluster, outages: int) -> dict[str, Any]:
    fleet: Fleet = make_fleet(cluster, "bench-single", 1, PROBE, STABILIZATION_S)
    svc = fleet.services[0]
    vendor = fleet.fakes["vendor"]
    overheads: list[float] = []
    reactions: list[float] = []
    by_fault: dict[str, list[float]] = {"refused": [], "outage": []}
    try:
        with running_operator(cluster, operator_identity(cluster), [fleet.namespace]):
            if not fleet.wait_all_on("vendor", 60):
                raise RuntimeError("single: the route never routed to the vendor")
            for i in range(outages):
                # A random phase against the 1 s probe schedule, after a settled failback.
                time.sleep(1.0 + random.uniform(0, PROBE["intervalSeconds"]))
                fault = "refused" if i % 2 == 0 else "outage"
                t0 = vendor.fault(fault)
                if not fleet.watch.wait(lambda: fleet.watch.current.get(svc) == "inhouse", 30):
                    raise RuntimeError(f"single: no failover within 30 s (outage {i})")
                switched = fleet.watch.first_since(svc, "inhouse", t0)
                assert switched is not None
                overhead = switched - (t0 + fleet.floor_s)
                overheads.append(overhead)
                by_fault[fault].append(overhead)
                if fault == "outage":
                    # A 503 reaches the fake, so the probe that decided (the threshold-th
                    # failure) is known: how long the switch took after it.
                    arrivals = sorted(t for t in vendor.stats()["probe_times"] if t >= t0)
                    if len(arrivals) >= PROBE["failureThreshold"]:
                        reactions.append(switched - arrivals[PROBE["failureThreshold"] - 1])
                vendor.fault("none")
                if not fleet.wait_all_on("vendor", 60):
                    raise RuntimeError(f"single: no failback within 60 s (outage {i})")
                if (i + 1) % 10 == 0:
                    log(
                        f"single: {i + 1}/{outages} outages, last overhead {overhead * 1000:.0f} ms"
                    )
    finally:
        fleet.close()
    s = summary(overheads)
    react = summary(reactions) if reactions else {}
    return {
        "reaction_p50_s": react.get("p50"),
        "reaction_p99_s": react.get("p99"),
        "reaction_max_s": react.get("max"),
        "reaction_min_s": react.get("min"),
        "overhead_p50_s": s["p50"],
        "overhead_p99_s": s["p99"],
        "overhead_max_s": s["max"],
        "overhead_min_s": s["min"],
        "overhead_mean_s": s["mean"],
        "outages": len(overheads),
        "by_fault_p50_s": {k: summary(v)["p50"] for k, v in by_fault.items() if v},
        "samples_s": [round(x, 4) for x in overheads],
    }


def run(cluster: Cluster, args: Any) -> dict[str, Any]:
    repeat = args.repeat
    outages = 10 if args.quick else 50
    runs = []
    for r in range(repeat):
        log(f"single: run {r + 1}/{repeat} ({outages} outages)")
        runs.append(run_once(cluster, outages))
    return {
        "config": {
            "routes": 1,
            "backends": 3,
            "outages_per_run": outages,
            "probe": PROBE,
            "stabilization_seconds": STABILIZATION_S,
            "floor_s": PROBE["failureThreshold"] * PROBE["intervalSeconds"],
            "faults": "alternating refused (connection refused) and outage (HTTP 503)",
        },
        "runs": runs,
    }
