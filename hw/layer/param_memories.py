"""Parameter memories of the layer engine, filled once per run from the parameter region."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.deep_memory import DeepMemory
from defslice.hw.layer.bias_lookup import BiasLookup
from defslice.hw.layer.layernorm import LayerNormUnit
from defslice.hw.layer.plan import LayerPlan
from defslice.model.layer_layout import ARRAY_ROWS, BIAS_BYTES, REF_BYTES, WEIGHT_BYTES

__all__ = ["ParamMemories", "param_load_cycles", "param_load_steps"]

#: Sections written a beat per cycle (memory words of one or more beats), in DRAM order.
WORD_SECTIONS = ("proj_q", "proj_k", "proj_v", "proj_out", "offset_proj", "dwconv")
#: Sections written one value per cycle (a beat waits for its values): bytes per value.
VALUE_SECTIONS = {"bias": BIAS_BYTES, "norm_gain": WEIGHT_BYTES, "reference": REF_BYTES}


def param_load_steps(plan: LayerPlan) -> list[tuple[str, int, int]]:
    """The parameter region as the loader walks it: ``(section, first beat, beats)``."""
    lay = plan.layout
    return [(name, sec.offset // lay.bus_bytes, sec.nbytes // lay.bus_bytes)
            for name, sec in lay.sections.items()]


def param_load_cycles(plan: LayerPlan) -> int:
    """Cycles :class:`ParamMemories` takes the region's beats in, every beat offered at
    once: one per beat, ``bus_bytes / value bytes`` per beat of a value section."""
    bus = plan.layout.bus_bytes
    return sum(count * (bus // VALUE_SECTIONS[name] if name in VALUE_SECTIONS else 1)
               for name, _, count in param_load_steps(plan))


class ParamMemories(wiring.Component):
    """The parameter region's beats into the engine's memories (``docs/dram.md``).

    * ``proj_*`` and ``offset_proj`` into the weight memory (one ``L x N`` tile per word,
      ``proj_q`` tiles first), ``dwconv`` into the depthwise memory (``4 x L`` per word):
      one beat per cycle, a word taking ``tile bytes / bus bytes`` beats;
    * ``bias`` into the bias memory (``L`` accumulator values per word), the LayerNorm
      offsets also to the LayerNorm unit, ``norm_gain`` to the LayerNorm unit,
      ``reference`` into the reference memory: one value per cycle (the beat waits);
    * ``rpe`` to the bias lookup's banks, one beat (every bank's word) per cycle.

    Members
    -------
    beat : In(stream.Signature(bus_bits))
        The region's beats in order (``ready`` low while a beat is split into values).
    start : In(1)
        A new run: the next beat is the region's first.
    done : Out(1)
        Every beat of the region has been taken.
    w_addr / w_data, dw_addr / dw_data, b_addr / b_data, ref_addr / ref_data
        Read ports (data one cycle after the address) of the weight, depthwise, bias
        and reference memories.
    ln_w : Out(stream.Signature(LayerNormUnit.params_layout(...), always_ready=True))
    rpe_w : Out(stream.Signature(BiasLookup.table_layout(...), always_ready=True))
        Present when the layer has a position bias.
    """

    def __init__(self, plan: LayerPlan) -> None:
        d, L, N = plan.dims, plan.lanes, plan.cols
        lay, acc = plan.layout, plan.ln.acc_bits
        bus = lay.bus_bytes
        self.plan = plan
        self.tile = L * N
        self.weight_words = 4 * (d.channels // N) * (d.channels // L) + \
            d.group_channels // L
        self.dw_words = d.tap_quads * (d.group_channels // L)
        self.bias_values = 4 * d.channels + 2 * d.group_channels
        self.refs = d.key_rows + d.key_cols
        if self.tile * WEIGHT_BYTES < bus or ARRAY_ROWS * L * WEIGHT_BYTES < bus:
            raise ValueError("a weight tile and a depthwise word must each fill at least "
                             f"one {bus}-byte beat")
        self.w_shape = data.ArrayLayout(signed(16), self.tile)
        self.dw_shape = data.ArrayLayout(signed(16), ARRAY_ROWS * L)
        self.b_shape = data.ArrayLayout(signed(acc), L)

        def bits(n: int) -> int:
            return max(1, (n - 1).bit_length())

        members = {
            "beat": In(stream.Signature(8 * bus)), "start": In(1), "done": Out(1),
            "w_addr": In(bits(self.weight_words)), "w_data": Out(self.w_shape),
            "dw_addr": In(bits(self.dw_words)), "dw_data": Out(self.dw_shape),
            "b_addr": In(bits(self.bias_values // L)), "b_data": Out(self.b_shape),
            "ref_addr": In(data.ArrayLayout(bits(self.refs), 2)),
            "ref_data": Out(data.ArrayLayout(signed(32), 2)),
            "ln_w": Out(stream.Signature(LayerNormUnit.params_layout(plan.ln, d.group_channels),
                                         always_ready=True)),
        }
        if d.use_pe:
            per = bus // (ARRAY_ROWS * WEIGHT_BYTES)
            words = -(-d.heads * d.height * d.width // per)
            members["rpe_w"] = Out(stream.Signature(
                BiasLookup.table_layout(words, plan.ln.weight_bits, per), always_ready=True))
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        plan = self.plan
        L, cg = plan.lanes, plan.dims.group_channels
        bus = plan.layout.bus_bytes
        wmem = DeepMemory(self.w_shape, self.weight_words, lanes=self.tile)
        dwmem = DeepMemory(self.dw_shape, self.dw_words, lanes=ARRAY_ROWS * L)
        bmem = memory.Memory(shape=self.b_shape, depth=self.bias_values // L, init=[])
        rmem = memory.Memory(shape=signed(32), depth=self.refs, init=[])
        m.submodules.weights, m.submodules.dwconv = wmem, dwmem
        m.submodules.biases, m.submodules.references = bmem, rmem
        for mem, addr, out in ((wmem, self.w_addr, self.w_data),
                               (dwmem, self.dw_addr, self.dw_data)):
            m.d.comb += [mem.r_addr.eq(addr), out.eq(mem.r_data)]
        rp = bmem.read_port()
        m.d.comb += [rp.addr.eq(self.b_addr), self.b_data.eq(rp.data)]
        for k in range(2):
            rp = rmem.read_port()
            m.d.comb += [rp.addr.eq(self.ref_addr[k]), self.ref_data[k].eq(rp.data)]
        beat = Signal(range(plan.layout.param_bytes // bus + 1))
        total = plan.layout.param_bytes // bus
        sub = Signal(range(bus // WEIGHT_BYTES + 1))       # value within a slow beat
        take = Signal()
        m.d.comb += [self.beat.ready.eq(take), self.done.eq(beat == total)]
        with m.If(self.start):
            m.d.sync += [beat.eq(0), sub.eq(0)]
        with m.Elif(self.beat.valid & take):
            m.d.sync += [beat.eq(beat + 1), sub.eq(0)]
        with m.Elif(self.beat.valid):
            m.d.sync += sub.eq(sub + 1)
        fire = self.beat.valid & (beat < total)
        for name, first, count in param_load_steps(plan):
            here = fire & (beat < first + count)
            if first:                       # (beat >= 0 always holds: no comparison)
                here = here & (beat >= first)
            k = Signal(range(max(count, 1)), name=f"beat_{name}")
            m.d.comb += k.eq(beat - first)
            if name in WORD_SECTIONS:
                mem = dwmem if name == "dwconv" else wmem
                self._word_section(m, mem, name, here, k)
                with m.If(here):
                    m.d.comb += take.eq(1)
            elif name == "rpe":
                if "rpe_w" in self.signature.members:
                    self._rpe(m, here, k)
                with m.If(here):
                    m.d.comb += take.eq(1)
            else:
                size = VALUE_SECTIONS[name]
                per = bus // size
                index = Signal(range(count * per + 1), name=f"index_{name}")
                m.d.comb += index.eq(k * per + sub)
                with m.If(here & (sub == per - 1)):
                    m.d.comb += take.eq(1)
                value = self.beat.payload.word_select(sub, 8 * size).as_signed()
                self._value(m, name, here, index, value, bmem, rmem, L, cg)
        return m

    def _word_section(self, m: Module, mem: DeepMemory, name: str, here: Signal,
                      k: Signal) -> None:
        """Beat ``k`` of a section of whole memory words: lanes of word ``base + k / B``."""
        plan = self.plan
        bus = plan.layout.bus_bytes
        word_bytes = (self.tile if mem.shape is self.w_shape else
                      ARRAY_ROWS * plan.lanes) * WEIGHT_BYTES
        beats = word_bytes // bus
        per_beat = bus // WEIGHT_BYTES
        order = ("proj_q", "proj_k", "proj_v", "proj_out", "offset_proj")
        d = plan.dims
        proj = (d.channels // plan.cols) * (d.channels // plan.lanes)
        base = order.index(name) * proj if name in order else 0
        shift = beats.bit_length() - 1
        part = k & (beats - 1) if beats > 1 else 0
        with m.If(here):
            m.d.comb += [mem.w_addr.eq(base + (k >> shift)),
                         mem.w_en.eq(((1 << per_beat) - 1) << (part * per_beat))]
            for j in range(mem.shape.length // per_beat):
                m.d.comb += mem.w_data.as_value().word_select(j, 16 * per_beat).eq(
                    self.beat.payload)

    def _rpe(self, m: Module, here: Signal, k: Signal) -> None:
        per = self.plan.layout.bus_bytes // (ARRAY_ROWS * WEIGHT_BYTES)
        m.d.comb += [self.rpe_w.valid.eq(here), self.rpe_w.payload.addr.eq(k)]
        for b in range(ARRAY_ROWS):
            for e in range(per):
                m.d.comb += self.rpe_w.payload.data[b][e].eq(
                    self.beat.payload.word_select(b * per + e, 16).as_signed())

    def _value(self, m: Module, name: str, here: Signal, index: Signal, value: object,
               bmem: memory.Memory, rmem: memory.Memory, L: int, cg: int) -> None:
        """One value of a small section per cycle."""
        c = self.plan.dims.channels
        if name == "reference":
            wp = rmem.write_port()
            m.d.comb += [wp.en.eq(here & (index < self.refs)), wp.addr.eq(index),
                         wp.data.eq(value)]
            return
        if name == "norm_gain":
            with m.If(here & (index < cg)):
                m.d.comb += [self.ln_w.valid.eq(1), self.ln_w.payload.c.eq(index),
                             self.ln_w.payload.gamma.eq(value),
                             self.ln_w.payload.set_gamma.eq(1)]
            return
        wp = bmem.write_port(granularity=1)
        inside = here & (index < self.bias_values)
        lane = Signal(L, name="bias_lane")
        m.d.comb += [lane.eq(Const(1, L) << (index % L)), wp.addr.eq(index // L),
                     wp.en.eq(Mux(inside, lane, 0))]
        for j in range(L):
            m.d.comb += wp.data[j].eq(value)
        beta0 = 4 * c + cg
        with m.If(inside & (index >= beta0)):
            m.d.comb += [self.ln_w.valid.eq(1), self.ln_w.payload.c.eq(index - beta0),
                         self.ln_w.payload.beta.eq(value), self.ln_w.payload.set_beta.eq(1)]
