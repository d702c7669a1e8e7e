"""Searches of the slicing space: Algorithm 1, exhaustive, pymoo NSGA-II, random sampling.

All of them share one :class:`Objective`, which memoizes evaluations, so a sub-net is
evaluated once however many searches ask for it, and counts the distinct sub-nets each
search asked for (its evaluation budget).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from defslice.config import NasConfig
from defslice.errors import InputError
from defslice.nas.evaluation import EvaluationLog, Runner, SerialRunner
from defslice.nas.pareto import Point, pareto_front, update_front
from defslice.nas.space import SearchSpace, SubNet

__all__ = ["Objective", "SearchResult", "evolutionary_search", "exhaustive_search",
           "nsga2_search", "random_search"]


class Objective:
    """Accuracy and resource of sub-nets, memoized, evaluated through a runner.

    Arguments
    ---------
    accuracy : callable SubNet -> float or bool array, or None
        Top-1 accuracy in [0, 1] of the sub-net, or whether each validation image is
        classified correctly (deterministic); evaluated in this process. ``None`` when
        ``runner`` is given.
    resource : callable SubNet -> float
        Resource of the sub-net (lower is better), computed in this process.
    runner : :class:`~defslice.nas.evaluation.Runner`, optional
        Where accuracies are computed (e.g. a process pool); default in this process.
    log : :class:`~defslice.nas.evaluation.EvaluationLog`, optional
        Results found there are not computed again; new ones are appended as they finish.

    ``correct`` holds the per-image results of the sub-nets whose accuracy function
    gives them (for paired comparisons); ``fresh`` / ``resumed`` count the sub-nets
    computed now / taken from the log, ``seconds`` the evaluation time of each.
    """

    def __init__(self, accuracy: Callable[[SubNet], Any] | None,
                 resource: Callable[[SubNet], float], runner: Runner | None = None,
                 log: EvaluationLog | None = None) -> None:
        if runner is None:
            if accuracy is None:
                raise InputError("an Objective needs an accuracy function or a runner")
            runner = SerialRunner(accuracy)
        self._resource, self.runner, self.log = resource, runner, log
        self.cache: dict[SubNet, Point] = {}
        self.correct: dict[SubNet, np.ndarray] = {}
        self.seconds: dict[SubNet, float] = {}
        self.fresh = self.resumed = 0
        if log is not None:
            for x, result in log.records.items():
                self._store(x, result, log.seconds.get(x, 0.0))
            self.resumed = len(log.records)

    def _store(self, x: SubNet, result: Any, seconds: float) -> None:
        if isinstance(result, np.ndarray):
            self.correct[x] = result
            acc = float(result.mean())
        else:
            acc = float(result)
        self.cache[x] = Point(x, acc, float(self._resource(x)))
        self.seconds[x] = seconds

    def many(self, xs: Sequence[SubNet], seen: set[SubNet] | None = None) -> list[Point]:
        """Points of ``xs``; the ones not known yet are evaluated together (in parallel
        when the runner has workers) and logged as each finishes. ``seen`` (a search's
        own set) records that they were asked for."""
        if seen is not None:
            seen.update(xs)
        new = [x for x in dict.fromkeys(xs) if x not in self.cache]
        for x, result, seconds in self.runner.run(new):
            if self.log is not None:
                self.log.append(x, result, seconds)
            self._store(x, result, seconds)
            self.fresh += 1
        return [self.cache[x] for x in xs]

    def __call__(self, x: SubNet, seen: set[SubNet] | None = None) -> Point:
        """Point of ``x``; ``seen`` (a search's own set) records that it was asked for."""
        return self.many([x], seen)[0]


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

    def __init__(self, objective: Objective) -> None:
        self.objective, self.seen, self.order = objective, set(), []

    def many(self, xs: Sequence[SubNet]) -> list[Point]:
        self.order += [x for x in dict.fromkeys(xs) if x not in self.seen]
        return self.objective.many(xs, self.seen)

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
    sample to keep exploring. A generation's sub-nets are evaluated together (in
    parallel when the objective's runner has workers). After each generation the front
    is updated with the evaluated children inside ``[nas.r_min, nas.r_max]``.
    Reproducible from ``nas.seed``.
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
            batch = []
            for i in range(k):  # a child also avoids its siblings
                batch.append(_child(space, front, rng, nas.crossover_prob,
                                    track.seen | set(batch), i))
        front = update_front(front, track.many(batch), nas.r_min, nas.r_max)
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
                      progress: bool = False, chunk: int = 64) -> SearchResult:
    """Evaluate every sub-net of ``space`` (``chunk`` at a time): the ground-truth front."""
    track = _Tracker(objective)
    subnets = list(space)
    chunks = range(0, len(subnets), chunk)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="exhaustive", unit="chunk")
    pts = [p for i in chunks for p in track.many(subnets[i:i + chunk])]
    return SearchResult("exhaustive", pareto_front(pts, nas.r_min, nas.r_max), pts)


def random_search(space: SearchSpace, objective: Objective, nas: NasConfig,
                  budget: int) -> SearchResult:
    """``budget`` distinct sub-nets drawn uniformly without replacement (seeded with
    ``nas.seed``), evaluated ``nas.samples_per_generation`` at a time."""
    rng = np.random.default_rng(nas.seed)
    subnets = list(space)
    order = rng.permutation(len(subnets))[:min(budget, len(subnets))]
    track = _Tracker(objective)
    k = nas.samples_per_generation
    for i in range(0, len(order), k):
        track.many([subnets[j] for j in order[i:i + k]])
    pts = track.points()
    return SearchResult("random", pareto_front(pts, nas.r_min, nas.r_max), pts)


def nsga2_search(space: SearchSpace, objective: Objective, nas: NasConfig,
                 budget: int, max_calls: int | None = None) -> SearchResult:
    """pymoo NSGA-II on integer (Hs, Ws, overlap index) with ``budget`` evaluations.

    Population ``nas.samples_per_generation``; SBX crossover and polynomial mutation with
    rounding repair (pymoo's recipe for integer variables); duplicates eliminated within
    a generation; each generation evaluated together. Runs until ``budget`` distinct
    sub-nets were evaluated or pymoo made ``max_calls`` evaluation calls (default
    ``4 * budget``: it asks for some sub-nets again across generations). Seeded with
    ``nas.seed``.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.core.termination import NoTermination
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling

    track = _Tracker(objective)
    xl = np.array([space.h_range[0], space.w_range[0], 0])
    xu = np.array([space.h_range[1], space.w_range[1], len(space.overlaps) - 1])

    class _Problem(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=3, n_obj=2, xl=xl, xu=xu, vtype=int)

        def _evaluate(self, X: np.ndarray, out: dict, *args: Any, **kwargs: Any) -> None:
            v = np.clip(np.rint(X).astype(int), xl, xu)
            pts = track.many([SubNet(int(h), int(w), space.overlaps[int(o)]) for h, w, o in v])
            out["F"] = np.array([[-p.accuracy, p.resource] for p in pts])

    algo = NSGA2(pop_size=max(4, nas.samples_per_generation),
                 sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                 mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                 eliminate_duplicates=True)
    algo.setup(_Problem(), termination=NoTermination(), seed=nas.seed, verbose=False)
    max_calls = 4 * budget if max_calls is None else max_calls
    while len(track.order) < budget and algo.evaluator.n_eval < max_calls and algo.has_next():
        algo.next()
    pts = track.points()[:budget]
    return SearchResult("nsga2", pareto_front(pts, nas.r_min, nas.r_max), pts)
