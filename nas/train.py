"""Training and scoring of the DAT-style classifier, and the on-disk weight cache.

The offline digits classifier is trained once per (shape, recipe, seed) and cached in
``$DEFSLICE_CACHE`` (default ``~/.cache/defslice``) under a name hashed from those.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from defslice.nas._torch import require_torch
from defslice.nas.dat_torch import LAYER_CONVENTION, DatClassifier, DatSpec, SliceLayout

torch = require_torch()
from torch.nn import functional as F  # noqa: E402

__all__ = ["accuracy", "cache_dir", "cached_weights", "logits_of", "train_classifier"]

#: Bumped when the training recipe changes, so stale cached weights are not reused.
RECIPE_VERSION = 1


def cache_dir() -> Path:
    """``$DEFSLICE_CACHE`` or ``~/.cache/defslice``."""
    return Path(os.environ.get("DEFSLICE_CACHE") or Path.home() / ".cache" / "defslice")


def cache_key(**parts: Any) -> str:
    """Short stable hash of JSON-able ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def logits_of(model: DatClassifier, images, layout: SliceLayout | None, grad: bool = False):
    """Logits (B, classes), by the fast cached path when the model allows it."""
    if model.supports_cache():
        return model.forward_cached(model.cache_inputs(images, grad=grad), layout)
    with torch.set_grad_enabled(grad):
        return model(images, layout)


def accuracy(model: DatClassifier, images, labels, layout: SliceLayout | None,
             batch: int = 256) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` under ``layout`` (``None``: unsliced)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            out = logits_of(model, images[i:i + batch], layout)
            correct += int((out.argmax(-1) == labels[i:i + batch]).sum())
    return correct / max(1, len(labels))


def train_classifier(model: DatClassifier, images, labels, epochs: int, seed: int,
                     lr: float = 3e-3, batch: int = 64,
                     on_epoch: Callable[[int, float], None] | None = None,
                     augment: Callable[[Any, Any], Any] | None = None) -> list[float]:
    """Train ``model`` unsliced with cross-entropy, AdamW and a cosine schedule.

    ``augment(batch, generator)`` transforms each training batch (see
    :class:`defslice.nas.data.Dataset`). Returns the mean training loss per epoch.
    Seeded: same seed, same weights.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(labels) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.15)
    losses = []
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(labels), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(labels), batch):
            idx = perm[i:i + batch]
            xb = images[idx] if augment is None else augment(images[idx], gen)
            loss = F.cross_entropy(logits_of(model, xb, None, grad=True), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        losses.append(total / n)
        if on_epoch is not None:
            on_epoch(ep, losses[-1])
    return losses


def cached_weights(name: str, spec: DatSpec, recipe: dict,
                   build: Callable[[DatClassifier], dict]) -> tuple[DatClassifier, dict]:
    """Model of ``spec`` with weights from the cache, or built by ``build`` and stored.

    ``build(model)`` trains ``model`` in place and returns metadata (JSON-able); the
    file is ``cache_dir() / f"{name}-{hash}.pt"`` with the hash over ``spec``,
    ``recipe``, :data:`RECIPE_VERSION` and the layer's conventions
    (:data:`~defslice.nas.dat_torch.LAYER_CONVENTION`). Returns the model and its metadata, with
    ``meta["cached"]`` telling whether it came from the cache.
    """
    key = cache_key(spec=asdict(spec), recipe=recipe, version=RECIPE_VERSION,
                    layer=LAYER_CONVENTION, torch=torch.__version__.split("+")[0])
    path = cache_dir() / f"{name}-{key}.pt"
    model = DatClassifier(spec)
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(blob["state_dict"])
        meta = json.loads(blob["meta"])
        meta["cached"] = True
        meta["cache_file"] = str(path)
        return model, meta
    t0 = time.perf_counter()
    meta = build(model)
    meta["train_seconds"] = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "meta": json.dumps(meta)}, tmp)
    tmp.replace(path)
    meta["cached"] = False
    meta["cache_file"] = str(path)
    return model, meta
