"""The layer engine: the whole DAT++ deformable-attention layer on chip, one slice at a time."""
