"""Tests for routing/ownership.py: who owns a routing object, and the deletion policy's
ownerReferences (the same for every driver; the driver contract runs them end to end)."""

from __future__ import annotations

from typing import Any

import pytest

from modelroute.api.models import ModelRouteSpec
from modelroute.core.types import RouteRef
from modelroute.routing.ownership import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROUTE_LABEL,
    owner_reference,
    owner_references,
    owner_references_patch,
    ownership,
)
from tests.unit.test_policy import make_spec

ROUTE = RouteRef("ai", "chat", "uid-chat")
OLD = RouteRef("ai", "chat-old", "uid-old")
GATEWAY_OWNER = {"apiVersion": "example.com/v1", "kind": "Thing", "name": "t", "uid": "uid-t"}


def spec(policy: str) -> ModelRouteSpec:
    wire = make_spec(("vendor", 0), ("inhouse", 1)).to_wire()
    return ModelRouteSpec.model_validate({**wire, "routing": {"deletionPolicy": policy}})


def obj(route: str | None, *owners: dict[str, Any], managed: bool = True) -> dict[str, Any]:
    labels = {MANAGED_BY_LABEL: MANAGED_BY} if managed else {}
    if route is not None:
        labels[ROUTE_LABEL] = route
    return {"metadata": {"labels": labels, "ownerReferences": list(owners)}}


def test_delete_owns_and_retain_does_not() -> None:
    assert owner_references(ROUTE, spec("Delete")) == [owner_reference(ROUTE)]
    assert owner_references(ROUTE, spec("Retain")) == []


@pytest.mark.parametrize(
    ("have", "policy", "patched"),
    [
        ([], "Delete", [owner_reference(ROUTE)]),
        ([owner_reference(ROUTE)], "Delete", None),
        ([GATEWAY_OWNER, owner_reference(ROUTE)], "Delete", None),
        ([owner_reference(ROUTE)], "Retain", []),
        ([GATEWAY_OWNER, owner_reference(ROUTE)], "Retain", [GATEWAY_OWNER]),
        ([owner_reference(OLD)], "Retain", []),
        ([GATEWAY_OWNER], "Retain", None),
        ([], "Retain", None),
    ],
)
def test_owner_references_patch(
    have: list[dict[str, Any]], policy: str, patched: list[dict[str, Any]] | None
) -> None:
    desired = {"ownerReferences": owner_references(ROUTE, spec(policy))}
    assert owner_references_patch({"ownerReferences": have}, desired) == patched


@pytest.mark.parametrize(
    ("body", "adopt", "expected"),
    [
        (obj("chat", owner_reference(ROUTE)), False, "owned"),
        (obj("chat"), False, "adoptable"),  # our own object under Retain
        (obj("chat-old"), False, "foreign"),  # retained by another route: not without adopt
        (obj("chat-old"), True, "retained"),
        (obj("chat-old", owner_reference(OLD)), True, "foreign"),  # still that route's
        (obj("chat-old", managed=False), True, "foreign"),  # not the operator's
        (obj(None), True, "foreign"),  # the operator's, but no route named: never adopted
    ],
)
def test_ownership(body: dict[str, Any], adopt: bool, expected: str) -> None:
    assert ownership(ROUTE, body, adopt=adopt) == expected
