"""Lazy access to PyTorch, an optional dependency of the accuracy objective."""

from __future__ import annotations

from types import ModuleType

from defslice.errors import ToolError

__all__ = ["require_torch"]

#: The only torch build checked with this code (the CPU wheel; unpinned pulls CUDA).
TORCH_PIN = "torch==2.13.0"


def require_torch() -> ModuleType:
    """Import and return ``torch``; raise :class:`ToolError` with the install line if absent."""
    try:
        import torch
    except ImportError:  # pragma: no cover - exercised only where torch is absent
        raise ToolError(
            f"the accuracy objective of defslice nas needs PyTorch: pip install {TORCH_PIN}"
        ) from None
    return torch
