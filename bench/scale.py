"""scale: N routes x 3 backends (10,000 sharing 30 targets by default) at a 5 s interval,
from a cold start through a steady window.

Measured on the operator process: startup_s (process start until every stable Service points
at its vendor, seen on a WATCH), CPU in cores and per probe over the steady window (psutil),
peak RSS, probe schedule lag p99 (from its /metrics histogram, window only), and its writes per
minute in the window, from the API server's audit log under the operator's own identity.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import psutil

from bench.common import (
    QUIET_S,
    REPO_ROOT,
    STEADY_QUIET_S,
    PySpy,
    lag_buckets,
    log,
    make_fleet,
    operator_identity,
    probe_count,
    running_operator,
    top_frames,
    wait_quiet,
    write_kind,
)
from bench.stats import bucket_delta, histogram_quantile
from tests.harness.apiserver import WRITE_VERBS, Cluster

PROBE = {
    "type": "OpenAIModels",
    "intervalSeconds": 5,
    "timeoutSeconds": 2,
    "failureThreshold": 3,
    "successThreshold": 2,
}
STABILIZATION_S = 60


class Sampler:
    """RSS and CPU of one process every ``period`` seconds, in a thread."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        self.proc = psutil.Process(pid)
        self.period = period
        self.peak_rss = 0
        self.series: list[tuple[float, float, float]] = []  # (t, rss MiB, cpu s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                cpu = self.proc.cpu_times()
            except psutil.Error:
                return
            self.peak_rss = max(self.peak_rss, rss)
            self.series.append((time.time(), rss / 2**20, cpu.user + cpu.system))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def run_once(
    cluster: Cluster,
    routes: int,
    steady_s: float,
    settle_s: float,
    profile: bool = False,
    targets: int | None = None,
    operator_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One cold start and steady window; ``targets``: endpoints per backend the routes share
    (None: every route its own, no probe shared)."""
    identity = operator_identity(cluster)
    fleet = make_fleet(
        cluster,
        "bench-scale",
        routes,
        PROBE,
        STABILIZATION_S,
        distinct=targets is None,
        targets=targets or 1,
    )
    log(f"scale: {routes} routes created in {fleet.namespace}")
    try:
        started = time.time()
        with running_operator(cluster, identity, [fleet.namespace], operator_args) as op:
            sampler = Sampler(op.pid)
            try:
                if not fleet.wait_all_on("vendor", 600 + routes / 20):
                    raise RuntimeError(
                        f"scale: only {fleet.on('vendor')}/{routes} routed after 600 s"
                    )
                routed_at = max(
                    fleet.watch.first_since(s, "vendor", started) or 0 for s in fleet.services
                )
                startup_s = routed_at - started
                log(f"scale: all {routes} routed {startup_s:.1f} s after operator start")
                # The start-up's status writes and Events follow the routing writes: the
                # steady window begins once they are done, deferred status changes included.
                waited_s = wait_quiet(op, 600, STEADY_QUIET_S)
                log(f"scale: steady {waited_s:.1f} s after all were routed")
                # Reported as before (QUIET_S after the last start-up write), comparable with
                # the results of the 3 s wait.
                quiet_s = waited_s - (STEADY_QUIET_S - QUIET_S)
                time.sleep(settle_s)
                proc = psutil.Process(op.pid)
                before = op.scrape()
                spy = None
                if profile:
                    out = REPO_ROOT / "bench" / "results" / "profile-scale.txt"
                    spy = PySpy(op.pid, min(steady_s, 60), out)
                cpu0, t0 = cpu_seconds(proc), time.time()
                time.sleep(steady_s)
                cpu1, t1 = cpu_seconds(proc), time.time()
                after = op.scrape()
                fetch_started = time.monotonic()
                op.get("/metrics")
                fetch_s = time.monotonic() - fetch_started
                top = top_frames(path, 20) if spy and (path := spy.wait()) else None
            finally:
                sampler.stop()
        writes = cluster.audit_events(username=identity.username, verbs=WRITE_VERBS, since=t0)
        writes = [w for w in writes if _received(w) <= t1]
        kinds = collections.Counter(write_kind(w) for w in writes)
        startup_writes = cluster.audit_events(
            username=identity.username, verbs=WRITE_VERBS, since=started
        )
        window = t1 - t0
        probes = probe_count(after) - probe_count(before)
        lag = bucket_delta(lag_buckets(after), lag_buckets(before))
        return {
            "startup_s": startup_s,
            # Re-lists of a stalled watch: start-up times seen through one are late.
            "watch_resyncs": fleet.watch.resyncs,
            # Operator CPU time (s) until every route was routed: unlike startup_s, barely
            # moved by other processes on a shared machine.
            "startup_cpu_s": next(
                (cpu for t, _, cpu in sampler.series if t >= routed_at),
                sampler.series[-1][2] if sampler.series else None,
            ),
            # All routed until the operator's writes stopped (start-up statuses and Events).
            "quiet_after_routed_s": quiet_s,
            "cpu_cores": (cpu1 - cpu0) / window,
            "cpu_ms_per_probe": 1000 * (cpu1 - cpu0) / probes if probes else None,
            "probes_per_s": probes / window,
            "rss_mib": sampler.peak_rss / 2**20,
            "rss_steady_mib": sampler.series[-1][1] if sampler.series else None,
            "probe_lag_p99_s": histogram_quantile(0.99, lag),
            "probe_lag_p50_s": histogram_quantile(0.50, lag),
            "steady_writes_per_min": len(writes) / (window / 60),
            "steady_writes_by_kind": dict(kinds),
            "startup_writes": len(startup_writes) - len(writes),
            "startup_writes_by_kind": dict(
                collections.Counter(write_kind(w) for w in startup_writes if _received(w) < t0)
            ),
            "steady_window_s": window,
            # One GET /metrics (every series of every route), as a Prometheus scrape sees it.
            "metrics_fetch_s": fetch_s,
            **({"profile": top} if top else {}),
            "series": [
                (round(t - started, 2), round(rss, 1), round(cpu, 3))
                for t, rss, cpu in sampler.series
            ],
        }
    finally:
        fleet.close()


def _received(event: dict[str, Any]) -> float:
    from datetime import datetime

    stamp = event.get("requestReceivedTimestamp", "1970-01-01T00:00:00Z")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run(cluster: Cluster, args: Any) -> dict[str, Any]:
    routes = args.routes or (300 if args.quick else 10000)
    # 10 endpoints per backend kind: 30 targets shared by all routes (--distinct: none shared).
    targets = None if getattr(args, "distinct", False) else 10
    steady_s = args.steady_seconds or (30.0 if args.quick else 180.0)
    settle_s = 10.0 if args.quick else 20.0
    hold = getattr(args, "first_status_hold", None)
    operator_args = ("--first-status-hold-seconds", str(hold)) if hold is not None else ()
    operator_args += tuple(getattr(args, "operator_arg", ()))
    runs = []
    for r in range(args.repeat):
        log(f"scale: run {r + 1}/{args.repeat} ({routes} routes, steady {steady_s:.0f} s)")
        runs.append(
            run_once(cluster, routes, steady_s, settle_s, args.profile, targets, operator_args)
        )
        log(f"scale: { ({k: v for k, v in runs[-1].items() if k != 'series'}) }")
    return {
        "config": {
            "routes": routes,
            "backends": 3,
            "probe": PROBE,
            "steady_seconds": steady_s,
            "operator_args": list(operator_args),
            "settle_seconds": settle_s,
            "probes_per_s_nominal": (routes if targets is None else targets)
            * 3
            / PROBE["intervalSeconds"],
            "targets": "every backend of every route has its own endpoint (a port of its "
            "fake): no probe is shared, the worst case for probing"
            if targets is None
            else f"{targets * 3} endpoints ({targets} ports of each of the 3 fakes), shared "
            "round robin by the routes: one probe loop per endpoint",
        },
        "runs": runs,
    }
