"""Human-readable traffic reports: Markdown tables and the Fig. 4-style bar chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defslice.model.traffic.study import UNITS
from defslice.paper import DRAM_FIG4
from defslice.reporting import markdown_table

__all__ = ["paper_comparison", "plot_bars", "plot_sweep", "study_markdown"]


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _scope_table(scope: dict, with_paper: bool) -> str:
    head = ["dataflow", "read KiB", "write KiB", "beats", "bursts",
            "norm. bytes", "norm. beats (accesses)", "norm. bursts"]
    alt = "normalized_to_layer_by_layer_ops"
    has_alt = any(alt in r for r in scope["dataflows"].values())
    if has_alt:
        head.append("norm. beats vs per-operator baseline")
    if with_paper:
        head.append("paper Fig. 4")
    rows = []
    for name, r in scope["dataflows"].items():
        n = r["normalized"]
        row = [r["label"], _kib(r["read"]["bytes"]), _kib(r["write"]["bytes"]),
               f"{r['total']['beats']:,}", f"{r['total']['bursts']:,}",
               _pct(n["bytes"]), _pct(n["beats"]), _pct(n["bursts"])]
        if has_alt:
            row.append(_pct(r[alt]["beats"]))
        if with_paper:
            row.append(_pct(DRAM_FIG4[name].value) if name in DRAM_FIG4 else "not shown")
        rows.append(row)
    return markdown_table(head, rows)


def _tensor_table(scope: dict) -> str:
    tensors = sorted({t for r in scope["dataflows"].values() for t in r["per_tensor"]})
    rows = []
    for r in scope["dataflows"].values():
        cells = []
        for t in tensors:
            d = r["per_tensor"].get(t, {})
            rd, wr = d.get("read", {}).get("bytes", 0), d.get("write", {}).get("bytes", 0)
            cells.append(f"{_kib(rd)} / {_kib(wr)}" if rd or wr else "-")
        rows.append([r["label"], *cells])
    return markdown_table(["dataflow (read / write KiB)", *tensors], rows)


def _order_text(named: dict[str, float]) -> str:
    ranked = sorted(named, key=named.get)
    return " < ".join(ranked)


def paper_comparison(res: dict) -> str:
    """Why the measured figures differ from the paper's Fig. 4.

    Every number comes from ``res`` (the counter); only the paper's own figures are
    quoted from :data:`defslice.paper.DRAM_FIG4`.
    """
    layer = res["scopes"]["layer"]["dataflows"]
    dp = res["scopes"]["datapath"]["dataflows"]
    s, d, c, h = (layer[k]["normalized"]["beats"]
                  for k in ("sliced", "defa", "compulsory", "halo_reuse"))
    alt = "normalized_to_layer_by_layer_ops"
    s_ops, d_ops = layer["sliced"][alt]["beats"], layer["defa"][alt]["beats"]
    s_dp = dp["sliced"]["normalized"]["beats"]
    paper_s, paper_d = DRAM_FIG4["sliced"], DRAM_FIG4["defa"]
    ps, pd = paper_s.value, paper_d.value
    base = layer["layer_by_layer"]["total"]["beats"]
    need = layer["sliced"]["total"]["beats"] / ps
    keys, pixels = res["queries"], res["map_pixels"]
    ours = _order_text({"sliced": s, "DEFA-style": d, "layer-by-layer": 1.0})
    paper = _order_text({"sliced": ps, "DEFA-style": pd, "layer-by-layer": 1.0})
    lines = [
        "## Against the paper (Fig. 4, section IV-D)",
        "",
        f"Measured on the whole layer, in beats: sliced **{_pct(s)}** (paper "
        f"{paper_s.text}), DEFA-style **{_pct(d)}** (paper {paper_d.text}); halo reuse "
        f"would reach {_pct(h)}; the compulsory bound is {_pct(c)}. Order here: {ours}; "
        f"in the paper: {paper}. "
        f"Sliced / DEFA is {s / d:.2f} here, {ps / pd:.2f} in the paper. Against the "
        f"per-operator baseline (every operator of the layer through DRAM): sliced "
        f"**{_pct(s_ops)}**, DEFA-style **{_pct(d_ops)}**.",
        "",
        f"* **What is counted.** On the sampling datapath alone ({keys} sampled keys, the "
        f"part the RTL computes) the sliced dataflow moves {s_dp:.2f}x the baseline: the "
        f"baseline fetches 4 corners of {keys} points, the sliced one loads every window "
        "with its halo. Slicing can only pay when the window load is shared with the rest "
        "of the layer (q projection, offset network, attention of every pixel), so the "
        "paper's figure is read as one about the whole layer; the headline here is the "
        "whole layer, every dataflow doing the same work.",
    ]
    if c > ps:
        lines.append(
            f"* **A floor.** Any dataflow reads x once and writes y once: {_pct(c)} of "
            f"this baseline, above the paper's {paper_s.text}. To reach {paper_s.text}, the "
            f"paper's baseline must move at least {need / base:.1f}x what this one does "
            f"({need:,.0f} beats instead of {base:,}). The per-operator baseline, which also "
            f"sends q, k, v, the {pixels} x {keys} logits and probabilities and the attention "
            "output through DRAM, is one such heavier baseline; others (fp32 intermediates, "
            "per-element counting, a per-query sampling baseline in the style of the "
            "deformable-convolution normalization of the paper's reference [19]) are "
            "equally possible. The paper does not define its baseline, its unit or its bus.")
    lines.append(
        "* **DEFA.** Its buffer size, thresholds and pruning ratios are not published. "
        "Here it is credited with fusion, a reuse buffer and point pruning, which on DAT "
        f"change little ({keys} keys, attention weight 1), and it must stream x twice "
        "because every query attends to keys sampled from the whole map. The paper's "
        f"{paper_d.text} comes from the paper's own, unpublished, normalization of DEFA.")
    return "\n".join(lines)


def study_markdown(res: dict) -> str:
    """The whole ``traffic.md``."""
    cfg = res["config"]
    headline = res["headline_scope"]
    is_dat = "layer" in res["scopes"]
    parts = [
        f"# DRAM traffic on `{cfg['name']}`",
        "",
        f"Workload: {res['workload']}. Seed {res['seed']}; bus {res['bus_bytes']} bytes "
        f"per beat, bursts of at most {res['max_burst_beats']} beats, no 4 KiB crossing. "
        "Assumptions of every dataflow: `docs/traffic.md`. All figures are counted on the "
        "trace; `normalized` = dataflow / layer-by-layer in the same scope.",
        "",
        "Units: " + "; ".join(f"**{k}**: {v}" for k, v in UNITS.items()) + ".",
        "",
    ]
    order = [headline] + [s for s in res["scopes"] if s != headline]
    titles = {"layer": "Whole DAT deformable-attention layer (headline)",
              "datapath": "Sampling datapath (what the RTL computes)"}
    for scope in order:
        sc = res["scopes"][scope]
        parts += [f"## {titles[scope]}", "",
                  _scope_table(sc, with_paper=is_dat and scope == "layer"), "",
                  "Per tensor:", "", _tensor_table(sc), ""]
    if is_dat:
        parts += [paper_comparison(res), ""]
    rtl = res["rtl_transfers"]
    parts += ["## RTL transfers (layout contract)", "",
              "`SlicedProgram.transfers()`, which the sliced count uses as is: "
              + ", ".join(f"{k}: {v['bursts']} bursts / {v['beats']} beats"
                          for k, v in rtl.items()) + ".", ""]
    if res.get("sweep_file"):
        parts += [f"Sweep over the slicing space: `{res['sweep_file']}`.", ""]
    return "\n".join(parts)


def plot_bars(res: dict, path: Path) -> None:
    """Normalized accesses (beats) per dataflow, headline scope, the paper's bars beside."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scope = res["scopes"][res["headline_scope"]]["dataflows"]
    alt = "normalized_to_layer_by_layer_ops"
    names = [n for n in scope if n != "layer_by_layer_ops"]
    series = [("vs layer-by-layer", [scope[n]["normalized"]["beats"] for n in names],
               "#3b6ea8", "")]
    if all(alt in scope[n] for n in names):
        series.append(("vs per-operator layer-by-layer",
                       [scope[n][alt]["beats"] for n in names], "#7fa9d6", ""))
    if "layer" in res["scopes"]:
        paper = [DRAM_FIG4[n].value if n in DRAM_FIG4 else np.nan for n in names]
        series.append(("paper Fig. 4", paper, "#d08c3a", "//"))
    x = np.arange(len(names))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for k, (label, vals, color, hatch) in enumerate(series):
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, vals, width, label=label, color=color, hatch=hatch)
        for xi, v in zip(pos, vals, strict=True):
            if np.isfinite(v):
                ax.text(xi, v + 0.01, f"{100 * v:.0f}%", ha="center", fontsize=7)
    ax.set_xticks(x, [scope[n]["label"] for n in names], rotation=12, fontsize=8)
    ax.set_ylabel("DRAM accesses (beats), normalized")
    ax.set_title(f"Normalized DRAM traffic, {res['config']['name']} "
                 f"({res['headline_scope']} scope)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sweep(sw: dict, path: Path, best: tuple[int, int, int] | None = None) -> None:
    """Heat maps of sliced normalized beats over (Hs, Ws), one panel per overlap.

    ``best``: the configured (Hs, Ws, overlap), marked on its overlap's panel
    (``dat56``: the paper's best, Hs = 28, Ws = 14).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    data = np.array(sw["normalized"]["sliced"]["beats"])
    n = data.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 1, 3.8), squeeze=False,
                             layout="constrained")
    vmin, vmax = np.nanmin(data), np.nanmax(data)
    hs, ws = sw["slice_h"], sw["slice_w"]
    for k, ax in enumerate(axes[0]):
        im = ax.imshow(data[k], origin="lower", aspect="auto", vmin=vmin, vmax=vmax,
                       extent=(ws[0] - 0.5, ws[-1] + 0.5, hs[0] - 0.5, hs[-1] + 0.5),
                       cmap="viridis")
        ax.set_title(f"overlap {sw['overlaps'][k]}")
        ax.set_xlabel("Ws (pixels)")
        ax.set_ylabel("Hs (pixels)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if best is not None and best[2] == sw["overlaps"][k]:
            ax.plot(best[1], best[0], "r*", markersize=10, label="configured (Hs, Ws)")
            ax.legend(fontsize=7, loc="upper right")
    fig.colorbar(im, ax=axes[0].tolist(), label="sliced accesses / layer-by-layer")
    fig.suptitle(f"Sliced DRAM traffic over the slicing space ({sw['scope']} scope)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
