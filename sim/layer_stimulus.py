"""Randomized runs of the layer engine for the system benches (``hw.engine = "layer"``).

:func:`make_layer_stimulus` draws one DAT++ layer: parameters initialised like PyTorch's
module (:func:`defslice.model.dat_layer.init_params`) and made less tame so every step
leaves its trivial case: LayerNorm gain uniform in [0.5, 1.5] and offset in
[-0.3, 0.3], the position-bias table with standard deviation 0.5 (DAT's 0.01 would round
to almost nothing), the offset projection four times larger (keys leave their window
and are clamped); a map of standard deviation 1.5 with 3 % of its values at the ends of
the fixed-point range. The host program is :mod:`defslice.model.layer_layout`'s (memory
image, descriptors, :func:`~defslice.model.layer_layout.layer_transfers`); the expected
``y`` is :func:`defslice.model.dat_layer_fixed.dat_layer_fixed_forward` on the same
quantized map and parameters, sliced like the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from defslice.config import Config
from defslice.hw.layer.cycles import CycleEstimate, estimate
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.regmap import LAYER_MAP, RegisterMap
from defslice.model.dat_layer import init_params
from defslice.model.dat_layer_fixed import (
    FixedLayerParams,
    LayerFormats,
    dat_layer_fixed_forward,
    quantize_layer_input,
    quantize_layer_params,
)
from defslice.model.layer_layout import LayerLayout, layer_transfers
from defslice.model.layout import Burst
from defslice.sim.program import BenchProgram
from defslice.sim.report import AxiTraffic, Mismatch, Performance

__all__ = ["LayerStimulus", "make_layer_stimulus"]

#: Fraction of map values set to the ends of the fixed-point range.
EXTREME_FRACTION = 0.03


@dataclass(frozen=True, eq=False)
class LayerStimulus(BenchProgram):
    """One randomized run of the layer engine (its
    :class:`~defslice.sim.program.BenchProgram`).

    Members
    -------
    cfg : Config
    plan : LayerPlan
        The engine's shape: dims, slice grid, tasks, DRAM layout.
    x_q : int64 array (1, C, H, W)
        The map, Q(value_frac).
    params : FixedLayerParams
        The quantized parameters (host steps of ``docs/numerics.md``).
    seed : int
    """

    cfg: Config
    plan: LayerPlan
    x_q: np.ndarray
    params: FixedLayerParams
    seed: int
    transfers_name: ClassVar[str] = "layer_transfers()"

    @property
    def layout(self) -> LayerLayout:
        return self.plan.layout

    @cached_property
    def forward(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The fixed-point layer's ``y`` (1, C, H, W) and trace."""
        return dat_layer_fixed_forward(self.x_q, self.params, self.plan.dims.spec,
                                       LayerFormats.from_config(self.cfg), self.plan.grid)

    @cached_property
    def kind_counts(self) -> dict[str, int]:  # type: ignore[override]
        """Key positions (keys x groups), those clamped into their slice's window, those
        outside the map before the clamp, map values at the range ends, ``y`` values on
        a rail of the output format."""
        y, tr = self.forward
        pos, clamped = tr["pos"], tr["pos_sample"]
        d, num = self.plan.dims, self.cfg.numerics
        size = np.array([d.height - 1, d.width - 1]) << num.coord_frac
        lo, hi = -(1 << (num.value_bits - 1)), (1 << (num.value_bits - 1)) - 1
        olo, ohi = -(1 << (num.out_bits - 1)), (1 << (num.out_bits - 1)) - 1
        return {
            "key_positions": int(pos[..., 0].size),
            "keys_clamped_to_window": int((pos != clamped).any(axis=-1).sum()),
            "keys_outside_map": int(((pos < 0) | (pos > size)).any(axis=-1).sum()),
            "x_at_range_ends": int(((self.x_q == lo) | (self.x_q == hi)).sum()),
            "y_on_rail": int(((y == olo) | (y == ohi)).sum()),
        }

    # -- BenchProgram ---------------------------------------------------------------------
    @property
    def regmap(self) -> RegisterMap:
        return LAYER_MAP

    @property
    def bus_bytes(self) -> int:
        return self.layout.bus_bytes

    @property
    def dram_bytes(self) -> int:
        return self.layout.total_bytes

    def memory_image(self) -> dict[int, bytes]:
        return self.layout.memory_image(self.x_q[0], self.params, self.plan.tasks)

    def registers(self) -> dict[str, int]:
        lay = self.layout
        return {"VALUE_BASE": lay.x_base, "WEIGHT_BASE": lay.param_base,
                "DESC_BASE": lay.desc_base, "OUT_BASE": lay.y_base,
                "NUM_DESC": len(self.plan.tasks)}

    @property
    def output_region(self) -> tuple[int, int]:
        return self.layout.y_base, self.items * self.layout.out_stride

    def unpack_outputs(self, data: bytes) -> np.ndarray:
        """``y`` bytes -> int64 (pixels, C), pixels row-major."""
        return self.layout.unpack_y(data).reshape(self.plan.dims.channels, -1).T.copy()

    def expected_outputs(self) -> np.ndarray:
        return self.forward[0][0].reshape(self.plan.dims.channels, -1).T.copy()

    def transfers(self) -> list[Burst]:
        return layer_transfers(self.layout, self.plan.tasks)

    def traffic_counter(self) -> AxiTraffic:
        """The DRAM-traffic counter's sliced dataflow at layer scope
        (:class:`defslice.model.traffic.Sliced`, what ``defslice traffic`` reports)."""
        from defslice.model.traffic.base import TrafficContext
        from defslice.model.traffic.sliced import Sliced
        from defslice.model.traffic.trace import SamplingTrace

        ctx = TrafficContext(self.cfg, SamplingTrace.from_config(self.cfg, self.seed))
        count = Sliced().count(ctx, scope="layer")
        read, write = count.direction(False), count.direction(True)
        return AxiTraffic(read.bursts, read.beats, write.bursts, write.beats)

    def mismatch(self, item: int, channel: int, expected: int, actual: int) -> Mismatch:
        row, col = divmod(item, self.plan.dims.width)
        return Mismatch(stored_query=item, query=item, head=None, channel=channel,
                        expected=expected, actual=actual, row=row, col=col)

    def describe(self, m: Mismatch) -> str:
        return f"pixel ({m.row}, {m.col}), channel {m.channel}"

    def performance(self, counters: dict[str, int], bench_cycles: int) -> Performance:
        """``busy_cycles``: ``ARRAY_BUSY``; ideal: the schedule's array steps."""
        cycles, busy = counters.get("CYCLES"), counters.get("ARRAY_BUSY")
        keys = sum(t.num_keys for t in self.plan.tasks) * self.plan.dims.groups
        return Performance(
            cycles=cycles, busy_cycles=busy, stall_cycles=counters.get("STALL_CYCLES"),
            bench_cycles=bench_cycles, bilinear_samples=keys,
            ideal_busy_cycles=self.estimate.array_busy,
            utilisation=(busy / cycles) if cycles and busy is not None else None,
            load_cycles=counters.get("LOAD_CYCLES"))

    @cached_property
    def estimate(self) -> CycleEstimate:
        """The cycle model's figures for this plan (:func:`defslice.hw.layer.cycles.estimate`)."""
        return estimate(self.plan)

    def fault_site(self) -> int:
        """The high byte of the first ``proj_out`` weight (output 0, input 0)."""
        return self.layout.param_base + self.layout.sections["proj_out"].offset + 1

    def timeout_cycles(self) -> int:
        """Three times the cycle model's run plus 40 cycles per beat, plus slack."""
        beats = sum(b.beats for b in self.transfers())
        return 3 * self.estimate.total + 40 * beats + 20_000

    @property
    def items(self) -> int:
        return self.plan.dims.height * self.plan.dims.width

    @property
    def descriptors(self) -> int:
        return len(self.plan.tasks)


def make_layer_stimulus(cfg: Config, seed: int = 0) -> LayerStimulus:
    """Draw the randomized layer run for ``cfg`` (reproducible from ``seed``).

    Raises
    ------
    ConfigError
        For a configuration the layer engine refuses (:class:`LayerPlan`).
    """
    plan = LayerPlan.from_config(cfg)
    d = plan.dims
    rng = np.random.default_rng([seed, 0x1A7E])
    params = init_params(d.spec, d.channels, d.height, d.width, seed=seed)
    params["conv_offset.1.norm.weight"] = rng.uniform(0.5, 1.5, d.group_channels)
    params["conv_offset.1.norm.bias"] = rng.uniform(-0.3, 0.3, d.group_channels)
    params["rpe_table"] = rng.standard_normal(params["rpe_table"].shape) * 0.5
    params["conv_offset.3.weight"] = params["conv_offset.3.weight"] * 4
    fmt = LayerFormats.from_config(cfg)
    num = cfg.numerics
    x = rng.standard_normal((1, d.channels, d.height, d.width)) * 1.5
    vmax = 2.0 ** (num.value_bits - 1 - num.value_frac)
    extreme = rng.random(x.shape) < EXTREME_FRACTION
    x = np.where(extreme, np.where(rng.random(x.shape) < 0.5, vmax, -vmax), x)
    qp = quantize_layer_params(params, d.spec, fmt, (d.height, d.width))
    return LayerStimulus(cfg, plan, quantize_layer_input(x, fmt), qp, seed)
