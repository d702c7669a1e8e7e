# defslice: every user-facing job is one target. PRESET picks the configuration.
PYTHON ?= python3
PRESET ?= dat56
OUT ?= out
PYTEST ?= $(PYTHON) -m pytest

.PHONY: install all test sim verilog report nas bench model lint clean

install:
	@bash scripts/install.sh

# The main job: the whole flow on PRESET (SEARCH=1 runs the slicing search first):
# golden model, Verilog + Xilinx/ECP5 reports, cocotb simulation, DRAM traffic,
# $(OUT)/$(PRESET)/summary.md. dat56 builds the layer engine; its ECP5 place and route
# (of its smallest engine, 4 x 2: dat56 does not fit the LFE5U-85F) takes over 30 min:
# ECP5=0 skips it, and ECP5_MINUTES=N stops nextpnr after N minutes (default 60:
# --ecp5-minutes), keeping its estimate after placement, labelled as such (log:
# verilog/reports/ecp5_pnr.log).
SEARCH ?=
ECP5 ?= 1
ECP5_MINUTES ?=
ECP5_FLAGS = $(if $(filter 0,$(ECP5)),--no-ecp5,) $(if $(ECP5_MINUTES),--ecp5-minutes $(ECP5_MINUTES),)
all: install
	defslice flow --preset $(PRESET) --out $(OUT)/$(PRESET) $(if $(SEARCH),--search,) \
		$(ECP5_FLAGS)

# Every test: model, hardware blocks, cocotb system simulations on Icarus and Verilator.
test: install
	$(PYTEST) -q

# Only the cocotb system tests of the generated Verilog (SIM_FULL=1: long regression).
sim: install
	$(PYTEST) -q -m sim

model: install
	defslice model --preset $(PRESET) --out reports/model

# Verilog of PRESET, Vivado build tree, yosys Xilinx utilization, ECP5 timing (ECP5=0
# skips the place and route, ECP5_MINUTES=N bounds it).
verilog: install
	defslice verilog --preset $(PRESET) --out $(OUT)/$(PRESET)/verilog $(ECP5_FLAGS)

# DRAM traffic of every dataflow on the paper's case and the MSDA encoder case.
report: install
	defslice traffic --preset dat56 --out reports
	defslice traffic --preset msda-xmsda --out reports

# The slicing-strategy search on PRESET.
nas: install
	defslice nas --preset $(PRESET) --out reports/nas

bench: install
	defslice bench --out reports

lint:
	ruff check .

clean:
	rm -rf $(OUT) reports sim_build .pytest_cache
