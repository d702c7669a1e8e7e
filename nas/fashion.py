"""Fashion-MNIST as Debian's ``dataset-fashion-mnist`` ships it: files, split, tensors.

The package installs the four IDX files of the data set (60000 training and 10000 test
images of 28 x 28 pixels, 10 classes) under :data:`DEBIAN_DIR`; ``scripts/install.sh``
installs it. ``$DEFSLICE_FASHION_MNIST`` points elsewhere (same file names, ``.gz`` or
not). The training set is split once, seeded and stratified, into the part that trains
and the validation part that serves fine-tuning, search and choice; the test set is for
the final figures only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from defslice.errors import InputError
from defslice.nas.idx import read_idx

__all__ = ["CLASSES", "DEBIAN_DIR", "fashion_dir", "file_digest", "part_files", "read_part",
           "split_indices"]

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable naming another folder with the same files.
DIR_ENV = "DEFSLICE_FASHION_MNIST"
#: Image and label file of each part (stem; ``.gz`` is tried first).
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
INSTALL_HINT = "apt-get install dataset-fashion-mnist (scripts/install.sh does it)"


def fashion_dir() -> Path:
    """``$DEFSLICE_FASHION_MNIST`` or :data:`DEBIAN_DIR`."""
    return Path(os.environ.get(DIR_ENV) or DEBIAN_DIR)


def part_files(part: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """Image and label files of ``part`` (``"train"`` or ``"test"``) under ``root``."""
    if part not in FILES:
        raise InputError(f"Fashion-MNIST part {part!r}: one of {', '.join(FILES)}")
    root = Path(root) if root is not None else fashion_dir()
    if not root.is_dir():
        raise InputError(f"Fashion-MNIST folder {root} does not exist: {INSTALL_HINT}, "
                         f"or set {DIR_ENV}")
    found = []
    for stem in FILES[part]:
        path = next((p for p in (root / f"{stem}.gz", root / stem) if p.is_file()), None)
        if path is None:
            raise InputError(f"Fashion-MNIST file {root / stem}(.gz) is missing: "
                             f"{INSTALL_HINT}")
        found.append(path)
    return found[0], found[1]


def read_part(part: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of ``part``.

    Raises
    ------
    InputError
        When a file is missing or corrupt (:func:`defslice.nas.idx.read_idx`), the
        images are not a uint8 stack, the counts differ or a label is not in 0..9.
    """
    img_path, lab_path = part_files(part, root)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise InputError(f"{img_path}: expected uint8 images (N, H, W), got "
                         f"{images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise InputError(f"{lab_path}: expected uint8 labels (N,), got "
                         f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise InputError(f"{img_path} holds {len(images)} images, {lab_path} "
                         f"{len(labels)} labels")
    if labels.size and int(labels.max()) >= len(CLASSES):
        raise InputError(f"{lab_path}: label {int(labels.max())} outside 0..{len(CLASSES) - 1}")
    return images, labels


def file_digest(part: str, root: str | Path | None = None) -> str:
    """SHA-256 (first 16 hex digits) over the bytes of ``part``'s two files: what the
    data of a cached classifier is keyed by."""
    h = hashlib.sha256()
    for path in part_files(part, root):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def split_indices(labels: np.ndarray, val_count: int, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of ``range(len(labels))``: ``(train, val)`` index arrays,
    sorted, disjoint, covering every index.

    Each class gives the validation part its share of ``val_count`` (largest remainder,
    so the counts add up exactly); which members go is a seeded permutation per class.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 < val_count < n:
        raise InputError(f"validation split of {val_count} images out of {n}: "
                         f"allowed 1..{n - 1}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * val_count / n
    quota = np.floor(exact).astype(int)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:val_count - int(quota.sum())]] += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q]
                          for c, q in zip(classes, quota, strict=True)])
    is_val = np.zeros(n, bool)
    is_val[val] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
