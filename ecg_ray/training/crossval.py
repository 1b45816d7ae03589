"""k-fold cross-validation of one training config, and the final full-data model.

``run_crossval`` trains the config once per recording-level fold (fold k held out
through ``TrainConfig.val_fold = k``), one after another with ``train_run`` into
``out/fold_k`` (each a complete run folder), then writes ``crossval.csv``,
``crossval.md`` and ``summary.json``: per fold and mean ± sd, every recording-level
validation metric at three read-outs —

* ``best``: each fold at its own best epoch (what its ``model.pt`` holds), chosen
  on that fold's validation records, so optimistic;
* ``common``: every fold at the median of the folds' best epochs (rounded up) — the
  epoch count ``run_final`` is given, and the fairer estimate of what it scores;
* ``last``: each fold's last epoch.

Folds are the prepared dataset's saved ones (over *all* its records, test split
included) when ``folds`` matches their number; otherwise, or with ``exclude_test``
(train+val only), new label-stratified folds are made with the manifest's split seed
and handed to ``train_run`` as a *view*: a folder with its own ``manifest.json``
whose ``records`` symlinks the original's, so nothing is copied.

``run_final`` trains on the saved train+val records for a fixed number of epochs;
the test split is its validation set only so that its metrics are logged, nothing
is chosen on it: no early stopping or learning-rate-on-plateau, the *last* epoch kept.

A killed cross-validation resumes: finished folds (``results.json`` of the same
config) are kept, an unfinished one continues from its last Ray Train checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import CLASS_KEYS, CLASSES, HEADLINE
from ..artifacts import Run, json_safe, log_stderr, provenance, write_json
from ..data import store
from ..data.dataset import PreparedDataset
from ..data.errors import DataError
from ..data.sources import DEFAULT_SOURCE, get_source
from ..tables import to_markdown
from .config import TrainConfig

#: Recording-level metrics summarised per fold (segment-level ``val_seg_*`` are not).
RECORD_METRICS = ([HEADLINE, "val_auroc_macro", "val_accuracy", "val_f1_macro", "val_f1_weighted"]
                  + [f"val_{m}_{k}" for m in ("f1", "auroc", "sens", "spec") for k in CLASS_KEYS])
#: Columns of the Markdown table.
TABLE_METRICS = [HEADLINE, "val_auroc_macro", "val_accuracy", "val_f1_macro", *[f"val_f1_{k}" for k in CLASS_KEYS]]
VIEW_DIR = "_data"
#: Per fold: its own best epoch, the common epoch count (median best), its last epoch.
READOUTS = ("best", "common", "last")


# -- dataset views ---------------------------------------------------------------------------------

def dataset_view(prepared: Path, view: Path, splits: dict, note: str) -> Path:
    """A prepared-dataset folder sharing ``prepared``'s records under other splits."""
    prepared, view = Path(prepared).resolve(), Path(view)
    manifest = {**PreparedDataset(prepared).manifest, "splits": splits, "view_of": str(prepared), "view_note": note}
    view.mkdir(parents=True, exist_ok=True)
    link = view / store.RECORDS
    if link.is_symlink() or link.exists():
        if link.resolve() != (prepared / store.RECORDS).resolve():
            raise DataError(f"{view} already holds another dataset's records")
    else:
        link.symlink_to(prepared / store.RECORDS, target_is_directory=True)
    store.write_manifest(view, manifest)
    return view


def cv_splits(manifest: dict, prepared: Path, folds: int, exclude_test: bool = False) -> tuple[dict, str, bool]:
    """``(splits, description, changed)`` holding ``folds`` recording-level folds."""
    from ..data.splits import make_splits

    splits = manifest["splits"]
    if folds == len(splits["folds"]) and not exclude_test:
        return splits, f"the {folds} folds saved in the prepared dataset (all {manifest['n_records']} records)", False
    split = splits["split"]
    ids = sorted(split["train"] + split["val"] + ([] if exclude_test else split["test"]))
    label_of = PreparedDataset(prepared).labels()
    labels = [str(label_of[r]) for r in ids]
    source = get_source(manifest.get("source", DEFAULT_SOURCE))
    groups = [source.group_of(r) for r in ids] if source.grouped else None  # MIT-BIH: windows of one patient
    try:
        made = make_splits(ids, labels, seed=splits.get("seed", 42), k=folds, groups=groups)
    except ValueError as e:
        raise DataError(f"cannot make {folds} folds of {len(ids)} records: {e}") from None
    where = f"the {len(ids)} train+val records (test split left out)" if exclude_test else f"all {len(ids)} records"
    return ({**splits, "folds": made["folds"]},
            f"{folds} new stratified folds (seed {splits.get('seed', 42)}) over {where}", True)


# -- summaries -------------------------------------------------------------------------------------

def _at_epoch(history: list[dict], epoch_count: int) -> dict:
    """The history entry after ``epoch_count`` epochs (the last one if the fold stopped earlier)."""
    return next((h for h in reversed(history) if int(h["epoch"]) < epoch_count), history[0])


def summarize(fold_results: list[dict]) -> dict:
    """Per-fold rows and mean/sd at the best, common (median best) and last epochs.

    ``fold_results``: ``{"fold", "results" (results.json), "history" (history.json)}``.
    """
    best_counts = [int(f["results"]["best_epoch"]) + 1 for f in fold_results]
    common = int(math.ceil(float(np.median(best_counts))))
    per_fold = []
    for f, count in zip(fold_results, best_counts):
        r, history = f["results"], f["history"]
        rows = {"best": r["best_metrics"], "common": _at_epoch(history, common), "last": history[-1]}
        per_fold.append({
            "fold": f["fold"], "best_epoch": count, "epochs_run": len(history),
            "early_stopped": bool(r.get("early_stopped")), "seconds": r.get("seconds"),
            "train_records": r["data"]["train_records"], "val_records": r["data"]["val_records"],
            "lr_at_best": r["best_metrics"].get("lr"),
            **{f"{k}_metrics": {m: v.get(m) for m in RECORD_METRICS} for k, v in rows.items()},
        })
    out = {"per_fold": per_fold, "best_epochs": best_counts,
           "median_best_epoch": float(np.median(best_counts)), "final_epochs": common}
    for k in READOUTS:  # mean and sample sd over folds, missing and non-finite values skipped
        frame = pd.DataFrame([p[f"{k}_metrics"] for p in per_fold], columns=RECORD_METRICS, dtype=float)
        frame = frame.replace([np.inf, -np.inf], np.nan)
        out[k] = {"mean": frame.mean().to_dict(), "sd": frame.std(ddof=1).to_dict()}
    return out


def _fmt(v, digits: int = 4) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def write_tables(out: Path, summary: dict) -> None:
    """``crossval.csv`` (every recording-level metric, per fold at its best epoch,
    plus mean and sd rows for each read-out) and ``crossval.md``."""
    out, cfg, folds = Path(out), summary["config"], summary["per_fold"]
    rows = []
    for readout in READOUTS:  # per read-out: the folds, then the mean and sd rows
        rows += [[readout, p["fold"], p["best_epoch"], p["epochs_run"],
                  *(_fmt(p[f"{readout}_metrics"].get(k), 6) for k in RECORD_METRICS)] for p in folds]
        rows += [[readout, stat, "", "", *(_fmt(summary[readout][stat].get(k), 6) for k in RECORD_METRICS)]
                 for stat in ("mean", "sd")]
    pd.DataFrame(rows, columns=["readout", "fold", "best_epoch", "epochs_run", *RECORD_METRICS]).to_csv(
        out / "crossval.csv", index=False)

    heads = ["F1(N,A,O)", "AUROC", "accuracy", "F1 macro", *[f"F1 {c}" for c in CLASSES]]

    def band(s: dict, k: str) -> str:
        return f"{_fmt(s['mean'][k], 3)} ± {_fmt(s['sd'][k], 3)}"

    per_fold = [[str(p["fold"]), f"{p['best_epoch']}/{p['epochs_run']}",
                 *(_fmt(p["best_metrics"].get(k)) for k in TABLE_METRICS)] for p in folds]
    per_fold.append(["**mean ± sd**", f"{_fmt(summary['median_best_epoch'], 1)} (median)",
                     *(f"**{band(summary['best'], k)}**" for k in TABLE_METRICS)])
    readouts = [[f"epoch {summary['final_epochs']}", *(band(summary["common"], k) for k in TABLE_METRICS)],
                ["last epoch", *(band(summary["last"], k) for k in TABLE_METRICS)]]
    lines = [f"# Cross-validation: `{cfg['model']}`", "",
             f"Config: {summary['config_source']}.  ",
             f"Data: `{summary['prepared']}`, {summary['fold_source']}.  ",
             f"Folds run: {', '.join(str(p['fold']) for p in folds)} of {summary['folds']}; "
             f"up to {cfg['num_epochs']} epochs, patience {cfg['patience']}"
             + (f", training records capped at {cfg['max_records']}" if cfg.get('max_records') else "")
             + "; records per fold (train/validation): "
             + ", ".join(f"{p['train_records']}/{p['val_records']}" for p in folds) + ".", "",
             "Recording-level validation metrics of each held-out fold at its **best epoch** "
             "(chosen on that fold, so optimistic):", "",
             to_markdown(pd.DataFrame(per_fold, columns=["fold", "best epoch", *heads])), "",
             f"Every fold read at the **same epoch count, {summary['final_epochs']}** (median best epoch, "
             "rounded up; the count `ecg-ray final --from-crossval` trains for), and at each fold's last epoch:", "",
             to_markdown(pd.DataFrame(readouts, columns=["read-out", *heads])), "",
             "mean ± sample sd over folds; every recording-level metric is in `crossval.csv` and "
             "`summary.json`. F1(N,A,O) is the challenge's headline (mean F1 of N, A, O per recording).", ""]
    (out / "crossval.md").write_text("\n".join(lines))


# -- the runs --------------------------------------------------------------------------------------

def _fold_done(fold_dir: Path, cfg: TrainConfig) -> dict | None:
    run = Run(fold_dir)
    done = Run.holds(fold_dir) and run.checkpoint is not None and run.config == cfg.to_dict()
    return run.results if done else None


def _claim_fold(fold_dir: Path, cfg: TrainConfig) -> bool:
    """Record the run's config; refuse a folder left by a different config (Ray
    Train would resume that run's checkpoints). True when a killed run of this
    config is there to continue from its last checkpoint."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    marker = fold_dir / "run_config.json"
    if marker.is_file() and json.loads(marker.read_text()) != cfg.to_dict():
        raise DataError(f"{fold_dir} holds a run of a different config: use another --out")
    write_json(marker, cfg.to_dict())
    return (fold_dir / "ray_train").exists()


def run_crossval(cfg: TrainConfig, prepared: Path, out: Path, *, folds: int = 5,
                 fold_ids: list[int] | None = None, exclude_test: bool = False, config_source: str = "",
                 address: str | None = None, log=log_stderr) -> dict:
    """Train ``cfg`` on each fold in turn and write the tables; returns the summary."""
    from .trainer import train_run

    prepared, out = Path(prepared).resolve(), Path(out).resolve()
    manifest = PreparedDataset(prepared).manifest
    if folds < 2:
        raise ValueError(f"--folds must be >= 2, got {folds}")
    splits, fold_source, changed = cv_splits(manifest, prepared, folds, exclude_test)
    data = dataset_view(prepared, out / VIEW_DIR, splits, fold_source) if changed else prepared
    fold_ids = list(range(folds)) if fold_ids is None else sorted(set(fold_ids))
    bad = [k for k in fold_ids if not 0 <= k < folds]
    if bad:
        raise ValueError(f"fold ids {bad} outside 0..{folds - 1}")
    out.mkdir(parents=True, exist_ok=True)
    log(f"crossval: {cfg.model} on {fold_source}; folds {fold_ids} → {out}")

    fold_results = []
    for k in fold_ids:
        fold_cfg = replace(cfg, val_fold=k)
        fold_dir = out / f"fold_{k}"
        results = _fold_done(fold_dir, fold_cfg)
        if results is not None:
            log(f"crossval: fold {k} already done (best {HEADLINE} {results['best_metrics'][HEADLINE]:.4f}); kept")
        else:
            resume = _claim_fold(fold_dir, fold_cfg)
            log(f"crossval: fold {k} ({len(splits['folds'][k])} held-out records)")
            if resume:
                log(f"crossval: fold {k} continues from its last checkpoint")
            results = train_run(fold_cfg, data, fold_dir, address=address, resume=resume)
            log(f"crossval: fold {k} best {HEADLINE} {results['best_metrics'][HEADLINE]:.4f} "
                f"at epoch {results['best_epoch'] + 1}/{results['epochs']} ({results['seconds']:.0f} s)")
        fold_results.append({"fold": k, "results": results, "history": Run(fold_dir).history})

    summary = json_safe({
        "config": replace(cfg, val_fold=None).to_dict(), "config_source": config_source,
        "prepared": str(prepared), "data": str(data), "folds": folds, "fold_source": fold_source,
        "exclude_test": exclude_test, "fold_records": [len(f) for f in splits["folds"]],
        **summarize(fold_results), "provenance": provenance(manifest.get("config_hash")),
    })
    write_json(out / "summary.json", summary)
    write_tables(out, summary)
    return summary


FINAL_NOTE = ("Nothing was selected on the test split: fixed epoch count, no early stopping, no "
              "learning-rate reduction on plateau, last epoch kept; its metrics are logged for reference.")


def run_final(cfg: TrainConfig, prepared: Path, out: Path, epochs: int, *, config_source: str = "",
              address: str | None = None, log=log_stderr) -> dict:
    """Train ``cfg`` for ``epochs`` on the saved train+val records, test split held
    out (monitored only); ``out/model.pt`` is the last epoch. Returns ``final.json``."""
    from .trainer import train_run

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    prepared, out = Path(prepared).resolve(), Path(out).resolve()
    if (out / "final.json").is_file():
        raise DataError(f"{out} already holds a final model (final.json): use another --out")
    manifest = PreparedDataset(prepared).manifest
    split = manifest["splits"]["split"]
    train, test = sorted(split["train"] + split["val"]), list(split["test"])
    splits = {**manifest["splits"], "split": {"train": train, "val": test, "test": test}}
    data = dataset_view(prepared, out / VIEW_DIR, splits,
                        "final: train = saved train+val, val = saved TEST split (monitored only)")
    # no temperature is fitted here: the only held-out records are the test split's
    final_cfg = replace(cfg, val_fold=None, num_epochs=int(epochs), patience=0,
                        plateau_patience=int(epochs) + 1, calibrate=False)
    log(f"final: training {cfg.model} on train+val ({len(train)} records) for {epochs} epochs; "
        f"the TEST split ({len(test)} records) is held out and only monitored. {FINAL_NOTE}")
    results = train_run(final_cfg, data, out, address=address, resume=_claim_fold(out, final_cfg),
                        selection="last epoch (final model: nothing selected on the monitored test split)")
    final = json_safe({
        "trained_on": "train+val split", "train_records": results["data"]["train_records"],
        "monitored_on": "test split", "monitor_records": results["data"]["val_records"],
        "epochs": results["epochs"], "epochs_requested": int(epochs), "note": FINAL_NOTE,
        "test_metrics_last_epoch": {k.replace("val_", "test_", 1): v for k, v in results["best_metrics"].items()
                                    if k.startswith("val_")},
        "config": final_cfg.to_dict(), "config_source": config_source, "prepared": str(prepared),
        "seconds": results["seconds"], "provenance": provenance(manifest.get("config_hash")),
    })
    Run(out).write_final(final)
    return final


def final_epochs_from_crossval(crossval_dir: Path) -> int:
    """A final model's epochs from a cross-validation folder: its median best epoch, rounded up."""
    path = Path(crossval_dir) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"no summary.json in {crossval_dir}: run `ecg-ray crossval` first")
    return int(json.loads(path.read_text())["final_epochs"])
