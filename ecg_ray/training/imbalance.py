"""Class-imbalance strategies: the sweep's ``imbalance`` axis.

This module (plain torch / numpy, no Ray) owns ``IMBALANCE_NAMES`` and what each means:
- ``none``: plain cross-entropy;
- ``weighted``: cross-entropy with class weights, ``inverse`` frequency or its
  square root (``sqrt``, the gentler default: a rare class is not over-called);
- ``sampler``: plain cross-entropy on a class-balanced stream (the data feed
  resamples each chunk of records, ``training.feed``);
- ``focal``: focal loss, by default with the class weights as alpha.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ecg_ray import CLASSES

IMBALANCE_NAMES: tuple[str, ...] = ("none", "weighted", "sampler", "focal")
#: How class counts become class weights (``class_weighting`` config field).
CLASS_WEIGHTINGS: tuple[str, ...] = ("inverse", "sqrt")


def class_weights(counts: Sequence[int] | Mapping[str, int] | np.ndarray, how: str = "inverse") -> np.ndarray:
    """Inverse-frequency weights ``w_c = n / (K * n_c)`` (float64, one per class);
    with ``how="sqrt"`` their square roots, rescaled so the sample-weighted mean is 1 again.

    ``counts`` is per class in class order, or a ``{class name: count}`` mapping (missing
    names count 0). ``K`` is the number of classes *present*, so the sample-weighted mean
    ``sum_c n_c w_c / n`` is exactly 1. Absent classes get weight 0, with a warning.
    """
    if isinstance(counts, Mapping):
        unknown = set(counts) - set(CLASSES)
        if unknown:
            raise ValueError(f"unknown class names {sorted(unknown)}; valid: {CLASSES}")
        counts = [counts.get(c, 0) for c in CLASSES]
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() == 0:
        raise ValueError(f"counts must be non-negative per-class counts with a positive total, got {counts}")
    present = counts > 0
    if not present.all():
        warnings.warn(f"classes {np.flatnonzero(~present).tolist()} have no samples: weight 0", stacklevel=2)
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    if how not in CLASS_WEIGHTINGS:
        raise ValueError(f"unknown class weighting {how!r}; valid: {CLASS_WEIGHTINGS}")
    if how == "sqrt":
        weights = np.sqrt(weights)
        weights *= counts.sum() / (counts * weights).sum()
    return weights


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``alpha_y * (1 - p_y)**gamma * -log p_y``.

    ``reduction="mean"`` divides by ``sum_i alpha_{y_i}`` when ``alpha`` is given
    (by the batch size otherwise) — the same normalisation as
    ``F.cross_entropy(weight=alpha)``, so ``gamma=0`` *is* (weighted) cross-entropy.
    """

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | Sequence[float] | None = None,
                 reduction: str = "mean"):
        super().__init__()
        if gamma < 0 or reduction not in ("mean", "sum", "none"):
            raise ValueError(f"need gamma >= 0 and reduction in mean/sum/none, got {gamma}, {reduction!r}")
        self.gamma, self.reduction = float(gamma), reduction
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=-1).gather(-1, target[:, None]).squeeze(-1)
        # 1 - p_y via expm1 (accurate near p_y = 1), kept > 0 so gamma < 1 has finite gradients
        loss = -((-torch.expm1(logp)).clamp(min=torch.finfo(logp.dtype).tiny) ** self.gamma) * logp
        weight = self.alpha[target] if self.alpha is not None else torch.ones_like(loss)
        loss = loss * weight
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.sum() / weight.sum()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={None if self.alpha is None else self.alpha.tolist()}"


def build_loss(imbalance: str, class_counts=None, gamma: float = 2.0, focal_alpha: bool = True,
               weighting: str = "inverse") -> nn.Module:
    """The training loss for an ``imbalance`` strategy (see module docstring).
    ``class_counts`` (as for ``class_weights``) is needed by ``weighted`` and by
    ``focal`` with ``focal_alpha``."""
    if imbalance not in IMBALANCE_NAMES:
        raise ValueError(f"unknown imbalance strategy {imbalance!r}; valid: {IMBALANCE_NAMES}")
    needs_weights = imbalance == "weighted" or (imbalance == "focal" and focal_alpha)
    if needs_weights and class_counts is None:
        raise ValueError(f"imbalance={imbalance!r} needs class_counts")
    weights = (torch.as_tensor(class_weights(class_counts, weighting), dtype=torch.float32)
               if needs_weights else None)
    if imbalance == "focal":
        return FocalLoss(gamma=gamma, alpha=weights)
    return nn.CrossEntropyLoss(weight=weights)  # none / sampler: weights is None

