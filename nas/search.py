"""Searches of the slicing space: Algorithm 1, exhaustive enumeration, pymoo NSGA-II.

All three share one :class:`Objective`, which memoizes evaluations, so a sub-net is
evaluated once however many searches ask for it, and counts the distinct sub-nets each
search asked for (its evaluation budget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from defslice.config import NasConfig
from defslice.nas.pareto import Point, pareto_front, update_front
from defslice.nas.space import SearchSpace, SubNet

__all__ = ["Objective", "SearchResult", "evolutionary_search", "exhaustive_search",
           "nsga2_search"]


class Objective:
    """Accuracy and resource of sub-nets, memoized.

    Arguments
    ---------
    accuracy : callable SubNet -> float
        Top-1 accuracy in [0, 1] of the sub-net (deterministic).
    resource : callable SubNet -> float
        Resource of the sub-net (lower is better).
    """

    def __init__(self, accuracy: Callable[[SubNet], float],
                 resource: Callable[[SubNet], float]):
        self._accuracy, self._resource = accuracy, resource
        self.cache: dict[SubNet, Point] = {}

    def __call__(self, x: SubNet, seen: set[SubNet] | None = None) -> Point:
        """Point of ``x``; ``seen`` (a search's own set) records that it was asked for."""
        if seen is not None:
            seen.add(x)
        if x not in self.cache:
            self.cache[x] = Point(x, float(self._accuracy(x)), float(self._resource(x)))
        return self.cache[x]


@dataclass
class SearchResult:
    """What a search produced.

    ``front``: Pareto front (resource ascending); ``evaluated``: every distinct sub-net
    the search asked for, in first-asked order; ``history``: after each generation, the
    distinct sub-nets evaluated so far and the front (Alg. 1 only).
    """

    name: str
    front: list[Point]
    evaluated: list[Point]
    history: list[tuple[int, list[Point]]] = field(default_factory=list)

    @property
    def front_per_generation(self) -> list[int]:
        """Front size after each generation (Alg. 1 only)."""
        return [len(front) for _, front in self.history]

    @property
    def evaluations(self) -> int:
        return len(self.evaluated)


class _Tracker:
    """Distinct sub-nets one search asked for, in order."""

    def __init__(self, objective: Objective):
        self.objective, self.seen, self.order = objective, set(), []

    def __call__(self, x: SubNet) -> Point:
        if x not in self.seen:
            self.order.append(x)
        return self.objective(x, self.seen)

    def points(self) -> list[Point]:
        return [self.objective.cache[x] for x in self.order]


def evolutionary_search(space: SearchSpace, objective: Objective, nas: NasConfig,
                        progress: bool = False) -> SearchResult:
    """Algorithm 1: sampling-based bi-objective evolutionary search.

    Generation 1 samples ``k = nas.samples_per_generation`` random sub-nets. Every later
    generation's ``k`` sub-nets are children of the current front: with probability
    ``nas.crossover_prob`` a crossover of two front members (``SearchSpace.crossover``),
    otherwise a mutation of one (``SearchSpace.mutate``, clipped to the ranges); a child
    that was already evaluated is mutated again (up to 8 times) so the generation
    spends its evaluations on new sub-nets, and one child in four is a fresh random
    sample to keep exploring. After each generation the front is updated with the
    evaluated children inside ``[nas.r_min, nas.r_max]``. Reproducible from ``nas.seed``.
    """
    rng = np.random.default_rng(nas.seed)
    track = _Tracker(objective)
    front: list[Point] = []
    history: list[tuple[int, list[Point]]] = []
    gens = range(nas.generations)
    if progress:
        from tqdm import tqdm

        gens = tqdm(gens, desc="evolutionary search", unit="gen")
    k = nas.samples_per_generation
    for t in gens:
        if t == 0 or not front:
            batch = [space.sample(rng) for _ in range(k)]
        else:
            batch = [_child(space, front, rng, nas.crossover_prob, track.seen, i)
                     for i in range(k)]
        front = update_front(front, [track(x) for x in batch], nas.r_min, nas.r_max)
        history.append((len(track.order), front))
    return SearchResult("evolutionary", front, track.points(), history)


def _child(space: SearchSpace, front: list[Point], rng: np.random.Generator,
           prob: float, seen: set[SubNet], i: int) -> SubNet:
    if i % 4 == 3:
        return space.sample(rng)
    a = front[rng.integers(len(front))].subnet
    if len(front) >= 2 and rng.random() < prob:
        b = front[rng.integers(len(front))].subnet
        child = space.crossover(a, b, rng, 1.0)
    else:
        child = space.mutate(a, rng)
    for _ in range(8):
        if child not in seen:
            break
        child = space.mutate(child, rng)
    return child


def exhaustive_search(space: SearchSpace, objective: Objective, nas: NasConfig,
                      progress: bool = False) -> SearchResult:
    """Evaluate every sub-net of ``space``: the ground-truth front."""
    track = _Tracker(objective)
    it = iter(space)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=space.size, desc="exhaustive", unit="sub-net")
    pts = [track(x) for x in it]
    return SearchResult("exhaustive", pareto_front(pts, nas.r_min, nas.r_max), pts)


def nsga2_search(space: SearchSpace, objective: Objective, nas: NasConfig,
                 budget: int) -> SearchResult:
    """pymoo NSGA-II on integer (Hs, Ws, overlap index) with ``budget`` evaluations.

    Population ``nas.samples_per_generation``; SBX crossover and polynomial mutation with
    rounding repair (pymoo's recipe for integer variables); duplicates eliminated; run
    until pymoo has made ``budget`` evaluation calls. Seeded with ``nas.seed``.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import ElementwiseProblem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    track = _Tracker(objective)
    xl = np.array([space.h_range[0], space.w_range[0], 0])
    xu = np.array([space.h_range[1], space.w_range[1], len(space.overlaps) - 1])

    class _Problem(ElementwiseProblem):
        def __init__(self):
            super().__init__(n_var=3, n_obj=2, xl=xl, xu=xu, vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            v = np.clip(np.rint(x).astype(int), xl, xu)
            p = track(SubNet(int(v[0]), int(v[1]), space.overlaps[int(v[2])]))
            out["F"] = [-p.accuracy, p.resource]

    algo = NSGA2(pop_size=max(4, nas.samples_per_generation),
                 sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                 mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                 eliminate_duplicates=True)
    minimize(_Problem(), algo, ("n_evals", budget), seed=nas.seed, verbose=False)
    pts = track.points()
    return SearchResult("nsga2", pareto_front(pts, nas.r_min, nas.r_max), pts)
