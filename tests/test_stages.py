"""Stages as functions of one Config: typed reports through JSON, options through argv."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from defslice import config as cfgmod
from defslice.bench import BenchReport, Machine
from defslice.cliargs import add_options, option, options_argv, options_from_args
from defslice.errors import ConfigError
from defslice.hw.stage import VerilogOptions, VerilogReport
from defslice.hw.stage import run as verilog_run
from defslice.model.stage import ModelOptions, ModelReport
from defslice.model.stage import run as model_run
from defslice.model.traffic_stage import TrafficOptions, TrafficReport
from defslice.model.traffic_stage import run as traffic_run
from defslice.nas.stage import (
    ChosenSlicing,
    HardwareAccuracy,
    Measured,
    NasAccuracy,
    NasHypervolume,
    NasOptions,
    NasReport,
    SeedStudySummary,
)
from defslice.records import Record, RecordError, omitted, sha256_of
from defslice.sim.stage import SimOptions

TINY = cfgmod.preset("tiny")


@dataclass(frozen=True)
class _Inner(Record):
    n: int
    x: float


@dataclass(frozen=True)
class _Outer(Record):
    name: str
    path: Path
    pairs: tuple[tuple[str, int], ...]
    inner: dict[str, _Inner]
    maybe: _Inner | None
    hidden: int | None = omitted()


def test_record_codec_round_trip_and_errors():
    rec = _Outer("a", Path("x/y.v"), (("0x10", 2),), {"k": _Inner(1, 0.5)}, None)
    data = rec.to_json()
    assert data == {"name": "a", "path": "x/y.v", "pairs": [["0x10", 2]],
                    "inner": {"k": {"n": 1, "x": 0.5}}, "maybe": None}
    assert _Outer.from_json(data) == rec
    assert _Outer.from_json({**data, "hidden": 3}).hidden == 3
    with pytest.raises(RecordError, match="unknown keys extra"):
        _Outer.from_json({**data, "extra": 1})
    with pytest.raises(RecordError, match=r"_Outer.inner.k.n: expected int"):
        _Outer.from_json({**data, "inner": {"k": {"n": "1", "x": 0.5}}})
    with pytest.raises(RecordError, match="missing key path"):
        _Outer.from_json({k: v for k, v in data.items() if k != "path"})
    assert _Inner.from_json({"n": 2, "x": 1}).x == 1.0 and isinstance(
        _Inner.from_json({"n": 2, "x": 1}).x, float)


def test_model_stage_report_round_trips(tmp_path):
    report = model_run(TINY, tmp_path, ModelOptions(seed=3))
    assert report.seed == 3 and report.fixed_within_bound
    assert ModelReport.load(tmp_path / "model.json") == report
    assert ModelReport.from_json(report.to_json()) == report
    assert "# Golden model on `tiny`" in (tmp_path / "model.md").read_text()


def test_traffic_stage_report_round_trips(tmp_path):
    report = traffic_run(TINY, tmp_path, TrafficOptions(sweep=False, quiet=True))
    assert TrafficReport.load(tmp_path / "traffic_tiny.json") == report
    assert report.sweep_file is None and report.plot_file == "traffic_tiny.png"
    sliced = report.headline.dataflows["sliced"]
    assert sliced.label == "sliced (this design)" and 0 < sliced.normalized.beats


def test_verilog_stage_records_the_hash_of_its_file(tmp_path):
    opts = VerilogOptions(reports=False, xilinx=False, lint=False)
    report = verilog_run(TINY, tmp_path, opts)
    assert report.verilog == tmp_path / "defslice_top.v"
    assert report.verilog_sha256 == sha256_of(report.verilog)
    assert report.utilization is None and report.timing is None and not report.linted
    assert VerilogReport.load(tmp_path / "verilog.json") == report
    assert cfgmod.load(tmp_path / "config.toml") == TINY


def test_verilog_stage_uses_the_parameters_it_is_given(tmp_path, monkeypatch):
    """Derived once: with the caller's parameters the stage does not derive again."""
    from defslice.hw import params

    p = params.derive(TINY)
    calls = []
    monkeypatch.setattr(params, "derive", lambda cfg: calls.append(cfg) or p)
    opts = VerilogOptions(reports=False, xilinx=False, lint=False)
    verilog_run(TINY, tmp_path, opts, p)
    assert calls == []
    with pytest.raises(ValueError, match="another configuration"):
        verilog_run(cfgmod.preset("dat56"), tmp_path, opts, p)


def test_nas_and_bench_reports_round_trip(tmp_path):
    m = Measured(0.9, 0.003)
    nas = NasReport(config="dat56", evaluator="digits",
                    chosen=ChosenSlicing(28, 26, 2, 0.9, 112.0, 112, 983040.0, False, 0.01,
                                         "No point of the front ..."),
                    accuracy=NasAccuracy("test", 10000, m, m, m, m, Measured(0.08, 0.002)),
                    evaluations={"evolutionary": 318},
                    pareto=tmp_path / "pareto.json", chosen_config=tmp_path / "chosen.toml",
                    seconds=1.5)
    assert NasReport.load(nas.save(tmp_path / "nas.json")) == nas
    assert "hypervolume" not in nas.to_json() and nas.hypervolume_ratio is None
    study = SeedStudySummary(100, 420.0, 0.995, 0.97, 88, 100, 318.0, None, 661)
    full = dataclasses.replace(
        nas, hypervolume=NasHypervolume({"evolutionary": 0.99}, {"evolutionary": study}),
        hardware=HardwareAccuracy(10000, m, m, Measured(0.0, 0.0), 1.0))
    assert NasReport.load(full.save(tmp_path / "nas.json")) == full
    assert full.hypervolume_ratio == 0.99 and study.evaluations_text() == "318 / > 661"
    assert nas.apply(cfgmod.preset("dat56")).slicing.slice_w == 26
    bench = BenchReport(Machine("3.11", 2), {"hw": {"tiny_cycles": 100, "x_s": 0.5}})
    assert bench.to_json() == {"machine": {"python": "3.11", "cpus": 2},
                               "hw": {"tiny_cycles": 100, "x_s": 0.5}}
    assert BenchReport.load(bench.save(tmp_path / "bench.json")) == bench


@pytest.mark.parametrize("options", [
    ModelOptions(seed=7),
    VerilogOptions(reports=False, lint=False, ecp5_minutes=2.5),
    SimOptions("icarus", seed=2, queries=5, backpressure=0.5, reset_mid_run=True,
               verilog=Path("a/b.v")),
    TrafficOptions(seed=1, trace=Path("t.npz"), sweep=False, alias=True,
                   ramulator=Path("r.trace"), ramulator_dataflow="defa", quiet=True),
    NasOptions(data=Path("d"), checkpoint=Path("c.pth"), exhaustive=True, threads=1,
               workers=0, fixed_point_images=0),
], ids=lambda o: type(o).__name__)
def test_options_survive_their_command_line(options):
    """Each flag is declared once, on the options: parsing the flags that
    options_argv writes gives the same options back."""
    parser = argparse.ArgumentParser()
    add_options(parser, type(options))
    argv = options_argv(options)
    assert argv                                   # every example leaves a default
    assert options_from_args(type(options), parser.parse_args(argv)) == options
    assert options_from_args(type(options), parser.parse_args([])) == type(options)()


def test_bad_options_name_their_flag():
    with pytest.raises(ConfigError, match="--queries"):
        SimOptions(queries=0)
    with pytest.raises(ConfigError, match="--backpressure"):
        SimOptions(backpressure=1.0)
    with pytest.raises(ConfigError, match="--threads"):
        NasOptions(threads=0)
    with pytest.raises(ConfigError, match="--seed"):
        TrafficOptions(seed=-1)
    for minutes in (0, -5.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--ecp5-minutes = .* must be a finite number "
                                              "of minutes > 0"):
            VerilogOptions(ecp5_minutes=minutes)


def test_negated_switch_and_default_help():
    @dataclass(frozen=True)
    class _Opts:
        fast: bool = option(True, "skip the slow part", negate=True)
        n: int = option(3, "how many")

    parser = argparse.ArgumentParser()
    add_options(parser, _Opts)
    assert "(default: 3)" in parser.format_help() and "--no-fast" in parser.format_help()
    assert options_from_args(_Opts, parser.parse_args(["--no-fast"])) == _Opts(fast=False)
    assert options_argv(_Opts(fast=False, n=4)) == ["--no-fast", "--n", "4"]
