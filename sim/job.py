"""What one simulation run does and what it saw, handed between runner and bench as JSON.

The runner (pytest or ``defslice sim`` process) writes ``job.json`` (:class:`Job`) into
the test folder and points the bench at it through the ``DEFSLICE_SIM_JOB`` environment
variable; the bench rebuilds the same stimulus from the configuration and seed, runs it,
and writes the raw observations (:class:`Observation`) to ``result_path``
(``result.json``). Comparison against the model happens back in the runner
(:mod:`defslice.sim.check`), so a simulator crash still leaves a report.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from defslice import config as cfgmod
from defslice.records import Record

__all__ = ["FAULTS", "JOB_ENV", "Job", "MonitorSummary", "Observation"]

JOB_ENV = "DEFSLICE_SIM_JOB"

#: Deliberate faults the bench can inject to show that the checks catch them:
#: ``input-bit`` flips one bit of one input word in the DRAM image after the model's
#: expectation was computed (:meth:`BenchProgram.fault_site`: a weight of the layer
#: engine's ``proj_out``, a value of the sampling engine's map), so the design computes
#: from a corrupted input.
FAULTS = ("input-bit",)


@dataclass(frozen=True)
class Job:
    """One bench run.

    Members
    -------
    config_toml : str
        The configuration (``defslice.config.dumps``).
    seed : int
        Stimulus seed (:func:`defslice.sim.stimulus.make_stimulus`) and back-pressure seed.
    queries : int or None
        Random sample of this many queries; ``None``: every query.
    backpressure : float
        Probability that an AXI / AXI4-Lite channel of the bench models pauses in a
        cycle (0: none). Read data is also delayed by random latency bursts.
    reset_mid_run : bool
        Assert reset in the middle of a first run, then run again cleanly.
    timeout_cycles : int
        A run that has not set ``STATUS.done`` after this many cycles fails.
    result_path : str
        Where the bench writes its observations.
    fault : str or None
        A deliberate fault to inject (:data:`FAULTS`); ``None``: none.
    """

    config_toml: str
    seed: int
    queries: int | None
    backpressure: float
    reset_mid_run: bool
    timeout_cycles: int
    result_path: str
    fault: str | None = None

    @property
    def config(self) -> cfgmod.Config:
        """The configuration of the run."""
        return cfgmod.loads(self.config_toml)

    def write(self, path: Path) -> Path:
        """Write ``job.json``; returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> Job:
        """The job in ``path``."""
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def from_env(cls) -> Job:
        """The job named by ``DEFSLICE_SIM_JOB`` (inside the bench)."""
        path = os.environ.get(JOB_ENV)
        if not path:
            raise RuntimeError(f"{JOB_ENV} is not set: run this bench through "
                               "defslice.sim.runner, not directly")
        return cls.read(path)


@dataclass(frozen=True)
class MonitorSummary(Record):
    """Everything the passive AXI4 monitor (:mod:`defslice.sim.monitor`) saw.

    ``read_bursts`` / ``write_bursts`` are ``(byte address, beats)`` in handshake order;
    beats and write responses are handshake counts; ``outstanding_reads`` counts read
    bursts still waiting for data at the end; ``errors`` are protocol violations.
    """

    read_bursts: tuple[tuple[int, int], ...]
    write_bursts: tuple[tuple[int, int], ...]
    read_beats: int
    write_beats: int
    write_responses: int
    outstanding_reads: int
    errors: tuple[str, ...]


@dataclass(frozen=True)
class Observation(Record):
    """What the bench observed in one run (``result.json``), judged by the runner.

    Members
    -------
    config, seed
        The job's configuration name and seed.
    time0_unresolved, time0_unresolved_payload : tuple of str
        Handshake / payload outputs that were X before the first clock edge.
    id : int
        The ``ID`` register.
    reset_after_read_beats, reset_after_write_beats, status_after_reset : int or None
        With a mid-run reset: beats seen before it, ``STATUS`` right after it.
    done : bool
        ``STATUS.done`` was seen within the job's timeout.
    bench_cycles : int
        Cycles from start until done was seen (or the timeout).
    irq_at_done : int or None
        The ``irq`` output when done was seen (``None``: X).
    counters : dict
        The performance counters by register name (:data:`defslice.hw.regmap.COUNTERS`).
    status : int
        ``STATUS`` at the end.
    monitor : MonitorSummary
    outputs : list of list of int
        Output samples per stored query, as written to memory.
    sim_time_ns : float
        Simulated time of the judged run (ns).
    """

    config: str
    seed: int
    time0_unresolved: tuple[str, ...]
    time0_unresolved_payload: tuple[str, ...]
    id: int
    reset_after_read_beats: int | None
    reset_after_write_beats: int | None
    status_after_reset: int | None
    done: bool
    bench_cycles: int
    irq_at_done: int | None
    counters: dict[str, int]
    status: int
    monitor: MonitorSummary
    outputs: list[list[int]]
    sim_time_ns: float
