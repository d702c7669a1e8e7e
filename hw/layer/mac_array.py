"""The layer engine's shared multiply-accumulate array: 4 x lanes x cols multipliers."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defslice.hw.datapath import delay

__all__ = ["DENSE", "ROW_REDUCE", "MacArray"]

#: ``mode`` values. Dense: ``acc[r][n] += sum_l a[r][l] * b[l][n]``; row-reduce (column 0
#: only): ``acc[l] += sum_r a[r][l] * b[r][l]``.
DENSE = 0
ROW_REDUCE = 1

ROWS = 4


def _tree(m: Module, terms: list, width: int, name: str, levels_per_stage: int = 2) -> tuple:
    """Pairwise adder tree over ``terms``, registered every ``levels_per_stage`` levels.
    Returns the sum and the number of registered stages it took."""
    stages, level = 0, 0
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms), 2):
            nxt.append(terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k])
        level += 1
        if level % levels_per_stage == 0 or len(nxt) == 1:
            regs = []
            for k, t in enumerate(nxt):
                r = Signal(signed(width), name=f"{name}_s{stages}_{k}")
                m.d.sync += r.eq(t)
                regs.append(r)
            nxt = regs
            stages += 1
        terms = nxt
    return terms[0], stages


class MacArray(wiring.Component):
    """Exact multiply-accumulate array, one operand step per cycle, never stalls.

    Arguments
    ---------
    lanes : int
        ``L``: reduction width of the dense mode (channels of a buffer word), a power of 2.
    cols : int
        ``N``: columns of the dense mode, a power of two no larger than ``lanes``.
    a_bits, b_bits : int
        Signed widths of the A and B operands (a DSP48E1 takes 25 x 18).
    acc_bits : int
        Accumulator width; the caller makes it hold every exact sum it asks for.
    tag_bits : int
        Width of a tag carried from a pass's last step to its result.

    Members
    -------
    i : In(stream.Signature(..., always_ready=True))
        One step: ``a[r][l]`` (4 rows x ``L`` lanes); ``b``: ``max(L N, 4 L)`` values, read
        as ``b[l N + n]`` in dense mode and ``b[r L + l]`` in row-reduce mode; ``mode``;
        ``first`` (the pass's first step: the sum restarts from 0); ``last`` (its last:
        the sums are emitted); ``tag``.
    o : Out(stream.Signature(..., always_ready=True))
        A finished pass, one cycle: ``acc``: ``max(4 N, L)`` sums, ``acc[r N + n]``
        (dense) or ``acc[l]`` (row-reduce); ``mode``; ``tag``.
    latency : int
        Cycles from a step on ``i`` to the result of the pass it ends on ``o``.
    """

    def __init__(self, lanes: int, cols: int, a_bits: int = 16, b_bits: int = 18,
                 acc_bits: int = 48, tag_bits: int = 1) -> None:
        if lanes < 1 or lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two, not {lanes}")
        if cols < 1 or cols & (cols - 1) or cols > lanes:
            raise ValueError(f"cols must be a power of two <= lanes ({lanes}), not {cols}")
        if not 2 <= a_bits <= 25 or not 2 <= b_bits <= 18:
            raise ValueError(f"operands must fit a 25 x 18 multiplier, not {a_bits} x "
                             f"{b_bits}")
        if acc_bits < a_bits + b_bits:
            raise ValueError(f"acc_bits must hold a product ({a_bits + b_bits} bits), not "
                             f"{acc_bits}")
        self.lanes, self.cols = lanes, cols
        self.a_bits, self.b_bits, self.acc_bits, self.tag_bits = a_bits, b_bits, acc_bits, \
            tag_bits
        self.b_size = max(lanes * cols, ROWS * lanes)
        self.acc_size = max(ROWS * cols, lanes)
        self.in_layout = data.StructLayout({
            "a": data.ArrayLayout(data.ArrayLayout(signed(a_bits), lanes), ROWS),
            "b": data.ArrayLayout(signed(b_bits), self.b_size),
            "mode": 1, "first": 1, "last": 1, "tag": tag_bits,
        })
        self.out_layout = data.StructLayout({
            "acc": data.ArrayLayout(signed(acc_bits), self.acc_size),
            "mode": 1, "tag": tag_bits,
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout, always_ready=True)),
            "o": Out(stream.Signature(self.out_layout, always_ready=True)),
        })
        self.tree_stages = self.tree_stages_of(lanes)
        self.latency = self.latency_of(lanes)

    @staticmethod
    def tree_stages_of(lanes: int) -> int:
        """Register stages of the adder trees of ``lanes`` lanes: one every two adder
        levels, ``ceil(log2(L) / 2)``, at least the one of the row-reduce tree (4 terms,
        two levels)."""
        return max(1, lanes.bit_length() // 2)

    @classmethod
    def latency_of(cls, lanes: int) -> int:
        """:attr:`latency` of an array of ``lanes`` lanes: input register, product
        register, tree stages, accumulate."""
        return 1 + 1 + cls.tree_stages_of(lanes) + 1

    def _products(self, m: Module, s0: Signal) -> list:
        """prod[r][l][n], registered (the DSP's M register)."""
        L, N = self.lanes, self.cols
        pbits = self.a_bits + self.b_bits
        prod = []
        for r in range(ROWS):
            row = []
            for lane in range(L):
                col = []
                for n in range(N):
                    b = s0.b[lane * N + n]
                    if n == 0:
                        b = Mux(s0.mode == ROW_REDUCE, s0.b[r * L + lane], b)
                    p = Signal(signed(pbits), name=f"prod_{r}_{lane}_{n}")
                    m.d.sync += p.eq(s0.a[r][lane] * b)
                    col.append(p)
                row.append(col)
            prod.append(row)
        return prod

    def elaborate(self, platform: object) -> Module:
        m = Module()
        L, N = self.lanes, self.cols
        # Stage 0: operand registers.
        s0 = Signal(self.in_layout)
        v0 = Signal()
        m.d.sync += [s0.eq(self.i.payload), v0.eq(self.i.valid)]
        # Stage 1: products; the control bits travel alongside.
        prod = self._products(m, s0)
        ctl = [Signal(self.in_layout, name="ctl1")]
        vld = [Signal(name="vld1")]
        m.d.sync += [ctl[0].eq(s0), vld[0].eq(v0)]
        # Adder trees: dense sums over lanes per (row, column), row-reduce over rows per
        # lane of column 0; the shorter trees are delayed to the longer one's latency.
        dense = [_tree(m, [prod[r][lane][n] for lane in range(L)], self.acc_bits,
                       f"dense_{r}_{n}") for r in range(ROWS) for n in range(N)]
        rowred = [_tree(m, [prod[r][lane][0] for r in range(ROWS)], self.acc_bits,
                        f"rowred_{lane}") for lane in range(L)]
        stages = max(st for _, st in dense + rowred)
        sums = [delay(m, s, stages - st, f"dense{j}") for j, (s, st) in enumerate(dense)]
        reduced = [delay(m, s, stages - st, f"rowred{j}") for j, (s, st) in enumerate(rowred)]
        assert stages == self.tree_stages
        for k in range(stages):
            c, v = Signal(self.in_layout, name=f"ctl{k + 2}"), Signal(name=f"vld{k + 2}")
            m.d.sync += [c.eq(ctl[-1]), v.eq(vld[-1])]
            ctl.append(c)
            vld.append(v)
        c, v = ctl[-1], vld[-1]
        # Accumulate; a finished pass goes out the next cycle.
        acc = [Signal(signed(self.acc_bits), name=f"acc{j}") for j in range(self.acc_size)]
        for j in range(self.acc_size):
            dense = sums[j] if j < ROWS * N else 0
            rowred = reduced[j] if j < L else 0
            term = Mux(c.mode == ROW_REDUCE, rowred, dense)
            new = Mux(c.first, 0, acc[j]) + term
            with m.If(v):
                m.d.sync += acc[j].eq(new)
                m.d.sync += self.o.payload.acc[j].eq(new)
        m.d.sync += [self.o.valid.eq(v & c.last), self.o.payload.mode.eq(c.mode),
                     self.o.payload.tag.eq(c.tag)]
        return m
