"""``defslice sim``: the simulation stage (:mod:`defslice.sim.stage`) on the command line.

Either engine, as the configuration's ``hw.engine`` says. Writes ``OUT/sim.json``:
pass/fail, mismatches (first query / head / channel, or pixel / channel for the layer
engine, with expected and actual values), cycles, busy and stall cycles, AXI bursts and
beats observed against expected, wall time per simulator, and the SHA-256 of the Verilog
simulated (``--verilog FILE``, or the design generated into ``OUT/rtl/``). A failing run
is re-run with waveforms; the report and the last line printed name the file.
"""

from __future__ import annotations

import argparse

from defslice.cliargs import add_stage_arguments, stage_inputs
from defslice.sim.report import SimulatorReport
from defslice.sim.stage import SimOptions


def configure(parser: argparse.ArgumentParser) -> None:
    """The flags of ``defslice sim``."""
    add_stage_arguments(parser, SimOptions, "reports/sim", default_preset="tiny")


def summary_line(sim: str, rep: SimulatorReport) -> str:
    """One line per simulator: verdict, mismatches, cycles, bursts and beats."""
    verdict = "PASS" if rep.passed else "FAIL"
    if rep.outputs is None or rep.traffic is None or rep.performance is None:
        return f"sim: {sim}: {verdict}: no observations; {rep.wall_seconds.total:.1f} s"
    t, p = rep.traffic, rep.performance
    o, e = t.observed, t.expected
    return (f"sim: {sim}: {verdict}: {rep.outputs.mismatches} of {rep.outputs.total} "
            f"outputs differ; {p.cycles} cycles ({p.busy_cycles} busy, {p.stall_cycles} "
            f"stall); read {o.read_bursts}/{e.read_bursts} bursts {o.read_beats}/"
            f"{e.read_beats} beats, write {o.write_bursts}/{e.write_bursts} bursts "
            f"{o.write_beats}/{e.write_beats} beats (observed/expected); "
            f"{rep.wall_seconds.total:.1f} s")


def main(args: argparse.Namespace) -> int:
    """Run the stage on the parsed arguments; exit status 0 when it passed, else 1."""
    from defslice.sim.stage import run

    cfg, out, options = stage_inputs(args, SimOptions)
    report = run(cfg, out, options)
    for sim, rep in report.simulators.items():
        print(summary_line(sim, rep))
        for failure in rep.failures[:5]:
            print(f"sim: {sim}:   {failure}")
        if rep.waves:
            print(f"sim: {sim}: waveform of the failing run: {rep.waves}")
    print(f"sim: {cfg.name}: {'PASS' if report.passed else 'FAIL'}; Verilog SHA-256 "
          f"{report.verilog_sha256}; wrote {args.out}/sim.json")
    return 0 if report.passed else 1
