"""``defslice nas``: search the slicing strategy (accuracy vs. on-chip resources).

Writes ``OUT/pareto.json``, ``OUT/pareto.png``, ``OUT/hypervolume.png``, ``OUT/pareto.md``,
``OUT/chosen.toml`` (the input configuration with ``slicing`` replaced by the chosen
sub-net) and ``OUT/evaluations-<key>.jsonl`` (every sub-net scored, appended as each
finishes: a second run with the same weights resumes from it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from defslice.cli import add_config_arguments, config_from_args
from defslice.config import Config
from defslice.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_preset="dat56")
    parser.add_argument("--out", type=Path, default=Path("reports/nas"),
                        help="output folder (default: reports/nas)")
    parser.add_argument("--seed", type=int, default=None, help="override nas.seed")
    parser.add_argument("--evaluator", choices=("fashion", "digits", "imagefolder"),
                        default=None, help="override nas.evaluator (default fashion; digits "
                        "is a fast proxy for tests)")
    parser.add_argument("--data", type=Path, default=None,
                        help="imagefolder: validation folder in ImageNet layout")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="imagefolder: DAT-format checkpoint")
    parser.add_argument("--finetune-data", type=Path, default=None,
                        help="imagefolder: folder for supernet fine-tuning (optional)")
    parser.add_argument("--exhaustive", action="store_true",
                        help="also score every sub-net (the ground truth: hypervolume ratios "
                        "and the seed study); resumable, and reused by later runs")
    parser.add_argument("--threads", type=int, default=2,
                        help="PyTorch CPU threads of training and fine-tuning (default: 2)")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes scoring sub-nets, one thread each (default: 2; "
                        "0: in this process)")
    parser.add_argument("--test-images", type=int, default=None,
                        help="test images of the final figures (default: all)")
    parser.add_argument("--fixed-point-images", type=int, default=None,
                        help="test images of the bit-exact fixed-point accuracy (default: "
                        "all; 0: skip)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _objective(cfg: Config, args: argparse.Namespace, progress: bool) -> tuple:
    """(objective, metadata, test set or None) of ``cfg.nas.evaluator``."""
    from defslice.nas.evaluators import (
        digits_objective,
        fashion_objective,
        imagefolder_objective,
    )

    if cfg.nas.evaluator == "fashion":
        return fashion_objective(cfg, progress=progress)
    if cfg.nas.evaluator == "digits":
        return (*digits_objective(cfg, progress=progress), None)
    if args.data is None or args.checkpoint is None:
        raise ConfigError("nas.evaluator", "imagefolder", "used with --data and --checkpoint")
    acc, meta = imagefolder_objective(cfg, args.data, args.checkpoint,
                                      finetune_dir=args.finetune_data)
    print(f"nas: checkpoint: {meta['load']}")
    return acc, meta, None


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    changes = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.evaluator is not None:
        changes["evaluator"] = args.evaluator
    if changes:
        cfg = cfg.replace(nas=changes)
    if args.threads < 1:
        raise ConfigError("--threads", args.threads, "an integer >= 1")
    if args.workers < 0:
        raise ConfigError("--workers", args.workers, "an integer >= 0")

    from defslice.nas._torch import require_torch

    require_torch().set_num_threads(args.threads)
    from defslice.nas.pipeline import SearchSetup, run_search
    from defslice.nas.report import write_outputs

    t0 = time.perf_counter()
    progress = not args.quiet
    acc, meta, test = _objective(cfg, args, progress)
    if test is not None and args.test_images is not None:
        if args.test_images < 1:
            raise ConfigError("--test-images", args.test_images, "an integer >= 1")
        test = type(test)(test.images[:args.test_images], test.labels[:args.test_images],
                          test.classes)
        meta["test_images"] = len(test)
    setup = SearchSetup(acc, meta, test, args.out, args.workers, args.exhaustive, progress,
                        args.fixed_point_images)
    report = run_search(cfg, setup)
    report["seconds"]["total"] = time.perf_counter() - t0
    paths = write_outputs(cfg, report, args.out)
    c, a, hv = report["chosen"], report["accuracy"], report["hypervolume"]
    ratio = f"{hv['evolutionary_ratio']:.4f}" if "evolutionary_ratio" in hv else "n/a"
    print(f"nas: chosen Hs={c['slice_h']} Ws={c['slice_w']} O={c['overlap']}: {a['set']} "
          f"accuracy {100 * a['chosen_after_finetune']:.2f}% (unsliced "
          f"{100 * a['unsliced_after_finetune']:.2f}%), {c['bram18']} RAMB18; "
          f"{report['evaluations']['evolutionary']} evaluations, hypervolume ratio {ratio}; "
          f"wrote {paths['json']}")
    if not report["choice"]["within_drop"]:
        print(f"nas: {report['choice']['note']}")
    return 0
