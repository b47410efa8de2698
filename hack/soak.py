"""`make soak`: N routes, a shared vendor outage every PERIOD seconds, for MINUTES minutes.

Issue 13, scenario 9 (not in CI). One operator process serves N routes (3 backends each, one
shared fake per backend, in processes of their own) on the harness's API server. Every period
the vendor goes down for OUTAGE seconds and comes back; every route must fail over and fail
back each time. Every SAMPLE seconds it reads the operator's own /metrics: resident memory
(process_resident_memory_bytes), asyncio tasks (modelroute_asyncio_tasks) and scheduled loop
timers (modelroute_event_loop_timers; kopf's #1172 was a timer leak).

Expectations (exit status 1 if one fails): every outage switched (and failed back); RSS at
the end at most 5 % above RSS after the warm-up (the first cycle); the lowest task and timer
counts of each cycle (in-flight work comes and goes; a leak raises that floor every cycle) do
not grow after the warm-up. Results: bench/results/soak.json, and a summary on stdout.

    make soak                                 # 300 routes, 30 minutes, outage every 2 min
    make soak ARGS="--minutes 12 --routes 300"  # a shortened run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Fleet, log, make_fleet

from tests.harness.apiserver import REPO_ROOT, running_cluster
from tests.harness.kube import install_crd
from tests.harness.operator import OperatorProcess

PROBE = {
    "type": "OpenAIModels",
    "intervalSeconds": 1,
    "timeoutSeconds": 1,
    "failureThreshold": 2,
    "successThreshold": 2,
}
STABILIZATION_S = 10
RSS_GROWTH_LIMIT = 0.05
RESULTS = REPO_ROOT / "bench" / "results" / "soak.json"


def scrape(op: OperatorProcess) -> dict[str, float]:
    """RSS, tasks and timers from the operator's /metrics (absent ones are left out)."""
    names = {
        "rss_bytes": "process_resident_memory_bytes",
        "tasks": "modelroute_asyncio_tasks",
        "timers": "modelroute_event_loop_timers",
    }
    return {k: v for k, name in names.items() if (v := op.metric(name)) is not None}


def one_cycle(
    fleet: Fleet, op: OperatorProcess, args: argparse.Namespace, n: int
) -> dict[str, Any]:
    """One outage and recovery; returns the cycle's figures and samples."""
    start = time.time()
    steady = scrape(op)  # just before the outage: the same phase every cycle
    vendor = fleet.fakes["vendor"]
    down_at = vendor.fault("outage")
    switched = fleet.wait_all_on("inhouse", args.outage + 60)
    switched_s = time.time() - down_at
    time.sleep(max(0.0, down_at + args.outage - time.time()))
    back_at = vendor.fault("none")
    failed_back = fleet.wait_all_on("vendor", args.period)
    failed_back_s = time.time() - back_at
    samples = []
    while time.time() < start + args.period:
        samples.append({"t": round(time.time() - start, 1), **scrape(op)})
        time.sleep(min(args.sample, max(0.0, start + args.period - time.time())))
    cycle = {
        "cycle": n,
        "steady_before_outage": steady,
        "all_switched": switched,
        "switched_on": fleet.on("inhouse") if not switched else len(fleet.services),
        "switch_s": round(switched_s, 2),
        "all_failed_back": failed_back,
        "failback_s": round(failed_back_s, 2),
        "samples": samples,
    }
    log(
        f"cycle {n}: switched={switched} in {switched_s:.1f}s, failed back={failed_back} "
        f"in {failed_back_s:.1f}s, steady {steady}"
    )
    return cycle


def _floor(cycle: dict[str, Any], key: str) -> float:
    """The lowest count of ``key`` in a cycle: in-flight work comes and goes, a leak raises
    the floor every cycle."""
    values = [s[key] for s in cycle["samples"] if key in s]
    values.append(cycle["steady_before_outage"].get(key, min(values, default=0.0)))
    return min(values)


def verdict(cycles: list[dict[str, Any]]) -> dict[str, Any]:
    """The expectations, from the cycles (the first one is the warm-up)."""
    warm = cycles[0]["samples"]
    last = cycles[-1]["samples"]
    rss_warm = statistics.median(s["rss_bytes"] for s in warm)
    rss_end = statistics.median(s["rss_bytes"] for s in last)
    tasks = [_floor(c, "tasks") for c in cycles[1:]]
    timers = [_floor(c, "timers") for c in cycles[1:]]
    growth = rss_end / rss_warm - 1
    return {
        "every_outage_switched": all(c["all_switched"] and c["all_failed_back"] for c in cycles),
        "rss_after_warmup_mib": round(rss_warm / 2**20, 1),
        "rss_end_mib": round(rss_end / 2**20, 1),
        "rss_growth": round(growth, 4),
        "rss_ok": growth <= RSS_GROWTH_LIMIT,
        "tasks_floor_per_cycle": tasks,
        "timers_floor_per_cycle": timers,
        # Same routes every cycle: the floor may wobble by a request in flight, never climb.
        "tasks_ok": tasks[-1] <= tasks[0] + 5,
        "timers_ok": timers[-1] <= timers[0] + 5,
        "switch_s_max": max(c["switch_s"] for c in cycles),
        "failback_s_max": max(c["failback_s"] for c in cycles),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--period", type=float, default=120.0, help="seconds between outages")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds each outage lasts")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cycles_total = max(2, int(args.minutes * 60 // args.period))
    with running_cluster() as cluster:
        install_crd(cluster)
        identity = cluster.mint_user("modelroute-operator-soak", ["system:masters"])
        fleet = make_fleet(cluster, "soak", args.routes, PROBE, STABILIZATION_S)
        op = OperatorProcess(identity, cluster.workdir, [fleet.namespace])
        try:
            op.start(timeout=120)
            if not fleet.wait_all_on("vendor", 600):
                raise RuntimeError(f"only {fleet.on('vendor')}/{args.routes} routed")
            log(f"soak: {args.routes} routes, {cycles_total} cycles of {args.period:.0f}s")
            time.sleep(10)
            cycles = [one_cycle(fleet, op, args, n + 1) for n in range(cycles_total)]
            alive = op.returncode is None
        finally:
            op.stop(timeout=30)
            fleet.close()
    result = {
        "routes": args.routes,
        "minutes": round(cycles_total * args.period / 60, 1),
        "period_s": args.period,
        "outage_s": args.outage,
        "operator_alive": alive,
        "verdict": verdict(cycles),
        "cycles": cycles,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    v = result["verdict"]
    print(json.dumps(v, indent=2))
    ok = alive and all(v[k] for k in ("every_outage_switched", "rss_ok", "tasks_ok", "timers_ok"))
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
