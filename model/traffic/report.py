"""Human-readable traffic reports: Markdown tables and the Fig. 4-style bar chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defslice.model.traffic.report_layer import layer_sections
from defslice.model.traffic.study import UNITS
from defslice.paper import DRAM_FIG4
from defslice.reporting import markdown_table

__all__ = ["PLOT_CAP", "paper_comparison", "plot_bars", "plot_sweep", "study_markdown"]

#: Highest normalized value the bar chart draws to scale (taller bars are cut there).
PLOT_CAP = 1.5


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
            row.append(_fig4_text(name))
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


def _fig4_text(name: str) -> str:
    """The paper's Fig. 4 figure of a dataflow, as the paper states it."""
    if name in DRAM_FIG4:
        return DRAM_FIG4[name].text
    return "bar, value not in the text" if name == "dcn" else "not shown"


def paper_comparison(res: dict) -> str:
    """Why the measured figures differ from the paper's Fig. 4.

    Every number comes from ``res`` (the counter); only the paper's own figures are
    quoted from :data:`defslice.paper.DRAM_FIG4`.
    """
    layer = res["scopes"]["layer"]["dataflows"]
    dp = res["scopes"]["datapath"]["dataflows"]
    n = {k: r["normalized"]["beats"] for k, r in layer.items()}
    ops = {k: r["normalized_to_layer_by_layer_ops"]["beats"] for k, r in layer.items()}
    s, d, c = n["sliced"], n["defa"], n["compulsory"]
    s_dp = dp["sliced"]["normalized"]["beats"]
    paper_s, paper_d = DRAM_FIG4["sliced"], DRAM_FIG4["defa"]
    ps, pd = paper_s.value, paper_d.value
    base = layer["layer_by_layer"]["total"]["beats"]
    need = layer["sliced"]["total"]["beats"] / ps
    keys, pixels = res["queries"], res["map_pixels"]
    ours = _order_text({"sliced": s, "DEFA-style": d, "layer-by-layer": 1.0})
    paper = _order_text({"sliced": ps, "DEFA-style": pd, "layer-by-layer": 1.0})
    recompute = res["schedules"]["layer_by_layer"]["q_variants"]["recompute"]["beats"]
    s_rec = layer["sliced"]["total"]["beats"] / recompute
    ex, cfg_overlap = res["exact_overlap"], res["config"]["slicing"]["overlap"]
    lines = [
        "## Against the paper (Fig. 4, section IV-D)",
        "",
        f"Measured on the whole layer, in beats, against the two-layer baseline: sliced "
        f"**{_pct(s)}** (paper {paper_s.text}), DEFA-style **{_pct(d)}** (paper "
        f"{paper_d.text}), the deformable-convolution accelerator [20] **{_pct(n['dcn'])}** "
        f"(paper: {_fig4_text('dcn')}); halo reuse would reach {_pct(n['halo_reuse'])}; "
        f"the compulsory bound is {_pct(c)}. Order here: {ours}; in the paper: {paper}. "
        f"Sliced / DEFA is {s / d:.2f} here, {ps / pd:.2f} in the paper. Against the "
        f"per-operator baseline (every operator of the layer through DRAM): sliced "
        f"**{_pct(ops['sliced'])}**, DEFA-style **{_pct(ops['defa'])}**, [20] "
        f"**{_pct(ops['dcn'])}**. Against the two-layer baseline with q recomputed "
        f"instead of stored: sliced {_pct(s_rec)}. With overlap {ex['overlap']} (what makes "
        f"the offset network exact on this slicing: {ex['required_rows_cols'][0]} rows, "
        f"{ex['required_rows_cols'][1]} columns; configured {cfg_overlap}) the sliced layer "
        f"moves {_pct(ex['normalized']['beats'])}.",
        "",
        f"* **What is counted.** On the sampling datapath alone ({keys} sampled keys per "
        f"group, the part the sampling engine computes) the sliced dataflow moves "
        f"{s_dp:.2f}x the baseline: the baseline fetches 4 corners of {keys} points, the "
        "sliced one loads every window with its halo. Slicing pays only because the "
        "window load is shared with the rest of the layer (q projection, offset network, "
        "attention of every pixel), so the paper's figure is read as one about the whole "
        "layer; the headline here is the whole layer, every dataflow doing the same work.",
        f"* **Granularity.** The paper's {paper_s.text} lies "
        + ("between" if ops["sliced"] <= ps <= s else "outside")
        + f" the two readings of its baseline counted here (sliced {_pct(ops['sliced'])} "
        f"per operator, {_pct(s)} with two layers); which operators meet in DRAM is the "
        "baseline's definition, and the paper does not give it.",
    ]
    if c > ps:
        lines.append(
            f"* **A floor.** Any dataflow reads x once and writes y once: {_pct(c)} of "
            f"the two-layer baseline, above the paper's {paper_s.text}. To reach "
            f"{paper_s.text}, the paper's baseline must move at least {need / base:.1f}x "
            f"what this one does ({need:,.0f} beats instead of {base:,}). The per-operator "
            f"baseline, which also sends q, k, v, the heads x {pixels} x {keys} logits, "
            "bias and probabilities and the attention output through DRAM, is one such "
            "heavier baseline; others (fp32 intermediates, per-element counting) are "
            "equally possible. The paper does not define its baseline, its unit or its bus.")
    lines += [
        "* **DEFA.** Its buffer size, thresholds and pruning ratios are not published. "
        "Here it is credited with fusion, a reuse buffer and point pruning, which on DAT "
        f"change little ({keys} keys per group, attention weight 1), and it must stream x "
        "twice because every query attends to keys sampled from the whole map. The "
        f"paper's {paper_d.text} comes from the paper's own, unpublished, normalization "
        "of DEFA.",
        "* **[20].** A deformable-convolution accelerator keeps the sampled tensor on chip "
        "(its Sampling Core feeds the convolution array); on this layer that tensor is "
        f"{keys} keys per group, so it moves {_pct(ops['dcn'])} of the per-operator "
        "baseline: the layer's traffic is in q and the attention tensors, which a "
        "convolution accelerator passes through DRAM like any layer output.",
    ]
    return "\n".join(lines)


def _transfers_text(what: str, summary: dict) -> str:
    return (f"{what}: " + ", ".join(f"{k}: {v['bursts']} bursts / {v['beats']} beats"
                                    for k, v in summary.items()) + ".\n")


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
              "datapath": "Sampling datapath (what the sampling engine computes)"}
    for scope in order:
        sc = res["scopes"][scope]
        parts += [f"## {titles[scope]}", "",
                  _scope_table(sc, with_paper=is_dat and scope == "layer"), "",
                  "Per tensor:", "", _tensor_table(sc), ""]
        if scope == "layer":
            parts += [_RTL_MOVES, "", *layer_sections(res)]
    if is_dat:
        parts += [paper_comparison(res), ""]
    parts += ["## Engine transfers (layout contracts)", "",
              _transfers_text("Sampling engine, `SlicedProgram.transfers()`, which the "
                              "sliced datapath count uses as is", res["rtl_transfers"])]
    if "layer_engine_transfers" in res:
        parts += [_transfers_text("Layer engine, `layer_transfers()` "
                                  "(`defslice.model.layer_layout`), which the sliced layer "
                                  "count uses as is", res["layer_engine_transfers"])]
    if res.get("sweep_file"):
        parts += [f"Sweep over the slicing space: `{res['sweep_file']}`.", ""]
    return "\n".join(parts)


#: What the sliced layer figure is: the layer engine's own bus traffic, checked.
_RTL_MOVES = ("The sliced layer figure is what the layer engine's RTL moves "
              "(`hw.engine = \"layer\"`): its transfer list is the engine's "
              "(`layer_transfers`), and every cocotb run of the engine (`defslice sim`, "
              "`defslice flow`) checks that the bursts and beats on the bus equal that list, "
              "this count and the design's own counters.")


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
    fig, ax = plt.subplots(figsize=(9, 4.2))
    # Bars above the cap are cut at it and labelled with their value.
    top = min(max(np.nanmax(v) for _, v, _, _ in series), PLOT_CAP) * 1.08
    for k, (label, vals, color, hatch) in enumerate(series):
        pos = x - 0.4 + width * (k + 0.5)
        shown = np.minimum(np.asarray(vals, dtype=float), PLOT_CAP)
        ax.bar(pos, shown, width, label=label, color=color, hatch=hatch)
        for xi, v, h in zip(pos, vals, shown, strict=True):
            if np.isfinite(v):
                ax.text(xi, h + 0.01, f"{100 * v:.0f}%", ha="center", fontsize=7)
    ax.set_ylim(0, top)
    ax.set_xticks(x, [scope[n]["label"] for n in names], rotation=12, fontsize=8)
    ax.set_ylabel("DRAM accesses (beats), normalized")
    cut = any(np.nanmax(v) > PLOT_CAP for _, v, _, _ in series)
    ax.set_title(f"Normalized DRAM traffic, {res['config']['name']} "
                 f"({res['headline_scope']} scope)"
                 + (f"; bars above {100 * PLOT_CAP:.0f}% cut, labelled" if cut else ""))
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
