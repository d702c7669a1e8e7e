"""``defslice nas``: search the slicing strategy (accuracy vs. on-chip resources).

Writes ``OUT/pareto.json``, ``OUT/pareto.png``, ``OUT/pareto.md`` and ``OUT/chosen.toml``
(the input configuration with ``slicing`` replaced by the chosen sub-net).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from defslice.cli import add_config_arguments, config_from_args
from defslice.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_preset="dat56")
    parser.add_argument("--out", type=Path, default=Path("reports/nas"),
                        help="output folder (default: reports/nas)")
    parser.add_argument("--seed", type=int, default=None, help="override nas.seed")
    parser.add_argument("--evaluator", choices=("digits", "imagefolder"), default=None,
                        help="override nas.evaluator")
    parser.add_argument("--data", type=Path, default=None,
                        help="imagefolder: validation folder in ImageNet layout")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="imagefolder: DAT-format checkpoint")
    parser.add_argument("--finetune-data", type=Path, default=None,
                        help="imagefolder: folder for supernet fine-tuning (optional)")
    parser.add_argument("--no-exhaustive", action="store_true",
                        help="skip the exhaustive ground truth (no hypervolume ratio)")
    parser.add_argument("--threads", type=int, default=2,
                        help="PyTorch CPU threads (default: 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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

    from defslice.nas._torch import require_torch

    require_torch().set_num_threads(args.threads)
    from defslice.nas.evaluators import digits_objective, imagefolder_objective
    from defslice.nas.pipeline import run_search
    from defslice.nas.report import write_outputs

    t0 = time.perf_counter()
    progress = not args.quiet
    if cfg.nas.evaluator == "digits":
        acc, meta = digits_objective(cfg, progress=progress)
    else:
        if args.data is None or args.checkpoint is None:
            raise ConfigError("nas.evaluator", "imagefolder", "used with --data and --checkpoint")
        acc, meta = imagefolder_objective(cfg, args.data, args.checkpoint,
                                          finetune_dir=args.finetune_data)
        print(f"nas: checkpoint: {meta['load']}")
    report = run_search(cfg, acc, meta, exhaustive=not args.no_exhaustive, progress=progress)
    report["seconds"]["total"] = time.perf_counter() - t0
    paths = write_outputs(cfg, report, args.out)
    c, a, hv = report["chosen"], report["accuracy"], report["hypervolume"]
    ratio = f"{hv['evolutionary_ratio']:.4f}" if hv else "n/a"
    print(f"nas: chosen Hs={c['slice_h']} Ws={c['slice_w']} O={c['overlap']}: accuracy "
          f"{100 * a['chosen_after_finetune']:.2f}% (unsliced "
          f"{100 * a['unsliced_after_finetune']:.2f}%), {c['bram18']} RAMB18; "
          f"{report['evaluations']['evolutionary']} evaluations, hypervolume ratio {ratio}; "
          f"wrote {paths['json']}")
    return 0
