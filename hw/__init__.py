"""Amaranth generators of the sliced deformable-attention accelerator.

``build_top(cfg)`` returns the top-level elaboratable, ``generate_verilog(cfg, out_dir)``
writes ``out_dir/defslice_top.v``; every parameter comes from :mod:`defslice.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from defslice.config import Config
    from defslice.hw.top import DefsliceTop

__all__ = ["BANKS_MODULE", "TOP_NAME", "build_top", "generate_verilog", "verilog_text"]

TOP_NAME = "defslice_top"
#: The Verilog module holding the window-buffer memories (``Loader`` -> ``WindowBanks``).
BANKS_MODULE = f"{TOP_NAME}.loader.banks"


def build_top(cfg: Config) -> DefsliceTop:
    """The accelerator for ``cfg`` as an Amaranth :class:`~amaranth.lib.wiring.Component`.

    Raises :class:`~defslice.errors.ConfigError` (before elaboration) for configurations
    the generator cannot build.
    """
    from defslice.hw.params import derive
    from defslice.hw.top import DefsliceTop

    return DefsliceTop(derive(cfg))


def verilog_text(cfg: Config) -> str:
    """Verilog source of ``defslice_top`` for ``cfg``."""
    from amaranth.back import verilog

    top = build_top(cfg)
    return verilog.convert(top, name=TOP_NAME, emit_src=False)


def generate_verilog(cfg: Config, out_dir: str | Path) -> Path:
    """Write ``out_dir/defslice_top.v`` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{TOP_NAME}.v"
    path.write_text(verilog_text(cfg))
    return path
