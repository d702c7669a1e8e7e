"""DEFA-style dataflow (Xu et al., DAC 2024, arXiv 2403.10913), as far as it is published."""

from __future__ import annotations

import numpy as np

from defslice.model.traffic.base import TrafficContext
from defslice.model.traffic.counter import TrafficCount
from defslice.model.traffic.fetch import count_corner_fetches
from defslice.model.traffic.reuse_buffer import DirectMappedBuffer
from defslice.model.traffic.schedule import Schedule, ScheduledDataflow
from defslice.model.traffic.trace import CornerChunk

__all__ = ["DEFA_LAYERS", "DefaStyle"]

#: Two passes over ``x``: offsets, keys, ``k`` and ``v``; then the attention.
DEFA_LAYERS = Schedule(
    (("q", "offset_conv", "layernorm", "gelu", "offset_proj", "sample", "k", "v"),
     ("logits", "bias", "softmax", "pv", "proj_out")),
    q="recompute", on_chip=frozenset({"positions", "k", "v"}), weights_once=True)


class DefaStyle(ScheduledDataflow):
    """Fused layers, a bounded feature-map reuse buffer, pruning.

    What DEFA publishes: fine-grained fusion of sampling and aggregation, feature-map
    reuse, probability-aware pruning of sampling points and frequency-weighted pruning of
    feature-map pixels. What it does not publish, and is assumed here
    (``cfg.traffic``):

    * the reuse buffer is direct-mapped (:class:`DirectMappedBuffer`) over fetch units of
      one head's ``D`` channels of a pixel, ``defa_reuse_kib`` KiB in size; points are
      processed query by query in the stored order (head, level, point, corner inside);
    * a point whose attention weight is below ``defa_point_prune_threshold`` is not
      sampled (its record is still read: the weight decides);
    * the ``defa_pixel_prune_ratio`` share of value pixels sampled least often (counted on
      this trace, ties by address) is never fetched;
    * a miss fetches one unit as its own burst; nothing is prefetched.

    Datapath scope: stream the point records once, fetch misses, write outputs once.

    Layer scope (DAT), :data:`DEFA_LAYERS`: DEFA targets MSDA, so the DAT layer is fused as
    far as its data dependences allow. Every query attends to keys sampled at offsets
    computed from the whole map, so two passes are needed: pass 1 streams ``x`` (``q`` and
    the offset network on chip), samples the keys through the reuse buffer and projects
    them to ``k`` and ``v`` (kept on chip with the key positions); pass 2 streams ``x``
    again, recomputes ``q`` rather than storing it (:meth:`with_q` for the storing
    variant), and runs the attention, writing ``y``. Weights are read once and kept.
    DAT's sampling has no attention weight (it is 1), so point pruning removes nothing
    there.
    """

    name = "defa"
    label = "DEFA-style"
    schedule = DEFA_LAYERS

    def gather(self, ctx: TrafficContext, c: TrafficCount) -> None:
        """Corner fetches through the reuse buffer, after pruning."""
        t, cfg = ctx.trace, ctx.cfg
        thr = cfg.traffic.defa_point_prune_threshold * 2.0 ** cfg.numerics.weight_frac
        m = cfg.workload.sample_heads

        def kept_points(ch: CornerChunk) -> np.ndarray:
            return ch.valid & (ch.weight >= thr)[..., None]

        pruned = np.zeros(cfg.workload.value_pixels, dtype=bool)
        n_prune = int(cfg.traffic.defa_pixel_prune_ratio * pruned.size)
        if n_prune:
            freq = np.zeros(pruned.size, dtype=np.int64)
            for ch in t.corner_chunks():
                freq += np.bincount(ch.pixel[kept_points(ch)], minlength=pruned.size)
            pruned[np.argsort(freq, kind="stable")[:n_prune]] = True
        unit = ctx.head_chunk_bytes()
        buf = DirectMappedBuffer(cfg.traffic.defa_reuse_kib * 1024 // unit)

        def keep(ch: CornerChunk) -> np.ndarray:
            mask = kept_points(ch) & ~pruned[ch.pixel]
            tags = (ch.pixel * m + ch.head)[mask]
            out = np.zeros(mask.shape, dtype=bool)
            out[mask] = ~buf.access(tags)
            return out

        count_corner_fetches(ctx, c, keep)

    def datapath(self, ctx: TrafficContext, c: TrafficCount) -> None:
        ctx.stream_queries(c)
        self.gather(ctx, c)
        ctx.stream_outputs(c)
