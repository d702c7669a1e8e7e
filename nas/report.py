"""Writers of the search's outputs: ``pareto.json``, ``pareto.png``, ``chosen.toml``,
``pareto.md``."""

from __future__ import annotations

from pathlib import Path

from defslice import config as cfgmod
from defslice.config import Config
from defslice.nas.resources import with_subnet
from defslice.nas.space import SubNet
from defslice.reporting import markdown_table, write_json

__all__ = ["write_outputs"]


def write_outputs(cfg: Config, report: dict, out: Path) -> dict[str, Path]:
    """Write every output into ``out``; returns name -> path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = report["chosen"]
    chosen_cfg = with_subnet(cfg, SubNet(c["slice_h"], c["slice_w"], c["overlap"]))
    paths = {
        "json": write_json(out / "pareto.json", report),
        "png": _plot(report, out / "pareto.png"),
        "toml": out / "chosen.toml",
        "md": out / "pareto.md",
    }
    cfgmod.dump(chosen_cfg, paths["toml"])
    paths["md"].write_text(_markdown(report))
    return paths


def _plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "bits (eq. 3)" if report["resource_objective"] == "eq3" else "RAMB18 blocks"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ev = report["evaluated"]
    ax.scatter([p["resource"] for p in ev], [100 * p["accuracy"] for p in ev], s=6,
               c="0.75", label=f"evaluated sub-nets ({len(ev)})")
    # Alg. 1 last and hollow, so it stays visible where the fronts coincide.
    styles = {"exhaustive": ("k-", "exhaustive front", {}),
              "nsga2": ("C1s--", "NSGA-II", {"ms": 4}),
              "evolutionary": ("C0o-", "Alg. 1", {"ms": 9, "mfc": "none", "mew": 1.5})}
    for name in sorted(report["fronts"], key=list(styles).index):
        front = report["fronts"][name]
        fmt, label, kw = styles[name]
        ax.plot([p["resource"] for p in front], [100 * p["accuracy"] for p in front], fmt,
                lw=1, drawstyle="steps-post",
                label=f"{label} ({report['evaluations'][name]} evals)", **kw)
    c = report["chosen"]
    ax.plot([c["resource"]], [100 * c["accuracy"]], "r*", ms=14,
            label=f"chosen Hs={c['slice_h']} Ws={c['slice_w']} O={c['overlap']}")
    ax.axhline(100 * report["accuracy"]["unsliced_after_finetune"], color="C2", lw=0.8,
               ls=":", label="unsliced")
    ax.set_xlabel(f"resource, {unit}")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"slicing search on {report['config']}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _markdown(r: dict) -> str:
    a, hv, ev = r["accuracy"], r["hypervolume"], r["evaluations"]
    lines = [f"# Slicing search on `{r['config']}`", "",
             f"Space: Hs {r['space']['slice_h_range']}, Ws {r['space']['slice_w_range']}, "
             f"O {r['space']['overlaps']} ({r['space']['size']} sub-nets); accuracy objective "
             f"`{r['objective']['evaluator']}` ({r['objective'].get('val_images')} validation "
             f"images); resource objective `{r['resource_objective']}`.", ""]
    rows = [["unsliced, before fine-tuning", f"{100 * a['unsliced_before_finetune']:.2f}%"],
            ["unsliced, after fine-tuning", f"{100 * a['unsliced_after_finetune']:.2f}%"],
            ["chosen, before fine-tuning", f"{100 * a['chosen_before_finetune']:.2f}%"],
            ["chosen, after fine-tuning", f"{100 * a['chosen_after_finetune']:.2f}%"],
            ["chosen drop vs unsliced", f"{100 * a['chosen_drop_vs_unsliced']:.2f} points"]]
    lines += [markdown_table(["accuracy", "top-1"], rows), ""]
    c = r["chosen"]
    lines += [f"Chosen: Hs={c['slice_h']} Ws={c['slice_w']} O={c['overlap']}, "
              f"{c['eq3_bits']:.0f} bits (eq. 3), {c['bram18']} RAMB18.", ""]
    rows = [[name, ev[name], len(r["fronts"][name]),
             f"{hv.get(name + '_ratio', 1.0 if name == 'exhaustive' else float('nan')):.4f}"
             if hv else "n/a"] for name in ev]
    lines += [markdown_table(["search", "evaluations", "front size", "HV / exhaustive HV"],
                             rows), ""]
    st = r.get("seed_study")
    if st:
        evo, nsga = st["summary"]["evolutionary"], st["summary"]["nsga2"]
        to = evo.get("evaluations_to_0.99") or {}
        n_runs = len(st["runs"])
        reach = (f"median {to['median']:.0f}, 90th percentile {to['p90']:.0f}, "
                 f"max {to['max']}" if to.get("reached") else "-")
        rows = [["Alg. 1", f"{evo['evaluations_mean']:.1f}",
                 f"{evo['mean']:.4f} / {evo['min']:.4f}",
                 f"{evo['at_least_0.99']}/{n_runs}", reach],
                ["NSGA-II (Alg. 1's budget)", f"{nsga['evaluations_mean']:.1f}",
                 f"{nsga['mean']:.4f} / {nsga['min']:.4f}",
                 f"{nsga['at_least_0.99']}/{n_runs}", ""]]
        lines += [f"Seed study, {n_runs} seeds (T = {st['generations']}, k = "
                  f"{st['samples_per_generation']}; the searches replayed on the exhaustive "
                  "table, no network evaluation; per seed in `pareto.json`):", "",
                  markdown_table(["search", "distinct evaluations (mean)",
                                  "HV ratio mean / min", "seeds >= 0.99",
                                  "evaluations until the front first reaches 0.99"], rows),
                  ""]
    ex = r["fronts"].get("exhaustive")
    if ex:
        accs = [p["accuracy"] for p in r["evaluated"]]
        n = r["objective"].get("val_images") or 0
        # Placements of one digit are not independent samples: the standard error is
        # taken over the distinct digits (an upper bound).
        distinct = n // (r["objective"].get("val_shifts") or 1)
        u = a["unsliced_after_finetune"]
        se = (u * (1 - u) / distinct) ** 0.5 if distinct else float("nan")
        lines += [f"All {len(accs)} sub-nets after fine-tuning: accuracy "
                  f"{100 * min(accs):.2f}% .. {100 * max(accs):.2f}% "
                  f"(mean {100 * sum(accs) / len(accs):.2f}%); one validation image is "
                  f"{100 / n:.2f} points ({n} images, {distinct} distinct), the binomial "
                  f"standard error of the unsliced accuracy over the distinct images "
                  f"{100 * se:.2f} points.", ""] if n else []
    if r["finetune"]:
        keys = list(r["finetune"][0]["accuracy"])
        rows = [[f["epoch"]] + [f"{100 * f['accuracy'][k]:.2f}%" for k in keys]
                for f in r["finetune"]]
        lines += ["Fine-tuning (Table I of the paper; epoch 0 = before):", "",
                  markdown_table(["epoch", *keys], rows), ""]
    return "\n".join(lines)
