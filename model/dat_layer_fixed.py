"""The DAT++ deformable-attention layer in bit-exact fixed point: the layer engine's contract.

Every step is written once here, on the primitives of :mod:`defslice.model.fixedpoint`,
and documented in ``docs/numerics.md`` ("DAT++ layer in fixed point"), whose step numbers
the code follows. :func:`quantize_layer_params` is the host side (folds, weights, biases,
reference points, tables); :func:`dat_layer_fixed_forward` the datapath, returning the
integer output and every intermediate under the documented trace keys, so each hardware
block is checked against its own step. Sliced semantics are those of
:mod:`defslice.model.dat_layer`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from defslice.config import (
    MAX_TABLE_ENTRIES,
    Config,
    LayerNumericsConfig,
    NumericsConfig,
    gelu_table_len,
    tanh_table_len,
)
from defslice.errors import InputError
from defslice.model.dat import offset_scale_px
from defslice.model.dat_layer import (
    LAYER_NORM_EPS,
    DatLayerSlicing,
    DatLayerSpec,
    dat_layer_trace,
)
from defslice.model.fixedpoint import (
    LayerTables,
    bilinear_weights,
    bit_length,
    dequantize,
    exact_matmul,
    exp2_fixed,
    gelu_fixed,
    quantize,
    reciprocal,
    requantize,
    rhu,
    round_half_up_shift,
    rsqrt_normalize,
    saturate,
    signed_range,
    split_coord,
    tanh_fixed,
)
from defslice.model.slicing import SliceGrid

__all__ = [
    "FixedLayerParams",
    "LayerFormats",
    "LayerGeometry",
    "calibrate_formats",
    "dat_layer_fixed_forward",
    "dequantize_layer_params",
    "dequantize_output",
    "layer_trace_widths",
    "quantize_layer_input",
    "quantize_layer_params",
    "rail_counts",
]

#: Stands for an open (map-edge) bound of the bias position, Q(coord_frac) units.
_OPEN = 1 << 40


@dataclass(frozen=True)
class LayerFormats:
    """All formats of the layer: ``numerics`` (map, coordinates, output) and ``layer``."""

    numerics: NumericsConfig
    layer: LayerNumericsConfig

    @classmethod
    def from_config(cls, cfg: Config) -> LayerFormats:
        return cls(cfg.numerics, cfg.layer_numerics)

    def into(self, cfg: Config) -> Config:
        """``cfg`` with these formats (validated again against its workload)."""
        return dataclasses.replace(cfg, numerics=self.numerics, layer_numerics=self.layer)


@dataclass(frozen=True)
class FixedLayerParams:
    """Quantized parameters of one layer (host steps H1-H7), int64 arrays.

    Members
    -------
    map_size, key_grid : (int, int)
        (H, W) of the map and (Hk, Wk) of the keys the parameters were prepared for.
    proj_q, proj_k, proj_v, proj_out : (weight (C, C), bias (C,))
        Weights Q(proj_*_frac); biases in their accumulator's format. ``proj_k`` holds
        the logit scale ``head_dim**-0.5``.
    conv_w, conv_b : (Cg, kk * kk), (Cg,)
        Depthwise offset conv, taps row-major; bias Q(q_frac + offset_conv_frac).
    norm_w, norm_b : (Cg,)
        LayerNorm gain Q(norm_frac) and offset Q(z_frac + norm_frac).
    offset_w : (2, Cg)
        ``conv_offset.3`` rows (dy, dx), Q(offset_proj_frac); factor < 0: in pixels.
    rpe : (heads, 2H-1, 2W-1) or None
        Position-bias table, Q(rpe_frac).
    ref_y, ref_x : (Hk,), (Wk,)
        Reference points, pixels Q(coord_frac).
    offset_scale : (2,) or None
        (SC_y, SC_x), Q(offset_scale_frac), factor >= 0 only.
    eps : int
        LayerNorm epsilon, Q(2 h_frac).
    tables : LayerTables
    """

    map_size: tuple[int, int]
    key_grid: tuple[int, int]
    proj_q: tuple[np.ndarray, np.ndarray]
    proj_k: tuple[np.ndarray, np.ndarray]
    proj_v: tuple[np.ndarray, np.ndarray]
    proj_out: tuple[np.ndarray, np.ndarray]
    conv_w: np.ndarray
    conv_b: np.ndarray
    norm_w: np.ndarray
    norm_b: np.ndarray
    offset_w: np.ndarray
    rpe: np.ndarray | None
    ref_y: np.ndarray
    ref_x: np.ndarray
    offset_scale: np.ndarray | None
    eps: int
    tables: LayerTables


def _ref_points(size: int, keys: int, frac: int) -> np.ndarray:
    """H5: ``rhu((i + 1/2)(S - 1) / (Sk - 1) 2**frac)`` exactly, in integers."""
    i = np.arange(keys, dtype=np.int64)
    den = 2 * (keys - 1)
    return ((2 * i + 1) * (size - 1) * (1 << frac) + (keys - 1)) // den


def _quantize_param(params: dict, name: str, frac: int, bits: int,
                    scale: float | np.ndarray = 1.0, bias: bool = False) -> np.ndarray:
    """H2 (weights) and H3 (``bias``: in the accumulator's format): ``rhu(w 2**frac)``,
    refusing values beyond the ``bits``-wide range."""
    w = np.asarray(params[name], dtype=np.float64) * scale
    q = rhu(w * 2.0 ** frac)
    lo, hi = signed_range(bits)
    if q.size and (q.min() < lo or q.max() > hi):
        if bias:
            raise InputError(f"{name}: the bias does not fit the {bits}-bit accumulator "
                             f"in Q({frac})")
        peak = float(np.abs(w).max())
        raise InputError(f"{name}: |w| up to {peak:.4g} does not fit {bits} bits with "
                         f"{frac} fraction bits (at most {_frac_for(peak, bits, top=frac)} "
                         "hold it)")
    return q


def quantize_layer_params(params: dict, spec: DatLayerSpec, formats: LayerFormats,
                          map_size: tuple[int, int]) -> FixedLayerParams:
    """Host steps H1-H7 for a ``map_size`` (H, W) map.

    ``params``: float arrays under DAT's state-dict names (see
    :func:`defslice.model.dat_layer.dat_layer_forward`). Folds, in float64: the logit
    scale ``head_dim**-0.5`` into ``proj_k``; with ``offset_range_factor < 0`` the pixel
    scale ``(S - 1) / 2`` into ``conv_offset.3`` (row dy by ``H``, dx by ``W``).
    """
    num, ln = formats.numerics, formats.layer
    H, W = map_size
    C = np.asarray(params["proj_q.weight"]).shape[0]
    hd = C // spec.heads
    hk, wk = spec.key_grid(H, W)
    wb, ab, vf, f = ln.weight_bits, ln.acc_bits, num.value_frac, num.coord_frac

    def proj(name: str, in_frac: int, frac: int,
             scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        w = _quantize_param(params, f"{name}.weight", frac, wb, scale).reshape(C, C)
        return w, _quantize_param(params, f"{name}.bias", in_frac + frac, ab, scale,
                                  bias=True)

    factor = float(spec.offset_range_factor)
    pixels = offset_scale_px(H, W, hk, wk, factor)                   # (y, x)
    # conv_offset.3.weight is (2, Cg, 1, 1): row 0 gives dy, row 1 dx.
    off_scale = pixels.reshape(2, 1, 1, 1) if factor < 0 else 1.0
    scale = None
    if factor >= 0:
        scale = _quantize_param({"offset_scale": pixels}, "offset_scale",
                                ln.offset_scale_frac, wb)
    cg = np.asarray(params["conv_offset.0.weight"]).shape[0]
    qp = FixedLayerParams(
        map_size=(H, W), key_grid=(hk, wk),
        proj_q=proj("proj_q", vf, ln.proj_q_frac),
        proj_k=proj("proj_k", vf, ln.proj_k_frac, hd ** -0.5),
        proj_v=proj("proj_v", vf, ln.proj_v_frac),
        proj_out=proj("proj_out", ln.o_frac, ln.proj_out_frac),
        conv_w=_quantize_param(params, "conv_offset.0.weight", ln.offset_conv_frac,
                               wb).reshape(cg, -1),
        conv_b=_quantize_param(params, "conv_offset.0.bias", ln.q_frac + ln.offset_conv_frac,
                               ab, bias=True),
        norm_w=_quantize_param(params, "conv_offset.1.norm.weight", ln.norm_frac, wb),
        norm_b=_quantize_param(params, "conv_offset.1.norm.bias", ln.z_frac + ln.norm_frac,
                               ab, bias=True),
        offset_w=_quantize_param(params, "conv_offset.3.weight", ln.offset_proj_frac, wb,
                                 off_scale).reshape(2, cg),
        rpe=_quantize_param(params, "rpe_table", ln.rpe_frac, wb) if spec.use_pe else None,
        ref_y=_ref_points(H, hk, f), ref_x=_ref_points(W, wk, f),
        offset_scale=scale,
        eps=int(rhu(LAYER_NORM_EPS * 2.0 ** (2 * ln.h_frac))),
        tables=LayerTables.build(ln),
    )
    _check_accumulators(qp, formats)
    return qp


def _check_accumulators(qp: FixedLayerParams, formats: LayerFormats) -> None:
    """Refuse parameters whose worst-case sums would leave ``acc_bits`` (exactness)."""
    ln = formats.layer
    prod = 1 << (ln.act_bits + ln.weight_bits - 2)
    C = qp.proj_q[0].shape[0]
    limit = 1 << (ln.acc_bits - 1)
    for name, terms, bias in (("proj_q", C, qp.proj_q[1]), ("proj_k", C, qp.proj_k[1]),
                              ("proj_v", C, qp.proj_v[1]), ("proj_out", C, qp.proj_out[1]),
                              ("conv_offset.0", qp.conv_w.shape[1], qp.conv_b),
                              ("conv_offset.1", 1, qp.norm_b)):
        worst = terms * prod + int(np.abs(bias).max(initial=0))
        if worst >= limit:
            raise InputError(f"{name}: worst-case sum {worst} exceeds the "
                             f"{ln.acc_bits}-bit accumulator")


def dequantize_layer_params(qp: FixedLayerParams, spec: DatLayerSpec,
                            formats: LayerFormats) -> dict[str, np.ndarray]:
    """The real parameters the integers stand for, folds undone, under DAT's names.

    The float layer on these and on the dequantized input isolates the datapath's own
    rounding from the quantization of weights and input.
    """
    num, ln = formats.numerics, formats.layer
    H, W = qp.map_size
    C = qp.proj_q[0].shape[0]
    cg = qp.conv_w.shape[0]
    kk = spec.offset_kernel
    out: dict[str, np.ndarray] = {}
    for name, (w, b), in_frac, frac, scale in (
            ("proj_q", qp.proj_q, num.value_frac, ln.proj_q_frac, 1.0),
            ("proj_k", qp.proj_k, num.value_frac, ln.proj_k_frac, (C // spec.heads) ** 0.5),
            ("proj_v", qp.proj_v, num.value_frac, ln.proj_v_frac, 1.0),
            ("proj_out", qp.proj_out, ln.o_frac, ln.proj_out_frac, 1.0)):
        out[f"{name}.weight"] = (dequantize(w, frac) * scale).reshape(C, C, 1, 1)
        out[f"{name}.bias"] = dequantize(b, in_frac + frac) * scale
    out["conv_offset.0.weight"] = dequantize(qp.conv_w, ln.offset_conv_frac).reshape(
        cg, 1, kk, kk)
    out["conv_offset.0.bias"] = dequantize(qp.conv_b, ln.q_frac + ln.offset_conv_frac)
    out["conv_offset.1.norm.weight"] = dequantize(qp.norm_w, ln.norm_frac)
    out["conv_offset.1.norm.bias"] = dequantize(qp.norm_b, ln.z_frac + ln.norm_frac)
    off = dequantize(qp.offset_w, ln.offset_proj_frac)
    if spec.offset_range_factor < 0:
        hk, wk = spec.key_grid(H, W)
        off = off / offset_scale_px(H, W, hk, wk, spec.offset_range_factor)[:, None]
    out["conv_offset.3.weight"] = off.reshape(2, cg, 1, 1)
    if qp.rpe is not None:
        out["rpe_table"] = dequantize(qp.rpe, ln.rpe_frac)
    return out


def quantize_layer_input(x: np.ndarray, formats: LayerFormats) -> np.ndarray:
    """H8: the map ``x`` (N, C, H, W) to Q(value_frac), ``value_bits`` wide."""
    num = formats.numerics
    return quantize(x, num.value_frac, num.value_bits, "x")


def dequantize_output(y: np.ndarray, formats: LayerFormats) -> np.ndarray:
    """The real numbers an output ``y`` in Q(out_frac) stands for (float64)."""
    return dequantize(y, formats.numerics.out_frac)


@dataclass(frozen=True)
class LayerGeometry:
    """Slicing of one map for the layer (host-side constants of the datapath).

    Members
    -------
    key_slice : (Nk,)
        Slice of each key (of its reference point, ``SliceGrid.slice_of``).
    window : (Nk, 4)
        Readable rows [r0, r1) and columns [c0, c1) of each key's window.
    sample_bounds, bias_bounds : (Nk, 4)
        (y_lo, y_hi, x_lo, x_hi) in Q(coord_frac): the window clamp of the sampled
        position, and its interior bounds only (map edges open) for the bias.
    taps, tap_valid : (Nk, kk*kk)
        Flat pixel index of every offset-conv tap and whether it reads q (inside the map
        and the key's window).
    attend : (H*W, Nk) bool
        Query pixel (row-major) may attend to key (same slice).
    """

    key_slice: np.ndarray
    window: np.ndarray
    sample_bounds: np.ndarray
    bias_bounds: np.ndarray
    taps: np.ndarray
    tap_valid: np.ndarray
    attend: np.ndarray

    @classmethod
    def build(cls, spec: DatLayerSpec, map_size: tuple[int, int], frac: int,
              grid: SliceGrid | None = None) -> LayerGeometry:
        """From :class:`defslice.model.dat_layer.DatLayerSlicing` (the float layer's
        slicing), bounds in Q(``frac``) integers."""
        H, W = map_size
        lay = DatLayerSlicing.build(spec, H, W, grid)
        open_ = np.array([-_OPEN, _OPEN, -_OPEN, _OPEN])
        if lay.clamp:
            sample = lay.bounds.astype(np.int64) << frac
            bias = np.where(np.isinf(lay.bias_bounds), open_, sample)
        else:  # policy drop: no clamp, corners outside the window read 0
            sample = bias = np.broadcast_to(open_, lay.bounds.shape)
        hk, wk = spec.key_grid(H, W)
        rows = np.repeat(spec.tap_rows(H, hk), wk, axis=0)              # (Nk, k)
        cols = np.tile(spec.tap_rows(W, wk), (hk, 1))
        taps = np.where(lay.tap_valid, rows[:, :, None] * W + cols[:, None, :], 0)
        valid = lay.tap_valid.reshape(hk * wk, -1)
        taps = taps.reshape(hk * wk, -1)
        return cls(key_slice=lay.key_slice, window=lay.window, sample_bounds=sample,
                   bias_bounds=bias, taps=taps, tap_valid=valid,
                   attend=lay.query_slice[:, None] == lay.key_slice[None, :])


# -- the datapath ----------------------------------------------------------------------------

def _offset_network(q: np.ndarray, qp: FixedLayerParams, geo: LayerGeometry,
                    spec: DatLayerSpec, ln: LayerNumericsConfig) -> dict[str, np.ndarray]:
    """Steps 2-4: depthwise conv, LayerNorm, GELU; arrays (N, G, Cg, Nk) or (N, G, Nk)."""
    n, c = q.shape[:2]
    g = spec.groups
    cg = c // g
    qf = q.reshape(n, g, cg, -1)
    patches = qf[..., geo.taps] * geo.tap_valid                    # (N, G, Cg, Nk, T)
    acc = np.einsum("ngckt,ct->ngck", patches, qp.conv_w) + qp.conv_b[:, None]
    h = requantize(acc, ln.q_frac + ln.offset_conv_frac - ln.h_frac, ln.act_bits)
    s1 = h.sum(axis=2)
    mean = (2 * s1 + cg) // (2 * cg)                                   # step 3a
    d = h - mean[:, :, None]
    var = (d * d).sum(axis=2) // cg                                    # step 3b
    index, exp = rsqrt_normalize(np.maximum(var + qp.eps, 1), ln.rsqrt_index_bits)
    rsq = qp.tables.rsqrt[index - (1 << (ln.rsqrt_index_bits - 2))]
    shift = ln.rsqrt_frac + exp // 2 - ln.z_frac                       # step 3d, >= 1
    prod = d * rsq[:, :, None]
    z = saturate((prod + (np.int64(1) << (shift - 1))[:, :, None]) >> shift[:, :, None],
                 ln.act_bits)
    nrm = requantize(z * qp.norm_w[:, None] + qp.norm_b[:, None],
                     ln.z_frac + ln.norm_frac - ln.n_frac, ln.act_bits)
    return {"h": h, "mean": mean, "var": var, "rsq_index": index, "rsq_exp": exp, "z": z,
            "n": nrm, "g": gelu_fixed(nrm, qp.tables.gelu)}


def _positions(gel: np.ndarray, qp: FixedLayerParams, spec: DatLayerSpec,
               formats: LayerFormats) -> dict[str, np.ndarray]:
    """Step 5: offsets and positions, (N, G, Nk, 2) as (y, x) pixels in Q(coord_frac)."""
    num, ln = formats.numerics, formats.layer
    f, cb = num.coord_frac, num.coord_bits
    acc = np.einsum("ac,ngck->ngka", qp.offset_w, gel)
    ry, rx = np.meshgrid(qp.ref_y, qp.ref_x, indexing="ij")
    ref = np.stack([ry.reshape(-1), rx.reshape(-1)], axis=-1)          # (Nk, 2)
    out: dict[str, np.ndarray] = {}
    if spec.offset_range_factor < 0:
        off = requantize(acc, ln.n_frac + ln.offset_proj_frac - f, cb)
        top = (np.array(qp.map_size, dtype=np.int64) - 1) << f
        pos = np.clip(ref + off, 0, top)
    else:
        t = requantize(acc, ln.n_frac + ln.offset_proj_frac - ln.t_frac, ln.act_bits)
        th = tanh_fixed(t, qp.tables.tanh, ln.tanh_frac)
        off = requantize(th * qp.offset_scale, ln.tanh_frac + ln.offset_scale_frac - f, cb)
        pos = saturate(ref + off, cb)
        out.update(t=t, tanh=th)
    out.update(off=off, pos=pos)
    return out


def _clamp(pos: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Step 6: per key (y_lo, y_hi, x_lo, x_hi) bounds on (..., Nk, 2) positions."""
    lo = bounds[:, [0, 2]]
    hi = bounds[:, [1, 3]]
    return np.minimum(np.maximum(pos, lo), hi)


def _corners(pos: np.ndarray, frac: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corner rows, columns (..., 4) and bilinear weights (..., 4) of Q(frac) (y, x)."""
    y0, fy = split_coord(pos[..., 0], frac)
    x0, fx = split_coord(pos[..., 1], frac)
    cy = y0[..., None] + np.array([0, 0, 1, 1])
    cx = x0[..., None] + np.array([0, 1, 0, 1])
    return cy, cx, bilinear_weights(fy, fx, frac)


def _sample(x_q: np.ndarray, pos: np.ndarray, geo: LayerGeometry, groups: int,
            frac: int) -> np.ndarray:
    """Step 7: sampled keys (N, C, Nk) in Q(value_frac), corners outside the window 0."""
    n, c, H, W = x_q.shape
    cy, cx, w = _corners(pos, frac)                                     # (N, G, Nk, 4)
    win = geo.window[:, None, :]
    valid = (cy >= win[..., 0]) & (cy < win[..., 1]) & (cx >= win[..., 2]) & (cx < win[..., 3])
    idx = np.where(valid, cy * W + cx, 0)
    w = np.where(valid, w, 0)
    xg = x_q.reshape(n, groups, c // groups, H * W)
    bi = np.arange(n)[:, None, None, None]
    gi = np.arange(groups)[None, :, None, None]
    gathered = xg[bi, gi, :, idx]                                      # (N, G, Nk, 4, Cg)
    exact = (gathered * w[..., None]).sum(axis=3)                       # (N, G, Nk, Cg)
    return round_half_up_shift(exact, 2 * frac).transpose(0, 1, 3, 2).reshape(n, c, -1)


def _project(w: np.ndarray, b: np.ndarray, x: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """A 1x1 projection of (N, Cin, P) integers: ``sat(rnd(B + W x, shift), bits)``."""
    n, c, p = x.shape
    acc = exact_matmul(w, x.transpose(1, 0, 2).reshape(c, n * p)) + b[:, None]
    return requantize(acc, shift, bits).reshape(-1, n, p).transpose(1, 0, 2)


def _position_bias(pos_b: np.ndarray, qp: FixedLayerParams, heads: int, frac: int,
                   shift: int) -> np.ndarray:
    """Step 9b: position bias (N, heads, H*W, Nk) from the keys' bias positions.

    For a key with corners ``(y0 + a, x0 + b)`` the table entries of all queries form
    one ``(H + 1) x (W + 1)`` crop of the zero-padded table starting at row
    ``H - 2 - y0``, column ``W - 2 - x0``; corner ``(a, b)`` reads the crop shifted by
    ``(1 - a, 1 - b)``. The sum of the four products is exact, rounded once.
    """
    H, W = qp.map_size
    n, g, nk = pos_b.shape[:3]
    hg = heads // g
    y0, fy = split_coord(pos_b[..., 0], frac)
    x0, fx = split_coord(pos_b[..., 1], frac)
    w = bilinear_weights(fy, fx, frac)                                   # (N, G, Nk, 4)
    # Pad by H + 1 rows and W + 1 columns of zeros: a crop start clipped into the padded
    # table then reads zeros exactly where the unclipped one would leave the table.
    tp = np.pad(qp.rpe, ((0, 0), (H + 1, H + 1), (W + 1, W + 1)))
    tp = tp.reshape(g, hg, *tp.shape[1:])
    r0 = np.clip(2 * H - 1 - y0, 0, 3 * H)
    c0 = np.clip(2 * W - 1 - x0, 0, 3 * W)
    view = np.lib.stride_tricks.sliding_window_view(tp, (H + 1, W + 1), axis=(2, 3))
    gi = np.arange(g)[None, :, None]
    crop = view[gi, :, r0, c0]                                          # (N,G,Nk,hg,H+1,W+1)
    wk = w[:, :, :, None, None, None, :]
    acc = (crop[..., 1:, 1:] * wk[..., 0] + crop[..., 1:, :-1] * wk[..., 1]
           + crop[..., :-1, 1:] * wk[..., 2] + crop[..., :-1, :-1] * wk[..., 3])
    out = acc.reshape(n, g, nk, hg, H * W).transpose(0, 1, 3, 4, 2)
    return round_half_up_shift(out.reshape(n, heads, H * W, nk), shift)


def _softmax(logit: np.ndarray, attend: np.ndarray, ln: LayerNumericsConfig,
             tables: LayerTables) -> dict[str, np.ndarray]:
    """Step 10 over the keys each query may attend to; rows without keys give 0."""
    lo = signed_range(ln.logit_bits)[0]
    masked = np.where(attend, logit, lo)
    m = masked.max(axis=-1)
    t = np.where(attend, logit - m[..., None], 0)
    u = round_half_up_shift(t * tables.log2e, ln.logit_frac + ln.log2e_frac
                            - ln.exp_index_bits)
    e = np.where(attend, exp2_fixed(u, tables.exp2, ln.exp_index_bits, ln.exp_frac), 0)
    total = e.sum(axis=-1)
    has_key = attend.any(axis=-1)
    r = np.where(has_key, reciprocal(np.maximum(total, 1), ln.exp_frac + ln.recip_frac), 0)
    p = round_half_up_shift(e * r[..., None], ln.exp_frac + ln.recip_frac - ln.prob_frac)
    return {"max": np.where(has_key, m, 0), "exp": e, "sum": total, "recip": r, "prob": p}


def dat_layer_fixed_forward(x_q: np.ndarray, qparams: FixedLayerParams, spec: DatLayerSpec,
                            numerics: LayerFormats, slicing: SliceGrid | None = None,
                            geometry: LayerGeometry | None = None,
                            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The datapath, steps 1-12 of ``docs/numerics.md``, on a quantized map.

    Arguments
    ---------
    x_q : int (N, C, H, W)
        The map in Q(value_frac) (:func:`quantize_layer_input`).
    qparams : FixedLayerParams
        From :func:`quantize_layer_params` for this map size.
    spec : DatLayerSpec
    numerics : LayerFormats
    slicing : SliceGrid or None
        ``None``: unsliced (one slice over the map).
    geometry : LayerGeometry or None
        Precomputed :meth:`LayerGeometry.build` (saves host time over many calls).

    Returns
    -------
    y : int64 (N, C, H, W) in Q(out_frac)
    trace : dict of int64 arrays, keyed as in the doc: ``q`` (N, C, H, W); ``h``, ``z``,
        ``n``, ``g`` (N, G, Cg, Nk); ``mean``, ``var``, ``rsq_index``, ``rsq_exp``
        (N, G, Nk); ``off``, ``pos``, ``pos_sample``, ``pos_bias`` (and ``t``, ``tanh``
        when factor >= 0) (N, G, Nk, 2) as (y, x); ``s``, ``k``, ``v`` (N, C, Nk);
        ``qk``, ``bias``, ``logit``, ``exp``, ``prob`` (N, heads, H*W, Nk);
        ``max``, ``sum``, ``recip`` (N, heads, H*W); ``o`` (N, C, H, W). Keys are
        row-major over (Hk, Wk); ``exp`` and ``prob`` are 0 outside the query's slice.
    """
    num, ln = numerics.numerics, numerics.layer
    x_q = np.asarray(x_q, dtype=np.int64)
    n, c, H, W = _check_input(x_q, qparams, num)
    f, nh = num.coord_frac, spec.heads
    hd = c // nh
    geo = geometry or LayerGeometry.build(spec, (H, W), f, slicing)
    tr: dict[str, np.ndarray] = {}
    tr["q"] = _project(*qparams.proj_q, x_q.reshape(n, c, -1),
                       num.value_frac + ln.proj_q_frac - ln.q_frac, ln.act_bits)
    tr.update(_offset_network(tr["q"], qparams, geo, spec, ln))
    tr.update(_positions(tr["g"], qparams, spec, numerics))
    tr["pos_sample"] = _clamp(tr["pos"], geo.sample_bounds)
    tr["pos_bias"] = _clamp(tr["pos"], geo.bias_bounds)
    tr["s"] = _sample(x_q, tr["pos_sample"], geo, spec.groups, f)
    tr["k"] = _project(*qparams.proj_k, tr["s"], num.value_frac + ln.proj_k_frac - ln.k_frac,
                       ln.act_bits)
    tr["v"] = _project(*qparams.proj_v, tr["s"], num.value_frac + ln.proj_v_frac - ln.v_frac,
                       ln.act_bits)
    qh = tr["q"].reshape(n, nh, hd, H * W).transpose(0, 1, 3, 2)
    kh = tr["k"].reshape(n, nh, hd, -1)
    tr["qk"] = round_half_up_shift(exact_matmul(qh, kh), ln.q_frac + ln.k_frac - ln.logit_frac)
    if qparams.rpe is not None:
        tr["bias"] = _position_bias(tr["pos_bias"], qparams, nh, f,
                                    2 * f + ln.rpe_frac - ln.logit_frac)
    else:
        tr["bias"] = np.zeros_like(tr["qk"])
    tr["logit"] = saturate(tr["qk"] + tr["bias"], ln.logit_bits)
    tr.update(_softmax(tr["logit"], geo.attend, ln, qparams.tables))
    vh = tr["v"].reshape(n, nh, hd, -1).transpose(0, 1, 3, 2)           # (N, nh, Nk, hd)
    o = requantize(exact_matmul(tr["prob"], vh), ln.prob_frac + ln.v_frac - ln.o_frac,
                   ln.act_bits)
    tr["o"] = o.transpose(0, 1, 3, 2).reshape(n, c, H, W)
    y = _project(*qparams.proj_out, tr["o"].reshape(n, c, -1),
                 ln.o_frac + ln.proj_out_frac - num.out_frac, num.out_bits)
    tr["q"] = tr["q"].reshape(n, c, H, W)
    return y.reshape(n, c, H, W), tr


def _check_input(x_q: np.ndarray, qp: FixedLayerParams, num: NumericsConfig
                 ) -> tuple[int, int, int, int]:
    if x_q.ndim != 4:
        raise InputError(f"x_q must be (N, C, H, W), got shape {x_q.shape}")
    n, c, H, W = x_q.shape
    if (H, W) != qp.map_size or c != qp.proj_q[0].shape[0]:
        raise InputError(f"x_q is {c} x {H} x {W}; the parameters were prepared for "
                         f"{qp.proj_q[0].shape[0]} x {qp.map_size[0]} x {qp.map_size[1]}")
    lo, hi = signed_range(num.value_bits)
    if x_q.size and (x_q.min() < lo or x_q.max() > hi):
        raise InputError(f"x_q holds values outside the {num.value_bits}-bit signed range")
    return n, c, H, W


def rail_counts(trace: dict[str, np.ndarray], y: np.ndarray,
                formats: LayerFormats) -> dict[str, tuple[int, int]]:
    """How many values of each saturating step sit on a rail of their format, and how
    many values the step has: ``{key: (at_rail, total)}`` for ``q``, ``h``, ``z``, ``n``,
    ``t`` (factor >= 0), ``off``, ``k``, ``v``, ``logit``, ``o`` and ``y``.

    A value on a rail is either exactly the extreme or was clipped there; many of them
    mean the format is too narrow for this model (:func:`calibrate_formats`).
    """
    num, ln = formats.numerics, formats.layer
    widths = {"q": ln.act_bits, "h": ln.act_bits, "z": ln.act_bits, "n": ln.act_bits,
              "t": ln.act_bits, "off": num.coord_bits, "k": ln.act_bits, "v": ln.act_bits,
              "logit": ln.logit_bits, "o": ln.act_bits}
    out = {}
    for key, bits in widths.items():
        if key in trace:
            a = trace[key]
            lo, hi = signed_range(bits)
            out[key] = (int(((a == lo) | (a == hi)).sum()), int(a.size))
    lo, hi = signed_range(num.out_bits)
    out["y"] = (int(((y == lo) | (y == hi)).sum()), int(y.size))
    return out


def layer_trace_widths(trace: dict[str, Any]) -> dict[str, int]:
    """Signed bits each traced tensor actually used (a check on the stated widths)."""
    out = {}
    for key, a in trace.items():
        a = np.asarray(a, dtype=np.int64)
        peak = int(max(-a.min(initial=0) - 1, a.max(initial=0)))
        out[key] = int(bit_length(np.array([peak]))[0]) + 1
    return out


# -- calibration ------------------------------------------------------------------------------

def _frac_for(peak: float, bits: int, headroom: float = 1.0, top: int | None = None) -> int:
    """Most fraction bits with which ``rhu(peak * headroom * 2**frac)`` fits ``bits``."""
    hi = (1 << (bits - 1)) - 1
    frac = bits - 1 if top is None else top
    while frac > 0 and rhu(peak * headroom * 2.0 ** frac) > hi:
        frac -= 1
    return frac


def calibrate_formats(formats: LayerFormats, spec: DatLayerSpec, params: dict,
                      x: np.ndarray, slicing: SliceGrid | None = None,
                      headroom: float = 2.0) -> LayerFormats:
    """``formats`` with fractions fitted to one set of weights and sample inputs.

    Every weight gets the most fraction bits that hold its largest magnitude (after the
    folds); every activation the most that hold ``headroom`` times the largest value the
    float layer (:func:`defslice.model.dat_layer.dat_layer_trace`) reaches on ``x``
    (N, C, H, W). ``z_frac`` follows from ``C / groups``, ``n_frac`` and ``t_frac`` stop
    where the GELU and tanh tables would exceed their size limit, and every requantisation
    is kept a right shift. Widths, tables and softmax formats stay as they were.
    :meth:`LayerFormats.into` puts the result into a configuration.
    """
    num, ln = formats.numerics, formats.layer
    x = np.asarray(x, dtype=np.float64)
    c, H, W = x.shape[1:]
    hk, wk = spec.key_grid(H, W)
    tr = dat_layer_trace(x, params, spec, slicing)
    pix = offset_scale_px(H, W, hk, wk, spec.offset_range_factor)
    hd = c // spec.heads

    def peak(a: Any) -> float:
        return float(np.abs(np.asarray(a, dtype=np.float64)).max(initial=0.0)) or 1.0

    w, a = ln.weight_bits, ln.act_bits
    off_w = np.asarray(params["conv_offset.3.weight"])[:, :, 0, 0]
    if spec.offset_range_factor < 0:
        off_w = off_w * pix[:, None]
    vf = _frac_for(max(peak(x), peak(tr.sampled)), num.value_bits, headroom)
    cg = c // spec.groups
    z = ln.act_bits - 1 - int(np.ceil(np.log2(np.sqrt(cg))))
    n_top = max(f for f in range(a) if gelu_table_len(f) <= MAX_TABLE_ENTRIES)
    fr = {
        "proj_q_frac": _frac_for(peak(params["proj_q.weight"]), w),
        "proj_k_frac": _frac_for(peak(params["proj_k.weight"]) * hd ** -0.5, w),
        "proj_v_frac": _frac_for(peak(params["proj_v.weight"]), w),
        "proj_out_frac": _frac_for(peak(params["proj_out.weight"]), w),
        "offset_conv_frac": _frac_for(peak(params["conv_offset.0.weight"]), w),
        "norm_frac": _frac_for(peak(params["conv_offset.1.norm.weight"]), w),
        "offset_proj_frac": _frac_for(peak(off_w), w),
        "rpe_frac": _frac_for(peak(params.get("rpe_table", 0.0)), w),
        "offset_scale_frac": _frac_for(peak(pix), w),
        "q_frac": _frac_for(peak(tr.q), a, headroom),
        "h_frac": _frac_for(peak(tr.offset_conv), a, headroom),
        "z_frac": z, "rsqrt_frac": max(ln.rsqrt_frac, z),
        "n_frac": _frac_for(peak(tr.offset_norm), a, headroom, n_top),
        "k_frac": _frac_for(peak(tr.k), a, headroom),
        "v_frac": _frac_for(peak(tr.v), a, headroom),
        "o_frac": _frac_for(peak(tr.attn_out), a, headroom),
        "logit_frac": _frac_for(peak(tr.logits + tr.bias), ln.logit_bits, headroom),
    }
    if spec.offset_range_factor >= 0:
        t_top = max(f for f in range(a)
                    if tanh_table_len(f, ln.tanh_frac) <= MAX_TABLE_ENTRIES)
        fr["t_frac"] = _frac_for(peak(tr.offset_raw), a, headroom, t_top)
    out_frac = _frac_for(peak(tr.y), num.out_bits, headroom)
    _keep_right_shifts(fr, vf, ln, num.coord_frac)
    out_frac = min(out_frac, fr["o_frac"] + fr["proj_out_frac"], vf + num.weight_frac)
    return LayerFormats(dataclasses.replace(num, value_frac=vf, out_frac=out_frac),
                        dataclasses.replace(ln, **fr))


def _keep_right_shifts(fr: dict[str, int], vf: int, ln: LayerNumericsConfig,
                       coord_frac: int) -> None:
    """Lower activation fractions (in datapath order) so every shift is >= 0."""
    def get(k: str) -> int:
        return fr.get(k, getattr(ln, k))

    fr["q_frac"] = min(get("q_frac"), vf + get("proj_q_frac"))
    fr["h_frac"] = min(get("h_frac"), get("q_frac") + get("offset_conv_frac"))
    fr["n_frac"] = min(get("n_frac"), get("z_frac") + get("norm_frac"))
    fr["t_frac"] = min(get("t_frac"), get("n_frac") + get("offset_proj_frac"))
    fr["k_frac"] = min(get("k_frac"), vf + get("proj_k_frac"))
    fr["v_frac"] = min(get("v_frac"), vf + get("proj_v_frac"))
    fr["logit_frac"] = min(get("logit_frac"), get("q_frac") + get("k_frac"),
                           2 * coord_frac + get("rpe_frac"))
    fr["o_frac"] = min(get("o_frac"), get("prob_frac") + get("v_frac"))
