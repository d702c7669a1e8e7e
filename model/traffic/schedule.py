"""Layer-scope schedules: the DAT layer's operators grouped into layers that meet in DRAM.

A :class:`Schedule` cuts the operators of :class:`~defslice.model.traffic.layer_graph.LayerGraph`
into layers run one after another. A layer reads from DRAM every input its operators
do not produce themselves, the parameters of its operators, and writes every tensor it
produces that a later layer reads (and ``y``). Inside a layer nothing goes through DRAM.
Tensors named in ``on_chip`` never go to DRAM: a later layer finds them on chip.

``q`` is the one tensor as large as ``x`` that is cheap to recompute (a 1x1
projection of ``x``), so where it is made is a policy of the schedule:

``store``
    ``q`` is computed where the schedule puts it, written once, and read by every later
    layer that consumes it;
``recompute``
    ``q`` never goes to DRAM: every layer that consumes it streams ``x`` and ``Wq`` and
    computes it again (a layer holding only ``q`` disappears).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from defslice.errors import ConfigError
from defslice.model.traffic.base import Dataflow, TrafficContext
from defslice.model.traffic.counter import TrafficCount
from defslice.model.traffic.fetch import count_corner_fetches

__all__ = ["Q_POLICIES", "Schedule", "ScheduledDataflow", "count_schedule"]

#: Where ``q`` lives between layers.
Q_POLICIES = ("store", "recompute")

#: Reads ``x`` at the sampled corners (the ``sample`` operator's gather) into a count.
Gather = Callable[[TrafficContext, TrafficCount], None]


@dataclass(frozen=True)
class Schedule:
    """Operators grouped into layers.

    Members
    -------
    layers : tuple of tuple of str
        Operator names per layer, in order; ``q`` at most once (the ``store`` policy's
        place). Operators the layer lacks (``bias`` without a position bias) are skipped.
    q : str
        :data:`Q_POLICIES`.
    on_chip : frozenset of str
        Tensors kept on chip from the layer that makes them to the layers that read them.
    weights_once : bool
        Parameters read in an earlier layer stay on chip (a fused engine); otherwise every
        layer reads the parameters of its operators.
    """

    layers: tuple[tuple[str, ...], ...]
    q: str = "store"
    on_chip: frozenset[str] = field(default_factory=frozenset)
    weights_once: bool = False

    def __post_init__(self) -> None:
        if self.q not in Q_POLICIES:
            raise ConfigError("schedule.q", self.q, "one of " + ", ".join(Q_POLICIES))
        if sum(layer.count("q") for layer in self.layers) > 1:
            raise ConfigError("schedule.layers", self.layers, "'q' in at most one layer")

    def with_q(self, q: str) -> Schedule:
        """The same layers under another ``q`` policy."""
        return replace(self, q=q)

    def resolved(self, operators: list[str], q_consumers: list[str]) -> list[list[str]]:
        """The layers with the ``q`` policy applied, keeping only ``operators``.

        ``store``: ``q`` stays where it is, or (when no layer names it) goes to the front
        of the first layer that consumes it. ``recompute``: ``q`` goes to the front of
        every layer that consumes it and nowhere else.
        """
        layers = [[o for o in layer if o in operators] for layer in self.layers]
        named = any("q" in layer for layer in layers)
        if self.q == "recompute" or not named:
            layers = [[o for o in layer if o != "q"] for layer in layers]
            for layer in layers:
                if any(o in q_consumers for o in layer):
                    layer.insert(0, "q")
                    if self.q == "store":
                        break
        return [layer for layer in layers if layer]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def count_schedule(ctx: TrafficContext, c: TrafficCount, schedule: Schedule,
                   gather: Gather) -> list[dict]:
    """Count ``schedule`` on the layer of ``ctx`` into ``c``.

    ``x`` is streamed front to back by a layer that computes ``q``; the ``sample``
    operator reads it with ``gather``. Every other tensor is one contiguous stream.

    Returns
    -------
    list of dict
        Per layer: ``operators``, ``read`` and ``write`` (beats per tensor, parameters as
        ``weights:<operator>``).
    """
    graph, ex = ctx.extra.graph, ctx.extra
    names = [o.name for o in graph.operators]
    layers = schedule.resolved(names, graph.consumers("q"))
    # Tensors each layer takes from outside itself, and those every later layer does.
    inputs = []
    for layer in layers:
        ops = [graph.operator(o) for o in layer]
        inputs.append({t for op in ops for t in op.reads} - {op.writes for op in ops})
    later_reads = [set().union(*inputs[i + 1:]) for i in range(len(layers))]
    weights_read: set[str] = set()
    out = []

    def beats(fn: Callable[[], None]) -> int:
        before = c.total().beats
        fn()
        return c.total().beats - before

    def stream(tensor: str, write: bool) -> int:
        t = graph.tensors[tensor]
        return beats(lambda: ctx.stream(c, t.label, write, ex.base[tensor], t.nbytes))

    for i, layer in enumerate(layers):
        ops = [graph.operator(o) for o in layer]
        made = {op.writes for op in ops}
        read = {t: stream(t, False) for t in _unique([t for op in ops for t in op.reads])
                if t not in made and t not in schedule.on_chip}
        if any(op.gathers for op in ops):
            read["x (gather)"] = beats(lambda: gather(ctx, c))
        for op in ops:
            if op.name in graph.weight_bytes and not (schedule.weights_once
                                                      and op.name in weights_read):
                read[f"weights:{op.name}"] = beats(lambda op=op: ctx.stream(
                    c, "weights", False, ex.weights_base[op.name], graph.weight_bytes[op.name]))
                weights_read.add(op.name)
        write = {op.writes: stream(op.writes, True) for op in ops
                 if op.writes == graph.output
                 or (op.writes in later_reads[i] and op.writes not in schedule.on_chip)}
        out.append({"operators": layer, "read": read, "write": write})
    return out


class ScheduledDataflow(Dataflow):
    """A dataflow whose layer scope is a :class:`Schedule` of the layer's operators.

    Subclasses set :attr:`schedule`; :meth:`gather` reads ``x`` at the sampled corners
    (default: every in-map corner of every key its own burst, no reuse).
    """

    schedule: Schedule

    def gather(self, ctx: TrafficContext, c: TrafficCount) -> None:
        """The ``sample`` operator's reads of ``x``."""
        count_corner_fetches(ctx, c)

    def with_q(self, q: str) -> ScheduledDataflow:
        """This dataflow with ``q`` stored or recomputed (:data:`Q_POLICIES`)."""
        other = copy.copy(self)
        other.schedule = self.schedule.with_q(q)
        return other

    def layer(self, ctx: TrafficContext, c: TrafficCount) -> None:
        count_schedule(ctx, c, self.schedule, self.gather)

    def breakdown(self, ctx: TrafficContext) -> list[dict]:
        """Per layer: its operators and the beats it reads and writes per tensor."""
        return count_schedule(ctx, ctx.new_count(), self.schedule, self.gather)
