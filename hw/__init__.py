"""Amaranth generators of the sliced deformable-attention accelerator."""
