"""Noise of accuracies measured on one image set: standard errors and paired comparisons.

Every sub-net is scored on the same images, so two sub-nets are compared image by image
(paired): the difference of their accuracies has the standard error of the mean of the
per-image differences (each -1, 0 or 1), which is far smaller than either accuracy's own
error when the two mostly agree. A difference within :data:`TIE_Z` standard errors is
reported as a tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defslice.errors import InputError

__all__ = ["TIE_Z", "Paired", "pack_correct", "paired", "standard_error", "unpack_correct"]

#: Differences within this many standard errors (about 95% two-sided) are ties.
TIE_Z = 2.0


def standard_error(correct: np.ndarray) -> float:
    """Binomial standard error of the accuracy of ``correct`` (bool per image), as a
    fraction: ``sqrt(p (1 - p) / n)``."""
    c = np.asarray(correct, dtype=bool)
    if c.size == 0:
        raise InputError("no images: the standard error is undefined")
    p = float(c.mean())
    return (p * (1.0 - p) / c.size) ** 0.5


@dataclass(frozen=True)
class Paired:
    """Paired comparison of accuracies ``a`` and ``b`` on the same images.

    ``diff = acc(a) - acc(b)`` (fraction); ``se``: its standard error (the sample
    deviation of the per-image differences over ``sqrt(n)``); ``a_only`` / ``b_only``:
    images only ``a`` / only ``b`` classifies correctly; ``tie``: ``|diff| <= TIE_Z se``
    (a difference of 0 is a tie; with ``se == 0`` nothing else is).
    """

    diff: float
    se: float
    a_only: int
    b_only: int
    n: int

    @property
    def tie(self) -> bool:
        return abs(self.diff) <= TIE_Z * self.se or self.diff == 0.0

    def as_dict(self) -> dict:
        return {"diff": self.diff, "se": self.se, "a_only": self.a_only,
                "b_only": self.b_only, "images": self.n, "tie": self.tie}


def paired(a: np.ndarray, b: np.ndarray) -> Paired:
    """:class:`Paired` comparison of two bool-per-image arrays of the same images."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise InputError(f"paired comparison needs two equal 1-D image sets of at least 2, "
                         f"got {a.shape} and {b.shape}")
    d = a.astype(np.int8) - b.astype(np.int8)
    se = float(d.std(ddof=1)) / a.size ** 0.5
    return Paired(float(d.mean()), se, int((d > 0).sum()), int((d < 0).sum()), int(a.size))


def pack_correct(correct: np.ndarray) -> str:
    """Bool-per-image array as a hex string (8 images a byte, first image in the top
    bit), the form stored in the evaluation log."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def unpack_correct(text: str, n: int) -> np.ndarray:
    """Inverse of :func:`pack_correct` for ``n`` images."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InputError("a stored per-image result is not a hex string") from None
    if len(raw) != -(-n // 8):
        raise InputError(f"a stored per-image result holds {8 * len(raw)} bits for {n} images")
    return np.unpackbits(np.frombuffer(raw, np.uint8), count=n).astype(bool)
