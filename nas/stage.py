"""The slicing-search stage: accuracy against on-chip resources, one chosen sub-net.

:func:`run` writes ``OUT/pareto.json`` (the whole search), ``OUT/pareto.png``,
``OUT/hypervolume.png``, ``OUT/pareto.md``, ``OUT/chosen.toml`` (the input configuration
with ``slicing`` replaced by the chosen sub-net), ``OUT/evaluations-<key>.jsonl`` (every
sub-net scored, appended as each finishes: a second run with the same weights resumes
from it) and ``OUT/nas.json`` (:class:`NasReport`, what the flow reads).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defslice.cliargs import option, require
from defslice.config import Config
from defslice.errors import ConfigError
from defslice.records import Record, omitted

__all__ = ["ChosenSlicing", "HardwareAccuracy", "Measured", "NasAccuracy", "NasHypervolume",
           "NasOptions", "NasReport", "SeedStudySummary", "run"]


@dataclass(frozen=True)
class NasOptions:
    """How the search runs (the search itself is configured by the ``nas`` section)."""

    data: Path | None = option(None, "imagefolder: validation folder in ImageNet layout")
    checkpoint: Path | None = option(None, "imagefolder: DAT-format checkpoint")
    finetune_data: Path | None = option(
        None, "imagefolder: folder for supernet fine-tuning (optional)")
    exhaustive: bool = option(False, "also score every sub-net (the ground truth: hypervolume "
                              "ratios and the seed study); resumable, and reused by later runs")
    threads: int = option(2, "PyTorch CPU threads of training and fine-tuning")
    workers: int = option(2, "processes scoring sub-nets, one thread each (0: in this process)")
    test_images: int | None = option(None, "test images of the final figures (default: all)")
    fixed_point_images: int | None = option(
        None, "test images of the bit-exact fixed-point accuracy (default: all; 0: skip)")
    quiet: bool = option(False, "no progress bars")

    def __post_init__(self) -> None:
        require(self.threads >= 1, NasOptions, "threads", self.threads, "an integer >= 1")
        require(self.workers >= 0, NasOptions, "workers", self.workers, "an integer >= 0")
        require(self.test_images is None or self.test_images >= 1, NasOptions, "test_images",
                self.test_images, "an integer >= 1")
        require(self.fixed_point_images is None or self.fixed_point_images >= 0, NasOptions,
                "fixed_point_images", self.fixed_point_images, "an integer >= 0")


@dataclass(frozen=True)
class Measured(Record):
    """A top-1 accuracy, or a difference of two, in [0, 1] with its standard error."""

    value: float
    se: float

    @classmethod
    def of(cls, figure: dict) -> Measured:
        """From a ``{"accuracy", "se"}`` or a paired ``{"diff", "se"}`` figure."""
        return cls(float(figure["accuracy"] if "accuracy" in figure else figure["diff"]),
                   float(figure["se"]))


@dataclass(frozen=True)
class ChosenSlicing(Record):
    """The chosen sub-net: slice size and overlap (pixels), its validation accuracy, its
    resource (the ``nas.resource`` objective's unit), RAMB18 blocks of window buffers and
    eq. 3 bits; ``within_drop``: whether it is within ``max_drop`` (a fraction) of the
    unsliced model's validation accuracy (when not, no front member was, and it is the
    most accurate member); ``note``: that in one sentence."""

    slice_h: int
    slice_w: int
    overlap: int
    accuracy: float
    resource: float
    bram18: int
    eq3_bits: float
    within_drop: bool
    max_drop: float
    note: str


@dataclass(frozen=True)
class NasAccuracy(Record):
    """Top-1 accuracy of the unsliced model and of the chosen sub-net, before and after
    the supernet's fine-tuning, with standard errors, on ``images`` images of ``dataset``
    (``"test"``, or ``"validation"`` for objectives without a test set);
    ``chosen_drop_vs_unsliced`` is the paired drop after fine-tuning."""

    dataset: str
    images: int
    unsliced_before_finetune: Measured
    unsliced_after_finetune: Measured
    chosen_before_finetune: Measured
    chosen_after_finetune: Measured
    chosen_drop_vs_unsliced: Measured


@dataclass(frozen=True)
class HardwareAccuracy(Record):
    """The fine-tuned classifier at the chosen slicing with its attention computed by the
    bit-exact fixed-point layer, beside the float layer on the same ``images`` images:
    accuracies, the paired difference (fixed point - float) and the share of images with
    the same predicted class."""

    images: int
    float_layer: Measured
    fixed_point: Measured
    difference: Measured
    agreement: float


@dataclass(frozen=True)
class SeedStudySummary(Record):
    """One search replayed over ``seeds`` seeds on the exhaustive table: its mean and
    minimum hypervolume ratio at Alg. 1's budget (``budget`` distinct evaluations on
    average), the seeds reaching 0.99 there, and the distinct evaluations to 0.99 of the
    exhaustive hypervolume (``reached`` seeds within ``cap``; median and 90th percentile,
    ``None`` when the percentile falls on a seed that did not get there)."""

    seeds: int
    budget: float
    ratio_mean: float
    ratio_min: float
    at_least_0_99: int
    reached: int
    evaluations_median: float | None
    evaluations_p90: float | None
    cap: int

    @classmethod
    def of(cls, study: dict, name: str) -> SeedStudySummary:
        """Search ``name``'s row of a :func:`~defslice.nas.replay.seed_study` result."""
        s = study["summary"][name]
        to = s["evaluations_to_0.99"]
        return cls(len(study["seeds"]), s["evaluations_mean"], s["mean"], s["min"],
                   s["at_least_0.99"], to["reached"], to["median"], to["p90"], study["cap"])

    def evaluations_text(self) -> str:
        """``median / p90`` evaluations to 0.99 (``> cap`` for a seed short of it)."""
        return " / ".join(f"> {self.cap}" if v is None else f"{v:.0f}"
                          for v in (self.evaluations_median, self.evaluations_p90))


@dataclass(frozen=True)
class NasHypervolume(Record):
    """Hypervolume ratios to the exhaustive front's (``ratios``: per search of this run)
    and, per search, the seed study on the exhaustive table (``None`` without it)."""

    ratios: dict[str, float]
    seed_study: dict[str, SeedStudySummary] | None = None


@dataclass(frozen=True)
class NasReport(Record):
    """``nas.json``: what the search chose and how well it did.

    Members
    -------
    config, evaluator
        Configuration name and the accuracy evaluator (``nas.evaluator``).
    chosen : ChosenSlicing
    accuracy : NasAccuracy
    evaluations : dict
        Sub-nets evaluated per search (``evolutionary``, ``nsga2``, ``random``,
        ``exhaustive``).
    hypervolume : NasHypervolume or None
        ``None``: the exhaustive table was not computed (no ratios).
    hardware : HardwareAccuracy or None
        ``None``: not measured (``--fixed-point-images 0``, or a model without it).
    pareto, chosen_config : Path
        ``pareto.json`` (the whole search) and ``chosen.toml``.
    seconds : float
        Wall time of the stage (s).
    """

    config: str
    evaluator: str
    chosen: ChosenSlicing
    accuracy: NasAccuracy
    evaluations: dict[str, int]
    pareto: Path
    chosen_config: Path
    seconds: float
    hypervolume: NasHypervolume | None = omitted()
    hardware: HardwareAccuracy | None = omitted()

    @property
    def hypervolume_ratio(self) -> float | None:
        """Hypervolume of Alg. 1's front over the exhaustive front's (``None``: no
        exhaustive table)."""
        return None if self.hypervolume is None else self.hypervolume.ratios.get("evolutionary")

    def apply(self, cfg: Config) -> Config:
        """``cfg`` with its slicing replaced by the chosen sub-net."""
        from defslice.nas.resources import with_subnet
        from defslice.nas.space import SubNet

        c = self.chosen
        return with_subnet(cfg, SubNet(c.slice_h, c.slice_w, c.overlap))

    def summary_line(self) -> str:
        """One line for the terminal."""
        c, a = self.chosen, self.accuracy
        ratio = "n/a" if self.hypervolume_ratio is None else f"{self.hypervolume_ratio:.4f}"
        return (f"nas: chosen Hs={c.slice_h} Ws={c.slice_w} O={c.overlap}: {a.dataset} "
                f"accuracy {100 * a.chosen_after_finetune.value:.2f}% (unsliced "
                f"{100 * a.unsliced_after_finetune.value:.2f}%), {c.bram18} RAMB18; "
                f"{self.evaluations.get('evolutionary')} evaluations, hypervolume ratio "
                f"{ratio}")


def _objective(cfg: Config, options: NasOptions) -> tuple[Any, dict, Any]:
    """(objective, metadata, test set or ``None``) of ``cfg.nas.evaluator``."""
    from defslice.nas.evaluators import digits_objective, fashion_objective, imagefolder_objective

    progress = not options.quiet
    if cfg.nas.evaluator == "fashion":
        acc, meta, test = fashion_objective(cfg, progress=progress)
        if options.test_images is not None:
            test = type(test)(test.images[:options.test_images],
                              test.labels[:options.test_images], test.classes)
            meta["test_images"] = len(test)
        return acc, meta, test
    if cfg.nas.evaluator == "digits":
        return (*digits_objective(cfg, progress=progress), None)
    if options.data is None or options.checkpoint is None:
        raise ConfigError("nas.evaluator", "imagefolder", "used with --data and --checkpoint")
    acc, meta = imagefolder_objective(cfg, options.data, options.checkpoint,
                                      finetune_dir=options.finetune_data)
    print(f"nas: checkpoint: {meta['load']}")
    return acc, meta, None


def _accuracy(search: dict) -> NasAccuracy:
    """The headline figures: test when there is a test set, else validation."""
    name = "test" if "test" in search["figures"] else "validation"
    f = search["figures"][name]
    return NasAccuracy(name, int(f["images"]), *(Measured.of(f[k]) for k in (
        "unsliced_before", "unsliced_after", "chosen_before", "chosen_after", "drop_after")))


def _hardware(search: dict) -> HardwareAccuracy | None:
    f = search["figures"].get("test") or search["figures"]["validation"]
    d = f.get("fixed_point_detail")
    if d is None:
        return None
    return HardwareAccuracy(int(d["images"]), Measured.of(d["float"]),
                            Measured.of(d["fixed_point"]), Measured.of(d["difference"]),
                            float(d["agreement"]))


def _hypervolume(search: dict) -> NasHypervolume | None:
    hv, study = search["hypervolume"], search.get("seed_study")
    ratios = {k.removesuffix("_ratio"): float(v) for k, v in hv.items() if k.endswith("_ratio")}
    if not ratios:
        return None
    return NasHypervolume(ratios, None if study is None else {
        name: SeedStudySummary.of(study, name) for name in study["summary"]})


def report_of(cfg: Config, search: dict, paths: dict[str, Path]) -> NasReport:
    """The typed report of a :func:`~defslice.nas.pipeline.run_search` result whose
    files are ``paths`` (:func:`~defslice.nas.report.write_outputs`)."""
    c, choice = search["chosen"], search["choice"]
    return NasReport(
        config=cfg.name, evaluator=cfg.nas.evaluator,
        chosen=ChosenSlicing(c["slice_h"], c["slice_w"], c["overlap"], c["accuracy"],
                             c["resource"], c["bram18"], c["eq3_bits"],
                             choice["within_drop"], choice["max_drop"], choice["note"]),
        accuracy=_accuracy(search), evaluations=dict(search["evaluations"]),
        pareto=paths["json"], chosen_config=paths["toml"],
        seconds=search["seconds"]["total"], hypervolume=_hypervolume(search),
        hardware=_hardware(search))


def run(cfg: Config, out: Path, options: NasOptions) -> NasReport:
    """Search ``cfg``'s slicing space; write the files above."""
    from defslice.nas._torch import require_torch

    require_torch().set_num_threads(options.threads)
    from defslice.nas.pipeline import SearchSetup, run_search
    from defslice.nas.report import write_outputs

    t0 = time.perf_counter()
    acc, meta, test = _objective(cfg, options)
    setup = SearchSetup(acc, meta, test, Path(out), options.workers, options.exhaustive,
                        not options.quiet, options.fixed_point_images)
    search = run_search(cfg, setup)
    search["seconds"]["total"] = time.perf_counter() - t0
    paths = write_outputs(cfg, search, out)
    report = report_of(cfg, search, paths)
    report.save(Path(out) / "nas.json")
    return report
