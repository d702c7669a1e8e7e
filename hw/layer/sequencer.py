"""Slice sequencer: the array's step stream of one slice, waiting on the units it needs."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.layer.cycles import PHASES
from defslice.hw.layer.plan import MAX_SLICE_KEYS, LayerPlan
from defslice.model.layer_layout import ARRAY_ROWS

__all__ = ["INDEX_BITS", "PHASE_CODE", "Sequencer"]

#: Width of every loop index and slice field.
INDEX_BITS = 16
#: Phase name -> code on the ``step`` stream.
PHASE_CODE = {name: k for k, name in enumerate(PHASES)}
LEVELS = 4


def _cdiv_sig(x: object, k: int) -> object:
    """``ceil(x / k)`` of an unsigned expression, ``k`` a power of two."""
    shift = k.bit_length() - 1
    return (x + (k - 1)) >> shift


class Sequencer(wiring.Component):
    """Issues :func:`defslice.hw.layer.schedule.slice_schedule`'s steps of one slice.

    A *job* is a nest of up to four loops (one :class:`~defslice.hw.layer.schedule.Step`
    per innermost iteration); the innermost loop is the pass (``first`` / ``last``) unless
    the job's passes are one step long (``sample``). Between jobs the sequencer waits for
    what the next one reads:

    * ``drained``: no pass in flight (before ``dwconv``, ``kv`` and ``logits``, which read
      what the previous phase writes);
    * ``ln_rows > r`` before ``offset_proj`` of row ``r``; ``positions > r`` before
      ``sample`` of row ``r``;
    * ``sm_quads > n`` before ``pv`` of quad ``n``; ``o_quads > n`` and ``y_room`` (the
      output buffer can take the quad) before ``proj_out``.

    Arguments
    ---------
    plan : LayerPlan

    Members
    -------
    slice : In(stream.Signature(...))
        The slice to run: ``q_row0, q_col0, q_rows, q_cols`` (q box), ``reg_rows,
        reg_cols`` (its pixels), ``key_rows, key_cols``; taken when the sequencer is idle
        (the window must already be in its buffer).
    step : Out(stream.Signature(...))
        ``phase`` (:data:`PHASE_CODE`), ``index[4]`` (the Step's index, unused levels 0),
        ``first``, ``last``.
    done : Out(1)
        One cycle when the slice's last step has been taken.
    drained, ln_rows, positions, sm_quads, o_quads, y_room : In
        The wait conditions above (counts since the slice started).
    """

    def __init__(self, plan: LayerPlan) -> None:
        if not isinstance(plan, LayerPlan):
            raise TypeError(f"plan must be a LayerPlan, not {type(plan).__name__}")
        self.plan = plan
        ib = INDEX_BITS
        super().__init__({
            "slice": In(stream.Signature(data.StructLayout({
                name: unsigned(ib) for name in ("q_row0", "q_col0", "q_rows", "q_cols",
                                                "reg_rows", "reg_cols", "key_rows",
                                                "key_cols")}))),
            "step": Out(stream.Signature(data.StructLayout({
                "phase": range(len(PHASES)), "index": data.ArrayLayout(unsigned(ib), LEVELS),
                "first": 1, "last": 1}))),
            "done": Out(1),
            "drained": In(1), "y_room": In(1),
            "ln_rows": In(ib), "positions": In(ib), "sm_quads": In(ib), "o_quads": In(ib),
        })

    # -- the loop engine -----------------------------------------------------------------
    def _engine(self, m: Module) -> dict:
        """Four nested counters; ``load`` sets a job, ``busy`` while it emits."""
        ib = INDEX_BITS
        e = {
            "busy": Signal(name="job_busy"), "phase": Signal(range(len(PHASES)), name="job_phase"),
            "count": [Signal(ib, name=f"job_count{k}") for k in range(LEVELS)],
            "base": [Signal(ib, name=f"job_base{k}") for k in range(LEVELS)],
            "stride2": [Signal(name=f"job_stride2_{k}") for k in range(LEVELS)],
            "ctr": [Signal(ib, name=f"job_ctr{k}") for k in range(LEVELS)],
            "single": Signal(name="job_single"),   # passes of one step
            "end": Signal(name="job_end"),
        }
        ctr, count = e["ctr"], e["count"]
        wrap = [ctr[k] == count[k] - 1 for k in range(LEVELS)]
        fire = self.step.valid & self.step.ready
        m.d.comb += [self.step.valid.eq(e["busy"]), self.step.payload.phase.eq(e["phase"])]
        for k in range(LEVELS):
            m.d.comb += self.step.payload.index[k].eq(
                e["base"][k] + Mux(e["stride2"][k], ctr[k] << 1, ctr[k]))
        m.d.comb += [self.step.payload.first.eq(e["single"] | (ctr[LEVELS - 1] == 0)),
                     self.step.payload.last.eq(e["single"] | wrap[LEVELS - 1])]
        # Odometer: the innermost level counts every step, an outer one when all inner wrap.
        carry = fire
        for k in reversed(range(LEVELS)):
            with m.If(carry):
                m.d.sync += ctr[k].eq(Mux(wrap[k], 0, ctr[k] + 1))
            carry = carry & wrap[k]
        m.d.comb += e["end"].eq(carry)
        with m.If(carry):
            m.d.sync += e["busy"].eq(0)
        return e

    @staticmethod
    def _load(m: Module, e: dict, phase: str, levels: list) -> None:
        """Start a job: ``levels`` is four ``(base, count, stride2)`` from the outermost;
        a level of count 1 and base 0 is unused."""
        m.d.sync += [e["busy"].eq(1), e["phase"].eq(PHASE_CODE[phase]),
                     e["single"].eq(phase == "sample")]
        for k, (base, count, stride2) in enumerate(levels):
            m.d.sync += [e["base"][k].eq(base), e["count"][k].eq(count),
                         e["stride2"][k].eq(stride2), e["ctr"][k].eq(0)]

    # -- the slice -----------------------------------------------------------------------
    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.plan
        d, L, N = p.dims, p.lanes, p.cols
        c, cg, dh = d.channels, d.group_channels, d.head_dim
        e = self._engine(m)
        s = Signal(self.slice.payload.shape())
        nk = Signal(range(MAX_SLICE_KEYS * 4 + 1))
        rows = Signal(INDEX_BITS)            # (key, group) rows of the offset network
        quads = Signal(INDEX_BITS)
        ctr = {k: Signal(INDEX_BITS, name=f"seq_{k}") for k in ("dw", "off", "smp", "n")}
        # Registered: the products would otherwise run through a multiplier into the job
        # counters every cycle. They are read from the offset network's jobs on, two
        # cycles or more after ``s`` loads.
        m.d.sync += [nk.eq(s.key_rows * s.key_cols),
                     rows.eq(s.key_rows * s.key_cols * d.groups),
                     quads.eq(_cdiv_sig(s.reg_rows, 2) * _cdiv_sig(s.reg_cols, 2))]
        one = (0, 1, 0)
        idle = ~e["busy"]
        n = ctr["n"]
        jobs = {
            "q": [(s.q_row0, _cdiv_sig(s.q_rows, 2), 1), (s.q_col0, _cdiv_sig(s.q_cols, 2), 1),
                  (0, c // N, 0), (0, c // L, 0)],
            "dwconv": [one, (ctr["dw"], 1, 0), (0, cg // L, 0), (0, d.tap_quads, 0)],
            "offset_proj": [one, one, (ctr["off"], 1, 0), (0, cg // L, 0)],
            "sample": [one, one, (ctr["smp"], 1, 0), (0, cg // L, 0)],
            "kv": [(0, 2, 0), (0, _cdiv_sig(nk, ARRAY_ROWS), 0), (0, c // N, 0),
                   (0, c // L, 0)],
            "logits": [(n, 1, 0), (0, d.heads, 0), (0, _cdiv_sig(nk, N), 0), (0, dh // L, 0)],
            "logits_ahead": [(n + 2, 1, 0), (0, d.heads, 0), (0, _cdiv_sig(nk, N), 0),
                             (0, dh // L, 0)],
            "pv": [(n, 1, 0), (0, d.heads, 0), (0, dh // N, 0), (0, _cdiv_sig(nk, L), 0)],
            "proj_out": [one, (n, 1, 0), (0, c // N, 0), (0, c // L, 0)],
        }
        m.d.comb += self.slice.ready.eq(0)
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                m.d.comb += self.slice.ready.eq(1)
                with m.If(self.slice.valid):
                    m.d.sync += s.eq(self.slice.payload)
                    m.next = "Q"
            self._offset_states(m, e, jobs, idle, rows, ctr)
            self._attention_states(m, e, jobs, idle, quads, n)
            with m.State("DONE"):
                with m.If(idle):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m

    def _offset_states(self, m: Module, e: dict, jobs: dict, idle: Signal, rows: Signal,
                       ctr: dict) -> None:
        """q; dwconv(0), dwconv(1), offset_proj(0), dwconv(2), offset_proj(1), ...,
        offset_proj(last); sample of every row; kv."""
        dw, off, smp = ctr["dw"], ctr["off"], ctr["smp"]
        with m.State("Q"):
            self._load(m, e, "q", jobs["q"])
            m.next = "Q_RUN"
        with m.State("Q_RUN"):
            with m.If(idle & self.drained):
                m.d.sync += [dw.eq(0), off.eq(0), smp.eq(0)]
                m.next = "DW"
        with m.State("DW"):
            with m.If(idle):
                self._load(m, e, "dwconv", jobs["dwconv"])
                m.d.sync += dw.eq(dw + 1)
                m.next = "AFTER_DW"
        with m.State("AFTER_DW"):
            # dw now counts the rows convolved: offset_proj runs one row behind.
            with m.If((dw >= 2) | (dw == rows)):
                m.next = "OFF"
            with m.Else():
                m.next = "DW"
        with m.State("OFF"):
            with m.If(idle & (self.ln_rows > off)):
                self._load(m, e, "offset_proj", jobs["offset_proj"])
                m.d.sync += off.eq(off + 1)
                with m.If(dw < rows):
                    m.next = "DW"
                with m.Elif(off + 1 == rows):
                    m.next = "SAMPLE"
        with m.State("SAMPLE"):
            with m.If(idle & (self.positions > smp)):
                self._load(m, e, "sample", jobs["sample"])
                m.d.sync += smp.eq(smp + 1)
                with m.If(smp + 1 == rows):
                    m.next = "KV_WAIT"
        with m.State("KV_WAIT"):
            with m.If(idle & self.drained):
                self._load(m, e, "kv", jobs["kv"])
                m.next = "KV_RUN"

    def _attention_states(self, m: Module, e: dict, jobs: dict, idle: Signal,
                          quads: Signal, n: Signal) -> None:
        """L0, L1, then PV(n), L(n + 2), P(n) for every quad."""
        with m.State("KV_RUN"):
            with m.If(idle & self.drained):
                m.d.sync += n.eq(0)
                m.next = "L_PRO"
        with m.State("L_PRO"):
            with m.If(idle):
                with m.If((n < 2) & (n < quads)):
                    self._load(m, e, "logits", jobs["logits"])
                    m.d.sync += n.eq(n + 1)
                with m.Else():
                    m.d.sync += n.eq(0)
                    m.next = "PV"
        with m.State("PV"):
            with m.If(idle & (self.sm_quads > n)):
                self._load(m, e, "pv", jobs["pv"])
                m.next = "L_AHEAD"
        with m.State("L_AHEAD"):
            with m.If(idle):
                with m.If(n + 2 < quads):
                    self._load(m, e, "logits", jobs["logits_ahead"])
                m.next = "P"
        with m.State("P"):
            with m.If(idle & (self.o_quads > n) & self.y_room):
                self._load(m, e, "proj_out", jobs["proj_out"])
                m.next = "P_NEXT"
        with m.State("P_NEXT"):
            with m.If(idle):
                m.d.sync += n.eq(n + 1)
                m.next = "P_END"
        with m.State("P_END"):
            with m.If(n == quads):
                m.next = "DONE"
            with m.Else():
                m.next = "PV"
