"""The slicing paper's published figures, quoted for comparison and never computed."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACCURACY_DROP", "DRAM_FIG4", "TOP1_CHOSEN_FINETUNED", "TOP1_UNSLICED", "Figure"]


@dataclass(frozen=True)
class Figure:
    """One published figure: a fraction, and whether the paper gives it only roughly."""

    value: float
    approx: bool = False

    @property
    def text(self) -> str:
        """As the paper states it, e.g. ``18%``, ``~37%``, ``84.6%``."""
        return f"{'~' if self.approx else ''}{100 * self.value:.4g}%"


#: DRAM accesses normalized to the layer-by-layer baseline (Fig. 4, section IV-D), by
#: dataflow name (:mod:`defslice.model.traffic`); DEFA's bar is read off the figure.
DRAM_FIG4: dict[str, Figure] = {"layer_by_layer": Figure(1.0), "defa": Figure(0.37, True),
                                "sliced": Figure(0.18)}

#: ImageNet-1K top-1 of the unsliced DAT (section IV).
TOP1_UNSLICED = Figure(0.846)
#: Top-1 of the chosen sliced sub-net after 4 epochs of fine-tuning (section IV).
TOP1_CHOSEN_FINETUNED = Figure(0.847)
#: Top-1 drop of the chosen point against the paper's 84.9% baseline (section IV).
ACCURACY_DROP = Figure(0.002)
