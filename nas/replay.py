"""Searches replayed on recorded accuracies: the seed study of the hypervolume ratio.

Once the exhaustive search has scored every sub-net, the searches can be run again (other
seeds, other ``T`` and ``k``) from that table without evaluating the network: the
accuracy objective is deterministic, so a replayed search sees exactly what a fresh run
with the same weights would see. :func:`seed_study` runs Algorithm 1 and NSGA-II (at
Algorithm 1's budget) for several seeds; ``defslice nas`` calls it after the exhaustive
search, and ``python -m defslice.nas.replay reports/nas/pareto.json`` does it from a
finished run's ``pareto.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from defslice.config import NasConfig
from defslice.errors import InputError
from defslice.nas.pareto import Point, hypervolume, pareto_front
from defslice.nas.search import Objective, evolutionary_search, nsga2_search
from defslice.nas.space import SearchSpace, SubNet

__all__ = ["TARGET_RATIO", "hv_reference", "seed_study", "table_objective"]

#: Hypervolume ratio to the exhaustive front that counts as reaching it (the issue's 0.99).
TARGET_RATIO = 0.99


def hv_reference(points: Sequence[Point]) -> tuple[float, float]:
    """Hypervolume reference of the whole space's points: 1% of each objective's range
    beyond the worst value (accuracy below the lowest, resource above the highest)."""
    accs = [p.accuracy for p in points]
    ress = [p.resource for p in points]
    return (min(accs) - 0.01 * (max(accs) - min(accs)),
            max(ress) + 0.01 * (max(ress) - min(ress)))


def table_objective(points: Sequence[Point]) -> Objective:
    """An :class:`Objective` answering from ``points`` (every sub-net of the space);
    asking for a sub-net not in the table is an error."""
    table = {p.subnet: p for p in points}

    def missing(x: SubNet) -> float:
        raise InputError(f"sub-net {x} is not in the recorded table")

    obj = Objective(missing, missing)
    obj.cache.update(table)
    return obj


def seed_study(space: SearchSpace, points: Sequence[Point], nas: NasConfig,
               seeds: Sequence[int], r_min: float | None = None,
               r_max: float | None = None) -> dict:
    """Algorithm 1 and NSGA-II (same budget) for each seed, on the recorded ``points``.

    ``points`` must hold every sub-net of ``space``. Returns ``{"seeds": [...],
    "runs": [{"seed", "evolutionary": {"evaluations", "ratio"}, "nsga2": {...}}, ...],
    "summary": {name: {"mean", "min", "max", "evaluations_mean"}}}``; ratios are
    hypervolumes relative to the exhaustive front's, reference :func:`hv_reference`.
    """
    if len({p.subnet for p in points}) < space.size:
        raise InputError(f"the seed study needs all {space.size} sub-nets, "
                         f"{len(points)} were recorded")
    ref = hv_reference(points)
    full = hypervolume(pareto_front(points, r_min, r_max), *ref)

    def ratio(front: Sequence[Point]) -> float:
        return hypervolume(front, *ref) / full if full > 0 else 1.0

    runs = []
    for seed in seeds:
        n = replace(nas, seed=int(seed))
        obj = table_objective(points)
        evo = evolutionary_search(space, obj, n)
        ns = nsga2_search(space, obj, n, budget=evo.evaluations)
        run = {"seed": int(seed), **{r.name: {"evaluations": r.evaluations,
                                              "ratio": ratio(r.front)} for r in (evo, ns)}}
        # Distinct evaluations after the first generation whose front reaches 0.99.
        run["evolutionary"]["evaluations_to_0.99"] = next(
            (used for used, front in evo.history if ratio(front) >= TARGET_RATIO), None)
        runs.append(run)
    summary = {}
    for name in ("evolutionary", "nsga2"):
        ratios = [r[name]["ratio"] for r in runs]
        summary[name] = {"mean": float(np.mean(ratios)), "min": float(min(ratios)),
                         "max": float(max(ratios)),
                         "at_least_0.99": int(sum(v >= TARGET_RATIO for v in ratios)),
                         "evaluations_mean": float(np.mean([r[name]["evaluations"]
                                                            for r in runs]))}
    reached = [r["evolutionary"]["evaluations_to_0.99"] for r in runs]
    reached = [v for v in reached if v is not None]
    summary["evolutionary"]["evaluations_to_0.99"] = {
        "reached": len(reached),
        "median": float(np.median(reached)) if reached else None,
        "p90": float(np.percentile(reached, 90)) if reached else None,
        "max": max(reached) if reached else None}
    return {"seeds": [int(s) for s in seeds], "generations": nas.generations,
            "samples_per_generation": nas.samples_per_generation, "runs": runs,
            "summary": summary}


def points_of_report(report: dict, resource: str | None = None) -> list[Point]:
    """The recorded sub-nets of a ``pareto.json``; ``resource``: ``None`` (the run's
    search resource), ``"eq3"`` (bits) or ``"bram18"`` (blocks)."""
    key = {None: "resource", "eq3": "eq3_bits", "bram18": "bram18"}[resource]
    return [Point(SubNet(p["slice_h"], p["slice_w"], p["overlap"]), float(p["accuracy"]),
                  float(p[key])) for p in report["evaluated"]]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m defslice.nas.replay",
                                 description="seed study of the searches on a finished "
                                             "run's recorded accuracies")
    ap.add_argument("report", type=Path, help="pareto.json of a run with the exhaustive search")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    ap.add_argument("--generations", type=int, default=None, help="T (default: the run's)")
    ap.add_argument("--samples", type=int, default=None, help="k (default: the run's)")
    ap.add_argument("--resource", choices=("eq3", "bram18"), default=None,
                    help="resource objective (default: the run's)")
    args = ap.parse_args(argv)
    rep = json.loads(args.report.read_text())
    s = rep["space"]
    space = SearchSpace(tuple(s["slice_h_range"]), tuple(s["slice_w_range"]),
                        tuple(s["overlaps"]))
    n = rep["nas"]
    nas = NasConfig(slice_h_range=space.h_range, slice_w_range=space.w_range,
                    overlaps=space.overlaps,
                    generations=args.generations or n["generations"],
                    samples_per_generation=args.samples or n["samples_per_generation"],
                    crossover_prob=n["crossover_prob"], r_min=n["r_min"], r_max=n["r_max"])
    study = seed_study(space, points_of_report(rep, args.resource), nas, range(args.seeds),
                       nas.r_min, nas.r_max)
    for r in study["runs"]:
        to = r["evolutionary"]["evaluations_to_0.99"]
        print(f"seed {r['seed']}: Alg. 1 {r['evolutionary']['evaluations']} evaluations, "
              f"ratio {r['evolutionary']['ratio']:.4f}"
              f"{'' if to is None else f' (0.99 after {to})'}; NSGA-II "
              f"{r['nsga2']['evaluations']} evaluations, ratio {r['nsga2']['ratio']:.4f}")
    for name, v in study["summary"].items():
        print(f"{name}: mean {v['mean']:.4f}, min {v['min']:.4f}, max {v['max']:.4f}, "
              f">= 0.99 in {v['at_least_0.99']}/{len(study['runs'])}, "
              f"{v['evaluations_mean']:.1f} evaluations on average")
    to = study["summary"]["evolutionary"]["evaluations_to_0.99"]
    if to["reached"]:
        print(f"evolutionary: reached 0.99 in {to['reached']}/{len(study['runs'])} seeds, "
              f"after {to['median']:.0f} evaluations (median), {to['p90']:.0f} (90th "
              f"percentile), {to['max']} at most")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
