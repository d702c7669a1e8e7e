"""Where the tensors that only some dataflows use live, and how big they are.

The value, query-record, descriptor and output tensors follow the layout contract
(:class:`defslice.model.layout.DramLayout`). Tensors the RTL never touches (the per-point
sampled values of the layer-by-layer baseline, the DAT layer's weights, query map ``q``
and layer output ``y``) are placed after it, page-aligned, with the same row padding to
whole bus beats. Their addresses only matter for 4 KiB splitting and address traces.
"""

from __future__ import annotations

from dataclasses import dataclass

from defslice.config import Config
from defslice.model.layout import PAGE, DramLayout

__all__ = ["DatLayerShape", "ExtraTensors"]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class DatLayerShape:
    """Sizes of the whole DAT deformable-attention layer around the sampling datapath.

    The layer (DAT, Xia et al. CVPR 2022; DAT++ stage 1 for ``dat56``) on an ``H x W``
    map with ``C`` channels in ``heads`` attention heads: ``q = x Wq`` over every pixel;
    the offset network (depthwise ``k x k`` conv with stride, LayerNorm, GELU, 1x1 conv
    to 2 channels, shared by the ``G`` offset groups, ``C / G`` channels each); bilinear sampling of
    ``Hk * Wk`` keys per group (the datapath the RTL implements); ``k = x~ Wk``,
    ``v = x~ Wv``; attention of every pixel's query over the sampled keys with a relative
    position bias table of ``(2H - 1) (2W - 1)`` entries per attention head;
    ``y = attn Wo``.

    Members (bytes, unpadded)
    -------------------------
    map_pixels : int
        ``H * W`` queries of the layer.
    proj_weight_bytes : int
        One ``C x C`` projection plus its bias.
    offset_net_bytes : int
        Offset-network parameters.
    rpb_bytes : int
        Relative position bias table.
    """

    map_pixels: int
    proj_weight_bytes: int
    offset_net_bytes: int
    rpb_bytes: int

    @classmethod
    def from_config(cls, cfg: Config) -> DatLayerShape:
        w, eb = cfg.workload, cfg.dram.element_bytes
        h, wd = w.levels[0]
        c, cg, k = w.embed_dim, w.sample_channels, w.offset_kernel
        return cls(
            map_pixels=h * wd,
            proj_weight_bytes=(c * c + c) * eb,
            # depthwise k x k + bias, LayerNorm gain + bias, 1x1 conv to 2 channels.
            offset_net_bytes=(cg * k * k + cg + 2 * cg + 2 * cg) * eb,
            rpb_bytes=(2 * h - 1) * (2 * wd - 1) * w.heads * eb,
        )

    @property
    def stage1_weight_bytes(self) -> int:
        """Weights of the offset/sampling stage: Wq and the offset network."""
        return self.proj_weight_bytes + self.offset_net_bytes

    @property
    def stage2_weight_bytes(self) -> int:
        """Weights of the attention stage: Wk, Wv, Wo and the bias table."""
        return 3 * self.proj_weight_bytes + self.rpb_bytes

    @property
    def weight_bytes(self) -> int:
        return self.stage1_weight_bytes + self.stage2_weight_bytes


class ExtraTensors:
    """Base addresses and strides of the tensors outside the layout contract.

    Parameters
    ----------
    cfg : Config
    layout : DramLayout
        The contract's layout for the same number of queries.

    Members
    -------
    sampled_stride : int
        Bytes per query of the per-point sampled values (``M L P D`` elements).
    sampled_base, qmap_base, weights_base, y_base, records_out_base : int
        Page-aligned base addresses.
    """

    def __init__(self, cfg: Config, layout: DramLayout) -> None:
        w, d, bus = cfg.workload, cfg.dram, layout.bus_bytes
        lq = layout.num_queries
        self.sampled_stride = _round_up(
            w.sample_heads * w.num_levels * w.points * w.sample_channels * d.element_bytes, bus)
        base = layout.total_bytes
        self.sampled_base = base
        base = _round_up(base + lq * self.sampled_stride, PAGE)
        self.weights_base = base
        if w.kind == "dat":
            shape = DatLayerShape.from_config(cfg)
            self.dat: DatLayerShape | None = shape
            base = _round_up(base + shape.weight_bytes, PAGE)
            self.qmap_base = base
            base = _round_up(base + shape.map_pixels * layout.pixel_stride, PAGE)
            self.y_base = base
            base = _round_up(base + shape.map_pixels * layout.out_stride, PAGE)
        else:
            self.dat = None
            self.qmap_base = self.y_base = base
        self.end = base
