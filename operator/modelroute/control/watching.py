"""The watches that feed the caches: every routing kind served, and Secrets (kube.watch).

They replace kopf's on-event handlers for those kinds (see the module docstring of
:mod:`modelroute.kube.watch` for why); ModelRoutes stay with kopf. Same scope as kopf's
watches: the operator's namespaces, or cluster-wide when none is set.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from modelroute.control.controller import Controller
from modelroute.kube.client import SECRETS, ObjectKind
from modelroute.kube.credentials import load_credentials
from modelroute.kube.stream import WatchClient
from modelroute.kube.watch import WatchConfig, Watches
from modelroute.settings import Settings


def start(settings: Settings, kinds: Iterable[ObjectKind], controller: Controller) -> Watches:
    """Start a list-then-watch of each of ``kinds`` and of Secrets, delivering to
    ``controller``; :meth:`Watches.stop` ends them and closes their connections."""
    api = WatchClient(
        load_credentials(settings.kubeconfig),
        request_timeout_s=settings.api_timeout_seconds,
        idle_timeout_s=settings.watch_client_timeout_seconds,
    )
    config = WatchConfig(
        server_timeout_s=settings.watch_server_timeout_seconds,
        retry_first_s=settings.watch_retry_first_seconds,
        retry_max_s=settings.watch_retry_max_seconds,
    )
    watches = Watches(api, config, close=api.close)
    for kind in kinds:
        watches.start(
            kind, settings.namespaces, functools.partial(controller.on_object_event, kind)
        )
    watches.start(SECRETS, settings.namespaces, controller.on_secret_event)
    return watches
