"""A DAT-style classifier in PyTorch whose deformable attention can run sliced.

The attention is DAT's ``DAttentionBaseline`` with the default relative-position-bias
table, under its state-dict names (``conv_offset`` = depthwise conv, LayerNorm, GELU,
1x1 conv to (dy, dx); 1x1 projections ``proj_q``, ``proj_k``, ``proj_v``, ``proj_out``;
``rpe_table``), and computes what :func:`defslice.model.dat_layer.dat_layer_forward`
computes, to float rounding, unsliced and sliced (``docs/numerics.md``, "DAT
conventions"; ``docs/slicing.md``):

* DAT's ``align_corners=True`` pixel grid, DAT's reference points, both offset modes
  (``offset_range_factor < 0``: positions clamped to the map; ``>= 0``: ``tanh``);
* the bias ``rpe_table`` sampled at table pixel ``(qy - py + H - 1, qx - px + W - 1)``.

Sliced (a :class:`SliceLayout` is given): a key belongs to the slice of its reference
point; its offset convolution reads ``q`` only inside the slice's window; its position
is clamped into the window (corners outside read zero); the bias sees the position
clamped by interior bounds only; a pixel attends only to the keys of its own slice, and
a pixel whose slice holds no key gets a zero attention output.

Importing this module needs PyTorch (``pip install torch==2.13.0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from defslice.config import conv_output_side
from defslice.errors import ConfigError, InputError
from defslice.model.dat import offset_scale_px, reference_points_px
from defslice.model.dat_layer import (
    DatLayerSlicing,
    DatLayerSpec,
    attention_prefix,
    param_shapes,
)
from defslice.model.slicing import SliceGrid
from defslice.nas._torch import require_torch

torch = require_torch()
from torch import nn  # noqa: E402  (after the guarded import on purpose)
from torch.nn import functional as F  # noqa: E402

if TYPE_CHECKING:
    from torch import Tensor

    from defslice.config import Config

__all__ = [
    "LAYER_CONVENTION",
    "DAttention",
    "DatClassifier",
    "DatSpec",
    "SliceLayout",
    "load_dat_attention",
]

#: Version of the layer's conventions (grid, reference points, offsets, bias, slicing);
#: part of the cached classifier's key, so weights trained under other conventions are
#: never reused.
LAYER_CONVENTION = 2


@dataclass(frozen=True)
class DatSpec:
    """Shape of a :class:`DatClassifier` (one DAT stage of deformable-attention blocks).

    Members
    -------
    in_chans : int
        Input image channels.
    img_size : (int, int)
        Input image (H, W) in pixels.
    stem_kernel, stem_stride : int
        ``patch_proj`` convolution (DAT: 4, 4); padding is ``(kernel - stride) // 2``.
    dim : int
        Channels C of the stage.
    depth : int
        Deformable-attention blocks.
    heads : int
        Attention heads (``dim`` must be a multiple).
    groups : int
        Offset groups (a divisor of ``heads``).
    stride : int
        Stride of the offset convolution (DAT's sampling stride).
    offset_kernel : int
        Depthwise kernel of the offset network (DAT: 9/7/5/3 by stage).
    offset_range_factor : float
        DAT's offset mode: ``< 0`` clamp (DAT++), ``>= 0`` ``tanh`` times the factor.
    use_pe : bool
        Relative-position bias from a ``(2H-1) x (2W-1)`` table per head.
    mlp_ratio : float
        Hidden width of the per-pixel MLP relative to ``dim``; 0 = no MLP.
    norm_before_pool : bool
        DAT normalises every pixel, then pools; ``False`` pools first (cheaper, and lets
        :meth:`DatClassifier.cache_inputs` evaluate many sub-nets fast).
    pool_grid : int
        The head average-pools the map to ``pool_grid x pool_grid`` cells (DAT: 1, a
        global pool) and reads all cells (``cls_head`` takes ``dim * pool_grid**2``).
    num_classes : int
        Classes of the linear head.
    """

    in_chans: int = 3
    img_size: tuple[int, int] = (224, 224)
    stem_kernel: int = 4
    stem_stride: int = 4
    dim: int = 64
    depth: int = 1
    heads: int = 2
    groups: int = 1
    stride: int = 8
    offset_kernel: int = 9
    offset_range_factor: float = -1.0
    use_pe: bool = True
    mlp_ratio: float = 4.0
    norm_before_pool: bool = True
    pool_grid: int = 1
    num_classes: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", tuple(int(v) for v in self.img_size))
        if self.dim % self.heads:
            raise ConfigError("model.heads", self.heads, f"a divisor of dim = {self.dim}")
        if self.heads % self.groups:
            raise ConfigError("model.groups", self.groups,
                              f"a divisor of heads = {self.heads}")
        h, w = self.map_size
        if self.pool_grid < 1 or h % self.pool_grid or w % self.pool_grid:
            raise ConfigError("model.pool_grid", self.pool_grid,
                              f"a divisor of the stage map {self.map_size}")
        hk, wk = (conv_output_side(s, self.offset_kernel, self.stride) for s in (h, w))
        if min(hk, wk, h, w) < 2:
            raise ConfigError("model.stride", self.stride,
                              f"a stride and offset_kernel ({self.offset_kernel}) giving at "
                              f"least 2 x 2 keys on the {h}x{w} map (got {hk} x {wk})")

    @property
    def map_size(self) -> tuple[int, int]:
        """(H, W) of the stage's feature map, pixels."""
        pad = (self.stem_kernel - self.stem_stride) // 2
        return tuple((s + 2 * pad - self.stem_kernel) // self.stem_stride + 1
                     for s in self.img_size)

    @property
    def layer(self) -> DatLayerSpec:
        """The attention layer's :class:`~defslice.model.dat_layer.DatLayerSpec`."""
        return DatLayerSpec(heads=self.heads, groups=self.groups, stride=self.stride,
                            offset_kernel=self.offset_kernel,
                            offset_range_factor=float(self.offset_range_factor),
                            use_pe=self.use_pe)

    @property
    def key_grid(self) -> tuple[int, int]:
        """Sampled keys (Hk, Wk) per group."""
        return self.layer.key_grid(*self.map_size)

    @classmethod
    def from_config(cls, cfg: Config, **overrides: Any) -> DatSpec:
        """The stage of ``cfg.workload`` (``dat`` kind): its map, heads, groups and layer.

        The image is the map itself (stem kernel 3, stride 1) unless overridden.
        """
        wl = cfg.workload
        if wl.kind != "dat":
            raise ConfigError("workload.kind", wl.kind, "'dat' for the DAT accuracy model")
        base = dict(img_size=wl.levels[0], stem_kernel=3, stem_stride=1, dim=wl.embed_dim,
                    heads=wl.heads, groups=wl.groups, stride=wl.stride,
                    offset_kernel=wl.offset_kernel,
                    offset_range_factor=float(wl.offset_range_factor), use_pe=wl.use_pe)
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True)
class SliceLayout:
    """One sub-net's slicing as tensors for the DAT layer (from a :class:`SliceGrid`,
    through :class:`~defslice.model.dat_layer.DatLayerSlicing`).

    Members
    -------
    bias : float tensor (H*W, Nk)
        0 where the query (row-major pixel) may attend to the key, -inf elsewhere; rows
        of queries whose slice holds no key are all 0 (their weights are zeroed instead).
    has_key : float tensor (H*W, 1)
        1 when the query's slice holds at least one key, else 0.
    blocks : tuple of (r0, r1, c0, c1, keys)
        Each slice with keys: its query rows/columns (half-open) and key indices (long).
    bounds : float64 tensor (Nk, 4)
        Clamp bounds (y_lo, y_hi, x_lo, x_hi) of each key's position, pixels.
    rpe_bounds : float64 tensor (Nk, 4)
        ``bounds`` with map-edge bounds opened to infinity (for the position bias).
    window : long tensor (Nk, 4)
        Readable rows [r0, r1) and columns [c0, c1) of each key's window.
    conv_blocks : tuple of ConvBlock
        The slices whose keys' offset convolutions reach outside the slice's window.
    clamp : bool
        Clamp positions (policy ``clamp``); otherwise corners outside read zero (``drop``).
    """

    bias: Any
    has_key: Any
    blocks: tuple
    bounds: Any
    rpe_bounds: Any
    window: Any
    conv_blocks: tuple
    clamp: bool

    @classmethod
    def build(cls, grid: SliceGrid, layer: DatLayerSpec) -> SliceLayout:
        """Layout of ``grid`` (one level: the stage map) for the attention ``layer``."""
        if len(grid.levels) != 1:
            raise InputError(f"the DAT layer has one level, the grid has {len(grid.levels)}")
        H, W = grid.levels[0]
        lay = DatLayerSlicing.build(layer, H, W, grid)
        mask = lay.query_slice[:, None] == lay.key_slice[None, :]
        has_key = mask.any(axis=1, keepdims=True)
        bias = np.where(mask | ~has_key, 0.0, -np.inf).astype(np.float32)
        blocks = []
        for s in range(grid.num_slices):
            keys = np.flatnonzero(lay.key_slice == s)
            if keys.size:
                i, j = divmod(s, grid.n_cols)
                blocks.append((i * grid.slice_h, min((i + 1) * grid.slice_h, H),
                               j * grid.slice_w, min((j + 1) * grid.slice_w, W),
                               torch.from_numpy(keys)))
        return cls(
            bias=torch.from_numpy(bias),
            has_key=torch.from_numpy(has_key.astype(np.float32)),
            blocks=tuple(blocks),
            bounds=torch.from_numpy(lay.bounds),
            rpe_bounds=torch.from_numpy(lay.bias_bounds),
            window=torch.from_numpy(lay.window),
            conv_blocks=ConvBlock.cut_by(lay, layer, H, W),
            clamp=lay.clamp,
        )


@dataclass(frozen=True)
class ConvBlock:
    """The keys of one slice, rows [i0, i1) x columns [j0, j1) of the key grid, whose
    offset convolutions reach outside the slice's window: they are recomputed reading
    ``q`` of the window's map rows ``rows`` and columns ``cols`` (half-open) only."""

    i0: int
    i1: int
    j0: int
    j1: int
    rows: tuple[int, int]
    cols: tuple[int, int]

    @classmethod
    def cut_by(cls, lay: DatLayerSlicing, layer: DatLayerSpec, H: int,
               W: int) -> tuple[ConvBlock, ...]:
        """Blocks of the slices of ``lay`` that cut an offset convolution."""
        wk = layer.key_grid(H, W)[1]
        in_map = DatLayerSlicing.build(layer, H, W, None).tap_valid
        cut = (lay.tap_valid != in_map).any(axis=(1, 2))
        out = []
        for sl in np.unique(lay.key_slice[cut]):
            ki, kj = np.divmod(np.flatnonzero(lay.key_slice == sl), wk)
            wr0, wr1, wc0, wc1 = (int(v) for v in lay.window[ki[0] * wk + kj[0]])
            out.append(cls(int(ki.min()), int(ki.max()) + 1, int(kj.min()), int(kj.max()) + 1,
                           (wr0, wr1), (wc0, wc1)))
        return tuple(out)


class LayerNormProxy(nn.Module):
    """LayerNorm over channels of a (B, C, H, W) tensor (DAT's ``LayerNormProxy``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _bilinear(feat: Tensor, py: Tensor, px: Tensor, window: Tensor) -> Tensor:
    """Sample ``feat`` (B, C, H, W) at pixel positions ``py, px`` (B, Nk).

    Corners outside rows [r0, r1) x cols [c0, c1) of ``window`` (Nk, 4) read zero; the
    window lies inside the map, so the whole map as window is ``grid_sample`` with zero
    padding at pixel coordinates (``align_corners=True`` on DAT's grid). Returns
    (B, C, Nk).
    """
    B, C, H, W = feat.shape
    flat = feat.reshape(B, C, H * W)
    py = py.clamp(-2, H + 1)   # far-away points read zero; keeps the long conversion finite
    px = px.clamp(-2, W + 1)
    y0, x0 = torch.floor(py), torch.floor(px)
    fy, fx = py - y0, px - x0
    y0, x0 = y0.long(), x0.long()
    r0, r1, c0, c1 = (window[:, k] for k in range(4))
    out = 0
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        yy, xx = y0 + dy, x0 + dx
        wgt = (fy if dy else 1 - fy) * (fx if dx else 1 - fx)
        valid = (yy >= r0) & (yy < r1) & (xx >= c0) & (xx < c1)
        idx = yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1)
        vals = flat.gather(2, idx[:, None, :].expand(B, C, -1))
        out = out + vals * (wgt * valid)[:, None, :]
    return out


def masked_softmax(logits: Tensor, layout: SliceLayout) -> Tensor:
    """Softmax over keys restricted to the query's slice; queries whose slice has no key
    get all-zero weights. ``logits`` (..., H*W, Nk)."""
    return torch.softmax(logits + layout.bias.to(logits.dtype), dim=-1) \
        * layout.has_key.to(logits.dtype)


def _clamp_pos(pos: Tensor, bounds: Tensor) -> tuple[Tensor, Tensor]:
    """``pos`` (B, G, Nk, 2) clamped into ``bounds`` (Nk, 4): (py, px), each (B*G, Nk)."""
    b = bounds.to(pos.dtype)
    py = torch.minimum(torch.maximum(pos[..., 0], b[:, 0]), b[:, 1])
    px = torch.minimum(torch.maximum(pos[..., 1], b[:, 2]), b[:, 3])
    return py.reshape(-1, pos.shape[2]), px.reshape(-1, pos.shape[2])


@dataclass
class Prepared:
    """Slicing-independent tensors of one DAT layer call (see :meth:`DAttention.prepare`).

    ``x`` (B, C, H, W) layer input; ``q`` (B, H, W, C) queries, channels last (slices of
    it are copied fast); ``conv`` (B*G, C/G, Hk, Wk) the offset network's depthwise
    convolution over the whole map (zero padding).
    """

    x: Any
    q: Any
    conv: Any


class DAttention(nn.Module):
    """DAT deformable attention (``DAttentionBaseline``) with optional slicing."""

    def __init__(self, spec: DatSpec) -> None:
        super().__init__()
        self.spec = spec
        c, g = spec.dim, spec.groups
        self.n_heads, self.n_groups = spec.heads, g
        self.n_head_channels = c // spec.heads
        self.n_group_channels = c // g
        self.scale = self.n_head_channels ** -0.5
        layer = spec.layer
        H, W = spec.map_size
        gc, k = self.n_group_channels, spec.offset_kernel
        self.conv_offset = nn.Sequential(
            nn.Conv2d(gc, gc, k, spec.stride, layer.padding, groups=gc),
            LayerNormProxy(gc),
            nn.GELU(),
            nn.Conv2d(gc, 2, 1, 1, 0, bias=False),
        )
        self.proj_q = nn.Conv2d(c, c, 1)
        self.proj_k = nn.Conv2d(c, c, 1)
        self.proj_v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)
        if spec.use_pe:
            self.rpe_table = nn.Parameter(torch.zeros(spec.heads, 2 * H - 1, 2 * W - 1))
            nn.init.trunc_normal_(self.rpe_table, std=0.01)
        hk, wk = layer.key_grid(H, W)
        # float64 here, cast to the input's dtype at use: (Nk, 2) (y, x) and (2,).
        self._ref = reference_points_px(H, W, hk, wk).reshape(-1, 2)
        self._scale = offset_scale_px(H, W, hk, wk, layer.offset_range_factor)
        self._hi = np.array([H - 1.0, W - 1.0])

    def _const(self, arr: np.ndarray, like: Tensor) -> Tensor:
        return torch.from_numpy(arr).to(dtype=like.dtype, device=like.device)

    def prepare(self, x: Tensor) -> Prepared:
        """Queries and the whole-map offset convolution of ``x`` (B, C, H, W)."""
        B, _C, H, W = x.shape
        q = self.proj_q(x)
        conv = self.conv_offset[0](q.reshape(B * self.n_groups, self.n_group_channels, H, W))
        return Prepared(x=x, q=q.permute(0, 2, 3, 1).contiguous(), conv=conv)

    def positions(self, p: Prepared, layout: SliceLayout | None) -> Tensor:
        """Key positions (B, G, Nk, 2) as (y, x) pixels after the offset mode; sliced, the
        offset convolution of each key reads ``q`` inside its window only."""
        conv = p.conv
        if layout is not None and layout.conv_blocks:
            conv = conv.clone()
            B, G, gc = p.q.shape[0], self.n_groups, self.n_group_channels
            for b in layout.conv_blocks:
                out = self._window_conv(p.q, b)                  # (B, rows, cols, C)
                conv[:, :, b.i0:b.i1, b.j0:b.j1] = out.permute(0, 3, 1, 2).reshape(
                    B * G, gc, b.i1 - b.i0, b.j1 - b.j0)
        raw = self.conv_offset[3](self.conv_offset[2](self.conv_offset[1](conv)))
        B = p.x.shape[0]
        raw = raw.permute(0, 2, 3, 1).reshape(B, self.n_groups, -1, 2)
        ref, scale = self._const(self._ref, raw), self._const(self._scale, raw)
        if self.spec.offset_range_factor >= 0:
            return ref + torch.tanh(raw) * scale
        return torch.minimum(torch.clamp(ref + raw * scale, min=0),
                             self._const(self._hi, raw))

    def _window_conv(self, q: Tensor, b: ConvBlock) -> Tensor:
        """The offset network's depthwise convolution of the keys of ``b`` reading ``q``
        (B, H, W, C) inside the block's window only: (B, i1 - i0, j1 - j0, C).

        Tap by tap on strided views of ``q`` (no copy of the window, no zero field): the
        keys whose tap ``(ty, tx)`` lies in the window form a contiguous sub-block.
        """
        dw, G = self.conv_offset[0], self.n_groups
        s, p, k = self.spec.stride, self.spec.layer.padding, self.spec.offset_kernel
        w = dw.weight[:, 0].permute(1, 2, 0).repeat(1, 1, G)     # (k, k, C)
        out = dw.bias.repeat(G).expand(q.shape[0], b.i1 - b.i0, b.j1 - b.j0, -1).clone()

        def inside(lo_hi: tuple[int, int], n0: int, n1: int, t: int) -> tuple[int, int]:
            return max(n0, -((t - p - lo_hi[0]) // s)), min(n1, (lo_hi[1] - 1 + p - t) // s + 1)

        for ty in range(k):
            ia, ib = inside(b.rows, b.i0, b.i1, ty)
            if ia >= ib:
                continue
            r0 = s * ia - p + ty
            qr = q[:, r0:r0 + s * (ib - ia - 1) + 1:s]
            for tx in range(k):
                ja, jb = inside(b.cols, b.j0, b.j1, tx)
                if ja < jb:
                    c0 = s * ja - p + tx
                    out[:, ia - b.i0:ib - b.i0, ja - b.j0:jb - b.j0].addcmul_(
                        qr[:, :, c0:c0 + s * (jb - ja - 1) + 1:s], w[ty, tx])
        return out

    def attend(self, p: Prepared, layout: SliceLayout | None, pooled: int = 0) -> Tensor:
        """Attention output (B, C, H, W); with ``pooled = g`` its average over each cell
        of a g x g grid, (B, C, g, g).

        ``pooled`` is exact (the cell average commutes with the value product and
        ``proj_out``) and never forms the (H*W, C) output.
        """
        x, q = p.x, p.q
        B, C, H, W = x.shape
        h, hc = self.n_heads, self.n_head_channels
        sampled, py, px = self.sample_keys(x, self.positions(p, layout), layout)
        nk = sampled.shape[-1]
        sampled = sampled.reshape(B, C, 1, nk)
        k = self.proj_k(sampled).reshape(B * h, hc, nk)
        v = self.proj_v(sampled).reshape(B * h, hc, nk)
        kpos = torch.stack([py, px], -1) if self.spec.use_pe else None
        if pooled:
            # Mean attention weight of each key over all queries, slice by slice: only
            # pairs inside one slice are computed (the mean commutes with v and proj_out).
            cell_attn = self._pooled_weights(q, k, kpos, layout, pooled)
            o = torch.einsum("brn,bcn->brc", cell_attn, v)
            o = o.reshape(B, h, pooled * pooled, hc).permute(0, 2, 1, 3).reshape(B, -1, C)
            o = F.linear(o, self.proj_out.weight.reshape(C, C), self.proj_out.bias)
            return o.transpose(1, 2).reshape(B, C, pooled, pooled)
        logits = torch.bmm(self._heads_first(q), k) * self.scale
        if kpos is not None:
            logits = logits + self._rpe_bias(kpos, B, H, W)
        if layout is None:
            attn = torch.softmax(logits, dim=-1)
        else:
            attn = masked_softmax(logits, layout)
        out = torch.einsum("bmn,bcn->bcm", attn, v).reshape(B, C, H, W)
        return self.proj_out(out)

    def sample_keys(self, x: Tensor, pos: Tensor,
                    layout: SliceLayout | None) -> tuple[Tensor, Tensor, Tensor]:
        """Sampled keys (B, C, Nk) of ``x`` (B, C, H, W) at ``pos`` (B, G, Nk, 2) (y, x
        pixels), clamped and windowed by ``layout``; also the positions the bias sees,
        ``py, px`` (B*G, Nk) (clamped by interior bounds only)."""
        B, C, H, W = x.shape
        G, gc = self.n_groups, self.n_group_channels
        nk = pos.shape[2]
        py, px = pos[..., 0].reshape(B * G, nk), pos[..., 1].reshape(B * G, nk)
        if layout is None:
            window = torch.tensor([[0, H, 0, W]], device=x.device).expand(nk, 4)
            return _bilinear(x.reshape(B * G, gc, H, W), py, px, window).reshape(B, C, nk), \
                py, px
        sy, sx = _clamp_pos(pos, layout.bounds) if layout.clamp else (py, px)
        sampled = _bilinear(x.reshape(B * G, gc, H, W), sy, sx, layout.window)
        if layout.clamp:
            # A map-edge bound (-1 or the size) changes no sampled value, so it must not
            # change the bias either (one slice over the map is the unsliced layer).
            py, px = _clamp_pos(pos, layout.rpe_bounds)
        return sampled.reshape(B, C, nk), py, px

    def _heads_first(self, t: Tensor) -> Tensor:
        """(B, ..., C) pixels with channels last (a view of ``q`` or a block of it) ->
        (B*heads, pixels, head_dim), in one copy."""
        t = t.reshape(*t.shape[:-1], self.n_heads, self.n_head_channels).movedim(-2, 1)
        return t.reshape(t.shape[0] * self.n_heads, -1, self.n_head_channels)

    def _pooled_weights(self, q: Tensor, k: Tensor, kpos: Tensor | None,
                        layout: SliceLayout | None, g: int) -> Tensor:
        """Attention weights averaged over the queries of each cell of a g x g grid:
        (B*heads, g*g, Nk). ``q`` (B, H, W, C); ``kpos`` (B*G, Nk, 2): key positions for
        the position bias (``None``: no bias), which is sampled for the pairs of each
        slice only."""
        B, H, W, _C = q.shape
        bh, nk = k.shape[0], k.shape[2]
        cell = (torch.arange(H)[:, None] // (H // g) * g + torch.arange(W) // (W // g))
        blocks = ((0, H, 0, W, torch.arange(nk)),) if layout is None else layout.blocks
        total = q.new_zeros(bh, g * g, nk)
        for r0, r1, c0, c1, keys in blocks:
            qs = self._heads_first(q[:, r0:r1, c0:c1])
            logits = torch.bmm(qs, k[:, :, keys]) * self.scale
            if kpos is not None:
                rows = (torch.arange(r0, r1)[:, None] * W + torch.arange(c0, c1)).reshape(-1)
                logits = logits + self._rpe_bias(kpos[:, keys], B, H, W, rows)
            # Softmax over a short last dimension (the slice's keys) is many times slower
            # on CPU than over the middle one of the transposed copy.
            a = torch.softmax(logits.transpose(1, 2).contiguous(), dim=1).transpose(1, 2)
            part = a.new_zeros(a.shape[0], g * g, a.shape[2])
            part = part.index_add(1, cell[r0:r1, c0:c1].reshape(-1), a)
            total = total.index_add(2, keys, part)
        return total / ((H // g) * (W // g))

    def _rpe_bias(self, pos: Tensor, B: int, H: int, W: int,
                  rows: Tensor | None = None) -> Tensor:
        """DAT's relative-position bias: ``rpe_table`` sampled bilinearly (zero outside) at
        table pixel (qy - py + H - 1, qx - px + W - 1), i.e. ``grid_sample`` with
        ``align_corners=True`` at ((qx - px) / (W - 1), (qy - py) / (H - 1));
        (B*heads, H*W, Nk), or only the queries ``rows`` (row-major pixel indices)."""
        G, hg = self.n_groups, self.n_heads // self.n_groups
        nk = pos.shape[1]
        qy, qx = torch.meshgrid(torch.arange(H, dtype=pos.dtype, device=pos.device),
                                torch.arange(W, dtype=pos.dtype, device=pos.device),
                                indexing="ij")
        qg = torch.stack([qx.reshape(-1), qy.reshape(-1)], -1)          # (HW, 2) as (x, y)
        if rows is not None:
            qg = qg[rows]
        kg = torch.stack([pos[..., 1], pos[..., 0]], -1)               # (B*G, Nk, 2)
        span = torch.tensor([W - 1.0, H - 1.0], dtype=pos.dtype, device=pos.device)
        disp = (qg[None, :, None, :] - kg[:, None, :, :]) / span       # (B*G, HW, Nk, 2)
        nq = qg.shape[0]
        # The table is shared by the batch: sample it once per group with the batch's
        # displacements stacked along the grid's rows (no per-image copy of the table).
        disp = disp.reshape(B, G, nq, nk, 2).transpose(0, 1).reshape(G, B * nq, nk, 2)
        table = self.rpe_table.reshape(G, hg, 2 * H - 1, 2 * W - 1)
        bias = F.grid_sample(table, disp, mode="bilinear", align_corners=True)
        bias = bias.reshape(G, hg, B, nq, nk).permute(2, 0, 1, 3, 4)
        return bias.reshape(B * self.n_heads, nq, nk)

    def forward(self, x: Tensor, layout: SliceLayout | None = None) -> Tensor:
        return self.attend(self.prepare(x), layout)


def load_dat_attention(attn: DAttention, state_dict: dict[str, Any], stage: int = 0,
                       block: int | None = None) -> list[str]:
    """Copy one deformable-attention block of a DAT-format state dict into ``attn``.

    Keys are DAT's (LeapLabTHU/DAT ``models/dat.py``): ``stages.<stage>.attns.<block>.``
    followed by the names of :func:`defslice.model.dat_layer.param_shapes`; DAT++'s
    stage-1 attention is ``stages.0.attns.1.`` (block 0 is neighbourhood attention), and
    ``block=None`` takes the stage's first block with an offset network. Every parameter
    must be present with the module's shape (:class:`InputError` otherwise). Returns
    the checkpoint keys loaded.
    """
    prefix = attention_prefix(state_dict, stage, block)
    H, W = attn.spec.map_size
    own = attn.state_dict()
    loaded = []
    for name, shape in param_shapes(attn.spec.layer, attn.spec.dim, H, W).items():
        key = prefix + name
        if key not in state_dict:
            raise InputError(f"the state dict lacks {key!r} {shape}")
        value = torch.as_tensor(state_dict[key])
        if tuple(value.shape) != shape:
            raise InputError(f"{key!r} is {tuple(value.shape)}, the layer needs {shape}")
        own[name] = value.to(own[name].dtype)
        loaded.append(key)
    attn.load_state_dict(own)
    return loaded


class TransformerMLP(nn.Module):
    """DAT's per-pixel MLP (keys ``chunk.linear1``, ``chunk.linear2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.chunk = nn.Sequential()
        self.chunk.add_module("linear1", nn.Linear(dim, hidden))
        self.chunk.add_module("act", nn.GELU())
        self.chunk.add_module("linear2", nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.chunk(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DatStage(nn.Module):
    """DAT ``TransformerStage`` with deformable blocks only (``stage_spec`` all ``D``)."""

    def __init__(self, spec: DatSpec) -> None:
        super().__init__()
        self.proj = nn.Identity()
        hidden = round(spec.dim * spec.mlp_ratio)
        norms: list[nn.Module] = []
        for _ in range(spec.depth):
            norms += [LayerNormProxy(spec.dim),
                      LayerNormProxy(spec.dim) if hidden else nn.Identity()]
        self.layer_norms = nn.ModuleList(norms)
        self.attns = nn.ModuleList(DAttention(spec) for _ in range(spec.depth))
        self.mlps = nn.ModuleList(TransformerMLP(spec.dim, hidden) for _ in range(spec.depth)
                                  ) if hidden else None

    def forward(self, x: Tensor, layout: SliceLayout | None = None) -> Tensor:
        for d, attn in enumerate(self.attns):
            x = x + attn(self.layer_norms[2 * d](x), layout)
            if self.mlps is not None:
                x = x + self.mlps[d](self.layer_norms[2 * d + 1](x))
        return x


class DatClassifier(nn.Module):
    """``patch_proj`` stem, one DAT stage, ``cls_norm``, average pool, ``cls_head``.

    ``forward(images, layout)`` takes images (B, in_chans, H, W) and a
    :class:`SliceLayout` (``None``: unsliced) and returns logits (B, num_classes).
    """

    def __init__(self, spec: DatSpec) -> None:
        super().__init__()
        self.spec = spec
        k, s = spec.stem_kernel, spec.stem_stride
        self.patch_proj = nn.Sequential(
            nn.Conv2d(spec.in_chans, spec.dim, k, s, (k - s) // 2), LayerNormProxy(spec.dim))
        self.stages = nn.ModuleList([DatStage(spec)])
        self.cls_norm = LayerNormProxy(spec.dim)
        self.cls_head = nn.Linear(spec.dim * spec.pool_grid ** 2, spec.num_classes)

    def layout(self, slice_h: int, slice_w: int, overlap: int,
               clamp: str = "clamp") -> SliceLayout:
        """The :class:`SliceLayout` of one sub-net on this model's stage map."""
        grid = SliceGrid([self.spec.map_size], slice_h, slice_w, overlap, clamp)
        return SliceLayout.build(grid, self.spec.layer)

    def forward(self, images: Tensor, layout: SliceLayout | None = None) -> Tensor:
        x = self.stages[0](self.patch_proj(images), layout)
        g = self.spec.pool_grid
        if self.spec.norm_before_pool:
            x = F.adaptive_avg_pool2d(self.cls_norm(x), g)
        else:
            x = self.cls_norm(F.adaptive_avg_pool2d(x, g))
        return self.cls_head(x.flatten(1))

    # -- fast evaluation of many sub-nets ---------------------------------------------
    def supports_cache(self) -> bool:
        """True when :meth:`cache_inputs` applies: one block, no MLP, pooling first."""
        s = self.spec
        return s.depth == 1 and self.stages[0].mlps is None and not s.norm_before_pool

    def cache_inputs(self, images: Tensor, grad: bool = False) -> dict:
        """Everything before slicing acts, for :meth:`forward_cached`.

        ``grad``: keep the autograd graph (training several sub-nets on one batch).
        """
        if not self.supports_cache():
            raise InputError("cache_inputs needs depth 1, mlp_ratio 0, norm_before_pool False")
        with torch.set_grad_enabled(grad):
            x = self.patch_proj(images)
            prep = self.stages[0].attns[0].prepare(self.stages[0].layer_norms[0](x))
            return {"prep": prep, "x_pool": F.adaptive_avg_pool2d(x, self.spec.pool_grid)}

    def forward_cached(self, cache: dict, layout: SliceLayout | None) -> Tensor:
        """Logits from :meth:`cache_inputs`; equal to ``forward`` on the same images."""
        a = self.stages[0].attns[0].attend(cache["prep"], layout, pooled=self.spec.pool_grid)
        return self.cls_head(self.cls_norm(cache["x_pool"] + a).flatten(1))


def spec_for_digits(cfg: Config) -> DatSpec:
    """The offline classifier of the digits objective on ``cfg``'s DAT map.

    Spatial context reaches the head only through the (sliced) deformable attention:
    the stem is a 3x3 convolution on the map (local intensity and gradient only), the
    head reads the global average (DAT's head), and the attention has DAT's relative
    position bias (``rpe_table``), so restricting attention to slices costs accuracy.
    """
    return DatSpec.from_config(cfg, in_chans=1, mlp_ratio=0.0, norm_before_pool=False,
                               pool_grid=1, use_pe=True, num_classes=10)


def with_spec(spec: DatSpec, **changes: Any) -> DatSpec:
    """Copy of ``spec`` with fields changed (validated again)."""
    return replace(spec, **changes)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return int(sum(math.prod(p.shape) for p in model.parameters() if p.requires_grad))
