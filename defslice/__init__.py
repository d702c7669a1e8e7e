"""defslice: a generator of verified FPGA accelerators for sliced deformable attention.

Stages, one direction only: :mod:`defslice.config` -> :mod:`defslice.model` (golden
model, slicing, DRAM traffic) -> :mod:`defslice.hw` (Amaranth -> Verilog) ->
:mod:`defslice.sim` (cocotb against the model); :mod:`defslice.nas` searches the
slicing strategy with the model and :mod:`defslice.hw`'s resource estimates and emits a
configuration. Every stage is ``run(cfg, out, options) -> report``; :mod:`defslice.cli`,
:mod:`defslice.flow` and :mod:`defslice.summary` sit on top.
"""

__version__ = "0.1.0"
