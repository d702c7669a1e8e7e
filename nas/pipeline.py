"""The whole slicing search: objective, fine-tuning, Algorithm 1, ground truth, choice."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from defslice.config import Config
from defslice.nas.pareto import Point, hypervolume
from defslice.nas.replay import hv_reference, seed_study
from defslice.nas.resources import buffer_bram18, eq3_resource, with_subnet
from defslice.nas.search import (
    Objective,
    SearchResult,
    evolutionary_search,
    exhaustive_search,
    nsga2_search,
)
from defslice.nas.space import SearchSpace, SubNet

__all__ = ["SEED_STUDY_SEEDS", "choose", "resource_function", "run_search"]

#: Seeds of the replayed seed study (``nas.seed`` onwards) when the exhaustive search ran
#: (about 8 s for 100 seeds at T = 60 on the 1323 sub-nets of ``dat56``).
SEED_STUDY_SEEDS = 100


def resource_function(cfg: Config) -> Callable[[SubNet], float]:
    """The search's resource objective, ``nas.resource``: eq. 3 (bits) or RAMB18 blocks."""
    if cfg.nas.resource == "bram18":
        return lambda x: float(buffer_bram18(with_subnet(cfg, x)).blocks)
    return lambda x: eq3_resource(cfg, x)


def choose(front: list[Point], unsliced_accuracy: float, max_drop: float) -> Point:
    """Cheapest front member within ``max_drop`` of the unsliced accuracy; if none is,
    the most accurate member."""
    ok = [p for p in front if p.accuracy >= unsliced_accuracy - max_drop - 1e-12]
    if ok:
        return min(ok, key=lambda p: (p.resource, -p.accuracy))
    return max(front, key=lambda p: (p.accuracy, -p.resource))


def _panel(space: SearchSpace, cfg: Config) -> list[SubNet]:
    """Sub-nets whose accuracy is tracked through fine-tuning: the smallest, the
    largest, and the configuration's own slicing when it lies in the space."""
    lo = SubNet(space.h_range[0], space.w_range[0], space.overlaps[0])
    hi = SubNet(space.h_range[1], space.w_range[1], space.overlaps[-1])
    own = SubNet(cfg.slicing.slice_h, cfg.slicing.slice_w, cfg.slicing.overlap)
    return list(dict.fromkeys([lo, own, hi] if own in space else [lo, hi]))


def run_search(cfg: Config, acc, meta: dict, exhaustive: bool = True,
               progress: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run everything on objective ``acc`` (a :class:`SubnetAccuracy`); returns the report.

    Order (the paper's): accuracy of the unsliced model and a panel of sub-nets, supernet
    fine-tuning (when ``nas.finetune_epochs > 0`` and training data exist), then the
    searches on the fine-tuned weights, then the chosen point, scored before and after.
    """
    from defslice.nas.finetune import finetune_supernet

    nas = cfg.nas
    space = SearchSpace.from_config(cfg)
    panel = _panel(space, cfg)
    t0 = time.perf_counter()
    before_state = copy.deepcopy(acc.model.state_dict())
    finetune: list[dict] = []
    if nas.finetune_epochs > 0 and acc.train is not None:
        def on_epoch(rec: dict) -> None:
            log(f"nas: fine-tuning epoch {rec['epoch']}: unsliced "
                f"{rec['accuracy']['unsliced']:.4f}, sliced panel mean {rec['panel_mean']:.4f}")

        finetune = finetune_supernet(acc.model, acc.train, acc.val, space, nas, panel,
                                     on_epoch=on_epoch)
        acc.refresh()
    t_ft = time.perf_counter()
    unsliced = acc(None)
    obj = Objective(acc, resource_function(cfg))
    evo = evolutionary_search(space, obj, nas, progress=progress)
    t_evo = time.perf_counter()
    nsga = nsga2_search(space, obj, nas, budget=evo.evaluations)
    results: list[SearchResult] = [evo, nsga]
    ex = None
    if exhaustive:
        ex = exhaustive_search(space, obj, nas, progress=progress)
        results.append(ex)
    t_all = time.perf_counter()
    chosen = choose(evo.front, unsliced, nas.max_accuracy_drop)

    hv: dict[str, Any] = {}
    study: dict[str, Any] | None = None
    if ex is not None:
        # Reference: 1% of each objective's range beyond the worst sub-net of the space.
        ref_acc, ref_res = hv_reference(ex.evaluated)
        full = hypervolume(ex.front, ref_acc, ref_res)
        hv = {"reference": {"accuracy": ref_acc, "resource": ref_res},
              "exhaustive": full}
        for r in (evo, nsga):
            h = hypervolume(r.front, ref_acc, ref_res)
            hv[r.name] = h
            hv[f"{r.name}_ratio"] = h / full if full > 0 else 1.0
        # Other seeds replayed on the exhaustive table: no network evaluation.
        study = seed_study(space, ex.evaluated, nas,
                           range(nas.seed, nas.seed + SEED_STUDY_SEEDS), nas.r_min, nas.r_max)
    t_study = time.perf_counter()

    # The chosen point before fine-tuning (the weights as trained / loaded).
    after_state = copy.deepcopy(acc.model.state_dict())
    acc.model.load_state_dict(before_state)
    acc.refresh()
    before = {"unsliced": acc(None), "chosen": acc(chosen.subnet)}
    acc.model.load_state_dict(after_state)
    acc.refresh()

    def pts(points: list[Point]) -> list[dict]:
        return [_point_dict(cfg, p) for p in points]

    return {
        "config": cfg.name,
        "objective": meta,
        "resource_objective": nas.resource,
        "space": {"slice_h_range": list(space.h_range), "slice_w_range": list(space.w_range),
                  "overlaps": list(space.overlaps), "size": space.size},
        "nas": {"generations": nas.generations, "samples_per_generation":
                nas.samples_per_generation, "crossover_prob": nas.crossover_prob,
                "seed": nas.seed, "r_min": nas.r_min, "r_max": nas.r_max},
        "accuracy": {
            "unsliced_before_finetune": before["unsliced"],
            "unsliced_after_finetune": unsliced,
            "chosen_before_finetune": before["chosen"],
            "chosen_after_finetune": chosen.accuracy,
            "chosen_drop_vs_unsliced": unsliced - chosen.accuracy,
        },
        "finetune": finetune,
        "chosen": _point_dict(cfg, chosen),
        "evaluations": {r.name: r.evaluations for r in results},
        "hypervolume": hv,
        "seed_study": study,
        "fronts": {r.name: pts(r.front) for r in results},
        "front_size_per_generation": evo.front_per_generation,
        "evaluated": pts(sorted(obj.cache.values(), key=lambda p: p.subnet)),
        "seconds": {"finetune": t_ft - t0, "evolutionary": t_evo - t_ft,
                    "nsga2_and_exhaustive": t_all - t_evo,
                    "seed_study": t_study - t_all},
    }


def _point_dict(cfg: Config, p: Point) -> dict:
    return {**p.as_dict(), "eq3_bits": eq3_resource(cfg, p.subnet),
            "bram18": buffer_bram18(with_subnet(cfg, p.subnet)).blocks}
