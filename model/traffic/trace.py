"""The sampling locations the counter walks: corners of every bilinear sample.

A :class:`SamplingTrace` holds the quantized sampling coordinates of a workload (the very
integers the RTL receives, so every dataflow sees the same points) and yields, chunk by
chunk, the four corners of each point in processing order: query, head, level, point,
corner ``(y0, x0), (y0, x1), (y1, x0), (y1, x1)``. Coordinates are *unclamped* (the
unsliced computation); sliced dataflows never need the corners, only their windows.

Workloads come from :func:`defslice.model.workload.make_workload` (offset distributions
documented there and in ``docs/traffic.md``) or from user arrays
(:meth:`SamplingTrace.from_arrays`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from defslice.config import Config
from defslice.errors import InputError
from defslice.model.fixed import FixedInputs, quantize_inputs
from defslice.model.sampling import Corners, LevelTable, chunks, corner_valid
from defslice.model.workload import Workload, make_workload

__all__ = ["CornerChunk", "SamplingTrace"]


@dataclass(frozen=True)
class CornerChunk:
    """Corners of a run of consecutive queries.

    Members
    -------
    pixel : int64 array (Qc, M, L, P, 4)
        Flat pixel index over all levels (``S`` axis of the value tensor); 0 where invalid.
    head : int64 array broadcastable to ``pixel``
        Head of each corner.
    valid : bool array (Qc, M, L, P, 4)
        Corner inside its map (outside: zero padding, never fetched).
    weight : int64 array (Qc, M, L, P)
        Attention weight of the point, Q(weight_bits - 2).
    """

    pixel: np.ndarray
    head: np.ndarray
    valid: np.ndarray
    weight: np.ndarray


class SamplingTrace:
    """Quantized sampling points of one batch element and their reference points.

    Parameters
    ----------
    cfg : Config
    inputs : FixedInputs
        Quantized inputs with ``N = 1`` (coordinates in Q(coord_frac) pixels).
    reference_points : float array (1, Lq, 2)
        Normalized (x, y) reference point of each query (decides its slice).
    """

    def __init__(self, cfg: Config, inputs: FixedInputs,
                 reference_points: np.ndarray) -> None:
        if inputs.x.shape[0] != 1:
            raise InputError("the traffic study walks one batch element (N = 1), got "
                             f"N = {inputs.x.shape[0]}")
        lq = inputs.x.shape[1]
        ref = np.asarray(reference_points, dtype=np.float64)
        if ref.size != lq * 2:
            raise InputError(f"reference_points must be (1, {lq}, 2), got {ref.shape}")
        self.cfg = cfg
        self.inputs = inputs
        self.reference_points = ref.reshape(1, lq, 2)
        self.levels = LevelTable.from_shapes(inputs.shapes)

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_workload(cls, cfg: Config, wl: Workload) -> SamplingTrace:
        """Quantize a drawn workload (first batch element)."""
        inp = quantize_inputs(cfg.numerics, wl.value[:1], wl.spatial_shapes,
                              wl.sampling_locations[:1], wl.attention_weights[:1])
        return cls(cfg, inp, wl.reference_points[:1])

    @classmethod
    def from_config(cls, cfg: Config, seed: int | None = None) -> SamplingTrace:
        """Draw the documented random workload of ``cfg`` (seed: ``cfg.traffic.seed``)."""
        seed = cfg.traffic.seed if seed is None else seed
        return cls.from_workload(cfg.replace(workload={"batch": 1}), make_workload(
            cfg.replace(workload={"batch": 1}), seed))

    @classmethod
    def from_arrays(cls, cfg: Config, sampling_locations: np.ndarray,
                    attention_weights: np.ndarray,
                    reference_points: np.ndarray) -> SamplingTrace:
        """A user's own sampling points.

        Parameters
        ----------
        sampling_locations : float array (1, Lq, M, L, P, 2)
            Normalized (x, y) in [0, 1] (MMCV convention).
        attention_weights : float array (1, Lq, M, L, P)
        reference_points : float array (1, Lq, 2)
            Normalized (x, y); decides each query's slice.
        """
        w = cfg.workload
        loc = np.asarray(sampling_locations, dtype=np.float64)
        want = (w.sample_heads, w.num_levels, w.points, 2)
        if loc.ndim != 6 or loc.shape[0] != 1 or loc.shape[2:] != want:
            raise InputError(f"sampling_locations must be (1, Lq, {', '.join(map(str, want))})"
                             f" for this configuration, got {loc.shape}")
        if not np.isfinite(loc).all():
            raise InputError("sampling_locations must be finite")
        attn = np.asarray(attention_weights, dtype=np.float64)
        if attn.shape != loc.shape[:5]:
            raise InputError(f"attention_weights must be {loc.shape[:5]}, got {attn.shape}")
        ref = np.asarray(reference_points, dtype=np.float64)
        if ref.shape != (1, loc.shape[1], 2):
            raise InputError(f"reference_points must be (1, {loc.shape[1]}, 2), got "
                             f"{ref.shape}")
        # Traffic does not depend on the values; a zero map keeps quantization cheap.
        value = np.zeros((1, w.value_pixels, w.sample_heads, w.sample_channels),
                         dtype=np.float32)
        inp = quantize_inputs(cfg.numerics, value, np.array(w.levels), loc, attn)
        return cls(cfg, inp, ref)

    # -- walking -------------------------------------------------------------------------
    @property
    def num_queries(self) -> int:
        return int(self.inputs.x.shape[1])

    @property
    def points_per_query(self) -> int:
        """M * L * P sampling points of one query."""
        return int(np.prod(self.inputs.x.shape[2:]))

    def corner_chunks(self, budget: int = 1 << 21) -> Iterator[CornerChunk]:
        """Corners of consecutive queries, about ``budget`` corners per chunk."""
        f = self.cfg.numerics.coord_frac
        lv = self.levels
        m = self.inputs.x.shape[2]
        head = np.arange(m, dtype=np.int64)[None, :, None, None, None]
        for qs in chunks(self.num_queries, 4 * self.points_per_query, budget):
            x, y = self.inputs.x[0, qs], self.inputs.y[0, qs]
            c = Corners.from_floor(y >> f, x >> f)
            valid = corner_valid(c, 0, lv.H, 0, lv.W)
            pixel = np.where(valid, lv.start[..., None] + c.y * lv.W[..., None] + c.x, 0)
            yield CornerChunk(pixel, head, valid, self.inputs.weight[0, qs])
