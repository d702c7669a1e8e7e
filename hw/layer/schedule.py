"""The array's step stream of one slice: the loop nests the sequencer walks, in order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from defslice.hw.layer.plan import LayerPlan
from defslice.model.layer_layout import ARRAY_ROWS, SliceTask

__all__ = ["Step", "attention_order", "offset_rows", "slice_schedule"]


class Step(NamedTuple):
    """One array step (one cycle of operands).

    ``phase`` names the phase (``defslice.hw.layer.cycles.PHASES``); ``index`` holds its
    loop indices, outermost first:

    * ``q``: ``(quad_row, quad_col, out_tile, in_word)``, the quad's first pixel in map
      coordinates;
    * ``dwconv``: ``(row, chan_word, tap_quad)``; ``offset_proj``, ``sample``:
      ``(row, chan_word)``, ``row`` indexing :func:`offset_rows`;
    * ``kv``: ``(which, key_quad, out_tile, in_word)``, ``which`` 0 for k, 1 for v;
    * ``logits``: ``(quad, head, key_tile, word)``; ``pv``: ``(quad, head, chan_tile,
      key_chunk)``; ``proj_out``: ``(quad, out_tile, in_word)``, ``quad`` indexing the
      slice's query quads in row-major order.

    ``first`` / ``last``: the step starts / ends an accumulation (a pass).
    """

    phase: str
    index: tuple[int, ...]
    first: bool
    last: bool


def offset_rows(plan: LayerPlan, t: SliceTask) -> list[tuple[int, int, int]]:
    """The offset network's rows of slice ``t``: ``(key_row, key_col, group)`` over its
    keys in row-major order, groups innermost."""
    k = t.keys
    return [(i, j, g) for i in range(k.row0, k.row0 + k.rows)
            for j in range(k.col0, k.col0 + k.cols) for g in range(plan.dims.groups)]


def attention_order(quads: int) -> list[tuple[str, int]]:
    """Order of the per-quad phases: ``L0, L1, PV0, L2, P0, PV1, L3, P1, ...``.

    Logits run two quads ahead, so a quad's softmax has the array's work on the two
    quads before it to finish in, and ``logits`` of quad ``n + 2`` sit between ``pv`` and
    ``proj_out`` of quad ``n``, covering the latency from ``pv``'s last step to its result
    in the o buffer that ``proj_out`` reads.
    """
    order = [("logits", n) for n in range(min(2, quads))]
    for n in range(quads):
        order.append(("pv", n))
        if n + 2 < quads:
            order.append(("logits", n + 2))
        order.append(("proj_out", n))
    return order


def _passes(phase: str, prefix: tuple, outer: int, depth: int) -> Iterator[Step]:
    """``outer`` passes of ``depth`` steps each."""
    for o in range(outer):
        for d in range(depth):
            yield Step(phase, (*prefix, o, d), d == 0, d == depth - 1)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _query_phase(plan: LayerPlan, name: str, quad: int, nk: int) -> Iterator[Step]:
    d, L, N = plan.dims, plan.lanes, plan.cols
    c, dh = d.channels, d.head_dim
    for h in range(d.heads) if name != "proj_out" else range(1):
        if name == "logits":
            yield from _passes(name, (quad, h), _cdiv(nk, N), dh // L)
        elif name == "pv":
            yield from _passes(name, (quad, h), dh // N, _cdiv(nk, L))
        else:
            yield from _passes(name, (quad,), c // N, c // L)


def _offset_proj(row: int, words: int) -> Iterator[Step]:
    """One pass over the row's GELU output, ``words`` steps."""
    for cw in range(words):
        yield Step("offset_proj", (row, cw), cw == 0, cw == words - 1)


def _offset_network(plan: LayerPlan, t: SliceTask) -> Iterator[Step]:
    """dwconv(0), dwconv(1), offset_proj(0), dwconv(2), ..., offset_proj(last), then
    sample of every row."""
    d = plan.dims
    rows, words = len(offset_rows(plan, t)), d.group_channels // plan.lanes
    for r in range(rows):
        for cw in range(words):
            for tq in range(d.tap_quads):
                yield Step("dwconv", (r, cw, tq), tq == 0, tq == d.tap_quads - 1)
        if r >= 1:
            yield from _offset_proj(r - 1, words)
    yield from _offset_proj(rows - 1, words)
    for r in range(rows):
        for cw in range(words):
            yield Step("sample", (r, cw), True, True)


def slice_schedule(plan: LayerPlan, t: SliceTask) -> Iterator[Step]:
    """Every array step of slice ``t`` in issue order (none for a slice without keys)."""
    if t.num_keys == 0:
        return
    c, L, N = plan.dims.channels, plan.lanes, plan.cols
    q = t.qbox
    for qr in range(q.row0, q.row0 + q.rows, 2):
        for qc in range(q.col0, q.col0 + q.cols, 2):
            yield from _passes("q", (qr, qc), c // N, c // L)
    yield from _offset_network(plan, t)
    for which in range(2):
        for kq in range(_cdiv(t.num_keys, ARRAY_ROWS)):
            yield from _passes("kv", (which, kq), c // N, c // L)
    quads = _cdiv(t.region.rows, 2) * _cdiv(t.region.cols, 2)
    for name, n in attention_order(quads):
        yield from _query_phase(plan, name, n, t.num_keys)
