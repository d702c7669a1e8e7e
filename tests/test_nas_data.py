"""Data of the slicing search: IDX files, Fashion-MNIST as Debian ships it, the split."""

import gzip

import numpy as np
import pytest

from defslice.errors import InputError
from defslice.nas.fashion import (
    DEBIAN_DIR,
    DIR_ENV,
    file_digest,
    part_files,
    read_part,
    split_indices,
)
from defslice.nas.idx import read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    arr = (np.arange(2 * 3 * 5) * 7 - 50).astype(dtype).reshape(2, 3, 5)
    path = write_idx(tmp_path / f"a.idx{suffix}", arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, arr)


def test_idx_header_is_big_endian(tmp_path):
    path = write_idx(tmp_path / "l.idx", np.array([1, 2, 3], np.int16))
    assert path.read_bytes() == bytes([0, 0, 0x0B, 1, 0, 0, 0, 3, 0, 1, 0, 2, 0, 3])


def test_idx_bad_files_give_one_clear_error(tmp_path):
    good = write_idx(tmp_path / "g.idx", np.zeros((4, 2, 2), np.uint8)).read_bytes()
    cases = {
        "missing.idx": None,
        "short.idx": good[:3],
        "magic.idx": b"\x01" + good[1:],
        "type.idx": good[:2] + b"\x07" + good[3:],
        "header.idx": good[:9],
        "truncated.idx": good[:-1],
        "long.idx": good + b"\x00",
        "cut.idx.gz": gzip.compress(good)[:-6],
        "garbage.idx.gz": b"\x1f\x8b" + b"not gzip at all",
    }
    messages = {"missing.idx": "does not exist", "short.idx": "truncated: 3 bytes",
                "magic.idx": "bad magic number", "type.idx": "bad magic number",
                "header.idx": "truncated inside its header",
                "truncated.idx": "is truncated: 31 bytes, shape \\(4, 2, 2\\) of uint8 needs 32",
                "long.idx": "longer than its header says",
                "cut.idx.gz": "corrupt or truncated gzip", "garbage.idx.gz": "corrupt or"}
    for name, blob in cases.items():
        if blob is not None:
            (tmp_path / name).write_bytes(blob)
        with pytest.raises(InputError, match=messages[name]):
            read_idx(tmp_path / name)


def _fake_fashion(root, n_train=60, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    for part, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{part}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{part}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return root


def test_fashion_files_from_another_folder(tmp_path, monkeypatch):
    root = _fake_fashion(tmp_path)
    monkeypatch.setenv(DIR_ENV, str(root))
    x, y = read_part("train")
    assert x.shape == (60, 28, 28) and x.dtype == np.uint8 and list(y[:11]) == [*range(10), 0]
    assert read_part("test")[0].shape == (20, 28, 28)
    d = file_digest("train")
    assert len(d) == 16 and d != file_digest("test")
    with pytest.raises(InputError, match="part 'val'"):
        part_files("val")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(InputError, match="t10k-labels-idx1-ubyte.*missing.*dataset-fashion"):
        read_part("test")
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with pytest.raises(InputError, match="holds 20 images.*19 labels"):
        read_part("test")
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.full(20, 10, np.uint8))
    with pytest.raises(InputError, match="label 10 outside 0..9"):
        read_part("test")
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="does not exist: apt-get install dataset-fashion"):
        read_part("train")


def test_the_installed_data_set():
    # scripts/install.sh installs Debian's dataset-fashion-mnist (a test dependency)
    assert part_files("train", DEBIAN_DIR)[0].suffix == ".gz"
    x, y = read_part("test", DEBIAN_DIR)
    assert x.shape == (10000, 28, 28) and np.bincount(y).tolist() == [1000] * 10


def test_split_is_seeded_stratified_disjoint_and_exact():
    labels = np.repeat(np.arange(10), [100, 90, 110, 100, 100, 95, 105, 100, 100, 100])
    tr, va = split_indices(labels, 250, seed=3)
    assert len(va) == 250 and len(tr) == len(labels) - 250
    assert np.intersect1d(tr, va).size == 0
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(labels)))
    counts = np.bincount(labels[va], minlength=10)
    assert (np.abs(counts - 250 * np.bincount(labels) / len(labels)) < 1).all()
    again = split_indices(labels, 250, seed=3)
    assert np.array_equal(again[1], va)
    assert not np.array_equal(split_indices(labels, 250, seed=4)[1], va)
    for bad in (0, len(labels)):
        with pytest.raises(InputError, match="validation split"):
            split_indices(labels, bad, seed=0)
