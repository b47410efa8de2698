"""`make bench [ARGS="--scenario single --repeat 3 --quick"]`.

Starts the harness's real kube-apiserver + etcd once, runs the chosen scenarios (each run
starts its own operator process and fakes), and merges the results into
bench/results/latest.json (a scenario not run keeps its previous result) and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.stats import median_of_runs
from tests.harness.apiserver import REPO_ROOT, running_cluster
from tests.harness.kube import install_crd

SCENARIOS = ("single", "mass", "scale", "peer")
RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scenario",
        action="append",
        choices=(*SCENARIOS, "all"),
        help="scenario to run (repeatable; default: all)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--routes",
        type=int,
        help="routes for mass and scale (default: mass 1000 and 3000, scale 10000)",
    )
    parser.add_argument(
        "--probe-interval",
        type=int,
        help="mass: only this probe intervalSeconds (default: 1, 2 and 5 s; quick 1 and 5 s)",
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="scale: every backend of every route its own endpoint (default: 30 shared targets)",
    )
    parser.add_argument(
        "--steady-seconds", type=float, help="scale: steady window (default 180, quick 30)"
    )
    parser.add_argument(
        "--first-status-hold",
        type=float,
        help="scale: the operator's --first-status-hold-seconds (default: its own default)",
    )
    parser.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="mass and scale: one more argument for the operator, e.g. "
        "--operator-arg=--api-max-in-flight=100 (repeatable; recorded with the results)",
    )
    parser.add_argument(
        "--cpu-split",
        action="store_true",
        help="mass: kube-apiserver and etcd on one half of the cores, the operator, the bench "
        "and the fakes on the other, as on a cluster (bench/cpusplit.py; recorded)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record the operator during mass outages and the scale window "
        "(bench/results/profile-*.txt, collapsed stacks; top frames in the results)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="results JSON to update")
    parser.add_argument("--no-report", action="store_true", help="skip docs/benchmarks.md")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rewrite docs/benchmarks.md and its plots from the results file",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    chosen = args.scenario or ["all"]
    args.scenarios = list(SCENARIOS) if "all" in chosen else list(dict.fromkeys(chosen))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Offline by construction: litellm must use its bundled model cost map.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.pop("USE_EXISTING_CLUSTER", None)  # the audit log needs the local API server
    results: dict[str, Any] = {}
    if args.results.exists():
        results = json.loads(args.results.read_text())
    results.setdefault("scenarios", {})
    if args.report_only:
        from bench import report

        report.write(results)
        return 0
    from bench import mass, peer, scale, single

    modules = {"single": single, "mass": mass, "scale": scale, "peer": peer}
    with running_cluster() as cluster:
        install_crd(cluster)
        machine = common.machine(cluster)
        common.log(f"machine: {machine}")
        for name in args.scenarios:
            started = time.time()
            common.log(f"=== {name} (repeat {args.repeat}{', quick' if args.quick else ''})")
            outcome = modules[name].run(cluster, args)
            runs = outcome.pop("runs")
            entry = {
                "result": median_of_runs([_numbers_only(r) for r in runs]),
                "repeats": len(runs),
                "quick": args.quick,
                "runs": runs,
                "wall_s": round(time.time() - started, 1),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": machine,
                **outcome,
            }
            if hasattr(modules[name], "merge"):
                # A scenario with a matrix keeps the points this run did not measure again.
                entry = modules[name].merge(results["scenarios"].get(name), entry)
            results["scenarios"][name] = entry
            results["machine"] = machine
            args.results.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.results.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
            tmp.replace(args.results)
            common.log(f"=== {name} done in {entry['wall_s']} s: {json.dumps(entry['result'])}")
    if not args.no_report:
        from bench import report

        report.write(results)
    return 0


def _numbers_only(run: dict[str, Any]) -> dict[str, Any]:
    """A run without its raw sample lists (they are kept in "runs", not medianed)."""
    return {k: v for k, v in run.items() if not isinstance(v, list)}


if __name__ == "__main__":
    sys.exit(main())
