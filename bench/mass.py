"""mass: N routes x 3 backends sharing one fake vendor that goes down at once.

Per outage: for every route, (when its stable Service points at the fallback, seen on a
WATCH) - (outage start + floor). Reported: p50, p99 and the last route (all switched). The
same fleet and operator serve every repeat; traffic fails back between outages.
"""

from __future__ import annotations

import random
import time
from typing import Any

import psutil

from bench.common import (
    PySpy,
    log,
    make_fleet,
    operator_identity,
    running_operator,
    top_frames,
    write_kind,
)
from bench.stats import summary
from tests.harness.apiserver import REPO_ROOT, WRITE_VERBS, Cluster

PROBE = {
    "type": "OpenAIModels",
    "intervalSeconds": 5,
    "timeoutSeconds": 2,
    "failureThreshold": 2,
    "successThreshold": 1,
}
STABILIZATION_S = 1


def run(cluster: Cluster, args: Any) -> dict[str, Any]:
    routes = args.routes or (100 if args.quick else 1000)
    probe = {**PROBE, "intervalSeconds": getattr(args, "probe_interval", None) or 5}
    identity = operator_identity(cluster)
    fleet = make_fleet(cluster, "bench-mass", routes, probe, STABILIZATION_S)
    vendor = fleet.fakes["vendor"]
    runs: list[dict[str, Any]] = []
    log(f"mass: {routes} routes created in {fleet.namespace}")
    try:
        with running_operator(cluster, identity, [fleet.namespace]) as op:
            proc = psutil.Process(op.pid)
            if not fleet.wait_all_on("vendor", 600):
                raise RuntimeError(f"mass: only {fleet.on('vendor')}/{routes} routed")
            for r in range(args.repeat):
                # Let the initial (or failback) status writes finish, then a random phase.
                time.sleep(10 + random.uniform(0, probe["intervalSeconds"]))
                cpu0 = sum(proc.cpu_times()[:2])
                spy = None
                if getattr(args, "profile", False):
                    out = REPO_ROOT / "bench" / "results" / f"profile-mass-{r + 1}.txt"
                    spy = PySpy(op.pid, fleet.floor_s + 12, out)
                t0 = vendor.fault("outage")
                limit = fleet.floor_s + 120
                ok = fleet.wait_all_on("inhouse", limit)
                done_at = time.time()
                offsets = []
                for svc in fleet.services:
                    at = fleet.watch.first_since(svc, "inhouse", t0)
                    if at is not None:
                        offsets.append(at - t0 - fleet.floor_s)
                cpu1 = sum(proc.cpu_times()[:2])
                # All routes share the vendor's probe, so the fake saw one probe per interval:
                # the threshold-th after the outage began decided. Time from it to each switch
                # does not depend on where in the interval the outage began.
                arrivals = sorted(t for t in vendor.stats()["probe_times"] if t >= t0)
                deciding = (
                    arrivals[probe["failureThreshold"] - 1]
                    if len(arrivals) >= probe["failureThreshold"]
                    else None
                )
                after = [o + t0 + fleet.floor_s - deciding for o in offsets] if deciding else []
                writes = cluster.audit_events(
                    username=identity.username, verbs=WRITE_VERBS, since=t0
                )
                vendor.fault("none")
                s = summary(offsets)
                profile = None
                if spy is not None and (path := spy.wait()) is not None:
                    profile = top_frames(path, 20)
                timeline = _write_timeline(writes, t0 + fleet.floor_s)
                runs.append(
                    {
                        "all_switched": ok,
                        "switched": len(offsets),
                        "all_switched_over_floor_s": s["max"] if ok else float("nan"),
                        "p50_over_floor_s": s["p50"],
                        "p99_over_floor_s": s["p99"],
                        "min_over_floor_s": s["min"],
                        "all_switched_after_deciding_probe_s": max(after) if after else None,
                        "p50_after_deciding_probe_s": summary(after)["p50"] if after else None,
                        "first_switched_after_deciding_probe_s": min(after) if after else None,
                        "writes_during_outage": len(writes),
                        "operator_cpu_s_during_outage": cpu1 - cpu0,
                        "outage_window_s": done_at - t0,
                        "offsets_s": sorted(round(x, 3) for x in offsets),
                        "write_timeline": timeline,
                        **({"profile": profile} if profile else {}),
                    }
                )
                log(f"mass: writes (s over the floor): {timeline}")
                log(
                    f"mass: outage {r + 1}/{args.repeat}: all switched "
                    f"{s['max']:+.2f} s over the floor (p50 {s['p50']:+.2f}, p99 "
                    f"{s['p99']:+.2f}), {len(writes)} writes"
                )
                if not fleet.wait_all_on("vendor", 300):
                    raise RuntimeError("mass: no failback within 300 s")
    finally:
        fleet.close()
    return {
        "config": {
            "routes": routes,
            "backends": 3,
            "probe": probe,
            "stabilization_seconds": STABILIZATION_S,
            "floor_s": fleet.floor_s,
            "fault": "outage (HTTP 503) on the one vendor fake all routes share",
            "repeats_share_one_operator": True,
        },
        "runs": runs,
    }


def _write_timeline(writes: list[dict[str, Any]], floor_at: float) -> dict[str, Any]:
    """When the operator's writes of each kind reached the API server (first, median, last;
    seconds relative to outage start + floor) and how long the server took (median)."""
    from datetime import datetime

    from bench.stats import percentile

    def at(event: dict[str, Any], field: str) -> float:
        stamp = event.get(field, "1970-01-01T00:00:00Z")
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    kinds: dict[str, list[tuple[float, float]]] = {}
    for w in writes:
        kind = write_kind(w)
        received = at(w, "requestReceivedTimestamp")
        kinds.setdefault(kind, []).append((received - floor_at, at(w, "stageTimestamp") - received))
    return {
        kind: {
            "n": len(v),
            "first": round(min(x for x, _ in v), 3),
            "p50": round(percentile([x for x, _ in v], 50), 3),
            "last": round(max(x for x, _ in v), 3),
            "server_p50_ms": round(1000 * percentile([d for _, d in v], 50), 1),
        }
        for kind, v in kinds.items()
    }
