"""What 10,000 routes share instead of holding each: the status written and the one accepted,
and pydantic's per-instance set of the fields given."""

from __future__ import annotations

from datetime import UTC, datetime

from modelroute.api.status import ModelRouteStatus
from modelroute.api.validation import parse_spec
from modelroute.core.status import accepted

SPEC = {
    "service": {"name": "chat-llm", "port": 80},
    "backends": [
        {"name": n, "priority": p, "model": "m", "serviceRef": {"name": f"{n}-svc", "port": 80}}
        for p, n in enumerate(("vendor", "inhouse"))
    ],
}


def _status(active: str) -> ModelRouteStatus:
    return ModelRouteStatus.model_validate(
        {
            "observedGeneration": 2,
            "activeBackend": active,
            "lastFailoverTime": datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
            "backends": [{"name": "vendor", "healthy": True}, {"name": "inhouse"}],
        }
    )


def test_a_status_stored_as_sent_is_the_one_sent() -> None:
    sent = _status("vendor")
    assert accepted({"status": sent.to_wire()}, sent) is sent


def test_a_status_stored_otherwise_is_the_stored_one() -> None:
    sent, stored = _status("vendor"), _status("inhouse")
    got = accepted({"status": stored.to_wire()}, sent)
    assert got == stored
    assert got.active_backend == "inhouse"


def test_models_that_set_the_same_fields_share_one_fields_set() -> None:
    first, second = parse_spec(SPEC), parse_spec(SPEC)
    assert first.model_fields_set is second.model_fields_set
    assert first.backends[0].model_fields_set is second.backends[1].model_fields_set
    assert first.model_fields_set == {"service", "backends"}


def test_a_copy_with_an_update_does_not_change_the_shared_fields_set() -> None:
    first, second = _status("vendor"), _status("vendor")
    copied = first.model_copy(update={"failover_count": 3})
    assert "failover_count" in copied.model_fields_set
    assert "failover_count" not in second.model_fields_set
    assert second.model_dump(exclude_unset=True) == first.model_dump(exclude_unset=True)
