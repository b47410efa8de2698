"""kopf's diff base is switched off: the operator has only on-event handlers."""

from __future__ import annotations

import kopf

from modelroute.control.handlers import NoDiffBase


def test_no_diff_base_builds_and_keeps_nothing() -> None:
    storage = NoDiffBase()
    body = kopf.Body({"metadata": {"name": "chat"}, "spec": {"backends": [{"name": "a"}]}})
    patch = kopf.Patch()
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) == {}
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert not patch  # nothing is written to the object


def test_kopf_sees_no_change_between_two_bodies() -> None:
    from kopf._cogs.structs import diffs  # kopf's own diff, as its reactor calls it

    storage = NoDiffBase()
    old = storage.fetch(body=kopf.Body({"spec": {"a": 1}}))
    new = storage.build(body=kopf.Body({"spec": {"a": 2}}))
    assert diffs.diff(old, new) == ()
