"""``defslice model``: the golden-model stage (:mod:`defslice.model.stage`) on the command
line; writes ``OUT/model.json`` and ``OUT/model.md``."""

from __future__ import annotations

import argparse

from defslice.cliargs import add_stage_arguments, stage_inputs
from defslice.model.stage import ModelOptions


def configure(parser: argparse.ArgumentParser) -> None:
    """The flags of ``defslice model``."""
    add_stage_arguments(parser, ModelOptions, "reports/model")


def main(args: argparse.Namespace) -> int:
    """Run the stage on the parsed arguments; exit status 0."""
    from defslice.model.stage import run

    report = run(*stage_inputs(args, ModelOptions))
    print(f"{report.summary_line()}; wrote {args.out}/model.json")
    if report.layer is not None:
        print(report.layer.summary_line())
    if report.layer_fixed is not None:
        print("\n".join(report.layer_fixed.summary_lines(report.config)))
    return 0
