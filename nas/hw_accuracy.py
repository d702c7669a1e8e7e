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


def _predictor(make: Any, spec: Any, state: dict, formats: LayerFormats, x: SubNet,
               images: Any) -> Any:
    """In a worker (or here): ``(i0, i1) -> (float, fixed-point)`` predicted classes of
    ``images[i0:i1]`` for the model ``make(spec)`` with weights ``state`` sliced at ``x``."""
    torch.set_num_threads(1)
    model = make(spec)
    model.load_state_dict(state)
    model.eval()
    grid = SliceGrid([model.attn.spec.map_size], x.slice_h, x.slice_w, x.overlap, "clamp")
    fixed = FixedPointAttention(model.attn, formats, grid, batch=8)
    layout = model.layout(x.slice_h, x.slice_w, x.overlap)

    def predict(span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        imgs = images[span[0]:span[1]]
        with torch.no_grad():
            return (model(imgs, layout).argmax(-1).numpy(),
                    model.forward_with(imgs, fixed).argmax(-1).numpy())

    return predict


def fixed_point_figures(cfg: Config, model: Any, data: Any, calibration: Any, x: SubNet,
                        images: int | None = None, workers: int = 0, chunk: int = 50,
                        log: Any = None) -> dict[str, Any]:
    """Float and fixed-point accuracy of ``model`` (a
    :class:`~defslice.nas.classifier.DatPlusClassifier`) sliced at ``x`` on the first
    ``images`` of ``data`` (all by default), the same images for both, ``chunk`` images
    at a time in ``workers`` processes (0: here).

    Returns ``{"images", "float": {"accuracy", "se"}, "fixed_point": {...}, "difference":
    paired (fixed - float), "agreement": share of images with the same predicted class,
    "formats": the calibrated formats}``.
    """
    from defslice.nas.evaluation import PoolRunner, SerialRunner

    model.eval()
    attn = model.attn
    grid = SliceGrid([attn.spec.map_size], x.slice_h, x.slice_w, x.overlap, "clamp")
    formats = calibrate_formats(LayerFormats.from_config(cfg), attn.spec.layer,
                                attention_params(attn),
                                _attention_inputs(model, calibration[:CALIBRATION_IMAGES]),
                                grid)
    n = len(data) if images is None else min(images, len(data))
    spans = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    args = (type(model), model.spec, state, formats, x, data.images[:n].clone().share_memory_())
    runner = (PoolRunner(_predictor, args, workers) if workers > 0
              else SerialRunner(_predictor(*args)))
    got = {}
    with runner:
        for span, pred, _seconds in runner.run(spans):
            got[span] = pred
            if log is not None:
                log(f"nas: fixed-point layer, {sum(b - a for a, b in got)}/{n} images")
    pf = np.concatenate([got[s][0] for s in spans])
    px = np.concatenate([got[s][1] for s in spans])
    labels = data.labels[:n].numpy()
    cf, cx = pf == labels, px == labels
    return {"images": int(n), "subnet": x.as_dict(),
            "float": {"accuracy": float(cf.mean()), "se": standard_error(cf)},
            "fixed_point": {"accuracy": float(cx.mean()), "se": standard_error(cx)},
            "difference": paired(cx, cf).as_dict(),
            "agreement": float((pf == px).mean()),
            "formats": {"numerics": dataclasses.asdict(formats.numerics),
                        "layer_numerics": dataclasses.asdict(formats.layer)}}
