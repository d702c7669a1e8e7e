"""The golden-model stage: float, sliced float and sliced fixed point on one workload.

:func:`run` writes ``OUT/model.json`` (:class:`ModelReport`) and ``OUT/model.md``: the
fixed-point error against float with its bound, sliced against unsliced results, the share
of clamped sampling points, and times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defslice.cliargs import option
from defslice.config import Config
from defslice.errors import DefsliceError
from defslice.records import Record
from defslice.reporting import markdown_table

__all__ = ["ModelOptions", "ModelReport", "ModelSeconds", "evaluate", "run"]


@dataclass(frozen=True)
class ModelOptions:
    """Options of the model stage: ``seed`` of the random workload."""

    seed: int = option(0, "workload seed")


@dataclass(frozen=True)
class ModelSeconds(Record):
    """Wall time of each model run (s)."""

    float_unsliced: float
    float_sliced: float
    fixed_sliced: float


@dataclass(frozen=True)
class ModelReport(Record):
    """What the golden model shows on one random workload (``model.json``).

    Members
    -------
    config, seed, queries, slices, nonempty_slices
        The run: configuration name, workload seed, query count, slices (all, non-empty).
    clamped_fraction : float
        Share of sampling points outside their slice's window (clamped), in [0, 1].
    sliced_vs_unsliced_max_abs : float
        Largest |sliced float - unsliced float| output difference.
    fixed_vs_float_same_inputs_max_abs, fixed_error_bound_max, fixed_within_bound
        Largest |fixed point - float| on the same quantized inputs, the largest stated
        bound, and whether every output is within its bound.
    fixed_vs_float_raw_inputs_max_abs : float
        Largest |fixed point - float on the unquantized inputs|.
    seconds : ModelSeconds
    """

    config: str
    seed: int
    queries: int
    slices: int
    nonempty_slices: int
    clamped_fraction: float
    sliced_vs_unsliced_max_abs: float
    fixed_vs_float_same_inputs_max_abs: float
    fixed_error_bound_max: float
    fixed_within_bound: bool
    fixed_vs_float_raw_inputs_max_abs: float
    seconds: ModelSeconds

    def markdown(self) -> str:
        """``model.md``: the figures as a table."""
        rows = [[k, f"{v:.6g}" if isinstance(v, float) else str(v)]
                for k, v in self.to_json().items() if k != "seconds"]
        rows += [[f"time: {k} (s)", f"{v:.3f}"] for k, v in self.seconds.to_json().items()]
        return (f"# Golden model on `{self.config}`\n\n"
                + markdown_table(["quantity", "value"], rows) + "\n")

    def summary_line(self) -> str:
        """One line for the terminal."""
        return (f"model: {self.config}: fixed vs float max |err| "
                f"{self.fixed_vs_float_same_inputs_max_abs:.4g} (bound "
                f"{self.fixed_error_bound_max:.4g}, within: {self.fixed_within_bound}), "
                f"{100 * self.clamped_fraction:.1f}% points clamped")


def evaluate(cfg: Config, seed: int = 0) -> ModelReport:
    """Run float, sliced float and sliced fixed-point models on one random workload."""
    from defslice.model.fixed import dequantize_inputs, error_bound, quantize_inputs
    from defslice.model.msda import msda_forward
    from defslice.model.sliced import sliced_fixed_forward, sliced_forward
    from defslice.model.slicing import SliceGrid
    from defslice.model.workload import make_workload

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
    err = np.abs(fixed_real - same_inputs)
    err = err.reshape(*err.shape[:2], cfg.workload.heads, -1)
    bound = error_bound(num, inp.weight)
    return ModelReport(
        config=cfg.name, seed=seed, queries=int(cfg.workload.num_queries),
        slices=grid.num_slices, nonempty_slices=int((stats.queries_per_slice > 0).sum()),
        clamped_fraction=float(stats.clamped_fraction),
        sliced_vs_unsliced_max_abs=float(np.abs(sliced - unsliced).max()),
        fixed_vs_float_same_inputs_max_abs=float(err.max()),
        fixed_error_bound_max=float(bound.max()),
        fixed_within_bound=bool((err <= bound + 1e-12).all()),
        fixed_vs_float_raw_inputs_max_abs=float(np.abs(fixed_real - sliced).max()),
        seconds=ModelSeconds(t1 - t0, t2 - t1, t3 - t2))


def run(cfg: Config, out: Path, options: ModelOptions) -> ModelReport:
    """Evaluate the golden model on ``cfg``; write ``out/model.json`` and ``model.md``.

    Raises :class:`~defslice.errors.DefsliceError` (nothing written) when the fixed-point
    model exceeds its stated error bound.
    """
    report = evaluate(cfg, options.seed)
    if not report.fixed_within_bound:
        raise DefsliceError("the fixed-point model exceeded its stated error bound")
    out = Path(out)
    report.save(out / "model.json")
    (out / "model.md").write_text(report.markdown())
    return report
