"""What every scenario needs: fakes in their own processes, a Service watch, the operator
process with its own identity, fleets of routes, and machine facts."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from modelroute.settings import Settings
from tests.harness.apiserver import REPO_ROOT, Cluster, Identity
from tests.harness.kube import GROUP, PLURAL, VERSION
from tests.harness.operator import OperatorProcess

VENDOR_KEY = "sk-bench-vendor-5e4d3c2b1a"
OPERATOR_USER = "modelroute-operator-bench"
# Target Services (with selectors) and the fakes behind each backend.
BACKENDS = (
    # name, priority, target Service, port, model
    ("vendor", 0, "vendor-egress", 8080, "gpt-4o"),
    ("inhouse", 1, "llama-vllm", 8000, "llama-3.1-70b-instruct"),
    ("alt", 2, "alt-vllm", 8000, "mixtral-8x7b-instruct"),
)
SELECTOR_TO_BACKEND = {(("app", svc),): name for name, _, svc, _, _ in BACKENDS}
# The operator under test runs from the project's own environment when it exists (what
# `make install` builds), not from the bench environment that holds litellm and matplotlib.
OPERATOR_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


def log(text: str) -> None:
    """A progress line on stderr, stamped with the wall clock."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# A /metrics scrape may take this long (seconds) before the benchmark gives up on it.
SCRAPE_TIMEOUT_S = 120.0

# -- fakes -----------------------------------------------------------------------------------


class FakeProcess:
    """One fake OpenAI backend in its own process (bench.fakehost), controlled over HTTP."""

    def __init__(
        self, name: str, model: str, api_key: str | None = None, extra_ports: int = 0
    ) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "operator")])
        args = [
            sys.executable,
            "-m",
            "bench.fakehost",
            "--name",
            name,
            "--model",
            model,
            "--extra-ports",
            str(extra_ports),
        ]
        if api_key:
            env["BENCH_FAKE_KEY"] = api_key
            args += ["--api-key-env", "BENCH_FAKE_KEY"]
        self.name = name
        self._proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, env=env, start_new_session=True, cwd=REPO_ROOT
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fake {name} did not start (exit {self._proc.wait()})")
        info = json.loads(line)
        self.url: str = info["url"]
        self.urls: list[str] = info["urls"]
        self.control: str = info["control"]

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.control + path,
            data=data,
            method="POST" if data is not None or path == "/reset" else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def fault(self, fault: str) -> float:
        """Switch the fault; returns time.time() taken just *before* the request was sent
        (the earliest moment the outage can have started: overheads are never understated)."""
        started = time.time()
        self._call("/fault", {"fault": fault})
        return started

    def stats(self) -> dict[str, Any]:
        return self._call("/stats")

    def reset(self) -> None:
        self._call("/reset", {})

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


# -- the API server, raw ---------------------------------------------------------------------


@dataclass
class RawApi:
    """Token + CA access to the API server for streaming watches (no client-side models)."""

    server: str
    token: str
    context: ssl.SSLContext

    @classmethod
    def admin(cls, cluster: Cluster) -> RawApi:
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        token = config["users"][0]["user"]["token"]
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster.ca_data or "").decode()
        )
        return cls(cluster.server, token, context)

    def open(self, path: str, timeout: float = 30.0) -> Any:
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        return urllib.request.urlopen(request, context=self.context, timeout=timeout)

    def get(self, path: str) -> dict[str, Any]:
        with self.open(path) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result


def backend_of(service: dict[str, Any]) -> str | None:
    """Which backend a stable Service's selector mirrors (None: no selector we know)."""
    selector = (service.get("spec") or {}).get("selector") or {}
    return SELECTOR_TO_BACKEND.get(tuple(sorted(selector.items())))


# Seconds without a watch event, after events came during a wait that is still unmet, before
# the watch is re-listed (ServiceWatch._resync). Longer than any probe interval the benchmarks
# use, so a route that switches one probe after the others is waited for, not re-listed.
WATCH_STALL_S = 15.0


class ServiceWatch:
    """A WATCH on the Services of one namespace, in a thread: when each stable Service's
    selector started pointing at which backend, stamped with time.time() at receipt.

    Raw JSON lines (no kubernetes client models), so thousands of events cost little; the
    stamp is taken before parsing."""

    def __init__(self, api: RawApi, namespace: str, stall_s: float = WATCH_STALL_S) -> None:
        self._api = api
        self._ns = namespace
        self._stall_s = stall_s
        self._cond = threading.Condition()
        self.current: dict[str, str | None] = {}
        self.history: dict[str, list[tuple[float, str | None]]] = {}
        self.events = 0
        self.resyncs = 0  # re-lists after a stall (see _resync)
        self.resync_failures = 0
        self._seen_rv: dict[str, int] = {}  # by name: the newest resourceVersion applied
        self._listed: set[tuple[str, float]] = set()  # (name, stamp) of changes seen by a LIST
        self._stop = threading.Event()
        self._stream: Any = None
        self._last_watch_event = 0.0  # time.time() of the last event the stream delivered
        self._rv = self._relist()
        self._thread = threading.Thread(target=self._run, name="service-watch", daemon=True)
        self._thread.start()

    def _apply(
        self, stamp: float, obj: dict[str, Any], deleted: bool = False, listed: bool = False
    ) -> None:
        meta = obj["metadata"]
        name, rv = meta["name"], int(meta.get("resourceVersion") or 0)
        target = None if deleted else backend_of(obj)
        with self._cond:
            # A re-list, or a stream replaying from an older resourceVersion, must not take a
            # Service back to an older state (its etcd revision orders it).
            if rv and rv <= self._seen_rv.get(name, 0):
                return
            if rv:
                self._seen_rv[name] = rv
            if self.current.get(name, "<unset>") != target:
                self.current[name] = target
                self.history.setdefault(name, []).append((stamp, target))
                if listed:
                    self._listed.add((name, stamp))
            self.events += 1
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            path = (
                f"/api/v1/namespaces/{self._ns}/services?watch=true"
                f"&resourceVersion={self._rv}&timeoutSeconds=600"
            )
            try:
                with self._api.open(path, timeout=700) as stream:
                    self._stream = stream
                    while not self._stop.is_set():
                        line = stream.readline()
                        stamp = time.time()
                        if not line:
                            break
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            self._rv = self._relist()  # expired resourceVersion
                            break
                        self._rv = obj["metadata"]["resourceVersion"]
                        self._last_watch_event = stamp
                        self._apply(stamp, obj, deleted=event["type"] == "DELETED")
            except Exception:
                # Any broken stream (OSError, a truncated chunk, a half line): watch again from
                # the last resourceVersion. A dead thread would leave every later switch unseen.
                if not self._stop.is_set():
                    time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (on watch events, not polling) until ``predicate`` holds; False on timeout."""
        deadline, since = time.monotonic() + timeout, time.time()
        while True:
            with self._cond:
                if predicate():
                    return True
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(min(left, 1.0))
                    if predicate():
                        return True
            if left <= 0:
                self._resync()  # a last look: the stream may have stalled before any event
                with self._cond:
                    return predicate()
            # Events came during this wait (or since the last re-list), then stopped short of
            # it: a stalled stream. One re-list per stall: a wait that is merely slow (no
            # events since) is not re-listed again and again.
            last = self._last_watch_event
            if last > since and time.time() - last > self._stall_s:
                self._resync()
                since = time.time()

    def _relist(self) -> str:
        """Apply a LIST of the namespace's Services; its resourceVersion."""
        listing = self._api.get(f"/api/v1/namespaces/{self._ns}/services")
        stamp = time.time()
        for item in listing["items"]:
            self._apply(stamp, item, listed=True)
        return str(listing["metadata"]["resourceVersion"])

    def _resync(self) -> None:
        """Re-list, and watch again from the listing (outside the lock: the watch thread goes
        on applying what its stream delivers meanwhile).

        Why: under load the API server (1.20) stopped sending to this watcher in the middle of
        a burst and still held the stream open; about one 3,000-route outage in five then
        waited for switches that had happened. Switches seen only here are stamped at the
        re-list, late (:meth:`seen_by_list` tells them apart; the mass scenario times them
        from the audit log), and ``resyncs`` counts re-lists. A failed re-list is counted and
        the wait goes on."""
        self.resyncs += 1
        try:
            self._rv = self._relist()
        except Exception as exc:  # an overloaded API server: the caller waits on
            self.resync_failures += 1
            log(f"service watch: re-list failed: {exc!r}")
            return
        stream = self._stream
        with contextlib.suppress(AttributeError, OSError):
            stream.fp.raw._sock.shutdown(socket.SHUT_RDWR)  # ends the blocked readline

    def seen_by_list(self, name: str, stamp: float) -> bool:
        """True when ``name``'s change stamped ``stamp`` was seen by a LIST, not a watch event
        (after a stall its stamp is the re-list's, later than the change)."""
        with self._cond:
            return (name, stamp) in self._listed

    def count(self, names: list[str], backend: str) -> int:
        with self._cond:
            return sum(1 for n in names if self.current.get(n) == backend)

    def first_since(self, name: str, backend: str, since: float) -> float | None:
        """When ``name`` first pointed at ``backend`` at or after ``since``."""
        with self._cond:
            for stamp, target in self.history.get(name, []):
                if stamp >= since and target == backend:
                    return stamp
        return None


# -- the operator ----------------------------------------------------------------------------


class BenchOperator(OperatorProcess):
    """The operator as a process, from the project's .venv when present."""

    def __init__(
        self,
        identity: Identity,
        workdir: Path,
        namespaces: list[str],
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(identity, workdir, namespaces, extra_args)
        if OPERATOR_PYTHON.exists():
            self._args[0] = str(OPERATOR_PYTHON)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def scrape(
        self, timeout: float = SCRAPE_TIMEOUT_S
    ) -> dict[str, list[tuple[dict[str, str], float]]]:
        """All samples on /metrics, by sample name. A scrape that fails or times out raises
        (an empty one read as "no writes, no probes" once ended the wait for a quiet operator
        at once: at 10,000 routes a scrape during start-up took longer than 5 s)."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples


def write_kind(event: dict[str, Any]) -> str:
    """'verb resource[/subresource]' of an audit event."""
    ref = event.get("objectRef", {})
    sub = ref.get("subresource")
    return f"{event['verb']} {ref.get('resource')}{'/' + sub if sub else ''}"


def lag_buckets(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[float, float]:
    """Cumulative buckets of modelroute_probe_schedule_lag_seconds from a scrape."""
    return {
        float(labels["le"]): value
        for labels, value in samples.get("modelroute_probe_schedule_lag_seconds_bucket", [])
    }


def probe_count(samples: dict[str, list[tuple[dict[str, str], float]]]) -> float:
    """Probes that started so far (one lag observation per probe)."""
    return sum(v for _, v in samples.get("modelroute_probe_schedule_lag_seconds_count", []))


# The operator counts as quiet when it wrote nothing for this long (seconds).
QUIET_S = 3.0
# ... and as steady when it wrote nothing for longer than a status change that decides nothing
# (a counter below its threshold) may wait before it is written: a shorter quiet can be the
# gap between a route's last verdict and its deferred write (bench/notes.md item 9).
STEADY_QUIET_S = Settings().status_defer_seconds + QUIET_S


def writes_total(op: BenchOperator) -> float:
    return sum(v for _, v in op.scrape().get("modelroute_api_writes_total", []))


def wait_quiet(op: BenchOperator, timeout: float, quiet_s: float = QUIET_S) -> float:
    """Wait until the operator has written nothing for ``quiet_s``: its write counter (every
    write it sends, Events included) read twice ``quiet_s`` apart, both scrapes answered,
    unchanged. Returns the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    last, since = writes_total(op), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = writes_total(op)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return time.monotonic() - started
    log("the operator kept writing; going on anyway")
    return time.monotonic() - started


@contextlib.contextmanager
def running_operator(
    cluster: Cluster, identity: Identity, namespaces: list[str], extra_args: tuple[str, ...] = ()
) -> Iterator[BenchOperator]:
    op = BenchOperator(identity, cluster.workdir, namespaces, extra_args)
    try:
        yield op.start(timeout=60)
    finally:
        try:
            op.stop(timeout=30)
        finally:
            op.kill()


_IDENTITY: dict[str, Identity] = {}


def operator_identity(cluster: Cluster) -> Identity:
    """The operator's own user, so the audit log tells its writes apart."""
    if "op" not in _IDENTITY:
        _IDENTITY["op"] = cluster.mint_user(OPERATOR_USER, ["system:masters"])
    return _IDENTITY["op"]


# -- routes ----------------------------------------------------------------------------------


def create_namespace(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}-{random.randrange(16**6):06x}"
    client.CoreV1Api(cluster.api_client()).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def delete_namespace(cluster: Cluster, namespace: str) -> None:
    with contextlib.suppress(client.ApiException):
        client.CoreV1Api(cluster.api_client()).delete_namespace(namespace)


def create_targets(cluster: Cluster, namespace: str, backends: int = 3) -> None:
    """The backends' target Services (with selectors; no Pods needed) and the vendor key."""
    core = client.CoreV1Api(cluster.api_client())
    for _, _, svc, port, _ in BACKENDS[:backends]:
        core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=svc),
                spec=client.V1ServiceSpec(
                    selector={"app": svc},
                    ports=[client.V1ServicePort(port=port, target_port=port, protocol="TCP")],
                ),
            ),
        )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="vendor-key"),
            data={"apiKey": base64.b64encode(VENDOR_KEY.encode()).decode()},
        ),
    )


def route_body(
    namespace: str,
    name: str,
    urls: dict[str, str],
    probe: dict[str, Any],
    stabilization_s: int,
    backends: int = 3,
) -> dict[str, Any]:
    spec_backends = []
    for backend, priority, svc, port, model in BACKENDS[:backends]:
        entry: dict[str, Any] = {
            "name": backend,
            "priority": priority,
            "serviceRef": {"name": svc, "port": port},
            "model": model,
            "endpoint": urls[backend],
        }
        if backend == "vendor":
            entry["authSecretRef"] = {"name": "vendor-key", "key": "apiKey"}
        spec_backends.append(entry)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "service": {"name": f"{name}-llm", "port": 80},
            "backends": spec_backends,
            "probe": probe,
            "failback": {"mode": "Automatic", "stabilizationSeconds": stabilization_s},
        },
    }


def create_routes(cluster: Cluster, bodies: list[dict[str, Any]], workers: int = 8) -> None:
    """Create many routes in parallel (a client per thread)."""
    local = threading.local()

    def create(body: dict[str, Any]) -> None:
        if not hasattr(local, "api"):
            local.api = client.CustomObjectsApi(cluster.api_client())
        local.api.create_namespaced_custom_object(
            GROUP, VERSION, body["metadata"]["namespace"], PLURAL, body
        )

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, bodies))


@dataclass
class Fleet:
    """N routes x 3 backends in one namespace, every backend kind served by one shared fake."""

    cluster: Cluster
    namespace: str
    names: list[str]
    fakes: dict[str, FakeProcess]
    probe: dict[str, Any]
    watch: ServiceWatch
    services: list[str] = field(default_factory=list)

    @property
    def floor_s(self) -> float:
        return float(self.probe["failureThreshold"] * self.probe["intervalSeconds"])

    def on(self, backend: str) -> int:
        return self.watch.count(self.services, backend)

    def wait_all_on(self, backend: str, timeout: float) -> bool:
        return self.watch.wait(lambda: self.on(backend) == len(self.services), timeout)

    def close(self) -> None:
        self.watch.stop()
        for fake in self.fakes.values():
            fake.stop()
        delete_namespace(self.cluster, self.namespace)


def start_fakes(backends: int = 3, extra_ports: int = 0) -> dict[str, FakeProcess]:
    fakes: dict[str, FakeProcess] = {}
    try:
        for name, _, _, _, model in BACKENDS[:backends]:
            key = VENDOR_KEY if name == "vendor" else None
            fakes[name] = FakeProcess(name, model, key, extra_ports)
    except BaseException:
        for fake in fakes.values():
            fake.stop()
        raise
    return fakes


def make_fleet(
    cluster: Cluster,
    prefix: str,
    routes: int,
    probe: dict[str, Any],
    stabilization_s: int,
    distinct: bool = False,
    targets: int = 1,
) -> Fleet:
    """``distinct``: every route probes its own port of each fake (no probe is shared);
    otherwise the routes share ``targets`` URLs per backend, round robin (one shared probe
    each; all routes share one with the default 1)."""
    namespace = create_namespace(cluster, prefix)
    ports = routes if distinct else targets
    fakes = start_fakes(extra_ports=ports - 1)
    create_targets(cluster, namespace)
    names = [f"r{i:05d}" if routes > 9999 else f"r{i:04d}" for i in range(routes)]
    bodies = []
    for i, n in enumerate(names):
        urls = {b: fake.urls[i % ports] for b, fake in fakes.items()}
        bodies.append(route_body(namespace, n, urls, probe, stabilization_s))
    create_routes(cluster, bodies)
    watch = ServiceWatch(RawApi.admin(cluster), namespace)
    return Fleet(
        cluster, namespace, names, fakes, probe, watch, services=[f"{n}-llm" for n in names]
    )


# -- the machine -----------------------------------------------------------------------------


def machine(cluster: Cluster) -> dict[str, Any]:
    import kopf

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kopf": kopf.__version__ if hasattr(kopf, "__version__") else _dist_version("kopf"),
        "platform": platform.platform(),
    }
    with contextlib.suppress(Exception):
        info["kube_apiserver"] = RawApi.admin(cluster).get("/version")["gitVersion"]
    with contextlib.suppress(Exception):
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="modelroute-bench-"))


# -- profiling -------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds (user + system, every thread) of named processes, read at two points.

    Why: on a machine whose cores the operator shares with the API server and etcd, how much
    each spends per routing write says which of them a mass failover waits for."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil  # the bench's environment only: tests import this module too

        self._error = psutil.Error
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}

    def read(self) -> dict[str, float]:
        """CPU seconds so far, by name (a process gone meanwhile is left out)."""
        spent: dict[str, float] = {}
        for name, proc in self._procs.items():
            with contextlib.suppress(self._error):
                times = proc.cpu_times()
                spent[name] = times.user + times.system
        return spent


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process spent between two :meth:`CpuMeter.read` results."""
    return {name: round(after[name] - before[name], 3) for name in before if name in after}


class PySpy:
    """``py-spy record`` on a process for a while (collapsed stacks), started in the background.

    --nonblocking: samples without pausing the process, so the profile barely perturbs the
    numbers it explains."""

    def __init__(self, pid: int, seconds: float, out: Path, rate: int = 200) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait(self, timeout: float = 120) -> Path | None:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        return self.out if self.out.exists() else None


def top_frames(collapsed: Path, limit: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares of the hottest frames in a py-spy raw (collapsed) profile."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaf = frames[-1]
        self_counts[leaf] = self_counts.get(leaf, 0) + count
        for frame in set(frames):
            incl_counts[frame] = incl_counts.get(frame, 0) + count

    def top(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return [(name, round(100 * n / total, 1)) for name, n in ranked]

    return {"self_pct": top(self_counts), "inclusive_pct": top(incl_counts), "samples": total}  # type: ignore[dict-item]
