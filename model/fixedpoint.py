"""Fixed-point primitives, each written once; the RTL reproduces exactly these.

All functions work on NumPy integer arrays (int64) holding two's-complement values.
``docs/numerics.md`` states the formats and where each primitive is used.
"""

from __future__ import annotations

import numpy as np

from defslice.errors import InputError

__all__ = ["dequantize", "quantize", "round_half_up_shift", "saturate", "signed_range"]


def signed_range(bits: int) -> tuple[int, int]:
    """Smallest and largest value of a ``bits``-wide two's-complement number."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(x: np.ndarray, bits: int) -> np.ndarray:
    """Clamp integers to the ``bits``-wide signed range (saturation, never wrap)."""
    lo, hi = signed_range(bits)
    return np.clip(x, lo, hi)


def round_half_up_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """``floor(x / 2**shift + 1/2)`` on integers: add half an LSB, arithmetic shift.

    In hardware: one adder of the constant ``1 << (shift - 1)`` and a wire shift.
    Ties round towards +infinity (-2.5 -> -2, 2.5 -> 3).
    """
    x = np.asarray(x, dtype=np.int64)
    if shift == 0:
        return x
    return (x + (1 << (shift - 1))) >> shift


def quantize(x: np.ndarray, frac: int, bits: int, name: str = "input") -> np.ndarray:
    """Real numbers to ``bits``-wide fixed point with ``frac`` fraction bits.

    Rounds half up (``floor(x * 2**frac + 1/2)``, computed in float64) and saturates.
    Infinite values saturate; NaN is refused with an :class:`InputError` naming ``name``.
    """
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any():
        raise InputError(f"{name} contains NaN; the fixed-point datapath has no NaN")
    lo, hi = signed_range(bits)
    scaled = np.floor(np.clip(x * float(1 << frac) + 0.5, lo, hi))
    return scaled.astype(np.int64)


def dequantize(q: np.ndarray, frac: int) -> np.ndarray:
    """Fixed point back to float64: ``q / 2**frac`` (exact)."""
    return np.asarray(q, dtype=np.float64) / float(1 << frac)
