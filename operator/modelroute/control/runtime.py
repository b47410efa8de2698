"""Everything the operator runs besides kopf: API client, probe session, controller, endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import kopf
from aiohttp import web
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

from modelroute.control import prelist, watching
from modelroute.control.cachereads import urgent_get, urgent_list
from modelroute.control.controller import Controller
from modelroute.control.discovery import DriverAvailability, discover_drivers, log_drivers
from modelroute.control.election import elector
from modelroute.control.heap import HeapKeeper, map_large_blocks
from modelroute.control.route import Deps, reconcile_slot_count
from modelroute.control.scrape import MetricsEndpoint
from modelroute.kube.cache import MAX_UNSUBSCRIBED, ObjectCache, slim_object, slim_secret
from modelroute.kube.client import SECRETS, KubeClient, ObjectKind
from modelroute.kube.credentials import Credentials, load_credentials
from modelroute.kube.events import EventRecorder
from modelroute.kube.lanes import Lanes
from modelroute.kube.reachability import ApiReachability
from modelroute.kube.watch import Watches
from modelroute.metrics import Metrics
from modelroute.probing import prober
from modelroute.probing.hub import ProbeHub
from modelroute.probing.session import TrustStore
from modelroute.routing.ownership import made_by_operator
from modelroute.settings import Settings
from modelroute.version import version

logger = logging.getLogger("modelroute.control.runtime")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def utc_now() -> datetime:
    """The wall clock, timezone-aware (the one place it is read)."""
    return datetime.now(UTC)


@dataclass
class Runtime:
    """The running operator's parts, started on kopf's start-up and stopped on its clean-up."""

    settings: Settings
    controller: Controller
    deps: Deps
    kube: KubeClient
    probes: ProbeHub
    runners: list[web.AppRunner]
    drivers: DriverAvailability
    credentials: Credentials  # loaded once: the watches share them (token refresh included)
    ready: bool = False
    elector: asyncio.Task[None] | None = None
    heap: HeapKeeper | None = None
    scrape: MetricsEndpoint | None = None
    recheck: asyncio.Task[None] | None = None
    watches: Watches | None = None  # of routing objects and Secrets, for the caches

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        """Find the drivers it serves, build the parts, open the metrics and health endpoints."""
        refresh = settings.api_credentials_refresh_seconds
        credentials = load_credentials(settings.kubeconfig, refresh_seconds=refresh)
        kube = KubeClient(
            credentials,
            field_manager=settings.field_manager,
            timeout_seconds=settings.api_timeout_seconds,
            max_in_flight=settings.api_max_in_flight,
            routing_extra_in_flight=settings.api_routing_extra_in_flight,
        )
        try:
            drivers = await discover_drivers(kube, settings.routing_drivers)
        except BaseException:
            await kube.close()  # kopf retries the start-up handler: leave nothing open
            raise
        log_drivers(drivers)
        metrics = Metrics()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=metrics.registry)
        deps, probes = _build_deps(settings, kube, metrics, drivers, kube.lanes)
        controller = Controller(deps, leading=not settings.leader_election)
        runtime = cls(
            settings=settings,
            controller=controller,
            deps=deps,
            kube=kube,
            probes=probes,
            runners=[],
            drivers=drivers,
            credentials=credentials,
        )
        try:
            await runtime._open()
        except BaseException:
            # kopf tries the start again: nothing of this attempt may be left (a bound port,
            # a Lease held by a leftover elector, a second gc hook).
            await runtime.stop()
            raise
        log_started(settings)
        return runtime

    async def _open(self) -> None:
        """Elect, keep the heap, and open the metrics and health endpoints."""
        settings = self.settings
        if settings.leader_election:
            self.elector = asyncio.create_task(
                elector(settings, self.kube, self.controller, utc_now).run(), name="leader-election"
            )
        if settings.gc_freeze:
            self.heap = HeapKeeper(settings.gc_unfreeze_seconds)
            self.heap.install()
        if map_large_blocks(settings.malloc_mmap_threshold_bytes):
            logger.info(
                "C allocator: blocks of %d bytes and more are mapped apart and freed at once",
                settings.malloc_mmap_threshold_bytes,
            )
        self.scrape = MetricsEndpoint(
            functools.partial(_sampled_parts, self.deps.metrics),
            min_interval_s=settings.metrics_min_render_interval_seconds,
        )
        await self._serve(settings.metrics_port, [("/metrics", self.scrape.handle)])
        await self._serve(
            settings.health_port, [("/healthz", self._healthz), ("/readyz", self._readyz)]
        )
        self.ready = True

    @property
    def watched_kinds(self) -> list[ObjectKind]:
        """The kinds to watch for routing drivers: only those of the drivers it serves."""
        return self.drivers.watched_kinds

    async def start_routes(self) -> None:
        """Start the listed routes now, not as kopf hands them over (control.prelist); then
        the caches' watches (control.watching)."""
        get = functools.partial(self.kube.request, "GET")
        self.recheck = await prelist.start_listed(self.controller, get, self.settings)
        self.watches = watching.start(
            self.settings, self.watched_kinds, self.controller, self.credentials, self.deps.metrics
        )

    async def stop(self) -> None:
        """Stop the workers, endpoints and connections."""
        self.ready = False
        if self.watches is not None:
            await self.watches.stop()  # no event reaches the caches once shutdown began
        if self.recheck is not None:
            # Awaited: a re-list in flight must not outlive the connections closed below.
            self.recheck.cancel()
            await asyncio.gather(self.recheck, return_exceptions=True)
        # What the routes owe (a failback's status, its Event) goes out before the Lease does.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.shutdown_grace_seconds / 2):
                await self.controller.drain()
        if self.elector is not None:
            # Stepping down stops the workers, then the Lease is released for a fast takeover.
            self.elector.cancel()
            await asyncio.gather(self.elector, return_exceptions=True)
        await self.controller.shutdown()
        if self.heap is not None:
            self.heap.uninstall()
        for runner in self.runners:
            await runner.cleanup()
        await self.probes.close()
        if self.deps.reachability is not None:
            await self.deps.reachability.close()
        await self.kube.close()

    async def _serve(self, port: int, routes: list[tuple[str, _Handler]]) -> None:
        if port == 0:
            return
        app = web.Application()
        for path, handler in routes:
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self.runners.append(runner)  # cleaned up by stop(), bound or not
        address = self.settings.bind_address
        try:
            await web.TCPSite(runner, address, port).start()
        except OSError as exc:  # no retry helps: the address is not the Pod's, or taken
            raise kopf.PermanentError(f"cannot listen on {address!r} port {port}: {exc}") from exc

    async def _healthz(self, _: web.Request) -> web.Response:
        # Answering at all proves the event loop runs; stalled probe loops prove it is stuck.
        stalled = self.controller.stalled(asyncio.get_running_loop().time())
        if stalled:
            names = ", ".join(f"{ns}/{name}" for ns, name in stalled[:5])
            return web.Response(status=500, text=f"probe loops stalled: {names}\n")
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503, text="starting\n")
        return web.Response(text="ok\n")


def log_started(settings: Settings) -> None:
    """The start-up line, once per process: the version and where the operator listens."""
    running = version()
    logger.info(
        "operator started, version %s",
        running,
        extra={
            "version": running,
            "namespaces": list(settings.namespaces) or "all",
            "label_selector": settings.label_selector or "all",
            "lease": settings.leader_election_lease if settings.leader_election else None,
            "metrics_port": settings.metrics_port,
            "health_port": settings.health_port,
        },
    )


def _build_deps(
    settings: Settings,
    kube: KubeClient,
    metrics: Metrics,
    drivers: DriverAvailability,
    lanes: Lanes | None = None,
) -> tuple[Deps, ProbeHub]:
    """What every route worker shares, and the probe hub behind it."""
    # One cache per kind a served routing driver routes through or reads (never a kind the
    # cluster lacks), and the Secrets probes authenticate with. A namespace is listed once, at
    # its first miss, and kept with the watch's events (bounded; the operator's own always):
    # a restarted operator reads no object one by one. A read before a routing write is urgent.
    caches = {
        kind: ObjectCache(
            functools.partial(urgent_get, kube, kind),
            slim_object,
            list_namespace=functools.partial(urgent_list, kube, kind),
            keep_unsubscribed=MAX_UNSUBSCRIBED,
            owned=made_by_operator,
        )
        for kind in drivers.watched_kinds
    }
    # Urgent too: a new probe loop's first probe (and so a route's first routing) waits on it.
    secrets = ObjectCache(functools.partial(urgent_get, kube, SECRETS), slim_secret)
    reachability = ApiReachability(functools.partial(kube.api_resources, "v1"))
    probes = _probe_hub(settings, secrets, metrics)
    deps = Deps(
        settings=settings,
        kube=kube,
        caches=caches,
        secrets=secrets,
        metrics=metrics,
        events=EventRecorder(
            kube, settings.field_manager, on_posted=metrics.api_writes.labels("events").inc
        ),
        probes=probes,
        now=utc_now,
        unavailable_drivers=drivers.unavailable,
        reconcile_slots=asyncio.Semaphore(
            reconcile_slot_count(settings.api_max_in_flight, settings.api_routing_extra_in_flight)
        ),
        reachability=reachability,
        lanes=lanes,
    )
    return deps, probes


def _probe_hub(settings: Settings, secrets: ObjectCache, metrics: Metrics) -> ProbeHub:
    """The probe loops, shared by every route (one per distinct probe)."""
    return ProbeHub(
        # No global connection limit: a hung host must not hold up probes of other hosts.
        session=prober.new_session(
            connection_limit=0,
            connection_limit_per_host=settings.max_connections_per_host,
            ca_bundle=settings.ca_bundle,
        ),
        secrets=secrets,
        metrics=metrics,
        now=utc_now,
        start_jitter_seconds=settings.probe_start_jitter_seconds,
        max_retry_after_seconds=settings.max_retry_after_seconds,
        trust=TrustStore(settings.ca_bundle, settings.max_trust_contexts),  # caBundleSecretRef
    )


def _sampled_parts(metrics: Metrics) -> Iterable[bytes]:
    """The exposition, with the loop's task and timer counts sampled first (leak detectors)."""
    metrics.observe_loop(asyncio.get_running_loop())
    return metrics.exposition_parts()
