"""Where a new route worker starts from: status, or the routing object when it is newer.

The routing object is written before status: after a crash between the two it is the more
recent truth. A failover it shows but status does not is owed its Event and count
(:mod:`modelroute.core.resume`): the worker's first plan takes it again, or, for a suspended
route whose plans never move traffic, records it (:func:`modelroute.core.resume.recorded`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from modelroute.api.status import ModelRouteStatus
from modelroute.control.route import Driven, names_spec_backends
from modelroute.core import resume
from modelroute.core.health import HealthRecord
from modelroute.core.types import RouteRef, TrafficSplit
from modelroute.kube.client import ApiError

logger = logging.getLogger("modelroute.control.resumption")

_API_FAILURES = (ApiError, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class Resumed:
    """Where a worker starts: the split it takes as routed, and an owed failover, if any."""

    routed: TrafficSplit | None
    records: Mapping[str, HealthRecord]  # the owed failover's records, else as given
    owed: TrafficSplit | None = None  # where an unrecorded failover moved traffic


async def resume_routing(
    ref: RouteRef,
    driven: Driven,
    routed: TrafficSplit | None,
    records: Mapping[str, HealthRecord],
    status: ModelRouteStatus,
) -> Resumed:
    """Take the split from the routing object when it names only backends of ours; ``routed``
    is the split ``status`` recorded."""
    try:
        observed = await driven.driver.observe(ref, driven.spec)
    except _API_FAILURES as exc:
        # Status still says where traffic was; the first reconcile reads the object again.
        extra = {"namespace": ref.namespace, "route": ref.name}
        logger.warning("could not read the routing object at start: %s", exc, extra=extra)
        return Resumed(routed, records)
    seen = observed.split
    if seen is None or not names_spec_backends(driven.spec, seen):
        return Resumed(routed, records)
    owed = resume.unrecorded_failover(driven.spec, routed, seen, records, status)
    if owed is not None:
        # Planned from the split status recorded, under these records, the first plan takes
        # the failover again (for its Event and count) to where traffic already is.
        return Resumed(routed, owed, seen)
    return Resumed(seen, records)
