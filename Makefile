# defslice: every user-facing job is one target. PRESET picks the configuration.
PYTHON ?= python3
PRESET ?= dat56
OUT ?= out
PYTEST ?= $(PYTHON) -m pytest

.PHONY: install all test sim verilog report nas bench model lint clean

install:
	@bash scripts/install.sh

# The main job: the whole flow on PRESET.
all: install
	defslice model --preset $(PRESET) --out $(OUT)/$(PRESET)/model

# Every test: model, hardware blocks, cocotb system simulations on Icarus and Verilator.
test: install
	$(PYTEST) -q

# Only the cocotb system tests of the generated Verilog (SIM_FULL=1: long regression).
sim: install
	$(PYTEST) -q -m sim

model: install
	defslice model --preset $(PRESET) --out reports/model

bench: install
	defslice bench --out reports

lint:
	ruff check .

clean:
	rm -rf $(OUT) reports sim_build .pytest_cache
