"""IDX files (the MNIST family's format), plain or gzip-compressed, read into NumPy."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from defslice.errors import InputError

__all__ = ["IDX_TYPES", "read_idx", "write_idx"]

#: IDX type code (third magic byte) -> big-endian NumPy dtype.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _raw_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip magic."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"IDX file {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"IDX file {path} cannot be read: {exc}") from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"IDX file {path} is a corrupt or truncated gzip stream "
                         f"({exc})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Array stored in the IDX file ``path`` (``.gz`` or plain), native byte order.

    Layout: two zero bytes, a type code (:data:`IDX_TYPES`), the number of dimensions
    ``n``, ``n`` big-endian uint32 sizes, then the values big-endian in C order.

    Raises
    ------
    InputError
        When the file is missing, a corrupt gzip stream, has a bad magic or type code,
        or holds fewer or more value bytes than its header announces.
    """
    path = Path(path)
    data = _raw_bytes(path)
    if len(data) < 4:
        raise InputError(f"IDX file {path} is truncated: {len(data)} bytes, the header "
                         "alone takes at least 4")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise InputError(f"IDX file {path} has a bad magic number {data[:4].hex()} "
                         f"(expected 0000 + a type code in "
                         f"{', '.join(f'{t:02x}' for t in IDX_TYPES)} + dimensions)")
    ndim = data[3]
    head = 4 + 4 * ndim
    if len(data) < head:
        raise InputError(f"IDX file {path} is truncated inside its header "
                         f"({len(data)} of {head} bytes)")
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(IDX_TYPES[data[2]])
    want = head + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != want:
        what = "truncated" if len(data) < want else "longer than its header says"
        raise InputError(f"IDX file {path} is {what}: {len(data)} bytes, shape {shape} of "
                         f"{dtype.name} needs {want}")
    return np.frombuffer(data, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    path = Path(path)
    arr = np.asarray(array)
    code = next((c for c, t in IDX_TYPES.items() if np.dtype(t) == arr.dtype.newbyteorder(">")),
                None)
    if code is None:
        raise InputError(f"IDX cannot store dtype {arr.dtype}")
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    blob = head + arr.astype(IDX_TYPES[code]).tobytes()
    path.write_bytes(gzip.compress(blob, mtime=0) if path.suffix == ".gz" else blob)
    return path
