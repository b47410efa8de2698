"""Rules the API server cannot enforce (it ignores CEL on 1.20), checked by the operator.

A violation makes the route ``Ready=False`` with reason ``InvalidSpec`` and a message naming the
field; the route is not probed or routed, and is looked at again only when its spec changes.
The rules here hold for every driver; each routing driver adds its own (``routing.validate``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from modelroute.api.models import ModelRouteSpec

INVALID_SPEC = "InvalidSpec"


class InvalidSpecError(ValueError):
    """The spec breaks a rule; the message names every offending field."""


def parse_spec(raw: Mapping[str, Any]) -> ModelRouteSpec:
    """Parse a spec from the API server, with schema errors phrased as field paths."""
    try:
        return ModelRouteSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = [
            f"spec.{_path(err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        ]
        raise InvalidSpecError("; ".join(problems)) from None


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problems(spec: ModelRouteSpec, available_drivers: Iterable[str]) -> list[str]:
    """Every violation of the driver-independent rules, each naming its field; empty when valid."""
    found: list[str] = []
    drivers = sorted(available_drivers)
    if spec.routing.driver not in drivers:
        found.append(
            f"spec.routing.driver: unknown driver {spec.routing.driver!r} "
            f"(available: {', '.join(drivers)})"
        )
    first_index: dict[str, int] = {}
    for index, backend in enumerate(spec.backends):
        if backend.name in first_index:
            found.append(
                f"spec.backends[{index}].name: duplicate backend name {backend.name!r} "
                f"(also spec.backends[{first_index[backend.name]}].name)"
            )
        first_index.setdefault(backend.name, index)
        if backend.endpoint is None and backend.service_ref is None:
            found.append(
                f"spec.backends[{index}].endpoint: required when the backend has no serviceRef "
                "(probes need an address)"
            )
    found.extend(_step_problems(spec))
    found.extend(_deep_problems(spec))
    found.extend(_drill_problems(spec))
    return found


def _deep_problems(spec: ModelRouteSpec) -> list[str]:
    """A deep probe runs at most as often as the cheap one (it is the rare, costly one)."""
    found: list[str] = []
    for index, backend in enumerate(spec.backends):
        probe = spec.effective_probe(backend)
        deep = probe.effective_deep
        if deep is None or deep.interval_seconds >= probe.interval_seconds:
            continue
        own = backend.probe is not None and backend.probe.deep is not None
        where = f"spec.backends[{index}].probe.deep" if own else "spec.probe.deep"
        problem = (
            f"{where}.intervalSeconds: must be at least the probe's intervalSeconds "
            f"({probe.interval_seconds}), got {deep.interval_seconds}"
        )
        if problem not in found:  # the route-level block is named once, not per backend
            found.append(problem)
    return found


def _drill_problems(spec: ModelRouteSpec) -> list[str]:
    drill = spec.drill
    if drill is None:
        return []
    found: list[str] = []
    names = [backend.name for backend in spec.backends]
    if drill.backend not in names:
        found.append(
            f"spec.drill.backend: no backend is named {drill.backend!r} "
            f"(backends: {', '.join(names)})"
        )
    if drill.until.utcoffset() is None:
        found.append(
            f"spec.drill.until: needs a time zone, e.g. 2026-12-01T15:00:00Z (got {drill.until})"
        )
    return found


def _step_problems(spec: ModelRouteSpec) -> list[str]:
    steps = spec.failback.steps or []
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        return [f"spec.failback.steps: must increase, e.g. [10, 50, 100] (got {steps})"]
    return []
