"""Randomized stimulus for the system benches, drawn from the golden model's workload.

:func:`make_stimulus` starts from :func:`defslice.model.workload.make_workload` and mixes
in the cases a datapath gets wrong first. Each sampling point is, at random, one of:

========== ===================================================================
kind        location (per level, in that level's pixels)
========== ===================================================================
workload    the workload's Gaussian offset around the reference point
inside      uniform over the map
outside     uniform over a band around the map, often outside it
border      exactly on an edge: pixel coordinate -0.5, -1, 0, W-1, W-0.5, W
integer     an integer pixel coordinate (all bilinear weight on one column/row)
beyond      the reference point moved beyond the slice window (clamped)
========== ===================================================================

Feature-map values are standard normal with some pixels at the extremes of the
fixed-point range; attention weights are the workload's softmax with some replaced by
zero, by negative values and by the extremes -2 and just under +2, so the accumulator
and the output saturation are exercised too.

``queries`` selects a random sample of the workload's queries (keeping their order), so a
large preset can be simulated in part; the mapping back to workload query indices is kept
for mismatch reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from defslice.config import Config
from defslice.errors import ConfigError
from defslice.hw.regmap import SAMPLING_MAP, RegisterMap
from defslice.model.fixed import quantize_inputs
from defslice.model.layout import Burst, SlicedProgram
from defslice.model.workload import make_workload
from defslice.sim.program import BenchProgram
from defslice.sim.report import AxiTraffic, Mismatch, Performance

__all__ = ["LOCATION_KINDS", "Stimulus", "make_stimulus", "traffic_counter_prediction"]

LOCATION_KINDS = ("workload", "inside", "outside", "border", "integer", "beyond")
_KIND_PROB = (0.40, 0.15, 0.10, 0.12, 0.10, 0.13)


def traffic_counter_prediction(prog: SlicedProgram) -> AxiTraffic:
    """Bursts and beats the DRAM-traffic counter's sliced dataflow predicts for ``prog``.

    Counted by :class:`defslice.model.traffic.Sliced` on a trace of the very inputs the
    bench ran (``defslice traffic`` uses the same class), so every bench configuration
    checks the counter against the bus.
    """
    from defslice.model.traffic.base import TrafficContext
    from defslice.model.traffic.sliced import Sliced
    from defslice.model.traffic.trace import SamplingTrace

    trace = SamplingTrace(prog.cfg, prog.inputs, prog.reference_points)
    count = Sliced().count(TrafficContext(prog.cfg, trace))
    read, write = count.direction(False), count.direction(True)
    return AxiTraffic(read.bursts, read.beats, write.bursts, write.beats)


@dataclass(frozen=True)
class Stimulus(BenchProgram):
    """One randomized run of the sampling engine: the host program and where its queries
    came from (the sampling engine's :class:`~defslice.sim.program.BenchProgram`).

    Members
    -------
    program : SlicedProgram
        Memory image, descriptors, transfers and expected outputs.
    query_index : int array (Lq,)
        Workload query index of each simulated query (before slice sorting).
    kind_counts : dict
        How many sampling points of each location kind were drawn.
    """

    program: SlicedProgram
    query_index: np.ndarray
    kind_counts: dict[str, int]
    transfers_name: ClassVar[str] = "SlicedProgram.transfers()"

    def workload_query(self, stored: int) -> int:
        """Workload query index of stored (slice-sorted) query ``stored``."""
        return int(self.query_index[self.program.order[stored]])

    # -- BenchProgram ---------------------------------------------------------------------
    @property
    def cfg(self) -> Config:  # type: ignore[override]
        return self.program.cfg

    @property
    def regmap(self) -> RegisterMap:
        return SAMPLING_MAP

    @property
    def bus_bytes(self) -> int:
        return self.program.layout.bus_bytes

    @property
    def dram_bytes(self) -> int:
        return self.program.layout.total_bytes

    def memory_image(self) -> dict[int, bytes]:
        return self.program.memory_image()

    def registers(self) -> dict[str, int]:
        lay = self.program.layout
        return {"VALUE_BASE": lay.value_base, "QUERY_BASE": lay.query_base,
                "DESC_BASE": lay.desc_base, "OUT_BASE": lay.out_base,
                "NUM_DESC": len(self.program.descriptors)}

    @property
    def output_region(self) -> tuple[int, int]:
        lay = self.program.layout
        return lay.out_base, lay.num_queries * lay.out_stride

    def unpack_outputs(self, data: bytes) -> np.ndarray:
        return self.program.layout.unpack_outputs(data, self.program.layout.num_queries)

    def expected_outputs(self) -> np.ndarray:
        return self.program.expected_outputs()

    def transfers(self) -> list[Burst]:
        return self.program.transfers()

    def traffic_counter(self) -> AxiTraffic:
        return traffic_counter_prediction(self.program)

    def mismatch(self, item: int, channel: int, expected: int, actual: int) -> Mismatch:
        d = self.cfg.workload.sample_channels
        return Mismatch(stored_query=item, query=self.workload_query(item),
                        head=channel // d, channel=channel % d, expected=expected,
                        actual=actual)

    def describe(self, m: Mismatch) -> str:
        return (f"query {m.query} (stored {m.stored_query}), head {m.head}, channel "
                f"{m.channel}")

    def performance(self, counters: dict[str, int], bench_cycles: int) -> Performance:
        """``busy_cycles``: a bilinear sample issued; ideal: one sample of ``lanes``
        channels per cycle."""
        cfg = self.cfg
        w = cfg.workload
        samples = self.items * w.sample_heads * w.num_levels * w.points
        cycles, busy = counters.get("CYCLES"), counters.get("BUSY_CYCLES")
        return Performance(
            cycles=cycles, busy_cycles=busy, stall_cycles=counters.get("STALL_CYCLES"),
            bench_cycles=bench_cycles, bilinear_samples=samples,
            ideal_busy_cycles=samples * (w.sample_channels // cfg.hw.lanes),
            utilisation=(busy / cycles) if cycles and busy is not None else None)

    def fault_site(self) -> int:
        """The high byte of the first channel of the map's first pixel."""
        return self.program.layout.value_base + 1

    def timeout_cycles(self) -> int:
        """40 cycles per beat and per sample step, plus slack."""
        w = self.cfg.workload
        beats = sum(b.beats for b in self.transfers())
        steps = self.items * w.sample_heads * w.num_levels * w.points * (
            w.sample_channels // self.cfg.hw.lanes)
        return 40 * (beats + steps) + 20_000

    @property
    def items(self) -> int:
        return self.program.layout.num_queries

    @property
    def descriptors(self) -> int:
        return len(self.program.descriptors)


def _border_coords(rng: np.random.Generator, size: np.ndarray,
                   shape: tuple[int, ...]) -> np.ndarray:
    """Pixel coordinates on the edges of maps of ``size`` pixels (broadcast to shape)."""
    choice = rng.integers(0, 6, size=shape)
    table = np.stack([np.full_like(size, -0.5), np.full_like(size, -1.0),
                      np.zeros_like(size), size - 1.0, size - 0.5, size + 0.0], axis=-1)
    table = np.broadcast_to(table, (*shape, 6))
    return np.take_along_axis(table, choice[..., None], axis=-1)[..., 0]


def make_stimulus(cfg: Config, seed: int = 0, queries: int | None = None) -> Stimulus:
    """Draw the randomized run for ``cfg`` (reproducible from ``seed``)."""
    wl = make_workload(cfg, seed)
    rng = np.random.default_rng([seed, 0x51CE])
    value, shapes = wl.value.copy(), wl.spatial_shapes
    loc, attn = wl.sampling_locations.copy(), wl.attention_weights.copy()
    ref = wl.reference_points.copy()
    lq_all = loc.shape[1]
    if queries is not None:
        if not 1 <= queries:
            raise ConfigError("queries", queries, "an integer >= 1")
        take = np.sort(rng.choice(lq_all, size=min(queries, lq_all), replace=False))
    else:
        take = np.arange(lq_all)
    loc, attn, ref = loc[:, take], attn[:, take], ref[:, take]
    num = cfg.numerics

    # Feature-map values: 3 % of the samples at the ends of the range (saturated by
    # quantization to exactly the largest / smallest representable value).
    vmax = 2.0 ** (num.value_bits - 1 - num.value_frac)
    extreme = rng.random(value.shape) < 0.03
    value = np.where(extreme, np.where(rng.random(value.shape) < 0.5, vmax, -vmax), value)

    # Sampling locations, in pixels of each level, then back to normalized.
    size_wh = shapes[:, ::-1].astype(np.float64)            # (L, 2) as (W, H)
    size = size_wh[None, None, None, :, None, :]            # broadcast to loc
    px = loc * size - 0.5
    kind = rng.choice(len(LOCATION_KINDS), size=loc.shape[:-1], p=_KIND_PROB)
    shape = loc.shape
    full_size = np.broadcast_to(size, shape)
    inside = rng.uniform(-0.5, full_size - 0.5)
    outside = rng.uniform(-0.6 * full_size - 2, 1.6 * full_size + 2)
    border = _border_coords(rng, size_wh[None, None, None, :, None, :], (*shape[:-1], 2))
    # Mix border with an interior coordinate on the other axis half of the time.
    mix = rng.random((*shape[:-1], 1)) < 0.5
    axis_pick = rng.integers(0, 2, size=(*shape[:-1], 1)) == np.arange(2)
    border = np.where(mix & axis_pick, inside, border)
    integer = np.floor(rng.uniform(-1, full_size + 1))
    h0, w0 = cfg.workload.levels[0]
    s = cfg.slicing
    reach = np.array([s.slice_w + s.overlap, s.slice_h + s.overlap], dtype=np.float64)
    step = (reach + rng.uniform(1, 3, size=shape)) * rng.choice([-1.0, 1.0], size=shape)
    ref_px = ref[:, :, None, None, None, :] * size - 0.5
    beyond = ref_px + step * size / np.array([w0, h0], dtype=np.float64)
    cases = [px, inside, outside, border, integer, beyond]
    picked = np.choose(kind[..., None].repeat(2, axis=-1), cases)
    loc = (picked + 0.5) / size

    # Attention weights: 20 % replaced by special values.
    special = rng.random(attn.shape) < 0.2
    wmax = 2.0                                                # quantizes to the largest
    specials = np.array([0.0, -2.0, wmax, -0.75, 1.25, 2.0 ** -(num.weight_frac)])
    attn = np.where(special, rng.choice(specials, size=attn.shape), attn)
    # Random signs on another 10 %.
    flip = rng.random(attn.shape) < 0.1
    attn = np.where(flip, -attn, attn)

    inputs = quantize_inputs(num, value, shapes, loc, attn)
    program = SlicedProgram(cfg, inputs, ref)
    counts = np.bincount(kind.reshape(-1), minlength=len(LOCATION_KINDS))
    return Stimulus(program, take.astype(np.int64),
                    {k: int(c) for k, c in zip(LOCATION_KINDS, counts, strict=True)})
