"""The DAT++ layer as operators and the tensors they pass, sized from the configuration.

The operators are those of :func:`defslice.model.dat_layer.dat_layer_trace`, in its order,
one per DRAM round trip of the per-operator baseline; every other layer-scope schedule
groups them (:mod:`defslice.model.traffic.schedule`). Sizes count attention heads where
the layer has one tensor per head (logits, bias, probabilities, the bias table) and
offset groups where it has one per group (the offset network's activations, the key
positions, the sampled keys: ``G`` groups of ``C / G`` channels, i.e. ``C`` channels).

Storage (``dram.element_bytes`` per element): ``x``, ``q`` and the attention output use
the value layout's pixel stride (``C`` elements per pixel, rows padded to whole beats),
``y`` the output stride; the key positions are the sampling engine's point records
(``query_stride`` per key); every other tensor is stored densely (each operator streams
it whole, so rows need no padding). Weights are DAT's parameters under its state-dict
names (:func:`defslice.model.dat_layer.param_shapes`), stored per operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from defslice.config import Config
from defslice.errors import ConfigError, InputError
from defslice.model.dat_layer import DatLayerSpec, param_shapes
from defslice.model.layout import DramLayout

__all__ = ["OPERATORS", "LayerGraph", "LayerTensor", "Operator"]


@dataclass(frozen=True)
class Operator:
    """One operator of the layer.

    Members
    -------
    name : str
    reads : tuple of str
        Activation tensors it consumes (``x`` read as a stream).
    params : tuple of str
        DAT parameters it reads (state-dict names).
    writes : str
        The tensor it produces.
    gathers : bool
        It also reads ``x`` at the four corners of every sampled key (bilinear sampling).
    """

    name: str
    reads: tuple[str, ...]
    params: tuple[str, ...]
    writes: str
    gathers: bool = False


def _proj(name: str) -> tuple[str, str]:
    return f"{name}.weight", f"{name}.bias"


#: The layer's operators in execution order (``dat_layer_trace``'s steps).
OPERATORS: tuple[Operator, ...] = (
    Operator("q", ("x",), _proj("proj_q"), "q"),
    Operator("offset_conv", ("q",), ("conv_offset.0.weight", "conv_offset.0.bias"),
             "offset_conv"),
    Operator("layernorm", ("offset_conv",),
             ("conv_offset.1.norm.weight", "conv_offset.1.norm.bias"), "offset_norm"),
    Operator("gelu", ("offset_norm",), (), "offset_act"),
    Operator("offset_proj", ("offset_act",), ("conv_offset.3.weight",), "positions"),
    Operator("sample", ("positions",), (), "sampled", gathers=True),
    Operator("k", ("sampled",), _proj("proj_k"), "k"),
    Operator("v", ("sampled",), _proj("proj_v"), "v"),
    Operator("logits", ("q", "k"), (), "logits"),
    Operator("bias", ("positions",), ("rpe_table",), "bias"),
    Operator("softmax", ("logits", "bias"), (), "probs"),
    Operator("pv", ("probs", "v"), (), "attn_out"),
    Operator("proj_out", ("attn_out",), _proj("proj_out"), "y"),
)


@dataclass(frozen=True)
class LayerTensor:
    """One tensor of the layer as stored in DRAM.

    Members
    -------
    name : str
    axes : str
        What its shape counts, e.g. ``"heads x HW x Nk"``.
    shape : tuple of int
        The sizes of ``axes``.
    nbytes : int
        Stored bytes (with the row padding of its layout).
    label : str
        Report label (:data:`defslice.model.traffic.counter.TENSORS`).
    """

    name: str
    axes: str
    shape: tuple[int, ...]
    nbytes: int
    label: str


class LayerGraph:
    """The operators and tensors of the DAT layer of ``cfg`` (``workload.kind = "dat"``).

    Parameters
    ----------
    cfg : Config
    layout : DramLayout
        The layout contract (pixel, output and point-record strides).

    Members
    -------
    operators : tuple of Operator
        :data:`OPERATORS`; without ``bias`` (and ``softmax`` reads only the logits) when
        ``workload.use_pe`` is off.
    tensors : dict of str to LayerTensor
        Every activation, ``x`` and ``y`` included.
    weight_bytes : dict of str to int
        Parameter bytes each operator reads (operators without parameters absent).
    """

    def __init__(self, cfg: Config, layout: DramLayout) -> None:
        w, eb = cfg.workload, cfg.dram.element_bytes
        if w.kind != "dat":
            raise ConfigError("workload.kind", w.kind, "'dat' for the layer scope")
        spec = DatLayerSpec.from_config(cfg)
        (h, wd), c = w.levels[0], w.embed_dim
        hw, nk = h * wd, w.key_grid[0] * w.key_grid[1]
        g, cg, heads = w.groups, w.sample_channels, w.heads

        def dense(name: str, axes: str, *shape: int) -> LayerTensor:
            return LayerTensor(name, axes, shape, prod(shape) * eb, "intermediate")

        def pixels(name: str, label: str, stride: int) -> LayerTensor:
            return LayerTensor(name, "HW x C", (hw, c), hw * stride, label)

        offset = [dense(n, "G x C/G x Nk", g, cg, nk)
                  for n in ("offset_conv", "offset_norm", "offset_act")]
        attn = [dense(n, "heads x HW x Nk", heads, hw, nk) for n in ("logits", "bias", "probs")]
        tensors = [
            pixels("x", "value", layout.pixel_stride),
            pixels("q", "intermediate", layout.pixel_stride),
            *offset,
            LayerTensor("positions", "Nk x G x (y, x)", (nk, g, 2), nk * layout.query_stride,
                        "intermediate"),
            *(dense(n, "Nk x G x C/G", nk, g, cg) for n in ("sampled", "k", "v")),
            *attn,
            pixels("attn_out", "intermediate", layout.pixel_stride),
            pixels("y", "output", layout.out_stride),
        ]
        ops = OPERATORS
        if not w.use_pe:
            ops = tuple(Operator(o.name, tuple(r for r in o.reads if r != "bias"), o.params,
                                 o.writes, o.gathers) for o in ops if o.name != "bias")
            tensors = [t for t in tensors if t.name != "bias"]
        shapes = param_shapes(spec, c, h, wd)
        self.operators = ops
        self.tensors = {t.name: t for t in tensors}
        self.weight_bytes = {o.name: sum(prod(shapes[p]) for p in o.params) * eb
                             for o in ops if o.params}

    def operator(self, name: str) -> Operator:
        """The operator called ``name``."""
        for op in self.operators:
            if op.name == name:
                return op
        raise InputError(f"the layer has no operator {name!r}; one of "
                         + ", ".join(o.name for o in self.operators))

    @property
    def output(self) -> str:
        """The layer's result (``y``): always written."""
        return self.operators[-1].writes

    def consumers(self, tensor: str) -> list[str]:
        """Operators reading ``tensor``, in order."""
        return [o.name for o in self.operators if tensor in o.reads]

    def as_dict(self) -> dict:
        """Tensors (axes, shape, bytes) and operators, for the report."""
        return {
            "tensors": {t.name: {"axes": t.axes, "shape": list(t.shape), "bytes": t.nbytes}
                        for t in self.tensors.values()},
            "weights": dict(self.weight_bytes),
            "operators": [{"name": o.name, "reads": list(o.reads), "writes": o.writes,
                           "gathers_x": o.gathers, "params": list(o.params)}
                          for o in self.operators],
        }
