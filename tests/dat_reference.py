"""DAT's ``DAttentionBaseline`` written from its public code (LeapLabTHU/DAT,
``models/dat_blocks.py``) for the tests: the reference the layer models are checked
against, and the random cases they are checked on."""

import torch
from torch import nn
from torch.nn import functional as F

from defslice.model.dat_layer import DatLayerSpec


class LayerNormProxy(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ReferenceDAttention(nn.Module):
    """``DAttentionBaseline`` with the default ``rpe_table`` bias, eval mode, no dropout."""

    def __init__(self, C, H, W, heads, groups, stride, ksize, factor, use_pe):
        super().__init__()
        self.heads, self.groups, self.hc = heads, groups, C // heads
        self.gc, self.factor, self.use_pe = C // groups, factor, use_pe
        self.scale = self.hc ** -0.5
        pad = ksize // 2 if ksize != stride else 0
        self.conv_offset = nn.Sequential(
            nn.Conv2d(self.gc, self.gc, ksize, stride, pad, groups=self.gc),
            LayerNormProxy(self.gc), nn.GELU(), nn.Conv2d(self.gc, 2, 1, 1, 0, bias=False))
        self.proj_q, self.proj_k = nn.Conv2d(C, C, 1), nn.Conv2d(C, C, 1)
        self.proj_v, self.proj_out = nn.Conv2d(C, C, 1), nn.Conv2d(C, C, 1)
        if use_pe:
            self.rpe_table = nn.Parameter(torch.zeros(heads, 2 * H - 1, 2 * W - 1))

    @staticmethod
    def grid(H, W, dtype, centres):
        a, b = (torch.linspace(0.5, H - 0.5, H, dtype=dtype),
                torch.linspace(0.5, W - 0.5, W, dtype=dtype)) if centres else (
            torch.arange(0, H, dtype=dtype), torch.arange(0, W, dtype=dtype))
        ref_y, ref_x = torch.meshgrid(a, b, indexing="ij")
        ref = torch.stack((ref_y, ref_x), -1)
        ref[..., 1].div_(W - 1.0).mul_(2.0).sub_(1.0)
        ref[..., 0].div_(H - 1.0).mul_(2.0).sub_(1.0)
        return ref

    def forward(self, x):
        B, C, H, W = x.shape
        G, gc = self.groups, self.gc
        q = self.proj_q(x)
        offset = self.conv_offset(q.reshape(B * G, gc, H, W))
        Hk, Wk = offset.shape[2:]
        n = Hk * Wk
        if self.factor >= 0:
            rng = torch.tensor([1.0 / (Hk - 1.0), 1.0 / (Wk - 1.0)]).reshape(1, 2, 1, 1)
            offset = offset.tanh().mul(rng).mul(self.factor)
        offset = offset.permute(0, 2, 3, 1)
        ref = self.grid(Hk, Wk, x.dtype, True)[None].expand(B * G, -1, -1, -1)
        pos = offset + ref if self.factor >= 0 else (offset + ref).clamp(-1.0, 1.0)
        xs = F.grid_sample(x.reshape(B * G, gc, H, W), pos[..., (1, 0)], mode="bilinear",
                           align_corners=True).reshape(B, C, 1, n)
        q = q.reshape(B * self.heads, self.hc, H * W)
        k = self.proj_k(xs).reshape(B * self.heads, self.hc, n)
        v = self.proj_v(xs).reshape(B * self.heads, self.hc, n)
        attn = torch.einsum("bcm,bcn->bmn", q, k).mul(self.scale)
        if self.use_pe:
            q_grid = self.grid(H, W, x.dtype, False)[None].expand(B * G, -1, -1, -1)
            disp = (q_grid.reshape(B * G, H * W, 2).unsqueeze(2)
                    - pos.reshape(B * G, n, 2).unsqueeze(1)).mul(0.5)
            table = self.rpe_table[None].expand(B, -1, -1, -1).reshape(
                B * G, self.heads // G, 2 * H - 1, 2 * W - 1)
            bias = F.grid_sample(table, disp[..., (1, 0)], mode="bilinear", align_corners=True)
            attn = attn + bias.reshape(B * self.heads, H * W, n)
        attn = F.softmax(attn, dim=2)
        out = torch.einsum("bmn,bcn->bcm", attn, v).reshape(B, C, H, W)
        return self.proj_out(out), pos.reshape(B, G, Hk, Wk, 2)


CASES = {
    # non-square map, 2 groups of 2 heads, DAT++ clamp mode, large offsets hit the clamp
    "clamp-2groups": dict(C=16, H=20, W=28, heads=4, groups=2, stride=4, ksize=5,
                          factor=-1.0, use_pe=True, offset_gain=8.0),
    # CVPR'22 tanh mode, factor 2, odd map sides
    "tanh-factor2": dict(C=12, H=17, W=13, heads=3, groups=1, stride=4, ksize=7,
                         factor=2.0, use_pe=True, offset_gain=4.0),
    # factor 0 (no offsets), kernel = stride (no padding), no bias
    "factor0-k=s-nope": dict(C=8, H=12, W=16, heads=2, groups=2, stride=4, ksize=4,
                             factor=0.0, use_pe=False, offset_gain=1.0),
    # DAT++-T stage-1 shape at a smaller width: stride 8, 9x9 kernel, 7x7 keys
    "dat56-shape": dict(C=16, H=56, W=56, heads=2, groups=1, stride=8, ksize=9,
                        factor=-1.0, use_pe=True, offset_gain=3.0),
}


def reference_and_params(case, seed=0, dtype=torch.float64):
    c = dict(CASES[case])
    gain = c.pop("offset_gain")
    torch.manual_seed(seed)
    ref = ReferenceDAttention(c["C"], c["H"], c["W"], c["heads"], c["groups"], c["stride"],
                              c["ksize"], c["factor"], c["use_pe"]).to(dtype).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():  # LayerNorm and bias away from 1 / 0 too
            p.copy_(torch.randn_like(p) * (0.3 if "weight" in name else 0.2))
        ref.conv_offset[3].weight.mul_(gain)
        if c["use_pe"]:
            ref.rpe_table.normal_(0, 1.0)
    spec = DatLayerSpec(heads=c["heads"], groups=c["groups"], stride=c["stride"],
                        offset_kernel=c["ksize"], offset_range_factor=c["factor"],
                        use_pe=c["use_pe"])
    params = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    x = torch.randn(2, c["C"], c["H"], c["W"], dtype=dtype)
    return ref, spec, params, x


def rel_err(a, b):
    """max |a - b| / max |b|."""
    return float(abs(a - b).max() / abs(b).max())
