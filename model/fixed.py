"""Bit-exact fixed-point deformable sampling: the contract the RTL is checked against.

The datapath, step by step (formats from :class:`defslice.config.NumericsConfig`,
``f = coord_frac``; every step is documented in ``docs/numerics.md``):

1. *Host quantization* (:func:`quantize_inputs`): value ``v`` -> Q(value_frac),
   ``value_bits``; pixel coordinate ``x * W - 0.5`` -> Q(f), ``coord_bits``; attention
   weight -> Q(weight_bits - 2), ``weight_bits``. Round half up, saturate.
2. *Clamp* (policy ``clamp``): ``c = min(max(c, lo << f), hi << f)`` per axis with the
   slice window's bounds (:mod:`defslice.model.slicing`).
3. *Split*: ``x0 = c >> f`` (arithmetic, i.e. floor), ``fx = c & (2**f - 1)``.
4. *Bilinear weights*, exact, ``2f`` fraction bits, unsigned ``2f + 1`` bits:
   ``w00 = (2**f - fx) * (2**f - fy)``, ``w01 = fx * (2**f - fy)``,
   ``w10 = (2**f - fx) * fy``, ``w11 = fx * fy``. A corner outside the window (or map)
   has weight 0.
5. *Sample*: ``s = round_half_up(sum_c v_c * w_c, 2f)`` -- Q(value_frac), fits value_bits
   (a convex combination never leaves the value range).
6. *Weight*: ``t = s * a`` -- Q(value_frac + weight_frac), exact.
7. *Accumulate* over levels then points (``l`` outer, ``p`` inner), saturating to
   ``acc_bits`` after every addition.
8. *Output*: ``round_half_up(acc, out_shift)`` saturated to ``out_bits``, Q(out_frac).

Error bound against float on the same quantized inputs (``docs/numerics.md``):
``|out - float| <= sum_{l,p} |a| * 2**-(value_frac + 1) + 2**-(out_frac + 1)`` as long
as no saturation occurs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defslice.config import NumericsConfig
from defslice.errors import InputError
from defslice.model.fixedpoint import (
    bilinear_weights,
    quantize,
    round_half_up_shift,
    saturate,
    signed_range,
    split_coord,
)
from defslice.model.msda import check_inputs
from defslice.model.sampling import Corners, LevelTable, chunks, corner_valid, flat_pixel_index

__all__ = ["FixedInputs", "error_bound", "fixed_forward", "quantize_inputs"]


@dataclass(frozen=True)
class FixedInputs:
    """Quantized inputs of the datapath (int64 arrays holding the stored integers).

    ``value``: (N, S, M, D); ``x``, ``y``: (N, Lq, M, L, P) pixel coordinates in Q(f);
    ``weight``: (N, Lq, M, L, P); ``shapes``: (L, 2).
    """

    value: np.ndarray
    shapes: np.ndarray
    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray


def quantize_inputs(num: NumericsConfig, value, spatial_shapes, sampling_locations,
                    attention_weights) -> FixedInputs:
    """Step 1: float MSDA inputs (MMCV shapes) to the stored fixed-point integers."""
    value, shapes, loc, attn = check_inputs(value, spatial_shapes, sampling_locations,
                                            attention_weights)
    levels = LevelTable.from_shapes(shapes)
    # Pixel coordinates in float64 before rounding, so the result does not depend on the
    # caller's dtype: x * W - 0.5 is exact in float64 for float32 inputs.
    px = loc[..., 0].astype(np.float64) * levels.W - 0.5
    py = loc[..., 1].astype(np.float64) * levels.H - 0.5
    return FixedInputs(
        value=quantize(value, num.value_frac, num.value_bits, "value"),
        shapes=shapes,
        x=quantize(px, num.coord_frac, num.coord_bits, "sampling_locations"),
        y=quantize(py, num.coord_frac, num.coord_bits, "sampling_locations"),
        weight=quantize(attn, num.weight_frac, num.weight_bits, "attention_weights"),
    )


def dequantize_inputs(num: NumericsConfig, inp: FixedInputs):
    """The real numbers the stored integers stand for, as float64 MSDA arguments
    ``(value, spatial_shapes, sampling_locations, attention_weights)``.

    Float on these isolates the datapath's own rounding from input quantization.
    """
    size = inp.shapes.astype(np.float64)
    scale = 2.0 ** -num.coord_frac
    loc = np.stack([(inp.x * scale + 0.5) / size[:, 1, None],
                    (inp.y * scale + 0.5) / size[:, 0, None]], axis=-1)
    return (inp.value * 2.0 ** -num.value_frac, inp.shapes, loc,
            inp.weight * 2.0 ** -num.weight_frac)


def _check_range(name: str, a: np.ndarray, bits: int) -> None:
    lo, hi = signed_range(bits)
    if a.size and (a.min() < lo or a.max() > hi):
        raise InputError(f"{name} holds values outside the {bits}-bit signed range "
                         f"[{lo}, {hi}]")


def fixed_forward(num: NumericsConfig, inp: FixedInputs, windows: np.ndarray | None = None,
                  clamp: str = "clamp") -> np.ndarray:
    """Steps 2-8 on quantized inputs; returns int64 outputs (N, Lq, M*D) in Q(out_frac).

    Arguments
    ---------
    windows : int array (N, Lq, L, 8) or None
        Per query and level: ``row0, col0, rows, cols, y_lo, y_hi, x_lo, x_hi`` as in
        :meth:`defslice.model.slicing.SliceGrid.windows_array`. ``None``: the whole map
        (unsliced), where clamping to ``[-1, size]`` is the identity on results.
    clamp : ``"clamp"`` or ``"drop"``
        ``drop`` skips step 2; corners outside the window still contribute zero.
    """
    _check_range("value", inp.value, num.value_bits)
    _check_range("coordinates", inp.x, num.coord_bits)
    _check_range("coordinates", inp.y, num.coord_bits)
    _check_range("attention weights", inp.weight, num.weight_bits)
    levels = LevelTable.from_shapes(inp.shapes)
    n, s, m, d = inp.value.shape
    lq, n_lvl, p = inp.x.shape[1], inp.x.shape[3], inp.x.shape[4]
    if windows is None:
        h, w = inp.shapes[:, 0], inp.shapes[:, 1]
        zeros = np.zeros_like(h)
        win = np.stack([zeros, zeros, h, w, -1 + zeros, h, -1 + zeros, w], axis=-1)
        windows = np.broadcast_to(win, (n, lq, n_lvl, 8))
    windows = np.asarray(windows, dtype=np.int64)
    if windows.shape != (n, lq, n_lvl, 8):
        raise InputError(f"windows must be (N, Lq, L, 8) = {(n, lq, n_lvl, 8)}, got "
                         f"{windows.shape}")
    f = num.coord_frac
    v2 = inp.value.reshape(n * s * m, d)
    out = np.empty((n, lq, m * d), dtype=np.int64)
    heads = np.arange(m, dtype=np.int64)[None, None, :, None, None, None]
    batch = np.arange(n, dtype=np.int64)[:, None, None, None, None, None]
    for qs in chunks(lq, n * m * n_lvl * p * 4 * d):
        # (N, Qc, 1, L, 1) views of the window fields, broadcast over heads and points.
        wq = windows[:, qs][:, :, None, :, None, :]
        x, y = inp.x[:, qs], inp.y[:, qs]
        if clamp == "clamp":
            x = np.clip(x, wq[..., 6] << f, wq[..., 7] << f)
            y = np.clip(y, wq[..., 4] << f, wq[..., 5] << f)
        x0, fx = split_coord(x, f)
        y0, fy = split_coord(y, f)
        wb = bilinear_weights(fy, fx, f)
        corners = Corners.from_floor(y0, x0)
        valid = corner_valid(corners, wq[..., 0], wq[..., 0] + wq[..., 2],
                             wq[..., 1], wq[..., 1] + wq[..., 3])
        wb = np.where(valid, wb, 0)
        idx = flat_pixel_index(corners, levels, valid)
        rows = (batch * s + idx) * m + heads
        exact = np.einsum("...kd,...k->...d", v2[rows], wb)       # Q(value_frac + 2f)
        sample = round_half_up_shift(exact, 2 * f)                 # Q(value_frac)
        terms = sample * inp.weight[:, qs][..., None]              # (N,Qc,M,L,P,D)
        terms = terms.reshape(terms.shape[0], terms.shape[1], m, n_lvl * p, d)
        acc = _saturating_sum(terms, num.acc_bits)
        res = saturate(round_half_up_shift(acc, num.out_shift), num.out_bits)
        out[:, qs] = res.reshape(res.shape[0], res.shape[1], m * d)
    return out


def _saturating_sum(terms: np.ndarray, bits: int) -> np.ndarray:
    """Sum over axis -2 in order, saturating to ``bits`` after every addition.

    Fast path: when no running sum leaves the range, saturation never acted and the plain
    sum is the answer; otherwise the additions are replayed one by one.
    """
    lo, hi = signed_range(bits)
    running = np.cumsum(terms, axis=-2)
    if running.min(initial=0) >= lo and running.max(initial=0) <= hi:
        return running[..., -1, :]
    acc = np.zeros(terms.shape[:-2] + terms.shape[-1:], dtype=np.int64)
    for k in range(terms.shape[-2]):
        acc = np.clip(acc + terms[..., k, :], lo, hi)
    return acc


def error_bound(num: NumericsConfig, weight_q: np.ndarray) -> np.ndarray:
    """Worst-case |fixed - float| per output, float computed on the same quantized inputs.

    ``weight_q``: quantized attention weights (N, Lq, M, L, P). Returns (N, Lq, M, 1) in
    real units: each point's sample is rounded once (half an LSB of value_frac, scaled by
    its weight), the output once (half an LSB of out_frac). Valid while nothing saturates.
    """
    a = np.abs(weight_q).astype(np.float64) / (1 << num.weight_frac)
    per_point = a.sum(axis=(-2, -1)) * 2.0 ** -(num.value_frac + 1)
    return (per_point + 2.0 ** -(num.out_frac + 1))[..., None]
