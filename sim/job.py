"""What one simulation run does, handed from the runner to the cocotb bench as JSON.

The runner (pytest or ``defslice sim`` process) writes ``job.json`` into the test folder
and points the bench at it through the ``DEFSLICE_SIM_JOB`` environment variable; the
bench rebuilds the same stimulus from the configuration and seed, runs it, and writes the
raw observations to ``result_path`` (``result.json``). Comparison against the model
happens back in the runner (:mod:`defslice.sim.check`), so a simulator crash still leaves
a report.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from defslice import config as cfgmod

__all__ = ["JOB_ENV", "Job"]

JOB_ENV = "DEFSLICE_SIM_JOB"


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
    """

    config_toml: str
    seed: int
    queries: int | None
    backpressure: float
    reset_mid_run: bool
    timeout_cycles: int
    result_path: str

    @property
    def config(self) -> cfgmod.Config:
        return cfgmod.loads(self.config_toml)

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> Job:
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def from_env(cls) -> Job:
        path = os.environ.get(JOB_ENV)
        if not path:
            raise RuntimeError(f"{JOB_ENV} is not set: run this bench through "
                               "defslice.sim.runner, not directly")
        return cls.read(path)
