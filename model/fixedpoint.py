"""Fixed-point primitives, each written once; the RTL reproduces exactly these.

All functions work on NumPy integer arrays (int64) holding two's-complement values.
``docs/numerics.md`` states the formats and where each primitive is used: the sampling
datapath (:mod:`defslice.model.fixed`) and the DAT++ layer
(:mod:`defslice.model.dat_layer_fixed`), whose tables (1/sqrt, GELU, tanh, exp2) and
integer nonlinearities live here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from defslice.config import LayerNumericsConfig, gelu_table_len, tanh_table_len
from defslice.errors import InputError

__all__ = [
    "EXACT_FLOAT_BOUND",
    "LayerTables",
    "bilinear_weights",
    "bit_length",
    "dequantize",
    "exact_matmul",
    "exp2_fixed",
    "exp2_table",
    "gelu_fixed",
    "gelu_table",
    "quantize",
    "reciprocal",
    "requantize",
    "rhu",
    "round_half_up_shift",
    "rsqrt_normalize",
    "rsqrt_table",
    "saturate",
    "signed_range",
    "split_coord",
    "tanh_fixed",
    "tanh_table",
]

#: Integers below this magnitude are exact in float64, and so is every partial sum of
#: a product whose worst-case bound stays below it (the fast path of exact_matmul).
EXACT_FLOAT_BOUND = 1 << 53


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


def split_coord(c: np.ndarray, frac: int) -> tuple[np.ndarray, np.ndarray]:
    """Q(frac) coordinates to ``(c >> frac, c & (2**frac - 1))``: integer part (floor) and
    unsigned fraction."""
    c = np.asarray(c, dtype=np.int64)
    return c >> frac, c & ((1 << frac) - 1)


def bilinear_weights(fy: np.ndarray, fx: np.ndarray, frac: int) -> np.ndarray:
    """Exact bilinear weights, Q(2 frac) unsigned, corner order (y0, x0), (y0, x1),
    (y1, x0), (y1, x1) on a new last axis; they sum to ``2**(2 frac)``."""
    one = 1 << frac
    return np.stack([(one - fy) * (one - fx), (one - fy) * fx, fy * (one - fx), fy * fx],
                    axis=-1)


def requantize(acc: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """``sat(rnd(acc, shift), bits)``: the one requantisation of every layer step."""
    return saturate(round_half_up_shift(acc, shift), bits)


def rhu(x: float | np.ndarray) -> np.ndarray:
    """Host rounding of reals: ``floor(x + 1/2)`` in float64, as int64 (no saturation)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def bit_length(v: np.ndarray) -> np.ndarray:
    """Bit length of non-negative integers below 2**53 (0 for 0), elementwise."""
    v = np.asarray(v, dtype=np.int64)
    if v.size and (v.min() < 0 or v.max() >= EXACT_FLOAT_BOUND):
        raise InputError("bit_length takes integers in [0, 2**53)")
    return np.frexp(v.astype(np.float64))[1].astype(np.int64)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of int64 arrays, exactly.

    Every partial sum is bounded by ``K max|a| max|b|`` (``K`` the inner size); below
    2**53 the product runs in float64 BLAS, where all those integers are exact, else in
    int64 (which must then not overflow: refused past 2**63).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    amax = int(np.abs(a).max(initial=0))
    bmax = int(np.abs(b).max(initial=0))
    bound = a.shape[-1] * amax * bmax
    if bound < EXACT_FLOAT_BOUND:
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    if bound >= 1 << 63:
        raise InputError(f"exact_matmul: partial sums up to {bound} overflow int64")
    return np.matmul(a, b)


# -- tables of the DAT++ layer (docs/numerics.md, "DAT++ layer in fixed point") -----------

def rsqrt_table(index_bits: int, frac: int) -> np.ndarray:
    """``RSQ[i] = rhu(2**frac / sqrt((i + 1/2) / 2**index_bits))`` for ``i`` in
    ``[2**(index_bits-2), 2**index_bits)``; returned with index ``i - 2**(index_bits-2)``.
    Entries lie in ``(2**frac, 2**(frac+1))`` (unsigned)."""
    i = np.arange(1 << (index_bits - 2), 1 << index_bits, dtype=np.float64)
    return rhu(2.0 ** frac / np.sqrt((i + 0.5) / 2.0 ** index_bits))


def rsqrt_normalize(v: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 3c: ``(i, E)`` of integers ``V >= 1``: ``E`` the bit length rounded up to even,
    ``i = V >> (E - T)`` (or ``V << (T - E)``), ``i`` in ``[2**(T-2), 2**T)``."""
    v = np.asarray(v, dtype=np.int64)
    if v.size and v.min() < 1:
        raise InputError("rsqrt_normalize takes integers >= 1")
    nb = bit_length(v)
    e = nb + (nb & 1)
    down = np.maximum(e - index_bits, 0)
    up = np.maximum(index_bits - e, 0)
    return (v >> down) << up, e


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU ``x Phi(x)`` in float64 (erf-based, as ``torch.nn.GELU()``)."""
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    return x * 0.5 * erfc(-x / math.sqrt(2.0))


def gelu_table(frac: int) -> np.ndarray:
    """``GELU[i] = rhu(GELU(-i 2**-frac) 2**frac)`` for ``i`` below
    :func:`defslice.config.gelu_table_len` (entries <= 0)."""
    i = np.arange(gelu_table_len(frac), dtype=np.float64)
    return rhu(_gelu(-i * 2.0 ** -frac) * 2.0 ** frac)


def gelu_fixed(n: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Step 4: GELU of Q(f) integers with the negative-half table of the same format.

    ``n >= 0``: ``n + GELU[n]`` (``GELU(u) = u + GELU(-u)``); ``n < 0``: ``GELU[-n]``;
    indices past the table read 0. Equals the correctly rounded GELU of every input.
    """
    n = np.asarray(n, dtype=np.int64)
    mag = np.abs(n)
    inside = mag < table.size
    neg = np.where(inside, table[np.where(inside, mag, 0)], 0)
    return np.where(n >= 0, n + neg, neg)


def tanh_table(in_frac: int, out_frac: int) -> np.ndarray:
    """``TANH[i] = rhu(tanh(i 2**-in_frac) 2**out_frac)`` for ``i`` below
    :func:`defslice.config.tanh_table_len` (entries ``< 2**out_frac``)."""
    i = np.arange(tanh_table_len(in_frac, out_frac), dtype=np.float64)
    return rhu(np.tanh(i * 2.0 ** -in_frac) * 2.0 ** out_frac)


def tanh_fixed(t: np.ndarray, table: np.ndarray, out_frac: int) -> np.ndarray:
    """Step 5a': sign-magnitude tanh, ``sign(t) * (TANH[|t|] or 2**out_frac past it)``."""
    t = np.asarray(t, dtype=np.int64)
    mag = np.abs(t)
    inside = mag < table.size
    val = np.where(inside, table[np.where(inside, mag, 0)], 1 << out_frac)
    return np.where(t < 0, -val, val)


def exp2_table(index_bits: int, frac: int) -> np.ndarray:
    """``EXP2[b] = rhu(2**frac * 2**(-b / 2**index_bits))`` for ``b`` in
    ``[0, 2**index_bits)``; entries in ``(2**(frac-1), 2**frac]``."""
    b = np.arange(1 << index_bits, dtype=np.float64)
    return rhu(2.0 ** frac * np.exp2(-b / 2.0 ** index_bits))


def exp2_fixed(u: np.ndarray, table: np.ndarray, index_bits: int, frac: int) -> np.ndarray:
    """Step 10c: ``2**u`` of ``u <= 0`` in Q(index_bits), as Q(frac) unsigned.

    ``-u = a 2**index_bits + b``; the result is ``rnd(EXP2[b], a)``, which is 0 for
    ``a >= frac + 2`` (so the shift is capped there without changing any result).
    """
    u = np.asarray(u, dtype=np.int64)
    if u.size and u.max() > 0:
        raise InputError("exp2_fixed takes exponents <= 0")
    neg = -u
    a = np.minimum(neg >> index_bits, frac + 2)
    b = neg & ((1 << index_bits) - 1)
    x = table[b]
    return np.where(a > 0, (x + (np.int64(1) << np.maximum(a - 1, 0))) >> a, x)


def reciprocal(s: np.ndarray, bits: int) -> np.ndarray:
    """Step 10e: ``floor(2**bits / s)`` for integers ``s >= 1`` (exact integer division)."""
    s = np.asarray(s, dtype=np.int64)
    if s.size and s.min() < 1:
        raise InputError("reciprocal takes integers >= 1")
    return (np.int64(1) << bits) // s


@dataclass(frozen=True)
class LayerTables:
    """The tables and constants of one :class:`LayerNumericsConfig` (host step H7).

    ``rsqrt`` holds ``RSQ[i]`` at index ``i - 2**(T-2)``; ``gelu``, ``tanh``, ``exp2`` are
    indexed as in ``docs/numerics.md``; ``log2e`` is ``rhu(log2(e) 2**log2e_frac)``.
    """

    rsqrt: np.ndarray
    gelu: np.ndarray
    tanh: np.ndarray
    exp2: np.ndarray
    log2e: int

    @classmethod
    def build(cls, ln: LayerNumericsConfig) -> LayerTables:
        return cls(
            rsqrt=rsqrt_table(ln.rsqrt_index_bits, ln.rsqrt_frac),
            gelu=gelu_table(ln.n_frac),
            tanh=tanh_table(ln.t_frac, ln.tanh_frac),
            exp2=exp2_table(ln.exp_index_bits, ln.exp_frac),
            log2e=int(rhu(math.log2(math.e) * 2.0 ** ln.log2e_frac)),
        )
