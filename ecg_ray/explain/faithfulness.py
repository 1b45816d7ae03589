"""Is the saliency faithful? A deletion test (no Ray).

For each explained record, the filtered signal is split into short windows
(``window_s``, 0.1 s by default); windows are ranked by their mean saliency and
the top ``k`` % are masked (set to 0, the mean of the z-scored signal), the
record is re-segmented and re-scored, and the probability of the explained
class is read. The same is done masking ``k`` % of the windows chosen at random
(``random_repeats`` draws, seeded). Masking whole windows on both sides keeps
the two curves comparable: both delete contiguous pieces of the same size.

A faithful map makes the probability fall faster than random masking does:
``area_difference`` = area under the random curve − area under the saliency
curve (over the masked fraction, trapezoid rule) is then positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data.preprocess import PreprocessConfig, segment
from ..models import batched_logits
from ..training.metrics import softmax
from .saliency import Explanation

FRACTIONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


@dataclass
class DeletionCurves:
    fractions: np.ndarray  # masked fraction of each record
    salient: np.ndarray  # mean target probability, most-salient-first masking
    random: np.ndarray  # mean target probability, random masking
    n_records: int
    per_record: list[dict] = field(default_factory=list)

    @property
    def area_salient(self) -> float:
        return float(np.trapezoid(self.salient, self.fractions))

    @property
    def area_random(self) -> float:
        return float(np.trapezoid(self.random, self.fractions))

    @property
    def area_difference(self) -> float:
        return self.area_random - self.area_salient

    def to_dict(self) -> dict:
        return {"fractions": self.fractions.tolist(), "salient": self.salient.tolist(),
                "random": self.random.tolist(), "n_records": self.n_records,
                "area_salient": self.area_salient, "area_random": self.area_random,
                "area_difference": self.area_difference}


def masked_probability(model: nn.Module, filtered: np.ndarray, cfg: PreprocessConfig, target: int,
                       windows: np.ndarray, device: str | torch.device) -> float:
    """Probability of ``target`` for the record with ``windows`` (rows of [start, end)) zeroed."""
    x = filtered.copy()
    for a, b in windows:
        x[a:b] = 0.0
    cut, _ = segment(x, cfg.segment_length, cfg.hop, True)
    return float(softmax(batched_logits(model, cut, device=device)).mean(axis=0)[target])


def deletion_curves(model: nn.Module, explanations: list[Explanation], cfg: PreprocessConfig,
                    fractions=FRACTIONS, window_s: float = 0.1, random_repeats: int = 3, seed: int = 0,
                    device: str | torch.device = "cpu") -> DeletionCurves:
    """Deletion test over ``explanations`` (of correctly classified records, usually)."""
    if not explanations:
        raise ValueError("deletion test needs at least one explained record")
    fractions = np.asarray(fractions, dtype=float)
    if fractions[0] != 0 or np.any(np.diff(fractions) <= 0) or fractions[-1] > 1:
        raise ValueError(f"fractions must rise from 0 to at most 1, got {fractions.tolist()}")
    model = model.eval()
    rng = np.random.default_rng(seed)
    width = max(1, int(round(window_s * cfg.fs)))
    per_record = []
    for e in explanations:
        starts = np.arange(0, len(e.signal), width)
        bounds = np.stack([starts, np.minimum(starts + width, len(e.signal))], axis=1)
        score = np.array([e.saliency[a:b].mean() for a, b in bounds])
        order = np.argsort(-score, kind="stable")
        s_row, r_row = [], []
        for f in fractions:
            k = int(round(f * len(bounds)))
            s_row.append(masked_probability(model, e.signal, cfg, e.target, bounds[order[:k]], device))
            r_row.append(np.mean([
                masked_probability(model, e.signal, cfg, e.target,
                                   bounds[rng.choice(len(bounds), k, replace=False)], device)
                for _ in range(random_repeats if k else 1)]))
        per_record.append({"record": e.record, "target": e.target_class, "salient": s_row, "random": r_row})
    return DeletionCurves(fractions, np.mean([r["salient"] for r in per_record], axis=0),
                          np.mean([r["random"] for r in per_record], axis=0), len(explanations), per_record)
