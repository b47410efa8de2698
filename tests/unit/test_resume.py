"""A failover whose routing write landed but whose status and Event did not (the process was
killed in between) is recorded by the next process, and never undone."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from modelroute.api.models import ModelRouteSpec
from modelroute.api.status import ModelRouteStatus, TrafficWeight
from modelroute.core.health import HealthRecord
from modelroute.core.plan import PlanInput, plan
from modelroute.core.resume import MOVED_OFF, recorded, unrecorded_failover
from modelroute.core.types import TrafficSplit, Transition
from tests.unit.test_policy import NOW, down, make_spec, up

SPEC = make_spec(("vendor", 0), ("inhouse", 1), ("alt", 2))
ON_VENDOR = TrafficSplit.single("vendor")
ON_INHOUSE = TrafficSplit.single("inhouse")
# Status as the killed process last wrote it: on the vendor, everything healthy.
STATUS = ModelRouteStatus(
    active_backend="vendor", traffic=[TrafficWeight(backend="vendor", weight=100)]
)
RECORDS = {"vendor": up(), "inhouse": up(), "alt": up()}


def from_status(spec: ModelRouteSpec, records: Mapping[str, HealthRecord]) -> PlanInput:
    """The first plan's input: routed as STATUS says (vendor), under ``records``."""
    return PlanInput(
        spec=spec,
        generation=1,
        records=records,
        routed=ON_VENDOR,
        previous=STATUS,
        written=STATUS,
        approval=None,
        now=NOW,
    )


def test_the_next_process_takes_the_same_failover_and_records_it() -> None:
    owed = unrecorded_failover(SPEC, ON_VENDOR, ON_INHOUSE, RECORDS)
    assert owed is not None
    assert owed["vendor"].healthy is False and owed["vendor"].message == MOVED_OFF
    assert owed["inhouse"] == RECORDS["inhouse"]
    decided = plan(from_status(SPEC, owed))
    assert decided.split == ON_INHOUSE  # where traffic already is: no routing write
    assert decided.moved
    assert [e.reason for e in decided.events] == [Transition.FAILOVER]
    assert decided.status.active_backend == "inhouse"
    assert decided.status.failover_count == 1
    assert decided.write_status


def test_a_probe_failure_the_process_had_seen_is_kept_in_the_message() -> None:
    records = {**RECORDS, "vendor": down(failures=1, message="connection refused")}
    owed = unrecorded_failover(SPEC, ON_VENDOR, ON_INHOUSE, records)
    assert owed is not None and owed["vendor"].consecutive_failures >= 1
    assert owed["vendor"].healthy is False


def test_nothing_is_owed_when_routing_and_status_agree_or_traffic_moved_up() -> None:
    assert unrecorded_failover(SPEC, ON_VENDOR, ON_VENDOR, RECORDS) is None
    # A failback (to a more preferred backend) is trusted as it is: no move is replayed.
    assert unrecorded_failover(SPEC, ON_INHOUSE, ON_VENDOR, RECORDS) is None
    assert unrecorded_failover(SPEC, None, ON_INHOUSE, RECORDS) is None


def test_nothing_is_replayed_that_could_move_traffic_elsewhere() -> None:
    on_alt = TrafficSplit.single("alt")
    # inhouse looks healthy in the (stale) records: replaying would send traffic to inhouse,
    # not leave it on alt where the killed process put it.
    assert unrecorded_failover(SPEC, ON_VENDOR, on_alt, RECORDS) is None
    # Where traffic is not known healthy: a replay could end with no target and put traffic
    # back on the vendor.
    unknown = {**RECORDS, "inhouse": down()}
    assert unrecorded_failover(SPEC, ON_VENDOR, ON_INHOUSE, unknown) is None
    split = TrafficSplit({"vendor": 50, "inhouse": 50})
    assert unrecorded_failover(SPEC, split, ON_INHOUSE, RECORDS) is None


def test_a_suspended_route_records_the_owed_failover_once_and_nothing_else() -> None:
    owed = unrecorded_failover(SPEC, ON_VENDOR, ON_INHOUSE, RECORDS)
    assert owed is not None
    given = from_status(SPEC.model_copy(update={"suspend": True}), owed)
    taken = plan(given)
    assert taken.split is None and not taken.moved  # suspended: no move is carried out
    on_it = plan(dataclasses.replace(given, routed=ON_INHOUSE))
    done = recorded(taken, on_it, ON_INHOUSE, NOW)
    assert done.moved and done.write_status
    assert (done.status.active_backend, done.status.failover_count) == ("inhouse", 1)
    assert done.status.last_failover_time == NOW
    assert [e.reason for e in done.events if e.reason == Transition.FAILOVER] == [
        Transition.FAILOVER
    ]
    # Nothing owed, or owed elsewhere than where the plan shows traffic: left as it is.
    assert recorded(taken, on_it, None, NOW) is on_it
    assert recorded(taken, on_it, TrafficSplit.single("alt"), NOW) is on_it
    # A route suspended before and still: the move was a hand pin, nothing is owed.
    pinned = STATUS.model_copy(update={"conditions": on_it.status.conditions})
    suspended = SPEC.model_copy(update={"suspend": True})
    assert unrecorded_failover(suspended, ON_VENDOR, ON_INHOUSE, RECORDS, pinned) is None
    # Resumed since: the status is one the resumed route's process never replaced, and the
    # move may be its own failover: owed.
    assert unrecorded_failover(SPEC, ON_VENDOR, ON_INHOUSE, RECORDS, pinned) == owed
