"""``ecg-ray export``: a checkpoint → a self-describing release (archive or folder).

Contents (flat)::

    model.pt       the checkpoint, without optimizer/scheduler state (weights-only loadable)
    model.ts       TorchScript of the eval-mode model, input (B, 1, L) float32 → (B, 4) logits;
                   config.json is embedded in it too (torch.jit extra file)
    config.json    model name and hyper-parameters, preprocessing, class order, training config
    metrics.json   the metrics it is released with (an `ecg-ray evaluate` JSON, or the checkpoint's)
    MODEL_CARD.md  data, split, intended use, limits, metrics

The TorchScript is checked against the eager model (``trace_model``) before anything is written.
``ecg-ray predict`` / ``evaluate`` load the archive, the unpacked folder, or ``model.ts`` alone.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import CLASS_KEYS, CLASSES, __version__
from .artifacts import Run, provenance, read_json, write_json
from .models import count_parameters
from .predict import (ARCHIVE_SUFFIXES, CHECKPOINT_NAME, CONFIG_NAME, TORCHSCRIPT_NAME, Predictor,
                      predictor_from_checkpoint, read_input, synthetic_ecg)
from .training.augment import augment_label
from .training.checkpoint import checkpoint_file, load_checkpoint

FORMAT = "ecg-ray-export/1"
METRICS_NAME = "metrics.json"
CARD_NAME = "MODEL_CARD.md"
#: Largest |traced − eager| logit difference accepted.
TRACE_TOLERANCE = 1e-4

CINC_CITATION = (
    "Clifford GD, Liu C, Moody B, Lehman LH, Silva I, Li Q, Johnson AEW, Mark RG. AF classification from a "
    "short single lead ECG recording: the PhysioNet/Computing in Cardiology Challenge 2017. Computing in "
    "Cardiology 2017;44. doi:10.22489/CinC.2017.065-469")
PHYSIONET_CITATION = (
    "Goldberger AL, Amaral LAN, Glass L, Hausdorff JM, Ivanov PCh, Mark RG, Mietus JE, Moody GB, Peng C-K, "
    "Stanley HE. PhysioBank, PhysioToolkit, and PhysioNet. Circulation 2000;101(23):e215-e220")


def verification_segments(predictor: Predictor, record: Path | None = None,
                          fs: float | None = None) -> tuple[np.ndarray, str]:
    """Segments to compare traced and eager output on: those of a real record
    if given, else of a synthetic ECG-like signal. ``(segments (n, L), what)``."""
    if record is None:
        rate = predictor.preprocess.fs
        return predictor.segments(synthetic_ecg(60.0, rate), rate, "synthetic")[0], "synthetic ECG-like signal"
    return predictor.segments(*read_input(record, fs), str(record))[0], f"real record {record}"


def trace_model(model: torch.nn.Module, segments: np.ndarray) -> tuple[torch.jit.ScriptModule, float]:
    """``torch.jit.trace`` the eval-mode model; returns it and the largest
    |traced − eager| logit difference over the segments, at batch sizes 1 and n
    (so a batch size is not baked in). ValueError above ``TRACE_TOLERANCE``."""
    model = model.eval()
    x = torch.as_tensor(np.ascontiguousarray(segments, dtype=np.float32)).unsqueeze(1)
    example = x[:2] if len(x) >= 2 else x.repeat(2, 1, 1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        diff = max(float((traced(batch) - model(batch)).abs().max()) for batch in (x[:1], x))
    if not diff <= TRACE_TOLERANCE:
        raise ValueError(f"TorchScript output differs from the eager model by {diff:.3g} (> {TRACE_TOLERANCE})")
    return traced, diff


def training_info(ckpt_file: Path, payload: dict) -> dict:
    """What is known about how the checkpoint was trained: its config plus the
    run folder's ``results.json`` / ``final.json`` if they sit beside it."""
    cfg = payload.get("config", {})
    info = {"epoch_index": payload.get("epoch"), "epochs_trained": (payload.get("epoch") or 0) + 1,
            "val_fold": cfg.get("val_fold"), "max_records": cfg.get("max_records")}
    run = Run(ckpt_file.parent)
    if Run.holds(run.path) and (results := run.results):
        data = results.get("data", {})
        info.update({k: data.get(k) for k in ("prepared", "config_hash", "train_records", "val_records")},
                    epochs_run=results.get("epochs"), best_epoch_index=results.get("best_epoch"))
    if info.get("prepared"):
        from .data.dataset import PreparedDataset
        from .data.errors import DataError

        with contextlib.suppress(DataError, OSError, ValueError):  # moved or deleted since: the card says less
            manifest = PreparedDataset(info["prepared"]).manifest
            info.update(dataset_records=manifest.get("n_records"), dataset_source=manifest.get("source"))
    if final := run.final:
        info["final"] = {k: final.get(k) for k in ("trained_on", "train_records", "monitored_on",
                                                    "monitor_records", "epochs", "note")}
    return info


def _split_text(info: dict) -> str:
    if "final" in info:
        f = info["final"]
        return (f"Trained on {f.get('trained_on')} ({f.get('train_records')} records) for {f.get('epochs')} "
                f"epochs; the {f.get('monitored_on')} ({f.get('monitor_records')} records) was held out. "
                f"{f.get('note') or ''}").strip()
    where = (f"fold {info['val_fold']} of the saved recording-level folds held out for validation"
             if info.get("val_fold") is not None else "the saved recording-level train/validation split")
    text = f"Trained with {where}"
    if info.get("train_records"):
        text += f" ({info['train_records']} training, {info.get('val_records')} validation records)"
    if info.get("max_records"):
        text += f", training records capped at {info['max_records']}"
    return (text + f"; the checkpoint is epoch {info.get('epochs_trained')}"
            + (f" of {info['epochs_run']}" if info.get("epochs_run") else "")
            + " (chosen on the validation records' F1, so its validation metrics are optimistic).")


def released_metrics(payload: dict, metrics_path: Path | None) -> dict:
    """``{"from": description, "metrics": {...}}``: an evaluate JSON, or the checkpoint's own."""
    if metrics_path is not None:
        metrics = read_json(metrics_path)
        if not isinstance(metrics, dict) or "f1_cinc" not in metrics:
            raise ValueError(f"--metrics {metrics_path}: not an `ecg-ray evaluate` JSON (no 'f1_cinc')")
        where = metrics.get("records_from") or metrics.get("data_dir")
        return {"from": f"ecg-ray evaluate on {where} ({metrics.get('n_records')} records)", "metrics": metrics}
    return {"from": f"the checkpoint's validation metrics at epoch {payload.get('epoch', 0) + 1} "
                    "(recording level: val_*, segment level: val_seg_*)", "metrics": payload.get("metrics", {})}


def _metric(m: dict, key: str):
    """``m[key]``, else the checkpoint's ``m["val_" + key]``, else None."""
    return next((m[k] for k in (key, f"val_{key}") if m.get(k) is not None), None)


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def metrics_table(m: dict) -> str:
    """The card's metrics as markdown: headline table, per-class table, F1 by length, confusion matrix."""
    rows = [("F1(N,A,O) — challenge headline", "f1_cinc"), ("F1 macro (4 classes)", "f1_macro"),
            ("F1 weighted", "f1_weighted"), ("accuracy", "accuracy"), ("AUROC macro (one-vs-rest)", "auroc_macro")]
    out = [_row("metric", "value"), "|---|---|", *(_row(label, _number(_metric(m, key))) for label, key in rows)]
    ci = m.get("ci") or {}
    if ci.get("f1_cinc"):
        lo, hi = ci["f1_cinc"]
        method = m.get("ci_method", "bootstrap over records")
        out.insert(3, _row(f"F1(N,A,O) 95 % CI ({method})", f"{lo:.4f}–{hi:.4f}"))
    if m.get("ece") is not None:
        out.append(_row(f"ECE (15 bins, top label; temperature {m.get('temperature', 1.0):.3f})", f"{m['ece']:.4f}"))
    out += ["", _row("class", "F1", "F1 95 % CI", "sensitivity", "specificity", "PPV", "AUROC"), "|---" * 7 + "|"]
    for c, k in zip(CLASSES, CLASS_KEYS):
        band = ci.get(f"f1_{k}")
        out.append(_row(c, _number(_metric(m, f"f1_{k}")), f"{band[0]:.3f}–{band[1]:.3f}" if band else "n/a",
                        *(_number(_metric(m, f"{name}_{k}")) for name in ("sens", "spec", "ppv", "auroc"))))
    if m.get("f1_by_length"):
        out += ["", "F1(N,A,O) by record length: " + "; ".join(
            f"{r['band_s']} s: {r['f1_cinc']:.3f} (n={r['n']})" for r in m["f1_by_length"])]
    if m.get("confusion"):
        out += ["", "Confusion matrix (rows: true class, columns: predicted):", "",
                _row("true \\ predicted", *CLASSES), "|---" * (len(CLASSES) + 1) + "|"]
        out += [_row(c, *row) for c, row in zip(CLASSES, m["confusion"])]
    return "\n".join(out)


def model_card(config: dict, metrics: dict, n_params: int) -> str:
    pre, info, tc = config["preprocess"], config["training"], config.get("train_config", {})
    seg_s = pre["segment_length"] / pre["fs"]
    records_text = (f"; the prepared dataset this model was trained from held {info['dataset_records']:,}"
                    if info.get("dataset_records") else "")
    hop = pre.get("stride") or pre["segment_length"]
    return f"""# ECG rhythm classifier — `{config['model']}` (ecg-ray {config['ecg_ray_version']})

Single-lead ECG rhythm classification into the four classes of the PhysioNet/CinC
Challenge 2017: **N** (normal sinus rhythm), **A** (atrial fibrillation), **O** (other
rhythm), **~** (too noisy to classify). Class order everywhere: `{', '.join(CLASSES)}`.

**Research use only. This is NOT a medical device**: it is not cleared or approved by any
regulator, was not clinically validated, and must not be used to diagnose, treat or
triage anyone.

## Model
- Architecture: `{config['model']}`, {n_params:,} parameters; hyper-parameters:
  `{json.dumps(config['model_params'])}`.
- Training: `{tc.get('imbalance')}` class-imbalance handling ({tc.get('class_weighting', 'inverse')} class
  weights), augmentation `{augment_label(tc.get('augment'))}`, {tc.get('crops_per_record', 1)}
  fresh random {seg_s:g}-s crops per record per epoch, AdamW lr {tc.get('lr')} under a
  `{tc.get('schedule', 'plateau')}` schedule, weight decay {tc.get('weight_decay')}, batch size
  {tc.get('batch_size')}, {tc.get('num_epochs')} epochs, seed {tc.get('seed')}.
- Input: one lead in mV at any sampling rate → resampled to {pre['fs']:g} Hz, zero-phase
  Butterworth bandpass {pre['lowcut']:g}–{pre['highcut']:g} Hz (order {pre['order']}), z-scored per
  record, cut into {seg_s:g}-s windows every {hop / pre['fs']:g} s, the last one aligned to the
  record's end (records shorter than one window: `{pre['short_policy']}`). Window logits are
  divided by the temperature {config.get('temperature', 1.0):.3f} (fitted on the validation records)
  and aggregated per record (`{config.get('aggregate', 'mean_prob')}`); the record's label is the argmax.
- Files: `{CHECKPOINT_NAME}` (PyTorch checkpoint, loads with `torch.load(weights_only=True)`),
  `{TORCHSCRIPT_NAME}` (TorchScript, input `(B, 1, {pre['segment_length']})` float32 → `(B, 4)` logits),
  `{CONFIG_NAME}`, `{METRICS_NAME}`.

## Data
PhysioNet/Computing in Cardiology Challenge 2017 training set: single-lead AliveCor
recordings of 9–61 s at 300 Hz labelled N/A/O/~ (8,528 in the public release{records_text}).

- {CINC_CITATION}.
- {PHYSIONET_CITATION}.

Split: {_split_text(info)} Splits are by recording, stratified by label, seeded
(see the prepared dataset's `manifest.json`{f", config hash {info['config_hash']}" if info.get('config_hash') else ''}).

## Metrics
From {metrics['from']}. Recording level unless noted:

{metrics_table(metrics['metrics'])}

## Intended use
Research on ECG rhythm classification methods: comparing architectures and training
strategies, reproducing the ablation of this repository, teaching. Inputs should resemble
the training data: short single-lead recordings from a handheld device.

## Limits
- Trained on one device type (AliveCor, lead I-like) and one challenge population; not
  validated on other devices, leads, ambulatory/Holter or 12-lead data, children, or
  pacemaker rhythms. MIT-BIH results use an approximate mapping of rhythm annotations.
- Internal-split scores usually read 0.03–0.06 higher than the challenge's hidden test set.
- Class `O` mixes many rhythms and `~` is rare (about 3 % of records); their scores are the
  least reliable.
- Probabilities are calibrated by one temperature fitted on the validation records
  of the same population; on other devices or populations they are not.
- NOT a medical device; outputs must not inform clinical decisions.
"""


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Archive members carry no user or group of the machine that made them."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def export_model(checkpoint: Path, out: Path, metrics_path: Path | None = None,
                 verify_record: Path | None = None, verify_fs: float | None = None) -> dict:
    """Write the release to ``out`` (``.tar.gz``/``.tgz`` → archive, else a folder);
    returns a summary (files and sizes, trace check)."""
    ckpt = checkpoint_file(checkpoint)
    payload = load_checkpoint(ckpt)
    predictor = predictor_from_checkpoint(payload, str(ckpt))
    preprocess = predictor.preprocess
    segments, verified_on = verification_segments(predictor, verify_record, verify_fs)
    traced, diff = trace_model(predictor.model, segments)

    config = {
        "format": FORMAT,
        **{k: payload[k] for k in ("model", "model_params", "preprocess")},
        "preprocess_hash": preprocess.hash,
        "temperature": predictor.temperature, "aggregate": predictor.aggregate,
        "classes": list(CLASSES), "probability_keys": list(CLASS_KEYS),
        "input": {"shape": ["batch", 1, preprocess.segment_length], "dtype": "float32",
                  "output": "logits (batch, 4); divide by temperature, then aggregate a record's windows "
                            "(mean_prob: mean of softmax; mean_logit: softmax of the mean)"},
        "files": {"checkpoint": CHECKPOINT_NAME, "torchscript": TORCHSCRIPT_NAME},
        "train_config": payload.get("config", {}),
        "training": training_info(ckpt, payload),
        "ecg_ray_version": __version__, "torch_version": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torchscript_check": {"max_abs_logit_diff": diff, "on": verified_on},
        "provenance": provenance(preprocess.hash),
    }
    metrics = released_metrics(payload, metrics_path)
    n_params = count_parameters(predictor.model)
    config_text = json.dumps(config, indent=1)

    with tempfile.TemporaryDirectory(prefix="ecgray-export-") as tmp:
        tmp = Path(tmp)
        slim = {k: v for k, v in payload.items() if k not in ("optimizer", "scheduler")}
        torch.save(slim, tmp / CHECKPOINT_NAME)
        torch.jit.save(traced, str(tmp / TORCHSCRIPT_NAME), _extra_files={CONFIG_NAME: config_text})
        (tmp / CONFIG_NAME).write_text(config_text)
        write_json(tmp / METRICS_NAME, metrics)
        (tmp / CARD_NAME).write_text(model_card(config, metrics, n_params))
        load_checkpoint(tmp / CHECKPOINT_NAME)  # the slim checkpoint still honours the contract
        files = [CHECKPOINT_NAME, TORCHSCRIPT_NAME, CONFIG_NAME, METRICS_NAME, CARD_NAME]
        sizes = {f: (tmp / f).stat().st_size for f in files}

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.name.endswith(ARCHIVE_SUFFIXES):
            part = out.with_name(out.name + ".part")
            with tarfile.open(part, "w:gz") as tar:
                for f in files:
                    tar.add(tmp / f, arcname=f, filter=_anonymous)
            part.replace(out)
        else:
            out.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy(tmp / f, out / f)
    return {"out": str(out), "files": sizes, "bytes": out.stat().st_size if out.is_file() else sum(sizes.values()),
            "model": payload["model"], "parameters": n_params, "torchscript_max_abs_diff": diff,
            "verified_on": verified_on, "metrics_from": metrics["from"]}
