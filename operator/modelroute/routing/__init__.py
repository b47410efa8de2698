"""Routing drivers, one module each; every module defining ``DRIVER`` registers itself."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from modelroute.api.models import ModelRouteSpec
from modelroute.api.validation import InvalidSpecError, problems
from modelroute.kube.client import ObjectKind
from modelroute.routing.base import DriverContext, DriverInfo, RoutingDriver, RoutingState

__all__ = [
    "DriverContext",
    "DriverInfo",
    "RoutingDriver",
    "RoutingState",
    "create",
    "info",
    "names",
    "spec_problems",
    "validate",
    "watched_kinds",
]


@cache
def _registry() -> dict[str, DriverInfo]:
    found: dict[str, DriverInfo] = {}
    for module in pkgutil.iter_modules(__path__):
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        entry = getattr(loaded, "DRIVER", None)
        if isinstance(entry, DriverInfo):
            found[entry.name] = entry
    return found


def names() -> list[str]:
    """Names of the available drivers, sorted (the CRD enum of spec.routing.driver)."""
    return sorted(_registry())


def info(name: str) -> DriverInfo:
    """A driver's registry entry; KeyError names the available ones."""
    try:
        return _registry()[name]
    except KeyError:
        raise KeyError(
            f"unknown routing driver {name!r}; available: {', '.join(names())}"
        ) from None


def create(name: str, context: DriverContext) -> RoutingDriver:
    """A driver instance by name."""
    return info(name).create(context)


def watched_kinds() -> list[ObjectKind]:
    """Every kind some driver routes through or reads: the operator watches and caches these."""
    kinds: dict[ObjectKind, None] = {}
    for entry in _registry().values():
        kinds.update(dict.fromkeys(entry.watched_kinds))
    return list(kinds)


def spec_problems(spec: ModelRouteSpec) -> list[str]:
    """Every rule ``spec`` breaks: the general ones, then its driver's; empty when valid."""
    found = problems(spec, names())
    if spec.routing.driver in _registry():
        found.extend(info(spec.routing.driver).check(spec))
    return found


def validate(spec: ModelRouteSpec) -> None:
    """Raise :class:`InvalidSpecError` naming every rule ``spec`` breaks."""
    found = spec_problems(spec)
    if found:
        raise InvalidSpecError("; ".join(found))
