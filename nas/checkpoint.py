"""Loading of DAT-format checkpoints into :class:`~defslice.nas.dat_torch.DatClassifier`.

Key names follow the public DAT code (``patch_proj.0.weight``,
``stages.0.attns.0.conv_offset.0.weight``, ``stages.0.layer_norms.0.norm.weight``,
``stages.0.mlps.0.chunk.linear1.weight``, ``cls_norm.norm.weight``, ``cls_head.weight``,
...). What this model does not have (local-attention blocks, later stages, down
projections, buffers such as ``relative_position_index``) is reported as unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defslice.errors import InputError
from defslice.nas._torch import require_torch
from defslice.nas.dat_torch import DatClassifier, DatSpec

torch = require_torch()

__all__ = ["LoadReport", "infer_spec", "load_dat_checkpoint", "read_state_dict"]


@dataclass
class LoadReport:
    """Outcome of :func:`load_dat_checkpoint`: keys loaded, keys of the checkpoint this
    model has no place for, model keys the checkpoint lacks, and shape mismatches
    (``key: checkpoint shape vs model shape``)."""

    loaded: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

        lines = [f"loaded {len(self.loaded)} tensors"]
        for name in ("unknown", "missing", "mismatched"):
            keys = getattr(self, name)
            if keys:
                lines.append(f"{name}: {some(keys)}")
        return "; ".join(lines)


def read_state_dict(source: str | Path | dict) -> dict[str, Any]:
    """State dict from a file or dict; unwraps ``{"model": ...}`` / ``{"state_dict": ...}``
    (DAT's checkpoints hold ``model``) and strips a ``module.`` prefix."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"checkpoint {path} does not exist")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a bad file
            raise InputError(f"checkpoint {path} cannot be read: {exc}") from None
    if not isinstance(source, dict):
        raise InputError(f"a checkpoint must hold a dict, got {type(source).__name__}")
    for wrapper in ("model", "state_dict"):
        if isinstance(source.get(wrapper), dict):
            source = source[wrapper]
    return {k.removeprefix("module."): v for k, v in source.items() if hasattr(v, "shape")}


def infer_spec(sd: dict[str, Any], img_size: tuple[int, int], stride: int,
               offset_range_factor: float, **overrides: Any) -> DatSpec:
    """The :class:`DatSpec` a DAT-format state dict describes (stage 0).

    Read from shapes: ``dim``, input channels and patch size (``patch_proj.0.weight``),
    depth (``stages.0.attns.<i>``), groups and offset kernel (``conv_offset.0.weight``),
    heads and ``use_pe`` (``rpe_table``, else ``dim // 32``), MLP ratio and classes.
    Not in a state dict, so given: image size, sampling stride, ``offset_range_factor``.
    """
    try:
        w = sd["patch_proj.0.weight"]
        off = sd["stages.0.attns.0.conv_offset.0.weight"]
    except KeyError as exc:
        raise InputError(f"not a DAT-format state dict: no {exc.args[0]!r}") from None
    dim, in_chans, k = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
    depth = 1 + max(int(m.group(1)) for key in sd
                    if (m := re.match(r"stages\.0\.attns\.(\d+)\.proj_q\.weight$", key)))
    rpe = sd.get("stages.0.attns.0.rpe_table")
    lin = sd.get("stages.0.mlps.0.chunk.linear1.weight")
    head = sd.get("cls_head.weight")
    base = dict(in_chans=in_chans, img_size=img_size, stem_kernel=k, stem_stride=k, dim=dim,
                depth=depth, heads=int(rpe.shape[0]) if rpe is not None else max(1, dim // 32),
                groups=dim // int(off.shape[0]), stride=stride,
                offset_kernel=int(off.shape[-1]), offset_range_factor=offset_range_factor,
                use_pe=rpe is not None, mlp_ratio=int(lin.shape[0]) / dim if lin is not None
                else 0.0, num_classes=int(head.shape[0]) if head is not None else 1000)
    if head is not None:
        base["pool_grid"] = round((int(head.shape[1]) / dim) ** 0.5)
    base.update(overrides)
    return DatSpec(**base)


def load_dat_checkpoint(model: DatClassifier, source: str | Path | dict,
                        key_map: dict[str, str] | None = None,
                        strict: bool = False) -> LoadReport:
    """Copy matching tensors of a DAT-format checkpoint into ``model``.

    ``key_map`` renames prefixes first (e.g. ``{"stages.2.attns.1.":
    "stages.0.attns.0."}`` takes a deformable block of DAT-T's stage 3). ``strict``:
    raise :class:`InputError` with the report unless every model key was loaded and
    nothing was unknown or mismatched.
    """
    sd = read_state_dict(source)
    for old, new in (key_map or {}).items():
        sd = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in sd.items()}
    own = model.state_dict()
    rep = LoadReport()
    update = {}
    for key, value in sd.items():
        if key not in own:
            rep.unknown.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            rep.mismatched.append(f"{key}: {tuple(value.shape)} vs {tuple(own[key].shape)}")
        else:
            update[key] = value
            rep.loaded.append(key)
    rep.missing = [k for k in own if k not in update]
    if strict and (rep.unknown or rep.missing or rep.mismatched):
        raise InputError("checkpoint does not match the model: " + rep.summary())
    own.update({k: v.to(own[k].dtype) for k, v in update.items()})
    model.load_state_dict(own)
    return rep
