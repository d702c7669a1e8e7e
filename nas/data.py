"""Data of the accuracy objectives: Fashion-MNIST, the digits proxy, image folders.

Each returns float32 tensors (N, C, H, W) and int64 labels (N,). Importing needs PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defslice.errors import InputError
from defslice.nas._torch import require_torch

torch = require_torch()
from torch.nn import functional as F  # noqa: E402

__all__ = ["Dataset", "digits", "fashion_mnist", "image_folder", "max_digits_margin",
           "random_flipper", "random_shifter", "shift_images"]

#: ImageNet channel statistics (DAT's evaluation transform).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class Dataset:
    """Images (N, C, H, W) float32, labels (N,) int64, class names.

    ``augment(images, generator)``, when set, transforms a training batch (same shape)
    with randomness drawn from the ``torch.Generator``.
    """

    images: Any
    labels: Any
    classes: list[str]
    augment: Callable[[Any, Any], Any] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def shift_images(images: Any, shifts: Any) -> Any:
    """``images`` (N, C, H, W) each moved by ``shifts`` (N, 2) int pixels (dy, dx).

    A cyclic roll: exact as a shift with background fill when every image has at least
    ``max |shift|`` background pixels on each side (the digits' margin).
    """
    return torch.stack([torch.roll(img, (int(dy), int(dx)), dims=(1, 2))
                        for img, (dy, dx) in zip(images, shifts, strict=True)])


def random_shifter(margin: int) -> Callable[[Any, Any], Any]:
    """Augmentation moving each image by a uniform random shift in [-margin, margin]^2."""
    def augment(images: Any, gen: Any) -> Any:
        if margin == 0:
            return images
        shifts = torch.randint(-margin, margin + 1, (len(images), 2), generator=gen)
        return shift_images(images, shifts)
    return augment


def random_flipper() -> Callable[[Any, Any], Any]:
    """Augmentation mirroring each image left-right with probability 1/2."""
    def augment(images: Any, gen: Any) -> Any:
        flip = torch.rand(len(images), generator=gen) < 0.5
        return torch.where(flip[:, None, None, None], images.flip(-1), images)
    return augment


def fashion_mnist(val_images: int, seed: int, root: str | Path | None = None
                  ) -> tuple[Dataset, Dataset, Dataset]:
    """Fashion-MNIST (:mod:`defslice.nas.fashion`) as ``(train, val, test)``.

    ``val`` holds ``val_images`` images of the training set (seeded stratified split,
    :func:`~defslice.nas.fashion.split_indices`), ``train`` the rest, with random
    left-right flips as augmentation. Intensities 0..255 are scaled to [0, 1] and
    standardised with the training part's mean and deviation; images stay 28 x 28 (the
    classifier's stem resizes them to its map).
    """
    from defslice.nas.fashion import CLASSES, read_part, split_indices

    x, y = read_part("train", root)
    xt, yt = read_part("test", root)
    tr, va = split_indices(y, val_images, seed)
    train_u8 = x[tr]
    mean, std = float(train_u8.mean()) / 255, float(train_u8.std()) / 255

    def tensor(u8: np.ndarray) -> Any:
        return ((torch.from_numpy(u8).float() / 255 - mean) / std)[:, None].contiguous()

    def labels(a: np.ndarray) -> Any:
        return torch.from_numpy(a.astype(np.int64))

    names = list(CLASSES)
    return (Dataset(tensor(train_u8), labels(y[tr]), names, random_flipper()),
            Dataset(tensor(x[va]), labels(y[va]), names),
            Dataset(tensor(xt), labels(yt), names))


def max_digits_margin(size: tuple[int, int]) -> int:
    """Largest background margin of :func:`digits` on a ``size`` map, pixels: the digit
    keeps at least 8 pixels a side (its source resolution)."""
    return min(int(v) for v in size) // 2 - 4


def digits(size: tuple[int, int], val_fraction: float = 0.2, seed: int = 0,
           margin: int = 0, val_shifts: int = 1) -> tuple[Dataset, Dataset]:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images) on a ``size`` map.

    Intensities 0..16 are scaled to [0, 1], resized bilinearly (``align_corners=False``)
    to ``size`` minus ``margin`` background pixels on each side, and standardised with
    the training split's mean and deviation. The split is stratified and seeded.

    With a margin, training batches are moved by random shifts of up to ``margin``
    pixels (``train.augment``), and the validation set holds each digit at
    ``val_shifts`` placements: centred, then seeded random shifts (validation image
    ``k * n + i`` is digit ``i`` at placement ``k``). Returns ``(train, val)``.
    """
    from sklearn.datasets import load_digits

    h, w = (int(v) for v in size)
    if not 0 <= margin <= max_digits_margin(size):
        raise InputError(f"digits margin {margin} leaves no room for the digit on a "
                         f"{h}x{w} map (allowed: 0..{max_digits_margin(size)})")
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    y = torch.from_numpy(d.target.astype(np.int64))
    x = F.interpolate(x, size=(h - 2 * margin, w - 2 * margin), mode="bilinear",
                      align_corners=False)
    x = F.pad(x, (margin, margin, margin, margin))
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        val_idx += list(rng.permutation(idx)[: round(val_fraction * idx.size)])
    is_val = np.zeros(len(y), bool)
    is_val[val_idx] = True
    tr, va = torch.from_numpy(~is_val), torch.from_numpy(is_val)
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    names = [str(c) for c in range(10)]
    xv, yv = x[va], y[va]
    placements = [xv]
    for _ in range(1, val_shifts):
        shifts = rng.integers(-margin, margin + 1, size=(len(yv), 2))
        placements.append(shift_images(xv, shifts))
    val = Dataset(torch.cat(placements), yv.repeat(val_shifts), names)
    return Dataset(x[tr], y[tr], names, random_shifter(margin)), val


def image_folder(root: str | Path, size: tuple[int, int], channels: int = 3,
                 limit_per_class: int | None = None) -> Dataset:
    """An ImageNet-layout folder: ``root/<class>/<image>``, classes in sorted order.

    Each image is resized so its shorter side is ``size / 0.875``, centre-cropped to
    ``size`` (DAT's evaluation transform), scaled to [0, 1] and normalised with the
    ImageNet statistics (3 channels) or 0.5/0.5 (1 channel).

    Raises
    ------
    InputError
        When the folder is missing, has no class folders, or a class has no images.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"image folder {root} has no class folders (ImageNet layout: "
                         "root/<class>/<image>)")
    h, w = size
    images, labels = [], []
    for ci, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"class folder {root / name} holds no images "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        for f in files[:limit_per_class]:
            with Image.open(f) as im:
                im = im.convert("RGB" if channels == 3 else "L")
                scale = max(h, w) / 0.875 / min(im.size)
                im = im.resize((max(w, round(im.size[0] * scale)),
                                max(h, round(im.size[1] * scale))), Image.BILINEAR)
                left, top = (im.size[0] - w) // 2, (im.size[1] - h) // 2
                arr = np.asarray(im.crop((left, top, left + w, top + h)), np.float32) / 255
            images.append(arr.reshape(h, w, channels).transpose(2, 0, 1))
            labels.append(ci)
    x = torch.from_numpy(np.stack(images))
    if channels == 3:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    else:
        mean, std = 0.5, 0.5
    return Dataset((x - mean) / std, torch.tensor(labels, dtype=torch.int64), classes)
