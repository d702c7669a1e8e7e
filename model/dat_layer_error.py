"""Error of the fixed-point DAT++ layer against float: each nonlinearity over its whole
input range, and the whole layer on random weights (``docs/numerics.md``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from defslice.config import Config, LayerNumericsConfig
from defslice.model.dat_layer import DatLayerSpec, dat_layer_trace, init_params
from defslice.model.dat_layer_fixed import (
    LayerFormats,
    dat_layer_fixed_forward,
    dequantize_layer_params,
    dequantize_output,
    quantize_layer_input,
    quantize_layer_params,
    rail_counts,
)
from defslice.model.fixedpoint import (
    LayerTables,
    exp2_fixed,
    gelu_fixed,
    reciprocal,
    rsqrt_normalize,
    tanh_fixed,
)
from defslice.model.slicing import SliceGrid

__all__ = ["layer_error", "nonlinearity_errors"]


def nonlinearity_errors(ln: LayerNumericsConfig, max_keys: int) -> dict[str, dict[str, Any]]:
    """Worst error of every table nonlinearity against float64, exhaustively.

    Arguments
    ---------
    ln : LayerNumericsConfig
    max_keys : int
        Most keys one softmax sums (the reciprocal's input range).

    Returns
    -------
    dict of name -> {"worst": float, "unit": str, "inputs": str}: ``rsqrt`` relative
    error over every ``V >= 1`` (bounded per table interval, exact); ``gelu`` and ``tanh``
    absolute error in real units over every ``act_bits`` input; ``exp2`` absolute error
    (the result is at most 1) over every exponent; ``reciprocal`` relative error over every
    sum of up to ``max_keys`` terms.
    """
    tab = LayerTables.build(ln)
    T, R = ln.rsqrt_index_bits, ln.rsqrt_frac
    i = np.arange(1 << (T - 2), 1 << T, dtype=np.float64)
    r = tab.rsqrt / 2.0 ** R
    rsq = float(np.maximum(np.abs(r * np.sqrt(i / 2 ** T) - 1),
                           np.abs(r * np.sqrt((i + 1) / 2 ** T) - 1)).max())
    # the same, measured on every V below 2^20 (normalisation included)
    v = np.arange(1, 1 << 20)
    idx, e = rsqrt_normalize(v, T)
    approx = tab.rsqrt[idx - (1 << (T - 2))] * 2.0 ** (-R - e // 2)
    rsq_seen = float(np.abs(approx * np.sqrt(v.astype(np.float64)) - 1).max())
    a = np.arange(-(1 << (ln.act_bits - 1)), 1 << (ln.act_bits - 1))
    u = a / 2.0 ** ln.n_frac
    exact_gelu = u * 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(-u / math.sqrt(2))
    gelu = float(np.abs(gelu_fixed(a, tab.gelu) / 2.0 ** ln.n_frac - exact_gelu).max())
    tanh = float(np.abs(tanh_fixed(a, tab.tanh, ln.tanh_frac) / 2.0 ** ln.tanh_frac
                        - np.tanh(a / 2.0 ** ln.t_frac)).max())
    ub, ef = ln.exp_index_bits, ln.exp_frac
    ex = -np.arange(0, (ef + 3) << ub)
    exp2 = float(np.abs(exp2_fixed(ex, tab.exp2, ub, ef) / 2.0 ** ef
                        - np.exp2(ex / 2.0 ** ub)).max())
    s = np.arange(1 << ef, max_keys * (1 << ef) + 1)
    k = ef + ln.recip_frac
    exact = 2.0 ** k / s
    recip = float(((exact - reciprocal(s, k)) / exact).max())
    return {
        "rsqrt": {"worst": rsq, "seen": rsq_seen, "unit": "relative",
                  "inputs": "every V >= 1 (bound per table interval; 'seen': every V < 2^20)"},
        "gelu": {"worst": gelu, "unit": "absolute", "inputs": f"every Q({ln.n_frac}) input"},
        "tanh": {"worst": tanh, "unit": "absolute", "inputs": f"every Q({ln.t_frac}) input"},
        "exp2": {"worst": exp2, "unit": "absolute (result <= 1)",
                 "inputs": f"every Q({ub}) exponent <= 0"},
        "reciprocal": {"worst": recip, "unit": "relative",
                       "inputs": f"every sum of 1 to {max_keys} exponentials"},
    }


def _figures(y: np.ndarray, ref: Any, tr: dict, fm: LayerFormats) -> dict[str, float]:
    err = y - ref.y
    f = fm.numerics.coord_frac
    return {
        "y_max_abs": float(np.abs(err).max()),
        "y_rms": float(np.sqrt((err ** 2).mean())),
        "y_float_rms": float(np.sqrt((ref.y ** 2).mean())),
        "y_rel_rms": float(np.sqrt((err ** 2).mean() / (ref.y ** 2).mean())),
        "position_max_px": float(np.abs(tr["pos_sample"] / 2.0 ** f
                                        - ref.sample_positions).max()),
        "prob_max_abs": float(np.abs(tr["prob"] / 2.0 ** fm.layer.prob_frac
                                     - ref.probs).max()),
    }


def layer_error(cfg: Config, seed: int = 0, images: int = 1, params: dict | None = None,
                x: np.ndarray | None = None, sliced: bool = True) -> dict[str, Any]:
    """The fixed-point layer of ``cfg`` against the float64 layer.

    Default weights: :func:`defslice.model.dat_layer.init_params` (PyTorch's initial
    distributions) with ``seed``; default input: ``images`` maps of standard normal
    channels (a LayerNorm output; white noise, the hardest case for sampling). ``raw``
    compares with float on the real weights and input; ``same_inputs`` with float on the
    dequantized weights and input, which isolates the datapath's own rounding;
    ``on_rail`` gives the share of each saturating step's values on a rail of its format
    (:func:`~defslice.model.dat_layer_fixed.rail_counts`).
    """
    spec = DatLayerSpec.from_config(cfg)
    H, W = cfg.workload.levels[0]
    c = cfg.workload.embed_dim
    if params is None:
        params = init_params(spec, c, H, W, seed=seed)
    if x is None:
        x = np.random.default_rng(seed + 1).standard_normal((images, c, H, W))
    grid = SliceGrid.from_config(cfg) if sliced else None
    fm = LayerFormats.from_config(cfg)
    qp = quantize_layer_params(params, spec, fm, (H, W))
    x_q = quantize_layer_input(x, fm)
    y_q, tr = dat_layer_fixed_forward(x_q, qp, spec, fm, grid)
    y = dequantize_output(y_q, fm)
    raw = dat_layer_trace(np.asarray(x, dtype=np.float64), params, spec, grid)
    same = dat_layer_trace(x_q / 2.0 ** fm.numerics.value_frac,
                           dequantize_layer_params(qp, spec, fm), spec, grid)
    rails = {k: r / t for k, (r, t) in rail_counts(tr, y_q, fm).items()}
    return {"sliced": sliced, "images": int(x.shape[0]), "seed": seed,
            "raw": _figures(y, raw, tr, fm), "same_inputs": _figures(y, same, tr, fm),
            "on_rail": rails}


#: The cases of ``docs/numerics.md``'s table: (name, preset, workload changes).
CASES = (("dat56", "dat56", {}), ("dat56-b", "dat56-b", {}),
         ("dat56, 2 groups", "dat56", {"groups": 2}),
         ("dat56, factor 2 (tanh)", "dat56", {"offset_range_factor": 2.0}))


def main(argv: list[str] | None = None) -> int:
    """``python -m defslice.model.dat_layer_error [--images N] [--seed S]``: the table of
    ``docs/numerics.md`` (Markdown on stdout)."""
    import argparse

    from defslice.config import preset
    from defslice.reporting import markdown_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    for name, base, change in CASES:
        cfg = preset(base).replace(workload=change) if change else preset(base)
        for sliced in (True, False):
            res = layer_error(cfg, args.seed, args.images, sliced=sliced)
            r, s = res["raw"], res["same_inputs"]
            rows.append([name, "sliced" if sliced else "unsliced", f"{r['y_max_abs']:.4f}",
                         f"{100 * r['y_rel_rms']:.2f}%", f"{100 * s['y_rel_rms']:.2f}%",
                         f"{r['position_max_px']:.3f}", f"{r['prob_max_abs']:.4f}"])
    print(markdown_table(["layer", "slicing", "y max abs", "y rms / float rms",
                          "same inputs: y rms / float rms", "position max (px)",
                          "probability max abs"], rows))
    hk, wk = preset("dat56").workload.key_grid
    err = nonlinearity_errors(preset("dat56").layer_numerics, hk * wk)
    print()
    print(markdown_table(["nonlinearity", "worst error", "unit", "over"],
                         [[k, f"{v['worst']:.3g}", v["unit"], v["inputs"]]
                          for k, v in err.items()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
