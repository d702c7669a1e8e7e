"""Address traces in Ramulator 2's ``LoadStoreTrace`` format (``LD 0x..`` / ``ST 0x..``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defslice.errors import InputError
from defslice.model.traffic.counter import TrafficCount

__all__ = ["write_ramulator_trace"]


def write_ramulator_trace(count: TrafficCount, path: str | Path,
                          request_bytes: int = 64) -> int:
    """Write the recorded regions of ``count`` as one line per DRAM request.

    Each region is widened to ``request_bytes``-aligned blocks (a DDR4 x64 burst of 8 is
    64 bytes, Ramulator 2's default request size) and every block becomes one ``LD`` or
    ``ST`` line, in issue order.

    Parameters
    ----------
    count : TrafficCount
        Counted with ``record=True``.
    path : path
        Trace file to write (parent folders are created).
    request_bytes : int
        Bytes per request, a power of two.

    Returns
    -------
    int
        Lines written.
    """
    if not count.record:
        raise InputError("the count was made without record=True: no addresses to trace")
    if request_bytes <= 0 or request_bytes & (request_bytes - 1):
        raise InputError(f"request_bytes must be a power of two, got {request_bytes}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = 0
    with path.open("w") as fh:
        for addr, nbytes, write in count.regions:
            keep = nbytes > 0
            lo = addr[keep] // request_bytes
            hi = -(-(addr[keep] + nbytes[keep]) // request_bytes)
            n = hi - lo
            blocks = np.repeat(lo, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            op = "ST" if write else "LD"
            fh.writelines(f"{op} 0x{b * request_bytes:x}\n" for b in blocks.tolist())
            lines += int(blocks.size)
    return lines
