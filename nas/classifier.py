"""The DAT++-style image classifier whose stage-1 deformable attention is the sliced layer.

Stages, as DAT++ builds them but narrower (``docs/nas.md``, "The classifier"):

* stem: the image resized bilinearly to the workload's map (28 x 28 -> 56 x 56 for
  Fashion-MNIST on ``dat56``), a 3 x 3 convolution to C channels, LayerNorm;
* stage 1 on the map: one deformable-attention block ``x + attn(norm(x))``, ``attn``
  the configuration's DAT layer (:class:`~defslice.nas.dat_torch.DAttention`, the only
  part the slicing changes);
* downsampling by :data:`POOL` (average pool, 1 x 1 convolution, LayerNorm), stage 2;
* downsampling by 2 (2 x 2 convolution of stride 2, LayerNorm), stage 3;
* head: LayerNorm of the global average, linear.

A block of stages 2 and 3 is DAT++'s local block with a depthwise 7 x 7 convolution as
its token mixer and DAT++'s MLP with a depthwise 3 x 3 convolution. The first
downsampling pools before it projects, so the network needs the attention's output
only as averages over 4 x 4 cells, which ``DAttention.attend(..., pooled=g)`` computes
exactly and slice by slice: a sub-net costs a fraction of the full map's attention.
:meth:`DatPlusClassifier.cache_inputs` and :meth:`~DatPlusClassifier.forward_cached`
split the forward pass where the slicing starts (the protocol of
:class:`~defslice.nas.dat_torch.DatClassifier`), so many sub-nets are scored on the same
images without redoing the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from defslice.errors import ConfigError
from defslice.model.slicing import SliceGrid
from defslice.nas._torch import require_torch
from defslice.nas.dat_torch import DatSpec, DAttention, LayerNormProxy, SliceLayout

torch = require_torch()
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

if TYPE_CHECKING:
    from torch import Tensor

    from defslice.config import Config

__all__ = ["CLASSIFIER_VERSION", "POOL", "ClassifierSpec", "DatPlusClassifier"]

#: Version of this module's network (layers, their order and names); part of the
#: cached weights' key, so weights of another version are never reused.
CLASSIFIER_VERSION = 1
#: Cell side of the first downsampling, map pixels.
POOL = 4


@dataclass(frozen=True)
class ClassifierSpec:
    """Shape of a :class:`DatPlusClassifier`.

    Members
    -------
    attention : DatSpec
        Stage 1 and its DAT layer; ``attention.img_size`` is the map, C = ``dim``.
    image_size : (int, int)
        Input images (H, W) the classifier is trained on, pixels (the stem resizes
        them to the map).
    in_chans : int
        Image channels.
    dims : (int, int)
        Channels of stages 2 and 3.
    depths : (int, int)
        Blocks of stages 2 and 3.
    mlp_ratio : int
        Hidden width of a block's MLP relative to its channels.
    num_classes : int
        Classes of the head.
    """

    attention: DatSpec
    image_size: tuple[int, int] = (28, 28)
    in_chans: int = 1
    dims: tuple[int, int] = (96, 192)
    depths: tuple[int, int] = (1, 1)
    mlp_ratio: int = 2
    num_classes: int = 10

    def __post_init__(self) -> None:
        h, w = self.map_size
        if h % (2 * POOL) or w % (2 * POOL):
            raise ConfigError("workload.levels", self.map_size,
                              f"a map whose sides are multiples of {2 * POOL} (two "
                              "downsamplings of the classifier)")

    @property
    def map_size(self) -> tuple[int, int]:
        """(H, W) of stage 1, pixels."""
        return self.attention.map_size

    @classmethod
    def from_config(cls, cfg: Config, **overrides: Any) -> ClassifierSpec:
        """The classifier of ``cfg.workload``'s DAT layer on its map (one image channel,
        10 classes: Fashion-MNIST) unless overridden."""
        attention = DatSpec.from_config(cfg, in_chans=1, mlp_ratio=0.0,
                                        norm_before_pool=False, num_classes=10)
        return cls(attention=attention, **overrides)

    def as_dict(self) -> dict:
        return asdict(self)


class LocalBlock(nn.Module):
    """``x + dwconv7(norm(x))`` then ``x + mlp(norm(x))``, the MLP being 1x1 conv, depthwise
    3x3 conv, GELU, 1x1 conv (DAT++'s MLP with convolution)."""

    def __init__(self, dim: int, ratio: int) -> None:
        super().__init__()
        hidden = dim * ratio
        self.norm1 = LayerNormProxy(dim)
        self.mixer = nn.Conv2d(dim, dim, 7, 1, 3, groups=dim)
        self.norm2 = LayerNormProxy(dim)
        self.linear1 = nn.Conv2d(dim, hidden, 1)
        self.dwc = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.linear2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.linear2(F.gelu(self.dwc(self.linear1(self.norm2(x)))))


class DatPlusClassifier(nn.Module):
    """See the module docstring. ``forward(images, layout)``: images (B, in_chans, H, W),
    a :class:`SliceLayout` of stage 1 (``None``: unsliced); returns logits (B, classes).
    """

    def __init__(self, spec: ClassifierSpec) -> None:
        super().__init__()
        self.spec = spec
        a = spec.attention
        c, (d2, d3) = a.dim, spec.dims
        self.stem = nn.Sequential(nn.Conv2d(spec.in_chans, c, 3, 1, 1), LayerNormProxy(c))
        self.norm1 = LayerNormProxy(c)
        self.attn = DAttention(a)
        self.down1 = nn.Sequential(nn.Conv2d(c, d2, 1), LayerNormProxy(d2))
        self.stage2 = nn.Sequential(*(LocalBlock(d2, spec.mlp_ratio)
                                      for _ in range(spec.depths[0])))
        self.down2 = nn.Sequential(nn.Conv2d(d2, d3, 2, 2), LayerNormProxy(d3))
        self.stage3 = nn.Sequential(*(LocalBlock(d3, spec.mlp_ratio)
                                      for _ in range(spec.depths[1])))
        self.norm = nn.LayerNorm(d3)
        self.head = nn.Linear(d3, spec.num_classes)

    @property
    def cells(self) -> int:
        """Side of the grid after the first downsampling (pooled attention cells)."""
        return self.spec.map_size[0] // POOL

    def layout(self, slice_h: int, slice_w: int, overlap: int) -> SliceLayout:
        """The :class:`SliceLayout` of sub-net ``(slice_h, slice_w, overlap)`` on stage 1's
        map (positions clamped into the windows)."""
        a = self.spec.attention
        grid = SliceGrid([a.map_size], slice_h, slice_w, overlap, "clamp")
        return SliceLayout.build(grid, a.layer)

    def supports_cache(self) -> bool:
        """Always: :meth:`cache_inputs` applies to every input."""
        return True

    def stem_output(self, images: Tensor) -> Tensor:
        """The residual stream entering stage 1, (B, C, H, W) on the map."""
        size = self.spec.map_size
        img = images if tuple(images.shape[-2:]) == size else F.interpolate(
            images, size=size, mode="bilinear", align_corners=False)
        return self.stem(img)

    def cache_inputs(self, images: Tensor, grad: bool = False) -> dict:
        """Everything before the slicing acts: the attention's prepared inputs and the
        ``POOL x POOL`` cell averages of the residual stream. ``grad``: keep the graph."""
        with torch.set_grad_enabled(grad):
            x = self.stem_output(images)
            return {"prep": self.attn.prepare(self.norm1(x)), "x_pool": F.avg_pool2d(x, POOL)}

    def forward_cached(self, cache: dict, layout: SliceLayout | None) -> Tensor:
        """Logits from :meth:`cache_inputs` under ``layout`` (``None``: unsliced)."""
        return self._after_pool(cache["x_pool"] + self.attn.attend(cache["prep"], layout,
                                                                   pooled=self.cells))

    def forward_with(self, images: Tensor, attention: Callable[[Tensor], Tensor]) -> Tensor:
        """Logits with stage 1's attention computed by ``attention`` (its normalized input
        (B, C, H, W) -> its output, same shape), e.g. the fixed-point layer."""
        x = self.stem_output(images)
        return self._after_pool(F.avg_pool2d(x + attention(self.norm1(x)), POOL))

    def _after_pool(self, y: Tensor) -> Tensor:
        y = self.stage2(self.down1(y))
        y = self.stage3(self.down2(y))
        return self.head(self.norm(y.mean((2, 3))))

    def forward(self, images: Tensor, layout: SliceLayout | None = None) -> Tensor:
        return self.forward_cached(self.cache_inputs(images, torch.is_grad_enabled()), layout)
