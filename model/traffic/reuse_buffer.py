"""A direct-mapped on-chip buffer of fetched pixels, simulated on whole arrays at once."""

from __future__ import annotations

import numpy as np

__all__ = ["DirectMappedBuffer"]


class DirectMappedBuffer:
    """Direct-mapped buffer of ``lines`` entries; line ``t`` lives in slot ``t % lines``.

    Chosen over LRU because it is what a small FPGA buffer with a tag RAM costs, and
    because its hits can be computed for a whole access sequence with one stable sort:
    an access hits when the previous access to the same slot was the same line.

    Parameters
    ----------
    lines : int
        Number of slots (0: no buffer, every access misses).
    """

    def __init__(self, lines: int) -> None:
        self.lines = int(lines)
        self.tags = np.full(max(self.lines, 1), -1, dtype=np.int64)

    def access(self, tags: np.ndarray) -> np.ndarray:
        """Access ``tags`` (int64, >= 0) in order; returns the hit mask, same shape.

        The buffer's state carries over between calls, so a long sequence may be fed in
        chunks.
        """
        tags = np.asarray(tags, dtype=np.int64).reshape(-1)
        if self.lines == 0 or tags.size == 0:
            return np.zeros(tags.shape, dtype=bool)
        slot = tags % self.lines
        order = np.argsort(slot, kind="stable")
        s, t = slot[order], tags[order]
        first = np.ones(t.size, dtype=bool)
        first[1:] = s[1:] != s[:-1]
        prev = np.empty_like(t)
        prev[1:] = t[:-1]
        prev[first] = self.tags[s[first]]
        last = np.ones(t.size, dtype=bool)
        last[:-1] = s[:-1] != s[1:]
        self.tags[s[last]] = t[last]
        hit = np.empty(t.size, dtype=bool)
        hit[order] = prev == t
        return hit
