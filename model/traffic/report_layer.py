"""Markdown sections of the layer scope: the layer's tensors, the baselines' layers, q."""

from __future__ import annotations

from defslice.reporting import markdown_table

__all__ = ["layer_sections"]


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _tensor_section(res: dict) -> list[str]:
    g = res["layer_graph"]
    x = g["tensors"]["x"]["bytes"]
    rows = [[f"`{name}`", t["axes"], " x ".join(map(str, t["shape"])), _kib(t["bytes"]),
             f"{t['bytes'] / x:.3f}"] for name, t in g["tensors"].items()]
    weights = ", ".join(f"{op} {_kib(n)}" for op, n in g["weights"].items())
    ops = " -> ".join(o["name"] for o in g["operators"])
    return [
        "## The layer's tensors", "",
        "What every layer-scope dataflow computes (`defslice.model.dat_layer`): "
        f"{ops}. HW = pixels, Nk = keys per group, G = offset groups, heads = attention "
        "heads; stored sizes with the row padding of their layout.", "",
        markdown_table(["tensor", "axes", "shape", "KiB", "/ size(x)"], rows), "",
        f"Parameters (KiB): {weights}.", "",
    ]


def _layers_text(layers: list[dict]) -> str:
    return " \\| ".join(" + ".join(layer["operators"]) for layer in layers)


def _schedule_section(res: dict) -> list[str]:
    flows = res["scopes"]["layer"]["dataflows"]
    rows = []
    for name, s in res["schedules"].items():
        rows.append([s["label"], _layers_text(s["layers"]), s["q"],
                     ", ".join(s["on_chip"]) or "-", "yes" if s["weights_once"] else "no",
                     f"{flows[name]['total']['beats']:,}"])
    out = [
        "## Baselines and schedules: which operators meet in DRAM", "",
        "Each layer (between `|`) reads from DRAM what its operators do not make, and "
        "writes what a later layer reads (and `y`); `q` as the policy says (next section).",
        "",
        markdown_table(["dataflow", "layers", "q", "kept on chip", "weights once",
                        "beats"], rows), "",
    ]
    ops = res["schedules"].get("layer_by_layer_ops")
    if ops:
        rows = []
        for layer in ops["layers"]:
            rd = ", ".join(f"{t} {b:,}" for t, b in layer["read"].items())
            wr = ", ".join(f"{t} {b:,}" for t, b in layer["write"].items())
            total = sum(layer["read"].values()) + sum(layer["write"].values())
            rows.append([" + ".join(layer["operators"]), rd, wr or "-", f"{total:,}"])
        out += ["Per-operator baseline, beats per tensor:", "",
                markdown_table(["operator", "reads", "writes", "beats"], rows), ""]
    return out


def _q_section(res: dict) -> list[str]:
    x_beats = res["scopes"]["layer"]["dataflows"]["compulsory"]["per_tensor"]["value"][
        "read"]["beats"]
    rows = []
    for s in res["schedules"].values():
        st, rc = s["q_variants"]["store"], s["q_variants"]["recompute"]
        diff = st["beats"] - rc["beats"]
        rows.append([s["label"], s["q"], f"{st['beats']:,} ({_pct(st['normalized']['beats'])})",
                     f"{rc['beats']:,} ({_pct(rc['normalized']['beats'])})",
                     f"{diff:,} ({diff / x_beats:.2f} size(x))"])
    return [
        "## Storing versus recomputing q", "",
        "`q` is as large as `x` and a 1x1 projection of it. Stored: written once, read by "
        "each later layer that needs it. Recomputed: each such layer streams `x` (and "
        "`Wq` unless kept) instead, and `q` never goes to DRAM. Normalized to the "
        "two-layer baseline with `q` stored. The sliced dataflow computes `q` on chip "
        "from the window (no DRAM either way).", "",
        markdown_table(["dataflow", "default", "q stored", "q recomputed",
                        "stored - recomputed (beats)"], rows), "",
    ]


def layer_sections(res: dict) -> list[str]:
    """The layer scope's extra sections (lines of Markdown)."""
    if "schedules" not in res:
        return []
    return _tensor_section(res) + _schedule_section(res) + _q_section(res)
