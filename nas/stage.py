"""The slicing-search stage: accuracy against on-chip resources, one chosen sub-net.

:func:`run` writes ``OUT/pareto.json`` (the whole search), ``OUT/pareto.png``,
``OUT/pareto.md``, ``OUT/chosen.toml`` (the input configuration with ``slicing`` replaced
by the chosen sub-net) and ``OUT/nas.json`` (:class:`NasReport`, what the flow reads).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defslice.cliargs import option, require
from defslice.config import Config
from defslice.errors import ConfigError
from defslice.records import Record

__all__ = ["ChosenSlicing", "NasAccuracy", "NasOptions", "NasReport", "run"]


@dataclass(frozen=True)
class NasOptions:
    """How the search runs (the search itself is configured by the ``nas`` section)."""

    data: Path | None = option(None, "imagefolder: validation folder in ImageNet layout")
    checkpoint: Path | None = option(None, "imagefolder: DAT-format checkpoint")
    finetune_data: Path | None = option(
        None, "imagefolder: folder for supernet fine-tuning (optional)")
    exhaustive: bool = option(True, "skip the exhaustive ground truth (no hypervolume ratio)",
                              negate=True)
    threads: int = option(2, "PyTorch CPU threads")
    quiet: bool = option(False, "no progress bars")

    def __post_init__(self) -> None:
        require(self.threads >= 1, NasOptions, "threads", self.threads, "an integer >= 1")


@dataclass(frozen=True)
class ChosenSlicing(Record):
    """The chosen sub-net: slice size and overlap (pixels), its accuracy, its resource
    (the ``nas.resource`` objective's unit) and RAMB18 blocks of window buffers."""

    slice_h: int
    slice_w: int
    overlap: int
    accuracy: float
    resource: float
    bram18: int


@dataclass(frozen=True)
class NasAccuracy(Record):
    """Top-1 accuracy of the unsliced model and of the chosen sub-net, before and after
    the supernet's fine-tuning, in [0, 1]."""

    unsliced_before_finetune: float
    unsliced_after_finetune: float
    chosen_before_finetune: float
    chosen_after_finetune: float
    chosen_drop_vs_unsliced: float


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
        Sub-nets evaluated per search (``evolutionary``, ``nsga2``, ``exhaustive``).
    hypervolume_ratio : float or None
        Hypervolume of Algorithm 1's front over the exhaustive front's (``None``:
        exhaustive search skipped).
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
    hypervolume_ratio: float | None
    pareto: Path
    chosen_config: Path
    seconds: float

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
        return (f"nas: chosen Hs={c.slice_h} Ws={c.slice_w} O={c.overlap}: accuracy "
                f"{100 * a.chosen_after_finetune:.2f}% (unsliced "
                f"{100 * a.unsliced_after_finetune:.2f}%), {c.bram18} RAMB18; "
                f"{self.evaluations.get('evolutionary')} evaluations, hypervolume ratio "
                f"{ratio}")


def _objective(cfg: Config, options: NasOptions) -> tuple[Any, dict]:
    from defslice.nas.evaluators import digits_objective, imagefolder_objective

    if cfg.nas.evaluator == "digits":
        return digits_objective(cfg, progress=not options.quiet)
    if options.data is None or options.checkpoint is None:
        raise ConfigError("nas.evaluator", "imagefolder", "used with --data and --checkpoint")
    acc, meta = imagefolder_objective(cfg, options.data, options.checkpoint,
                                      finetune_dir=options.finetune_data)
    print(f"nas: checkpoint: {meta['load']}")
    return acc, meta


def run(cfg: Config, out: Path, options: NasOptions) -> NasReport:
    """Search ``cfg``'s slicing space; write the files above."""
    from defslice.nas._torch import require_torch

    require_torch().set_num_threads(options.threads)
    from defslice.nas.pipeline import run_search
    from defslice.nas.report import write_outputs

    t0 = time.perf_counter()
    acc, meta = _objective(cfg, options)
    search = run_search(cfg, acc, meta, exhaustive=options.exhaustive,
                        progress=not options.quiet)
    search["seconds"]["total"] = time.perf_counter() - t0
    paths = write_outputs(cfg, search, out)
    hv = search["hypervolume"]
    report = NasReport(
        config=cfg.name, evaluator=cfg.nas.evaluator,
        chosen=ChosenSlicing.from_json({k: search["chosen"][k] for k in (
            "slice_h", "slice_w", "overlap", "accuracy", "resource", "bram18")}),
        accuracy=NasAccuracy.from_json(search["accuracy"]),
        evaluations=dict(search["evaluations"]),
        hypervolume_ratio=hv.get("evolutionary_ratio") if hv else None,
        pareto=paths["json"], chosen_config=paths["toml"],
        seconds=search["seconds"]["total"])
    report.save(Path(out) / "nas.json")
    return report
