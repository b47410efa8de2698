"""kopf handlers: parse the event, hand it to the controller, return. Nothing else lives here.

Only on-event handlers are used, so kopf writes nothing to the watched objects (no finalizers,
no progress or last-handled annotations): at steady state the operator writes nothing at all.

kopf watches only ModelRoutes. The routing drivers' kinds and Secrets are watched by the
operator's own list-then-watch loops (modelroute.kube.watch, started by the runtime), which
cost far less per event than kopf's machinery; only the kinds of the drivers it serves are
watched, so a kind the cluster lacks, or one this operator has no RBAC for (a driver not enabled
in the chart), is never listed or watched at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf

from modelroute.api.models import GROUP, PLURAL, VERSION
from modelroute.control.runtime import Runtime
from modelroute.settings import Settings, apply_to_kopf

#: Seconds between attempts to start when the API server does not answer (kopf's default is
#: 60): a Pod started during a control-plane outage serves routes this soon after it is back.
STARTUP_RETRY_SECONDS = 5.0


@kopf.on.startup(backoff=STARTUP_RETRY_SECONDS)
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Apply our settings to kopf and start the runtime before any watch begins."""
    operator_settings: Settings = memo["settings"]
    apply_to_kopf(operator_settings, settings)
    settings.persistence.diffbase_storage = NoDiffBase()
    runtime = await Runtime.start(operator_settings)
    try:
        await runtime.start_routes()  # before kopf lists: see modelroute.control.prelist
    except BaseException:
        await runtime.stop()  # kopf tries again: this attempt's ports and tasks must go
        raise
    memo["runtime"] = runtime


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: kopf builds one for every watch event (a deep copy of the body, for
    on-change handlers) although this operator has only on-event handlers. At 1,000 routes
    that copy was a fifth of the operator's CPU during a mass failover (py-spy, bench mass),
    almost all of it spent on the echoes of our own status writes."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        """An empty essence for every body: nothing is diffed."""
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """An empty essence too: no change is ever seen, so no diff is computed."""
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Nothing to keep (and nothing is written to the object)."""


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
