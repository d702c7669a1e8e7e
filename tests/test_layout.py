"""DRAM layout: burst rules, packing round trips, the sliced dataflow's transfer list."""

import numpy as np
import pytest

from defslice import config as C
from defslice.errors import ConfigError, InputError
from defslice.model.fixed import quantize_inputs
from defslice.model.layout import DramLayout, SlicedProgram, burst_summary, split_bursts
from defslice.model.workload import make_workload


def test_bursts_stop_at_4k_boundaries_and_256_beats():
    # 16-byte bus: 4 KiB = 256 beats; start 64 bytes before a boundary
    assert split_bursts(0x0FC0, 16 * 10, 16, 256) == [(0x0FC0, 4), (0x1000, 6)]
    # 8-byte bus: 512 beats to the boundary, so the 256-beat limit bites first
    assert split_bursts(0x2000, 8 * 600, 8, 256) == [(0x2000, 256), (0x2800, 256),
                                                     (0x3000, 88)]
    # a short max burst
    assert split_bursts(0, 64, 8, 3) == [(0, 3), (24, 3), (48, 2)]
    for addr, beats in split_bursts(0x0F10, 8 * 5000, 8, 256):
        assert 1 <= beats <= 256
        assert addr // 4096 == (addr + beats * 8 - 1) // 4096
    with pytest.raises(InputError, match="not aligned"):
        split_bursts(4, 16, 8, 256)


def test_value_packing_is_row_major_channels_innermost():
    cfg = C.preset("tiny")
    lay = DramLayout(cfg)
    value = np.arange(80 * 8).reshape(1, 80, 2, 4) - 300
    raw = lay.pack_value(value)
    assert len(raw) == lay.value_bytes == 80 * 16
    back = np.frombuffer(raw, dtype="<i2").reshape(80, 8)
    np.testing.assert_array_equal(back, value.reshape(80, 8))
    # pixel (row 1, col 2) of level 1 sits at its documented address
    addr = lay.pixel_addr(1, 1, 2) - lay.value_base
    assert addr == (64 + 1 * 4 + 2) * 16


def test_query_words_hold_sign_extended_fields():
    cfg = C.preset("tiny")
    lay = DramLayout(cfg)
    x = np.full((1, 2, 2, 2), -5)
    y = np.full((1, 2, 2, 2), 300)
    w = np.full((1, 2, 2, 2), -2)
    words = np.frombuffer(lay.pack_queries(x, y, w), dtype="<u8")
    assert words.size == lay.query_stride // 8
    word = int(words[0])
    assert word & 0xFFFFFF == (-5) & 0xFFFFFF
    assert (word >> 24) & 0xFFFFFF == 300
    assert word >> 48 == (-2) & 0xFFFF


def test_output_unpacking_sign_extends():
    cfg = C.preset("tiny")
    lay = DramLayout(cfg)
    vals = np.array([[-1, 2, -3, 4, 5, -6, 7, -32768]])
    data = vals.astype("<i2").tobytes().ljust(lay.out_stride, b"\0")
    np.testing.assert_array_equal(lay.unpack_outputs(data, 1), vals)


def test_transfers_count_windows_queries_and_outputs():
    cfg = C.preset("tiny")
    wl = make_workload(cfg, 0)
    prog = SlicedProgram(cfg, quantize_inputs(cfg.numerics, *wl.args), wl.reference_points)
    lay = prog.layout
    summary = burst_summary(prog.transfers())
    # every window row is one region; each fits one burst on tiny
    rows = sum(w[2] for d in prog.descriptors for w in d.windows)
    assert summary["value"]["bursts"] == rows
    pixels = sum(w[2] * w[3] for d in prog.descriptors for w in d.windows)
    assert summary["value"]["beats"] == pixels * lay.pixel_stride // lay.bus_bytes
    assert summary["query"]["beats"] == 80 * lay.query_stride // lay.bus_bytes
    assert summary["output"]["beats"] == 80 * lay.out_stride // lay.bus_bytes
    bus = lay.bus_bytes
    assert all(lay.tensor_at(b.addr) == lay.tensor_at(b.addr + b.beats * bus - 1) == b.tensor
               for b in prog.transfers())
    assert summary["descriptor"]["bursts"] == len(prog.descriptors) == 4
    assert summary["write"]["beats"] == summary["output"]["beats"]
    # the host image holds exactly what the RTL reads
    img = prog.memory_image()
    assert len(img[lay.desc_base]) == 4 * lay.desc_stride
    assert sorted(img) == [lay.value_base, lay.query_base, lay.desc_base]


def test_queries_are_sorted_by_slice_and_outputs_follow():
    cfg = C.preset("dat56")
    wl = make_workload(cfg, 1)
    prog = SlicedProgram(cfg, quantize_inputs(cfg.numerics, *wl.args), wl.reference_points)
    assert np.all(np.diff(prog.slice_of_query[prog.order]) >= 0)
    starts = [d.query_start for d in prog.descriptors]
    assert starts == sorted(starts) and sum(d.query_count for d in prog.descriptors) == 49
    assert prog.expected_outputs().shape == (49, 64)


def test_batches_are_refused_with_a_clear_message():
    cfg = C.preset("tiny").replace(workload={"batch": 2})
    with pytest.raises(ConfigError, match="workload.batch"):
        DramLayout(cfg)
