"""Pareto fronts of (accuracy up, resources down) and their 2-D hypervolume."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from defslice.nas.space import SubNet

__all__ = ["Point", "dominates", "hypervolume", "hypervolume_trace", "pareto_front",
           "update_front"]


@dataclass(frozen=True)
class Point:
    """An evaluated sub-net: ``accuracy`` in [0, 1] (higher is better) and ``resource``
    (lower is better; the unit is the objective's, bits or RAMB18 blocks)."""

    subnet: SubNet
    accuracy: float
    resource: float

    def as_dict(self) -> dict:
        return {**self.subnet.as_dict(), "accuracy": self.accuracy, "resource": self.resource}


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good as ``b`` on both objectives and better on one."""
    return (a.accuracy >= b.accuracy and a.resource <= b.resource
            and (a.accuracy > b.accuracy or a.resource < b.resource))


def _in_bounds(p: Point, r_min: float | None, r_max: float | None) -> bool:
    return (r_min is None or p.resource >= r_min) and (r_max is None or p.resource <= r_max)


def update_front(front: Sequence[Point], candidates: Iterable[Point],
                 r_min: float | None = None, r_max: float | None = None) -> list[Point]:
    """Alg. 1 lines 9-14: add each candidate with resource in [r_min, r_max] that no
    member dominates, and drop the members it dominates.

    A candidate equal on both objectives to a member is not added (the member that came
    first stays), so the front holds one sub-net per (accuracy, resource) pair. Returns
    the new front sorted by resource, then accuracy descending.
    """
    out = list(front)
    for c in candidates:
        if not _in_bounds(c, r_min, r_max):
            continue
        if any(dominates(m, c) or (m.accuracy == c.accuracy and m.resource == c.resource)
               for m in out):
            continue
        out = [m for m in out if not dominates(c, m)] + [c]
    return sorted(out, key=lambda p: (p.resource, -p.accuracy, p.subnet))


def pareto_front(points: Iterable[Point], r_min: float | None = None,
                 r_max: float | None = None) -> list[Point]:
    """Non-dominated subset of ``points`` within the resource bounds."""
    return update_front([], sorted(points, key=lambda p: (p.resource, -p.accuracy,
                                                          p.subnet)), r_min, r_max)


def hypervolume(front: Iterable[Point], ref_accuracy: float, ref_resource: float) -> float:
    """Area dominated by ``front`` and bounded by the reference point.

    The region is every (accuracy, resource) with accuracy in [ref_accuracy, a_i] and
    resource in [r_i, ref_resource] for some member i; members worse than the
    reference on either objective add nothing. Units: accuracy x resource.
    """
    pts = sorted((p for p in front if p.accuracy > ref_accuracy and p.resource < ref_resource),
                 key=lambda p: (p.resource, -p.accuracy))
    area, best = 0.0, ref_accuracy
    for p in pts:  # resource ascending: each point adds the strip above the best so far
        if p.accuracy > best:
            area += (p.accuracy - best) * (ref_resource - p.resource)
            best = p.accuracy
    return area


def hypervolume_trace(points: Sequence[Point], ref_accuracy: float, ref_resource: float,
                      r_min: float | None = None, r_max: float | None = None) -> list[float]:
    """Hypervolume of the front of ``points[:n]`` for ``n = 1 .. len(points)``: a
    search's progress against its evaluations, ``points`` in the order evaluated."""
    front: list[Point] = []
    hv, out = 0.0, []
    for p in points:
        new = update_front(front, [p], r_min, r_max)
        if p in new:
            hv = hypervolume(new, ref_accuracy, ref_resource)
        front = new
        out.append(hv)
    return out
