"""The golden-model stage: float, sliced float and sliced fixed point on one workload.

:func:`run` writes ``OUT/model.json`` (:class:`ModelReport`) and ``OUT/model.md``: the
fixed-point error against float with its bound, sliced against unsliced results, the share
of clamped sampling points, and times; for a ``dat`` workload also the whole DAT++ layer
(:class:`LayerReport`): keys clamped to the map and by a window, window sizes, the offset
convolution's reach and the overlap that makes it exact, and the sliced layer's difference
from the unsliced one; and the fixed-point layer's error against float
(:class:`LayerFixedReport`, :mod:`defslice.model.dat_layer_error`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defslice.cliargs import option
from defslice.config import Config
from defslice.errors import DefsliceError
from defslice.records import Record, omitted
from defslice.reporting import markdown_table

__all__ = ["FixedLayerError", "FixedVsFloat", "LayerFixedReport", "LayerReport",
           "LayerSeconds", "LayerWindows", "ModelOptions", "ModelReport", "ModelSeconds",
           "NonlinearityError", "evaluate", "evaluate_layer", "evaluate_layer_fixed", "run"]


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
class LayerWindows(Record):
    """The slices' windows of a sliced DAT++ layer.

    Members
    -------
    slices : int
    max, min : tuple of int
        Largest and smallest window (rows, columns) in pixels.
    slices_without_keys : int
        Slices holding no key's reference point (their queries output the projection bias).
    """

    slices: int
    max: tuple[int, int]
    min: tuple[int, int]
    slices_without_keys: int


@dataclass(frozen=True)
class LayerSeconds(Record):
    """Wall time of each float layer run (s)."""

    float_unsliced: float
    float_sliced: float


@dataclass(frozen=True)
class LayerReport(Record):
    """The whole DAT++ layer of a ``dat`` workload, unsliced and sliced (``layer`` in
    ``model.json``).

    Members
    -------
    workload : str
        The workload (:meth:`~defslice.config.WorkloadConfig.describe`).
    slice_size : tuple of int
        Hs, Ws: the slice (rows, columns; px).
    keys : int
        Keys of the layer, groups x Hk x Wk.
    key_grid : tuple of int
        Hk, Wk: keys per group (rows, columns).
    map_clamped_fraction, window_clamped_fraction : float
        Share of keys clamped to the map (DAT++ offset mode, unsliced) and moved by a
        window bound (sliced), in [0, 1].
    windows : LayerWindows
    offset_conv_reach_px : tuple of int
        Reach of the offset convolution beyond a key's pixel (rows, columns; px).
    required_overlap_px : tuple of int
        Overlap (rows, columns; px) from which the sliced offset network is exact.
    overlap : int
        The configured overlap (px).
    offset_network_exact : bool
        ``overlap`` reaches both figures of ``required_overlap_px``.
    keys_with_cut_offset_conv : int
        Keys whose offset convolution the window cuts.
    offsets_changed_max_abs_px : float
        Largest change of a key position by slicing (px).
    sliced_vs_unsliced_max_abs, sliced_vs_unsliced_max_rel : float
        Largest |sliced y - unsliced y|, and that over the largest |unsliced y|.
    seconds : LayerSeconds
    """

    workload: str
    slice_size: tuple[int, int]
    keys: int
    key_grid: tuple[int, int]
    map_clamped_fraction: float
    window_clamped_fraction: float
    windows: LayerWindows
    offset_conv_reach_px: tuple[int, int]
    required_overlap_px: tuple[int, int]
    overlap: int
    offset_network_exact: bool
    keys_with_cut_offset_conv: int
    offsets_changed_max_abs_px: float
    sliced_vs_unsliced_max_abs: float
    sliced_vs_unsliced_max_rel: float
    seconds: LayerSeconds

    def rows(self) -> list[list[str]]:
        """The figures as ``[quantity, value]`` rows of ``model.md``."""
        win, reach, need = self.windows, self.offset_conv_reach_px, self.required_overlap_px
        return [
            ["keys (groups x Hk x Wk)", f"{self.keys} ({self.key_grid[0]} x "
                                        f"{self.key_grid[1]} per group)"],
            ["keys clamped to the map (DAT++ offset mode)",
             f"{100 * self.map_clamped_fraction:.1f}%"],
            ["keys moved by a window bound", f"{100 * self.window_clamped_fraction:.1f}%"],
            ["windows (rows x cols)", f"{win.slices} slices, {win.min[0]} x {win.min[1]} .. "
                                      f"{win.max[0]} x {win.max[1]}, "
                                      f"{win.slices_without_keys} without keys"],
            ["offset conv reach beyond a key's pixel (rows, cols)", f"{reach[0]}, {reach[1]}"],
            ["overlap that makes the offset network exact (rows, cols)",
             f"{need[0]}, {need[1]} (configured: {self.overlap})"],
            ["keys whose offset conv the window cuts", str(self.keys_with_cut_offset_conv)],
            ["max position change by slicing (px)", f"{self.offsets_changed_max_abs_px:.4g}"],
            ["sliced vs unsliced y, max abs (max rel)",
             f"{self.sliced_vs_unsliced_max_abs:.4g} ({self.sliced_vs_unsliced_max_rel:.3g})"],
        ] + [[f"time: layer {k} (s)", f"{v:.3f}"] for k, v in self.seconds.to_json().items()]

    def summary_line(self) -> str:
        """One line for the terminal."""
        return (f"model: DAT++ layer: {100 * self.window_clamped_fraction:.1f}% keys moved "
                f"by a window, {100 * self.map_clamped_fraction:.1f}% clamped to the map; "
                f"offset conv exact from overlap {max(self.required_overlap_px)} (configured "
                f"{self.overlap}); sliced vs unsliced max |dy| "
                f"{self.sliced_vs_unsliced_max_abs:.4g}")


@dataclass(frozen=True)
class FixedVsFloat(Record):
    """The fixed-point layer's output against one float reference
    (:func:`defslice.model.dat_layer_error.layer_error`).

    Members
    -------
    y_max_abs, y_rms, y_float_rms : float
        Largest and rms |y fixed - y float|, and the float output's rms.
    y_rel_rms : float
        ``y_rms / y_float_rms``.
    position_max_px : float
        Largest |sampling position fixed - float| (px).
    prob_max_abs : float
        Largest |attention probability fixed - float|.
    """

    y_max_abs: float
    y_rms: float
    y_float_rms: float
    y_rel_rms: float
    position_max_px: float
    prob_max_abs: float


@dataclass(frozen=True)
class FixedLayerError(Record):
    """The fixed-point layer against float, sliced or unsliced, on random weights.

    Members
    -------
    sliced : bool
    images, seed : int
    raw, same_inputs : FixedVsFloat
        Against float on the real weights and input, and on the dequantized ones (the
        datapath's own rounding).
    on_rail : dict of str to float
        Share of each saturating step's values on a rail of its format, in [0, 1].
    """

    sliced: bool
    images: int
    seed: int
    raw: FixedVsFloat
    same_inputs: FixedVsFloat
    on_rail: dict[str, float]


@dataclass(frozen=True)
class NonlinearityError(Record):
    """Worst error of one table nonlinearity against float64, over ``inputs``; ``seen``:
    the worst measured where that differs from the bound (1/sqrt)."""

    worst: float
    unit: str
    inputs: str
    seen: float | None = omitted()


@dataclass(frozen=True)
class LayerFixedReport(Record):
    """The DAT++ layer in fixed point against float (``layer_fixed`` in ``model.json``)."""

    sliced: FixedLayerError
    unsliced: FixedLayerError
    nonlinearities: dict[str, NonlinearityError]

    def markdown(self) -> str:
        """The section of ``model.md``: both slicings against both references, then every
        nonlinearity's worst error."""
        rows = []
        for mode in ("sliced", "unsliced"):
            err: FixedLayerError = getattr(self, mode)
            for ref in ("raw", "same_inputs"):
                r: FixedVsFloat = getattr(err, ref)
                rows.append([f"{mode}, vs float on {ref.replace('_', ' ')}",
                             f"{r.y_max_abs:.4g}", f"{r.y_rms:.4g}", f"{100 * r.y_rel_rms:.2f}%",
                             f"{r.position_max_px:.4g}", f"{r.prob_max_abs:.4g}"])
        return (f"## DAT++ layer in fixed point against float (random weights, seed "
                f"{self.sliced.seed})\n\n" + markdown_table(
                    ["case", "y max abs", "y rms", "y rms / float rms", "position max (px)",
                     "probability max abs"], rows)
                + "\n\n" + markdown_table(
                    ["nonlinearity", "worst error", "unit", "over"],
                    [[k, f"{v.worst:.4g}", v.unit, v.inputs]
                     for k, v in self.nonlinearities.items()]) + "\n")

    def summary_lines(self, config: str) -> list[str]:
        """Lines for the terminal: the sliced layer's error, and a warning when a step's
        values sit on a rail of their format."""
        r = self.sliced.raw
        lines = [f"model: {config}: fixed-point layer vs float (sliced, random weights): "
                 f"y max |err| {r.y_max_abs:.4g}, rms {r.y_rms:.4g} "
                 f"({100 * r.y_rel_rms:.2f}% of the float rms), positions within "
                 f"{r.position_max_px:.3g} px"]
        rails = self.sliced.on_rail
        worst = max(rails, key=rails.get)
        if rails[worst] > 0:
            lines.append(f"model: warning: {100 * rails[worst]:.3g}% of the fixed-point "
                         f"layer's '{worst}' values sit on a rail of their format "
                         "(saturation); see calibrate_formats in docs/numerics.md")
        return lines


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
    layer : LayerReport or None
        The whole DAT++ layer (``dat`` workloads only).
    layer_fixed : LayerFixedReport or None
        That layer in fixed point against float (``dat`` workloads only).
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
    layer: LayerReport | None = omitted()
    layer_fixed: LayerFixedReport | None = omitted()

    def markdown(self) -> str:
        """``model.md``: the figures as tables (the sampling engine, then the layer)."""
        rows = [[k, f"{v:.6g}" if isinstance(v, float) else str(v)]
                for k, v in self.to_json().items()
                if k not in ("seconds", "layer", "layer_fixed")]
        rows += [[f"time: {k} (s)", f"{v:.3f}"] for k, v in self.seconds.to_json().items()]
        text = (f"# Golden model on `{self.config}`\n\n## Sampling engine\n\n"
                + markdown_table(["quantity", "value"], rows) + "\n")
        if self.layer is not None:
            lay = self.layer
            text += (f"\n## DAT++ layer\n\n{lay.workload}; random input and weights (seed "
                     f"{self.seed}), float64, sliced Hs = {lay.slice_size[0]}, Ws = "
                     f"{lay.slice_size[1]}, overlap {lay.overlap}.\n\n"
                     + markdown_table(["quantity", "value"], lay.rows()) + "\n")
        if self.layer_fixed is not None:
            text += "\n" + self.layer_fixed.markdown()
        return text

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
    err = err.reshape(*err.shape[:2], cfg.workload.sample_heads, -1)
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
        seconds=ModelSeconds(t1 - t0, t2 - t1, t3 - t2),
        layer=evaluate_layer(cfg, seed) if cfg.workload.kind == "dat" else None,
        layer_fixed=evaluate_layer_fixed(cfg, seed) if cfg.workload.kind == "dat" else None)


def evaluate_layer(cfg: Config, seed: int = 0) -> LayerReport:
    """The DAT++ layer of a ``dat`` workload on random input and weights, unsliced and
    sliced by ``cfg.slicing``.

    ``x`` is standard normal (the layer's input is LayerNorm's output in DAT); weights are
    drawn like PyTorch's default initialisation (:func:`~defslice.model.dat_layer.init_params`),
    both from ``seed``; float64.
    """
    from defslice.model.dat_layer import (
        DatLayerSpec,
        dat_layer_trace,
        init_params,
        offset_conv_reach,
        required_overlap,
    )

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
    return LayerReport(
        workload=w.describe(), slice_size=(s.slice_h, s.slice_w),
        keys=int(full.map_clamped.size), key_grid=tuple(w.key_grid),
        map_clamped_fraction=float(full.map_clamped.mean()),
        window_clamped_fraction=float(sliced.window_clamped.mean()),
        windows=LayerWindows(
            slices=grid.num_slices, max=tuple(grid.max_window(0)),
            min=(int(windows[:, 0].min()), int(windows[:, 1].min())),
            slices_without_keys=int(grid.num_slices - np.unique(lay.key_slice).size)),
        offset_conv_reach_px=tuple(offset_conv_reach(spec, H, W)),
        required_overlap_px=tuple(need), overlap=s.overlap,
        offset_network_exact=bool(s.overlap >= max(need)),
        keys_with_cut_offset_conv=int(cut.sum()),
        offsets_changed_max_abs_px=float(np.abs(sliced.positions - full.positions).max()),
        sliced_vs_unsliced_max_abs=float(diff.max()),
        sliced_vs_unsliced_max_rel=float(diff.max() / np.abs(full.y).max()),
        seconds=LayerSeconds(t1 - t0, t2 - t1))


def evaluate_layer_fixed(cfg: Config, seed: int = 0) -> LayerFixedReport:
    """The fixed-point DAT++ layer against float on random weights, sliced and unsliced,
    and the worst error of each of its nonlinearities."""
    from defslice.model.dat_layer_error import layer_error, nonlinearity_errors

    hk, wk = cfg.workload.key_grid
    return LayerFixedReport.from_json({
        "sliced": layer_error(cfg, seed), "unsliced": layer_error(cfg, seed, sliced=False),
        "nonlinearities": nonlinearity_errors(cfg.layer_numerics, hk * wk)})


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
