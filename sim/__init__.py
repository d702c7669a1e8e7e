"""cocotb system benches of the generated Verilog against the golden model.

The stage is :func:`defslice.sim.stage.run` (``defslice sim`` and the one-command flow);
the bench itself is :mod:`defslice.sim.tb`, run by :mod:`defslice.sim.runner`.
"""
