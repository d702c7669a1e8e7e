"""Accuracy objectives: the offline digits classifier and a DAT model on an image folder.

Both give a :class:`SubnetAccuracy`, a callable ``SubNet -> top-1 accuracy`` over a fixed
validation set. Importing this module needs PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defslice.config import Config
from defslice.errors import ConfigError, InputError
from defslice.nas._torch import require_torch
from defslice.nas.checkpoint import infer_spec, load_dat_checkpoint, read_state_dict
from defslice.nas.dat_torch import DatClassifier, spec_for_digits
from defslice.nas.data import Dataset, digits, image_folder, max_digits_margin
from defslice.nas.space import SubNet
from defslice.nas.train import cached_weights, logits_of, train_classifier

torch = require_torch()

__all__ = ["SubnetAccuracy", "digits_objective", "imagefolder_objective"]


class SubnetAccuracy:
    """Top-1 accuracy of sub-nets of ``model`` on ``val``.

    When the model allows it, everything before slicing is computed once per weight
    state (:meth:`refresh` after the weights change) and each sub-net only redoes the
    sliced attention.
    """

    def __init__(self, model: DatClassifier, val: Dataset, train: Dataset | None = None,
                 batch: int = 128):
        self.model, self.val, self.train, self.batch = model, val, train, batch
        self._caches: list[dict] | None = None

    def refresh(self) -> None:
        """Forget the cached inputs (call after changing the weights)."""
        self._caches = None

    def _batches(self):
        imgs = self.val.images
        if not self.model.supports_cache():
            for i in range(0, len(self.val), self.batch):
                yield imgs[i:i + self.batch], None
            return
        if self._caches is None:
            self.model.eval()
            self._caches = [self.model.cache_inputs(imgs[i:i + self.batch])
                            for i in range(0, len(self.val), self.batch)]
        yield from ((None, c) for c in self._caches)

    def __call__(self, x: SubNet | None) -> float:
        """Accuracy in [0, 1]; ``None`` is the unsliced model."""
        self.model.eval()
        layout = None if x is None else self.model.layout(x.slice_h, x.slice_w, x.overlap)
        correct, start = 0, 0
        with torch.no_grad():
            for imgs, cache in self._batches():
                out = (self.model.forward_cached(cache, layout) if cache is not None
                       else logits_of(self.model, imgs, layout))
                labels = self.val.labels[start:start + out.shape[0]]
                correct += int((out.argmax(-1) == labels).sum())
                start += out.shape[0]
        return correct / max(1, len(self.val))


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
    recipe = {"data": "sklearn-digits", "val_fraction": 0.2, "epochs": nas.train_epochs,
              "seed": nas.seed, "margin": margin}

    def build(model: DatClassifier) -> dict:
        def report(ep: int, loss: float) -> None:
            if progress:
                print(f"nas: digits classifier epoch {ep + 1}/{cfg.nas.train_epochs}: "
                      f"loss {loss:.4f}", flush=True)

        losses = train_classifier(model, train.images, train.labels, nas.train_epochs,
                                  nas.seed, on_epoch=report, augment=train.augment)
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
