"""peer: the same vendor outage seen by our operator and by LiteLLM's Router, in one run.

Both probe the same two fake backends (vendor, in-house) every second with a chat completion
(our ``OpenAIChat`` probe; LiteLLM's health check is a chat completion too), timeout 1 s.
LiteLLM marks a deployment unhealthy on one failed health check; the equal setting for us is
``failureThreshold: 1`` (route ``peer-t1``). The acceptance setting ``failureThreshold: 2`` runs
beside it (route ``peer-t2``) for reference.

- ours.detect_s: outage start until the stable Service of ``peer-t1`` points at the in-house
  backend (WATCH).
- peer.detect_s: outage start until the last request of the Router's steady request load
  (``rps`` per second, marked with a header) reached the dead vendor fake; "stopped" means
  none arrived for ``quiet_after_s`` afterwards.
- CPU per probe: each process's CPU time over a window with probes only (no request load),
  divided by the probes it sent in that window (ours: /metrics; LiteLLM: its own count).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import psutil

from bench.common import (
    REPO_ROOT,
    VENDOR_KEY,
    RawApi,
    ServiceWatch,
    create_namespace,
    create_routes,
    create_targets,
    delete_namespace,
    log,
    operator_identity,
    probe_count,
    route_body,
    running_operator,
    start_fakes,
)
from tests.harness.apiserver import Cluster

INTERVAL_S = 1
TIMEOUT_S = 1
RPS = 20
QUIET_S = 20.0
QUIET_AFTER_S = 5.0


def probe(threshold: int) -> dict[str, Any]:
    return {
        "type": "OpenAIChat",
        "intervalSeconds": INTERVAL_S,
        "timeoutSeconds": TIMEOUT_S,
        "failureThreshold": threshold,
        "successThreshold": 1,
    }


class Peer:
    """The LiteLLM runner process (bench.peer_litellm)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "operator")])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.peer_litellm", json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO_ROOT,
            text=True,
            start_new_session=True,
        )
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                with self._cond:
                    self.events.append(json.loads(line))
                    self._cond.notify_all()
        with self._cond:
            self.events.append({"event": "exit"})
            self._cond.notify_all()

    def wait(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if event["event"] == name:
                        return event
                    if event["event"] == "exit":
                        raise RuntimeError(f"peer exited before {name!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"peer: no {name!r} within {timeout} s")
                self._cond.wait(left)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stop(self) -> dict[str, Any] | None:
        try:
            self.send("stop")
            done = self.wait("done", 20)
        except (RuntimeError, OSError):
            done = None
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return done


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run_once(
    cluster: Cluster, cooldowns: bool, quiet_s: float, op: Any, ctx: dict[str, Any]
) -> dict[str, Any]:
    fakes, watch = ctx["fakes"], ctx["watch"]
    vendor = fakes["vendor"]
    cfg = {
        "vendor_url": fakes["vendor"].url,
        "inhouse_url": fakes["inhouse"].url,
        "vendor_key": VENDOR_KEY,
        "interval_s": INTERVAL_S,
        "timeout_s": TIMEOUT_S,
        "rps": RPS,
        "quiet_s": quiet_s,
        "cooldowns": cooldowns,
        "max_s": 300,
    }
    peer = Peer(cfg)
    try:
        peer.wait("ready", 120)
        # Our CPU over the same quiet window as the peer's own.
        ours_cpu0, ours_probes0 = _cpu(op.pid), probe_count(op.scrape())
        quiet = peer.wait("quiet", quiet_s + 30)
        ours_cpu1, ours_probes1 = _cpu(op.pid), probe_count(op.scrape())
        peer.send("traffic")
        peer.wait("traffic", 10)
        time.sleep(3)
        before = vendor.stats()
        if not before["traffic_total"]:
            raise RuntimeError("peer: no request load reached the vendor before the outage")
        time.sleep(__import__("random").uniform(0, INTERVAL_S))
        t0 = vendor.fault("outage")
        if not watch.wait(lambda: watch.current.get("peer-t1-llm") == "inhouse", 30):
            raise RuntimeError("peer: our route did not fail over within 30 s")
        watch.wait(lambda: watch.current.get("peer-t2-llm") == "inhouse", 30)
        # Until no request of the load has reached the vendor for QUIET_AFTER_S (or 30 s).
        deadline = time.time() + 30
        last = None
        while time.time() < deadline:
            stats = vendor.stats()
            last = stats["traffic_last_at"]
            if last is not None and last >= t0 and time.time() - last >= QUIET_AFTER_S:
                break
            if last is not None and last < t0 and time.time() - t0 >= QUIET_AFTER_S:
                break  # nothing reached the vendor after the outage started at all
            time.sleep(0.2)
        stopped = last is not None and time.time() - last >= QUIET_AFTER_S
        after = vendor.stats()
        done = None
    finally:
        done = peer.stop()
        vendor.fault("none")
    ours_t1 = watch.first_since("peer-t1-llm", "inhouse", t0)
    ours_t2 = watch.first_since("peer-t2-llm", "inhouse", t0)
    peer_detect = max(0.0, last - t0) if stopped and last is not None else None
    ours_detect = ours_t1 - t0 if ours_t1 else None
    ours_probes = ours_probes1 - ours_probes0
    return {
        "peer_detect_s": peer_detect,
        "ours_detect_s": ours_detect,
        "ours_t2_detect_s": ours_t2 - t0 if ours_t2 else None,
        "ratio_peer_over_ours": peer_detect / ours_detect
        if peer_detect is not None and ours_detect
        else None,
        "peer_cpu_ms_per_probe": 1000 * quiet["cpu_s"] / quiet["probes"]
        if quiet["probes"]
        else None,
        "ours_cpu_ms_per_probe": 1000 * (ours_cpu1 - ours_cpu0) / ours_probes
        if ours_probes
        else None,
        "peer_requests_to_dead_vendor": after["traffic_while_faulted"]
        - before["traffic_while_faulted"],
        "peer_requests": (done or {}).get("sent"),
        "peer_failed_requests": (done or {}).get("failed"),
        "peer_served_by": (done or {}).get("served_by"),
    }


def run(cluster: Cluster, args: Any) -> dict[str, Any]:
    quiet_s = 10.0 if args.quick else QUIET_S
    fakes = start_fakes(2)
    namespace = create_namespace(cluster, "bench-peer")
    identity = operator_identity(cluster)
    runs: dict[str, list[dict[str, Any]]] = {"health_checks": [], "default_cooldowns": []}
    try:
        create_targets(cluster, namespace, backends=2)
        urls = {name: fake.url for name, fake in fakes.items()}
        create_routes(
            cluster,
            [route_body(namespace, f"peer-t{t}", urls, probe(t), 1, backends=2) for t in (1, 2)],
        )
        watch = ServiceWatch(RawApi.admin(cluster), namespace)
        ctx = {"fakes": fakes, "watch": watch}
        with running_operator(cluster, identity, [namespace]) as op:
            for _ in range(args.repeat):
                for variant, cooldowns in (("health_checks", False), ("default_cooldowns", True)):
                    if not watch.wait(
                        lambda: all(
                            watch.current.get(f"peer-t{t}-llm") == "vendor" for t in (1, 2)
                        ),
                        60,
                    ):
                        raise RuntimeError("peer: our routes did not fail back to the vendor")
                    time.sleep(2)
                    result = run_once(cluster, cooldowns, quiet_s, op, ctx)
                    runs[variant].append(result)
                    log(f"peer ({variant}): {json.dumps(result)}")
        watch.stop()
    finally:
        for fake in fakes.values():
            fake.stop()
        delete_namespace(cluster, namespace)
    # The headline runs: health checks drive routing (LiteLLM's passive cooldowns off), so
    # both sides detect by probing at the same interval. The other variant is kept beside it.
    merged = []
    for main_run, other in zip(runs["health_checks"], runs["default_cooldowns"], strict=True):
        merged.append(
            main_run
            | {
                "with_default_cooldowns": {
                    k: other[k]
                    for k in ("peer_detect_s", "ours_detect_s", "peer_requests_to_dead_vendor")
                }
            }
        )
    return {
        "config": {
            "peer": "litellm.Router",
            "peer_version": _version("litellm"),
            "probe_interval_s": INTERVAL_S,
            "probe_timeout_s": TIMEOUT_S,
            "ours_probe": probe(1),
            "request_load_rps": RPS,
            "quiet_window_s": quiet_s,
            "fault": "outage (HTTP 503) on the vendor fake",
        },
        "runs": merged,
    }


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
