"""What a route worker is built from: the route as seen, the shared dependencies, its state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydantic

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import ModelRouteStatus
from modelroute.core import health
from modelroute.core.types import PlannedEvent, RouteRef, TrafficSplit
from modelroute.kube.cache import ObjectCache
from modelroute.kube.client import KubeApi, ObjectKind
from modelroute.kube.events import EventRecorder
from modelroute.kube.lanes import MAX_IN_FLIGHT, ROUTING_EXTRA_IN_FLIGHT, Lanes
from modelroute.kube.reachability import ApiReachability
from modelroute.metrics import Metrics
from modelroute.probing.hub import ProbeSource
from modelroute.routing import DriverContext, DriverInfo, RoutingDriver, RoutingState
from modelroute.routing.handover import Routed
from modelroute.settings import Settings


def reconcile_slot_count(max_in_flight: int, routing_extra_in_flight: int) -> int:
    """Reconciles that may run between their wake-up and their routing write's answer, across
    all routes: twice the routing writes that may be in flight (kube.lanes), enough to keep
    every slot busy."""
    return 2 * (max_in_flight + routing_extra_in_flight)


# With the defaults of settings.api_max_in_flight and api_routing_extra_in_flight.
RECONCILE_SLOTS = reconcile_slot_count(MAX_IN_FLIGHT, ROUTING_EXTRA_IN_FLIGHT)


@dataclass(frozen=True)
class RouteObject:
    """The parts of a ModelRoute body the worker uses."""

    ref: RouteRef
    generation: int | None
    raw_spec: dict[str, Any]
    annotations: dict[str, str]
    status: ModelRouteStatus

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> RouteObject:
        """Parse a kopf/API body; an unreadable status is treated as empty (it is ours)."""
        meta = body.get("metadata", {})
        try:
            parsed_status = ModelRouteStatus.model_validate(body.get("status") or {})
        except pydantic.ValidationError:
            parsed_status = ModelRouteStatus()
        return cls(
            ref=RouteRef(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")),
            generation=meta.get("generation"),
            raw_spec=dict(body.get("spec") or {}),
            annotations=dict(meta.get("annotations") or {}),
            status=parsed_status,
        )

    def backend_names(self) -> list[str]:
        """Backend names of the spec (raw, so it works for invalid specs too)."""
        return [b.get("name", "") for b in self.raw_spec.get("backends") or []]


@dataclass
class Deps:
    """Everything workers share; built once by the runtime."""

    settings: Settings
    kube: KubeApi
    caches: Mapping[ObjectKind, ObjectCache]  # one per kind the routing drivers declared
    secrets: ObjectCache
    metrics: Metrics
    events: EventRecorder
    probes: ProbeSource
    now: Callable[[], datetime]
    # Routing drivers this operator cannot serve, with the reason shown to the admin (not
    # enabled by --routing-drivers, or their CRD is not installed): routes that ask for one
    # are Ready=False, reason DriverUnavailable.
    unavailable_drivers: Mapping[str, str] = field(default_factory=dict)
    # Reconciles between their wake-up and their routing write's answer, across all routes (see
    # RouteWorker._reconcile).
    reconcile_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(RECONCILE_SLOTS)
    )
    # Wakes routes whose writes found the API server gone as soon as it answers again (None:
    # plain backoff, as in unit tests without a server).
    reachability: ApiReachability | None = None
    # The API client's request lanes: a route's status and Events are judged and logged only
    # once no urgent request (routing writes, the reads they wait on) is in flight or waiting
    # (None: never held, as in unit tests without a server).
    lanes: Lanes | None = None
    driver_context: DriverContext = field(init=False)

    def __post_init__(self) -> None:
        self.driver_context = DriverContext(
            kube=self.kube, caches=self.caches, cluster_domain=self.settings.cluster_domain
        )


def split_from_status(status: ModelRouteStatus) -> TrafficSplit | None:
    """The split status says the routing object carried (resume after a restart)."""
    if status.traffic:
        try:
            return TrafficSplit({t.backend: t.weight for t in status.traffic})
        except ValueError:
            pass  # hand-edited status: fall back to the active backend
    return TrafficSplit.single(status.active_backend) if status.active_backend else None


def observed_move(
    spec: ModelRouteSpec,
    routed: TrafficSplit | None,
    planned: TrafficSplit | None,
    state: RoutingState,
) -> TrafficSplit | None:
    """The split the routing object carries, when nothing was applied (``planned`` is None)
    and it is not where the worker believes traffic is, naming only the spec's backends."""
    seen = state.split
    if planned is not None or state.problem is not None or seen is None or seen == routed:
        return None
    return seen if names_spec_backends(spec, seen) else None


def names_spec_backends(spec: ModelRouteSpec, split: TrafficSplit | None) -> bool:
    """True when ``split`` is a split of the spec's backends only: one the worker can take as
    where traffic is (an object pointing at a removed backend is not)."""
    return split is not None and set(split) <= {b.name for b in spec.backends}


@dataclass
class Driven:
    """A route's parsed spec and its driver, once the spec is known to be valid."""

    spec: ModelRouteSpec
    info: DriverInfo
    driver: RoutingDriver


@dataclass(frozen=True)
class WorkerState:
    """What a worker hands to its successor when the route's spec changes."""

    records: Mapping[str, health.HealthRecord]
    routed: TrafficSplit | None
    previous: ModelRouteStatus
    written: ModelRouteStatus | None
    # Events decided but not posted yet, each with when it was decided and its decision
    # identity (control.eventqueue.StampedEvent).
    unsent: Sequence[tuple[PlannedEvent, datetime, str | None]] = ()
    uncertain: bool = False  # a status write after ``written`` may have landed
    # Routing objects of earlier specs still to release (see control.handover).
    routed_before: Sequence[Routed] = ()
