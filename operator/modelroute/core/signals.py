"""Route-level alert signals that PromQL cannot derive from per-backend series.

Which backend is *preferred* is spec (priorities), not a metric, so "traffic is off the preferred
backend" and "a more preferred backend is healthy again but traffic has not moved back" are
decided here, from the status a plan built, and exported as gauges for the alert rules.
"""

from __future__ import annotations

from typing import NamedTuple

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import ModelRouteStatus


class RouteSignals(NamedTuple):
    """``failed_over``: traffic is not on the most preferred backend (a staged failback counts
    until it completes). ``failback_pending``: failed over while a more preferred backend is
    healthy, i.e. traffic could go back but has not yet (stabilization, a staged failback,
    Manual mode waiting for an approval)."""

    failed_over: bool
    failback_pending: bool


def route_signals(spec: ModelRouteSpec, status: ModelRouteStatus) -> RouteSignals:
    """The signals of a route whose plan built ``status``; both False before a first choice."""
    active = status.active_backend
    order = [backend.name for backend in spec.preference_order()]
    if active is None or active == order[0]:
        return RouteSignals(failed_over=False, failback_pending=False)
    # A backend no longer in spec ranks after every listed one.
    ahead = order[: order.index(active)] if active in order else order
    healthy = {entry.name for entry in status.backends if entry.healthy}
    return RouteSignals(failed_over=True, failback_pending=any(n in healthy for n in ahead))
