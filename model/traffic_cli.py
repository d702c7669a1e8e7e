"""``defslice traffic``: the DRAM-traffic stage (:mod:`defslice.model.traffic_stage`) on
the command line; writes ``OUT/traffic_<name>.json`` / ``.md`` / ``.png`` and the sweep."""

from __future__ import annotations

import argparse

from defslice.cliargs import add_stage_arguments, stage_inputs
from defslice.model.traffic_stage import TrafficOptions


def configure(parser: argparse.ArgumentParser) -> None:
    """The flags of ``defslice traffic``."""
    add_stage_arguments(parser, TrafficOptions, "reports")


def main(args: argparse.Namespace) -> int:
    """Run the stage on the parsed arguments; exit status 0."""
    from defslice.model.traffic_stage import run

    report = run(*stage_inputs(args, TrafficOptions))
    print(f"{report.summary_line()}; wrote {args.out / f'traffic_{report.config.name}.json'}"
          f" and its .md, .png" + (" and the sweep" if report.sweep_file else ""))
    return 0
