"""The simulation stage's report (``sim.json``) and its parts, as typed records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from defslice.model.layout import Burst
from defslice.records import Record, omitted

__all__ = ["AxiTraffic", "Judgement", "Mismatch", "OutputCheck", "Performance", "ResetCheck",
           "SimReport", "SimulatorReport", "TrafficCheck", "WallSeconds"]


@dataclass(frozen=True)
class AxiTraffic(Record):
    """AXI bursts (address handshakes) and beats (data handshakes) per direction; ``None``
    where a source did not report a figure."""

    read_bursts: int | None
    read_beats: int | None
    write_bursts: int | None
    write_beats: int | None

    @classmethod
    def of(cls, transfers: list[Burst]) -> AxiTraffic:
        """Totals of a burst list (:meth:`SlicedProgram.transfers`)."""
        reads = [b for b in transfers if not b.write]
        writes = [b for b in transfers if b.write]
        return cls(len(reads), sum(b.beats for b in reads), len(writes),
                   sum(b.beats for b in writes))


@dataclass(frozen=True)
class Mismatch(Record):
    """One output that differs from the fixed-point model.

    Sampling engine: stored (slice-sorted) and workload query index, head, channel of the
    head. Layer engine: the pixel's flat index (``row * W + col``, stored and workload
    order alike), no head (``y`` mixes the heads), the output channel, and ``row``,
    ``col``.
    """

    stored_query: int
    query: int
    head: int | None
    channel: int
    expected: int
    actual: int
    row: int | None = omitted()
    col: int | None = omitted()

    def where(self) -> str:
        """``query Q head H channel C`` or ``pixel (R, C) channel C``."""
        if self.row is not None:
            return f"pixel ({self.row}, {self.col}) channel {self.channel}"
        return f"query {self.query} head {self.head} channel {self.channel}"


@dataclass(frozen=True)
class OutputCheck(Record):
    """Outputs against the model: how many, how many differ, the first ones that do."""

    total: int
    mismatches: int
    first_mismatches: tuple[Mismatch, ...]


@dataclass(frozen=True)
class TrafficCheck(Record):
    """AXI traffic four ways: the model's transfer list (``expected``), the bus
    (``observed``), the design's counters and the DRAM-traffic counter's prediction; the
    bursts ``(hex address, beats)`` missing from or extra on the bus."""

    expected: AxiTraffic
    observed: AxiTraffic
    rtl_counters: AxiTraffic
    traffic_counter: AxiTraffic
    missing_read_bursts: tuple[tuple[str, int], ...]
    extra_read_bursts: tuple[tuple[str, int], ...]
    missing_write_bursts: tuple[tuple[str, int], ...]
    extra_write_bursts: tuple[tuple[str, int], ...]
    write_responses: int | None


@dataclass(frozen=True)
class Performance(Record):
    """Cycle counts of the judged run.

    ``cycles``, ``busy_cycles``, ``stall_cycles``: the design's counters (sampling
    engine: ``BUSY_CYCLES``, a sample issued; layer engine: ``ARRAY_BUSY``, an array
    step, and ``load_cycles``, ``LOAD_CYCLES``); ``bench_cycles``: start to done as the
    bench saw it; ``bilinear_samples``: samples of the run (layer engine: keys times
    groups); ``ideal_busy_cycles``: sampling engine, one sample of ``lanes`` channels
    per cycle; layer engine, the array steps of the schedule
    (:func:`defslice.hw.layer.cycles.estimate`); ``utilisation`` = busy / cycles.
    """

    cycles: int | None
    busy_cycles: int | None
    stall_cycles: int | None
    bench_cycles: int | None
    bilinear_samples: int
    ideal_busy_cycles: int
    utilisation: float | None
    load_cycles: int | None = omitted()


@dataclass(frozen=True)
class ResetCheck(Record):
    """A mid-run reset: beats seen before it and ``STATUS`` right after it."""

    reset_after_read_beats: int | None = omitted()
    reset_after_write_beats: int | None = omitted()
    status_after_reset: int | None = omitted()


@dataclass(frozen=True)
class Judgement(Record):
    """One run against the golden model (:func:`defslice.sim.check.check_result`).

    ``passed`` only when every check holds; ``failures`` says, in words, which did not.
    Without observations (the simulation did not finish) only these two are set.
    """

    passed: bool
    failures: tuple[str, ...]
    time0_x_payloads: tuple[str, ...] | None = omitted()
    outputs: OutputCheck | None = omitted()
    traffic: TrafficCheck | None = omitted()
    performance: Performance | None = omitted()
    reset: ResetCheck | None = omitted()


@dataclass(frozen=True)
class WallSeconds(Record):
    """Wall time of one simulator's build, run and both together (s)."""

    build: float
    run: float
    total: float


@dataclass(frozen=True, kw_only=True)
class SimulatorReport(Judgement):
    """A :class:`Judgement` plus how the simulator ran: its name and version, wall times,
    build folder, log and (for a failing run) the waveform file."""

    simulator: str
    version: str
    wall_seconds: WallSeconds
    build_dir: Path
    sim_log: Path | None
    waves: Path | None


@dataclass(frozen=True)
class SimReport(Record):
    """``sim.json``: one configuration through a Verilog file on one or two simulators.

    Members
    -------
    config, seed, queries, descriptors, backpressure, reset_mid_run
        The run: configuration name, stimulus seed, simulated queries, slice descriptors,
        AXI pause probability, whether a mid-run reset was done.
    passed : bool
        Every simulator passed.
    verilog : Path
        The Verilog file simulated.
    verilog_sha256 : str
        Its SHA-256, taken before the first build.
    generate_seconds : float
        Time to generate that file (0 when it was given).
    expected_traffic : AxiTraffic
        The model's transfer list.
    location_kinds : dict
        Sampling points drawn of each kind (:data:`defslice.sim.stimulus.LOCATION_KINDS`).
    simulators : dict
        Simulator name -> :class:`SimulatorReport`.
    simulator_choice : str or None
        With ``--simulator auto``: the simulator chosen and why.
    """

    config: str
    seed: int
    queries: int
    descriptors: int
    backpressure: float
    reset_mid_run: bool
    passed: bool
    verilog: Path
    verilog_sha256: str
    generate_seconds: float
    expected_traffic: AxiTraffic
    location_kinds: dict[str, int]
    simulators: dict[str, SimulatorReport]
    simulator_choice: str | None = omitted()

    def failure_message(self) -> str:
        """What failed, readably: the first failures, mismatches, waveform and log."""
        lines = [f"simulation of {self.config} (seed {self.seed}) failed:"]
        for sim, rep in self.simulators.items():
            if rep.passed:
                continue
            lines.append(f"[{sim}]")
            lines += [f"  {f}" for f in rep.failures[:8]]
            for m in rep.outputs.first_mismatches[:3] if rep.outputs else ():
                lines.append(f"  {m.where()}: expected {m.expected}, actual {m.actual}")
            lines.append(f"  waveform: {rep.waves or 'not kept'}; log: {rep.sim_log}")
        return "\n".join(lines)
