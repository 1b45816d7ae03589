"""Read an experiment back as pandas: one row per trial, one row per trial-epoch.

``load_experiment(path)`` accepts

- a Ray Tune experiment folder written by ``ecg-ray sweep`` (``<storage>/<name>``,
  local path or URI such as ``s3://bucket/sweeps/ablation`` or ``file:///...``),
  finished, still running, or resumed: trial status, config and last result come
  from Ray's own ``ExperimentAnalysis`` (the experiment state Tune saves), the
  epochs from each trial's ``result.json`` on storage (fresher than the state
  while a sweep runs; epochs rerun after a resume are counted once, last one
  wins). A folder without an experiment state yet (a sweep that just started)
  is read from its trial folders alone.
- a single ``ecg-ray train --out RUN`` folder (it holds ``results.json``).

``best_trial`` picks the trial Tune's ``ResultGrid.get_best_result(metric,
mode)`` picks (scope ``"last"``: each trial's last reported value, first trial
in Tune's order wins a tie, NaN/inf never win). ``ablation`` turns the trial
table into per-factor level means with 95% confidence intervals, ranks, the
model x imbalance interaction table, "not distinguishable" notes and the
multi-seed stability of each config.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..training.augment import AUGMENT_NAMES

HEADLINE = "val_f1_cinc"
#: Metrics whose best epoch value gets a ``best_<metric>`` column (and its direction).
BEST_METRICS: dict[str, str] = {
    "val_f1_cinc": "max", "val_f1_macro": "max", "val_f1_weighted": "max", "val_accuracy": "max",
    "val_auroc_macro": "max", "val_seg_f1_cinc": "max", "val_loss": "min",
}
#: Short names accepted wherever a metric is asked for (``runs best --metric auroc``).
METRIC_ALIASES: dict[str, str] = {
    "f1": "val_f1_cinc", "auroc": "val_auroc_macro", "auc": "val_auroc_macro", "loss": "val_loss",
    "acc": "val_accuracy", "accuracy": "val_accuracy",
}
#: Keys of a Tune result row that are bookkeeping, not metrics.
TUNE_KEYS = frozenset({
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date", "time_this_iter_s",
    "time_total_s", "pid", "hostname", "node_ip", "config", "time_since_restore", "iterations_since_restore",
    "experiment_tag", "checkpoint_path", "should_checkpoint",
})
#: Factor columns shown first; the remaining config columns follow.
FACTORS = ("model", "imbalance", "augment")
#: Columns ``runs list`` and the report show by default.
SUMMARY_COLUMNS = ["trial_id", "status", "model", "imbalance", "augment", "lr", "seed", "epochs",
                   "stopped_early", "best_epoch", "best_val_f1_cinc", "final_val_f1_cinc",
                   "best_val_auroc_macro", "time_s"]


# -- storage: local paths and URIs ---------------------------------------------------------------

def _is_uri(path) -> bool:
    return "://" in str(path)


class _Store:
    """Minimal read access to a local folder or a pyarrow-supported URI."""

    def __init__(self, root: str):
        self.uri = _is_uri(root)
        if self.uri:
            import pyarrow.fs

            self.fs, self.root = pyarrow.fs.FileSystem.from_uri(str(root))
        else:
            self.fs, self.root = None, str(Path(root).resolve())

    def join(self, *parts: str) -> str:
        return "/".join([parts[0].rstrip("/"), *parts[1:]])

    def exists(self, path: str) -> bool:
        if not self.uri:
            return Path(path).exists()
        import pyarrow.fs

        return self.fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound

    def is_dir(self, path: str) -> bool:
        if not self.uri:
            return Path(path).is_dir()
        import pyarrow.fs

        return self.fs.get_file_info(path).type == pyarrow.fs.FileType.Directory

    def listdir(self, path: str) -> list[str]:
        if not self.uri:
            return sorted(p.name for p in Path(path).iterdir()) if Path(path).is_dir() else []
        import pyarrow.fs

        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
        return sorted(i.base_name for i in infos)

    def read_text(self, path: str) -> str | None:
        try:
            if not self.uri:
                return Path(path).read_text()
            with self.fs.open_input_stream(path) as f:
                return f.read().decode()
        except (OSError, FileNotFoundError):
            return None


# -- normalising configs -------------------------------------------------------------------------

def normalize_augment(value) -> str:
    """The augment setting as one string: ``none``, ``all``, or names joined by ``+``
    in the registry's order (``jitter+cutout``). Lists, comma or ``+`` strings and
    the fully expanded list that ``TrainConfig`` stores for ``all`` all map here."""
    if value is None:
        return "none"
    if isinstance(value, str):
        value = [v for v in re.split(r"[+,]", value) if v.strip()]
    names = [str(v).strip() for v in value if str(v).strip() and str(v).strip() != "none"]
    if not names:
        return "none"
    if "all" in names or set(names) >= set(AUGMENT_NAMES):
        return "all"
    order = {n: i for i, n in enumerate(AUGMENT_NAMES)}
    return "+".join(sorted(dict.fromkeys(names), key=lambda n: (order.get(n, len(order)), n)))


def flatten_config(config: dict, prefix: str = "") -> dict:
    """Nested dicts become ``a.b`` keys; lists become strings (``augment`` normalised)."""
    out = {}
    for key, value in (config or {}).items():
        name = prefix + str(key)
        if key == "augment" and not prefix:
            out[name] = normalize_augment(value)
        elif isinstance(value, dict):
            out.update(flatten_config(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(map(str, value))
        else:
            out[name] = value
    return out


def normalize_metric(metric: str) -> str:
    """``f1_cinc`` → ``val_f1_cinc``, ``auroc`` → ``val_auroc_macro``; names that
    already carry ``val_``/``train_``/``best_``/``final_`` stay as they are."""
    metric = metric.strip()
    if metric in METRIC_ALIASES:
        return METRIC_ALIASES[metric]
    if metric.startswith(("val_", "train_", "best_", "final_")) or metric in ("lr", "epoch", "segments_per_s",
                                                                              "epoch_seconds", "time_s", "epochs"):
        return metric
    return "val_" + metric


def default_mode(metric: str) -> str:
    return "min" if "loss" in metric else "max"


# -- reading one trial ---------------------------------------------------------------------------

def _parse_result_lines(text: str | None) -> list[dict]:
    """JSON lines of a ``result.json``; a half-written last line (a running trial) is skipped."""
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _epoch_rows(trial_id: str, results: list[dict]) -> list[dict]:
    """One row per epoch: reported metrics plus Tune's bookkeeping; an epoch
    reported twice (rerun after a resume) keeps its last report."""
    by_epoch: dict = {}
    for i, r in enumerate(results):
        row = {k: v for k, v in r.items() if k not in ("config", "trial_id", "experiment_tag")}
        epoch = r.get("epoch", r.get("training_iteration", i + 1) - 1)
        row["epoch"] = int(epoch) if epoch is not None else i
        by_epoch[row["epoch"]] = row
    return [{"trial_id": trial_id, **by_epoch[e]} for e in sorted(by_epoch)]


def _checkpoint_history(store: "_Store", root: str, trial_id: str) -> list[dict]:
    """The per-epoch metrics kept in the trial's latest Train checkpoint.

    Tune restarts a killed trial's function from scratch, and the restarted trial's
    ``result.json`` then lacks the epochs reported before the kill; the Train run
    resumed from its checkpoint, whose ``history`` has them all. Local storage only."""
    if store.uri:
        return []
    folders = sorted(p for p in Path(root).glob(f"train_{trial_id}/checkpoint_*") if p.is_dir())
    if not folders:
        return []
    from ..training.checkpoint import load_checkpoint

    try:
        return list(load_checkpoint(folders[-1]).get("history") or [])
    except (OSError, ValueError):
        return []


def _last_error_line(text: str | None) -> str:
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1][:300] if lines else ""


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _trial_row(trial_id: str, status: str, config: dict, epochs: list[dict], last_result: dict | None,
               all_results: list[dict], path: str, error: str, store: _Store | None) -> dict:
    row = {"trial_id": trial_id, "status": status}
    row.update(flatten_config(config))
    last = epochs[-1] if epochs else {}
    # Tune ranks on the last *reported* result: its own last_result when at least as new as disk.
    if last_result and any(k not in TUNE_KEYS for k in last_result):
        if not last or last_result.get("epoch", -1) >= last.get("epoch", -1):
            last = last_result
    row["epochs"] = len(epochs)
    for key, value in last.items():
        if key in TUNE_KEYS or key in ("best_val_f1_cinc",) or not _is_number(value):
            continue
        row[f"final_{key}"] = float(value)
    row["patience_stopped"] = bool(last.get("early_stopped", False))
    frame = pd.DataFrame(epochs) if epochs else pd.DataFrame()
    for metric, mode in BEST_METRICS.items():
        if metric in frame and frame[metric].notna().any():
            values = pd.to_numeric(frame[metric], errors="coerce")
            row[f"best_{metric}"] = float(values.max() if mode == "max" else values.min())
        else:
            row[f"best_{metric}"] = float("nan")
    row["best_epoch"] = float("nan")
    row["checkpoint"] = None
    if HEADLINE in frame and frame[HEADLINE].notna().any():
        row["best_epoch"] = int(frame.loc[pd.to_numeric(frame[HEADLINE]).idxmax(), "epoch"]) + 1
        if "checkpoint_path" in frame and store is not None:
            # Train keeps the top checkpoints by the headline: the best one still on storage.
            kept = frame[frame["checkpoint_path"].map(lambda p: isinstance(p, str) and store.exists(
                p if store.uri or not _is_uri(p) else p.split("://", 1)[1]))]
            if len(kept):
                row["checkpoint"] = kept.loc[pd.to_numeric(kept[HEADLINE]).idxmax(), "checkpoint_path"]
    # a trial retried after a lost node or worker shows up as epochs reported from more than one node
    nodes = [r["node_id"] for r in all_results or epochs if isinstance(r.get("node_id"), str)]
    row["nodes"] = len(set(nodes))
    row["retried"] = len(set(nodes)) > 1 or len(all_results or []) > len(epochs)
    row["time_s"] = float(sum(r.get("time_this_iter_s") or 0.0 for r in all_results)) if all_results else (
        float(last.get("time_total_s") or 0.0))
    row["path"] = path
    row["error"] = error
    return row


# -- experiments ---------------------------------------------------------------------------------

def is_train_run(path) -> bool:
    """A single ``ecg-ray train --out`` folder (it holds ``results.json``)."""
    return not _is_uri(path) and (Path(path) / "results.json").is_file()


def _load_train_run(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = Path(path).resolve()
    results = json.loads((path / "results.json").read_text())
    history_file = path / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else [results.get("final_metrics", {})]
    trial_id = path.name
    epochs = _epoch_rows(trial_id, history)
    row = _trial_row(trial_id, "TERMINATED", results.get("config", {}), epochs, None, [], str(path), "", None)
    row["time_s"] = float(results.get("seconds") or 0.0)
    if (path / "model.pt").is_file():
        row["checkpoint"] = str(path / "model.pt")
    if results.get("best_epoch") is not None:
        row["best_epoch"] = int(results["best_epoch"]) + 1
    max_epochs = int(results.get("config", {}).get("num_epochs") or row["epochs"])
    row["tune_order"] = 0
    trials = _finish_trials([row], max_epochs)
    epochs_df = pd.DataFrame(epochs)
    info = {"kind": "train", "path": str(path), "name": path.name, "max_epochs": max_epochs,
            "metric": HEADLINE, "mode": "max", "config_columns": _config_columns([results.get("config", {})]),
            "data": results.get("data", {}), "started": results.get("started"), "seconds": results.get("seconds")}
    trials.attrs.update(info)
    epochs_df.attrs.update(info)
    return trials, epochs_df


def _config_columns(configs: list[dict]) -> list[str]:
    cols: dict[str, None] = {}
    for c in configs:
        cols.update(dict.fromkeys(flatten_config(c)))
    return list(cols)


def _finish_trials(rows: list[dict], max_epochs: int) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["stopped_early"] = (df["status"] == "TERMINATED") & (df["epochs"] < max_epochs)
    df["stop_reason"] = np.where(df["status"] == "ERROR", "error",
                                 np.where(df["patience_stopped"] & df["stopped_early"], "patience",
                                          np.where(df["stopped_early"], "asha", "")))
    first = ["trial_id", "status", *[f for f in FACTORS if f in df], *[c for c in ("lr", "seed") if c in df]]
    tail = ["epochs", "stopped_early", "stop_reason", "patience_stopped", "best_epoch"]
    df["best_epoch"] = pd.to_numeric(df["best_epoch"], errors="coerce").astype("Int64")
    metrics = sorted([c for c in df if c.startswith("best_") and c not in tail])
    metrics += sorted([c for c in df if c.startswith("final_")])
    end = ["time_s", "checkpoint", "path", "error", "tune_order"]
    middle = [c for c in df if c not in first + tail + metrics + end]
    df = df[first + middle + tail + metrics + [c for c in end if c in df]]
    return df.sort_values("trial_id", kind="stable").reset_index(drop=True)


def _scan_trial_dirs(store: _Store, root: str) -> list[tuple[str, str]]:
    """``(trial_id, trial folder)`` of every ``run_trial_*`` folder holding params.json."""
    found = []
    for name in store.listdir(root):
        folder = store.join(root, name)
        if not name.startswith(("run_trial_", "trial_", "run_")) or not store.exists(store.join(folder, "params.json")):
            continue
        m = re.match(r"^\w*?_([0-9a-f]{5}_\d{5})_", name)
        rows = _parse_result_lines(store.read_text(store.join(folder, "result.json")))
        trial_id = rows[-1].get("trial_id") if rows else (m.group(1) if m else name)
        found.append((trial_id, folder))
    return found


def _sweep_info(store: _Store, root: str) -> dict:
    text = store.read_text(store.join(root, "ecg_ray_sweep.json"))
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}


def _spec_metric(sweep: dict) -> tuple[str, str]:
    spec = sweep.get("spec")
    if spec:
        for candidate in (Path(spec), Path(__file__).resolve().parents[2] / spec):
            if candidate.is_file():
                try:
                    import yaml

                    data = yaml.safe_load(candidate.read_text()) or {}
                    return data.get("metric", HEADLINE), data.get("mode", "max")
                except Exception:  # a spec that no longer parses: fall back to the headline
                    break
    return HEADLINE, "max"


def load_experiment(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(trials_df, epochs_df)`` of a Tune experiment folder (local or URI) or of
    an ``ecg-ray train`` run folder.

    ``trials_df``: one row per trial, sorted by ``trial_id``: ``trial_id``,
    ``status`` (Tune's: TERMINATED, ERROR, RUNNING, PENDING, PAUSED), the flattened
    config (``model``, ``imbalance``, ``augment`` as ``none``/``all``/``a+b``,
    ``lr``, ``seed``, ...), ``epochs`` (distinct epochs reported),
    ``stopped_early`` (TERMINATED with fewer epochs than the experiment's most:
    ASHA's pruning, or early stopping — ``stop_reason`` says which),
    ``best_epoch`` (1-based: the epoch *number* of the best val_f1_cinc, i.e. the
    reported 0-based ``epoch`` + 1, comparable with ``epochs``), ``best_<m>``
    for the headline metrics (best epoch value),
    ``final_<m>`` for every numeric reported metric (last reported value, what
    Tune ranks on), ``time_s``, ``checkpoint`` (the best checkpoint still on
    storage), ``path``, ``error`` and ``tune_order`` (the trial's position in
    Tune's list, used to break ties as Tune does).

    ``epochs_df``: one row per trial-epoch (``epoch`` as reported: 0-based) with every reported metric and Tune's
    bookkeeping (``training_iteration``, ``time_total_s``, ``checkpoint_path``...);
    merge with ``trials_df`` on ``trial_id`` for the config.

    Both frames carry ``.attrs`` with ``kind`` (``tune``/``train``), ``path``,
    ``name``, ``max_epochs``, ``metric``, ``mode``, ``config_columns`` and, for
    sweeps, ``sweep`` (the ``ecg_ray_sweep.json`` written when it finished).
    """
    if is_train_run(path):
        return _load_train_run(Path(path))
    store = _Store(str(path))
    root = store.root
    if not store.is_dir(root):
        raise FileNotFoundError(f"no experiment or run folder at {path}")
    sweep = _sweep_info(store, root)
    tune_trials = []
    try:
        from ray.tune import ExperimentAnalysis

        analysis = ExperimentAnalysis(str(path))
        tune_trials = list(analysis.trials)
    except Exception:  # no experiment state saved yet: read the trial folders alone
        tune_trials = []

    rows, epoch_rows, configs = [], [], []
    seen = set()
    for order, trial in enumerate(tune_trials):
        folder = trial.path if not store.uri else trial.path.split("://", 1)[-1]
        results = _parse_result_lines(store.read_text(store.join(folder, "result.json")))
        # reports in result.json win; the checkpoint fills epochs a restart dropped from it
        epochs = _epoch_rows(trial.trial_id, _checkpoint_history(store, root, trial.trial_id) + results)
        error = ""
        if trial.status == "ERROR":
            error = _last_error_line(store.read_text(store.join(folder, "error.txt"))) or "error"
        config = trial.config or {}
        configs.append(config)
        status = trial.status
        if status == "PENDING" and epochs:  # the saved state lags behind a trial already reporting
            status = "RUNNING"
        row = _trial_row(trial.trial_id, status, config, epochs, dict(trial.last_result or {}),
                         results, trial.path, error, store)
        row["tune_order"] = order
        rows.append(row)
        epoch_rows += epochs
        seen.add(trial.trial_id)
    for trial_id, folder in _scan_trial_dirs(store, root):
        if trial_id in seen:
            continue
        results = _parse_result_lines(store.read_text(store.join(folder, "result.json")))
        params = store.read_text(store.join(folder, "params.json"))
        config = json.loads(params) if params else {}
        configs.append(config)
        error_text = store.read_text(store.join(folder, "error.txt"))
        status = "ERROR" if error_text else ("TERMINATED" if results and results[-1].get("done") else "RUNNING")
        epochs = _epoch_rows(trial_id, results)
        row = _trial_row(trial_id, status, config, epochs, None, results, folder,
                         _last_error_line(error_text), store)
        row["tune_order"] = len(rows)
        rows.append(row)
        epoch_rows += epochs
    if not rows:
        raise FileNotFoundError(f"{path}: no Ray Tune trials and no results.json — not an experiment or run folder")
    max_epochs = max(r["epochs"] for r in rows)
    trials = _finish_trials(rows, max_epochs)
    epochs_df = pd.DataFrame(epoch_rows)
    if not epochs_df.empty:
        front = ["trial_id", "epoch"]
        epochs_df = epochs_df[front + [c for c in epochs_df if c not in front]]
    metric, mode = _spec_metric(sweep)
    info = {"kind": "tune", "path": str(path), "name": Path(root).name, "max_epochs": int(max_epochs),
            "metric": metric, "mode": mode, "config_columns": _config_columns(configs), "sweep": sweep}
    trials.attrs.update(info)
    epochs_df.attrs.update(info)
    return trials, epochs_df


def load_runs(paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Several experiments / run folders in one pair of frames (trial ids kept;
    a ``source`` column names the folder each came from)."""
    trials, epochs = [], []
    for p in paths:
        t, e = load_experiment(p)
        t = t.assign(source=str(p))
        trials.append(t)
        epochs.append(e)
    out_t = pd.concat(trials, ignore_index=True)
    out_e = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame()
    out_t.attrs.update(trials[0].attrs if trials else {})
    out_t["tune_order"] = range(len(out_t))
    return out_t, out_e


# -- selecting -----------------------------------------------------------------------------------

def metric_column(trials_df: pd.DataFrame, metric: str, scope: str = "last") -> str:
    """The ``trials_df`` column of ``metric``: a column name as is, else
    ``final_<m>`` (scope ``last``, Tune's default) or ``best_<m>`` (scope ``best``
    / ``all``), ``m`` normalised (``f1_cinc`` → ``val_f1_cinc``, ``auroc`` →
    ``val_auroc_macro``)."""
    if metric in trials_df.columns:
        return metric
    m = normalize_metric(metric)
    if m in trials_df.columns:
        return m
    prefix = "final_" if scope == "last" else "best_"
    for candidate in (prefix + m, prefix + metric):
        if candidate in trials_df.columns:
            return candidate
    known = sorted(c[len(prefix):] for c in trials_df.columns if c.startswith(prefix))
    raise ValueError(f"unknown metric {metric!r} for scope {scope!r}; available: {', '.join(known)}")


def best_trial(trials_df: pd.DataFrame, metric: str = HEADLINE, mode: str | None = None,
               scope: str = "last") -> pd.Series:
    """The best trial's row, chosen as Ray Tune's ``get_best_result(metric, mode)``
    does with its default ``scope="last"``: by each trial's last reported value,
    NaN/inf never chosen, the first trial in Tune's order winning a tie (and a
    one-trial experiment returning its trial). ``scope="best"`` ranks on the best
    epoch instead (``best_<m>``). ValueError if no trial has the metric."""
    if trials_df.empty:
        raise ValueError("no trials")
    col = metric_column(trials_df, metric, scope)
    mode = mode or default_mode(col)
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    ordered = trials_df.sort_values("tune_order", kind="stable") if "tune_order" in trials_df else trials_df
    if len(ordered) == 1:
        return ordered.iloc[0]
    values = pd.to_numeric(ordered[col], errors="coerce")
    values = values[np.isfinite(values)]
    if values.empty:
        raise ValueError(f"no trial reported a finite {col}")
    index = values.idxmax() if mode == "max" else values.idxmin()  # first occurrence wins ties
    return ordered.loc[index]


def filter_trials(trials_df: pd.DataFrame, *, model=None, imbalance=None, augment=None, lr_min=None,
                  lr_max=None, seed=None, status=None) -> pd.DataFrame:
    """Rows matching every given filter; list filters match any of their values."""
    df = trials_df

    def _any(col, values, norm=str):
        nonlocal df
        if values is None or col not in df:
            return
        values = [values] if isinstance(values, (str, int, float)) else list(values)
        df = df[df[col].map(norm).isin([norm(v) for v in values])]

    _any("model", model)
    _any("imbalance", imbalance)
    _any("augment", [normalize_augment(a) for a in ([augment] if isinstance(augment, str) else augment)]
         if augment is not None else None)
    _any("seed", seed, lambda v: str(int(v)) if _is_number(v) or str(v).lstrip("-").isdigit() else str(v))
    _any("status", status, lambda v: str(v).upper())
    if lr_min is not None and "lr" in df:
        df = df[pd.to_numeric(df["lr"]) >= lr_min]
    if lr_max is not None and "lr" in df:
        df = df[pd.to_numeric(df["lr"]) <= lr_max]
    return df


# -- ablation ------------------------------------------------------------------------------------

def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the t confidence interval of the mean,
    ``mean ± t_{(1+c)/2, n-1} · sd / √n`` (sample sd, ddof 1). With fewer than two
    values the bounds are NaN."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def bootstrap_interval(values, confidence: float = 0.95, n_boot: int = 5000,
                       seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: percentile bootstrap interval of the mean (seeded)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if x.size < 2:
        return float(x.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(1)
    alpha = (1 - confidence) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


@dataclass
class Ablation:
    """What ``ablation`` found. ``levels``: one row per (factor, level) with
    ``n, mean, sd, ci_low, ci_high, rank`` (1 = best); ``interaction``: mean
    metric per (row factor level, column factor level) cell, ``interaction_n``
    the trial count per cell; ``notes``: plain-language findings (which levels
    cannot be told apart); ``stability``: mean ± sd of the metric across seeds
    for each config (``n_seeds``)."""

    metric: str
    mode: str
    confidence: float
    method: str
    n_trials: int
    levels: pd.DataFrame
    interaction: pd.DataFrame | None
    interaction_n: pd.DataFrame | None
    stability: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def frame(df):
            return None if df is None else json.loads(df.to_json(orient="split"))
        return {"metric": self.metric, "mode": self.mode, "confidence": self.confidence, "method": self.method,
                "n_trials": self.n_trials, "levels": json.loads(self.levels.to_json(orient="records")),
                "interaction": frame(self.interaction), "interaction_n": frame(self.interaction_n),
                "stability": json.loads(self.stability.to_json(orient="records")), "notes": self.notes,
                "excluded": self.excluded}


def _overlap(a: pd.Series, b: pd.Series) -> bool | None:
    if not all(np.isfinite([a.ci_low, a.ci_high, b.ci_low, b.ci_high])):
        return None
    return a.ci_low <= b.ci_high and b.ci_low <= a.ci_high


def ablation(trials_df: pd.DataFrame, metric: str = "best_val_f1_cinc",
             factors: tuple[str, ...] = FACTORS, *, mode: str | None = None, confidence: float = 0.95,
             method: str = "t", include_errored: bool = False) -> Ablation:
    """Per factor and level: n, mean, sd, CI of ``metric`` (``method`` ``t`` —
    ``scipy.stats.t`` interval — or ``bootstrap``) over every trial at that level
    (so over seeds and the other factors), rank; the ``factors[0] x factors[1]``
    interaction table; notes on levels whose CIs overlap ("not
    distinguishable"); seed stability of each config.

    Trials with status ERROR are left out (listed in ``excluded``) unless
    ``include_errored``; trials without a finite value of the metric always are.
    Trials ASHA stopped early count with the best value they reached.
    """
    col = metric_column(trials_df, metric, "best")
    mode = mode or default_mode(col)
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")
    interval = t_interval if method == "t" else bootstrap_interval
    df = trials_df.copy()
    df[col] = pd.to_numeric(df[col], errors="coerce")
    excluded = []
    if not include_errored and "status" in df:
        bad = df[df["status"] == "ERROR"]
        excluded += [f"{t} (error)" for t in bad["trial_id"]]
        df = df[df["status"] != "ERROR"]
    missing = df[~np.isfinite(df[col])]
    excluded += [f"{t} (no {col})" for t in missing["trial_id"]]
    df = df[np.isfinite(df[col])]
    factors = tuple(f for f in factors if f in df.columns)

    rows, notes = [], []
    pct = f"{confidence:.0%}"
    for factor in factors:
        level_rows = []
        for level, group in df.groupby(factor, sort=True, dropna=False):
            mean, lo, hi = interval(group[col].to_numpy(), confidence)
            level_rows.append({"factor": factor, "level": str(level), "n": int(len(group)), "mean": mean,
                               "sd": float(group[col].std(ddof=1)) if len(group) > 1 else float("nan"),
                               "ci_low": lo, "ci_high": hi})
        level_df = pd.DataFrame(level_rows)
        if level_df.empty:
            continue
        level_df["rank"] = level_df["mean"].rank(ascending=(mode == "min"), method="min").astype(int)
        level_df = level_df.sort_values("rank", kind="stable")
        rows.append(level_df)
        if len(level_df) < 2:
            notes.append(f"{factor}: only one level ({level_df['level'].iloc[0]}), nothing to compare.")
            continue
        records = list(level_df.itertuples(index=False))
        for i, a in enumerate(records):
            for b in records[i + 1:]:
                ov = _overlap(a, b)
                if ov is None:
                    notes.append(f"{factor}: {a.level} vs {b.level} cannot be compared "
                                 f"(a level has fewer than 2 trials: no {pct} CI).")
                elif ov:
                    notes.append(f"{factor}: {a.level} ({a.mean:.3f}) and {b.level} ({b.mean:.3f}) are not "
                                 f"distinguishable ({pct} CIs overlap).")
                else:
                    notes.append(f"{factor}: {a.level} ({a.mean:.3f}) beats {b.level} ({b.mean:.3f}); "
                                 f"{pct} CIs do not overlap.")
    levels = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["factor", "level", "n", "mean", "sd", "ci_low", "ci_high", "rank"])

    interaction = interaction_n = None
    if len(factors) >= 2 and not df.empty:
        r, c = factors[0], factors[1]
        interaction = df.pivot_table(index=r, columns=c, values=col, aggfunc="mean", observed=True)
        interaction_n = df.pivot_table(index=r, columns=c, values=col, aggfunc="count", observed=True)

    stability = seed_stability(df, col, trials_df.attrs.get("config_columns"), factors)
    if not stability.empty and stability["n_seeds"].max() < 2:
        notes.append("single seed per config: seed stability not estimated (rerun with several seeds).")
    return Ablation(col, mode, confidence, method, int(len(df)), levels, interaction, interaction_n,
                    stability, notes, excluded)


#: Config columns that describe resources or bookkeeping, not the trained model.
_NON_FACTOR_CONFIG = {"seed", "num_workers", "cpus_per_worker", "gpus_per_worker", "use_gpu", "torch_threads"}


def seed_stability(trials_df: pd.DataFrame, metric: str, config_columns=None,
                   factors: tuple[str, ...] = FACTORS) -> pd.DataFrame:
    """Mean ± sd (and min, max) of ``metric`` across seeds for each config: rows
    grouped by every varying config column except ``seed`` (the factors when
    ``config_columns`` is not known)."""
    if trials_df.empty:
        return pd.DataFrame(columns=[*factors, "n_seeds", "mean", "sd", "min", "max"])
    cols = [c for c in (config_columns or factors) if c in trials_df and c not in _NON_FACTOR_CONFIG]
    varying = [c for c in cols if trials_df[c].astype(str).nunique() > 1]
    keys = list(dict.fromkeys([f for f in factors if f in trials_df] + varying))
    df = trials_df.assign(**{k: trials_df[k].astype(str) for k in keys})
    grouped = df.groupby(keys, sort=True)[metric] if keys else df.assign(_all="all").groupby("_all")[metric]
    out = grouped.agg(n_seeds="count", mean="mean", sd="std", min="min", max="max").reset_index()
    return out.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


# -- output --------------------------------------------------------------------------------------

def _fmt(v, floatfmt: str = ".4f") -> str:
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "" if np.isnan(v) else str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return format(v, floatfmt)
    return str(v)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4f", index: bool = False) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    frame = df.reset_index() if index else df
    header = [str(c) for c in frame.columns]
    body = [[_fmt(v, floatfmt).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def to_text(df: pd.DataFrame, floatfmt: str = ".4f", index: bool = False) -> str:
    """A plain aligned console table."""
    frame = df.reset_index() if index else df
    cells = [[str(c) for c in frame.columns]] + [[_fmt(v, floatfmt) for v in row]
                                                 for row in frame.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))] if cells and cells[0] else []
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(v.rjust(w) if num and k else v.ljust(w) for v, w, num in zip(row, widths, numeric))
                     .rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(df: pd.DataFrame, fmt: str = "table", floatfmt: str = ".4f", index: bool = False) -> str:
    """``df`` as ``table`` (console), ``csv``, ``json`` (a list of records) or ``markdown``."""
    if fmt == "table":
        return to_text(df, floatfmt, index)
    if fmt == "markdown":
        return to_markdown(df, floatfmt, index)
    if fmt == "csv":
        return df.to_csv(index=index).rstrip("\n")
    if fmt == "json":
        frame = df.reset_index() if index else df
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=1)
    raise ValueError(f"unknown format {fmt!r}; choose table, csv, json or markdown")


def compare_table(trials_df: pd.DataFrame, ids: list[str] | None = None) -> pd.DataFrame:
    """Runs side by side: one column per trial, one row per config value or
    headline metric (config values that are the same everywhere last)."""
    df = trials_df if ids is None else select_trials(trials_df, ids)
    config_cols = [c for c in trials_df.attrs.get("config_columns", []) if c in df]
    config_cols = [c for c in (*FACTORS, "lr", "seed") if c in df] + [c for c in config_cols
                                                                       if c not in (*FACTORS, "lr", "seed")]
    varying = [c for c in config_cols if df[c].astype(str).nunique() > 1 or c in FACTORS]
    same = [c for c in config_cols if c not in varying]
    metric_cols = ["status", "epochs", "stopped_early", "best_epoch",
                   *[f"best_{m}" for m in BEST_METRICS], "final_val_f1_cinc", "final_val_auroc_macro",
                   "final_val_loss", "final_train_loss", "final_train_acc", "final_lr", "time_s"]
    per_class = [f"final_val_f1_{k}" for k in ("N", "A", "O", "noisy")]
    rows = [c for c in [*varying, *metric_cols, *per_class, *same] if c in df]
    out = df.set_index("trial_id")[rows].T.astype(object)
    out.index.name = "field"
    # a column of mixed runs turns ints into floats: show whole numbers as such
    return out.map(lambda v: int(v) if isinstance(v, (float, np.floating)) and np.isfinite(v) and v == int(v)
                   and abs(v) >= 1 else v)


def select_trials(trials_df: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """Rows whose ``trial_id`` equals, or uniquely starts or ends with, each id."""
    picked = []
    for i in ids:
        exact = trials_df[trials_df["trial_id"] == i]
        if exact.empty:
            exact = trials_df[trials_df["trial_id"].str.endswith(i) | trials_df["trial_id"].str.startswith(i)]
        if len(exact) != 1:
            raise ValueError(f"run {i!r}: {'no' if exact.empty else 'several'} matching trial "
                             f"(ids: {', '.join(trials_df['trial_id'][:12])}{'...' if len(trials_df) > 12 else ''})")
        picked.append(exact)
    return pd.concat(picked)


# -- TensorBoard ---------------------------------------------------------------------------------

def read_tensorboard_scalars(path) -> pd.DataFrame:
    """Scalars of one ``events.out.tfevents*`` file (or of every one under a
    folder): ``tag, step, value``. A TFRecord reader on tensorboardX's protobuf,
    so tests can check what ``tensorboard --logdir`` will show without TensorBoard."""
    from tensorboardX.proto import event_pb2

    path = Path(path)
    files = sorted(path.rglob("events.out.tfevents*")) if path.is_dir() else [path]
    rows = []
    for file in files:
        data = file.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            start = pos + 12
            if start + length + 4 > len(data):
                break  # a record still being written
            event = event_pb2.Event.FromString(data[start:start + length])
            pos = start + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    rows.append({"file": file.name, "tag": value.tag, "step": int(event.step),
                                 "value": float(value.simple_value)})
    return pd.DataFrame(rows, columns=["file", "tag", "step", "value"])


# -- what the ``ecg-ray runs`` / ``ecg-ray ablation`` commands print -------------------------------

def _plain(v):
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def list_table(trials_df: pd.DataFrame, sort: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """The trial table ``runs list`` shows: ``columns`` (default ``SUMMARY_COLUMNS``),
    sorted by ``sort`` (a column or metric; best first), default the headline's best."""
    cols = [c for c in (columns or SUMMARY_COLUMNS) if c in trials_df]
    missing = [c for c in (columns or []) if c not in trials_df]
    if missing:
        raise ValueError(f"unknown column(s) {', '.join(missing)}; available: {', '.join(trials_df.columns)}")
    key = metric_column(trials_df, sort, "best") if sort else ("best_val_f1_cinc" if "best_val_f1_cinc" in trials_df
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
            "value": _plain(row[col]), "status": row["status"], "epochs": _plain(row["epochs"]),
            "best_epoch": _plain(row.get("best_epoch")), "best_val_f1_cinc": _plain(row.get("best_val_f1_cinc")),
            "config": {c: _plain(row[c]) for c in config_cols}, "checkpoint": _plain(row.get("checkpoint")),
            "path": _plain(row.get("path"))}


def format_best(record: dict, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(record, indent=1)
    flat = {k: v for k, v in record.items() if k != "config"}
    flat.update({f"config.{k}": v for k, v in record["config"].items()})
    frame = pd.DataFrame({"field": list(flat), "value": [_fmt(v) for v in flat.values()]})
    return render(frame, fmt)


def compare_runs(trials_df: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """``compare_table`` of ``runs``: trial ids (or unique prefixes/suffixes) of
    ``trials_df``, or folders (another experiment, or ``ecg-ray train`` runs)."""
    frames = []
    for run in runs:
        if Path(run).is_dir() or _is_uri(run):
            other, _ = load_experiment(run)
            frames.append(other)
        else:
            frames.append(select_trials(trials_df, [run]))
    df = pd.concat(frames, ignore_index=True)
    if df["trial_id"].duplicated().any():  # same folder name twice: keep the columns apart
        df["trial_id"] = [f"{t}#{i}" if d else t for i, (t, d) in
                          enumerate(zip(df["trial_id"], df["trial_id"].duplicated(keep=False)))]
    df.attrs.update(trials_df.attrs)
    cols = list(dict.fromkeys([*trials_df.attrs.get("config_columns", []),
                               *[c for f in frames for c in f.attrs.get("config_columns", [])]]))
    df.attrs["config_columns"] = cols
    return compare_table(df)


def format_ablation(result: Ablation, fmt: str = "table") -> str:
    """The ablation as text: ``json`` (everything), ``csv`` (the level table),
    ``table`` / ``markdown`` (levels, interaction, notes, seed stability)."""
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=1, default=str)
    if fmt == "csv":
        return render(result.levels, "csv")
    head = "### " if fmt == "markdown" else ""
    pct = f"{result.confidence:.0%}"
    parts = [f"{head}{result.metric} ({result.mode}) by level: mean, {pct} CI ({result.method}), rank "
             f"over {result.n_trials} trials"
             + (f"; left out: {', '.join(result.excluded)}" if result.excluded else ""),
             "", render(result.levels, fmt, ".4f")]
    if result.interaction is not None and result.interaction.size:
        parts += ["", f"{head}{result.interaction.index.name} x {result.interaction.columns.name}: "
                      f"mean {result.metric} per cell", "", render(result.interaction, fmt, ".4f", index=True)]
    if result.notes:
        parts += ["", f"{head}Notes", ""] + [f"- {n}" for n in result.notes]
    parts += ["", f"{head}Seed stability (mean ± sd across seeds of each config)", "",
              render(result.stability, fmt, ".4f")]
    return "\n".join(parts)
