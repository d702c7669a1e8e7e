"""Amaranth generators of the sliced deformable-attention accelerator.

``build_top(design)`` returns the top-level elaboratable, ``generate_verilog(design,
out_dir)`` writes ``out_dir/defslice_top.v``; ``design`` is a :class:`~defslice.config.Config`
or the :class:`~defslice.hw.params.HwParams` already derived from one (so a caller that
checked a configuration does not derive it again). ``hw.engine`` chooses the engine: the
sampling engine (``hw/top.py``) or the layer engine (``hw/layer/top.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amaranth.lib import wiring

    from defslice.config import Config
    from defslice.hw.layer.top import LayerTop
    from defslice.hw.params import HwParams
    from defslice.hw.top import DefsliceTop

__all__ = ["BANKS_MODULE", "TOP_NAME", "build_top", "generate_verilog", "top_signature",
           "verilog_text"]

TOP_NAME = "defslice_top"
#: The Verilog module holding the window-buffer memories (``Loader`` -> ``WindowBanks``).
BANKS_MODULE = f"{TOP_NAME}.loader.banks"


def build_top(design: Config | HwParams) -> DefsliceTop | LayerTop:
    """The accelerator for ``design`` as an Amaranth :class:`~amaranth.lib.wiring.Component`:
    ``hw.engine = "sampling"`` the sampling engine, ``"layer"`` the layer engine.

    Raises :class:`~defslice.errors.ConfigError` (before elaboration) for configurations
    the generator cannot build.
    """
    from defslice.hw.params import HwParams, derive
    from defslice.hw.top import DefsliceTop

    cfg = design.cfg if isinstance(design, HwParams) else design
    if cfg.hw.engine == "layer":
        from defslice.hw.layer.top import LayerTop

        return LayerTop(cfg)
    return DefsliceTop(design if isinstance(design, HwParams) else derive(design))


def top_signature(design: Config | HwParams) -> wiring.Signature:
    """The ports of ``defslice_top`` for ``design`` (names, directions, widths), read from
    the component without elaborating it (the benches build their port lists from it)."""
    top = build_top(design)
    top._MustUse__silence = True      # built for its signature only: not an unused design
    return top.signature


def verilog_text(design: Config | HwParams) -> str:
    """Verilog source of ``defslice_top`` for ``design``."""
    from amaranth.back import verilog

    return verilog.convert(build_top(design), name=TOP_NAME, emit_src=False)


def generate_verilog(design: Config | HwParams, out_dir: str | Path) -> Path:
    """Write ``out_dir/defslice_top.v`` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{TOP_NAME}.v"
    path.write_text(verilog_text(design))
    return path
