"""kopf handlers: parse the event, hand it to the controller, return. Nothing else lives here.

Only on-event handlers are used, so kopf writes nothing to the watched objects (no finalizers,
no progress or last-handled annotations): at steady state the operator writes nothing at all.
"""

from __future__ import annotations

from typing import Any

import kopf

from modelroute import routing
from modelroute.api.models import GROUP, PLURAL, VERSION
from modelroute.control.runtime import Runtime
from modelroute.kube.client import ObjectKind
from modelroute.settings import Settings, apply_to_kopf


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Apply our settings to kopf and start the runtime before any watch begins."""
    operator_settings: Settings = memo["settings"]
    apply_to_kopf(operator_settings, settings)
    memo["runtime"] = await Runtime.start(operator_settings)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop workers and endpoints on shutdown."""
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster ServiceAccount or KUBECONFIG, through the kubernetes client's loaders."""
    return kopf.login_via_client(**kwargs)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def modelroute_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A ModelRoute was listed, added, changed or deleted."""
    await memo["runtime"].controller.on_route_event(event.get("type"), event["object"])


def _watch(kind: ObjectKind) -> None:
    """Register a watch of ``kind``: its events go to the caches of the routes that need them."""

    async def object_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo["runtime"].controller.on_object_event(kind, event.get("type"), event["object"])

    object_event.__name__ = object_event.__qualname__ = f"{kind.plural}_event"
    kopf.on.event(kind.group, kind.version, kind.plural, id=f"{kind.plural}.{kind.group}")(
        object_event
    )


# The kinds routing drivers declared (their routing objects and what they read): adding a
# driver adds its watches here without touching this module.
for _kind in routing.watched_kinds():
    _watch(_kind)


@kopf.on.event("", "v1", "secrets")
async def secret_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A Secret changed; only the ones routes reference are kept."""
    memo["runtime"].controller.on_secret_event(event.get("type"), event["object"])
