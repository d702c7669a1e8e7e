"""Accuracy objectives: the Fashion-MNIST classifier, the digits proxy, a DAT checkpoint.

Each gives a :class:`SubnetAccuracy`, which scores sub-nets image by image on a fixed
validation set. Importing this module needs PyTorch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from defslice.config import Config
from defslice.errors import ConfigError, InputError
from defslice.nas._torch import require_torch
from defslice.nas.checkpoint import infer_spec, load_dat_checkpoint, read_state_dict
from defslice.nas.dat_torch import DatClassifier, spec_for_digits
from defslice.nas.data import Dataset, digits, image_folder, max_digits_margin
from defslice.nas.space import SubNet
from defslice.nas.train import cached_weights, logits_of, train_classifier

torch = require_torch()

__all__ = ["SubnetAccuracy", "digits_objective", "fashion_objective", "imagefolder_objective",
           "single_thread", "worker_accuracy"]


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one PyTorch CPU thread (every scored sub-net is, wherever it is
    computed, so results never depend on the thread count), then restore the count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class SubnetAccuracy:
    """Top-1 accuracy of sub-nets of ``model`` on ``val``, image by image.

    When the model allows it, everything before slicing is computed once per weight
    state (:meth:`refresh` after the weights change) and each sub-net only redoes the
    sliced attention and what follows. Every score is computed with one thread
    (:func:`single_thread`). ``caches``: inputs already computed (a worker process gets
    the parent's, in shared memory); ``keep=False``: compute them batch by batch for
    each call instead of keeping them (a large image set).
    """

    def __init__(self, model: Any, val: Dataset, train: Dataset | None = None,
                 batch: int = 128, caches: list[dict] | None = None,
                 keep: bool = True) -> None:
        self.model, self.val, self.train, self.batch = model, val, train, batch
        self._caches, self.keep = caches, keep

    def refresh(self) -> None:
        """Forget the cached inputs (call after changing the weights)."""
        self._caches = None

    def caches(self) -> list[dict] | None:
        """The cached inputs of every batch (computed now if needed); ``None`` when the
        model computes everything per call."""
        if not self.model.supports_cache():
            return None
        if self._caches is None:
            self.model.eval()
            imgs = self.val.images
            with torch.no_grad(), single_thread():
                self._caches = [self.model.cache_inputs(imgs[i:i + self.batch])
                                for i in range(0, len(self.val), self.batch)]
        return self._caches

    def _batches(self) -> Iterator[tuple[Any, dict | None]]:
        if not self.keep and self._caches is None and self.model.supports_cache():
            imgs = self.val.images
            for i in range(0, len(self.val), self.batch):
                yield None, self.model.cache_inputs(imgs[i:i + self.batch])
            return
        caches = self.caches()
        if caches is None:
            imgs = self.val.images
            for i in range(0, len(self.val), self.batch):
                yield imgs[i:i + self.batch], None
            return
        yield from ((None, c) for c in caches)

    def correct(self, x: SubNet | None) -> np.ndarray:
        """Whether each validation image is classified correctly (bool, (N,)); ``None``
        is the unsliced model."""
        self.model.eval()
        layout = None if x is None else self.model.layout(x.slice_h, x.slice_w, x.overlap)
        hits, start = [], 0
        with torch.no_grad(), single_thread():
            for imgs, cache in self._batches():
                out = (self.model.forward_cached(cache, layout) if cache is not None
                       else logits_of(self.model, imgs, layout))
                hits.append(out.argmax(-1) == self.val.labels[start:start + out.shape[0]])
                start += out.shape[0]
        return torch.cat(hits).numpy() if hits else np.zeros(0, bool)

    def __call__(self, x: SubNet | None) -> float:
        """Accuracy in [0, 1]; ``None`` is the unsliced model."""
        c = self.correct(x)
        return float(c.mean()) if c.size else 0.0

    def worker_args(self) -> tuple:
        """Arguments of :func:`worker_accuracy` that rebuild this objective in another
        process: the model's class, spec and weights, and the images or cached inputs in
        shared memory (one copy for every worker)."""
        caches = self.caches()
        images = None if caches is not None else _shared(self.val.images)
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return (type(self.model), self.model.spec, state, _shared(caches), images,
                self.val.labels, self.batch)


def _shared(obj: Any) -> Any:
    """``obj`` with every tensor inside (dicts, lists, dataclasses) in shared memory."""
    if torch.is_tensor(obj):
        return obj.share_memory_()
    if isinstance(obj, dict):
        return {k: _shared(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_shared(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            setattr(obj, f.name, _shared(getattr(obj, f.name)))
    return obj


def worker_accuracy(make: Callable[[Any], Any], spec: Any, state: dict,
                    caches: list[dict] | None, images: Any, labels: Any,
                    batch: int) -> Callable[[SubNet], np.ndarray]:
    """In a worker process: the per-image scorer of :meth:`SubnetAccuracy.correct` for
    the model ``make(spec)`` with weights ``state`` (see :meth:`SubnetAccuracy.worker_args`)."""
    torch.set_num_threads(1)
    model = make(spec)
    model.load_state_dict(state)
    model.eval()
    val = Dataset(images, labels, [])
    return SubnetAccuracy(model, val, batch=batch, caches=caches).correct


#: Epochs of the digits proxy's classifier unless ``nas.train_epochs`` says otherwise.
DIGITS_EPOCHS = 16
#: The Fashion-MNIST classifier's training recipe (``nas.train_epochs`` overrides the
#: epochs): AdamW with a one-cycle schedule peaking at ``lr``, random left-right flips.
FASHION_RECIPE = {"epochs": 1, "lr": 2e-3, "weight_decay": 0.05, "batch": 64}


def fashion_objective(cfg: Config, progress: bool = False
                      ) -> tuple[SubnetAccuracy, dict[str, Any], Dataset]:
    """The default objective: the DAT++-style classifier of ``cfg``'s DAT layer
    (:class:`~defslice.nas.classifier.DatPlusClassifier`) on Fashion-MNIST.

    Trained unsliced on the training set minus ``nas.val_images`` validation images
    (seed ``nas.seed``), cached (:func:`~defslice.nas.train.cached_weights`: the key
    covers the data files' digest, the recipe, the network's and the layer's code
    versions, torch, the CPU model and the thread count). Returns the objective on the
    validation split, its metadata and the test set (10000 images, for the final
    figures only).
    """
    from defslice.nas.classifier import CLASSIFIER_VERSION, ClassifierSpec, DatPlusClassifier
    from defslice.nas.data import fashion_mnist
    from defslice.nas.fashion import file_digest

    nas = cfg.nas
    spec = ClassifierSpec.from_config(cfg)
    train, val, test = fashion_mnist(nas.val_images, nas.seed)
    recipe = {**FASHION_RECIPE, "data": "fashion-mnist",
              "files": {p: file_digest(p) for p in ("train", "test")},
              "val_images": nas.val_images, "seed": nas.seed,
              "classifier_version": CLASSIFIER_VERSION}
    if nas.train_epochs is not None:
        recipe["epochs"] = nas.train_epochs
    fit = train
    if nas.train_images is not None and nas.train_images < len(train):
        recipe["train_images"] = nas.train_images
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(nas.seed))
        pick = pick[:nas.train_images].sort().values
        fit = Dataset(train.images[pick], train.labels[pick], train.classes, train.augment)

    t0 = time.perf_counter()

    def report(ep: int, loss: float) -> None:
        if progress:
            print(f"nas: Fashion-MNIST classifier epoch {ep + 1}/{recipe['epochs']}: "
                  f"training loss {loss:.4f}", flush=True)

    def step(i: int, steps: int, loss: float) -> None:
        if progress and (i % 100 == 0 or i == steps):
            print(f"nas: training step {i}/{steps}: loss {loss:.4f}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)

    def build(model: DatPlusClassifier, partial: Path) -> dict:
        before = (torch.load(partial, weights_only=False)["position"]["seconds"]
                  if partial.is_file() else 0.0)
        t1 = time.perf_counter()
        losses = train_classifier(model, fit.images, fit.labels, recipe["epochs"],
                                  nas.seed, lr=recipe["lr"], batch=recipe["batch"],
                                  weight_decay=recipe["weight_decay"], on_epoch=report,
                                  augment=train.augment, on_step=step, checkpoint=partial)
        return {"train_loss": losses, "train_seconds": before + time.perf_counter() - t1,
                "resumed_after_seconds": before}

    model, meta = cached_weights("fashion", spec, recipe, build, make=DatPlusClassifier)
    meta.update({"evaluator": "fashion", "recipe": recipe, "train_images": len(fit),
                 "val_images": len(val), "test_images": len(test)})
    return SubnetAccuracy(model, val, train), meta, test


def digits_objective(cfg: Config, progress: bool = False) -> tuple[SubnetAccuracy, dict]:
    """The offline objective: the DAT-style digits classifier of ``cfg``'s map.

    Trained unsliced for ``nas.train_epochs`` on 80% of scikit-learn's digits (seed
    ``nas.seed``) with random shifts of up to ``nas.digits_margin`` pixels, cached on
    disk; scored on the other 20%, each digit at ``nas.digits_val_shifts`` placements.
    """
    spec = spec_for_digits(cfg)
    nas = cfg.nas
    room = max_digits_margin(spec.img_size)
    margin = nas.digits_margin
    if margin is None:  # one key-grid cell
        margin = min(spec.img_size[0] // spec.key_grid[0],
                     spec.img_size[1] // spec.key_grid[1], room)
    if margin > room:
        raise ConfigError("nas.digits_margin", margin,
                          f"0..{room} on the {spec.img_size[0]}x{spec.img_size[1]} map "
                          "(the digit needs at least 8 pixels)")
    train, val = digits(spec.img_size, seed=nas.seed, margin=margin,
                        val_shifts=nas.digits_val_shifts)
    epochs = nas.train_epochs or DIGITS_EPOCHS
    recipe = {"data": "sklearn-digits", "val_fraction": 0.2, "epochs": epochs,
              "seed": nas.seed, "margin": margin}

    def build(model: DatClassifier, partial: Path) -> dict:
        def report(ep: int, loss: float) -> None:
            if progress:
                print(f"nas: digits classifier epoch {ep + 1}/{epochs}: "
                      f"loss {loss:.4f}", flush=True)

        losses = train_classifier(model, train.images, train.labels, epochs,
                                  nas.seed, on_epoch=report, augment=train.augment,
                                  checkpoint=partial)
        return {"train_loss": losses}

    model, meta = cached_weights("digits", spec, recipe, build)
    meta.update({"train_images": len(train), "val_images": len(val),
                 "margin": margin, "val_shifts": nas.digits_val_shifts,
                 "evaluator": "digits", "recipe": recipe})
    return SubnetAccuracy(model, val, train), meta


def imagefolder_objective(cfg: Config, data_dir: str | Path, checkpoint: str | Path,
                          key_map: dict[str, str] | None = None,
                          finetune_dir: str | Path | None = None,
                          img_size: tuple[int, int] | None = None,
                          ) -> tuple[SubnetAccuracy, dict[str, Any]]:
    """A DAT-format checkpoint scored on an ImageNet-layout folder.

    The model's shape is read from the checkpoint (:func:`infer_spec`); the sampling
    stride and ``offset_range_factor`` come from ``cfg.workload``; the image size
    defaults to the map times the checkpoint's patch size. ``finetune_dir``: a second
    folder used for supernet fine-tuning (none: no fine-tuning data).
    """
    if checkpoint is None:
        raise InputError("the imagefolder objective needs --checkpoint (a DAT-format file)")
    sd = read_state_dict(checkpoint)
    wl = cfg.workload
    patch = int(sd["patch_proj.0.weight"].shape[-1]) if "patch_proj.0.weight" in sd else 4
    size = img_size or (wl.levels[0][0] * patch, wl.levels[0][1] * patch)
    spec = infer_spec(sd, size, wl.stride, float(wl.offset_range_factor))
    model = DatClassifier(spec)
    rep = load_dat_checkpoint(model, sd)
    val = image_folder(data_dir, spec.img_size, spec.in_chans)
    train = image_folder(finetune_dir, spec.img_size, spec.in_chans) if finetune_dir else None
    meta = {"evaluator": "imagefolder", "checkpoint": str(checkpoint), "load": rep.summary(),
            "unknown_keys": rep.unknown, "missing_keys": rep.missing,
            "mismatched_keys": rep.mismatched, "val_images": len(val),
            "classes": val.classes}
    if val.classes and spec.num_classes < len(val.classes):
        raise InputError(f"the folder has {len(val.classes)} classes, the checkpoint's head "
                         f"{spec.num_classes}")
    return SubnetAccuracy(model, val, train), meta
