"""The search space of slicing strategies and its genetic operators (paper, Alg. 1).

A point is a :class:`SubNet` ``(Hs, Ws, O)``: slice height and width in pixels of the
largest map and the overlap halo in pixels. Every point is a sub-net of one
weight-shared supernet: the weights never change with the slicing, only the sampling
windows and the attention grouping do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from defslice.errors import ConfigError

if TYPE_CHECKING:
    from defslice.config import Config

__all__ = ["SearchSpace", "SubNet"]


@dataclass(frozen=True, order=True)
class SubNet:
    """One slicing strategy: ``slice_h`` (Hs), ``slice_w`` (Ws), ``overlap`` (O), pixels."""

    slice_h: int
    slice_w: int
    overlap: int

    def as_dict(self) -> dict[str, int]:
        return {"slice_h": self.slice_h, "slice_w": self.slice_w, "overlap": self.overlap}

    def __str__(self) -> str:
        return f"Hs={self.slice_h} Ws={self.slice_w} O={self.overlap}"


@dataclass(frozen=True)
class SearchSpace:
    """Inclusive ranges of Hs and Ws and the overlap values searched.

    Members
    -------
    h_range, w_range : (int, int)
        Inclusive (lo, hi) of Hs and Ws, pixels of level 0.
    overlaps : tuple of int
        Overlap values, pixels, sorted ascending.
    """

    h_range: tuple[int, int]
    w_range: tuple[int, int]
    overlaps: tuple[int, ...]

    def __post_init__(self) -> None:
        for name, (lo, hi) in (("nas.slice_h_range", self.h_range),
                               ("nas.slice_w_range", self.w_range)):
            if not 1 <= lo <= hi:
                raise ConfigError(name, (lo, hi), "a pair 1 <= lo <= hi")
        if not self.overlaps or min(self.overlaps) < 0:
            raise ConfigError("nas.overlaps", self.overlaps, "at least one value >= 0")
        object.__setattr__(self, "overlaps", tuple(sorted(set(self.overlaps))))

    @classmethod
    def from_config(cls, cfg: Config) -> SearchSpace:
        """The space of ``cfg.nas``, checked against the level-0 map of ``cfg.workload``."""
        h0, w0 = cfg.workload.levels[0]
        n = cfg.nas
        if n.slice_h_range[1] > h0:
            raise ConfigError("nas.slice_h_range", n.slice_h_range,
                              f"within [1, {h0}] (the level-0 map height)")
        if n.slice_w_range[1] > w0:
            raise ConfigError("nas.slice_w_range", n.slice_w_range,
                              f"within [1, {w0}] (the level-0 map width)")
        return cls(tuple(n.slice_h_range), tuple(n.slice_w_range), tuple(n.overlaps))

    @property
    def size(self) -> int:
        """Number of sub-nets."""
        return ((self.h_range[1] - self.h_range[0] + 1) * (self.w_range[1] - self.w_range[0] + 1)
                * len(self.overlaps))

    def __iter__(self) -> Iterator[SubNet]:
        for h in range(self.h_range[0], self.h_range[1] + 1):
            for w in range(self.w_range[0], self.w_range[1] + 1):
                for o in self.overlaps:
                    yield SubNet(h, w, o)

    def __contains__(self, x: object) -> bool:
        return (isinstance(x, SubNet)
                and self.h_range[0] <= x.slice_h <= self.h_range[1]
                and self.w_range[0] <= x.slice_w <= self.w_range[1]
                and x.overlap in self.overlaps)

    def sample(self, rng: np.random.Generator) -> SubNet:
        """A uniformly random sub-net."""
        return SubNet(int(rng.integers(self.h_range[0], self.h_range[1] + 1)),
                      int(rng.integers(self.w_range[0], self.w_range[1] + 1)),
                      int(self.overlaps[rng.integers(len(self.overlaps))]))

    def clip(self, h: int, w: int, overlap_index: int) -> SubNet:
        """Sub-net with Hs, Ws clipped to their ranges and the overlap index to the list."""
        oi = min(max(overlap_index, 0), len(self.overlaps) - 1)
        return SubNet(min(max(h, self.h_range[0]), self.h_range[1]),
                      min(max(w, self.w_range[0]), self.w_range[1]),
                      self.overlaps[oi])

    def mutate(self, x: SubNet, rng: np.random.Generator, step: int | None = None) -> SubNet:
        """Alg. 1 line 16-17: ``x' = x + eps``, clipped to the valid ranges.

        ``eps`` is non-zero on one coordinate chosen uniformly: Hs or Ws move by a
        non-zero integer uniform in ``[-step, step]``, the overlap by one place in its
        list. ``step`` defaults to half the wider range (at least 1).

        Why one coordinate: the accuracy of a slicing is not smooth in (Hs, Ws, O) (how
        the map divides into slices matters, e.g. Hs = 14 and 28 split 56 rows evenly),
        so front members sit on ridges such as "Hs = 28, any Ws"; moving along a ridge
        needs the other coordinates unchanged, which a move on all three at once (the
        first version) rarely left them (``docs/nas.md``, "Measured so far").
        """
        if step is None:
            span = max(self.h_range[1] - self.h_range[0], self.w_range[1] - self.w_range[0])
            step = max(1, span // 2)
        coord = int(rng.integers(3))
        oi = self.overlaps.index(x.overlap)
        if coord == 2:
            return self.clip(x.slice_h, x.slice_w, oi + int(rng.choice((-1, 1))))
        delta = int(rng.integers(1, step + 1)) * int(rng.choice((-1, 1)))
        if coord == 0:
            return self.clip(x.slice_h + delta, x.slice_w, oi)
        return self.clip(x.slice_h, x.slice_w + delta, oi)

    def crossover(self, a: SubNet, b: SubNet, rng: np.random.Generator,
                  prob: float) -> SubNet:
        """Alg. 1 line 19-20, ``C_P(a, b)``: with probability ``prob`` the child takes Hs
        from one parent and Ws from the other (which from which is random) and the overlap
        of either; otherwise it is a copy of ``a``."""
        if rng.random() >= prob:
            return a
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        overlap = first.overlap if rng.random() < 0.5 else second.overlap
        return SubNet(first.slice_h, second.slice_w, overlap)
