"""Per-point neighbour fetches: the access pattern of the unsliced dataflows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from defslice.model.traffic.base import TrafficContext
from defslice.model.traffic.counter import TrafficCount
from defslice.model.traffic.trace import CornerChunk

__all__ = ["count_corner_fetches"]

#: Optional filter: chunk -> (keep mask over corners, or None for all valid corners).
CornerFilter = Callable[[CornerChunk], np.ndarray]


def count_corner_fetches(ctx: TrafficContext, c: TrafficCount,
                         keep: CornerFilter | None = None) -> None:
    """Fetch each in-map corner of each point as its own read of one head's channels.

    A corner outside the map is zero padding and never fetched. ``keep`` narrows the
    fetched corners further (pruning, reuse-buffer hits).
    """
    nbytes = ctx.head_chunk_bytes()
    for ch in ctx.trace.corner_chunks():
        mask = ch.valid if keep is None else keep(ch)
        pixel = ch.pixel[mask]
        head = np.broadcast_to(ch.head, ch.pixel.shape)[mask]
        c.add_regions("value", False, ctx.chunk_addr(pixel, head),
                      np.full(pixel.shape, nbytes, dtype=np.int64))
