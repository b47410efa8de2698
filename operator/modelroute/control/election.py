"""The operator's leader election, built from its settings (see kube.leader)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime

from modelroute.control.controller import Controller
from modelroute.kube.client import KubeClient
from modelroute.kube.leader import LeaderElector, LeaseConfig
from modelroute.settings import Settings


def elector(
    settings: Settings, kube: KubeClient, controller: Controller, now: Callable[[], datetime]
) -> LeaderElector:
    """Leader election with a Lease: only the holder runs the route workers."""
    return LeaderElector(
        kube,
        LeaseConfig(
            # In a Pod the chart sets POD_NAMESPACE from the downward API.
            namespace=settings.leader_election_namespace
            or os.environ.get("POD_NAMESPACE", "default"),
            name=settings.leader_election_lease,
            identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
            lease_seconds=settings.leader_election_lease_seconds,
            renew_deadline_seconds=settings.leader_election_renew_deadline_seconds,
            renew_seconds=settings.leader_election_retry_seconds,
            label_selector=settings.label_selector,
        ),
        now=now,
        on_started=controller.start_leading,
        on_stopped=controller.stop_leading,
    )
