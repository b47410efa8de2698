"""Which routing drivers this operator can serve, decided once at start-up.

A driver is served when it is enabled (``--routing-drivers``; empty: every registered driver)
and the API server serves every kind it routes through or reads. Only the served drivers' kinds
are watched and cached; routes that ask for any other driver are ``Ready=False``, reason
``DriverUnavailable``, with the reason found here. Kinds are resolved once: the operator has no
RBAC on CustomResourceDefinitions (and kopf's CRD scanning is off), so it cannot notice a CRD
installed later, and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modelroute import routing
from modelroute.kube.client import KubeApi, ObjectKind

logger = logging.getLogger("modelroute.control.runtime")  # the start-up's lines, together


@dataclass(frozen=True)
class DriverAvailability:
    """The drivers this operator serves, and why it cannot serve the others."""

    available: tuple[str, ...] = ()  # registry names, sorted
    unavailable: Mapping[str, str] = field(default_factory=dict)  # name -> reason for the admin

    @property
    def watched_kinds(self) -> list[ObjectKind]:
        """Every kind a served driver routes through or reads (each once, in registry order)."""
        kinds: dict[ObjectKind, None] = {}
        for name in self.available:
            kinds.update(dict.fromkeys(routing.info(name).watched_kinds))
        return list(kinds)


def not_enabled(name: str) -> str:
    """Why a route cannot use driver ``name``: this operator was not started with it."""
    return (
        f"routing driver {name} is not enabled on this operator "
        "(--routing-drivers; Helm value routing.drivers)"
    )


def not_installed(missing: Sequence[ObjectKind]) -> str:
    """Why a route cannot use a driver whose kinds the cluster does not serve."""
    crds = " and ".join(f"the {k.kind} CRD ({k.api_version})" for k in missing)
    verb, them = ("is", "it") if len(missing) == 1 else ("are", "them")
    return (
        f"{crds} {verb} not installed on this cluster; install {them} and restart the operator "
        "(kinds are resolved once at start-up: the operator has no RBAC on "
        "CustomResourceDefinitions to notice a new one)"
    )


async def discover_drivers(kube: KubeApi, enabled: Sequence[str] = ()) -> DriverAvailability:
    """Check every enabled driver's kinds against the API server's discovery.

    One discovery request per group/version. A group/version that is not served (404) or does
    not list a kind makes that driver unavailable, if the API server says it is ready
    (``/readyz``): one that has just started answers before it has loaded its CRDs. Any other
    failure (:class:`ApiError`, a connection error, not ready) is raised: a flaky API server
    must not disable a driver for good.
    """
    for name in enabled:
        routing.info(name)  # KeyError naming the available drivers
    wanted = set(enabled) or set(routing.names())
    served: dict[str, set[str] | None] = {}
    available: list[str] = []
    unavailable: dict[str, str] = {}
    for name in routing.names():
        if name not in wanted:
            unavailable[name] = not_enabled(name)
            continue
        missing = []
        for kind in routing.info(name).watched_kinds:
            if kind.api_version not in served:
                served[kind.api_version] = await kube.api_resources(kind.api_version)
            if kind.plural not in (served[kind.api_version] or set()):
                missing.append(kind)
        if missing:
            unavailable[name] = not_installed(missing)
        else:
            available.append(name)
    if any(reason != not_enabled(name) for name, reason in unavailable.items()):
        # A kind found missing counts only from an API server that has loaded its CRDs.
        await kube.api_ready()
    return DriverAvailability(tuple(available), unavailable)


def log_drivers(drivers: DriverAvailability) -> None:
    """Once at start-up: the drivers served, and why each other one is not."""
    logger.info("routing drivers served: %s", ", ".join(drivers.available) or "none")
    for name, reason in drivers.unavailable.items():
        # Not enabled is a choice; enabled without its CRD needs the admin's attention.
        level = logging.INFO if reason == not_enabled(name) else logging.WARNING
        logger.log(level, "routing driver %s unavailable: %s", name, reason)
