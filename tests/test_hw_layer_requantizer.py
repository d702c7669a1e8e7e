"""The requantizer against ``saturate(round_half_up_shift(acc + bias, shift), bits)``."""

import gc

import numpy as np
import pytest
from layer_support import pipe

from defslice.hw.layer.requantizer import Requantizer
from defslice.model.fixedpoint import round_half_up_shift, saturate

FORMATS = [(0, 16), (7, 16), (12, 12), (20, 16), (1, 2)]


def reference(items, formats):
    return [(saturate(round_half_up_shift(np.asarray(acc) + np.asarray(bias),
                                          formats[f][0]), formats[f][1]).tolist(), f, tag)
            for acc, bias, f, tag in items]


def rtl(dut, items):
    out = pipe(dut, [{"acc": acc, "bias": bias, "fmt": f, "tag": tag}
                     for acc, bias, f, tag in items])
    return [([int(v) for v in p.value], int(p.fmt), int(p.tag)) for p in out]


def _items(rng, n, width, acc_bits):
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    items = []
    for k in range(n):
        scale = 1 << int(rng.integers(1, acc_bits))
        acc = np.clip(rng.integers(-scale, scale, size=width), lo, hi)
        if k % 7 == 0:      # ties of every shift, and the range limits
            acc = (rng.integers(-50, 50, size=width) << 21) + (1 << 20)
            acc[0], acc[-1] = lo, hi
        bias = rng.integers(-(1 << 24), 1 << 24, size=width)
        items.append((acc.tolist(), bias.tolist(), int(rng.integers(0, len(FORMATS))), k % 4))
    return items


@pytest.mark.parametrize("width", [1, 4, 16])
def test_requantizer_matches_model(width):
    dut = Requantizer(width, acc_bits=40, formats=FORMATS, tag_bits=2)
    items = _items(np.random.default_rng(width), 60, width, 40)
    assert rtl(dut, items) == reference(items, FORMATS)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("formats", [[], [(-1, 16)], [(3, 1)], [(3, 41)]])
def test_refused_formats(formats):
    with pytest.raises(ValueError):
        Requantizer(4, acc_bits=40, formats=formats)
    gc.collect()     # the half-built component's "never used" warning, inside the filter


def _edge_items(rng, n, width, acc_bits, formats):
    """Sums at each format's saturation limits and rounding ties, +-2 around them."""
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    items = []
    for k in range(n):
        f = int(rng.integers(0, len(formats)))
        shift, bits = formats[f]
        limit, tie = 1 << (shift + bits - 1), (1 << shift) >> 1
        centres = [limit, -limit, limit - tie, -limit - tie, tie, -tie,
                   (2 * int(rng.integers(-99, 99)) + 1) * tie, 0, lo, hi]
        acc = [int(np.clip(centres[int(rng.integers(0, len(centres)))]
                           + int(rng.integers(-2, 3)), lo, hi)) for _ in range(width)]
        items.append((acc, [0] * width, f, k % 4))
    return items


@pytest.mark.parametrize("width", [1, 8])
def test_requantizer_at_the_engine_formats_limits(width):
    """The formats of the ``dat56`` layer engine (shifts 10 to 17, widths 16, 24 and 35),
    each at its saturation limits and rounding ties."""
    from defslice.config import preset
    from defslice.hw.layer.core import LayerCore
    from defslice.hw.layer.top import layer_params

    cfg = preset("dat56")
    plan, hwp = layer_params(cfg)
    core = LayerCore(plan, hwp, cfg.numerics)
    core._MustUse__silence = True
    formats, acc_bits = list(core.formats), plan.ln.acc_bits
    dut = Requantizer(width, acc_bits=acc_bits, formats=formats, tag_bits=2)
    items = _edge_items(np.random.default_rng(width), 200, width, acc_bits, formats)
    assert len({s for s, _ in formats}) > 3 and len({b for _, b in formats}) > 2
    assert rtl(dut, items) == reference(items, formats)
