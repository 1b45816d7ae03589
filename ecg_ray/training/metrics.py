"""Evaluation metrics at segment and recording level (scikit-learn, no Ray).

This module owns the metric *names* every stage reads (``ecg_ray.HEADLINE``,
``val_f1_cinc``, is the sweep's headline) and the recording-level aggregation
(``record_probabilities``: a recording's probabilities from its windows' logits,
its prediction their argmax).

Per-class F1 is sklearn's ``2·precision·recall / (precision + recall)``, equal to the
challenge's ``2·TP / (predicted-as-class + truly-class)``; a class neither present nor
predicted has F1 0 (challenge formula 0/0, read as 0). Metric keys use ``CLASS_KEYS``
(``~`` is written ``noisy``). sklearn is imported inside the scoring functions: every
sweep trial's driver and Ray Train controller import this module (through
``TrainConfig``) and never score, and sklearn costs a process about a second to import.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecg_ray import CINC_CLASSES, CLASS_KEYS, CLASSES

LABELS = np.arange(len(CLASSES))
CINC_INDICES = [CLASSES.index(c) for c in CINC_CLASSES]


def _mean_by(codes: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    sums = np.stack([np.bincount(codes, weights=values[:, k], minlength=n_groups)
                     for k in range(values.shape[1])], axis=1)
    return sums / np.bincount(codes, minlength=n_groups)[:, None]


def confusion(y_true, y_pred) -> list[list[int]]:
    """4×4 confusion matrix, rows = true class, columns = predicted, class order."""
    from sklearn.metrics import confusion_matrix  # imported here, not at the top: see module docstring

    return confusion_matrix(y_true, y_pred, labels=LABELS).tolist()


def classification_metrics(y_true, probs, prefix: str = "") -> dict[str, float]:
    """Metrics of argmax predictions (and of ``probs`` for AUROC), keys prefixed.

    ``f1_cinc`` (mean F1 of N, A, O), ``f1_macro``, ``f1_weighted``, ``accuracy``,
    ``auroc_macro`` (one-vs-rest, mean over classes present in ``y_true`` — the same as
    ``roc_auc_score(multi_class="ovr")`` when all are present), and per class k in
    ``CLASS_KEYS``: ``f1_k``, ``auroc_k``, ``sens_k`` (recall), ``spec_k`` (TN / (TN + FP)),
    ``ppv_k`` (precision: TP / predicted-as-k). Undefined values (a class absent, or the
    only class present) are NaN, except F1 (0, see module docstring).
    """
    from sklearn.metrics import (accuracy_score, multilabel_confusion_matrix, precision_recall_fscore_support,
                                 roc_auc_score)

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(1)
    ppv, sens, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=np.nan)
    f1 = np.nan_to_num(f1)  # NaN only for a class neither present nor predicted: 0, see module docstring
    (tn, fp), _ = multilabel_confusion_matrix(y_true, y_pred, labels=LABELS).transpose(1, 2, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = tn / (tn + fp)
    auroc = np.array([roc_auc_score(y_true == k, probs[:, k]) if 0 < (y_true == k).sum() < y_true.size
                      else np.nan for k in LABELS])
    out = {
        "f1_cinc": float(f1[CINC_INDICES].mean()),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float(np.average(f1, weights=support)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "auroc_macro": float(np.nanmean(auroc)) if np.isfinite(auroc).any() else float("nan"),
    }
    for name, values in (("f1", f1), ("auroc", auroc), ("sens", sens), ("spec", spec), ("ppv", ppv)):
        out.update({f"{name}_{key}": float(v) for key, v in zip(CLASS_KEYS, values)})
    return {prefix + k: v for k, v in out.items()}


# -- whole-record scoring: windows → one probability vector per record --------------------------

#: How a record's window outputs become its probabilities (``aggregate`` config field).
AGGREGATES: tuple[str, ...] = ("mean_prob", "mean_logit")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    from scipy import special  # imported here, like sklearn (module docstring): a quarter second

    return special.softmax(np.asarray(logits, dtype=np.float64) / float(temperature), axis=1)


def record_probabilities(window_logits: np.ndarray, codes: np.ndarray, n_records: int,
                         aggregate: str = "mean_prob", temperature: float = 1.0) -> np.ndarray:
    """``(n_records, K)`` probabilities from the logits of every window, ``codes``
    giving each window's record (0..n_records-1): ``mean_prob`` averages the
    windows' softmax(logits / T); ``mean_logit`` takes softmax of the mean logit / T.
    The same function serves validation in training, ``evaluate`` and ``predict``."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; choose from {', '.join(AGGREGATES)}")
    codes = np.asarray(codes, dtype=np.int64)
    if aggregate == "mean_prob":
        return _mean_by(codes, n_records, softmax(window_logits, temperature))
    return softmax(_mean_by(codes, n_records, window_logits), temperature)


def score_records(y_record, window_logits, codes, aggregate: str, temperature: float = 1.0,
                  prefix: str = "val_") -> dict:
    """Recording-level metrics (headline ``{prefix}f1_cinc``), window-level ones
    under ``{prefix}seg_`` and the record-level NLL as ``{prefix}loss``."""
    probs = record_probabilities(window_logits, codes, len(y_record), aggregate, temperature)
    y_windows = np.asarray(y_record)[codes]
    metrics = {**classification_metrics(y_windows, softmax(window_logits, temperature), prefix + "seg_"),
               **classification_metrics(y_record, probs, prefix)}
    metrics[prefix + "loss"] = mean_nll(y_record, probs)
    return metrics


def mean_nll(y_true, probs) -> float:
    """Mean negative log-likelihood of the true classes (probabilities clipped at 1e-12)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    return float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None)).mean())


# -- uncertainty: bootstrap over records ----------------------------------------------------------

def _f1_per_class(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F1 of each class, rows = resamples: ``2 TP / (true + predicted)`` (0 when both are 0)."""
    true, pred = y_true[..., None] == LABELS, y_pred[..., None] == LABELS
    tp, total = (true & pred).sum(-2), true.sum(-2) + pred.sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * tp / total, 0.0)


def bootstrap_f1(y_true, probs, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
                 clusters=None) -> dict[str, list[float]]:
    """Percentile bootstrap 95 % CIs over records for ``f1_cinc`` and each class's
    F1: ``{"f1_cinc": [lo, hi], "f1_N": [lo, hi], ...}``. With ``clusters`` (e.g.
    the patient of each MIT-BIH window) whole clusters are resampled."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(probs).argmax(1)
    rng = np.random.default_rng(seed)
    if clusters is None:
        idx = rng.integers(0, len(y_true), size=(n_boot, len(y_true)))
        f1 = _f1_per_class(y_true[idx], y_pred[idx])
    else:
        groups = pd.factorize(np.asarray(clusters))[0]
        members = [np.flatnonzero(groups == g) for g in range(groups.max() + 1)]
        f1 = np.empty((n_boot, len(CLASSES)))
        for b in range(n_boot):  # one resample at a time: its records are a concatenation of whole clusters
            take = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
            f1[b] = _f1_per_class(y_true[take], y_pred[take])
    alpha = (1 - confidence) / 2
    columns = np.column_stack([f1[:, CINC_INDICES].mean(1), f1])
    bands = np.quantile(columns, [alpha, 1 - alpha], axis=0).T.tolist()
    return dict(zip(["f1_cinc", *(f"f1_{key}" for key in CLASS_KEYS)], bands))


#: Record-length bands (seconds) of ``f1_by_length``.
LENGTH_BANDS = ((0, 20), (20, 40), (40, float("inf")))


def f1_by_length(y_true, probs, seconds) -> list[dict]:
    """``f1_cinc`` and n per record-length band (``LENGTH_BANDS``)."""
    y_true, probs, seconds = np.asarray(y_true), np.asarray(probs), np.asarray(seconds, dtype=float)
    bands = [(lo, hi, (seconds >= lo) & (seconds < hi)) for lo, hi in LENGTH_BANDS]
    return [{"band_s": f"{lo:g}-{hi:g}", "n": int(inside.sum()),
             "f1_cinc": classification_metrics(y_true[inside], probs[inside])["f1_cinc"]}
            for lo, hi, inside in bands if inside.any()]
