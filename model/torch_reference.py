"""PyTorch reference of MSDA: MMCV's ``multi_scale_deformable_attn_pytorch``.

The composition of ``grid_sample`` calls that MMCV ships as its CPU fallback; the golden
model is checked against it (forward) and against autograd through it (backward), and
benchmarked against it. Importing this module needs PyTorch (``pip install torch==2.13.0``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike


def msda_torch(value: torch.Tensor, shapes: ArrayLike, loc: torch.Tensor,
               attn: torch.Tensor) -> torch.Tensor:
    """(N, S, M, D), [(H, W)], (N, Lq, M, L, P, 2), (N, Lq, M, L, P) -> (N, Lq, M*D)."""
    n, _, m, d = value.shape
    _, lq, _, n_lvl, p, _ = loc.shape
    shapes = [(int(h), int(w)) for h, w in np.asarray(shapes)]
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * loc - 1
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))
    a = attn.transpose(1, 2).reshape(n * m, 1, lq, n_lvl * p)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * a).sum(-1).view(n, m * d, lq)
    return out.transpose(1, 2).contiguous()
