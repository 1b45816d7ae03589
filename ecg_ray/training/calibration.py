"""Calibration of record-level probabilities (numpy/scipy, no Ray).

``fit_temperature`` finds the temperature T that minimises the negative log-likelihood
of the record labels when every window's logits are divided by T before the record's
windows are aggregated (``metrics.record_probabilities``): fitted on validation records,
stored in the checkpoint, applied by ``evaluate``/``predict``. ``expected_calibration_error``
and ``reliability_table`` measure the result (top-label confidence in equal-width bins).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from .metrics import mean_nll, record_probabilities


def fit_temperature(window_logits: np.ndarray, codes: np.ndarray, y_record: np.ndarray,
                    aggregate: str = "mean_prob", bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T > 0 minimising record-level NLL (bounded search over log T)."""
    def nll(log_t: float) -> float:
        probs = record_probabilities(window_logits, codes, len(y_record), aggregate, float(np.exp(log_t)))
        return mean_nll(y_record, probs)

    res = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def reliability_table(y_true, probs, n_bins: int = 15) -> pd.DataFrame:
    """Per confidence bin: ``lo, hi, n, confidence`` (mean top probability) and
    ``accuracy`` (share of top-label hits); empty bins are left out."""
    probs = np.asarray(probs, dtype=np.float64)
    conf, hit = probs.max(1), probs.argmax(1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    frame = pd.DataFrame({"bin": which, "conf": conf, "hit": hit.astype(float)})
    table = frame.groupby("bin").agg(n=("conf", "size"), confidence=("conf", "mean"), accuracy=("hit", "mean"))
    table.insert(0, "lo", edges[table.index])
    table.insert(1, "hi", edges[table.index + 1])
    return table.reset_index(drop=True)


def expected_calibration_error(y_true, probs, n_bins: int = 15) -> float:
    """ECE: bin-size-weighted mean of |accuracy − confidence| over ``n_bins``
    equal-width bins of the top-label probability."""
    table = reliability_table(y_true, probs, n_bins)
    if table.empty:
        return float("nan")
    return float((table["n"] * (table["accuracy"] - table["confidence"]).abs()).sum() / table["n"].sum())


def checkpoint_window_logits(payload: dict, prepared, record_ids: list[str], batch_size: int = 256,
                             with_ids: bool = False):
    """``(y_record, window logits, record index of each window)`` of a checkpoint's
    model on ``record_ids`` of a prepared folder, cut with the checkpoint's own
    window config (no Ray); ``with_ids`` puts the record ids (file order) first."""
    from ..data import store
    from ..data.preprocess import PreprocessConfig
    from ..models import batched_logits
    from .checkpoint import model_from_checkpoint

    ids, y, windows, codes = store.record_windows(prepared, record_ids,
                                                  PreprocessConfig.from_dict(payload["preprocess"]))
    logits = batched_logits(model_from_checkpoint(payload), windows, batch_size)
    return (ids, y, logits, codes) if with_ids else (y, logits, codes)


def calibrate_checkpoint(path, prepared, record_ids: list[str], log=print) -> dict:
    """Fit the temperature of the checkpoint file ``path`` on ``record_ids``
    (validation records), store it in the checkpoint (``temperature`` and a
    ``calibration`` summary), and return that summary."""
    import torch

    from .checkpoint import load_checkpoint

    payload = load_checkpoint(path)
    aggregate = payload.get("config", {}).get("aggregate", "mean_prob")
    y, logits, codes = checkpoint_window_logits(payload, prepared, record_ids)
    before = record_probabilities(logits, codes, len(y), aggregate, 1.0)
    t = fit_temperature(logits, codes, y, aggregate)
    after = record_probabilities(logits, codes, len(y), aggregate, t)
    summary = {"temperature": t, "fitted_on": f"{len(y)} validation records", "aggregate": aggregate,
               "val_ece_before": expected_calibration_error(y, before),
               "val_ece_after": expected_calibration_error(y, after)}
    payload.update(temperature=t, calibration=summary)
    torch.save(payload, path)
    log(f"calibration: temperature {t:.3f} fitted on {len(y)} validation records; "
        f"ECE {summary['val_ece_before']:.3f} → {summary['val_ece_after']:.3f}")
    return summary
