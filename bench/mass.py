"""mass: N routes x 3 backends sharing one fake vendor that goes down at once.

Per outage: for every route, (when its stable Service points at the fallback, seen on a
WATCH) - (outage start + floor). Reported: the first route, p50, p99 and the last route (all
switched), the API server's own write rate measured just before (bench/writerate.py), the
operator's writes per route by kind, and the goals: first route within floor + 0.25 s, all
within floor + 0.25 s + N / write rate + 0.25 s. Each point of the matrix (routes x probe
interval) has its own fleet and operator; repeats of a point share them, and traffic fails
back between outages.
"""

from __future__ import annotations

import bisect
import random
import time
from typing import Any

from bench.common import (
    BenchOperator,
    CpuMeter,
    Fleet,
    PySpy,
    cpu_between,
    log,
    make_fleet,
    operator_identity,
    running_operator,
    top_frames,
    wait_quiet,
    write_kind,
)
from bench.cpusplit import Split, cpu_split
from bench.stats import median_of_runs, summary
from bench.writerate import WriteRate
from tests.harness.apiserver import REPO_ROOT, WRITE_VERBS, Cluster, audit_time

PROBE = {
    "type": "OpenAIModels",
    "intervalSeconds": 5,
    "timeoutSeconds": 2,
    "failureThreshold": 2,
    "successThreshold": 1,
}
STABILIZATION_S = 1
SIZES = (1000, 3000)
INTERVALS = (1, 2, 5)
QUICK_SIZES = (100,)
QUICK_INTERVALS = (1, 5)
# The goal's slack on each side of the write floor (seconds).
SLACK_S = 0.25


def matrix(args: Any) -> list[tuple[int, int]]:
    """(routes, probe interval) points to run: --routes / --probe-interval pin one axis."""
    sizes = [args.routes] if args.routes else list(QUICK_SIZES if args.quick else SIZES)
    interval = getattr(args, "probe_interval", None)
    intervals = [interval] if interval else list(QUICK_INTERVALS if args.quick else INTERVALS)
    return [(n, i) for n in sizes for i in intervals]


def point_key(
    routes: int, interval: int, split: bool = False, operator_args: tuple[str, ...] = ()
) -> str:
    """A point's name in the results: a --cpu-split run, or one with operator arguments, is a
    point of its own, beside the default one."""
    key = f"{routes}x{interval}s{'-cpusplit' if split else ''}"
    return " ".join((key, *operator_args))


def run(cluster: Cluster, args: Any) -> dict[str, Any]:
    points: dict[str, dict[str, Any]] = {}
    for routes, interval in matrix(args):
        runs = _point(cluster, args, routes, interval)
        split = bool(getattr(args, "cpu_split", False))
        extra = tuple(getattr(args, "operator_arg", ()))
        points[point_key(routes, interval, split, extra)] = {
            "routes": routes,
            "interval_s": interval,
            "floor_s": float(PROBE["failureThreshold"] * interval),
            "quick": args.quick,
            "operator_args": list(extra),
            "cpu_split": split,
            "repeats": len(runs),
            # Summed, not a median: the report marks a point where any run re-listed.
            "watch_resyncs": sum(r.get("watch_resyncs", 0) for r in runs),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "result": median_of_runs([_numbers_only(r) for r in runs]),
            "runs": runs,
        }
    headline = next(iter(points.values()))
    return {
        "config": {
            "routes": headline["routes"],
            "backends": 3,
            "probe": {**PROBE, "intervalSeconds": headline["interval_s"]},
            "stabilization_seconds": STABILIZATION_S,
            "floor_s": headline["floor_s"],
            "fault": "outage (HTTP 503) on the one vendor fake all routes share",
            "repeats_share_one_operator": True,
        },
        "points": points,
        "runs": headline["runs"],
    }


def merge(previous: dict[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any]:
    """Keep the points of an earlier run that this run did not measure again, and the
    baseline (the previous version's figures, for comparison)."""
    previous = previous or {}
    # Keyed again as this version keys them: a point run with operator arguments before they
    # were part of its key must not take the default point's place.
    old = {_key_of(p): p for p in (previous.get("points") or {}).values()}
    entry["points"] = {
        **{k: v for k, v in old.items() if k not in entry["points"]},
        **entry["points"],
    }
    if previous.get("baseline"):
        entry["baseline"] = previous["baseline"]
    return entry


def _key_of(point: dict[str, Any]) -> str:
    args = tuple(point.get("operator_args") or ())
    return point_key(point["routes"], point["interval_s"], bool(point.get("cpu_split")), args)


def _numbers_only(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if not isinstance(v, list)}


def _point(cluster: Cluster, args: Any, routes: int, interval: int) -> list[dict[str, Any]]:
    split = bool(getattr(args, "cpu_split", False))
    with cpu_split(cluster.component_pids().values(), split) as placed:
        return _measure(cluster, args, routes, interval, placed)


def _measure(
    cluster: Cluster, args: Any, routes: int, interval: int, placed: Split | None
) -> list[dict[str, Any]]:
    extra = tuple(getattr(args, "operator_arg", ()))
    key = point_key(routes, interval, placed is not None, extra)
    probe = {**PROBE, "intervalSeconds": interval}
    identity = operator_identity(cluster)
    rate = WriteRate(cluster, routes)
    fleet = make_fleet(cluster, "bench-mass", routes, probe, STABILIZATION_S)
    runs: list[dict[str, Any]] = []
    log(f"mass {key}: {routes} routes created in {fleet.namespace}")
    try:
        with running_operator(cluster, identity, [fleet.namespace], extra) as op:
            if placed is not None:
                placed.place(op.pid, *(fake.pid for fake in fleet.fakes.values()))
            if not fleet.wait_all_on("vendor", 600 + routes / 10):
                raise RuntimeError(f"mass: only {fleet.on('vendor')}/{routes} routed")
            for r in range(args.repeat):
                wait_quiet(op, 300)
                api = rate.measure()
                log(f"mass: API server write rate {api}")
                wait_quiet(op, 60)
                if not fleet.wait_all_on("vendor", 120):
                    # A loaded machine can time out the vendor's probe and fail over on its own.
                    log(f"mass: only {fleet.on('vendor')}/{routes} on the vendor; skipped")
                    continue
                time.sleep(random.uniform(0, interval))  # a random phase of the probe schedule
                spy = None
                if getattr(args, "profile", False):
                    name = f"profile-mass-{key.replace(' ', '_')}-{r + 1}.txt"
                    spy = PySpy(op.pid, fleet.floor_s + 12, REPO_ROOT / "bench" / "results" / name)
                outcome = _outage(cluster, fleet, op, identity.username, api)
                if outcome is None:
                    log("mass: no route switched after the outage began (switched before?)")
                    fleet.fakes["vendor"].fault("none")
                    continue
                if spy is not None and (path := spy.wait()) is not None:
                    outcome["profile"] = top_frames(path, 20)
                runs.append(outcome)
                o = outcome
                log(
                    f"mass {key}: outage {r + 1}/{args.repeat}: first "
                    f"{o['min_over_floor_s']:+.2f} s, all {o['all_switched_over_floor_s']:+.2f} s "
                    f"over the floor; after the deciding probe "
                    f"{o['all_switched_after_deciding_probe_s']:.2f} s "
                    f"(write floor {o['write_floor_s']:.2f} s); per route {o['writes_per_route']}"
                )
                if not fleet.wait_all_on("vendor", 300):
                    raise RuntimeError("mass: no failback within 300 s")
    finally:
        fleet.close()
        rate.close()
    return runs


def _outage(
    cluster: Cluster, fleet: Fleet, op: BenchOperator, username: str, api: dict[str, Any]
) -> dict[str, Any] | None:
    routes = len(fleet.services)
    vendor = fleet.fakes["vendor"]
    reconciles0 = _reconciles(op)
    meter = CpuMeter({"operator": op.pid, **cluster.component_pids()})
    cpu0 = meter.read()
    resyncs = fleet.watch.resyncs
    t0 = vendor.fault("outage")
    ok = fleet.wait_all_on("inhouse", fleet.floor_s + 120)
    done_at = time.time()
    spent = cpu_between(cpu0, meter.read())
    reconciled = _reconciles(op) - reconciles0
    # All routes share the vendor's probe, so the fake saw one probe per interval: the
    # threshold-th after the outage began decided. Time from it to each switch does not
    # depend on where in the interval the outage began. (Read now: the fake keeps only its
    # latest probe times.)
    arrivals = sorted(t for t in vendor.stats()["probe_times"] if t >= t0)
    threshold = fleet.probe["failureThreshold"]
    deciding = arrivals[threshold - 1] if len(arrivals) >= threshold else None
    writes, seen = _settled_writes(cluster, username, t0, routes)
    landed = _routing_landed(writes)
    offsets = []
    for svc in fleet.services:
        at = fleet.watch.first_since(svc, "inhouse", t0)
        if at is not None and fleet.watch.seen_by_list(svc, at) and svc in landed:
            at = landed[svc]  # a stalled watch's re-list saw it late: when the patch landed
        if at is not None:
            offsets.append(at - t0 - fleet.floor_s)
    after = [o + t0 + fleet.floor_s - deciding for o in offsets] if deciding else []
    vendor.fault("none")
    if not offsets:
        return None
    s = summary(offsets)
    write_floor = routes / api["writes_per_s"]
    last = s["max"] if ok else float("nan")
    last_after = max(after) if after else float("nan")
    return {
        "all_switched": ok,
        "switched": len(offsets),
        "all_switched_over_floor_s": last,
        "p50_over_floor_s": s["p50"],
        "p99_over_floor_s": s["p99"],
        "min_over_floor_s": s["min"],
        "all_switched_after_deciding_probe_s": last_after,
        "p50_after_deciding_probe_s": summary(after)["p50"] if after else None,
        "first_switched_after_deciding_probe_s": min(after) if after else None,
        "api_writes_per_s": api["writes_per_s"],
        "api_patch_p50_ms": api["latency_p50_ms"],
        "write_floor_s": write_floor,
        # Goals as margins (<= 0: met), so that medians over runs stay meaningful.
        "first_over_goal_s": s["min"] - SLACK_S,
        "goal_all_s": SLACK_S + write_floor + SLACK_S,
        "all_over_goal_s": last - (SLACK_S + write_floor + SLACK_S),
        "ratio_over_floor_to_write_floor": last / write_floor,
        "ratio_after_deciding_to_write_floor": last_after / write_floor,
        "writes_during_outage": len(writes),
        "writes_per_route": _per_route(writes, routes),
        # Reconciles per route from the outage until the last switch: one decides; a failed
        # probe before it that decides nothing is deferred (core/health.decides_nothing).
        "reconciles_per_route": reconciled / routes,
        "operator_cpu_s_during_outage": spent.get("operator"),
        "operator_cpu_ms_per_route": _per_route_ms(spent, ("operator",), routes),
        # From the outage until the last switch (the floor's probing included, most status
        # writes and Events not).
        "cpu_s_during_outage": spent,
        "control_plane_cpu_ms_per_route": _per_route_ms(spent, ("etcd", "kube-apiserver"), routes),
        "control_plane_cpu_ms_per_write_measured": api.get("control_plane_cpu_ms_per_write"),
        "outage_window_s": done_at - t0,
        # Re-lists of a stalled watch: switches seen only through one are timed from the audit
        # log, and the CPU figures above cover the wait until the re-list.
        "watch_resyncs": fleet.watch.resyncs - resyncs,
        "offsets_s": sorted(round(x, 3) for x in offsets),
        "write_timeline": _write_timeline(writes, t0 + fleet.floor_s),
        "requests_in_window": _requests_until(seen, username, done_at),
        "routing_in_flight": _in_flight(writes, "patch services"),
    }


def _in_flight(writes: list[dict[str, Any]], kind: str) -> dict[str, float]:
    """How many writes of ``kind`` the API server held, seen as each arrived (audit times):
    it spends less CPU a write with more in flight (bench/notes.md item 16)."""
    spans = [
        (audit_time(w, "requestReceivedTimestamp"), audit_time(w, "stageTimestamp"))
        for w in writes
        if write_kind(w) == kind
    ]
    if not spans:
        return {}
    starts = sorted(start for start, _ in spans)
    ends = sorted(end for _, end in spans)
    # Arrived by then, minus answered by then (the arriving one counted).
    held = [bisect.bisect_right(starts, t) - bisect.bisect_right(ends, t) for t in starts]
    return summary([float(n) for n in held])


def _requests_until(events: list[dict[str, Any]], username: str, end: float) -> dict[str, int]:
    """Every request among ``events`` the API server received by ``end``, by who sent it (the
    operator or anyone else) and kind: what it served besides the routing writes."""
    counts: dict[str, int] = {}
    for event in events:
        if audit_time(event) > end:
            continue
        who = "operator" if event["user"].get("username") == username else "other"
        key = f"{who} {write_kind(event)}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _reconciles(op: BenchOperator) -> float:
    """The operator's reconciles so far (its modelroute_reconciles_total)."""
    return sum(v for _, v in op.scrape().get("modelroute_reconciles_total", []))


def _per_route_ms(spent: dict[str, float], names: tuple[str, ...], routes: int) -> float | None:
    """Milliseconds of CPU per route of the named processes; None when one was not measured
    (an existing cluster's control plane, a process gone)."""
    if any(name not in spent for name in names):
        return None
    return 1000 * sum(spent[name] for name in names) / routes


def _settled_writes(
    cluster: Cluster, username: str, since: float, routes: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The operator's writes since ``since``, once its status writes and Events have followed
    the routing writes (at most 30 s more, plus 1 s per 100 routes: at 10,000 routes the
    status writes go on for a minute and more after the last switch, bench/notes.md item 14),
    and every request since then of anyone (the same read of the audit log)."""
    deadline = time.monotonic() + 30 + routes / 100
    while True:
        try:
            seen = cluster.audit_events(since=since)
        except ValueError:  # the API server was writing the audit log's last line
            time.sleep(0.5)
            continue
        writes = [
            e
            for e in seen
            if e["user"].get("username") == username and e.get("verb") in WRITE_VERBS
        ]
        kinds = [write_kind(w) for w in writes]
        done = min(kinds.count("patch modelroutes/status"), kinds.count("create events"))
        if done >= routes or time.monotonic() > deadline:
            return writes, seen
        time.sleep(2)


def _routing_landed(writes: list[dict[str, Any]]) -> dict[str, float]:
    """When each Service's first accepted routing write (PATCH) was answered, by name."""
    landed: dict[str, float] = {}
    for w in writes:
        name = (w.get("objectRef") or {}).get("name")
        accepted = 200 <= (w.get("responseStatus") or {}).get("code", 0) < 300
        if write_kind(w) == "patch services" and name and accepted:
            at = audit_time(w, "stageTimestamp")
            landed[name] = min(at, landed.get(name, at))
    return landed


def _per_route(writes: list[dict[str, Any]], routes: int) -> dict[str, float]:
    names = {
        "patch services": "routing",
        "patch modelroutes/status": "status",
        "create events": "events",
    }
    counts = {label: 0 for label in names.values()}
    for w in writes:
        label = names.get(write_kind(w), "other")
        counts[label] = counts.get(label, 0) + 1
    return {label: round(n / routes, 3) for label, n in counts.items()}


def _write_timeline(writes: list[dict[str, Any]], floor_at: float) -> dict[str, Any]:
    """When the operator's writes of each kind reached the API server (first, median, last;
    seconds relative to outage start + floor) and how long the server took (median)."""
    from bench.stats import percentile

    kinds: dict[str, list[tuple[float, float]]] = {}
    for w in writes:
        kind = write_kind(w)
        received = audit_time(w, "requestReceivedTimestamp")
        answered = audit_time(w, "stageTimestamp")
        kinds.setdefault(kind, []).append((received - floor_at, answered - received))
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
