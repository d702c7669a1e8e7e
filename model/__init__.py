"""Golden model: MSDA / DAT sampling in float and bit-exact fixed point, slicing, DRAM layout."""
