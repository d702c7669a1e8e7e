"""``defslice bench``: performance figures of every stage, side by side in one run.

Writes ``OUT/bench.json`` (for machines) and ``OUT/bench.md`` (for people). Ratios are
measured in the same process on the same inputs, so machine noise affects both sides.
Stages register a function in :data:`BENCHES`; ``--only NAME`` runs one of them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from defslice import config as cfgmod
from defslice.errors import ToolError
from defslice.reporting import markdown_table, write_json


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_model(repeats: int = 2) -> dict:
    """Golden-model forward on the msda-xmsda encoder vs PyTorch's grid_sample reference.

    The reference is MMCV's ``multi_scale_deformable_attn_pytorch`` composition of
    ``grid_sample`` calls (:mod:`defslice.model.torch_reference`).
    """
    try:
        import torch

        from defslice.model.torch_reference import msda_torch
    except ImportError:
        raise ToolError("the model benchmark compares against PyTorch: "
                        "pip install torch==2.13.0") from None
    from defslice.model.fixed import fixed_forward, quantize_inputs
    from defslice.model.msda import msda_backward, msda_forward
    from defslice.model.workload import make_workload

    cfg = cfgmod.preset("msda-xmsda")
    wl = make_workload(cfg, seed=0, dtype=np.float32)
    value, shapes, loc, attn = wl.args

    def torch_forward():
        args = (torch.from_numpy(value), shapes, torch.from_numpy(loc), torch.from_numpy(attn))
        return msda_torch(*args).numpy()

    with torch.no_grad():
        ref = torch_forward()
        ours = msda_forward(*wl.args)
        t_torch = _best_of(torch_forward, repeats)
    t_numpy = _best_of(lambda: msda_forward(*wl.args), repeats)
    sub = slice(0, 8192)
    grad = np.ones((1, 8192, cfg.workload.embed_dim), dtype=np.float32)
    t_backward = _best_of(lambda: msda_backward(value, shapes, loc[:, sub], attn[:, sub],
                                                grad), 1)
    inp = quantize_inputs(cfg.numerics, value, shapes, loc[:, sub], attn[:, sub])
    t_fixed = _best_of(lambda: fixed_forward(cfg.numerics, inp), 1)
    return {
        "workload": "msda-xmsda encoder: 87296 queries, 8 heads, 32 ch, 5 levels, 4 points",
        "dtype": "float32",
        "torch_threads": torch.get_num_threads(),
        "numpy_forward_s": t_numpy,
        "torch_grid_sample_forward_s": t_torch,
        "forward_speedup_vs_torch": t_torch / t_numpy,
        "max_abs_diff_vs_torch": float(np.abs(ours - ref).max()),
        "numpy_backward_8192_queries_s": t_backward,
        "fixed_forward_8192_queries_s": t_fixed,
    }


#: name -> benchmark function returning a flat dict of figures
BENCHES: dict[str, Callable[[], dict]] = {"model": bench_model}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="output folder (default: reports)")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append",
                        help="run only these benchmarks (repeatable)")


def run(args: argparse.Namespace) -> int:
    names = args.only or list(BENCHES)
    results: dict[str, dict] = {}
    for name in names:
        print(f"bench: {name} ...", flush=True)
        t0 = time.perf_counter()
        results[name] = BENCHES[name]()
        results[name]["bench_wall_s"] = time.perf_counter() - t0
    doc = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
           **results}
    write_json(args.out / "bench.json", doc)
    lines = ["# defslice benchmarks", ""]
    for name, figs in results.items():
        rows = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in figs.items()]
        lines += [f"## {name}", "", markdown_table(["figure", "value"], rows), ""]
    (args.out / "bench.md").write_text("\n".join(lines))
    print(f"bench: wrote {args.out / 'bench.json'} and bench.md")
    return 0

