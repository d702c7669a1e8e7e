"""Cycle model of the layer engine: array steps per phase, multiply-accumulates, unit loads.

The schedule is the one ``docs/hw_layer.md`` draws and the sequencer issues: per slice
the phases ``q``, ``dwconv`` with ``offset_proj`` interleaved, ``sample``, ``kv``, then per
2x2 quad of query pixels ``logits``, ``pv`` and ``proj_out`` (logits one quad ahead, so
the softmax of a quad runs while the array works on the previous one). An array *step*
is one cycle in which the array takes one operand tile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from defslice.hw.axi_slice import AxiSlice
from defslice.hw.layer.exp2 import Exp2Unit
from defslice.hw.layer.layernorm import LayerNormUnit
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.schedule import attention_order
from defslice.model.layer_layout import ARRAY_ROWS, Rect, SliceTask

__all__ = ["PHASES", "CycleEstimate", "UnitTiming", "estimate", "slice_macs", "slice_steps",
           "unit_loads"]

#: Array phases, in schedule order.
PHASES = ("q", "dwconv", "offset_proj", "sample", "kv", "logits", "pv", "proj_out")


@dataclass(frozen=True)
class UnitTiming:
    """Latencies and rates of the blocks around the array (cycles).

    Members
    -------
    array_latency : int
        From an operand tile's issue to its result in the destination buffer.
    ln_extra : int
        Added to the LayerNorm unit's own fixed latency per row
        (:meth:`~defslice.hw.layer.layernorm.LayerNormUnit.row_latency`: the mean and
        variance divisions, 1/sqrt, the pipelines; a row of ``Cg`` channels also takes
        ``2 Cg`` cycles, the d^2 pass and the normalise pass) for the rest of the row's way
        (not calibrated).
    offset_latency : int
        Offset unit: raw offsets to a clamped key position.
    softmax_extra : int
        Added to the exponential unit's latency (:attr:`~defslice.hw.layer.exp2.Exp2Unit.
        latency`) for the softmax unit's fixed part per quad: the rest of its pipeline
        (max, normalise) and the reciprocal division (not calibrated); a row of ``nk``
        keys also takes ``nk`` cycles in each stage.
    axi_latency : int
        Read latency of the memory (AR to first R beat) assumed by the estimate; the
        engine's R register slice adds :attr:`~defslice.hw.axi_slice.AxiSlice.latency`.
    """

    array_latency: int = 10
    ln_extra: int = 36
    offset_latency: int = 8
    softmax_extra: int = 37
    axi_latency: int = 4


def _quads(r: Rect) -> int:
    return 0 if r.empty else -(-r.rows // 2) * -(-r.cols // 2)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def slice_steps(plan: LayerPlan, t: SliceTask) -> dict[str, int]:
    """Array steps (cycles) of each phase for slice ``t``; all 0 for a slice without keys
    (its ``y`` is the output bias, written without the array)."""
    d, L, N = plan.dims, plan.lanes, plan.cols
    c, cg, dh, nk = d.channels, d.group_channels, d.head_dim, t.num_keys
    if nk == 0:
        return dict.fromkeys(PHASES, 0)
    rows = nk * d.groups                     # (key, group) rows of the offset network
    quads = _quads(t.region)
    return {
        "q": _quads(t.qbox) * (c // N) * (c // L),
        "dwconv": rows * d.tap_quads * (cg // L),
        "offset_proj": rows * (cg // L),
        "sample": rows * (cg // L),
        "kv": 2 * _cdiv(nk, ARRAY_ROWS) * (c // N) * (c // L),
        "logits": quads * d.heads * _cdiv(nk, N) * (dh // L),
        "pv": quads * d.heads * (dh // N) * _cdiv(nk, L),
        "proj_out": quads * (c // N) * (c // L),
    }


def slice_macs(plan: LayerPlan, t: SliceTask) -> dict[str, int]:
    """Multiply-accumulates of each phase of slice ``t`` (the arithmetic of the sliced
    layer, without the array's padding: ``q`` over the q box)."""
    d = plan.dims
    c, nk, px = d.channels, t.num_keys, t.region.size
    if nk == 0:
        return dict.fromkeys(PHASES, 0)
    return {
        "q": t.qbox.size * c * c,
        "dwconv": nk * c * d.kernel ** 2,
        "offset_proj": nk * c * 2,
        "sample": nk * c * 4,
        "kv": 2 * nk * c * c,
        "logits": px * nk * c,
        "pv": px * nk * c,
        "proj_out": px * c * c,
    }


def unit_loads(plan: LayerPlan, t: SliceTask) -> dict[str, int]:
    """Work of the units beside the array for slice ``t``: LayerNorm rows, GELU values,
    key positions, bias lookups, exponentials, reciprocal divisions."""
    d = plan.dims
    nk, px = t.num_keys, t.region.size
    rows = nk * d.groups
    return {
        "layernorm_rows": rows,
        "gelu": rows * d.group_channels,
        "positions": rows,
        "bias": px * d.heads * nk if d.use_pe else 0,
        "exp": px * d.heads * nk,
        "div": px * d.heads if nk else 0,
    }


def _offset_phase(plan: LayerPlan, t: SliceTask, tm: UnitTiming, start: int) -> int:
    """End time of ``dwconv`` + ``offset_proj`` + ``sample`` starting at ``start``.

    The array runs dwconv(0), dwconv(1), offset_proj(0), dwconv(2), offset_proj(1), ...
    over the (key, group) rows; offset_proj(i) waits for LayerNorm(i), which starts when
    dwconv(i)'s last result is in and the unit is free. Then sample(i) for every row in
    order, each once its position is out of the offset unit.
    """
    d, L = plan.dims, plan.lanes
    cg = d.group_channels
    rows = t.num_keys * d.groups
    dw, off = d.tap_quads * (cg // L), cg // L
    ln_latency = LayerNormUnit.row_latency(plan.ln, cg) + tm.ln_extra
    now, ln_free = start, start
    ln_done, pos_ready = [], []

    def offset_proj(i: int) -> None:
        nonlocal now
        now = max(now, ln_done[i]) + off
        pos_ready.append(now + tm.array_latency + tm.offset_latency)

    for i in range(rows):
        now += dw
        begin = max(now + tm.array_latency, ln_free)
        ln_free = begin + 2 * cg
        ln_done.append(begin + 2 * cg + ln_latency)
        if i >= 1:
            offset_proj(i - 1)
    offset_proj(rows - 1)
    for i in range(rows):
        now = max(now, pos_ready[i]) + off
    return now


def _attention_phase(plan: LayerPlan, t: SliceTask, tm: UnitTiming, start: int) -> int:
    """End time of the per-quad phases in :func:`~defslice.hw.layer.schedule.attention_order`:
    ``pv`` of a quad waits for its softmax (which starts when its logits are in and the
    unit is free), ``proj_out`` for ``pv``'s results in the o buffer."""
    steps = slice_steps(plan, t)
    quads = _quads(t.region)
    per_quad = {k: steps[k] // quads for k in ("logits", "pv", "proj_out")}
    sm_busy = ARRAY_ROWS * plan.dims.heads * t.num_keys
    now, sm_free, sm_done, o_ready = start, start, {}, {}
    for name, n in attention_order(quads):
        if name == "pv":
            now = max(now, sm_done[n])
        elif name == "proj_out":
            now = max(now, o_ready[n])
        now += per_quad[name]
        if name == "logits":
            begin = max(now + tm.array_latency, sm_free)
            sm_free = begin + sm_busy
            sm_done[n] = begin + sm_busy + Exp2Unit.latency + tm.softmax_extra \
                + 2 * t.num_keys
        elif name == "pv":
            o_ready[n] = now + tm.array_latency
    return now


def slice_cycles(plan: LayerPlan, t: SliceTask, tm: UnitTiming) -> int:
    """Cycles the array holds slice ``t`` (steps plus the waits of the schedule)."""
    steps = slice_steps(plan, t)
    if t.num_keys == 0:
        return 0
    now = steps["q"] + tm.array_latency
    now = _offset_phase(plan, t, tm, now) + tm.array_latency
    now += steps["kv"] + tm.array_latency
    return _attention_phase(plan, t, tm, now)


@dataclass
class CycleEstimate:
    """What :func:`estimate` predicts for one run (cycles unless stated).

    ``total``: start to the last ``y`` beat; ``array_busy``: array steps; ``compute_bound``:
    multiply-accumulates / multipliers; ``unit_bound``: the busiest unit beside the array
    alone; ``first_load``: cycles before the first slice can compute (parameters, its
    descriptor and window); ``exposed_load``: cycles the array waited for a later window;
    ``phases``: steps per phase; ``macs``: per phase; ``loads``: unit work.
    """

    total: int = 0
    array_busy: int = 0
    compute_bound: float = 0.0
    unit_bound: int = 0
    first_load: int = 0
    exposed_load: int = 0
    read_beats: int = 0
    write_beats: int = 0
    layer_macs: int = 0
    phases: dict[str, int] = field(default_factory=dict)
    macs: dict[str, int] = field(default_factory=dict)
    loads: dict[str, int] = field(default_factory=dict)

    @property
    def utilisation(self) -> float:
        """Array-busy cycles / all cycles."""
        return self.array_busy / self.total if self.total else 0.0

    @property
    def mac_efficiency(self) -> float:
        """Compute bound / all cycles."""
        return self.compute_bound / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {
            "total": self.total, "array_busy": self.array_busy,
            "compute_bound": self.compute_bound, "unit_bound": self.unit_bound,
            "first_load": self.first_load, "exposed_load": self.exposed_load,
            "read_beats": self.read_beats, "write_beats": self.write_beats,
            "utilisation": self.utilisation, "mac_efficiency": self.mac_efficiency,
            "layer_macs": self.layer_macs, "phases": self.phases, "macs": self.macs,
            "loads": self.loads,
        }


def _unit_bound(plan: LayerPlan, loads: dict[str, int], tm: UnitTiming) -> int:
    """Cycles of the busiest unit on its own: LayerNorm (2 Cg per row plus its latency),
    bias lookup and each softmax stage (one value per cycle)."""
    cg = plan.dims.group_channels
    ln_row = 2 * cg + LayerNormUnit.row_latency(plan.ln, cg) + tm.ln_extra
    return max(loads["layernorm_rows"] * ln_row, loads["bias"],
               loads["exp"])


def _load_beats(plan: LayerPlan, t: SliceTask) -> int:
    lay = plan.layout
    return (lay.desc_stride + t.window.pixels * lay.pixel_stride) // lay.bus_bytes


def estimate(plan: LayerPlan, timing: UnitTiming | None = None) -> CycleEstimate:
    """Cycles of one run with an always-ready memory (one beat per cycle on each of the
    read and write channels), following the schedule of ``docs/hw_layer.md``.

    The read channel loads the parameters, then descriptors and windows in slice order;
    a window goes into the buffer set freed by the slice ``sets`` before it. A slice
    computes once its window is in and the previous slice is done. ``y`` of the last
    quad row drains after the last slice.
    """
    tm = timing or UnitTiming()
    lay = plan.layout
    est = CycleEstimate(phases=dict.fromkeys(PHASES, 0), macs=dict.fromkeys(PHASES, 0))
    port = tm.axi_latency + AxiSlice.latency + lay.param_bytes // lay.bus_bytes
    set_free = [0] * plan.sets
    done, first = 0, None
    for k, t in enumerate(plan.tasks):
        load_end = max(port, set_free[k % plan.sets]) + _load_beats(plan, t)
        port = load_end
        begin = max(load_end, done)
        if first is None and t.num_keys:
            first = begin
        elif t.num_keys:
            est.exposed_load += max(0, load_end - done)
        done = begin + slice_cycles(plan, t, tm)
        set_free[k % plan.sets] = done
        for name, v in slice_steps(plan, t).items():
            est.phases[name] += v
        for name, v in slice_macs(plan, t).items():
            est.macs[name] += v
        for name, v in unit_loads(plan, t).items():
            est.loads[name] = est.loads.get(name, 0) + v
    out_pixel_beats = lay.out_stride // lay.bus_bytes
    est.total = done + 2 * plan.region_max[1] * out_pixel_beats
    est.first_load = first or 0
    est.array_busy = sum(est.phases.values())
    est.compute_bound = sum(est.macs.values()) / plan.multipliers
    est.unit_bound = _unit_bound(plan, est.loads, tm)
    d = plan.dims
    est.layer_macs = sum(est.macs.values()) - est.macs["q"] \
        + d.height * d.width * d.channels ** 2
    est.read_beats = lay.param_bytes // lay.bus_bytes + sum(_load_beats(plan, t)
                                                            for t in plan.tasks)
    est.write_beats = d.height * d.width * out_pixel_beats
    return est
