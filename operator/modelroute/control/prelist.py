"""Start-up: list the ModelRoutes once, start their workers, then check what kopf never says.

kopf lists the routes after every start-up handler has finished and hands them over one
object at a time, each through its own per-object worker, on the loop the started routes share:
at 1,000 routes the last one started 13 s (idle machine) to 42 s (loaded) after the process, and
a restarted operator failed over the routes left by its predecessor that much late (issue 13,
scenario 5). One LIST of our own, read in the start-up handler, starts them all at once,
each page as it comes while the next is fetched (at 1,000 routes the two pages took the API
server 1.1 s: the first 500 routes probe meanwhile).

The catch is a route deleted between this list and kopf's: kopf lists without it and never
reports its deletion. So until kopf has delivered every route started here, the routes are
listed again now and then; one a later list lacks is removed as if DELETED. The lists back
off (10 s, doubling up to 60 s) and end after ``RECHECK_ROUNDS`` with a warning naming the
routes kopf never delivered: a failure that is not the API's is logged with its traceback and
the next round tries again, it never ends the check silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp

from modelroute.api.models import GROUP, PLURAL, VERSION
from modelroute.control.controller import Controller
from modelroute.kube.client import MODELROUTES, ApiError
from modelroute.settings import Settings

logger = logging.getLogger("modelroute.control.prelist")

# Seconds before the first list that looks for routes deleted while kopf was listing; each
# later one waits twice as long, up to RECHECK_MAX_SECONDS.
RECHECK_SECONDS = 10.0
RECHECK_MAX_SECONDS = 60.0
# Lists after which the routes kopf has still not delivered are left to kopf (about 18 min:
# several times kopf's own LIST timeout, kopf_request_timeout_seconds). A route still listed
# each time exists: only a route kopf never delivers at all keeps this going, and that is
# worth a warning, not a LIST of every route forever.
RECHECK_ROUNDS = 20
PAGE = 500


class GetFn(Protocol):
    """A GET of an API path (``KubeClient.request`` with "GET"); ``urgent``: in the routing
    writes' lane."""

    def __call__(self, path: str, *, urgent: bool = False) -> Awaitable[dict[str, Any] | None]:
        """The decoded answer, None for a 404."""
        ...


async def list_routes(
    get: GetFn, settings: Settings, *, urgent: bool = False
) -> list[dict[str, Any]]:
    """Every ModelRoute this operator serves: its namespaces (all when none) and its
    ``--label-selector`` shard, exactly what kopf's watch selects."""
    return [item async for page in list_pages(get, settings, urgent=urgent) for item in page]


async def list_pages(
    get: GetFn, settings: Settings, *, urgent: bool = False
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The pages of :func:`list_routes`, each as it comes; the next page is already being
    fetched while the caller works on one (the API server's time and ours overlap).
    ``urgent``: in the routing writes' lane (see :func:`start_listed`)."""
    paths = [MODELROUTES.path(ns) for ns in settings.namespaces] or [
        f"/apis/{GROUP}/{VERSION}/{PLURAL}"
    ]
    for path in paths:
        pending: asyncio.Future[dict[str, Any] | None] | None = asyncio.ensure_future(
            get(_page_path(path, settings, ""), urgent=urgent)
        )
        try:
            while pending is not None:
                page = await pending or {}
                token = (page.get("metadata") or {}).get("continue") or ""
                pending = (
                    asyncio.ensure_future(get(_page_path(path, settings, token), urgent=urgent))
                    if token
                    else None
                )
                yield page.get("items") or []
        finally:
            if pending is not None:  # the caller stopped early, or a page failed
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)


def _page_path(path: str, settings: Settings, token: str) -> str:
    query: dict[str, str | int] = {"limit": PAGE}
    if settings.label_selector:
        query["labelSelector"] = settings.label_selector
    if token:
        query["continue"] = token
    return f"{path}?{urlencode(query)}"


async def start_listed(
    controller: Controller, get: GetFn, settings: Settings
) -> asyncio.Task[None] | None:
    """List and start the routes, each page as it comes (the first routes probe while the
    rest are listed); the task that then checks for deletions kopf missed (None when the list
    failed before any route started: kopf's own list starts the routes, only later)."""
    started = 0
    try:
        # Urgent: the routes of the first pages route at once (on a shared probe's result),
        # and a page in the normal lane waited for all of their routing writes. Closed on any
        # way out, so a prefetched page's request ends with it.
        pages = list_pages(get, settings, urgent=True)
        async with contextlib.aclosing(pages):
            async for page in pages:
                await controller.adopt_listed(page)
                started += len(page)
    except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("could not list ModelRoutes at start-up, kopf will: %s", exc)
        if not started:
            return None
    else:
        logger.info("started %d routes from the start-up list", started)
    # Routes started from a partial list are checked too: kopf's list confirms the rest.
    return asyncio.create_task(recheck(controller, get, settings), name="prelist-recheck")


async def recheck(
    controller: Controller,
    get: GetFn,
    settings: Settings,
    every: float = RECHECK_SECONDS,
    rounds: int = RECHECK_ROUNDS,
) -> None:
    """Until kopf has delivered every route started from the list: list again, and drop the
    routes that are gone. Waits ``every`` seconds, doubled each time (capped); gives up with a
    warning naming the routes after ``rounds`` lists."""
    delay = every
    for _ in range(rounds):
        if not controller.unconfirmed:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECHECK_MAX_SECONDS)
        if not controller.unconfirmed:
            return
        try:
            bodies = await list_routes(get, settings)
            await controller.sweep_unconfirmed(bodies)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("could not list ModelRoutes again: %s", exc)
        except Exception:
            # A bug here must not end the check silently (a deleted route would run forever):
            # say so with the traceback, and try again at the next round.
            logger.exception("checking the start-up list against the routes failed")
    if controller.unconfirmed:
        names = controller.unconfirmed_names
        logger.warning(
            "kopf has not delivered %d routes started from the start-up list after %d lists; "
            "no longer checking whether they were deleted (a restart does): %s",
            len(names),
            rounds,
            ", ".join(names[:20]) + (", ..." if len(names) > 20 else ""),
        )
