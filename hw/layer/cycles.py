"""Cycle model of the layer engine: array steps per phase, multiply-accumulates, unit loads.

The schedule is the one ``docs/hw_layer.md`` draws and the sequencer issues: per slice
the phases ``q``, ``dwconv`` with ``offset_proj`` interleaved, ``sample``, ``kv``, then per
2x2 quad of query pixels ``logits``, ``pv`` and ``proj_out`` (logits two quads ahead, so
the softmax of a quad runs while the array works on the ones before). An array *step*
is one cycle in which the array takes one operand tile. :func:`estimate` walks the
sequencer's states cycle by cycle, each wait taken from the blocks' latencies
(:class:`Waits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from defslice.hw.axi_slice import AxiSlice
from defslice.hw.datapath import CoordUnit
from defslice.hw.layer.bias_lookup import BiasLookup
from defslice.hw.layer.divider import Divider
from defslice.hw.layer.exp2 import Exp2Unit
from defslice.hw.layer.layernorm import LayerNormUnit
from defslice.hw.layer.mac_array import MacArray
from defslice.hw.layer.offset_unit import OffsetUnit
from defslice.hw.layer.param_memories import param_load_cycles
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.requantizer import Requantizer
from defslice.hw.layer.softmax import Softmax, SoftmaxFormats
from defslice.model.layer_layout import ARRAY_ROWS, Rect, SliceTask

__all__ = ["PHASES", "CycleEstimate", "UnitTiming", "Waits", "estimate", "slice_cycles",
           "slice_macs", "slice_steps", "unit_loads"]

#: Array phases, in schedule order.
PHASES = ("q", "dwconv", "offset_proj", "sample", "kv", "logits", "pv", "proj_out")


@dataclass(frozen=True)
class UnitTiming:
    """What the estimate assumes of the world outside the engine (cycles).

    Members
    -------
    axi_latency : int
        Read latency of the memory: from an AR's handshake to its first R beat (1: the
        beat the cycle after, as the simulation's memory answers); the engine's R register
        slice adds :attr:`~defslice.hw.axi_slice.AxiSlice.latency`.
    """

    axi_latency: int = 1


#: Cycles from a write to Amaranth's ``SyncFIFOBuffered`` to its ``r_rdy`` (the softmax
#: feeder's queue, the y writer's job and beat queues).
FIFO_LATENCY = 2


@dataclass(frozen=True)
class Waits:
    """The latencies the sequencer waits on, from the blocks of the core (cycles).

    Members
    -------
    result : int
        From a pass's last step to its result out of the requantizer: the operand fetch
        (:data:`~defslice.hw.layer.fetch.FETCH_LATENCY`), the array
        (:meth:`~defslice.hw.layer.mac_array.MacArray.latency_of`), the core's bias read
        (one register) and :attr:`~defslice.hw.layer.requantizer.Requantizer.latency`.
    ln_row : int
        From the cycle the LayerNorm unit starts a row (the cycle after its last word is
        in, or once the row before lets it) to the row counted: ``2 Cg`` reads and
        :meth:`~defslice.hw.layer.layernorm.LayerNormUnit.row_latency`.
    ln_busy : int
        Cycles its state machine holds a row (``ln_row`` less the normalise pipeline,
        which overlaps the next row).
    position : int
        From an ``offset_proj`` result to its sampling position counted: the offset unit
        (:meth:`~defslice.hw.layer.offset_unit.OffsetUnit.latency_of`), the coordinate
        unit (:attr:`~defslice.hw.datapath.CoordUnit.latency`), the count register.
    feed : int
        From the softmax feeder's first read of a quad to its first logit in the softmax
        unit: the logits buffer read and the alignment with the bias lookup
        (:attr:`~defslice.hw.layer.bias_lookup.BiasLookup.latency` in all, 1 without a
        position bias), the queue (:data:`FIFO_LATENCY`).
    recip : int
        Softmax: from a row's last exponential issued to the row's probabilities
        starting: the exponential's input register, :attr:`~defslice.hw.layer.exp2.
        Exp2Unit.latency`, the reciprocal's divider (:meth:`~defslice.hw.layer.divider.
        Divider.latency_of`), the register that marks it arrived.
    """

    result: int
    ln_row: int
    ln_busy: int
    position: int
    feed: int
    recip: int

    @classmethod
    def of(cls, plan: LayerPlan) -> Waits:
        """The waits of the core ``plan`` describes."""
        from defslice.hw.layer.fetch import FETCH_LATENCY  # (fetch imports the sequencer)

        d, ln = plan.dims, plan.ln
        cg = d.group_channels
        ln_row = 2 * cg + LayerNormUnit.row_latency(ln, cg)
        mode = "tanh" if d.spec.offset_range_factor >= 0 else "clamp"
        recip_div = Divider.latency_of(SoftmaxFormats.from_config(ln).recip_frac + 1,
                                       Softmax.DIV_STEPS)
        return cls(result=FETCH_LATENCY + MacArray.latency_of(plan.lanes) + 1
                   + Requantizer.latency,
                   ln_row=ln_row, ln_busy=ln_row - LayerNormUnit.NORM_LATENCY,
                   position=OffsetUnit.latency_of(mode) + CoordUnit.latency + 1,
                   feed=(BiasLookup.latency if d.use_pe else 1) + FIFO_LATENCY,
                   recip=1 + Exp2Unit.latency + recip_div + 1)


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


#: Softmax stage C: from a probability's read to its ``p`` out (the read, the product by
#: the reciprocal, the rounded ``p`` registered).
PROB_LATENCY = 3


class _Softmax:
    """The softmax feeder and the three stages of :class:`~defslice.hw.layer.softmax.
    Softmax` on one slice's rows (pixel, head) of ``nk`` keys, quad after quad: stage A
    takes a row (two row buffers), B issues its exponentials once A has it and one of
    its own two buffers is free, C emits the probabilities once the reciprocal is in.
    The feeder runs a quad's values one a cycle from its logits counted; its queue
    (the core's ``sm_fifo``) keeps stage A fed after a stall."""

    def __init__(self, w: Waits, rows: int, nk: int) -> None:
        self.w, self.rows, self.nk = w, rows, nk
        self.feed = -(1 << 30)           # cycle the feeder may start the next quad
        self.a_last = self.b_prev = self.c_prev = -(1 << 30)
        self.b_old = self.c_old = -(1 << 30)    # of the row two back

    def quad(self, logits_in: int) -> int:
        """Cycle the quad's probabilities are all counted, its logits counted at
        ``logits_in``."""
        nk, w = self.nk, self.w
        go = max(logits_in, self.feed)
        self.feed = go + self.rows * nk
        p_last = 0
        for r in range(self.rows):
            a_first = max(go + w.feed + r * nk, self.a_last + 1, self.b_old + nk + 1)
            self.a_last = a_first + nk - 1
            b = max(self.a_last + 1, self.b_prev + nk + 1, self.c_old + nk + 1)
            c = max(b + nk + w.recip, self.c_prev + nk + 1)
            self.b_old, self.b_prev = self.b_prev, b
            self.c_old, self.c_prev = self.c_prev, c
            p_last = c + nk + PROB_LATENCY
        return p_last + 1


class _Walk:
    """The sequencer's walk through one slice, in cycles from the cycle it takes the
    slice: a job loaded at cycle ``c`` issues its steps at ``c + 1 ..``; a state that
    only waits or moves on takes a cycle."""

    def __init__(self, plan: LayerPlan, t: SliceTask, w: Waits) -> None:
        self.plan, self.t, self.w = plan, t, w
        self.steps = slice_steps(plan, t)
        self.state, self.idle, self.last, self.release = 1, 0, 0, 0

    def job(self, n: int, ready: int = 0) -> int:
        """Load a job of ``n`` steps once idle and ``ready``; the cycle of its last
        step."""
        at = max(self.state, self.idle, ready)
        self.state, self.idle, self.last = at + 1, at + n + 1, at + n
        return self.last

    def wait(self, ready: int = 0) -> None:
        """A state that moves on once idle and ``ready``."""
        self.state = max(self.state, self.idle, ready) + 1

    def drained(self) -> int:
        """First cycle without a pass in flight."""
        return self.last + self.w.result + 1

    def offsets(self) -> list[int]:
        """``q``; then ``dwconv`` of row 0, and of each further row followed by
        ``offset_proj`` of the row before (each waiting for its row's LayerNorm); then
        ``offset_proj`` of the last row. The cycles each row's position is counted."""
        d, L, w = self.plan.dims, self.plan.lanes, self.w
        rows = self.t.num_keys * d.groups
        dw, off = d.tap_quads * (d.group_channels // L), d.group_channels // L
        self.job(self.steps["q"])
        self.wait(self.drained())
        ln_free, ln_out, positions = 0, [], []

        def dwconv() -> None:
            nonlocal ln_free
            begin = max(self.job(dw) + w.result + 1, ln_free)
            ln_free = begin + w.ln_busy
            ln_out.append(begin + w.ln_row)
            self.state += 1                  # AFTER_DW

        def offset_proj() -> None:
            end = self.job(off, ln_out[len(positions)])
            positions.append(end + w.result + w.position)

        dwconv()
        for _ in range(1, rows):
            dwconv()
            offset_proj()
        offset_proj()
        return positions

    def keys(self, positions: list[int]) -> None:
        """``sample`` of every row once its position is in, then ``kv`` once drained."""
        off = self.plan.dims.group_channels // self.plan.lanes
        for ready in positions:
            self.job(off, ready)
        self.release = self.job(self.steps["kv"], self.drained()) - self.steps["kv"] + 1
        self.wait(self.drained())

    def attention(self) -> tuple[int, int]:
        """Logits of quads 0 and 1; then per quad ``pv`` (once its softmax is out),
        logits two quads ahead, ``proj_out`` (once ``pv``'s results are in). The cycles
        of the sequencer's ``done`` and of the last pass's result."""
        t, w, d = self.t, self.w, self.plan.dims
        quads = _quads(t.region)
        per = {k: self.steps[k] // quads for k in ("logits", "pv", "proj_out")}
        sm = _Softmax(w, ARRAY_ROWS * d.heads, t.num_keys)
        logits_in = {}
        for n in range(min(2, quads)):
            logits_in[n] = self.job(per["logits"]) + w.result + 1
        self.wait()
        for n in range(quads):
            o_in = self.job(per["pv"], sm.quad(logits_in[n])) + w.result + 1
            if n + 2 < quads:
                logits_in[n + 2] = self.job(per["logits"]) + w.result + 1
            else:
                self.wait()
            self.job(per["proj_out"], o_in)
            self.wait()
            self.state += 1                  # P_END
        return max(self.state, self.idle), self.drained()


def slice_cycles(plan: LayerPlan, t: SliceTask, w: Waits | None = None) -> tuple[int, ...]:
    """Cycles from the sequencer taking slice ``t`` (which has keys) to its ``done``, to
    its last result drained and to its window released (the first ``kv`` step)."""
    walk = _Walk(plan, t, w or Waits.of(plan))
    walk.keys(walk.offsets())
    return (*walk.attention(), walk.release)


@dataclass
class CycleEstimate:
    """What :func:`estimate` predicts for one run (cycles unless stated).

    ``total``: the run's cycles (the ``CYCLES`` counter: start to the last write
    response); ``array_busy``: array steps; ``compute_bound``: multiply-accumulates /
    multipliers; ``unit_bound``: the busiest unit beside the array alone; ``first_load``:
    cycles the core waited for windows up to the first slice with keys (the parameters,
    descriptors and windows); ``exposed_load``: cycles it waited for a later window;
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


def _unit_bound(loads: dict[str, int], w: Waits) -> int:
    """Cycles of the busiest unit on its own: LayerNorm (its state machine per row), bias
    lookup and each softmax stage (one value per cycle)."""
    return max(loads["layernorm_rows"] * w.ln_busy, loads["bias"], loads["exp"])


def _load_beats(plan: LayerPlan, t: SliceTask) -> int:
    lay = plan.layout
    return (lay.desc_stride + t.window.pixels * lay.pixel_stride) // lay.bus_bytes


def _fill(plan: LayerPlan, t: SliceTask) -> int:
    """Cycles from the core taking a slice with keys to its sequencer taking it: the
    row and quad tables filled side by side, then the hand-over."""
    return max(t.num_keys * plan.dims.groups, _quads(t.region)) + 2


#: Cycle of the run in which the parameter reader issues its first AR.
PARAM_AR = 1
#: The loader's steps between a descriptor's last beat and its window's first AR: the
#: router's PARSE and its ``parsed`` register, the reader's WAIT_DESC, LEVEL, LEVEL_MUL,
#: LEVEL_ADD, LEVEL2, ROW and BURST states (``hw/router.py``, ``hw/reader.py``).
LOADER_STEPS = 9
#: States of the AXI writer between two regions (its IDLE and AW, ``hw/writer.py``).
REGION_GAP = 2


def _window_in(plan: LayerPlan, tm: UnitTiming, t: SliceTask, after: int,
               released: int) -> int:
    """Cycle the loader hands over slice ``t``: its descriptor's beats from cycle
    ``after + 1`` on (the router takes them once the slice before is handed over, or
    after the parameters), its window's AR once parsed and its buffer set is
    ``released``, the window's beats at one a cycle behind the read latency."""
    lay = plan.layout
    desc = lay.desc_stride // lay.bus_bytes
    ar = max(after + desc, released - 1) + LOADER_STEPS
    return ar + tm.axi_latency + AxiSlice.latency + _load_beats(plan, t) - desc


def _y_tail(plan: LayerPlan, rows: int, cols: int) -> int:
    """Cycles from a writer job (``rows`` x ``cols`` pixels of ``y``) queued to the end
    of the run: the writer's queue, its job register and y-buffer read, the y queue
    (:data:`FIFO_LATENCY` each), the beats at :data:`~defslice.hw.layer.core.Y_IN_FLIGHT`
    per round trip, one AXI region per pixel row; then the last write response and the
    run's end."""
    from defslice.hw.layer.core import Y_IN_FLIGHT

    lay = plan.layout
    beats = rows * cols * (lay.out_stride // lay.bus_bytes)
    first = FIFO_LATENCY + 2 + FIFO_LATENCY
    span = beats + (beats - 1) // Y_IN_FLIGHT + REGION_GAP * (rows - 1)
    return first + span + 2


def _schedule(plan: LayerPlan, tm: UnitTiming, w: Waits, est: CycleEstimate) -> int:
    """Walk the slices (cycle 0: the run's first): the loader takes a slice's
    descriptor once the one before is handed to the core; the core takes a slice once it
    is loaded and the slice before has drained (a keyless slice costs the core one
    cycle). Adds the cycles the core waits for a window to ``first_load`` (up to the
    first slice with keys) or ``exposed_load``; returns the run's cycles."""
    loader = PARAM_AR + tm.axi_latency + AxiSlice.latency + param_load_cycles(plan) - 1
    released = [0] * plan.sets
    free, end, computed = 0, 0, False
    for k, t in enumerate(plan.tasks):
        loaded = _window_in(plan, tm, t, loader, released[k % plan.sets])
        if computed:
            est.exposed_load += max(0, loaded - free)
        else:
            est.first_load += max(0, loaded - free)
        take = loader = max(loaded, free)
        if not t.num_keys:
            free = released[k % plan.sets] = take + 1
            end = max(end, take + 1 + _y_tail(plan, t.region.rows, t.region.cols))
            continue
        computed = True
        start = take + _fill(plan, t)
        done, drained, release = slice_cycles(plan, t, w)
        free = start + max(done + 1, drained)
        # The last quad row's job is queued the cycle before its results are drained.
        end = start + drained - 1 + _y_tail(plan, 2 - t.region.rows % 2, t.region.cols)
        released[k % plan.sets] = start + release
    return max(end, free)


def estimate(plan: LayerPlan, timing: UnitTiming | None = None) -> CycleEstimate:
    """Cycles of one run with an always-ready memory (one beat per cycle on each of the
    read and write channels), following the schedule the sequencer runs.

    The read channel loads the parameters, then descriptors and windows in slice order;
    each slice runs as :func:`slice_cycles` walks it; ``y`` of the last quad row drains
    after the last slice.
    """
    tm = timing or UnitTiming()
    lay = plan.layout
    est = CycleEstimate(phases=dict.fromkeys(PHASES, 0), macs=dict.fromkeys(PHASES, 0))
    for t in plan.tasks:
        for name, v in slice_steps(plan, t).items():
            est.phases[name] += v
        for name, v in slice_macs(plan, t).items():
            est.macs[name] += v
        for name, v in unit_loads(plan, t).items():
            est.loads[name] = est.loads.get(name, 0) + v
    w = Waits.of(plan)
    est.total = _schedule(plan, tm, w, est)
    est.unit_bound = _unit_bound(est.loads, w)
    out_pixel_beats = lay.out_stride // lay.bus_bytes
    est.array_busy = sum(est.phases.values())
    est.compute_bound = sum(est.macs.values()) / plan.multipliers
    d = plan.dims
    est.layer_macs = sum(est.macs.values()) - est.macs["q"] \
        + d.height * d.width * d.channels ** 2
    est.read_beats = lay.param_bytes // lay.bus_bytes + sum(_load_beats(plan, t)
                                                            for t in plan.tasks)
    est.write_beats = d.height * d.width * out_pixel_beats
    return est
