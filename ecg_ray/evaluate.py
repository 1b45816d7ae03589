"""Checkpoint → recording-level metrics and predictions on a records folder (no Ray).

``evaluate_folder`` runs the model's *own* preprocessing (from the checkpoint
or export) on every record of a PhysioNet/CinC folder, or on the labelled
30-s windows of MIT-BIH records (``source="mitbih"``), feeds the overlapping
windows to the model in batches, aggregates each record's window logits with
the model's own rule and temperature (``metrics.record_probabilities``) and
scores the records with ``training.metrics``. Bad records are skipped and counted by
reason (each one named on stderr); a folder that cannot be used at all raises
``DataError``.

The returned dict is the ``ecg-ray evaluate`` JSON contract: headline
``f1_cinc`` (mean F1 of N, A, O), ``f1_macro``, ``f1_weighted``, ``accuracy``,
``auroc_macro``, and per class (``N``, ``A``, ``O``, ``noisy``) ``f1_*``,
``auroc_*``, ``sens_*``, ``spec_*``, ``ppv_*``; ``ece`` (expected calibration
error, 15 bins), ``ci`` (bootstrap 95 % intervals over records — over patients
for MIT-BIH — of ``f1_cinc`` and each class's F1), ``f1_by_length`` (per
record-length band), ``temperature`` and ``aggregate`` used; ``confusion`` (4×4,
rows true, columns predicted, class order), ``n_records``, ``n_skipped``,
``skipped`` (reason → count), ``segment`` (the same metrics per window), and
where it came from.
Undefined values (e.g. AUROC of a class absent from the labels) are ``null``.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import CLASS_KEYS, CLASS_TO_INDEX, CLASSES
from .artifacts import json_safe, log_stderr
from .data.errors import DataError, RecordError
from .data.sources import DEFAULT_SOURCE, get_source
from .predict import Predictor, load_predictor
from .training.calibration import expected_calibration_error
from .training.metrics import (bootstrap_f1, classification_metrics, confusion, f1_by_length, record_probabilities,
                               softmax)

PREDICTION_FIELDS = ["record", "label", *[f"p_{k}" for k in CLASS_KEYS], "predicted", "n_segments"]


def _items(src, data_dir: Path, labels_path: Path | None, window_s: float, wanted: set[str] | None, skip):
    """Yield ``(item id, label, signal, fs)`` for the labelled items (records, or
    MIT-BIH windows) of a records folder, ``wanted`` only when given."""
    names = src.list_records(data_dir)
    _, labels = src.labels(data_dir, labels_path)
    if wanted is not None:
        records = {src.group_of(w) for w in wanted}
        names = [n for n in names if n in records]
    seen = set()
    for name in names:
        try:
            items, skipped = src.read(data_dir, name, labels, window_s)
        except RecordError as e:
            skip(e)
            seen.add(name)  # a CinC record that is there but unusable is not also "not in the folder"
            continue
        for reason, count in skipped.items():
            for _ in range(count):
                skip(RecordError(name, reason), quiet=True)
        for item_id, label, signal, fs in items:
            if wanted is None or item_id in wanted:
                seen.add(item_id)
                yield item_id, label, signal, fs
    for name in sorted((wanted or set()) - seen):
        skip(RecordError(name, "listed in split but not in the folder", str(data_dir)))


def evaluate_folder(checkpoint, data_dir: Path, labels: Path | None = None, source: str = DEFAULT_SOURCE,
                    batch_size: int = 256, records: list[str] | None = None, window_s: float = 30.0,
                    return_predictions: bool = False, reliability: Path | None = None, log=log_stderr):
    """Score a model on a records folder; returns the JSON dict (see module doc),
    or ``(dict, predictions)`` with ``return_predictions`` — one dict per record
    with ``record, label, p_N, p_A, p_O, p_noisy, predicted, n_segments``.

    ``checkpoint`` is anything ``load_predictor`` takes, or a loaded ``Predictor``;
    ``records`` restricts scoring to those record (or window) ids; ``reliability``
    writes a reliability diagram there (uncalibrated vs the model's temperature).
    """
    src = get_source(source)
    t0 = time.perf_counter()
    predictor = checkpoint if isinstance(checkpoint, Predictor) else load_predictor(checkpoint, batch_size)
    predictor.batch_size = batch_size
    data_dir = Path(data_dir)
    wanted = set(records) if records is not None else None

    skipped: Counter = Counter()

    def skip(e: RecordError, quiet: bool = False) -> None:
        skipped[e.reason] += 1
        if not quiet:
            log(f"evaluate: skipped {e}")

    # Segments of many records are pooled into batches; each record keeps its slice.
    scored, seg_logits, pending = [], [], []  # scored: (name, class index, segments, seconds) per record
    for name, label, signal, fs in _items(src, data_dir, labels, window_s, wanted, skip):
        try:
            segments, _ = predictor.segments(signal, fs, name)
        except RecordError as e:
            skip(e)
            continue
        scored.append((name, CLASS_TO_INDEX[label], len(segments), len(signal) / fs))
        pending.append(segments)
        if sum(map(len, pending)) >= batch_size:
            seg_logits.append(predictor.logits(np.concatenate(pending)))
            pending = []
        if len(scored) % 1000 == 0:
            log(f"evaluate: {len(scored)} records scored ({time.perf_counter() - t0:.0f} s)")
    if pending:
        seg_logits.append(predictor.logits(np.concatenate(pending)))
    if not scored:
        raise DataError(f"no usable records in {data_dir} ({sum(skipped.values())} skipped)")
    names, ys, n_segs, seconds = zip(*scored)

    logits_seg = np.concatenate(seg_logits)
    codes = np.repeat(np.arange(len(names)), n_segs)
    probs = predictor.record_probabilities(logits_seg, codes, len(names))
    y = np.asarray(ys, dtype=np.int64)
    clusters = [src.group_of(n) for n in names] if src.grouped else None
    raw = record_probabilities(logits_seg, codes, len(names), predictor.aggregate, 1.0)  # no temperature

    result = {
        **classification_metrics(y, probs),
        "ece": expected_calibration_error(y, probs),
        "ece_uncalibrated": expected_calibration_error(y, raw),
        "ci": bootstrap_f1(y, probs, clusters=clusters),
        "ci_method": ("percentile bootstrap, 2000 resamples of " + ("patients" if clusters else "records")),
        "f1_by_length": f1_by_length(y, probs, seconds),
        "temperature": predictor.temperature,
        "aggregate": predictor.aggregate,
        "confusion": confusion(y, probs.argmax(axis=1)),
        "classes": list(CLASSES),
        "n_records": len(names),
        "n_segments": int(sum(n_segs)),
        "n_skipped": int(sum(skipped.values())),
        "skipped": dict(skipped),
        "records_per_class": {c: int((y == i).sum()) for i, c in enumerate(CLASSES)},
        "segment": classification_metrics(np.repeat(y, n_segs), softmax(logits_seg, predictor.temperature)),
        "checkpoint": predictor.source,
        "model": predictor.info.get("model"),
        "preprocess_hash": predictor.preprocess.hash,
        "data_dir": str(data_dir.resolve()),
        "source": source,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if reliability is not None:
        from .plots import reliability_figure, save

        save(reliability_figure(y, {"temperature 1": raw, f"temperature {predictor.temperature:.2f}": probs},
                                title=f"Reliability, {len(names)} records"), reliability)
        result["reliability_figure"] = str(reliability)
    if skipped:
        log("evaluate: skipped " + ", ".join(f"{n} {r}" for r, n in skipped.most_common()))
    result = json_safe(result)
    if not return_predictions:
        return result
    return result, [{"record": n, "label": CLASSES[t], **{f"p_{k}": float(p) for k, p in zip(CLASS_KEYS, pr)},
                     "predicted": CLASSES[int(pr.argmax())], "n_segments": k}
                    for n, t, pr, k in zip(names, ys, probs, n_segs)]


def write_predictions(path: Path, predictions: list[dict]) -> None:
    """``record,label,p_N,p_A,p_O,p_noisy,predicted,n_segments`` CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(predictions, columns=PREDICTION_FIELDS)
    frame.to_csv(path, index=False, float_format="%.6f", lineterminator="\r\n")  # \r\n: the csv module's default


def log_test_scoring(path: Path, result: dict, command: str) -> None:
    """Append one line per scoring of a test split (date, checkpoint, command, F1 with its CI):
    the record of how often the test split was looked at."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lo, hi = (result.get("ci") or {}).get("f1_cinc", [None, None])
    row = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "checkpoint": result.get("checkpoint"),
           "command": command, "n_records": result.get("n_records"), "f1_cinc": f"{result['f1_cinc']:.4f}",
           "f1_cinc_ci_lo": "" if lo is None else f"{lo:.4f}", "f1_cinc_ci_hi": "" if hi is None else f"{hi:.4f}"}
    pd.DataFrame([row]).to_csv(path, mode="a", header=not path.is_file(), index=False, lineterminator="\r\n")
