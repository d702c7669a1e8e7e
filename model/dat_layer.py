"""DAT++'s deformable-attention layer (``DAttentionBaseline``) in NumPy, unsliced and sliced.

Semantics are those of DAT's public code (LeapLabTHU/DAT, ``models/dat_blocks.py``) with
the default relative-position-bias table, in the pixel convention of
:mod:`defslice.model.dat` (``docs/numerics.md``, "DAT conventions"):

1. ``q = proj_q(x)`` (1x1 convolution with bias), per pixel.
2. Offset network per offset group (``C / groups`` channels of ``q``): depthwise ``k x k``
   convolution with stride ``s`` and zero padding ``k // 2`` (none when ``k == s``),
   LayerNorm over channels (eps 1e-5), exact GELU, 1x1 convolution to ``(dy, dx)``.
3. Key positions from DAT's reference points and the offset mode
   (:func:`defslice.model.dat.positions_from_offsets`).
4. Keys sampled bilinearly from ``x`` (not ``q``) at those positions, corners outside the
   map reading 0; ``k = proj_k(keys)``, ``v = proj_v(keys)``.
5. Logits ``q . k * head_dim^-0.5`` plus the bias: ``rpe_table[head]`` sampled bilinearly
   (zero outside) at table pixel ``(qy - py + H - 1, qx - px + W - 1)``; softmax over keys;
   ``y = proj_out(attention . v)``.

Sliced (``docs/slicing.md``; a :class:`~defslice.model.slicing.SliceGrid` or the
configuration's slicing): a key belongs to the slice holding its reference point; its
offset convolution reads ``q`` only inside that slice's window (other taps read 0, like
the padding); its position is clamped into the window's bounds and sampled with corners
outside the window reading 0; the bias sees the position clamped by interior bounds
only; a pixel attends only to the keys of its own slice, and a pixel whose slice holds
no key has attention output 0 (``y = proj_out.bias`` there). One slice over the whole
map is exactly the unsliced layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import erf

from defslice.config import SlicingConfig, conv_output_side
from defslice.errors import ConfigError, InputError
from defslice.model.dat import positions_from_offsets, reference_points_px
from defslice.model.msda import forward_pixels
from defslice.model.sampling import LevelTable
from defslice.model.slicing import SliceGrid

if TYPE_CHECKING:
    from defslice.config import Config

__all__ = [
    "LAYER_NORM_EPS",
    "DatLayerSlicing",
    "DatLayerSpec",
    "DatLayerTrace",
    "attention_params_from_state_dict",
    "attention_prefix",
    "dat_layer_forward",
    "dat_layer_trace",
    "init_params",
    "offset_conv_reach",
    "param_shapes",
    "required_overlap",
]

#: LayerNorm epsilon of the offset network (``nn.LayerNorm``'s default, as in DAT).
LAYER_NORM_EPS = 1e-5

_PROJ = ("proj_q", "proj_k", "proj_v", "proj_out")


@dataclass(frozen=True, kw_only=True)
class DatLayerSpec:
    """Hyper-parameters of one DAT++ attention layer (channels come with the weights).

    Members
    -------
    heads : int
        Attention heads; the channels C must be a multiple.
    groups : int
        Offset groups, a divisor of ``heads``.
    stride : int
        Stride of the offset convolution (DAT's sampling stride), pixels.
    offset_kernel : int
        Depthwise kernel side k of the offset network.
    offset_range_factor : float
        ``< 0``: DAT++ clamp mode; ``>= 0``: ``tanh`` mode (``defslice.model.dat``).
    use_pe : bool
        Relative-position bias from ``rpe_table``.
    """

    heads: int
    groups: int = 1
    stride: int = 8
    offset_kernel: int = 9
    offset_range_factor: float = -1.0
    use_pe: bool = True

    def __post_init__(self) -> None:
        for name, lo in (("heads", 1), ("groups", 1), ("stride", 1), ("offset_kernel", 1)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"DatLayerSpec.{name}", v, f"an integer >= {lo}")
        if self.heads % self.groups:
            raise ConfigError("DatLayerSpec.groups", self.groups,
                              f"a divisor of heads = {self.heads}")
        if not np.isfinite(self.offset_range_factor):
            raise ConfigError("DatLayerSpec.offset_range_factor", self.offset_range_factor,
                              "a finite number")

    @classmethod
    def from_config(cls, cfg: Config) -> DatLayerSpec:
        """The layer of ``cfg.workload`` (kind ``dat``)."""
        w = cfg.workload
        if w.kind != "dat":
            raise ConfigError("workload.kind", w.kind, "'dat' for the DAT layer")
        return cls(heads=w.heads, groups=w.groups, stride=w.stride,
                   offset_kernel=w.offset_kernel,
                   offset_range_factor=float(w.offset_range_factor), use_pe=w.use_pe)

    @property
    def padding(self) -> int:
        """Zero padding of the offset convolution, pixels (DAT: ``k // 2``, 0 if k = s)."""
        return 0 if self.offset_kernel == self.stride else self.offset_kernel // 2

    def key_grid(self, H: int, W: int) -> tuple[int, int]:
        """Keys (Hk, Wk) per group on an ``H x W`` map; refused below 2 x 2."""
        hk = conv_output_side(H, self.offset_kernel, self.stride)
        wk = conv_output_side(W, self.offset_kernel, self.stride)
        if hk < 2 or wk < 2 or H < 2 or W < 2:
            raise ConfigError("DatLayerSpec.stride", self.stride,
                              f"a stride and offset_kernel ({self.offset_kernel}) giving at "
                              f"least 2 x 2 keys on the {H}x{W} map (got {hk} x {wk})")
        return hk, wk

    def tap_rows(self, S: int, Sk: int) -> np.ndarray:
        """Input rows (or columns) read by each output of the offset convolution, int64
        (Sk, k); entries outside [0, S) are padding."""
        return (np.arange(Sk)[:, None] * self.stride - self.padding
                + np.arange(self.offset_kernel)[None, :])


def param_shapes(spec: DatLayerSpec, channels: int, H: int, W: int) -> dict[str, tuple]:
    """Shape of every parameter under DAT's state-dict names."""
    c, cg, k = channels, channels // spec.groups, spec.offset_kernel
    shapes: dict[str, tuple] = {}
    for p in _PROJ:
        shapes[f"{p}.weight"], shapes[f"{p}.bias"] = (c, c, 1, 1), (c,)
    shapes.update({
        "conv_offset.0.weight": (cg, 1, k, k), "conv_offset.0.bias": (cg,),
        "conv_offset.1.norm.weight": (cg,), "conv_offset.1.norm.bias": (cg,),
        "conv_offset.3.weight": (2, cg, 1, 1),
    })
    if spec.use_pe:
        shapes["rpe_table"] = (spec.heads, 2 * H - 1, 2 * W - 1)
    return shapes


def init_params(spec: DatLayerSpec, channels: int, H: int, W: int, seed: int = 0,
                dtype: type = np.float64) -> dict[str, np.ndarray]:
    """Random parameters drawn like PyTorch's default initialisation of the module.

    Convolution weights and biases uniform in ``+-1/sqrt(fan_in)``, LayerNorm gain 1 and
    bias 0, ``rpe_table`` normal with standard deviation 0.01 (DAT's ``trunc_normal_``).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in param_shapes(spec, channels, H, W).items():
        if name == "rpe_table":
            arr = rng.standard_normal(shape) * 0.01
        elif name.startswith("conv_offset.1."):
            arr = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        else:
            fan_in = {"conv_offset.0": spec.offset_kernel ** 2,
                      "conv_offset.3": channels // spec.groups}.get(name.rsplit(".", 1)[0],
                                                                   channels)
            arr = rng.uniform(-1, 1, shape) / np.sqrt(fan_in)
        out[name] = arr.astype(dtype)
    return out


def _check(x: np.ndarray, params: dict[str, Any], spec: DatLayerSpec) -> dict[str, np.ndarray]:
    if x.ndim != 4 or x.dtype not in (np.float32, np.float64):
        raise InputError(f"x must be float32 or float64 (N, C, H, W), got {x.dtype} {x.shape}")
    _, c, H, W = x.shape
    if c % spec.heads:
        raise InputError(f"x has C = {c} channels, not a multiple of heads = {spec.heads}")
    spec.key_grid(H, W)
    out = {}
    for name, shape in param_shapes(spec, c, H, W).items():
        if name not in params:
            raise InputError(f"params lacks {name!r} {shape}")
        arr = np.asarray(params[name])
        if arr.shape != shape:
            raise InputError(f"params[{name!r}] must be {shape}, got {arr.shape}")
        out[name] = arr.astype(x.dtype)
    return out


# -- slicing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatLayerSlicing:
    """The sliced semantics of one layer on one map, as index arrays.

    Members
    -------
    grid : SliceGrid
    key_slice : int64 (Nk,)
        Slice of each key (row-major over the Hk x Wk grid), the one holding its
        reference point.
    query_slice : int64 (H*W,)
        Slice of each pixel.
    window : int64 (Nk, 4)
        Readable rows [r0, r1) and columns [c0, c1) of each key's window.
    bounds : float64 (Nk, 4)
        Clamp bounds (y_lo, y_hi, x_lo, x_hi) of each key's position, pixels.
    bias_bounds : float64 (Nk, 4)
        ``bounds`` with map-edge bounds opened to -inf / +inf (for the position bias).
    tap_valid : bool (Nk, k, k)
        Offset-convolution taps of each key inside its window and the map.
    clamp : bool
        Positions are clamped into ``bounds`` (policy ``clamp``), else corners outside
        the window just read 0 (``drop``).
    """

    grid: SliceGrid
    key_slice: np.ndarray
    query_slice: np.ndarray
    window: np.ndarray
    bounds: np.ndarray
    bias_bounds: np.ndarray
    tap_valid: np.ndarray
    clamp: bool

    @classmethod
    def build(cls, spec: DatLayerSpec, H: int, W: int,
              slicing: SliceGrid | SlicingConfig | None) -> DatLayerSlicing:
        """Slicing of an ``H x W`` map; ``None``: one slice over the map (unsliced)."""
        grid = _as_grid(slicing, H, W)
        hk, wk = spec.key_grid(H, W)
        ref = reference_points_px(H, W, hk, wk).reshape(-1, 2)
        key_slice = grid.slice_of(np.stack([(ref[:, 1] + 0.5) / W, (ref[:, 0] + 0.5) / H],
                                           axis=-1))
        qy, qx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        query_slice = grid.slice_of(np.stack([(qx.reshape(-1) + 0.5) / W,
                                              (qy.reshape(-1) + 0.5) / H], axis=-1))
        win = grid.windows_array()[key_slice, 0]                       # (Nk, 8)
        window = np.stack([win[:, 0], win[:, 0] + win[:, 2], win[:, 1], win[:, 1] + win[:, 3]],
                          axis=-1)
        bounds = win[:, 4:8].astype(np.float64)
        edge = bounds == np.array([-1, H, -1, W])
        bias_bounds = np.where(edge, np.array([-np.inf, np.inf, -np.inf, np.inf]), bounds)
        rows = np.repeat(spec.tap_rows(H, hk), wk, axis=0)             # (Nk, k)
        cols = np.tile(spec.tap_rows(W, wk), (hk, 1))
        ok_r = (rows >= window[:, :1]) & (rows < window[:, 1:2])
        ok_c = (cols >= window[:, 2:3]) & (cols < window[:, 3:4])
        return cls(grid=grid, key_slice=key_slice, query_slice=query_slice, window=window,
                   bounds=bounds, bias_bounds=bias_bounds,
                   tap_valid=ok_r[:, :, None] & ok_c[:, None, :],
                   clamp=grid.clamp == "clamp")


def _as_grid(slicing: SliceGrid | SlicingConfig | None, H: int, W: int) -> SliceGrid:
    if slicing is None:
        return SliceGrid.unsliced([(H, W)])
    if isinstance(slicing, SlicingConfig):
        return SliceGrid([(H, W)], slicing.slice_h, slicing.slice_w, slicing.overlap,
                         slicing.clamp)
    if not isinstance(slicing, SliceGrid):
        raise InputError(f"slicing must be a SliceGrid, a SlicingConfig or None, got "
                         f"{type(slicing).__name__}")
    if slicing.levels != ((H, W),):
        raise InputError(f"the slice grid is for levels {list(slicing.levels)}, the layer's "
                         f"map is {H}x{W}")
    return slicing


def offset_conv_reach(spec: DatLayerSpec, H: int, W: int) -> tuple[int, int]:
    """How far (rows, columns) the offset convolution of a key reads beyond the pixel
    holding its reference point (in-map taps only): an overlap of this much makes the
    offset network exact for every slicing."""
    hk, wk = spec.key_grid(H, W)
    reach = []
    for S, Sk, axis in ((H, hk, 0), (W, wk, 1)):
        ref = reference_points_px(H, W, hk, wk)[:, :, axis]
        pix = np.clip(np.floor(ref + 0.5), 0, S - 1).astype(np.int64)
        pix = pix[:, 0] if axis == 0 else pix[0, :]
        taps = np.clip(spec.tap_rows(S, Sk), 0, S - 1)
        reach.append(int(np.maximum(pix - taps.min(1), taps.max(1) - pix).max()))
    return reach[0], reach[1]


def required_overlap(spec: DatLayerSpec, H: int, W: int, slice_h: int,
                     slice_w: int) -> tuple[int, int]:
    """Smallest overlap (rows, columns) with which every key's offset convolution reads
    only its own window, for slices of ``slice_h x slice_w`` pixels."""
    grid = SliceGrid([(H, W)], slice_h, slice_w, 0)
    lay = DatLayerSlicing.build(spec, H, W, grid)
    hk, wk = spec.key_grid(H, W)
    need = []
    for S, Sk, lo, hi in ((H, hk, 0, 1), (W, wk, 2, 3)):
        taps = np.clip(spec.tap_rows(S, Sk), 0, S - 1)
        taps = np.repeat(taps, wk, axis=0) if lo == 0 else np.tile(taps, (hk, 1))
        need.append(int(np.maximum(np.maximum(lay.window[:, lo] - taps.min(1),
                                              taps.max(1) - (lay.window[:, hi] - 1)), 0).max()))
    return need[0], need[1]


# -- the forward pass ------------------------------------------------------------------------
@dataclass(frozen=True)
class DatLayerTrace:
    """Every intermediate tensor of one forward pass (compared step by step by the
    fixed-point model and the hardware benches). ``G`` groups, ``Nk = Hk * Wk`` keys
    (row-major), ``Q = H * W`` query pixels (row-major); positions are (y, x) pixels.

    Members
    -------
    q : (N, C, H, W)
    offset_conv, offset_norm, offset_act : (N, G, C/G, Hk, Wk)
        Depthwise convolution (window-limited when sliced), LayerNorm, GELU.
    offset_raw : (N, G, Hk, Wk, 2)
        ``conv_offset.3`` output as (dy, dx).
    reference : (Hk, Wk, 2)
        Reference points (float64).
    positions : (N, G, Nk, 2)
        After the offset mode (DAT's clamp to the map when the factor is negative).
    sample_positions : (N, G, Nk, 2)
        ``positions`` clamped into the key's window (policy ``clamp``): where keys are read.
    bias_positions : (N, G, Nk, 2)
        ``positions`` clamped by interior window bounds only: what the bias sees.
    map_clamped : bool (N, G, Nk)
        Keys whose position DAT's clamp moved onto the map (negative factor only).
    window_clamped : bool (N, G, Nk)
        Keys moved by an interior window bound.
    sampled : (N, C, Nk)
        Keys sampled from ``x``.
    k, v : (N, heads, head_dim, Nk)
    logits : (N, heads, Q, Nk)
        ``q . k * head_dim^-0.5``, without the bias.
    bias : (N, heads, Q, Nk)
        Position bias (zeros when ``use_pe`` is off).
    probs : (N, heads, Q, Nk)
        Softmax over the keys of the query's slice; 0 elsewhere and for key-less slices.
    attn_out : (N, C, H, W)
        ``probs . v`` before ``proj_out``.
    y : (N, C, H, W)
    slicing : DatLayerSlicing
    """

    q: np.ndarray
    offset_conv: np.ndarray
    offset_norm: np.ndarray
    offset_act: np.ndarray
    offset_raw: np.ndarray
    reference: np.ndarray
    positions: np.ndarray
    sample_positions: np.ndarray
    bias_positions: np.ndarray
    map_clamped: np.ndarray
    window_clamped: np.ndarray
    sampled: np.ndarray
    k: np.ndarray
    v: np.ndarray
    logits: np.ndarray
    bias: np.ndarray
    probs: np.ndarray
    attn_out: np.ndarray
    y: np.ndarray
    slicing: DatLayerSlicing


def _conv1x1(w: np.ndarray, b: np.ndarray | None, t: np.ndarray) -> np.ndarray:
    """1x1 convolution of (N, C, ...) by (O, C, 1, 1)."""
    out = np.einsum("oc,nc...->no...", w[:, :, 0, 0], t)
    if b is not None:
        out += b.reshape((1, -1) + (1,) * (t.ndim - 2))
    return out


def _offset_network(q: np.ndarray, p: dict[str, np.ndarray], spec: DatLayerSpec,
                    lay: DatLayerSlicing) -> tuple[np.ndarray, ...]:
    """Depthwise conv (taps outside the key's window read 0), LayerNorm, GELU, 1x1."""
    n, c, H, W = q.shape
    g, cg = spec.groups, c // spec.groups
    hk, wk = spec.key_grid(H, W)
    dt = q.dtype.type
    rows = np.clip(spec.tap_rows(H, hk), 0, H - 1)                 # (Hk, k)
    cols = np.clip(spec.tap_rows(W, wk), 0, W - 1)                 # (Wk, k)
    qg = q.reshape(n, g, cg, H, W)
    patches = qg[:, :, :, rows[:, :, None, None], cols[None, None, :, :]]  # N G Cg Hk k Wk k
    valid = lay.tap_valid.reshape(hk, wk, spec.offset_kernel, spec.offset_kernel)
    wgt = p["conv_offset.0.weight"][:, 0]                           # (Cg, k, k)
    taps = wgt[:, None, :, None, :] * valid.transpose(0, 2, 1, 3)[None].astype(dt)
    conv = np.einsum("ngcaybx,caybx->ngcab", patches, taps)
    conv += p["conv_offset.0.bias"][:, None, None]
    mean = conv.mean(axis=2, keepdims=True)
    var = ((conv - mean) ** 2).mean(axis=2, keepdims=True)
    norm = (conv - mean) / np.sqrt(var + dt(LAYER_NORM_EPS))
    norm = norm * p["conv_offset.1.norm.weight"][:, None, None] \
        + p["conv_offset.1.norm.bias"][:, None, None]
    act = dt(0.5) * norm * (dt(1) + erf(norm / dt(np.sqrt(2.0)))).astype(dt)
    raw = np.einsum("oc,ngcab->ngabo", p["conv_offset.3.weight"][:, :, 0, 0], act)
    return conv, norm, act, raw


def _clamp(pos: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Clamp (..., Nk, 2) positions into (Nk, 4) bounds (y_lo, y_hi, x_lo, x_hi)."""
    lo = bounds[:, [0, 2]].astype(pos.dtype)
    hi = bounds[:, [1, 3]].astype(pos.dtype)
    return np.minimum(np.maximum(pos, lo), hi)


def _sample_keys(x: np.ndarray, pos: np.ndarray, spec: DatLayerSpec,
                 lay: DatLayerSlicing) -> np.ndarray:
    """Bilinear keys (N, C, Nk) of ``x`` at ``pos`` (N, G, Nk, 2), corners outside the
    key's window reading 0 (the sampling engine's ``forward_pixels``)."""
    n, c, H, W = x.shape
    g = spec.groups
    value = x.reshape(n, g, c // g, H * W).transpose(0, 3, 1, 2)      # (N, S, G, Cg)
    py = pos[..., 0].transpose(0, 2, 1)[..., None, None]              # (N, Nk, G, 1, 1)
    px = pos[..., 1].transpose(0, 2, 1)[..., None, None]
    win = tuple(lay.window[:, k][None, :, None, None, None] for k in range(4))
    attn = np.ones(px.shape, dtype=x.dtype)
    out = forward_pixels(np.ascontiguousarray(value), LevelTable.from_shapes([[H, W]]),
                         px, py, attn, window=win)                   # (N, Nk, G*Cg)
    return out.transpose(0, 2, 1)


def _bilinear_table(table: np.ndarray, ty: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """Sample ``table`` (T, Ht, Wt) at pixel coordinates ``ty, tx`` (...), zero outside:
    (T, ...)."""
    _, ht, wt = table.shape
    dt = table.dtype.type
    ty = np.clip(ty, -2, ht + 1)
    tx = np.clip(tx, -2, wt + 1)
    y0, x0 = np.floor(ty), np.floor(tx)
    ly, lx = ty - y0, tx - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    out = np.zeros(table.shape[:1] + ty.shape, dtype=table.dtype)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        yy, xx = y0 + dy, x0 + dx
        w = (ly if dy else dt(1) - ly) * (lx if dx else dt(1) - lx)
        ok = (yy >= 0) & (yy < ht) & (xx >= 0) & (xx < wt)
        vals = table[:, np.clip(yy, 0, ht - 1), np.clip(xx, 0, wt - 1)]
        out += vals * np.where(ok, w, dt(0))
    return out


def _position_bias(table: np.ndarray, pos: np.ndarray, spec: DatLayerSpec, H: int,
                   W: int) -> np.ndarray:
    """Bias (N, heads, Q, Nk) from ``rpe_table`` at (qy - py + H - 1, qx - px + W - 1)."""
    n, g, nk, _ = pos.shape
    dt = table.dtype.type
    qy, qx = np.meshgrid(np.arange(H, dtype=dt), np.arange(W, dtype=dt), indexing="ij")
    hg = spec.heads // spec.groups
    out = np.empty((n, spec.heads, H * W, nk), dtype=table.dtype)
    for b in range(n):
        for gi in range(g):
            ty = qy.reshape(-1, 1) - pos[b, gi, :, 0][None, :] + dt(H - 1)
            tx = qx.reshape(-1, 1) - pos[b, gi, :, 1][None, :] + dt(W - 1)
            out[b, gi * hg:(gi + 1) * hg] = _bilinear_table(table[gi * hg:(gi + 1) * hg],
                                                            ty, tx)
    return out


def _attention(logits: np.ndarray, lay: DatLayerSlicing) -> np.ndarray:
    """Softmax over each query's own-slice keys; rows without such keys are 0."""
    mask = lay.query_slice[:, None] == lay.key_slice[None, :]           # (Q, Nk)
    has_key = mask.any(axis=1)
    masked = np.where(mask, logits, -np.inf)
    m = np.where(has_key[:, None], masked.max(axis=-1, keepdims=True), 0)
    e = np.where(mask, np.exp(masked - m), 0)
    s = e.sum(axis=-1, keepdims=True)
    return e / np.where(s > 0, s, 1)


def dat_layer_trace(x: np.ndarray, params: dict[str, Any], spec: DatLayerSpec,
                    slicing: SliceGrid | SlicingConfig | None = None) -> DatLayerTrace:
    """The layer on ``x`` (N, C, H, W), float32 or float64 (computed in that dtype),
    with every intermediate tensor; see :class:`DatLayerTrace` and the module docstring.

    ``params``: arrays under DAT's state-dict names (:func:`param_shapes`).
    ``slicing``: ``None`` (unsliced), a :class:`SliceGrid` of the map, or a
    :class:`~defslice.config.SlicingConfig`.
    """
    x = np.asarray(x)
    p = _check(x, params, spec)
    n, c, H, W = x.shape
    hk, wk = spec.key_grid(H, W)
    lay = DatLayerSlicing.build(spec, H, W, slicing)
    dt = x.dtype.type
    q = _conv1x1(p["proj_q.weight"], p["proj_q.bias"], x)
    conv, norm, act, raw = _offset_network(q, p, spec, lay)
    pos = positions_from_offsets(raw, H, W, spec.offset_range_factor)
    map_clamped = np.zeros(pos.shape[:-1], dtype=bool)
    if spec.offset_range_factor < 0:
        free = positions_from_offsets(raw, H, W, spec.offset_range_factor, clamp=False)
        map_clamped = (free != pos).any(axis=-1)
    pos = pos.reshape(n, spec.groups, hk * wk, 2)
    sample_pos = _clamp(pos, lay.bounds) if lay.clamp else pos
    bias_pos = _clamp(pos, lay.bias_bounds) if lay.clamp else pos
    sampled = _sample_keys(x, sample_pos, spec, lay)
    hd = c // spec.heads
    k = _conv1x1(p["proj_k.weight"], p["proj_k.bias"], sampled).reshape(n, spec.heads, hd, -1)
    v = _conv1x1(p["proj_v.weight"], p["proj_v.bias"], sampled).reshape(n, spec.heads, hd, -1)
    qh = q.reshape(n, spec.heads, hd, H * W)
    logits = np.einsum("nhcq,nhck->nhqk", qh, k) * dt(hd ** -0.5)
    bias = (_position_bias(p["rpe_table"], bias_pos, spec, H, W) if spec.use_pe
            else np.zeros_like(logits))
    probs = _attention(logits + bias, lay)
    attn_out = np.einsum("nhqk,nhck->nhcq", probs, v).reshape(n, c, H, W)
    y = _conv1x1(p["proj_out.weight"], p["proj_out.bias"], attn_out)
    return DatLayerTrace(
        q=q, offset_conv=conv, offset_norm=norm, offset_act=act, offset_raw=raw,
        reference=reference_points_px(H, W, hk, wk), positions=pos,
        sample_positions=sample_pos, bias_positions=bias_pos,
        map_clamped=map_clamped.reshape(n, spec.groups, -1),
        window_clamped=(bias_pos != pos).any(axis=-1), sampled=sampled, k=k, v=v,
        logits=logits, bias=bias, probs=probs, attn_out=attn_out, y=y, slicing=lay)


def dat_layer_forward(x: np.ndarray, params: dict[str, Any], spec: DatLayerSpec,
                      slicing: SliceGrid | SlicingConfig | None = None) -> np.ndarray:
    """The layer's output ``y`` (N, C, H, W); see :func:`dat_layer_trace`."""
    return dat_layer_trace(x, params, spec, slicing).y


# -- DAT checkpoints -------------------------------------------------------------------------
def attention_params_from_state_dict(state_dict: dict[str, Any], stage: int = 0,
                                     block: int | None = None) -> dict[str, np.ndarray]:
    """The parameters of one deformable-attention block of a DAT-format state dict.

    DAT (LeapLabTHU/DAT ``models/dat.py``) names them
    ``stages.<stage>.attns.<block>.<name>`` (DAT++-T stage 1: ``stages.0.attns.1.``; its
    block 0 is neighbourhood attention). ``block=None`` takes the stage's first block
    that has an offset network. Returns float64 arrays under the names of
    :func:`param_shapes` (``rpe_table`` when present).
    """
    prefix = attention_prefix(state_dict, stage, block)
    out = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            arr = value.detach().cpu().numpy() if hasattr(value, "detach") else value
            out[key[len(prefix):]] = np.asarray(arr, dtype=np.float64)
    return out


def attention_prefix(state_dict: dict[str, Any], stage: int = 0,
                     block: int | None = None) -> str:
    """Key prefix ``stages.<stage>.attns.<block>.`` of a deformable-attention block."""
    base = f"stages.{stage}.attns."
    if block is None:
        blocks = sorted(int(k[len(base):].split(".", 1)[0]) for k in state_dict
                        if k.startswith(base) and k.endswith(".conv_offset.0.weight"))
        if not blocks:
            raise InputError(f"the state dict has no deformable-attention block in stage "
                             f"{stage} (no {base}<i>.conv_offset.0.weight)")
        block = blocks[0]
    prefix = f"{base}{block}."
    if f"{prefix}conv_offset.0.weight" not in state_dict:
        raise InputError(f"the state dict has no {prefix}conv_offset.0.weight")
    return prefix
