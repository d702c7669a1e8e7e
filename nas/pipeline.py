"""The whole slicing search: fine-tuning, the searches, ground truth, choice, test figures."""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defslice.config import Config
from defslice.nas.choice import choose, front_table
from defslice.nas.evaluation import EvaluationLog, PoolRunner, Runner, SerialRunner
from defslice.nas.pareto import Point, hypervolume, hypervolume_trace
from defslice.nas.replay import SEARCHES, hv_reference, seed_study
from defslice.nas.resources import buffer_bram18, eq3_resource, with_subnet
from defslice.nas.search import (
    Objective,
    SearchResult,
    evolutionary_search,
    exhaustive_search,
    nsga2_search,
    random_search,
)
from defslice.nas.space import SearchSpace, SubNet
from defslice.nas.stats import paired, standard_error

__all__ = ["SEED_STUDY_SEEDS", "SearchSetup", "blocks_function", "resource_function",
           "run_search"]

#: Seeds of the replayed seed study (``nas.seed`` onwards) when the exhaustive table is
#: there (replays only: about a minute for 100 seeds on the 1323 sub-nets of ``dat56``).
SEED_STUDY_SEEDS = 100


def resource_function(cfg: Config) -> Callable[[SubNet], float]:
    """The search's resource objective, ``nas.resource``: RAMB18 blocks or eq. 3 (bits)."""
    if cfg.nas.resource == "bram18":
        return blocks_function(cfg)
    return lambda x: eq3_resource(cfg, x)


def blocks_function(cfg: Config) -> Callable[[SubNet], float]:
    """RAMB18 blocks of the window buffers of sub-net ``x`` (``buffer_bram18``)."""
    return lambda x: float(buffer_bram18(with_subnet(cfg, x)).blocks)


@dataclass
class SearchSetup:
    """What :func:`run_search` works on besides the configuration.

    ``acc``: the objective (:class:`~defslice.nas.evaluators.SubnetAccuracy`) on the
    validation images; ``meta``: its metadata; ``test``: the test set for the final
    figures (``None``: none, the validation figures stand alone); ``out``: folder of the
    evaluation log; ``workers``: processes scoring sub-nets (0: in this process);
    ``exhaustive``: score every sub-net (the ground truth; also done when the log holds
    them all already); ``fixed_images``: images of the fixed-point figure (the first of
    the test set, else of the validation set; ``None``: all, 0: none).
    """

    acc: Any
    meta: dict
    test: Any = None
    out: Path = Path("reports/nas")
    workers: int = 2
    exhaustive: bool = False
    progress: bool = False
    fixed_images: int | None = None


def _panel(space: SearchSpace, cfg: Config) -> list[SubNet]:
    """Sub-nets whose accuracy is tracked through fine-tuning: the smallest, the
    largest, and the configuration's own slicing when it lies in the space."""
    lo = SubNet(space.h_range[0], space.w_range[0], space.overlaps[0])
    hi = SubNet(space.h_range[1], space.w_range[1], space.overlaps[-1])
    own = SubNet(cfg.slicing.slice_h, cfg.slicing.slice_w, cfg.slicing.overlap)
    return list(dict.fromkeys([lo, own, hi] if own in space else [lo, hi]))


def weights_digest(model: Any) -> str:
    """SHA-256 (16 hex digits) of a model's weights: what the evaluation log is keyed by."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _finetune(cfg: Config, setup: SearchSetup, space: SearchSpace,
              log: Callable[[str], None]) -> list[dict]:
    """Fine-tune ``setup.acc.model`` in place (weights cached under the classifier's
    key and the fine-tuning settings); returns the per-epoch table."""
    from defslice.nas.finetune import finetune_supernet
    from defslice.nas.train import cache_dir, cache_key

    acc, nas = setup.acc, cfg.nas
    if nas.finetune_epochs == 0 or acc.train is None:
        return []
    import torch

    settings = {k: getattr(nas, k) for k in (
        "finetune_epochs", "finetune_images", "finetune_lr", "finetune_teacher_weight",
        "finetune_students", "alpha_min", "alpha_max", "seed", "slice_h_range",
        "slice_w_range", "overlaps")}
    key = cache_key(base=weights_digest(acc.model), settings=settings,
                    threads=torch.get_num_threads())
    path = cache_dir() / f"finetuned-{key}.pt"
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=False)
        acc.model.load_state_dict(blob["state_dict"])
        log(f"nas: fine-tuned weights from {path}")
        return blob["history"]

    def on_epoch(rec: dict) -> None:
        log(f"nas: fine-tuning epoch {rec['epoch']}: unsliced "
            f"{rec['accuracy']['unsliced']:.4f}, sliced panel mean {rec['panel_mean']:.4f}")

    history = finetune_supernet(acc.model, acc.train, acc.val, space, nas, _panel(space, cfg),
                                on_epoch=on_epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": acc.model.state_dict(), "history": history},
               path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return history


def _objective(cfg: Config, setup: SearchSetup, runner: Runner) -> Objective:
    acc = setup.acc
    labels = acc.val.labels.numpy()
    header = {"evaluator": setup.meta.get("evaluator"), "weights": weights_digest(acc.model),
              "images": int(labels.size),
              "labels": hashlib.sha256(labels.tobytes()).hexdigest()[:16],
              "batch": acc.batch}
    log = EvaluationLog(setup.out, header, int(labels.size))
    return Objective(None, resource_function(cfg), runner=runner, log=log)


def _searches(space: SearchSpace, obj: Objective, cfg: Config,
              setup: SearchSetup) -> tuple[dict[str, SearchResult], dict[str, float]]:
    nas = cfg.nas
    seconds, results = {}, {}
    t0 = time.perf_counter()
    evo = evolutionary_search(space, obj, nas, progress=setup.progress)
    seconds["evolutionary"] = time.perf_counter() - t0
    results["evolutionary"] = evo
    for name, search in (("nsga2", nsga2_search), ("random", random_search)):
        t0 = time.perf_counter()
        results[name] = search(space, obj, nas, evo.evaluations)
        seconds[name] = time.perf_counter() - t0
    if setup.exhaustive or len(obj.cache) >= space.size:
        t0 = time.perf_counter()
        results["exhaustive"] = exhaustive_search(space, obj, nas, progress=setup.progress)
        seconds["exhaustive"] = time.perf_counter() - t0
    return results, seconds


def _hypervolumes(results: dict[str, SearchResult], obj: Objective,
                  cfg: Config, space: SearchSpace) -> tuple[dict, dict | None, dict]:
    """Hypervolumes (ratios to the exhaustive front's when it exists), the seed study,
    and each search's hypervolume after every evaluation of this run."""
    nas = cfg.nas
    ex = results.get("exhaustive")
    ref = hv_reference(ex.evaluated if ex else list(obj.cache.values()))
    hv: dict[str, Any] = {"reference": {"accuracy": ref[0], "resource": ref[1]}}
    for name, r in results.items():
        hv[name] = hypervolume(r.front, *ref)
    if ex is not None and hv["exhaustive"] > 0:
        for name in SEARCHES:
            hv[f"{name}_ratio"] = hv[name] / hv["exhaustive"]
    traces = {name: hypervolume_trace(results[name].evaluated, *ref, nas.r_min, nas.r_max)
              for name in SEARCHES}
    study = None
    if ex is not None:
        study = seed_study(space, ex.evaluated, nas,
                           range(nas.seed, nas.seed + SEED_STUDY_SEEDS), nas.r_min, nas.r_max)
    return hv, study, traces


def _scored(acc: Any, dataset: Any, subnets: dict[str, SubNet | None]) -> dict[str, Any]:
    """Per-image correctness of each named sub-net on ``dataset`` (``None``: unsliced)."""
    from defslice.nas.evaluators import SubnetAccuracy

    scorer = SubnetAccuracy(acc.model, dataset, batch=acc.batch, keep=False)
    return {name: scorer.correct(x) for name, x in subnets.items()}


def _figures(correct: dict[str, np.ndarray]) -> dict[str, Any]:
    """Accuracy and standard error of each entry, and the paired drops of the chosen
    point against the unsliced model, before and after fine-tuning."""
    out: dict[str, Any] = {"images": int(next(iter(correct.values())).size)}
    for name, c in correct.items():
        out[name] = {"accuracy": float(c.mean()), "se": standard_error(c)}
    for when in ("before", "after"):
        u, ch = correct.get(f"unsliced_{when}"), correct.get(f"chosen_{when}")
        if u is not None and ch is not None:
            out[f"drop_{when}"] = paired(u, ch).as_dict()
    return out


def _final_figures(setup: SearchSetup, chosen: SubNet, before: dict,
                   after_val: dict[str, np.ndarray]) -> dict[str, Any]:
    """Validation and test figures of the unsliced model and the chosen point with the
    weights before (``before``: a state dict) and after fine-tuning."""
    acc = setup.acc
    after = copy.deepcopy(acc.model.state_dict())
    sets = {"validation": acc.val} if setup.test is None else {"validation": acc.val,
                                                                 "test": setup.test}
    correct: dict[str, dict[str, np.ndarray]] = {name: {} for name in sets}
    correct["validation"].update({"unsliced_after": after_val["unsliced"],
                                  "chosen_after": after_val["chosen"]})
    acc.model.load_state_dict(before)
    for name, data in sets.items():
        correct[name].update({f"{k}_before": v for k, v in _scored(
            acc, data, {"unsliced": None, "chosen": chosen}).items()})
    acc.model.load_state_dict(after)
    if "test" in sets:
        correct["test"].update({f"{k}_after": v for k, v in _scored(
            acc, setup.test, {"unsliced": None, "chosen": chosen}).items()})
    return {name: _figures(c) for name, c in correct.items()}


def _add_fixed_point(cfg: Config, setup: SearchSetup, chosen: SubNet, figures: dict,
                     log: Callable[[str], None]) -> None:
    """The fine-tuned classifier with the bit-exact fixed-point layer at ``chosen``, on
    the first ``setup.fixed_images`` test images (validation without a test set), into
    ``figures``; skipped for a model without :meth:`forward_with` or 0 images."""
    acc = setup.acc
    if setup.fixed_images == 0 or not hasattr(acc.model, "forward_with"):
        return
    from defslice.nas.hw_accuracy import fixed_point_figures

    name = "test" if setup.test is not None else "validation"
    data = setup.test if setup.test is not None else acc.val
    res = fixed_point_figures(cfg, acc.model, data, acc.train.images, chosen,
                              setup.fixed_images, setup.workers,
                              log=log if setup.progress else None)
    figures[name]["fixed_point"] = res["fixed_point"]
    figures[name]["fixed_point_detail"] = res
    log(f"nas: fixed-point layer at {chosen}: {100 * res['fixed_point']['accuracy']:.2f}% "
        f"(float {100 * res['float']['accuracy']:.2f}% on the same {res['images']} images)")


def _runner(setup: SearchSetup) -> Runner:
    if setup.workers <= 0:
        return SerialRunner(setup.acc.correct)
    from defslice.nas.evaluators import worker_accuracy

    return PoolRunner(worker_accuracy, setup.acc.worker_args(), setup.workers)


def run_search(cfg: Config, setup: SearchSetup,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run everything on ``setup``; returns the report (``pareto.json``).

    Order (the paper's): fine-tuning of the supernet (when ``nas.finetune_epochs > 0``
    and training data exist), then Alg. 1, NSGA-II and random search at Alg. 1's
    budget on the fine-tuned weights (and the exhaustive table when asked for or
    already logged), the choice on Alg. 1's front, then the unsliced model and the
    chosen point on the validation and test images before and after fine-tuning.
    """
    nas, acc = cfg.nas, setup.acc
    space = SearchSpace.from_config(cfg)
    t0 = time.perf_counter()
    before = copy.deepcopy(acc.model.state_dict())
    finetune = _finetune(cfg, setup, space, log)
    acc.refresh()
    seconds = {"finetune": time.perf_counter() - t0}
    with _runner(setup) as runner:
        obj = _objective(cfg, setup, runner)
        results, search_seconds = _searches(space, obj, cfg, setup)
    seconds.update(search_seconds)
    unsliced_val = acc.correct(None)
    evo = results["evolutionary"]
    blocks = blocks_function(cfg)
    choice = choose(evo.front, float(unsliced_val.mean()), nas.max_accuracy_drop, blocks)
    t1 = time.perf_counter()
    hv, study, traces = _hypervolumes(results, obj, cfg, space)
    seconds["seed_study"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    chosen_val = obj.correct.get(choice.point.subnet)
    if chosen_val is None:  # an objective that gives accuracies only
        chosen_val = acc.correct(choice.point.subnet)
    figures = _final_figures(setup, choice.point.subnet, before,
                             {"unsliced": unsliced_val, "chosen": chosen_val})
    seconds["final_figures"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    _add_fixed_point(cfg, setup, choice.point.subnet, figures, log)
    seconds["fixed_point"] = time.perf_counter() - t1

    def pts(points: list[Point]) -> list[dict]:
        return [_point_dict(cfg, p) for p in points]

    return {
        "config": cfg.name, "objective": setup.meta, "resource_objective": nas.resource,
        "space": {"slice_h_range": list(space.h_range), "slice_w_range": list(space.w_range),
                  "overlaps": list(space.overlaps), "size": space.size},
        "nas": {"generations": nas.generations, "samples_per_generation":
                nas.samples_per_generation, "crossover_prob": nas.crossover_prob,
                "seed": nas.seed, "r_min": nas.r_min, "r_max": nas.r_max,
                "max_accuracy_drop": nas.max_accuracy_drop},
        "accuracy": _accuracy_summary(figures),
        "figures": figures,
        "finetune": finetune,
        "chosen": _point_dict(cfg, choice.point),
        "choice": choice.as_dict(),
        "front_table": [{**row, "eq3_bits": eq3_resource(cfg, SubNet(
            row["slice_h"], row["slice_w"], row["overlap"])), "bram18": blocks(SubNet(
                row["slice_h"], row["slice_w"], row["overlap"]))}
            for row in front_table(evo.front, obj.correct, unsliced_val)],
        "evaluations": {name: r.evaluations for name, r in results.items()},
        "evaluation_log": {"file": str(obj.log.path), "computed": obj.fresh,
                           "resumed": obj.resumed, "workers": runner.workers,
                           "seconds_per_subnet": float(np.median(list(obj.seconds.values())))
                           if obj.seconds else None},
        "hypervolume": hv, "hypervolume_traces": traces, "seed_study": study,
        "fronts": {name: pts(r.front) for name, r in results.items()},
        "front_size_per_generation": evo.front_per_generation,
        "evaluated": pts(sorted(obj.cache.values(), key=lambda p: p.subnet)),
        "seconds": seconds,
    }


def _accuracy_summary(figures: dict) -> dict[str, float]:
    """The headline accuracies (test when there is a test set, else validation)."""
    f = figures.get("test") or figures["validation"]
    v = figures["validation"]
    return {"images": f["images"], "set": "test" if "test" in figures else "validation",
            "unsliced_before_finetune": f["unsliced_before"]["accuracy"],
            "unsliced_after_finetune": f["unsliced_after"]["accuracy"],
            "chosen_before_finetune": f["chosen_before"]["accuracy"],
            "chosen_after_finetune": f["chosen_after"]["accuracy"],
            "chosen_drop_vs_unsliced": f["drop_after"]["diff"],
            "chosen_drop_se": f["drop_after"]["se"],
            "validation_unsliced": v["unsliced_after"]["accuracy"],
            "validation_chosen": v["chosen_after"]["accuracy"]}


def _point_dict(cfg: Config, p: Point) -> dict:
    return {**p.as_dict(), "eq3_bits": eq3_resource(cfg, p.subnet),
            "bram18": buffer_bram18(with_subnet(cfg, p.subnet)).blocks}
