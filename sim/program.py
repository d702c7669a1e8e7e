"""What the bench needs of one engine's run: the program interface and its selection.

A :class:`BenchProgram` is everything engine specific in a system simulation: the DRAM
image and the register settings the host writes, the output region and the output words
the golden model expects there, and the AXI bursts the run must put on the bus, as the
engine's transfer list and as the DRAM-traffic counter predicts them. The bench
(:mod:`defslice.sim.tb`), the checks (:mod:`defslice.sim.check`) and the stage
(:mod:`defslice.sim.stage`) use only this interface, so every engine is verified the same
way. :func:`make_program` draws the program of ``cfg.hw.engine``: the sampling engine's
:class:`~defslice.sim.stimulus.Stimulus` or the layer engine's
:class:`~defslice.sim.layer_stimulus.LayerStimulus`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from defslice.errors import ConfigError

if TYPE_CHECKING:
    from defslice.config import Config
    from defslice.hw.regmap import RegisterMap
    from defslice.model.layout import Burst
    from defslice.sim.report import AxiTraffic, Mismatch, Performance

__all__ = ["BenchProgram", "make_program"]


class BenchProgram(ABC):
    """One randomized run of an engine, as the bench drives and judges it.

    Outputs are a matrix of *items* (a query of the sampling engine, a pixel of the layer
    engine) by channels, in the order they are stored in DRAM.
    """

    #: The configuration of the run.
    cfg: Config
    #: The transfer list's name in failure messages.
    transfers_name: ClassVar[str] = "transfers()"
    #: What the randomized stimulus covers, as named counts (reported in ``sim.json``).
    kind_counts: dict[str, int]

    @property
    @abstractmethod
    def regmap(self) -> RegisterMap:
        """The engine's register map (``hw/regmap.py``)."""

    @property
    @abstractmethod
    def bus_bytes(self) -> int:
        """AXI data bytes per beat."""

    @property
    @abstractmethod
    def dram_bytes(self) -> int:
        """Bytes of DRAM the run uses (the bench's RAM size)."""

    @abstractmethod
    def memory_image(self) -> dict[int, bytes]:
        """Base address -> bytes of every input region."""

    @abstractmethod
    def registers(self) -> dict[str, int]:
        """Host-written registers by register-map name, in the order they are written
        (every entry of ``regmap.settings``); ``CTRL.start`` follows them."""

    @property
    @abstractmethod
    def output_region(self) -> tuple[int, int]:
        """(byte address, bytes) of the outputs the design writes."""

    @abstractmethod
    def unpack_outputs(self, data: bytes) -> np.ndarray:
        """The output region's bytes -> int64 (items, channels)."""

    @abstractmethod
    def expected_outputs(self) -> np.ndarray:
        """The golden model's outputs, int64 (items, channels), bit for bit."""

    @abstractmethod
    def transfers(self) -> list[Burst]:
        """The AXI bursts of a run, in the contract's order (compared as multisets)."""

    @abstractmethod
    def traffic_counter(self) -> AxiTraffic:
        """Bursts and beats per direction that the DRAM-traffic counter predicts."""

    @abstractmethod
    def mismatch(self, item: int, channel: int, expected: int, actual: int) -> Mismatch:
        """The report entry of output ``(item, channel)`` differing from the model."""

    @abstractmethod
    def describe(self, m: Mismatch) -> str:
        """Where ``m`` is, in words (the first failure line names it)."""

    @abstractmethod
    def performance(self, counters: dict[str, int], bench_cycles: int) -> Performance:
        """The run's cycle figures from the design's counters and the bench's count."""

    @abstractmethod
    def fault_site(self) -> int:
        """Byte address of the input byte the ``input-bit`` fault flips a bit of."""

    @abstractmethod
    def timeout_cycles(self) -> int:
        """A generous bound on a run's cycles under back-pressure."""

    @property
    @abstractmethod
    def items(self) -> int:
        """Output items of the run (queries or pixels)."""

    @property
    @abstractmethod
    def descriptors(self) -> int:
        """Slice descriptors the run processes (``NUM_DESC``)."""

    def read_beats(self) -> int:
        """Read beats of a whole run."""
        return sum(b.beats for b in self.transfers() if not b.write)


def make_program(cfg: Config, seed: int = 0, queries: int | None = None) -> BenchProgram:
    """The randomized program of ``cfg.hw.engine`` for ``cfg`` (reproducible from
    ``seed``); ``queries`` samples the sampling engine's queries (``None``: all).

    Raises
    ------
    ConfigError
        ``queries`` given for the layer engine, which computes the whole map.
    """
    if cfg.hw.engine == "layer":
        from defslice.sim.layer_stimulus import make_layer_stimulus

        if queries is not None:
            raise ConfigError("--queries", queries, "unset for hw.engine = 'layer' (the "
                              "layer engine computes every pixel of the map)")

        return make_layer_stimulus(cfg, seed)
    from defslice.sim.stimulus import make_stimulus

    return make_stimulus(cfg, seed, queries)
