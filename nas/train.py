"""Training and scoring of the DAT-style classifiers, and the on-disk weight cache.

A classifier is trained once and cached in ``$DEFSLICE_CACHE`` (default
``~/.cache/defslice``) under a name hashed from everything its weights depend on: shape,
recipe (data, epochs, seed), code version, torch version, CPU model and thread count
(training repeats bit for bit only on the same arithmetic).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from defslice.nas._torch import require_torch
from defslice.nas.dat_torch import LAYER_CONVENTION, DatClassifier, SliceLayout

torch = require_torch()
from torch.nn import functional as F  # noqa: E402

__all__ = ["accuracy", "cache_dir", "cached_weights", "logits_of", "machine_identity",
           "train_classifier"]

#: Bumped when the training recipe changes, so stale cached weights are not reused.
RECIPE_VERSION = 1


def cache_dir() -> Path:
    """``$DEFSLICE_CACHE`` or ``~/.cache/defslice``."""
    return Path(os.environ.get("DEFSLICE_CACHE") or Path.home() / ".cache" / "defslice")


def cache_key(**parts: Any) -> str:
    """Short stable hash of JSON-able ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_identity() -> dict[str, Any]:
    """What floating-point results depend on besides the inputs: torch version, CPU
    model and PyTorch's CPU thread count (``torch.set_num_threads``)."""
    return {"torch": torch.__version__.split("+")[0], "cpu": cpu_model(),
            "threads": torch.get_num_threads()}


def logits_of(model: Any, images: Any, layout: SliceLayout | None, grad: bool = False) -> Any:
    """Logits (B, classes), by the fast cached path when the model allows it."""
    if model.supports_cache():
        return model.forward_cached(model.cache_inputs(images, grad=grad), layout)
    with torch.set_grad_enabled(grad):
        return model(images, layout)


def accuracy(model: Any, images: Any, labels: Any, layout: SliceLayout | None,
             batch: int = 256) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` under ``layout`` (``None``: unsliced)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            out = logits_of(model, images[i:i + batch], layout)
            correct += int((out.argmax(-1) == labels[i:i + batch]).sum())
    return correct / max(1, len(labels))


def train_classifier(model: Any, images: Any, labels: Any, epochs: int, seed: int,
                     lr: float = 3e-3, batch: int = 64,
                     on_epoch: Callable[[int, float], None] | None = None,
                     augment: Callable[[Any, Any], Any] | None = None,
                     weight_decay: float = 1e-4,
                     on_step: Callable[[int, int, float], None] | None = None,
                     checkpoint: Path | None = None, save_every: int = 50) -> list[float]:
    """Train ``model`` unsliced with cross-entropy, AdamW (``weight_decay``) and a
    one-cycle schedule peaking at ``lr``.

    ``augment(batch, generator)`` transforms each training batch (see
    :class:`defslice.nas.data.Dataset`). ``on_step(step, steps, loss)`` is called
    after every step. Returns the mean training loss per epoch. Seeded: same seed, same
    weights (the initial weights come from the caller).

    ``checkpoint``: every ``save_every`` steps the whole state (weights, optimizer,
    schedule, random generator, position) is saved there; a call that finds the file
    resumes from it and ends with the weights an uninterrupted run gives, then removes
    it. ``seconds`` in the file is the training time spent so far.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    per_epoch = -(-len(labels) // batch)
    steps = epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.15)
    state = _resume(checkpoint, model, opt, sched)
    t0 = time.perf_counter() - state["seconds"]
    losses = state["losses"]
    for ep in range(state["epoch"], epochs):
        model.train()
        resumed = ep == state["epoch"] and state["start"] > 0
        gen_epoch = state["gen_epoch"] if resumed else gen.get_state()
        gen.set_state(gen_epoch)
        perm = torch.randperm(len(labels), generator=gen)
        if resumed:
            gen.set_state(state["gen_now"])
        start = state["start"] if resumed else 0
        total, n = (state["total"], state["n"]) if resumed else (0.0, 0)
        for i in range(start, len(labels), batch):
            idx = perm[i:i + batch]
            xb = images[idx] if augment is None else augment(images[idx], gen)
            loss = F.cross_entropy(logits_of(model, xb, None, grad=True), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
            step = ep * per_epoch + i // batch + 1
            if checkpoint is not None and step % save_every == 0 and step < steps:
                _save_partial(checkpoint, model, opt, sched, {
                    "epoch": ep, "start": i + batch, "total": total, "n": n,
                    "losses": losses, "gen_epoch": gen_epoch, "gen_now": gen.get_state(),
                    "seconds": time.perf_counter() - t0})
            if on_step is not None:
                on_step(step, steps, float(loss.detach()))
        losses.append(total / n)
        if on_epoch is not None:
            on_epoch(ep, losses[-1])
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return losses


def _resume(checkpoint: Path | None, model: Any, opt: Any, sched: Any) -> dict:
    """The position saved in ``checkpoint`` (restoring the states into ``model``,
    ``opt``, ``sched``), or the start."""
    if checkpoint is None or not checkpoint.is_file():
        return {"epoch": 0, "start": 0, "losses": [], "seconds": 0.0}
    blob = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["opt"])
    sched.load_state_dict(blob["sched"])
    return blob["position"]


def _save_partial(checkpoint: Path, model: Any, opt: Any, sched: Any, position: dict) -> None:
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "position": position}, tmp)
    tmp.replace(checkpoint)


def cached_weights(name: str, spec: Any, recipe: dict,
                   build: Callable[[Any, Path], dict],
                   make: Callable[[Any], Any] | None = None) -> tuple[Any, dict]:
    """Model of ``spec`` with weights from the cache, or built by ``build`` and stored.

    ``build(model, partial)`` trains ``model`` in place (``partial``: the checkpoint
    file of an interrupted training, :func:`train_classifier`) and returns metadata
    (JSON-able; ``train_seconds``, when it sets it, counts earlier interrupted parts); the
    file is ``cache_dir() / f"{name}-{hash}.pt"`` with the hash over ``spec``,
    ``recipe``, :data:`RECIPE_VERSION`, the layer's conventions
    (:data:`~defslice.nas.dat_torch.LAYER_CONVENTION`) and :func:`machine_identity`.
    ``make(spec)`` builds the model (default :class:`DatClassifier`). Returns the model
    and its metadata, with ``meta["cached"]`` telling whether it came from the cache and
    ``meta["key"]`` the hash (and with it everything it covers, ``meta["key_parts"]``).
    """
    parts = {"spec": asdict(spec), "recipe": recipe, "version": RECIPE_VERSION,
             "layer": LAYER_CONVENTION, **machine_identity()}
    key = cache_key(**parts)
    path = cache_dir() / f"{name}-{key}.pt"
    torch.manual_seed(int(recipe.get("seed", 0)))  # the initial weights
    model = (make or DatClassifier)(spec)
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(blob["state_dict"])
        meta = json.loads(blob["meta"])
        meta.update(cached=True, cache_file=str(path), key=key, key_parts=parts)
        return model, meta
    t0 = time.perf_counter()
    meta = build(model, path.with_suffix(".partial"))
    meta.setdefault("train_seconds", time.perf_counter() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "meta": json.dumps(meta)}, tmp)
    tmp.replace(path)
    meta.update(cached=False, cache_file=str(path), key=key, key_parts=parts)
    return model, meta
