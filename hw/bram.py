"""Block-RAM and LUT-RAM cost of one memory on a Xilinx 7-series part, as yosys maps it.

Shared by the slicing search's resource objective (``docs/nas.md``, "Resource
objectives") and the layer engine's resource estimate (``docs/hw_layer.md``).
"""

from __future__ import annotations

import math

__all__ = ["DEEP_WORDS", "LUTRAM_COST", "RAMB18_BITS", "RAMB18_COST", "RAMB18_SHAPES",
           "bram18_blocks", "deep_chunk_depths", "in_lutram"]

#: Xilinx 7-series RAMB18E1 aspect ratios: port width (bits) -> depth (words).
#: Width 36 exists only in simple dual-port mode, which a window buffer (one write
#: port from the loader, one read port to the sampler) uses.
RAMB18_SHAPES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
RAMB18_BITS = 18 * 1024
#: yosys ``memory_libmap`` costs (xc7): a RAMB18 129, one simple-dual-port LUT RAM cell
#: 8 (32 x 6 or 64 x 3 bits). A memory goes where it costs less, see :func:`in_lutram`.
RAMB18_COST = 129
LUTRAM_COST = 8
#: Depth of the deepest block-RAM shape of 9 bits (RAMB18 and ECP5 DP16KD 2048 x 9): a
#: memory of this depth maps to ``ceil(width / 9)`` blocks side by side, each driving 9
#: bits of the word, with no multiplexer after them (deeper memories are cut at it:
#: :func:`deep_chunk_depths`).
DEEP_WORDS = 2048


def deep_chunk_depths(depth: int) -> list[int]:
    """Depths of the chunks a memory of ``depth`` words is built from: full chunks of
    :data:`DEEP_WORDS` words, the last one holding the rest (``[depth]`` up to
    :data:`DEEP_WORDS`). Synthesis maps a 2160 x 64 memory as one piece to ten 512 x 36
    blocks and a 5-way multiplexer of 64-bit words; cut at 2048, it takes eight 2048 x 9
    blocks and two 512 x 36 blocks and a 2-way multiplexer, a third of the read wires."""
    full, rest = divmod(depth, DEEP_WORDS)
    return [DEEP_WORDS] * full + ([rest] if rest else [])


def in_lutram(depth: int, width: int) -> bool:
    """Whether synthesis maps a ``depth`` x ``width`` memory to distributed (LUT) RAM
    rather than block RAM: yosys's cheaper choice, LUT RAM cells of 32 x 6 or 64 x 3 bits
    (cost 8 each) against :func:`bram18_blocks` RAMB18 (cost 129 each). Up to 64 words
    LUT RAM always wins; a 16 x 128 chunk is LUT RAM (22 cells, 176 < 516), a 112 x 128
    chunk block RAM (86 cells, 688 > 516), a 104 x 32 bank block RAM (22 cells, 176 > 129).
    """
    if depth <= 0 or width <= 0:
        return False
    cells = math.ceil(width / 6) if depth <= 32 else math.ceil(depth / 64) * math.ceil(width / 3)
    return LUTRAM_COST * cells < RAMB18_COST * bram18_blocks(depth, width)


def bram18_blocks(depth: int, width: int) -> int:
    """RAMB18 blocks of one memory of ``depth`` words of ``width`` bits.

    The fewer of two packings:

    * by columns: the word is cut into ``ceil(width / 36)`` columns of at most 36 bits;
      each column uses the narrowest RAMB18 shape that holds its width and takes
      ``ceil(depth / shape_depth)`` blocks;
    * by depth: for one shape ``(w, d)``, ``floor(depth / d)`` full rows of
      ``ceil(width / w)`` blocks, and the remaining ``depth mod d`` words in the cheapest
      single shape, ``ceil(width / w') * ceil(rest / d')`` (yosys maps a 2160 x 128
      memory as 2048 words of 9-bit blocks plus 112 words of 36-bit blocks: 15 + 4).
    """
    if depth <= 0 or width <= 0:
        return 0
    by_columns = 0
    for col in range(math.ceil(width / 36)):
        col_width = min(36, width - 36 * col)
        shape_depth = next(d for w, d in RAMB18_SHAPES if w >= col_width)
        by_columns += math.ceil(depth / shape_depth)

    def single(words: int) -> int:
        return min(math.ceil(width / w) * math.ceil(words / d) for w, d in RAMB18_SHAPES)

    by_depth = min((depth // d) * math.ceil(width / w) + (single(depth % d) if depth % d else 0)
                   for w, d in RAMB18_SHAPES)
    return min(by_columns, by_depth)
