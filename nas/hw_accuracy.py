"""Accuracy of the classifier with its attention computed by the bit-exact fixed-point layer.

The classifier's stage-1 attention is replaced by
:class:`~defslice.nas.fixed_point.FixedPointAttention` (the integers the RTL produces)
sliced at the chosen sub-net; everything else stays in float. The formats are the
configuration's ``[numerics]`` and ``[layer_numerics]`` fitted to the trained weights by
:func:`~defslice.model.dat_layer_fixed.calibrate_formats` on training images, as the
hardware would be configured for this model. Importing this module needs PyTorch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from defslice.config import Config
from defslice.model.dat_layer_fixed import LayerFormats, calibrate_formats
from defslice.model.slicing import SliceGrid
from defslice.nas._torch import require_torch
from defslice.nas.fixed_point import FixedPointAttention, attention_params
from defslice.nas.space import SubNet
from defslice.nas.stats import paired, standard_error

torch = require_torch()

__all__ = ["CALIBRATION_IMAGES", "fixed_point_figures"]

#: Training images the formats are calibrated on.
CALIBRATION_IMAGES = 256


def _attention_inputs(model: Any, images: Any, batch: int = 64) -> np.ndarray:
    """Stage 1's attention input (its LayerNorm's output), float64 (N, C, H, W)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(model.norm1(model.stem_output(images[i:i + batch])).double().numpy())
    return np.concatenate(out)


def fixed_point_figures(cfg: Config, model: Any, data: Any, calibration: Any, x: SubNet,
                        images: int | None = None, batch: int = 32,
                        log: Any = None) -> dict[str, Any]:
    """Float and fixed-point accuracy of ``model`` (a
    :class:`~defslice.nas.classifier.DatPlusClassifier`) sliced at ``x`` on the first
    ``images`` of ``data`` (all by default), the same images for both.

    Returns ``{"images", "float": {"accuracy", "se"}, "fixed_point": {...}, "difference":
    paired (fixed - float), "agreement": share of images with the same predicted class,
    "formats": the calibrated formats}``.
    """
    model.eval()
    attn = model.attn
    grid = SliceGrid([attn.spec.map_size], x.slice_h, x.slice_w, x.overlap, "clamp")
    formats = calibrate_formats(LayerFormats.from_config(cfg), attn.spec.layer,
                                attention_params(attn),
                                _attention_inputs(model, calibration[:CALIBRATION_IMAGES]),
                                grid)
    fixed = FixedPointAttention(attn, formats, grid, batch=8)
    layout = model.layout(x.slice_h, x.slice_w, x.overlap)
    n = len(data) if images is None else min(images, len(data))
    pred_f, pred_x = [], []
    with torch.no_grad():
        for i in range(0, n, batch):
            imgs = data.images[i:min(i + batch, n)]
            pred_f.append(model(imgs, layout).argmax(-1))
            pred_x.append(model.forward_with(imgs, fixed).argmax(-1))
            if log is not None and (i // batch) % 20 == 0:
                log(f"nas: fixed-point layer, {i + len(imgs)}/{n} images")
    pf, px = torch.cat(pred_f), torch.cat(pred_x)
    labels = data.labels[:n]
    cf, cx = (pf == labels).numpy(), (px == labels).numpy()
    return {"images": int(n), "subnet": x.as_dict(),
            "float": {"accuracy": float(cf.mean()), "se": standard_error(cf)},
            "fixed_point": {"accuracy": float(cx.mean()), "se": standard_error(cx)},
            "difference": paired(cx, cf).as_dict(),
            "agreement": float((pf == px).float().mean()),
            "formats": {"numerics": dataclasses.asdict(formats.numerics),
                        "layer_numerics": dataclasses.asdict(formats.layer)}}
