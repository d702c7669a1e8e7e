"""A DAT-style classifier in PyTorch whose deformable attention can run sliced.

The layer follows the public DAT code (``DAttentionBaseline``: offset network
``conv_offset`` = depthwise conv, LayerNorm, GELU, 1x1 conv to (dy, dx); 1x1 projections
``proj_q``, ``proj_k``, ``proj_v``, ``proj_out``; optional relative-position table
``rpe_table``), with its state-dict key names, but samples in this project's pixel space
(``docs/nas.md``, "Conventions"):

* reference points at key-grid cell centres, ``y_i = (i + 0.5) * H / Hk - 0.5`` pixels;
* offsets ``tanh(raw) * range_factor * H / Hk`` pixels (``range_factor`` in key-grid cells);
* bilinear sampling as ``grid_sample(align_corners=False, padding_mode='zeros')``.

Sliced (a :class:`SliceLayout` is given): every sampled key belongs to the slice of its
reference point, its position is clamped into that slice's window on the map
(:class:`defslice.model.slicing.SliceGrid` gives the bounds), corners outside the window
read zero, and a query attends only to the keys of its own slice. A query whose slice
holds no key gets a zero attention output (its residual passes through).

Importing this module needs PyTorch (``pip install torch==2.13.0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from defslice.errors import ConfigError, InputError
from defslice.model.slicing import SliceGrid
from defslice.nas._torch import require_torch

torch = require_torch()
from torch import nn  # noqa: E402  (after the guarded import on purpose)
from torch.nn import functional as F  # noqa: E402

if TYPE_CHECKING:
    from defslice.config import Config

__all__ = ["DAttention", "DatClassifier", "DatSpec", "SliceLayout", "reference_points_px"]


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
        Channels of the stage, ``groups * group_channels``.
    depth : int
        Deformable-attention blocks.
    heads : int
        Attention heads (``dim`` must be a multiple).
    groups : int
        Offset groups (the workload's heads M).
    key_grid : (int, int)
        Sampled keys (Hk, Wk) per group; the map must be a multiple of it.
    offset_kernel : int
        Depthwise kernel of the offset network (DAT: 9/7/5/3 by stage).
    range_factor : float
        Offset bound in key-grid cells.
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
    key_grid: tuple[int, int] = (7, 7)
    offset_kernel: int = 9
    range_factor: float = 2.0
    use_pe: bool = False
    mlp_ratio: float = 4.0
    norm_before_pool: bool = True
    pool_grid: int = 1
    num_classes: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", tuple(int(v) for v in self.img_size))
        object.__setattr__(self, "key_grid", tuple(int(v) for v in self.key_grid))
        if self.dim % self.heads:
            raise ConfigError("model.heads", self.heads, f"a divisor of dim = {self.dim}")
        if self.dim % self.groups or self.heads % self.groups:
            raise ConfigError("model.groups", self.groups,
                              f"a divisor of dim = {self.dim} and heads = {self.heads}")
        h, w = self.map_size
        hk, wk = self.key_grid
        if self.pool_grid < 1 or h % self.pool_grid or w % self.pool_grid:
            raise ConfigError("model.pool_grid", self.pool_grid,
                              f"a divisor of the stage map {self.map_size}")
        if h % hk or w % wk:
            raise ConfigError("model.key_grid", self.key_grid,
                              f"a divisor of the stage map {self.map_size}")
        for side, k in ((h, hk), (w, wk)):
            stride = side // k
            out = (side + 2 * (self.offset_kernel // 2) - self.offset_kernel) // stride + 1
            if out != k:
                raise ConfigError("model.offset_kernel", self.offset_kernel,
                                  f"a kernel giving a {self.key_grid} offset map with "
                                  f"stride {stride} (odd and >= stride - 1)")

    @property
    def map_size(self) -> tuple[int, int]:
        """(H, W) of the stage's feature map, pixels."""
        pad = (self.stem_kernel - self.stem_stride) // 2
        return tuple((s + 2 * pad - self.stem_kernel) // self.stem_stride + 1
                     for s in self.img_size)

    @classmethod
    def from_config(cls, cfg: Config, **overrides: Any) -> DatSpec:
        """The stage of ``cfg.workload`` (``dat`` kind): its map, groups, channels, key grid.

        The image is the map itself (stem kernel 3, stride 1) unless overridden.
        """
        wl = cfg.workload
        if wl.kind != "dat":
            raise ConfigError("workload.kind", wl.kind, "'dat' for the DAT accuracy model")
        base = dict(img_size=wl.levels[0], stem_kernel=3, stem_stride=1, dim=wl.embed_dim,
                    heads=wl.heads, groups=wl.groups, key_grid=wl.key_grid,
                    offset_kernel=wl.offset_kernel,
                    range_factor=float(wl.offset_range_factor))
        base.update(overrides)
        return cls(**base)


def reference_points_px(H: int, W: int, Hk: int, Wk: int) -> np.ndarray:
    """Key-grid cell centres in pixels, (Hk * Wk, 2) as (y, x), row-major."""
    ys = (np.arange(Hk) + 0.5) * H / Hk - 0.5
    xs = (np.arange(Wk) + 0.5) * W / Wk - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.reshape(-1), xx.reshape(-1)], axis=-1)


@dataclass(frozen=True)
class SliceLayout:
    """One sub-net's slicing as tensors for the DAT layer (built from a :class:`SliceGrid`).

    Members
    -------
    bias : float tensor (H*W, Nk)
        0 where the query (row-major pixel) may attend to the key, -inf elsewhere; rows
        of queries whose slice holds no key are all 0 (their weights are zeroed instead).
    has_key : float tensor (H*W, 1)
        1 when the query's slice holds at least one key, else 0.
    blocks : tuple of (r0, r1, c0, c1, keys)
        Each slice with keys: its query rows/columns (half-open) and key indices (long).
    bounds : float tensor (Nk, 4)
        Clamp bounds (y_lo, y_hi, x_lo, x_hi) of each key's position, pixels.
    rpe_bounds : float tensor (Nk, 4)
        ``bounds`` with map-edge bounds opened to infinity (for the position bias).
    window : long tensor (Nk, 4)
        Readable rows [r0, r1) and columns [c0, c1) of each key's window.
    clamp : bool
        Clamp positions (policy ``clamp``); otherwise corners outside read zero (``drop``).
    """

    bias: Any
    has_key: Any
    blocks: tuple
    bounds: Any
    rpe_bounds: Any
    window: Any
    clamp: bool

    @classmethod
    def build(cls, grid: SliceGrid, key_grid: tuple[int, int]) -> SliceLayout:
        """Layout of ``grid`` (one level: the stage map) for a ``key_grid`` of keys."""
        if len(grid.levels) != 1:
            raise InputError(f"the DAT layer has one level, the grid has {len(grid.levels)}")
        H, W = grid.levels[0]
        ref = reference_points_px(H, W, *key_grid)
        # Normalized (x, y) of key references and query pixel centres, for slice_of.
        ref_xy = np.stack([(ref[:, 1] + 0.5) / W, (ref[:, 0] + 0.5) / H], axis=-1)
        qy, qx = np.meshgrid((np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W,
                             indexing="ij")
        q_xy = np.stack([qx.reshape(-1), qy.reshape(-1)], axis=-1)
        key_slice = grid.slice_of(ref_xy)
        query_slice = grid.slice_of(q_xy)
        win = grid.windows_array()[key_slice, 0]  # (Nk, 8)
        window = np.stack([win[:, 0], win[:, 0] + win[:, 2], win[:, 1], win[:, 1] + win[:, 3]],
                          axis=-1)
        mask = query_slice[:, None] == key_slice[None, :]
        has_key = mask.any(axis=1, keepdims=True)
        bias = np.where(mask | ~has_key, 0.0, -np.inf).astype(np.float32)
        blocks = []
        for s in range(grid.num_slices):
            keys = np.flatnonzero(key_slice == s)
            if keys.size:
                i, j = divmod(s, grid.n_cols)
                blocks.append((i * grid.slice_h, min((i + 1) * grid.slice_h, H),
                               j * grid.slice_w, min((j + 1) * grid.slice_w, W),
                               torch.from_numpy(keys)))
        return cls(
            bias=torch.from_numpy(bias),
            has_key=torch.from_numpy(has_key.astype(np.float32)),
            blocks=tuple(blocks),
            bounds=torch.from_numpy(win[:, 4:8].astype(np.float32)),
            rpe_bounds=torch.from_numpy(np.where(
                win[:, 4:8] == [-1, H, -1, W], [-np.inf, np.inf, -np.inf, np.inf],
                win[:, 4:8]).astype(np.float32)),
            window=torch.from_numpy(window),
            clamp=grid.clamp == "clamp",
        )


class LayerNormProxy(nn.Module):
    """LayerNorm over channels of a (B, C, H, W) tensor (DAT's ``LayerNormProxy``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _bilinear(feat, py, px, window):
    """Sample ``feat`` (B, C, H, W) at pixel positions ``py, px`` (B, Nk).

    Corners outside rows [r0, r1) x cols [c0, c1) of ``window`` (Nk, 4) read zero; the
    window lies inside the map, so the whole map as window is ``grid_sample`` with zero
    padding and ``align_corners=False``. Returns (B, C, Nk).
    """
    B, C, H, W = feat.shape
    flat = feat.reshape(B, C, H * W)
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


def masked_softmax(logits, layout: SliceLayout):
    """Softmax over keys restricted to the query's slice; queries whose slice has no key
    get all-zero weights. ``logits`` (..., H*W, Nk)."""
    return torch.softmax(logits + layout.bias, dim=-1) * layout.has_key


@dataclass
class Prepared:
    """Slicing-independent tensors of one DAT layer call (see :meth:`DAttention.prepare`).

    ``x`` (B, C, H, W) layer input; ``q`` (B*heads, H*W, head_channels) queries, laid
    out for batched matrix products; ``pos`` (B, G, Nk, 2) unclamped sampling positions
    (y, x) in pixels.
    """

    x: Any
    q: Any
    pos: Any


class DAttention(nn.Module):
    """DAT deformable attention (``DAttentionBaseline``) with optional slicing."""

    def __init__(self, spec: DatSpec):
        super().__init__()
        self.spec = spec
        c, g = spec.dim, spec.groups
        self.n_heads, self.n_groups = spec.heads, g
        self.n_head_channels = c // spec.heads
        self.n_group_channels = c // g
        self.scale = self.n_head_channels ** -0.5
        H, W = spec.map_size
        hk, wk = spec.key_grid
        gc, k = self.n_group_channels, spec.offset_kernel
        self.conv_offset = nn.Sequential(
            nn.Conv2d(gc, gc, k, H // hk, k // 2, groups=gc),
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
        ref = torch.from_numpy(reference_points_px(H, W, hk, wk).astype(np.float32))
        self.register_buffer("ref_px", ref, persistent=False)
        cell = torch.tensor([H / hk, W / wk], dtype=torch.float32)
        self.register_buffer("cell_px", cell, persistent=False)

    def prepare(self, x) -> Prepared:
        """Queries and unclamped sampling positions of ``x`` (B, C, H, W)."""
        B, _C, H, W = x.shape
        q = self.proj_q(x)
        raw = self.conv_offset(q.reshape(B * self.n_groups, self.n_group_channels, H, W))
        off = torch.tanh(raw).permute(0, 2, 3, 1).reshape(B, self.n_groups, -1, 2)
        pos = self.ref_px + off * self.spec.range_factor * self.cell_px
        q = q.reshape(B * self.n_heads, self.n_head_channels, H * W).transpose(1, 2)
        return Prepared(x=x, q=q.contiguous(), pos=pos)

    def attend(self, p: Prepared, layout: SliceLayout | None, pooled: int = 0):
        """Attention output (B, C, H, W); with ``pooled = g`` its average over each cell
        of a g x g grid, (B, C, g, g).

        ``pooled`` is exact (the cell average commutes with the value product and
        ``proj_out``) and never forms the (H*W, C) output.
        """
        x, q = p.x, p.q
        B, C, H, W = x.shape
        h, hc = self.n_heads, self.n_head_channels
        sampled, py, px = self.sample_keys(x, p.pos, layout)
        nk = sampled.shape[-1]
        sampled = sampled.reshape(B, C, 1, nk)
        k = self.proj_k(sampled).reshape(B * h, hc, nk)
        v = self.proj_v(sampled).reshape(B * h, hc, nk)
        kpos = torch.stack([py, px], -1) if self.spec.use_pe else None
        if pooled:
            # Mean attention weight of each key over all queries, slice by slice: only
            # pairs inside one slice are computed (the mean commutes with v and proj_out).
            cell_attn = self._pooled_weights(q, k, kpos, layout, H, W, pooled)
            o = torch.einsum("brn,bcn->brc", cell_attn, v)
            o = o.reshape(B, h, pooled * pooled, hc).permute(0, 2, 1, 3).reshape(B, -1, C)
            o = F.linear(o, self.proj_out.weight.reshape(C, C), self.proj_out.bias)
            return o.transpose(1, 2).reshape(B, C, pooled, pooled)
        logits = torch.bmm(q, k) * self.scale
        if kpos is not None:
            logits = logits + self._rpe_bias(kpos, B, H, W)
        if layout is None:
            attn = torch.softmax(logits, dim=-1)
        else:
            attn = masked_softmax(logits, layout)
        out = torch.einsum("bmn,bcn->bcm", attn, v).reshape(B, C, H, W)
        return self.proj_out(out)

    def sample_keys(self, x, pos, layout: SliceLayout | None):
        """Sampled key features (B, C, Nk) of ``x`` (B, C, H, W) at ``pos`` (B, G, Nk, 2)
        (y, x pixels), clamped and windowed by ``layout``; also the positions used,
        ``py, px`` (B*G, Nk)."""
        B, C, H, W = x.shape
        G, gc = self.n_groups, self.n_group_channels
        nk = pos.shape[2]
        py, px = pos[..., 0].reshape(B * G, nk), pos[..., 1].reshape(B * G, nk)
        if layout is None:
            window = torch.tensor([[0, H, 0, W]], device=x.device).expand(nk, 4)
        else:
            window = layout.window
            if layout.clamp:
                py = torch.maximum(torch.minimum(py, layout.bounds[:, 1]), layout.bounds[:, 0])
                px = torch.maximum(torch.minimum(px, layout.bounds[:, 3]), layout.bounds[:, 2])
        sampled = _bilinear(x.reshape(B * G, gc, H, W), py, px, window)
        if layout is not None and layout.clamp:
            # The position bias sees the position as moved by interior bounds only: a
            # map-edge bound (-1 or the size) changes no sampled value, so it must not
            # change the bias either (one slice over the map is the unsliced model).
            py = torch.maximum(torch.minimum(pos[..., 0].reshape(B * G, nk),
                                             layout.rpe_bounds[:, 1]), layout.rpe_bounds[:, 0])
            px = torch.maximum(torch.minimum(pos[..., 1].reshape(B * G, nk),
                                             layout.rpe_bounds[:, 3]), layout.rpe_bounds[:, 2])
        return sampled.reshape(B, C, nk), py, px

    def _pooled_weights(self, q, k, kpos, layout: SliceLayout | None, H: int, W: int,
                        g: int):
        """Attention weights averaged over the queries of each cell of a g x g grid:
        (B*heads, g*g, Nk). ``kpos`` (B*G, Nk, 2): key positions for the position bias
        (``None``: no bias), which is sampled for the pairs of each slice only."""
        nk = k.shape[2]
        cell = (torch.arange(H)[:, None] // (H // g) * g + torch.arange(W) // (W // g))
        if layout is None:
            blocks = ((0, H, 0, W, torch.arange(nk)),)
        else:
            blocks = layout.blocks
        qmap = q.reshape(q.shape[0], H, W, q.shape[2])
        total = q.new_zeros(q.shape[0], g * g, nk)
        for r0, r1, c0, c1, keys in blocks:
            qs = qmap[:, r0:r1, c0:c1].reshape(q.shape[0], -1, q.shape[2])
            logits = torch.bmm(qs, k[:, :, keys]) * self.scale
            if kpos is not None:
                rows = (torch.arange(r0, r1)[:, None] * W + torch.arange(c0, c1)).reshape(-1)
                logits = logits + self._rpe_bias(kpos[:, keys], q.shape[0] // self.n_heads,
                                                 H, W, rows)
            # Softmax over a short last dimension (the slice's keys) is many times slower
            # on CPU than over the middle one of the transposed copy.
            a = torch.softmax(logits.transpose(1, 2).contiguous(), dim=1).transpose(1, 2)
            part = a.new_zeros(a.shape[0], g * g, a.shape[2])
            part = part.index_add(1, cell[r0:r1, c0:c1].reshape(-1), a)
            total = total.index_add(2, keys, part)
        return total / ((H // g) * (W // g))

    def _rpe_bias(self, pos, B: int, H: int, W: int, rows=None):
        """DAT's relative-position bias: the table sampled at the normalized displacement
        (query - key) / size with ``align_corners=True``; (B*heads, H*W, Nk), or only
        the queries ``rows`` (row-major pixel indices), (B*heads, len(rows), Nk)."""
        G, hg = self.n_groups, self.n_heads // self.n_groups
        nk = pos.shape[1]
        qy, qx = torch.meshgrid(torch.arange(H, dtype=pos.dtype, device=pos.device),
                                torch.arange(W, dtype=pos.dtype, device=pos.device),
                                indexing="ij")
        qg = torch.stack([qx.reshape(-1) / W, qy.reshape(-1) / H], -1)  # (HW, 2) as (x, y)
        if rows is not None:
            qg = qg[rows]
        kg = torch.stack([pos[..., 1] / W, pos[..., 0] / H], -1)      # (B*G, Nk, 2)
        disp = qg[None, :, None, :] - kg[:, None, :, :]               # (B*G, HW, Nk, 2)
        nq = qg.shape[0]
        # The table is shared by the batch: sample it once per group with the batch's
        # displacements stacked along the grid's rows (no per-image copy of the table).
        disp = disp.reshape(B, G, nq, nk, 2).transpose(0, 1).reshape(G, B * nq, nk, 2)
        table = self.rpe_table.reshape(G, hg, 2 * H - 1, 2 * W - 1)
        bias = F.grid_sample(table, disp, mode="bilinear", align_corners=True)
        bias = bias.reshape(G, hg, B, nq, nk).permute(2, 0, 1, 3, 4)
        return bias.reshape(B * self.n_heads, nq, nk)

    def forward(self, x, layout: SliceLayout | None = None):
        return self.attend(self.prepare(x), layout)


class TransformerMLP(nn.Module):
    """DAT's per-pixel MLP (keys ``chunk.linear1``, ``chunk.linear2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.chunk = nn.Sequential()
        self.chunk.add_module("linear1", nn.Linear(dim, hidden))
        self.chunk.add_module("act", nn.GELU())
        self.chunk.add_module("linear2", nn.Linear(hidden, dim))

    def forward(self, x):
        return self.chunk(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class DatStage(nn.Module):
    """DAT ``TransformerStage`` with deformable blocks only (``stage_spec`` all ``D``)."""

    def __init__(self, spec: DatSpec):
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

    def forward(self, x, layout: SliceLayout | None = None):
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

    def __init__(self, spec: DatSpec):
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
        return SliceLayout.build(grid, self.spec.key_grid)

    def forward(self, images, layout: SliceLayout | None = None):
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

    def cache_inputs(self, images, grad: bool = False) -> dict:
        """Everything before slicing acts, for :meth:`forward_cached`.

        ``grad``: keep the autograd graph (training several sub-nets on one batch).
        """
        if not self.supports_cache():
            raise InputError("cache_inputs needs depth 1, mlp_ratio 0, norm_before_pool False")
        with torch.set_grad_enabled(grad):
            x = self.patch_proj(images)
            prep = self.stages[0].attns[0].prepare(self.stages[0].layer_norms[0](x))
            return {"prep": prep, "x_pool": F.adaptive_avg_pool2d(x, self.spec.pool_grid)}

    def forward_cached(self, cache: dict, layout: SliceLayout | None):
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


def count_parameters(model) -> int:
    """Trainable parameters of ``model``."""
    return int(sum(math.prod(p.shape) for p in model.parameters() if p.requires_grad))
