"""AXI burst arithmetic and the per-tensor traffic accumulator.

Every dataflow reduces to a list of byte *regions* (address, length, direction, tensor).
A region is widened to whole bus beats and cut into INCR bursts exactly as
:func:`defslice.model.layout.split_bursts` cuts it (at most ``max_beats`` beats, never
across a 4 KiB boundary); :func:`region_bursts` does the same arithmetic on arrays of
regions at once, so millions of sampling-point fetches are counted without a Python loop.

Units
-----
bursts : AXI transactions (one address handshake each).
beats : data transfers of one bus width; the headline "accesses" of the study.
bytes : payload bytes the dataflow asked for (before widening to whole beats).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from defslice.errors import InputError
from defslice.model.layout import PAGE, Burst

__all__ = ["TENSORS", "Totals", "TrafficCount", "region_bursts"]

#: Tensor labels in reports, in display order.
TENSORS = ("value", "query", "descriptor", "intermediate", "weights", "output")


def _ceil_div(a: np.ndarray | int, b: int) -> np.ndarray | int:
    return -(-a // b)


def region_bursts(addr: ArrayLike, nbytes: ArrayLike, bus_bytes: int, max_beats: int,
                  boundary: int = PAGE) -> tuple[np.ndarray, np.ndarray]:
    """Bursts and beats of each byte region, as :func:`split_bursts` would issue them.

    Parameters
    ----------
    addr, nbytes : int arrays (R,)
        Start byte address and length of each region; any alignment (the region is
        widened to the bus beats it touches). Zero-length regions cost nothing.
    bus_bytes : int
        Bytes per beat.
    max_beats : int
        Longest burst (<= 256).
    boundary : int
        No burst crosses a multiple of this (4096).

    Returns
    -------
    bursts, beats : int64 arrays (R,)
    """
    addr = np.asarray(addr, dtype=np.int64)
    nbytes = np.asarray(nbytes, dtype=np.int64)
    if addr.shape != nbytes.shape:
        raise InputError(f"addr {addr.shape} and nbytes {nbytes.shape} differ in shape")
    if (addr < 0).any() or (nbytes < 0).any():
        raise InputError("regions need non-negative addresses and lengths")
    if boundary % bus_bytes:
        raise InputError(f"the {boundary}-byte boundary is not a multiple of the "
                         f"{bus_bytes}-byte bus")
    lo = addr // bus_bytes * bus_bytes
    hi = _ceil_div(addr + nbytes, bus_bytes) * bus_bytes
    beats = np.where(nbytes > 0, (hi - lo) // bus_bytes, 0)
    p0 = lo // boundary
    p1 = (np.maximum(hi, lo + 1) - 1) // boundary
    per_page = boundary // bus_bytes
    # A region inside one page: greedy max-length bursts.  Across pages: the head up to
    # the first boundary, whole pages in the middle, the tail after the last boundary.
    head = np.where(p0 == p1, beats, ((p0 + 1) * boundary - lo) // bus_bytes)
    tail = np.where(p0 == p1, 0, (hi - p1 * boundary) // bus_bytes)
    middle = np.maximum(p1 - p0 - 1, 0)
    bursts = _ceil_div(head, max_beats) + _ceil_div(tail, max_beats) \
        + middle * _ceil_div(per_page, max_beats)
    return np.where(nbytes > 0, bursts, 0), beats


@dataclass
class Totals:
    """Bursts, beats and payload bytes of one tensor in one direction."""

    bursts: int = 0
    beats: int = 0
    bytes: int = 0

    def add(self, other: Totals) -> None:
        self.bursts += other.bursts
        self.beats += other.beats
        self.bytes += other.bytes

    def as_dict(self) -> dict[str, int]:
        return {"bursts": self.bursts, "beats": self.beats, "bytes": self.bytes}


@dataclass
class TrafficCount:
    """Traffic of one dataflow, per tensor and direction.

    Parameters
    ----------
    bus_bytes : int
        Bytes per beat.
    max_beats : int
        Longest burst.
    record : bool
        Keep every region (address, length, direction) in issue order, for an address
        trace; off by default because a large workload has tens of millions of regions.
    """

    bus_bytes: int
    max_beats: int
    record: bool = False
    totals: dict[tuple[str, bool], Totals] = field(default_factory=dict)
    regions: list[tuple[np.ndarray, np.ndarray, bool]] = field(default_factory=list)

    def _slot(self, tensor: str, write: bool) -> Totals:
        if tensor not in TENSORS:
            raise InputError(f"unknown tensor label {tensor!r}; one of {TENSORS}")
        return self.totals.setdefault((tensor, write), Totals())

    def add_regions(self, tensor: str, write: bool, addr: ArrayLike,
                    nbytes: ArrayLike) -> None:
        """Count byte regions (arrays of start address and length, any alignment)."""
        addr = np.atleast_1d(np.asarray(addr, dtype=np.int64))
        nbytes = np.broadcast_to(np.asarray(nbytes, dtype=np.int64), addr.shape)
        bursts, beats = region_bursts(addr, nbytes, self.bus_bytes, self.max_beats)
        self._slot(tensor, write).add(Totals(int(bursts.sum()), int(beats.sum()),
                                             int(nbytes.sum())))
        if self.record:
            self.regions.append((addr.copy(), np.array(nbytes), write))

    def add_bursts(self, bursts: Iterable[Burst], rename: dict[str, str] | None = None) -> None:
        """Count bursts already cut by the layout contract (bytes = beats x bus width).

        ``rename`` maps the contract's tensor names to this study's labels.
        """
        rename = rename or {}
        for b in bursts:
            t = self._slot(rename.get(b.tensor, b.tensor), b.write)
            t.add(Totals(1, b.beats, b.beats * self.bus_bytes))
            if self.record:
                self.regions.append((np.array([b.addr]), np.array([b.beats * self.bus_bytes]),
                                     b.write))

    # -- views ---------------------------------------------------------------------------
    def direction(self, write: bool) -> Totals:
        """Sum over tensors of one direction."""
        out = Totals()
        for (_, w), t in self.totals.items():
            if w == write:
                out.add(t)
        return out

    def total(self) -> Totals:
        out = self.direction(False)
        out.add(self.direction(True))
        return out

    def as_dict(self) -> dict:
        """``{"read": .., "write": .., "total": .., "per_tensor": {tensor: {read, write}}}``."""
        per: dict[str, dict[str, dict[str, int]]] = {}
        for tensor in TENSORS:
            for write in (False, True):
                if (tensor, write) in self.totals:
                    per.setdefault(tensor, {})["write" if write else "read"] = \
                        self.totals[(tensor, write)].as_dict()
        return {"read": self.direction(False).as_dict(),
                "write": self.direction(True).as_dict(),
                "total": self.total().as_dict(), "per_tensor": per}
