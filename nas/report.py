"""Writers of the search's outputs: ``pareto.json``, ``pareto.png``, ``hypervolume.png``,
``chosen.toml``, ``pareto.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from defslice import config as cfgmod
from defslice.config import Config
from defslice.nas.resources import with_subnet
from defslice.nas.space import SubNet
from defslice.reporting import markdown_table, write_json

__all__ = ["ragged_rows", "write_outputs"]

#: Names of the searches in reports.
LABELS = {"evolutionary": "Alg. 1", "nsga2": "NSGA-II", "random": "random search",
          "exhaustive": "exhaustive"}


def write_outputs(cfg: Config, report: dict, out: Path) -> dict[str, Path]:
    """Write every output into ``out``; returns name -> path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = report["chosen"]
    chosen_cfg = with_subnet(cfg, SubNet(c["slice_h"], c["slice_w"], c["overlap"]))
    paths = {
        "json": write_json(out / "pareto.json", report),
        "png": _plot(report, out / "pareto.png"),
        "hv_png": _plot_hypervolume(report, out / "hypervolume.png"),
        "toml": out / "chosen.toml",
        "md": out / "pareto.md",
    }
    cfgmod.dump(chosen_cfg, paths["toml"])
    paths["md"].write_text(_markdown(report))
    return paths


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _unit(report: dict) -> str:
    return "bits (eq. 3)" if report["resource_objective"] == "eq3" else "RAMB18 blocks"


def _plot(report: dict, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ev = report["evaluated"]
    ax.scatter([p["resource"] for p in ev], [100 * p["accuracy"] for p in ev], s=6,
               c="0.75", label=f"evaluated sub-nets ({len(ev)})")
    # Alg. 1 last and hollow, so it stays visible where the fronts coincide.
    styles = {"exhaustive": ("k-", {}), "random": ("C2^:", {"ms": 4}),
              "nsga2": ("C1s--", {"ms": 4}),
              "evolutionary": ("C0o-", {"ms": 9, "mfc": "none", "mew": 1.5})}
    for name in sorted(report["fronts"], key=list(styles).index):
        front = report["fronts"][name]
        fmt, kw = styles[name]
        ax.plot([p["resource"] for p in front], [100 * p["accuracy"] for p in front], fmt,
                lw=1, drawstyle="steps-post",
                label=f"{LABELS[name]} ({report['evaluations'][name]} evals)", **kw)
    c = report["chosen"]
    ax.plot([c["resource"]], [100 * c["accuracy"]], "r*", ms=14,
            label=f"chosen Hs={c['slice_h']} Ws={c['slice_w']} O={c['overlap']}")
    ax.axhline(100 * report["accuracy"]["validation_unsliced"], color="C2", lw=0.8,
               ls=":", label="unsliced")
    ax.set_ylabel("top-1 accuracy, validation images (%)")
    return _finish(plt, fig, ax, f"resource, {_unit(report)}",
                   f"slicing search on {report['config']}", path)


def _finish(plt: Any, fig: Any, ax: Any, xlabel: str, title: str, path: Path) -> Path:
    """Label, legend and save a figure."""
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ragged_rows(rows: list[list[float]]) -> np.ndarray:
    """Rows of different lengths as one array, NaN after each row's end (a replayed
    search that asks for sub-nets again makes fewer distinct evaluations than another
    seed's)."""
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), np.nan)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return out


def _plot_hypervolume(report: dict, path: Path) -> Path:
    """Hypervolume against evaluations: the seed study's median and 10..90% band when
    the exhaustive table exists (ratio to its front), else this run's curves."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    study = report.get("seed_study")
    for i, name in enumerate(("evolutionary", "nsga2", "random")):
        if study:
            t = ragged_rows(study["traces"][name])
            # counts of distinct evaluations that most seeds' runs reached
            n = np.arange(1, int((np.isfinite(t).sum(axis=0) * 2 >= len(t)).sum()) + 1)
            lo, mid, hi = np.nanpercentile(t[:, : n.size], [10, 50, 90], axis=0)
            ax.fill_between(n, lo, hi, color=f"C{i}", alpha=0.15, lw=0)
            ax.plot(n, mid, color=f"C{i}", label=f"{LABELS[name]}: median of "
                    f"{len(t)} seeds, 10..90% band")
        else:
            t = np.array(report["hypervolume_traces"][name])
            best = max(max(v) for v in report["hypervolume_traces"].values()) or 1.0
            ax.plot(np.arange(1, t.size + 1), t / best, color=f"C{i}",
                    label=f"{LABELS[name]} (seed {report['nas']['seed']})")
    if study:
        ax.axhline(0.99, color="k", lw=0.7, ls=":", label="0.99")
        ax.axvline(study["runs"][0]["budget"], color="0.5", lw=0.7, ls="--",
                   label="Alg. 1's budget (seed 0)")
        ax.set_ylabel("hypervolume / exhaustive front's")
        ax.set_ylim(max(0.0, min(0.9, ax.get_ylim()[0])), 1.005)
    else:
        ax.set_ylabel("hypervolume / best of the three (no exhaustive table)")
    return _finish(plt, fig, ax, "distinct sub-nets evaluated",
                   f"search progress on {report['config']} ({_unit(report)})", path)


def _pm(v: dict | None, digits: int = 2) -> str:
    """``accuracy +- se`` in percent of a figure dict, or ``-``."""
    if v is None:
        return "-"
    return f"{100 * v['accuracy']:.{digits}f}% +- {100 * v['se']:.{digits}f}"


def _diff(d: dict | None) -> str:
    if d is None:
        return "-"
    tie = " (tie)" if d["tie"] else ""
    return f"{100 * d['diff']:+.2f} +- {100 * d['se']:.2f}{tie}"


def _figures_section(r: dict) -> list[str]:
    lines = []
    for name, f in r["figures"].items():
        rows = [["unsliced", _pm(f.get("unsliced_before")), _pm(f.get("unsliced_after"))],
                ["chosen", _pm(f.get("chosen_before")), _pm(f.get("chosen_after"))],
                ["drop (unsliced - chosen, paired)", _diff(f.get("drop_before")),
                 _diff(f.get("drop_after"))]]
        if "fixed_point" in f:
            d = f["fixed_point_detail"]
            rows.append([f"chosen, bit-exact fixed-point layer ({d['images']} images; float "
                         f"{_pm(d['float'])} on them, fixed - float {_diff(d['difference'])})",
                         "-", _pm(f["fixed_point"])])
        lines += [f"Accuracy on the {f['images']} {name} images (+- one standard error, "
                  "points; a paired difference within 2 standard errors is a tie):", "",
                  markdown_table(["", "before fine-tuning", "after fine-tuning"], rows), ""]
    return lines


def _front_section(r: dict) -> list[str]:
    rows = [[f"{p['slice_h']}, {p['slice_w']}, {p['overlap']}", f"{p['bram18']:.0f}",
             f"{p['eq3_bits']:.0f}", f"{100 * p['accuracy']:.2f}%"
             + (f" +- {100 * p['se']:.2f}" if p["se"] is not None else ""),
             _diff(p["gain"]), _diff(p["drop"])] for p in r["front_table"]]
    return ["Alg. 1's front (validation images; the gain is the paired difference to the "
            "next cheaper member, the drop the paired difference of the unsliced model to "
            "the member):", "",
            markdown_table(["Hs, Ws, O", "RAMB18", "eq. 3 bits", "accuracy", "gain",
                            "drop"], rows), ""]


def _search_section(r: dict) -> list[str]:
    hv, ev = r["hypervolume"], r["evaluations"]
    rows = [[LABELS[name], ev[name], len(r["fronts"][name]),
             f"{hv[name + '_ratio']:.4f}" if name + "_ratio" in hv else
             ("1.0000" if name == "exhaustive" else "n/a (no exhaustive table)")]
            for name in ev]
    lines = [markdown_table(["search", "evaluations", "front size",
                             "HV / exhaustive HV"], rows), ""]
    st = r.get("seed_study")
    if not st:
        return lines
    size, cap, n = r["space"]["size"], st["cap"], len(st["runs"])

    def ev_text(v: float | None) -> str:
        return f"> {cap}" if v is None else f"{v:.0f} ({100 * v / size:.1f}%)"

    rows = []
    for name in ("evolutionary", "nsga2", "random"):
        s = st["summary"][name]
        to = s["evaluations_to_0.99"]
        rows.append([LABELS[name], f"{s['mean']:.4f} / {s['min']:.4f}",
                     f"{s['at_least_0.99']}/{n}", ev_text(to["median"]), ev_text(to["p90"]),
                     f"{to['reached']}/{n}"])
    return [
        *lines,
        f"Seed study, {n} seeds, replayed on the exhaustive table (no network evaluation; "
        f"T = {st['generations']}, k = {st['samples_per_generation']}; NSGA-II and random "
        f"search at Alg. 1's budget, {st['summary']['evolutionary']['evaluations_mean']:.0f} "
        f"evaluations on average; then every search followed up to {cap} evaluations):", "",
        markdown_table(["search", "HV ratio at the budget, mean / min", "seeds >= 0.99",
                        "evaluations to 0.99, median", "90th percentile", "seeds reaching"],
                       rows), ""]


def _finetune_section(r: dict) -> list[str]:
    if not r["finetune"]:
        return []
    n = r["figures"]["validation"]["images"]
    keys = list(r["finetune"][0]["accuracy"])

    def cell(a: float) -> str:
        return f"{100 * a:.2f}% +- {100 * (a * (1 - a) / n) ** 0.5:.2f}"

    rows = [[f["epoch"]] + [cell(f["accuracy"][k]) for k in keys] for f in r["finetune"]]
    return [f"Fine-tuning (Table I of the paper; epoch 0 = before; {n} validation images):",
            "", markdown_table(["epoch", *keys], rows), ""]


def _markdown(r: dict) -> str:
    obj, log = r["objective"], r["evaluation_log"]
    c = r["chosen"]
    lines = [f"# Slicing search on `{r['config']}`", "",
             f"Space: Hs {r['space']['slice_h_range']}, Ws {r['space']['slice_w_range']}, "
             f"O {r['space']['overlaps']} ({r['space']['size']} sub-nets); accuracy objective "
             f"`{obj['evaluator']}` ({obj.get('val_images')} validation images"
             + (", a proxy for tests" if obj["evaluator"] == "digits" else "")
             + f"); search resource `{r['resource_objective']}`.", "",
             f"Chosen: Hs={c['slice_h']} Ws={c['slice_w']} O={c['overlap']}, {c['bram18']} "
             f"RAMB18, {c['eq3_bits']:.0f} bits (eq. 3). {r['choice']['note']}", ""]
    if not r["choice"]["within_drop"]:
        lines += ["**No point of the front is within the allowed accuracy drop.**", ""]
    lines += _figures_section(r) + _front_section(r) + _search_section(r)
    lines += _finetune_section(r)
    lines += [f"Evaluations: {log['computed']} computed now, {log['resumed']} taken from "
              f"`{Path(log['file']).name}` ("
              + (f"{log['workers']} worker processes" if log["workers"] else "in-process")
              + "; median "
              + (f"{log['seconds_per_subnet']:.2f} s" if log["seconds_per_subnet"] else "-")
              + " per sub-net). Run time: " + ", ".join(
                  f"{k} {v:.0f} s" for k, v in r["seconds"].items()) + ".", ""]
    return "\n".join(lines)
