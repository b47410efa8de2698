"""--cpu-split: the control plane on one half of the cores, the operator on the other.

Why: in a cluster the operator runs on a node of its own, not on the API server's cores. On
this machine the three share two cores, so a mass failover's last switch carries the
operator's CPU on top of the API server's (bench/notes.md item 13). With the split, the write
floor is measured on the control plane's cores alone, as in the default run, and the outage
shows whether the operator keeps those cores busy. The bench itself and the fake backends sit
with the operator, so nothing but the control plane runs on its cores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Passes over a process's threads: a thread started by one not yet pinned escapes a pass.
_PASSES = 5


def halves(cpus: Iterable[int]) -> tuple[frozenset[int], frozenset[int]]:
    """(the operator's, the control plane's) CPUs: the lower and the upper half."""
    ordered = sorted(cpus)
    if len(ordered) < 2:
        raise ValueError(f"--cpu-split needs at least 2 CPUs, this process may use {ordered}")
    half = len(ordered) // 2
    return frozenset(ordered[:half]), frozenset(ordered[half:])


def pin(pid: int, cpus: frozenset[int]) -> int:
    """Every thread of ``pid`` on ``cpus`` (threads it starts later inherit it from theirs);
    returns the number of threads pinned in the last pass."""
    pinned = 0
    for _ in range(_PASSES):
        moved, pinned = 0, 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            tid = int(task.name)
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                if os.sched_getaffinity(tid) != cpus:
                    os.sched_setaffinity(tid, cpus)
                    moved += 1
                pinned += 1
        if not moved:
            break
    return pinned


@dataclass(frozen=True)
class Split:
    """The two halves."""

    operator: frozenset[int]
    control_plane: frozenset[int]

    def place(self, *pids: int) -> None:
        """The operator and the fakes: on the operator's half (they end with the point, so
        nothing lets them go again)."""
        for pid in pids:
            pin(pid, self.operator)


@contextlib.contextmanager
def cpu_split(control_plane_pids: Iterable[int], enabled: bool) -> Iterator[Split | None]:
    """Pin the control plane to its half and this process to the other for the block (None
    when not ``enabled``); both are on every CPU again afterwards, even if pinning failed."""
    if not enabled:
        yield None
        return
    pids = list(control_plane_pids)
    if not pids:
        raise ValueError("--cpu-split needs the local control plane's processes, and has none")
    everything = frozenset(os.sched_getaffinity(0))
    mine, theirs = halves(everything)
    try:
        for pid in pids:
            pin(pid, theirs)
        pin(os.getpid(), mine)
        yield Split(mine, theirs)
    finally:
        for pid in (*pids, os.getpid()):
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                pin(pid, everything)
