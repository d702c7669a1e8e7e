"""``defslice nas``: the slicing-search stage (:mod:`defslice.nas.stage`) on the command
line; writes ``OUT/pareto.json``, ``pareto.png``, ``hypervolume.png``, ``pareto.md``,
``chosen.toml``, ``evaluations-<key>.jsonl`` and ``nas.json``."""

from __future__ import annotations

import argparse
import typing

from defslice.cliargs import (
    add_config_arguments,
    add_options,
    add_out_argument,
    config_from_args,
    options_from_args,
)
from defslice.config import Config, NasConfig
from defslice.nas.stage import NasOptions


def configure(parser: argparse.ArgumentParser) -> None:
    """The flags of ``defslice nas``."""
    add_config_arguments(parser)
    add_out_argument(parser, "reports/nas")
    parser.add_argument("--seed", type=int, default=None, help="override nas.seed")
    evaluators = typing.get_args(typing.get_type_hints(NasConfig)["evaluator"])
    parser.add_argument("--evaluator", choices=evaluators, default=None,
                        help="override nas.evaluator (default fashion; digits is a fast "
                        "proxy for tests)")
    add_options(parser, NasOptions)


def config_of(args: argparse.Namespace) -> Config:
    """The configuration with ``--seed`` / ``--evaluator`` applied to its ``nas`` section."""
    cfg = config_from_args(args)
    changes = {k: v for k, v in (("seed", args.seed), ("evaluator", args.evaluator))
               if v is not None}
    return cfg.replace(nas=changes) if changes else cfg


def main(args: argparse.Namespace) -> int:
    """Run the stage on the parsed arguments; exit status 0."""
    from defslice.nas.stage import run

    options = options_from_args(NasOptions, args)
    report = run(config_of(args), args.out, options)
    print(f"{report.summary_line()}; wrote {report.pareto}")
    if not report.chosen.within_drop:
        print(f"nas: {report.chosen.note}")
    return 0
