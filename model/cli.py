"""``defslice model``: run the golden model on a configuration and report what it shows.

Writes ``OUT/model.json`` and ``OUT/model.md``: fixed-point error against float with its
bound, sliced against unsliced results, the share of clamped sampling points, and times;
for a ``dat`` workload also the whole DAT++ layer (``layer``): keys clamped to the map and
by a window, window sizes, the offset convolution's reach and the overlap that makes it
exact, and the sliced layer's difference from the unsliced one; and the fixed-point
layer's error against float (``layer_fixed``, :mod:`defslice.model.dat_layer_error`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from defslice.cli import add_config_arguments, config_from_args
from defslice.config import Config
from defslice.errors import DefsliceError
from defslice.model.dat_layer import (
    DatLayerSpec,
    dat_layer_trace,
    init_params,
    offset_conv_reach,
    required_overlap,
)
from defslice.model.fixed import dequantize_inputs, error_bound, quantize_inputs
from defslice.model.msda import msda_forward
from defslice.model.sliced import sliced_fixed_forward, sliced_forward
from defslice.model.slicing import SliceGrid
from defslice.model.workload import make_workload
from defslice.reporting import markdown_table, write_json


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_preset="dat56")
    parser.add_argument("--out", type=Path, default=Path("reports/model"),
                        help="output folder (default: reports/model)")
    parser.add_argument("--seed", type=int, default=0, help="workload seed (default: 0)")


def evaluate(cfg: Config, seed: int = 0) -> dict:
    """Run float, sliced float and sliced fixed-point models on one random workload."""
    wl = make_workload(cfg, seed)
    grid = SliceGrid.from_config(cfg)
    num = cfg.numerics
    t0 = time.perf_counter()
    unsliced = msda_forward(*wl.args)
    t1 = time.perf_counter()
    sliced, stats = sliced_forward(*wl.args, wl.reference_points, grid)
    t2 = time.perf_counter()
    inp = quantize_inputs(num, *wl.args)
    fixed = sliced_fixed_forward(cfg, inp, reference_points=wl.reference_points, grid=grid)
    t3 = time.perf_counter()
    fixed_real = fixed / 2.0 ** num.out_frac
    same_inputs, _ = sliced_forward(*dequantize_inputs(num, inp), wl.reference_points, grid)
    heads = cfg.workload.sample_heads
    err = np.abs(fixed_real - same_inputs)
    err = err.reshape(*err.shape[:2], heads, -1)
    bound = error_bound(num, inp.weight)
    return {
        "config": cfg.name,
        "seed": seed,
        "queries": int(cfg.workload.num_queries),
        "slices": grid.num_slices,
        "nonempty_slices": int((stats.queries_per_slice > 0).sum()),
        "clamped_fraction": stats.clamped_fraction,
        "sliced_vs_unsliced_max_abs": float(np.abs(sliced - unsliced).max()),
        "fixed_vs_float_same_inputs_max_abs": float(err.max()),
        "fixed_error_bound_max": float(bound.max()),
        "fixed_within_bound": bool((err <= bound + 1e-12).all()),
        "fixed_vs_float_raw_inputs_max_abs": float(np.abs(fixed_real - sliced).max()),
        "seconds": {"float_unsliced": t1 - t0, "float_sliced": t2 - t1,
                    "fixed_sliced": t3 - t2},
    }


def evaluate_layer(cfg: Config, seed: int = 0) -> dict:
    """The DAT++ layer of a ``dat`` workload on random input and weights, unsliced and
    sliced by ``cfg.slicing``.

    ``x`` is standard normal (the layer's input is LayerNorm's output in DAT); weights are
    drawn like PyTorch's default initialisation (:func:`~defslice.model.dat_layer.init_params`),
    both from ``seed``; float64.
    """
    w, s = cfg.workload, cfg.slicing
    spec = DatLayerSpec.from_config(cfg)
    H, W = w.levels[0]
    params = init_params(spec, w.embed_dim, H, W, seed=seed)
    x = np.random.default_rng(seed).standard_normal((w.batch, w.embed_dim, H, W))
    t0 = time.perf_counter()
    full = dat_layer_trace(x, params, spec)
    t1 = time.perf_counter()
    sliced = dat_layer_trace(x, params, spec, s)
    t2 = time.perf_counter()
    lay, grid = sliced.slicing, sliced.slicing.grid
    windows = grid.windows_array()[:, 0, 2:4]
    need = required_overlap(spec, H, W, s.slice_h, s.slice_w)
    cut = (lay.tap_valid != full.slicing.tap_valid).any(axis=(1, 2))
    diff = np.abs(sliced.y - full.y)
    return {
        "keys": int(full.map_clamped.size),
        "key_grid": list(w.key_grid),
        "map_clamped_fraction": float(full.map_clamped.mean()),
        "window_clamped_fraction": float(sliced.window_clamped.mean()),
        "windows": {"slices": grid.num_slices, "max": list(grid.max_window(0)),
                    "min": [int(windows[:, 0].min()), int(windows[:, 1].min())],
                    "slices_without_keys": int(grid.num_slices
                                               - np.unique(lay.key_slice).size)},
        "offset_conv_reach_px": list(offset_conv_reach(spec, H, W)),
        "required_overlap_px": list(need),
        "overlap": s.overlap,
        "offset_network_exact": bool(s.overlap >= max(need)),
        "keys_with_cut_offset_conv": int(cut.sum()),
        "offsets_changed_max_abs_px": float(np.abs(sliced.positions - full.positions).max()),
        "sliced_vs_unsliced_max_abs": float(diff.max()),
        "sliced_vs_unsliced_max_rel": float(diff.max() / np.abs(full.y).max()),
        "seconds": {"float_unsliced": t1 - t0, "float_sliced": t2 - t1},
    }


def _layer_rows(layer: dict) -> list[list[str]]:
    win = layer["windows"]
    reach, need = layer["offset_conv_reach_px"], layer["required_overlap_px"]
    return [
        ["keys (groups x Hk x Wk)", f"{layer['keys']} ({layer['key_grid'][0]} x "
                                    f"{layer['key_grid'][1]} per group)"],
        ["keys clamped to the map (DAT++ offset mode)",
         f"{100 * layer['map_clamped_fraction']:.1f}%"],
        ["keys moved by a window bound", f"{100 * layer['window_clamped_fraction']:.1f}%"],
        ["windows (rows x cols)", f"{win['slices']} slices, {win['min'][0]} x {win['min'][1]}"
                                  f" .. {win['max'][0]} x {win['max'][1]}, "
                                  f"{win['slices_without_keys']} without keys"],
        ["offset conv reach beyond a key's pixel (rows, cols)", f"{reach[0]}, {reach[1]}"],
        ["overlap that makes the offset network exact (rows, cols)",
         f"{need[0]}, {need[1]} (configured: {layer['overlap']})"],
        ["keys whose offset conv the window cuts", str(layer["keys_with_cut_offset_conv"])],
        ["max position change by slicing (px)", f"{layer['offsets_changed_max_abs_px']:.4g}"],
        ["sliced vs unsliced y, max abs (max rel)",
         f"{layer['sliced_vs_unsliced_max_abs']:.4g} "
         f"({layer['sliced_vs_unsliced_max_rel']:.3g})"],
    ] + [[f"time: layer {k} (s)", f"{v:.3f}"] for k, v in layer["seconds"].items()]


def evaluate_layer_fixed(cfg: Config, seed: int = 0) -> dict:
    """The fixed-point DAT++ layer against float on random weights, sliced and unsliced,
    and the worst error of each of its nonlinearities."""
    from defslice.model.dat_layer_error import layer_error, nonlinearity_errors

    hk, wk = cfg.workload.key_grid
    return {"sliced": layer_error(cfg, seed), "unsliced": layer_error(cfg, seed, sliced=False),
            "nonlinearities": nonlinearity_errors(cfg.layer_numerics, hk * wk)}


def _layer_fixed_rows(lf: dict) -> list[list[str]]:
    rows = []
    for mode in ("sliced", "unsliced"):
        for ref in ("raw", "same_inputs"):
            r = lf[mode][ref]
            rows.append([f"{mode}, vs float on {ref.replace('_', ' ')}",
                         f"{r['y_max_abs']:.4g}", f"{r['y_rms']:.4g}",
                         f"{100 * r['y_rel_rms']:.2f}%", f"{r['position_max_px']:.4g}",
                         f"{r['prob_max_abs']:.4g}"])
    return rows


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    res = evaluate(cfg, args.seed)
    if cfg.workload.kind == "dat":
        res["layer"] = evaluate_layer(cfg, args.seed)
        res["layer_fixed"] = evaluate_layer_fixed(cfg, args.seed)
    if not res["fixed_within_bound"]:
        raise DefsliceError("the fixed-point model exceeded its stated error bound")
    out: Path = args.out
    write_json(out / "model.json", res)
    rows = [[k, f"{v:.6g}" if isinstance(v, float) else str(v)]
            for k, v in res.items() if k not in ("seconds", "layer", "layer_fixed")]
    rows += [[f"time: {k} (s)", f"{v:.3f}"] for k, v in res["seconds"].items()]
    text = (f"# Golden model on `{cfg.name}`\n\n## Sampling engine\n\n"
            + markdown_table(["quantity", "value"], rows) + "\n")
    if "layer" in res:
        text += (f"\n## DAT++ layer\n\n{cfg.workload.describe()}; random input and "
                 f"weights (seed {args.seed}), float64, sliced Hs = {cfg.slicing.slice_h}, "
                 f"Ws = {cfg.slicing.slice_w}, overlap {cfg.slicing.overlap}.\n\n"
                 + markdown_table(["quantity", "value"], _layer_rows(res["layer"])) + "\n")
    if "layer_fixed" in res:
        lf = res["layer_fixed"]
        text += ("\n## DAT++ layer in fixed point against float (random weights, seed "
                 f"{args.seed})\n\n" + markdown_table(
                     ["case", "y max abs", "y rms", "y rms / float rms", "position max (px)",
                      "probability max abs"], _layer_fixed_rows(lf))
                 + "\n\n" + markdown_table(
                     ["nonlinearity", "worst error", "unit", "over"],
                     [[k, f"{v['worst']:.4g}", v["unit"], v["inputs"]]
                      for k, v in lf["nonlinearities"].items()]) + "\n")
    (out / "model.md").write_text(text)
    print(f"model: {cfg.name}: fixed vs float max |err| "
          f"{res['fixed_vs_float_same_inputs_max_abs']:.4g} (bound "
          f"{res['fixed_error_bound_max']:.4g}, within: {res['fixed_within_bound']}), "
          f"{100 * res['clamped_fraction']:.1f}% points clamped; wrote {out}/model.json")
    if "layer" in res:
        lay = res["layer"]
        print(f"model: DAT++ layer: {100 * lay['window_clamped_fraction']:.1f}% keys moved by "
              f"a window, {100 * lay['map_clamped_fraction']:.1f}% clamped to the map; offset "
              f"conv exact from overlap {max(lay['required_overlap_px'])} (configured "
              f"{lay['overlap']}); sliced vs unsliced max |dy| "
              f"{lay['sliced_vs_unsliced_max_abs']:.4g}")
    if "layer_fixed" in res:
        r = res["layer_fixed"]["sliced"]["raw"]
        print(f"model: {cfg.name}: fixed-point layer vs float (sliced, random weights): "
              f"y max |err| {r['y_max_abs']:.4g}, rms {r['y_rms']:.4g} "
              f"({100 * r['y_rel_rms']:.2f}% of the float rms), positions within "
              f"{r['position_max_px']:.3g} px")
    return 0
