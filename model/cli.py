"""``defslice model``: run the golden model on a configuration and report what it shows.

Writes ``OUT/model.json`` and ``OUT/model.md``: fixed-point error against float with its
bound, sliced against unsliced results, the share of clamped sampling points, and times;
for a ``dat`` workload also the whole fixed-point layer's error against float
(:mod:`defslice.model.dat_layer_error`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from defslice.cli import add_config_arguments, config_from_args
from defslice.config import Config
from defslice.errors import DefsliceError
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
        res["layer_fixed"] = evaluate_layer_fixed(cfg, args.seed)
    if not res["fixed_within_bound"]:
        raise DefsliceError("the fixed-point model exceeded its stated error bound")
    out: Path = args.out
    write_json(out / "model.json", res)
    rows = [[k, f"{v:.6g}" if isinstance(v, float) else str(v)]
            for k, v in res.items() if k != "seconds"]
    rows = [r for r in rows if r[0] != "layer_fixed"]
    rows += [[f"time: {k} (s)", f"{v:.3f}"] for k, v in res["seconds"].items()]
    text = f"# Golden model on `{cfg.name}`\n\n" + markdown_table(["quantity", "value"], rows)
    if "layer_fixed" in res:
        lf = res["layer_fixed"]
        text += ("\n\n## Fixed-point DAT++ layer against float (random weights, seed "
                 f"{args.seed})\n\n" + markdown_table(
                     ["case", "y max abs", "y rms", "y rms / float rms", "position max (px)",
                      "probability max abs"], _layer_fixed_rows(lf))
                 + "\n\n" + markdown_table(
                     ["nonlinearity", "worst error", "unit", "over"],
                     [[k, f"{v['worst']:.4g}", v["unit"], v["inputs"]]
                      for k, v in lf["nonlinearities"].items()]))
    (out / "model.md").write_text(text + "\n")
    print(f"model: {cfg.name}: fixed vs float max |err| "
          f"{res['fixed_vs_float_same_inputs_max_abs']:.4g} (bound "
          f"{res['fixed_error_bound_max']:.4g}, within: {res['fixed_within_bound']}), "
          f"{100 * res['clamped_fraction']:.1f}% points clamped; wrote {out}/model.json")
    if "layer_fixed" in res:
        r = res["layer_fixed"]["sliced"]["raw"]
        print(f"model: {cfg.name}: fixed-point layer vs float (sliced, random weights): "
              f"y max |err| {r['y_max_abs']:.4g}, rms {r['y_rms']:.4g} "
              f"({100 * r['y_rel_rms']:.2f}% of the float rms), positions within "
              f"{r['position_max_px']:.3g} px")
    return 0
