"""cocotb system benches of the generated Verilog against the golden model."""
