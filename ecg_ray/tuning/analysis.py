"""What ``ecg-ray runs`` prints, and the one import for reading experiments.

The jobs live in their own modules and are re-exported here, so ``from ecg_ray.tuning import analysis``
keeps giving pandas frames of every trial and epoch: ``experiment`` (reading a sweep or run folder,
local or URI; selecting and ranking trials as Tune does), ``effects`` (the ablation statistics:
fixed-budget effects, and the best-of-trial table ``ablation``) and ``ecg_ray.tables`` (the one
table renderer). This module holds the ``runs list / best / compare`` views.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import CLASS_KEYS, HEADLINE
from ..artifacts import json_safe
from ..tables import fmt_value, render, to_markdown
from .effects import ablation, bootstrap_interval, t_interval
from .experiment import (BEST_METRICS, FACTORS, SUMMARY_COLUMNS, _is_uri, best_trial, default_mode, filter_trials,
                         is_train_run, load_experiment, metric_column, normalize_augment, normalize_metric,
                         select_trials)

__all__ = [  # the views below and what callers import from here
    "compare_table", "list_table", "best_record", "format_best", "compare_runs",
    "render", "to_markdown", "ablation", "bootstrap_interval", "t_interval", "SUMMARY_COLUMNS", "best_trial",
    "filter_trials", "is_train_run", "load_experiment", "metric_column", "normalize_augment", "normalize_metric"]


def compare_table(trials_df: pd.DataFrame, ids: list[str] | None = None) -> pd.DataFrame:
    """Runs side by side: one column per trial, one row per config value or
    headline metric (config values that are the same everywhere last)."""
    df = trials_df if ids is None else select_trials(trials_df, ids)
    lead = [c for c in (*FACTORS, "lr", "seed") if c in df]
    config_cols = lead + [c for c in trials_df.attrs.get("config_columns", []) if c in df and c not in lead]
    varying = [c for c in config_cols if df[c].astype(str).nunique() > 1 or c in FACTORS]
    same = [c for c in config_cols if c not in varying]
    metric_cols = ["status", "epochs", "stopped_early", "best_epoch",
                   *[f"best_{m}" for m in BEST_METRICS], f"final_{HEADLINE}", "final_val_auroc_macro",
                   "final_val_loss", "final_train_loss", "final_train_acc", "final_lr", "time_s"]
    rows = [c for c in [*varying, *metric_cols, *[f"final_val_f1_{k}" for k in CLASS_KEYS], *same] if c in df]
    out = df.set_index("trial_id")[rows].T.astype(object)
    out.index.name = "field"
    # a column of mixed runs turns ints into floats: show whole numbers as such
    return out.map(lambda v: int(v) if isinstance(v, (float, np.floating)) and np.isfinite(v) and v == int(v)
                   and abs(v) >= 1 else v)


def list_table(trials_df: pd.DataFrame, sort: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """The trial table ``runs list`` shows: ``columns`` (default ``SUMMARY_COLUMNS``),
    sorted by ``sort`` (a column or metric; best first), default the headline's best."""
    cols = [c for c in (columns or SUMMARY_COLUMNS) if c in trials_df]
    missing = [c for c in (columns or []) if c not in trials_df]
    if missing:
        raise ValueError(f"unknown column(s) {', '.join(missing)}; available: {', '.join(trials_df.columns)}")
    key = metric_column(trials_df, sort, "best") if sort else (f"best_{HEADLINE}" if f"best_{HEADLINE}" in trials_df
                                                             else "trial_id")
    ascending = key == "trial_id" or default_mode(key) == "min"
    df = trials_df.sort_values(key, ascending=ascending, na_position="last", kind="stable")
    return df[cols + ([key] if key not in cols else [])].reset_index(drop=True)


def best_record(trials_df: pd.DataFrame, metric: str = HEADLINE, mode: str | None = None,
                scope: str = "last") -> dict:
    """What ``runs best`` prints: the best trial's id, the metric, its value, config and checkpoint."""
    row = best_trial(trials_df, metric, mode, scope)
    col = metric_column(trials_df, metric, scope)
    config_cols = [c for c in trials_df.attrs.get("config_columns", FACTORS) if c in row.index]
    return {"trial_id": row["trial_id"], "metric": col, "mode": mode or default_mode(col), "scope": scope,
            "value": json_safe(row[col]), "status": row["status"], "epochs": json_safe(row["epochs"]),
            "best_epoch": json_safe(row.get("best_epoch")), f"best_{HEADLINE}": json_safe(row.get(f"best_{HEADLINE}")),
            "config": {c: json_safe(row[c]) for c in config_cols}, "checkpoint": json_safe(row.get("checkpoint")),
            "path": json_safe(row.get("path"))}


def format_best(record: dict, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(record, indent=1)
    flat = {k: v for k, v in record.items() if k != "config"}
    flat.update({f"config.{k}": v for k, v in record["config"].items()})
    frame = pd.DataFrame({"field": list(flat), "value": [fmt_value(v) for v in flat.values()]})
    return render(frame, fmt)


def compare_runs(trials_df: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """``compare_table`` of ``runs``: trial ids (or unique prefixes/suffixes) of
    ``trials_df``, or folders (another experiment, or ``ecg-ray train`` runs)."""
    frames = [load_experiment(run)[0] if Path(run).is_dir() or _is_uri(run) else select_trials(trials_df, [run])
              for run in runs]
    df = pd.concat(frames, ignore_index=True)
    twice = df["trial_id"].duplicated(keep=False)  # same folder name twice: keep the columns apart
    df.loc[twice, "trial_id"] = [f"{t}#{i}" for i, t in df.loc[twice, "trial_id"].items()]
    df.attrs.update(trials_df.attrs)
    df.attrs["config_columns"] = list(dict.fromkeys(c for f in (trials_df, *frames)
                                                    for c in f.attrs.get("config_columns", [])))
    return compare_table(df)
