"""``defslice sim``: simulate the generated Verilog against the golden model.

Writes ``OUT/sim.json``: pass/fail, mismatches (first query / head / channel with
expected and actual values), cycles, busy and stall cycles, AXI bursts and beats observed
against expected, and wall time per simulator. A failing run is re-run with waveforms;
the report and the last line printed name the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from defslice.cli import add_config_arguments, config_from_args
from defslice.errors import DefsliceError


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_preset="tiny")
    parser.add_argument("--simulator", choices=("icarus", "verilator", "both"),
                        default="both", help="simulator(s) to run (default: both)")
    parser.add_argument("--out", type=Path, default=Path("reports/sim"),
                        help="output folder (default: reports/sim)")
    parser.add_argument("--seed", type=int, default=0, help="stimulus seed (default: 0)")
    parser.add_argument("--queries", type=int, default=None, metavar="N",
                        help="simulate a random sample of N queries (default: all)")
    parser.add_argument("--backpressure", type=float, default=0.25, metavar="P",
                        help="pause probability of every bench AXI channel (default: 0.25)")
    parser.add_argument("--reset-mid-run", action="store_true",
                        help="reset the design in the middle of a first run, then judge a "
                             "second run")


def _summary_line(sim: str, rep: dict) -> str:
    t, p = rep["traffic"], rep["performance"]
    verdict = "PASS" if rep["passed"] else "FAIL"
    return (f"sim: {sim}: {verdict}: {rep['outputs']['mismatches']} of "
            f"{rep['outputs']['total']} outputs differ; {p['cycles']} cycles "
            f"({p['busy_cycles']} busy, {p['stall_cycles']} stall); read "
            f"{t['observed']['read_bursts']}/{t['expected']['read_bursts']} bursts "
            f"{t['observed']['read_beats']}/{t['expected']['read_beats']} beats, write "
            f"{t['observed']['write_bursts']}/{t['expected']['write_bursts']} bursts "
            f"{t['observed']['write_beats']}/{t['expected']['write_beats']} beats "
            f"(observed/expected); {rep['wall_seconds']['total']:.1f} s")


def run(args: argparse.Namespace) -> int:
    from defslice.sim.api import run_simulation

    cfg = config_from_args(args)
    if args.queries is not None and args.queries < 1:
        raise DefsliceError(f"--queries must be >= 1, got {args.queries}")
    if not 0 <= args.backpressure < 1:
        raise DefsliceError(f"--backpressure must be in [0, 1), got {args.backpressure}")
    rep = run_simulation(cfg, args.out, args.simulator, seed=args.seed, queries=args.queries,
                         backpressure=args.backpressure, reset_mid_run=args.reset_mid_run)
    for sim, sim_rep in rep["simulators"].items():
        print(_summary_line(sim, sim_rep))
        for failure in sim_rep["failures"][:5]:
            print(f"sim: {sim}:   {failure}")
        if sim_rep.get("waves"):
            print(f"sim: {sim}: waveform of the failing run: {sim_rep['waves']}")
    print(f"sim: {cfg.name}: {'PASS' if rep['passed'] else 'FAIL'}; wrote {args.out}/sim.json")
    return 0 if rep["passed"] else 1
