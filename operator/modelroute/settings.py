"""One typed settings object for the whole operator; kopf's own settings are derived from it."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from modelroute.api.models import GROUP, PLURAL

FIELD_MANAGER = "modelroute-operator"


@dataclass(frozen=True)
class Settings:
    """Operator settings. Every field has its unit in the name or the comment, and a default."""

    # Namespaces to watch; empty means all namespaces (cluster-wide).
    namespaces: tuple[str, ...] = ()
    # Routing drivers this operator serves (spec.routing.driver names, e.g. "Service",
    # "HTTPRoute"); empty means every registered driver. Only these drivers' kinds are watched,
    # and only if the cluster serves them (checked once at start-up); routes asking for any
    # other driver are Ready=False, reason DriverUnavailable.
    routing_drivers: tuple[str, ...] = ()
    # Kubernetes label selector on ModelRoutes (sharding); empty means every ModelRoute. The API
    # server filters the list and watch by it, so this operator never sees, probes, writes or
    # keeps state for another shard's routes. E.g. "modelroute.dev/shard=a" for shard a and
    # "!modelroute.dev/shard" for the operator that serves every unlabelled route.
    label_selector: str = ""
    # Port of the Prometheus metrics endpoint (/metrics); 0 disables it.
    metrics_port: int = 8080
    # Seconds a /metrics render is reused for further scrapes (one render at a time, in
    # slices between the event loop's other work; two Prometheus replicas scraping together
    # cost one render).
    metrics_min_render_interval_seconds: float = 1.0
    # Port of the health endpoints (/healthz liveness, /readyz readiness); 0 disables it.
    health_port: int = 8081
    # kubeconfig file; None means in-cluster config, then $KUBECONFIG.
    kubeconfig: str | None = None
    # Address the metrics and health servers bind to: "" for every address of both IPv4 and
    # IPv6 (a dual-stack cluster), "::" for IPv6 only.
    bind_address: str = "0.0.0.0"
    # The cluster's DNS domain: a stable Service for a backend whose Service has no selector
    # is an ExternalName to <serviceRef.name>.<namespace>.svc.<cluster_domain>.
    cluster_domain: str = "cluster.local"
    # Field manager recorded on every write to the API server.
    field_manager: str = FIELD_MANAGER
    # Connections the shared probe HTTP pool keeps per backend host. Bounded per host, not
    # globally, so a slow or hung backend never makes other backends' probes wait. Identical
    # probes are shared (one loop per distinct probe), so one host rarely needs more than a few.
    max_connections_per_host: int = 50
    # PEM file of extra CA certificates probes trust, on top of the system store (a vendor or
    # egress gateway behind a private CA); None: the system store only (SSL_CERT_FILE moves it).
    ca_bundle: str | None = None
    # Seconds of random delay before a backend's first probe, to spread load at start-up
    # (capped at the backend's probe interval); the first few loops started together
    # (probing.keys.START_BURST) probe at once.
    probe_start_jitter_seconds: float = 1.0
    # Longest pause (seconds) a 429 Retry-After may impose before the next probe.
    max_retry_after_seconds: float = 60.0
    # Liveness fails when a route has produced no probe result for this many probe intervals
    # (plus its timeout), plus max_retry_after_seconds (a 429 may pause a backend's probes that
    # long): the probe loop is stuck, not merely busy or rate limited.
    liveness_stall_intervals: int = 6
    # Longest delay (seconds) of a status write that decides nothing (a failure or success
    # counter below its threshold, a new probe message on a backend whose health did not flip).
    # Such a change is written with the next decisive write, or after this long: never in
    # front of a routing write, and at most once per this period per route.
    status_defer_seconds: float = 30.0
    # Longest wait (seconds) of a new route's first status write for every backend's first
    # probe verdict: one write with all of them instead of one as each arrives (up to four per
    # route at start-up). The routing write and Events never wait for it. 0: no wait (the
    # first status, Ready=False AwaitingFirstProbes, is written at once).
    first_status_hold_seconds: float = 0.0
    # Longest wait (seconds) of a route's Events and status for urgent requests (routing
    # writes, the reads they wait on) to be through before they are judged and sent; they are
    # then sent in the normal lane (a start-up, or a routing write that keeps timing out, must
    # not hold every status for its whole length).
    report_hold_max_seconds: float = 5.0
    # Events of one route kept while they cannot be posted (an API server outage); beyond
    # this the oldest are dropped, with a warning.
    max_unsent_events: int = 100
    # Refusals (429, 5xx) of one Event before it is dropped and what follows it is sent.
    max_event_attempts: int = 3
    # Backoff (seconds) of releasing a route's previous routing object after a driver switch
    # or rename that keeps failing (a 403: the ClusterRole lacks delete): the first retry after
    # release_retry_first_seconds, doubling up to release_retry_max_seconds.
    release_retry_first_seconds: float = 10.0
    release_retry_max_seconds: float = 600.0
    # Distinct backend CA bundles (caBundleSecretRef) kept as SSL contexts; beyond it the least
    # recently used is rebuilt on its next probe (each ~80 ms of CPU, ~0.8 MiB).
    max_trust_contexts: int = 64
    # Freeze the long-lived heap after each full garbage collection, so later collections
    # visit only newer objects (control.heap); everything is unfrozen, and reference cycles of
    # deleted routes collected, every gc_unfreeze_seconds. False: Python's plain collector.
    gc_freeze: bool = True
    gc_unfreeze_seconds: float = 3600.0
    # Blocks of at least this many bytes are mapped on their own by glibc's malloc and given
    # back to the system when freed (mallopt M_MMAP_THRESHOLD; control.heap): TLS buffers of
    # a burst's connections and /metrics texts no longer stay in the RSS. 0: glibc's own
    # sliding threshold. A threshold the environment sets (MALLOC_MMAP_THRESHOLD_, or
    # glibc.malloc.mmap_threshold in GLIBC_TUNABLES) is kept either way.
    malloc_mmap_threshold_bytes: int = 131072
    # Timeout (seconds) for the operator's own API calls.
    api_timeout_seconds: float = 30.0
    # The operator's own requests in flight to the API server at once (watches are apart).
    # Routing writes take free slots first. In a mass failover at 1,000 routes, 20 left the
    # operator waiting on the API server a fifth of the time (bench mass, py-spy); 50 is the
    # concurrency the bench measures the write rate at.
    api_max_in_flight: int = 50
    # Slots beyond api_max_in_flight that only urgent requests may take: routing writes (a
    # mass failover's patches, a start-up's creates), the reads they wait on, the Lease. Those
    # have up to api_max_in_flight + api_routing_extra_in_flight in flight, everything else at
    # most api_max_in_flight. The connection pool keeps as many as both, and twice as many
    # reconciles may run between wake-up and routing answer. Without them the API server held
    # about 30 routing writes at once and spent more CPU on each: the last of 3,000 routes at
    # a 1 s interval switched 4.23-4.26 s over the floor, with them 2.86-3.11 s
    # (bench/notes.md item 17). 0: urgent requests share the limit.
    api_routing_extra_in_flight: int = 50
    # How often (seconds) at most the API credentials' token refresh runs (a rotated
    # ServiceAccount token or an expiring kubeconfig token); also before the next request
    # after a 401. Per request it was a quarter of the client's CPU a write (bench/notes item 15).
    api_credentials_refresh_seconds: float = 1.0
    # Timeout (seconds) of kopf's own requests, the LIST of every ModelRoute among them: at
    # 10,000 routes on a busy API server that LIST took longer than 30 s, and kopf retried it
    # until it gave up, its watch of ModelRoutes gone meanwhile (bench scale).
    kopf_request_timeout_seconds: float = 300.0
    # Leader election with a coordination.k8s.io Lease (for more than one replica): only the
    # holder runs probes and writes. The Lease lives in leader_election_namespace (empty: the
    # POD_NAMESPACE environment variable, else "default"). Durations in seconds. The CLI names
    # the Lease "modelroute-operator-<8 hex of the label selector>" when a selector is set and
    # no name is given, so each shard elects its own leader.
    leader_election: bool = False
    leader_election_namespace: str = ""
    leader_election_lease: str = "modelroute-operator"
    leader_election_lease_seconds: int = 15
    leader_election_renew_deadline_seconds: float = 10.0
    leader_election_retry_seconds: float = 2.0
    # Watch timeouts (seconds), of kopf's watch of ModelRoutes and of the operator's own watches
    # of routing objects and Secrets (kube.watch): the server ends a watch after server_timeout;
    # the client gives up after client_timeout if the server went silent.
    watch_server_timeout_seconds: int = 300
    watch_client_timeout_seconds: int = 330
    # The operator's own watches retry a failed LIST or WATCH (API server unreachable) after
    # watch_retry_first_seconds, doubling up to watch_retry_max_seconds: short, so the caches
    # catch up within seconds of the API server's return.
    watch_retry_first_seconds: float = 0.5
    watch_retry_max_seconds: float = 4.0
    # Minimum level of kopf's own log messages posted as Kubernetes Events.
    kopf_posting_level: int = logging.WARNING
    # Log format: "json" (structured, one object per line) or "text".
    log_format: str = "json"
    log_level: str = "INFO"
    # Seconds kopf waits for handlers to finish on shutdown.
    shutdown_grace_seconds: float = 5.0

    @property
    def clusterwide(self) -> bool:
        """True when no namespace restriction is set."""
        return not self.namespaces


def apply_to_kopf(settings: Settings, kopf_settings: Any) -> None:
    """Set every kopf setting the operator relies on, explicitly, once at start-up."""
    kopf_settings.posting.level = settings.kopf_posting_level
    kopf_settings.posting.reporting_component = settings.field_manager
    # Resources are resolved once at start-up: no cluster-wide CRD or namespace watch, so the
    # operator needs no RBAC on CustomResourceDefinitions (install the CRD before the operator).
    kopf_settings.scanning.disabled = True
    kopf_settings.watching.server_timeout = settings.watch_server_timeout_seconds
    kopf_settings.watching.client_timeout = settings.watch_client_timeout_seconds
    kopf_settings.watching.connect_timeout = 10
    # kopf lists ModelRoutes in pages, as the operator's own watches do: at 10,000 routes its
    # one unpaged LIST was a single response the API server built for about 5 s while the
    # start-up's Service creates waited, and +100 MiB of RSS in the operator at once.
    kopf_settings.watching.chunk_size = KOPF_LIST_PAGE
    if settings.label_selector:
        # Server-side: other shards' routes never reach this process (memory scales with
        # the shard). A route relabelled away arrives as a DELETED event.
        kopf_settings.watching.label_selectors[GROUP, PLURAL] = settings.label_selector
    # Only on-event handlers are used: no progress or diff-base annotations are written, and
    # no finalizers are added (deletion needs no cleanup: owned Services are garbage-collected).
    # The name is still set so that any finalizer kopf might ever add is recognisably ours.
    kopf_settings.persistence.finalizer = "modelroute.dev/finalizer"
    # One worker per watched object, no cap: events of one route never queue behind another's.
    kopf_settings.queueing.worker_limit = None
    # kopf retries a failed request 8 times, then raises: for its watch of ModelRoutes that
    # stops the operator. After a 20-30 s API server outage the 9th attempt met the 5xx of an
    # API server still starting up, and the process exited (CI, fault scenario 2). Never give
    # up instead: a lost API server must not cost the health the operator learnt.
    kopf_settings.networking.error_backoffs = RetryForever(KOPF_BACKOFFS_SECONDS)
    kopf_settings.networking.request_timeout = settings.kopf_request_timeout_seconds
    kopf_settings.networking.connect_timeout = settings.api_timeout_seconds
    kopf_settings.process.ultimate_exiting_timeout = settings.shutdown_grace_seconds
    # kopf's peering would pause only kopf's handlers, not the probe loops: leader election is
    # the operator's own (a Lease, see modelroute.kube.leader), and kopf runs standalone.
    kopf_settings.peering.standalone = True
    kopf_settings.peering.mandatory = False


#: Objects per page of kopf's ModelRoute LIST (the operator's own watches list 500 a page).
KOPF_LIST_PAGE = 500

#: kopf's own retry delays (seconds); the last one repeats without end (RetryForever).
KOPF_BACKOFFS_SECONDS = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)


class RetryForever:
    """Retry delays that never run out: ``delays``, then the last of them again and again.

    Iterable afresh for every request (kopf iterates it once per request) and not sized, so
    kopf counts no last attempt."""

    def __init__(self, delays: tuple[float, ...]) -> None:
        self._delays = delays

    def __iter__(self) -> Iterator[float]:
        yield from self._delays
        yield from itertools.repeat(self._delays[-1])
