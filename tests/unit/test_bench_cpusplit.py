"""The benchmark's --cpu-split (bench/cpusplit.py): the control plane's processes, every thread
of them, on one half of the CPUs, the bench on the other, and everything let go afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.cpusplit import cpu_split, halves, pin

CPUS = frozenset(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="the split needs two CPUs to split")

# A process with a second thread, which starts a third once pinned (it inherits the pinning).
_CHILD = """
import sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("started", flush=True)
time.sleep(60)
"""


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def affinities(pid: int) -> list[frozenset[int]]:
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [frozenset(os.sched_getaffinity(int(t.name))) for t in tasks]


def test_halves_give_the_lower_half_to_the_operator() -> None:
    assert halves([1, 0]) == (frozenset({0}), frozenset({1}))
    assert halves(range(4)) == (frozenset({0, 1}), frozenset({2, 3}))
    assert halves([0, 1, 2]) == (frozenset({0}), frozenset({1, 2}))


def test_one_cpu_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="at least 2 CPUs"):
        halves([0])


@needs_two
def test_every_thread_is_pinned_and_new_threads_inherit_it(child: subprocess.Popen[str]) -> None:
    one = frozenset({max(CPUS)})
    assert pin(child.pid, one) == 2
    assert affinities(child.pid) == [one, one]
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline() == "started\n"
    assert affinities(child.pid) == [one, one, one]


@needs_two
def test_the_split_is_undone_after_the_block(child: subprocess.Popen[str]) -> None:
    mine, theirs = halves(CPUS)
    with cpu_split([child.pid], enabled=True) as split:
        assert split is not None
        assert set(affinities(child.pid)) == {theirs}
        assert frozenset(os.sched_getaffinity(0)) == mine
    assert set(affinities(child.pid)) == {CPUS}
    assert frozenset(os.sched_getaffinity(0)) == CPUS


def test_no_split_touches_nothing(child: subprocess.Popen[str]) -> None:
    with cpu_split([child.pid], enabled=False) as split:
        assert split is None
        assert set(affinities(child.pid)) == {CPUS}


def test_a_split_needs_the_control_plane_processes() -> None:
    with pytest.raises(ValueError, match="control plane"), cpu_split([], enabled=True):
        pass


def test_writes_held_count_each_arrival_and_not_the_answered() -> None:
    from bench.mass import _in_flight

    def patch(received: float, answered: float) -> dict[str, object]:
        stamp = {
            "requestReceivedTimestamp": f"2026-12-02T10:00:0{received}.000000Z",
            "stageTimestamp": f"2026-12-02T10:00:0{answered}.000000Z",
        }
        return {"verb": "patch", "objectRef": {"resource": "services"}, **stamp}

    other = {**patch(0, 9), "verb": "create", "objectRef": {"resource": "events"}}
    held = _in_flight([patch(0, 3), patch(1, 2), patch(2, 4), other], "patch services")
    # At 0: itself; at 1: two; at 2: the second answered just then, the third arrives.
    assert (held["min"], held["max"], held["n"]) == (1.0, 2.0, 3)
    assert held["mean"] == pytest.approx(5 / 3, abs=0.01)


def test_a_variant_is_a_point_of_its_own_and_old_points_keep_their_place() -> None:
    from bench.mass import merge, point_key
    from bench.report import _variant

    assert point_key(3000, 1) == "3000x1s"
    assert point_key(3000, 1, True, ("--api-max-in-flight=100",)) == (
        "3000x1s-cpusplit --api-max-in-flight=100"
    )
    tuned = {"routes": 3000, "interval_s": 1, "operator_args": ["--api-max-in-flight=100"]}
    default = {"routes": 3000, "interval_s": 1, "operator_args": []}
    # An older result keyed the tuned point plainly; a new default run must not replace it.
    merged = merge({"points": {"3000x1s": tuned}}, {"points": {"3000x1s": default}})
    assert merged["points"] == {"3000x1s": default, "3000x1s --api-max-in-flight=100": tuned}
    assert _variant(default) == ""
    assert "--api-max-in-flight=100" in _variant(tuned)
    assert "half the cores" in _variant({**default, "cpu_split": True})
