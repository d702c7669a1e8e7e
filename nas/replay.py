"""Searches replayed on recorded accuracies: the seed study of the hypervolume ratio.

Once the exhaustive search has scored every sub-net, the searches can be run again (other
seeds, other ``T`` and ``k``) from that table without evaluating the network: the
accuracy objective is deterministic, so a replayed search sees exactly what a fresh run
with the same weights would see. :func:`seed_study` runs Algorithm 1, NSGA-II and random
search for several seeds; ``defslice nas`` calls it when the exhaustive table exists, and
``python -m defslice.nas.replay reports/nas/pareto.json`` does it from a finished run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from defslice.config import NasConfig
from defslice.errors import InputError
from defslice.nas.pareto import Point, hypervolume, hypervolume_trace, pareto_front
from defslice.nas.search import Objective, evolutionary_search, nsga2_search, random_search
from defslice.nas.space import SearchSpace, SubNet

__all__ = ["SEARCHES", "TARGET_RATIO", "hv_reference", "margin_goal", "replay_run",
           "seed_study", "study_lines", "table_objective"]

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


#: Searches of the seed study and the names they carry in reports.
SEARCHES = ("evolutionary", "nsga2", "random")
#: The seed study follows every search until 0.99 or this fraction of the space.
MAX_FRACTION = 0.5


def _first_reaching(trace: Sequence[float], goal: float) -> int | None:
    """Evaluations (1-based) after which the hypervolume ``trace`` first reaches
    ``goal``; ``None`` if it never does."""
    return next((i + 1 for i, v in enumerate(trace) if v >= goal - 1e-15 * abs(goal)), None)


def _percentile(values: Sequence[int | None], q: float) -> float | None:
    """``q``-th percentile with ``None`` (not reached) counted as larger than any
    number; ``None`` when the percentile falls on such a seed."""
    v = np.sort([np.inf if x is None else float(x) for x in values])
    r = float(np.percentile(v, q, method="inverted_cdf"))
    return None if np.isinf(r) else r


def replay_run(space: SearchSpace, points: Sequence[Point], nas: NasConfig,
               cap: int) -> dict[str, list[Point]]:
    """Alg. 1, NSGA-II and random search for ``nas.seed`` on the recorded ``points``,
    each followed until ``cap`` distinct evaluations (Alg. 1: at least
    ``nas.generations``): the sub-nets each evaluated, in order. The first ``n`` of a
    list are what a run with a budget of ``n`` evaluates."""
    k = nas.samples_per_generation
    long = replace(nas, generations=max(nas.generations, -(-4 * cap // k)))
    evo = evolutionary_search(space, table_objective(points), long)
    budget = evo.history[nas.generations - 1][0]
    out: dict[str, Any] = {"evolutionary": evo.evaluated[:max(cap, budget)]}
    out["nsga2"] = nsga2_search(space, table_objective(points), nas, cap).evaluated
    out["random"] = random_search(space, table_objective(points), nas, cap).evaluated
    out["budget"] = budget  # Alg. 1's evaluations after nas.generations generations
    return out


def margin_goal(front: Sequence[Point], ref: tuple[float, float], margin: float) -> float:
    """Hypervolume of ``front`` with every accuracy lowered by ``margin`` (a fraction):
    a search whose front reaches it has, for the hypervolume, found the front to within
    ``margin`` of accuracy."""
    return hypervolume([Point(p.subnet, p.accuracy - margin, p.resource) for p in front],
                       *ref)


def seed_study(space: SearchSpace, points: Sequence[Point], nas: NasConfig,
               seeds: Sequence[int], r_min: float | None = None,
               r_max: float | None = None, max_fraction: float = MAX_FRACTION,
               margin: float = 0.0) -> dict:
    """Alg. 1, NSGA-II and random search for each seed, on the recorded ``points``.

    ``points`` must hold every sub-net of ``space``. Per seed and search: the HV ratio
    (hypervolume over the exhaustive front's, reference :func:`hv_reference`) at Alg. 1's
    budget (its distinct evaluations after ``nas.generations``) and the evaluations
    after which the front first reaches :data:`TARGET_RATIO` (``None`` if not within
    ``max_fraction`` of the space) and, when ``margin > 0`` (accuracy, a fraction), the
    evaluations after which it reaches :func:`margin_goal` (the exhaustive front to
    within ``margin``: ``"evaluations_within_margin"``, summarised like the 0.99
    figure, with ``"margin"`` and the goal's ratio ``"margin_ratio"``). Returns
    ``{"seeds", "runs": [{"seed", "budget", name: {"evaluations", "ratio",
    "evaluations_to_0.99"}}], "summary": {name: {"mean", "min", "max", "at_least_0.99",
    "evaluations_mean", "evaluations_to_0.99": {"reached", "median", "p90", "max"}}},
    "traces": {name: [[ratio after n evaluations] per seed]}, "cap"}``.
    """
    if len({p.subnet for p in points}) < space.size:
        raise InputError(f"the seed study needs all {space.size} sub-nets, "
                         f"{len(points)} were recorded")
    ref = hv_reference(points)
    front = pareto_front(points, r_min, r_max)
    full = hypervolume(front, *ref)
    goals = {"evaluations_to_0.99": TARGET_RATIO * full}
    if margin > 0:
        goals["evaluations_within_margin"] = margin_goal(front, ref, margin)
    cap = max(1, int(max_fraction * space.size))
    runs, traces = [], {name: [] for name in SEARCHES}
    for seed in seeds:
        evaluated = replay_run(space, points, replace(nas, seed=int(seed)), cap)
        budget = evaluated.pop("budget")
        run: dict[str, Any] = {"seed": int(seed), "budget": budget}
        for name in SEARCHES:
            hv = hypervolume_trace(evaluated[name], *ref, r_min, r_max)
            ratio = [v / full if full > 0 else 1.0 for v in hv]
            n = min(budget, len(ratio))
            run[name] = {"evaluations": n, "ratio": ratio[n - 1]}
            run[name].update({key: _first_reaching(hv[:cap], goal)
                              for key, goal in goals.items()})
            traces[name].append([round(v, 6) for v in ratio[:cap]])
        runs.append(run)
    study = {"seeds": [int(s) for s in seeds], "generations": nas.generations,
             "samples_per_generation": nas.samples_per_generation, "cap": cap,
             "runs": runs, "summary": _summary(runs, list(goals)), "traces": traces}
    if margin > 0:
        study.update(margin=margin, margin_ratio=goals["evaluations_within_margin"] / full)
    return study


def _reaching(values: list[int | None]) -> dict:
    got = [v for v in values if v is not None]
    return {"reached": len(got), "median": _percentile(values, 50),
            "p90": _percentile(values, 90), "max": max(got) if got else None}


def _summary(runs: list[dict], keys: list[str]) -> dict:
    summary = {}
    for name in SEARCHES:
        ratios = [r[name]["ratio"] for r in runs]
        summary[name] = {
            "mean": float(np.mean(ratios)), "min": float(min(ratios)),
            "max": float(max(ratios)),
            "at_least_0.99": int(sum(v >= TARGET_RATIO for v in ratios)),
            "evaluations_mean": float(np.mean([r[name]["evaluations"] for r in runs]))}
        summary[name].update({key: _reaching([r[name][key] for r in runs]) for key in keys})
    return summary


def _evals(v: float | None, cap: int) -> str:
    return f"> {cap}" if v is None else f"{v:.0f}"


def study_lines(study: dict) -> list[str]:
    """One line per search of a :func:`seed_study`, for people."""
    n, cap = len(study["runs"]), study["cap"]
    lines = []
    for name in SEARCHES:
        v = study["summary"][name]
        to = v["evaluations_to_0.99"]
        lines.append(f"{name}: at Alg. 1's budget ({v['evaluations_mean']:.1f} evaluations on "
                     f"average) HV ratio mean {v['mean']:.4f}, min {v['min']:.4f}, >= "
                     f"{TARGET_RATIO} in {v['at_least_0.99']}/{n}; evaluations to "
                     f"{TARGET_RATIO}: median {_evals(to['median'], cap)}, 90th percentile "
                     f"{_evals(to['p90'], cap)} ({to['reached']}/{n} seeds within {cap})")
        if "margin" in study:
            to = v["evaluations_within_margin"]
            lines.append(f"  {name}: front within {100 * study['margin']:.2f} points "
                         f"(HV ratio {study['margin_ratio']:.4f}): median "
                         f"{_evals(to['median'], cap)}, 90th percentile "
                         f"{_evals(to['p90'], cap)} ({to['reached']}/{n} seeds)")
    return lines


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
    ap.add_argument("--margin", type=float, default=0.0,
                    help="also count evaluations until the front is within this many "
                         "points of accuracy of the exhaustive front's (e.g. 0.35)")
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
    if not 0 <= args.margin < 100:
        ap.error(f"--margin must be in [0, 100) points, got {args.margin}")
    study = seed_study(space, points_of_report(rep, args.resource), nas, range(args.seeds),
                       nas.r_min, nas.r_max, margin=args.margin / 100)
    for line in study_lines(study):
        print(line)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
