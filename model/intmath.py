"""Integer rounding shared by the DRAM layouts, the traffic counter and the generators."""

from __future__ import annotations

import numpy as np

__all__ = ["ceil_div", "round_up"]


def ceil_div(a: np.ndarray | int, b: int) -> np.ndarray | int:
    """``ceil(a / b)`` for integers ``a >= 0`` (or an integer array) and ``b > 0``, exact."""
    return -(-a // b)


def round_up(n: int, m: int) -> int:
    """The smallest multiple of ``m`` that is ``>= n`` (``n >= 0``, ``m > 0``)."""
    return -(-n // m) * m
