"""A deformable-convolution accelerator's dataflow on the DAT layer (Yu et al., SiPS 2021)."""

from __future__ import annotations

from defslice.model.traffic.schedule import Schedule, ScheduledDataflow

__all__ = ["DCN_LAYERS", "DeformableConvStyle"]

#: Convolutions one layer each (normalization and activation fused into the convolution
#: before them); the deformable convolution = sampling fused with the 1x1 convolutions
#: that consume the samples; the attention's matrix products as 1x1 convolutions and
#: its gather and softmax as passes of their own.
DCN_LAYERS = Schedule((
    ("q",),
    ("offset_conv", "layernorm", "gelu"),
    ("offset_proj",),
    ("sample", "k", "v"),
    ("logits",),
    ("bias",),
    ("softmax",),
    ("pv",),
    ("proj_out",),
))


class DeformableConvStyle(ScheduledDataflow):
    """The slicing paper's other normalized design (its reference [20]: Yu, Luo, Mao,
    Wang, "A memory-efficient hardware architecture for deformable convolutional
    networks", SiPS 2021) as it would run this layer (layer scope only).

    What its abstract publishes: a Sampling Core that samples and rearranges the input
    pixels so that the convolution array reads them regularly, and a dataflow matching
    the Sampling Core's rate to the array's, which keeps the sampled tensor off DRAM. No
    buffer sizes, tiling or DRAM figures are public. Assumed here (:data:`DCN_LAYERS`):

    * every convolution of the layer is one layer of the accelerator, with LayerNorm and
      GELU fused into the depthwise offset convolution (the usual convolution-norm-
      activation fusion); ``q`` and the key positions go through DRAM;
    * the deformable convolution is the sampling fused with the 1x1 convolutions that
      consume the samples: ``k`` and ``v``; each sampled key's in-map corners are fetched
      once, each its own burst (no feature-map buffer is published);
    * the attention is not a convolution: its products (logits, ``probs v``) run as 1x1
      convolutions with the keys (values) as weights, the position-bias gather and the
      softmax as passes of their own, ``proj_out`` as a 1x1 convolution.

    ``q`` stored by default. What distinguishes the design, the sampled tensor kept on
    chip, saves on DAT only the ``Nk x C`` sampled keys (49 keys per group on a 56x56
    map): the layer's traffic is in ``q`` and the ``heads x HW x Nk`` attention tensors.
    """

    name = "dcn"
    label = "deformable-conv accelerator [20]"
    scopes = ("layer",)
    schedule = DCN_LAYERS
