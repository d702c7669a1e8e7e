"""A trained :class:`~defslice.nas.dat_torch.DatClassifier` with its deformable attention
computed by the bit-exact fixed-point layer (:mod:`defslice.model.dat_layer_fixed`).

Everything else of the classifier (stem, norms, head) stays in float; each attention
block quantizes its input to the map format, runs the integer datapath the hardware runs,
sliced at a given :class:`~defslice.model.slicing.SliceGrid`, and dequantizes its output.
The accuracy of such a copy is the accuracy of the hardware layer. Importing this module
needs PyTorch.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

from defslice.errors import InputError
from defslice.model.dat_layer_fixed import (
    LayerFormats,
    LayerGeometry,
    calibrate_formats,
    dat_layer_fixed_forward,
    dequantize_output,
    quantize_layer_input,
    quantize_layer_params,
    rail_counts,
)
from defslice.model.slicing import SliceGrid
from defslice.nas._torch import require_torch
from defslice.nas.dat_torch import DatClassifier, DAttention

torch = require_torch()
from torch import nn  # noqa: E402  (after the guarded import on purpose)

__all__ = [
    "FixedPointAttention",
    "attention_inputs",
    "attention_params",
    "calibrate_classifier",
    "fixed_point_accuracy",
    "fixed_point_classifier",
]


def attention_params(attn: DAttention) -> dict[str, np.ndarray]:
    """The block's parameters as float64 arrays under DAT's names (``proj_q.weight``...)."""
    return {k: v.detach().cpu().double().numpy() for k, v in attn.state_dict().items()}


class FixedPointAttention(nn.Module):
    """Evaluation-only stand-in for a :class:`DAttention` block, bit-exact with the RTL.

    Arguments
    ---------
    attn : DAttention
        The trained block (its weights are quantized once, here).
    formats : LayerFormats
        Fixed-point formats (:func:`calibrate_classifier` fits them to a model).
    grid : SliceGrid or None
        Slicing of the block's map, fixed at construction (``None``: unsliced).
    batch : int
        Images per call of the NumPy datapath (bounds its memory).
    """

    def __init__(self, attn: DAttention, formats: LayerFormats, grid: SliceGrid | None = None,
                 batch: int = 8) -> None:
        super().__init__()
        self.layer_spec = attn.spec.layer
        self.map_size = tuple(attn.spec.map_size)
        self.formats, self.grid, self.batch = formats, grid, batch
        self.qparams = quantize_layer_params(attention_params(attn), self.layer_spec, formats,
                                             self.map_size)
        self.geometry = LayerGeometry.build(self.layer_spec, self.map_size,
                                            formats.numerics.coord_frac, grid)
        #: ``{step: [values on a rail, values]}`` over every call (saturation watch).
        self.rails: dict[str, list[int]] = {}

    def forward(self, x: Any, layout: Any = None) -> Any:
        """``x`` (B, C, H, W) float -> the layer's output, float, same dtype and device."""
        if layout is not None:
            raise InputError("the fixed-point attention is sliced at construction "
                             "(FixedPointAttention(grid=...)); call it with layout=None")
        xs = x.detach().cpu().double().numpy()
        out = np.empty_like(xs)
        for i in range(0, xs.shape[0], self.batch):
            x_q = quantize_layer_input(xs[i:i + self.batch], self.formats)
            y, trace = dat_layer_fixed_forward(x_q, self.qparams, self.layer_spec,
                                               self.formats, geometry=self.geometry)
            for key, (rail, total) in rail_counts(trace, y, self.formats).items():
                acc = self.rails.setdefault(key, [0, 0])
                acc[0] += rail
                acc[1] += total
            out[i:i + self.batch] = dequantize_output(y, self.formats)
        return torch.from_numpy(out).to(dtype=x.dtype, device=x.device)


def fixed_point_classifier(model: DatClassifier, formats: LayerFormats,
                           grid: SliceGrid | None = None, batch: int = 8) -> DatClassifier:
    """A copy of ``model`` whose attention blocks are :class:`FixedPointAttention`.

    Call the copy as ``copy(images)`` (no layout: the slicing is ``grid``). Its fast
    sub-net cache is switched off, so :func:`defslice.nas.train.accuracy` runs the whole
    forward pass through the fixed-point blocks.
    """
    out = copy.deepcopy(model).eval()
    for stage in out.stages:
        for i, attn in enumerate(stage.attns):
            stage.attns[i] = FixedPointAttention(attn, formats, grid, batch)
    out.supports_cache = lambda: False
    return out


def attention_inputs(model: DatClassifier, images: Any, block: int = 0,
                     batch: int = 64) -> np.ndarray:
    """The input of attention block ``block`` (its LayerNorm's output), float64
    (N, C, H, W), as the float model computes it (calibration samples)."""
    stage = model.stages[0]
    if block >= len(stage.attns):
        raise InputError(f"the model has {len(stage.attns)} attention blocks, not {block + 1}")
    captured: list[np.ndarray] = []

    def hook(_mod: Any, args: tuple, _kw: Any = None) -> None:
        captured.append(args[0].detach().cpu().double().numpy())

    handle = stage.attns[block].register_forward_pre_hook(hook)
    try:
        model.eval()
        with torch.no_grad():
            for i in range(0, len(images), batch):
                model.stages[0](model.patch_proj(images[i:i + batch]))
    finally:
        handle.remove()
    return np.concatenate(captured)


def calibrate_classifier(model: DatClassifier, images: Any, formats: LayerFormats,
                         grid: SliceGrid | None = None, headroom: float = 2.0) -> LayerFormats:
    """``formats`` fitted (:func:`~defslice.model.dat_layer_fixed.calibrate_formats`) to
    the first attention block of ``model`` on ``images`` (e.g. training images)."""
    attn = model.stages[0].attns[0]
    x = attention_inputs(model, images)
    return calibrate_formats(formats, attn.spec.layer, attention_params(attn), x, grid,
                             headroom)


def fixed_point_accuracy(model: DatClassifier, images: Any, labels: Any,
                         formats: LayerFormats, grid: SliceGrid | None = None,
                         batch: int = 64) -> dict[str, Any]:
    """Top-1 accuracy of ``model`` in float and with the fixed-point attention, both
    sliced at ``grid`` (``None``: unsliced), on the same images.

    Returns ``float_accuracy``, ``fixed_accuracy``, their ``difference`` (fixed - float,
    a fraction), ``agreement`` (share of images whose predicted class is the same),
    ``images`` and ``on_rail``: the share of each saturating step's values that sit on
    a rail of their format (see :func:`~defslice.model.dat_layer_fixed.rail_counts`).
    """
    model.eval()
    fixed = fixed_point_classifier(model, formats, grid)
    layout = None
    if grid is not None:
        layout = model.layout(grid.slice_h, grid.slice_w, grid.overlap, grid.clamp)
    pf, px = [], []
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            pf.append(model(images[i:i + batch], layout).argmax(-1))
            px.append(fixed(images[i:i + batch]).argmax(-1))
    pf_t, px_t = torch.cat(pf), torch.cat(px)
    labels = torch.as_tensor(labels)
    acc_f = float((pf_t == labels).float().mean())
    acc_x = float((px_t == labels).float().mean())
    rails = fixed.stages[0].attns[0].rails
    return {"images": len(labels), "float_accuracy": acc_f, "fixed_accuracy": acc_x,
            "difference": acc_x - acc_f, "agreement": float((pf_t == px_t).float().mean()),
            "on_rail": {k: r / max(t, 1) for k, (r, t) in rails.items()}}


def evaluate_digits(cfg: Any, calibration_images: int = 256, progress: bool = False,
                    log: Any = print) -> dict[str, Any]:
    """The digits objective's classifier (trained or cached, :mod:`defslice.nas.evaluators`)
    with the fixed-point attention: accuracy against float, unsliced and sliced at
    ``cfg.slicing``, with ``cfg``'s formats and with formats calibrated on
    ``calibration_images`` training images."""
    from defslice.nas.evaluators import digits_objective

    acc, meta = digits_objective(cfg, progress=progress)
    model, val = acc.model, acc.val
    H, W = model.spec.map_size
    s = cfg.slicing
    grids = {"unsliced": None,
             f"sliced Hs={s.slice_h} Ws={s.slice_w} O={s.overlap}":
                 SliceGrid([(H, W)], s.slice_h, s.slice_w, s.overlap, s.clamp)}
    preset = LayerFormats.from_config(cfg)
    calibrated = calibrate_classifier(model, acc.train.images[:calibration_images], preset,
                                      grids[list(grids)[1]])
    rows = []
    for fname, fm in (("configuration", preset), ("calibrated", calibrated)):
        for gname, grid in grids.items():
            r = fixed_point_accuracy(model, val.images, val.labels, fm, grid)
            worst = max(r["on_rail"], key=r["on_rail"].get)
            log(f"fixed point: {gname}, {fname} formats: float {100 * r['float_accuracy']:.2f}%"
                f", fixed {100 * r['fixed_accuracy']:.2f}% ({100 * r['difference']:+.2f} "
                f"points), same class {100 * r['agreement']:.2f}%; most saturated step "
                f"{worst} ({100 * r['on_rail'][worst]:.3g}% of its values on a rail)")
            rows.append({"slicing": gname, "formats": fname, **r})
    return {"config": cfg.name, "classifier": meta.get("recipe", {}), "results": rows,
            "calibrated_formats": {"numerics": dataclasses.asdict(calibrated.numerics),
                                   "layer_numerics": dataclasses.asdict(calibrated.layer)}}


def main(argv: list[str] | None = None) -> int:
    """``python -m defslice.nas.fixed_point [--preset P | --config F] [--out DIR]``."""
    import argparse
    import json
    from pathlib import Path

    from defslice.cliargs import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("reports/fixed_point"))
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = evaluate_digits(config_from_args(args), args.calibration_images, progress=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fixed_point.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out / 'fixed_point.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
