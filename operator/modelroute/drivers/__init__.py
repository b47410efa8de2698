"""Routing drivers, one module each; every module defining ``DRIVER`` registers itself."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from modelroute.drivers.base import DriverContext, DriverInfo, RoutingDriver

__all__ = ["DriverContext", "DriverInfo", "RoutingDriver", "create", "names"]


@cache
def _registry() -> dict[str, DriverInfo]:
    found: dict[str, DriverInfo] = {}
    for module in pkgutil.iter_modules(__path__):
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        info = getattr(loaded, "DRIVER", None)
        if isinstance(info, DriverInfo):
            found[info.name] = info
    return found


def names() -> list[str]:
    """Names of the available drivers, sorted (the CRD enum of spec.routing.driver)."""
    return sorted(_registry())


def create(name: str, context: DriverContext) -> RoutingDriver:
    """A driver instance by name; KeyError names the available ones."""
    try:
        return _registry()[name].create(context)
    except KeyError:
        raise KeyError(
            f"unknown routing driver {name!r}; available: {', '.join(names())}"
        ) from None
