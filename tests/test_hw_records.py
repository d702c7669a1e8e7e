"""Amaranth record layouts against the host packing of the same declarations."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from hw_support import program

from defslice import config as C
from defslice.hw.records import descriptor_layout, record_layout
from defslice.model.layout import (
    DESC_HEADER,
    DESC_LEVEL,
    POINT_RECORD,
    WINDOW_FIELDS,
    Field,
    RecordFormat,
)


def _through_view(layout, raws, read):
    """Each raw record (an int) as an Amaranth view of ``layout`` in the simulator;
    ``read(view)`` of each."""
    sig = Signal(layout)
    out = []

    async def tb(ctx):
        for raw in raws:
            ctx.set(sig.as_value(), raw)
            out.append(read(ctx.get(sig)))

    sim = Simulator(Module())
    sim.add_testbench(tb)
    sim.run()
    return out


@pytest.mark.parametrize("fmt", [POINT_RECORD, DESC_HEADER, DESC_LEVEL],
                         ids=lambda f: f.name)
def test_layout_fields_equal_host_packing(fmt):
    rng = np.random.default_rng(len(fmt.name))
    values = {}
    for f in fmt.fields:
        lo, hi = (-(1 << (f.width - 1)), 1 << (f.width - 1)) if f.signed else (0, 1 << f.width)
        v = rng.integers(lo, hi, size=200, dtype=np.int64)
        v[:2] = [lo, hi - 1]                       # both ends of the range
        values[f.name] = v
    recs = fmt.pack(**values)
    raws = [int.from_bytes(r.tobytes(), "little") for r in recs]
    layout = record_layout(fmt)
    got = _through_view(layout, raws,
                        lambda v: {name: int(getattr(v, name)) for name, _ in layout})
    for k, row in enumerate(got):
        assert row == {name: int(v[k]) for name, v in values.items()}
    back = fmt.unpack(recs)
    for name, v in values.items():
        np.testing.assert_array_equal(back[name], v)


def test_descriptor_layout_reads_the_host_descriptors():
    cfg = C.preset("tiny").replace(workload={"levels": ((8, 8), (4, 4), (2, 2))},
                                   slicing={"slice_h": 3, "slice_w": 5})
    prog = program(cfg, 4)
    lay = prog.layout
    blob = lay.pack_descriptors(prog.descriptors)
    layout = descriptor_layout(cfg.workload.num_levels)
    raws = [int.from_bytes(blob[k * lay.desc_stride:(k + 1) * lay.desc_stride], "little")
            & ((1 << layout.size) - 1) for k in range(len(prog.descriptors))]
    L = cfg.workload.num_levels
    got = _through_view(layout, raws, lambda d: (
        int(d.header.query_start), int(d.header.query_count), int(d.header.slice_index),
        tuple(tuple(int(getattr(d.level[lvl], n)) for n in WINDOW_FIELDS) for lvl in range(L))))
    want = [(d.query_start, d.query_count, d.slice_index, d.windows) for d in prog.descriptors]
    assert got == want
    assert any(w[4] == -1 for d in prog.descriptors for w in d.windows)   # signed fields


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="overlaps"):
        RecordFormat("r", 64, (Field("a", 0, 16, False), Field("b", 8, 16, False)))
    with pytest.raises(ValueError, match="byte aligned"):
        RecordFormat("r", 64, (Field("a", 4, 8, False),))
    with pytest.raises(ValueError, match="byte aligned"):      # crosses a 64-bit word
        RecordFormat("r", 128, (Field("a", 56, 16, False),))
    with pytest.raises(ValueError, match="outside"):
        RecordFormat("r", 64, (Field("a", 56, 16, False),))
    with pytest.raises(ValueError, match="multiple of 64"):
        RecordFormat("r", 48, (Field("a", 0, 16, False),))
    gap = RecordFormat("r", 64, (Field("a", 0, 16, False), Field("b", 32, 32, False)))
    with pytest.raises(ValueError, match="contiguous"):
        record_layout(gap)
    with pytest.raises(KeyError, match="no field"):
        POINT_RECORD.pack(z=1)
