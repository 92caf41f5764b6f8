"""The pruning-criteria analysis: are criteria different (similarity), can their scores tell
channels apart (applicability), and do the convolution weights look Gaussian (the
convolution-weight-distribution assumption, CWDA)?

``analyze_criteria(model, example_inputs)`` scores every prunable channel group of the model with
each criterion and returns a :class:`CriteriaAnalysis`; ``.save(out_dir)`` writes
``analysis.json`` and the PNG plots. A *layer* here is a channel group (the channels one layer
width produces, with everything coupled to it), named by its first producer module.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..compiler import analyse
from ..criteria import CRITERIA, ScoringContext, score_groups
from ..errors import PlanError
from ..jsonio import JsonRecord
from .applicability import applicability
from .plots import save_plots
from .cwda import cwda
from .similarity import similarity

log = logging.getLogger(__name__)

DEFAULT_CRITERIA = ("l1", "l2", "fpgm", "bn_scale", "taylor")
FORMAT = "fxprune.criteria-analysis/1"


@dataclass
class CriteriaAnalysis(JsonRecord):
    JSON_WHAT, JSON_ERROR = "criteria analysis", PlanError

    model: str
    sparsity: float
    criteria: list[str]
    skipped: dict[str, str]
    layers: list[dict[str, Any]]
    similarity: dict[str, Any]
    applicability: dict[str, Any]
    cwda: dict[str, Any]
    format: str = FORMAT
    scores: dict[str, list[list[float]]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CriteriaAnalysis:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise PlanError(f"not an fxprune criteria analysis (format {d.get('format') if isinstance(d, dict) else d!r})")
        return cls(**d)

    def summary(self) -> dict[str, Any]:
        """The headline numbers: mean rank correlations and Jaccard overlaps per pair, mean
        applicability per criterion, CWDA pass rates."""
        sim = self.similarity
        return {
            "pairs": {pair: {"spearman": _nanmean(sim["spearman"][pair]), "kendall": _nanmean(sim["kendall"][pair]),
                             "jaccard_layerwise": _nanmean(sim["jaccard_layerwise"][pair]),
                             "jaccard_global": sim["jaccard_global"][pair]} for pair in sim["spearman"]},
            "applicability": {c: {"cv": _nanmean(v["cv"]), "near_threshold": _nanmean(v["near_threshold"])}
                              for c, v in self.applicability["criteria"].items()},
            "cwda_pass_rate": self.cwda["pass_rate"],
        }

    def save(self, out: str | Path) -> list[Path]:
        """Write ``analysis.json`` and the plots into ``out``; returns the files written."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.to_json(out / "analysis.json")
        return [out / "analysis.json", *save_plots(self, out)]


def _nanmean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and not np.isnan(x)]
    return float(np.mean(vals)) if vals else None


def analyze_criteria(model: nn.Module, example_inputs: Any, *, criteria: Sequence[str] = DEFAULT_CRITERIA,
                     sparsity: float = 0.5, calibration_data: Any = None, calibration_loss: Any = None,
                     band: float = 0.05, alpha: float = 0.05, seed: int = 0,
                     leaf_modules: Sequence[type | str] = ()) -> CriteriaAnalysis:
    """Score ``model``'s channel groups with every criterion and analyse the scores.

    Criteria that need data are skipped (and listed in ``skipped``) without
    ``calibration_data``. ``band``: half-width of the near-threshold band, relative to the
    threshold score. ``alpha``: significance level of the normality tests."""
    unknown = [c for c in criteria if c not in CRITERIA]
    if unknown:
        raise PlanError(f"unknown criteria {unknown}; registered: {sorted(CRITERIA)}")
    if not 0 < sparsity < 1:
        raise PlanError(f"sparsity must be in (0, 1), got {sparsity}")
    a = analyse(model, example_inputs, leaf_modules=leaf_modules)
    groups = [g for g in a.cg.groups() if g.prunable >= 2]
    if not groups:
        raise PlanError(f"{type(model).__name__} has no prunable channel group with two or more channels to analyse")
    scores: dict[str, list[np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for name in criteria:
        spec = CRITERIA[name]
        if spec.needs_data and calibration_data is None:
            skipped[name] = "needs calibration data"
            continue
        ctx = ScoringContext(a.cg, parameters=a.parameters, seed=seed, model=model, data=calibration_data,
                             gm=a.traced.eval_gm, loss_fn=calibration_loss)
        by_group = score_groups(name, groups, ctx)
        scores[name] = [by_group[g.index][~g.pinned] for g in groups]
        log.info("scored %d groups with %s", len(groups), name)
    if len(scores) < 1:
        raise PlanError(f"no criterion could be computed ({skipped})")
    comparable = {name: CRITERIA[name].comparable for name in scores}
    layers = [{"key": g.key, "module": g.producer_modules[0] if g.producer_modules else g.key,
               "channels": int(g.prunable)} for g in groups]
    return CriteriaAnalysis(
        model=type(model).__name__, sparsity=sparsity, criteria=list(scores), skipped=skipped, layers=layers,
        similarity=similarity(scores, sparsity, comparable),
        applicability=applicability(scores, sparsity, band),
        cwda=cwda(model, alpha=alpha, seed=seed),
        scores={k: [v.tolist() for v in vs] for k, vs in scores.items()},
    )


__all__ = ["CriteriaAnalysis", "DEFAULT_CRITERIA", "analyze_criteria"]
