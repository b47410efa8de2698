"""Fixtures for control-plane fault tests: the shared API server, restored after each test.

The fault tests stop and start the session's own kube-apiserver and etcd (same ports, data
dir and certificates) under a running operator. Whatever a test leaves stopped, even when it
fails half-way, is started again before the next test.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

import pytest

from tests.envtest.conftest import scenario  # noqa: F401  (fixture, re-exported)
from tests.harness.apiserver import WRITE_VERBS, Cluster, Identity, audit_time
from tests.harness.operator import OperatorProcess, running_operator


@pytest.fixture
def operator(
    crd: Cluster, namespace: str, operator_identity: Identity
) -> Iterator[OperatorProcess]:
    """An operator process watching only this test's namespace. Status changes that decide
    nothing wait 1 s, not 30: "nothing written after the outage" must not catch the write of a
    counter that changed before it."""
    args = ["--status-defer-seconds=1"]
    with running_operator(operator_identity, crd.workdir, [namespace], args) as process:
        yield process


@pytest.fixture
def control_plane(crd: Cluster) -> Iterator[Cluster]:
    """The local API server, for a test that stops parts of it; restored afterwards.

    Request it last, so it is restored before the operator and scenario are torn down."""
    if not crd.is_local:
        pytest.skip("control-plane faults stop the local API server (not USE_EXISTING_CLUSTER)")
    try:
        yield crd
    finally:
        crd.ensure_running()


def record(scenario_name: str, **figures: Any) -> None:
    """A measured figure for docs/reliability.md: printed, and appended as one JSON line to
    ``$MODELROUTE_FAULT_FIGURES`` when set (``make faults`` sets it)."""
    line = json.dumps({"scenario": scenario_name, **figures}, sort_keys=True)
    print(f"FIGURES {line}")
    path = os.environ.get("MODELROUTE_FAULT_FIGURES")
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")


def outage_seconds(default: float) -> float:
    """How long a test keeps the API server down ($MODELROUTE_FAULT_OUTAGE_SECONDS)."""
    return float(os.environ.get("MODELROUTE_FAULT_OUTAGE_SECONDS", default))


class Background:
    """``step`` again and again in a daemon thread, for the duration of a with-block."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()

    def step(self) -> None:
        """One round of the loop."""
        raise NotImplementedError


class Sampler(Background):
    """Calls ``probe`` every ``period`` seconds in a thread; keeps (time.time(), value)."""

    def __init__(self, probe: Callable[[], Any], period: float = 0.05) -> None:
        super().__init__()
        self._probe = probe
        self._period = period
        self.samples: list[tuple[float, Any]] = []

    def step(self) -> None:
        """Take one sample, then wait a period."""
        try:
            value = self._probe()
        except Exception as exc:  # the API server is down: that is a sample too
            value = f"error: {type(exc).__name__}"
        self.samples.append((time.time(), value))
        self._stop.wait(self._period)

    def values(self) -> list[Any]:
        """The values seen, in order."""
        return [v for _, v in self.samples]

    def first(self, predicate: Callable[[Any], bool], since: float = 0.0) -> float | None:
        """When ``predicate`` first held at or after ``since``."""
        return next((t for t, v in self.samples if t >= since and predicate(v)), None)


def audit_writes(
    cluster: Cluster, identity: Identity, namespace: str, since: float
) -> list[dict[str, Any]]:
    """The operator's write audit events in ``namespace`` since ``since`` (oldest first)."""
    events = cluster.audit_events(username=identity.username, verbs=WRITE_VERBS, since=since)
    return [e for e in events if e.get("objectRef", {}).get("namespace") == namespace]


def first_request_since(cluster: Cluster, since: float) -> float:
    """When the API server received its first request at or after ``since`` (any user): the
    moment a restarted API server was answering again."""
    events = cluster.audit_events(since=since)
    assert events, "no request reached the API server"
    return min(audit_time(e) for e in events)
