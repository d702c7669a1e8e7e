"""The chosen slicing: a member of the reported front, ranked by RAMB18, with its noise."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from defslice.errors import InputError
from defslice.nas.pareto import Point
from defslice.nas.space import SubNet
from defslice.nas.stats import paired, standard_error

__all__ = ["Choice", "choose", "front_table"]


@dataclass(frozen=True)
class Choice:
    """Outcome of :func:`choose`.

    ``point``: the chosen front member; ``within_drop``: whether its accuracy is within
    ``max_drop`` of ``unsliced`` (both fractions). When it is not, no front member was,
    and ``point`` is the most accurate one.
    """

    point: Point
    within_drop: bool
    unsliced: float
    max_drop: float

    @property
    def note(self) -> str:
        """One sentence for reports: what the choice means."""
        drop = 100 * (self.unsliced - self.point.accuracy)
        if self.within_drop:
            return (f"{self.point.subnet}: the front member with the fewest RAMB18 within "
                    f"the allowed drop of {100 * self.max_drop:.2f} points "
                    f"(measured drop {drop:.2f} points).")
        return (f"No point of the front is within the allowed drop of "
                f"{100 * self.max_drop:.2f} points of the unsliced accuracy; "
                f"{self.point.subnet}, the most accurate member, is {drop:.2f} points below "
                "it. Raise nas.max_accuracy_drop or widen the search space to accept it.")

    def as_dict(self) -> dict:
        return {"subnet": self.point.subnet.as_dict(), "within_drop": self.within_drop,
                "max_drop": self.max_drop, "note": self.note}


def choose(front: Sequence[Point], unsliced_accuracy: float, max_drop: float,
           blocks: Callable[[SubNet], float]) -> Choice:
    """The member of ``front`` with the fewest ``blocks`` (RAMB18) among those whose
    accuracy is at most ``max_drop`` below ``unsliced_accuracy``; ties go to the lower
    search resource, then the higher accuracy. If none qualifies, the most accurate
    member (fewest blocks among equals), flagged ``within_drop=False``.

    Raises
    ------
    InputError
        When ``front`` is empty.
    """
    if not front:
        raise InputError("the search found no front to choose from (check nas.r_min/r_max)")
    ok = [p for p in front if p.accuracy >= unsliced_accuracy - max_drop - 1e-12]
    if ok:
        best = min(ok, key=lambda p: (blocks(p.subnet), p.resource, -p.accuracy, p.subnet))
    else:
        best = max(front, key=lambda p: (p.accuracy, -blocks(p.subnet), -p.resource))
    return Choice(best, bool(ok), unsliced_accuracy, max_drop)


def front_table(front: Sequence[Point], correct: Mapping[SubNet, np.ndarray],
                unsliced: np.ndarray | None) -> list[dict]:
    """Rows of the reported front (resource ascending) with their noise.

    Each row: the point (``as_dict``), ``se`` (its accuracy's standard error), ``gain``
    (paired comparison with the next cheaper member: accuracy bought by the extra
    resource; a ``tie`` means the difference is within the noise) and ``drop`` (paired
    comparison of the unsliced model with the point). Fields whose per-image results
    are missing are ``None``.
    """
    rows, prev = [], None
    for p in sorted(front, key=lambda p: (p.resource, -p.accuracy)):
        c = correct.get(p.subnet)
        row = {**p.as_dict(), "se": None if c is None else standard_error(c),
               "gain": None, "drop": None}
        if c is not None and prev is not None:
            row["gain"] = paired(c, prev).as_dict()
        if c is not None and unsliced is not None:
            row["drop"] = paired(unsliced, c).as_dict()
        rows.append(row)
        prev = c
    return rows
