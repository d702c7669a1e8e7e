"""Supernet fine-tuning with the alpha-divergence distillation of eq. 1-2 (AlphaNet style).

Every step: the teacher is the unsliced model (the supernet's largest sub-net, same
weights), trained with cross-entropy on the labels; the students are the smallest
sub-net of the space plus ``nas.finetune_students - 1`` random ones (the sandwich rule),
each trained towards the teacher's detached scores with ``max(D_alpha+, D_alpha-)``.

The learning rate warms up linearly over the first :data:`WARMUP_FRACTION` of the steps
to ``nas.finetune_lr`` and decays to 0 by a cosine; the teacher's cross-entropy has
weight ``nas.finetune_teacher_weight``. A constant 5e-4 with weight 1 (the first version)
dropped the digits classifier's unsliced accuracy from 74% to 46% after one epoch
(docs/nas.md, "Measured so far").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from defslice.config import NasConfig
from defslice.nas._torch import require_torch
from defslice.nas.alpha import adaptive_alpha_divergence
from defslice.nas.dat_torch import DatClassifier
from defslice.nas.space import SearchSpace, SubNet
from defslice.nas.train import accuracy

torch = require_torch()
from torch.nn import functional as F  # noqa: E402

__all__ = ["WARMUP_FRACTION", "finetune_supernet", "lr_factor", "panel_accuracy"]

#: Fraction of the fine-tuning steps spent in the linear learning-rate warm-up.
WARMUP_FRACTION = 0.1


def lr_factor(step: int, steps: int, warmup: float = WARMUP_FRACTION) -> float:
    """Learning rate of step ``step`` (0-based) of ``steps`` as a fraction of the peak:
    linear warm-up over ``round(warmup * steps)`` steps, then cosine decay towards 0."""
    n_warm = round(warmup * steps)
    if step < n_warm:
        return (step + 1) / n_warm
    t = (step - n_warm) / max(1, steps - n_warm)
    return 0.5 * (1.0 + float(np.cos(np.pi * t)))


def panel_accuracy(model: DatClassifier, images: Any, labels: Any,
                   panel: Sequence[SubNet]) -> dict[str, float]:
    """Accuracy of the unsliced model and of each sub-net of ``panel``."""
    out = {"unsliced": accuracy(model, images, labels, None)}
    for x in panel:
        out[str(x)] = accuracy(model, images, labels, model.layout(x.slice_h, x.slice_w,
                                                                     x.overlap))
    return out


def finetune_supernet(model: DatClassifier, train: Any, val: Any, space: SearchSpace,
                      nas: NasConfig,
                      panel: Sequence[SubNet], lr: float | None = None, batch: int = 64,
                      on_epoch: Callable[[dict], None] | None = None,
                      teacher_weight: float | None = None) -> list[dict]:
    """Fine-tune ``model`` in place for ``nas.finetune_epochs`` epochs of
    ``nas.finetune_images`` training images each (a new seeded draw every epoch).

    Returns one record per epoch, epoch 0 being before fine-tuning (the paper's
    Table I): ``{"epoch", "accuracy": {"unsliced": a, "<sub-net>": a, ...},
    "panel_mean", "loss", "lr"}``, accuracies on ``val``, ``lr`` the learning rate of
    the epoch's last step. ``lr`` and ``teacher_weight`` default to ``nas.finetune_lr``
    and ``nas.finetune_teacher_weight``. Seeded with ``nas.seed``.
    """
    lr = nas.finetune_lr if lr is None else lr
    teacher_weight = nas.finetune_teacher_weight if teacher_weight is None else teacher_weight
    rng = np.random.default_rng(nas.seed)
    torch.manual_seed(nas.seed)
    gen = torch.Generator().manual_seed(nas.seed)
    smallest = SubNet(space.h_range[0], space.w_range[0], space.overlaps[0])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = nas.finetune_epochs * -(-min(len(train), nas.finetune_images) // batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, steps))

    def record(epoch: int, loss: float | None, last_lr: float | None) -> dict:
        acc = panel_accuracy(model, val.images, val.labels, panel)
        sliced = [v for k, v in acc.items() if k != "unsliced"]
        rec = {"epoch": epoch, "accuracy": acc,
               "panel_mean": float(np.mean(sliced)) if sliced else None, "loss": loss,
               "lr": last_lr}
        if on_epoch is not None:
            on_epoch(rec)
        return rec

    history = [record(0, None, None)]
    per_epoch = min(len(train), nas.finetune_images)
    for ep in range(1, nas.finetune_epochs + 1):
        model.train()
        perm = torch.randperm(len(train), generator=gen)[:per_epoch]
        total, n = 0.0, 0
        for i in range(0, per_epoch, batch):
            idx = perm[i:i + batch]
            xb, yb = train.images[idx], train.labels[idx]
            if train.augment is not None:
                xb = train.augment(xb, gen)
            students = [smallest] + [space.sample(rng)
                                     for _ in range(nas.finetune_students - 1)]
            if model.supports_cache():
                cache = model.cache_inputs(xb, grad=True)

                def run(layout: Any, cache: dict = cache) -> Any:
                    return model.forward_cached(cache, layout)
            else:
                def run(layout: Any, xb: Any = xb) -> Any:
                    return model(xb, layout)
            teacher = run(None)
            loss = teacher_weight * F.cross_entropy(teacher, yb)
            for s in students:
                student = run(model.layout(s.slice_h, s.slice_w, s.overlap))
                loss = loss + adaptive_alpha_divergence(teacher, student, nas.alpha_min,
                                                        nas.alpha_max)
            opt.zero_grad()
            loss.backward()
            last_lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        history.append(record(ep, total / n, last_lr))
    return history
