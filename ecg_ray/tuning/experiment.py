"""An experiment read back as pandas: one row per trial, one row per trial-epoch.

``load_experiment(path)`` accepts

- a Ray Tune experiment folder written by ``ecg-ray sweep`` (``<storage>/<name>``,
  local path or URI such as ``s3://bucket/sweeps/ablation`` or ``file:///...``,
  read through ``pyarrow.fs``), finished, still running, or resumed: trial
  status, config and last result come from Ray's own ``ExperimentAnalysis`` (the
  experiment state Tune saves), the epochs from each trial's ``result.json`` on
  storage (fresher than the state while a sweep runs; epochs rerun after a
  resume are counted once, last one wins). A folder without an experiment state
  yet (a sweep that just started) is read from its trial folders alone.
- a single ``ecg-ray train --out RUN`` folder (an ``artifacts.Run``).

``best_trial`` picks the trial Tune's ``ResultGrid.get_best_result(metric, mode)``
picks; ``train_config_from`` turns a run, crossval or sweep folder (its best
trial), checkpoint or YAML into a ``TrainConfig``.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs
import yaml

from .. import HEADLINE
from ..artifacts import Run
from ..data.errors import DataError
from ..training.augment import augment_label as normalize_augment
from ..training.checkpoint import FILENAME, load_checkpoint
from ..training.config import TrainConfig
from .search_space import is_number

#: Metrics whose best epoch value gets a ``best_<metric>`` column (and its direction).
BEST_METRICS: dict[str, str] = {
    HEADLINE: "max", "val_f1_macro": "max", "val_f1_weighted": "max", "val_accuracy": "max",
    "val_auroc_macro": "max", "val_seg_f1_cinc": "max", "val_loss": "min",
}
#: Short names accepted wherever a metric is asked for (``runs best --metric auroc``).
METRIC_ALIASES: dict[str, str] = {
    "f1": HEADLINE, "auroc": "val_auroc_macro", "auc": "val_auroc_macro", "loss": "val_loss",
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
                   "stopped_early", "best_epoch", f"best_{HEADLINE}", f"final_{HEADLINE}",
                   "best_val_auroc_macro", "time_s"]


# -- storage: local paths and URIs, through pyarrow.fs -------------------------------------------

def _is_uri(path) -> bool:
    return "://" in str(path)


def _fs_path(path) -> str:
    """A path as its pyarrow filesystem names it: ``s3://bucket/x`` → ``bucket/x``, ``file:///x`` → ``/x``."""
    return str(path).split("://", 1)[-1]


def _exists(fs: pyarrow.fs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def _read_text(fs: pyarrow.fs.FileSystem, path: str) -> str | None:
    """A file's text, or None if it is missing or unreadable."""
    with contextlib.suppress(OSError), fs.open_input_stream(path) as f:
        return f.read().decode()
    return None


def _read_json(fs: pyarrow.fs.FileSystem, path: str) -> dict:
    """A JSON file's content, or ``{}`` if it is missing or unreadable."""
    with contextlib.suppress(json.JSONDecodeError):
        return json.loads(_read_text(fs, path) or "{}")
    return {}


# -- normalising configs -------------------------------------------------------------------------

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
        with contextlib.suppress(json.JSONDecodeError):  # a blank or half-written line
            rows.append(json.loads(line))
    return [row for row in rows if isinstance(row, dict)]


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


def _merge_history(trial_id: str, history: list[dict], results: list[dict]) -> list[dict]:
    """Epoch rows of a trial from its ``result.json`` reports, with the checkpoint's
    ``history`` filling epochs a restart dropped from ``result.json``: only epochs up
    to the last one Tune recorded. A trial that ASHA stopped can still finish and
    checkpoint one more epoch before its worker is killed; Tune never saw it."""
    reported = _epoch_rows(trial_id, results)
    if reported:
        last = reported[-1]["epoch"]
        history = [h for h in history if h.get("epoch", last + 1) <= last]
    return _epoch_rows(trial_id, history + results)


def _checkpoint_history(fs: pyarrow.fs.FileSystem, root: str, trial_id: str) -> list[dict]:
    """The per-epoch metrics kept in the trial's latest Train checkpoint.

    Tune restarts a killed trial's function from scratch, and the restarted trial's
    ``result.json`` then lacks the epochs reported before the kill; the Train run
    resumed from its checkpoint, whose ``history`` has them all. Local storage only."""
    if not isinstance(fs, pyarrow.fs.LocalFileSystem):
        return []
    folders = sorted(p for p in Path(root).glob(f"train_{trial_id}/checkpoint_*") if p.is_dir())
    if folders:
        with contextlib.suppress(OSError, ValueError):  # an unreadable checkpoint: no history
            return list(load_checkpoint(folders[-1]).get("history") or [])
    return []


def _trial_row(trial_id: str, status: str, config: dict, epochs: list[dict], last_result: dict | None,
               all_results: list[dict], fs: pyarrow.fs.FileSystem | None) -> dict:
    """A trial's row before ``_frames``: config, ``final_``/``best_`` metrics,
    best epoch and checkpoint, nodes, time. ``fs``: where to check that checkpoints remain."""
    row = {"trial_id": trial_id, "status": status, **flatten_config(config)}
    last = epochs[-1] if epochs else {}
    # Tune ranks on the last *reported* result: its own last_result when at least as new as disk.
    if last_result and any(k not in TUNE_KEYS for k in last_result):
        if not last or last_result.get("epoch", -1) >= last.get("epoch", -1):
            last = last_result
    row["epochs"] = len(epochs)
    for key, value in last.items():
        if key not in TUNE_KEYS and key != f"best_{HEADLINE}" and is_number(value):
            row[f"final_{key}"] = float(value)
    row["patience_stopped"] = bool(last.get("early_stopped", False))
    frame = pd.DataFrame(epochs)
    for metric, mode in BEST_METRICS.items():
        values = pd.to_numeric(frame[metric], errors="coerce") if metric in frame else pd.Series(dtype=float)
        row[f"best_{metric}"] = float(values.agg(mode))
    row.update(best_epoch=float("nan"), checkpoint=None)
    if HEADLINE in frame and frame[HEADLINE].notna().any():
        row["best_epoch"] = int(frame.loc[pd.to_numeric(frame[HEADLINE]).idxmax(), "epoch"]) + 1
        if "checkpoint_path" in frame and fs is not None:
            # Train keeps the top checkpoints by the headline: the best one still on storage.
            kept = frame[frame["checkpoint_path"].map(lambda p: isinstance(p, str) and _exists(fs, _fs_path(p)))]
            if len(kept):
                row["checkpoint"] = kept.loc[pd.to_numeric(kept[HEADLINE]).idxmax(), "checkpoint_path"]
    # a trial retried after a lost node or worker shows up as epochs reported from more than one node
    nodes = {r["node_id"] for r in all_results or epochs if isinstance(r.get("node_id"), str)}
    row["nodes"] = len(nodes)
    row["retried"] = len(nodes) > 1 or len(all_results) > len(epochs)
    row["time_s"] = (float(sum(r.get("time_this_iter_s") or 0.0 for r in all_results)) if all_results
                     else float(last.get("time_total_s") or 0.0))
    return row


# -- experiments ---------------------------------------------------------------------------------

is_train_run = Run.holds  # a single ``ecg-ray train --out`` folder (it holds ``results.json``)


def _load_train_run(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    run = Run(Path(path).resolve())
    results, config = run.results, run.config
    epochs = _epoch_rows(run.path.name, run.history)
    row = _trial_row(run.path.name, "TERMINATED", config, epochs, None, [], None)
    row["time_s"] = float(results.get("seconds") or 0.0)
    row["checkpoint"] = str(run.checkpoint) if run.checkpoint else None
    if results.get("best_epoch") is not None:
        row["best_epoch"] = int(results["best_epoch"]) + 1
    row.update(path=str(run.path), error="", tune_order=0)
    return _frames([row], epochs, [config], {
        "kind": "train", "path": str(run.path), "name": run.path.name,
        "max_epochs": int(config.get("num_epochs") or row["epochs"]), "metric": HEADLINE, "mode": "max",
        "data": results.get("data", {}), "started": results.get("started"), "seconds": results.get("seconds")})


def _frames(rows: list[dict], epoch_rows: list[dict], configs: list[dict],
            info: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(trials_df, epochs_df)`` from the trial rows (stop reasons added, columns in reading order,
    sorted by ``trial_id``) and epoch rows, ``info`` (plus ``config_columns``) in both frames' ``.attrs``."""
    df = pd.DataFrame(rows)
    df["stopped_early"] = (df["status"] == "TERMINATED") & (df["epochs"] < info["max_epochs"])
    df["stop_reason"] = np.select([df["status"] == "ERROR", df["patience_stopped"] & df["stopped_early"],
                                   df["stopped_early"]], ["error", "patience", "asha"], "")
    first = ["trial_id", "status", *[f for f in FACTORS if f in df], *[c for c in ("lr", "seed") if c in df]]
    tail = ["epochs", "stopped_early", "stop_reason", "patience_stopped", "best_epoch"]
    df["best_epoch"] = pd.to_numeric(df["best_epoch"], errors="coerce").astype("Int64")
    metrics = sorted(c for c in df if c.startswith("best_") and c not in tail)
    metrics += sorted(c for c in df if c.startswith("final_"))
    end = ["time_s", "checkpoint", "path", "error", "tune_order"]
    middle = [c for c in df if c not in first + tail + metrics + end]
    trials = df[first + middle + tail + metrics + end].sort_values("trial_id", kind="stable").reset_index(drop=True)
    epochs = pd.DataFrame(epoch_rows)
    if not epochs.empty:
        epochs = epochs[["trial_id", "epoch", *[c for c in epochs if c not in ("trial_id", "epoch")]]]
    info["config_columns"] = list(dict.fromkeys(k for c in configs for k in flatten_config(c)))
    trials.attrs.update(info)
    epochs.attrs.update(info)
    return trials, epochs


def _scan_trial_dirs(fs: pyarrow.fs.FileSystem, root: str) -> list[tuple[str, str]]:
    """``(trial_id, trial folder)`` of every ``run_trial_*`` folder holding params.json.

    A trial that started just before its job was stopped can leave a folder with no
    ``result.json``; on resume Tune reruns it under the same id in a new folder. One
    folder per trial id is kept: the one with the most reports."""
    found: dict[str, tuple[int, str]] = {}
    entries = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    for entry in sorted(entries, key=lambda e: e.base_name):
        name, folder = entry.base_name, entry.path
        if not name.startswith(("run_", "trial_")) or not _exists(fs, f"{folder}/params.json"):
            continue
        m = re.match(r"^\w*?_([0-9a-f]{5}_\d{5})_", name)
        rows = _parse_result_lines(_read_text(fs, f"{folder}/result.json"))
        trial_id = (rows[-1].get("trial_id") if rows else None) or (m.group(1) if m else name)
        if trial_id not in found or len(rows) > found[trial_id][0]:
            found[trial_id] = (len(rows), folder)
    return [(trial_id, folder) for trial_id, (_, folder) in found.items()]


def _spec_metric(sweep: dict) -> tuple[str, str]:
    """The sweep spec's ranking ``(metric, mode)``; the headline, max, if the spec is gone or broken."""
    spec = sweep.get("spec")
    for candidate in (Path(spec), Path(__file__).resolve().parents[2] / spec) if spec else ():
        if candidate.is_file():
            try:
                data = yaml.safe_load(candidate.read_text()) or {}
                return data.get("metric", HEADLINE), data.get("mode", "max")
            except Exception:  # a spec that no longer parses: fall back to the headline
                break
    return HEADLINE, "max"


def load_experiment(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(trials_df, epochs_df)`` of a Tune experiment folder (local or URI) or of
    an ``ecg-ray train`` run folder.

    ``trials_df``: one row per trial, sorted by ``trial_id``: ``trial_id``, ``status`` (Tune's: TERMINATED,
    ERROR, RUNNING, PENDING, PAUSED), the flattened config (``model``, ``imbalance``, ``augment`` as
    ``none``/``all``/``a+b``, ``lr``, ``seed``, ...), ``epochs`` (distinct epochs reported), ``stopped_early``
    (TERMINATED with fewer epochs than the experiment's most: ASHA's pruning, or early stopping —
    ``stop_reason`` says which), ``best_epoch`` (1-based: the epoch *number* of the best val_f1_cinc, i.e. the
    reported 0-based ``epoch`` + 1, comparable with ``epochs``), ``best_<m>`` for the headline metrics (best
    epoch value), ``final_<m>`` for every numeric reported metric (last reported value, what Tune ranks on),
    ``time_s``, ``checkpoint`` (the best checkpoint still on storage), ``path``, ``error`` and ``tune_order``
    (the trial's position in Tune's list, used to break ties as Tune does).

    ``epochs_df``: one row per trial-epoch (``epoch`` as reported: 0-based) with every reported metric and Tune's
    bookkeeping (``training_iteration``, ``time_total_s``, ``checkpoint_path``...); merge with ``trials_df`` on
    ``trial_id`` for the config.

    Both frames carry ``.attrs`` with ``kind`` (``tune``/``train``), ``path``, ``name``, ``max_epochs``,
    ``metric``, ``mode``, ``config_columns`` and, for sweeps, ``sweep`` (the ``ecg_ray_sweep.json`` written
    when it finished).
    """
    if is_train_run(path):
        return _load_train_run(Path(path))
    fs, root = pyarrow.fs.FileSystem.from_uri(str(path) if _is_uri(path) else str(Path(path).resolve()))
    if fs.get_file_info(root).type != pyarrow.fs.FileType.Directory:
        raise FileNotFoundError(f"no experiment or run folder at {path}")
    try:
        from ray.tune import ExperimentAnalysis

        tune_trials = ExperimentAnalysis(str(path)).trials
    except Exception:  # no experiment state saved yet: read the trial folders alone
        tune_trials = []
    # (trial_id, Tune's status, config, folder, Tune's last result); status None: a folder Tune's state lacks
    found = [(t.trial_id, t.status, t.config or {}, t.path, dict(t.last_result or {})) for t in tune_trials]
    known = {trial_id for trial_id, *_ in found}
    found += [(trial_id, None, _read_json(fs, f"{folder}/params.json"), folder, None)
              for trial_id, folder in _scan_trial_dirs(fs, root) if trial_id not in known]

    rows, epoch_rows = [], []
    for order, (trial_id, status, config, folder, last_result) in enumerate(found):
        results = _parse_result_lines(_read_text(fs, f"{_fs_path(folder)}/result.json"))
        error = _read_text(fs, f"{_fs_path(folder)}/error.txt")
        if status is None:
            status = "ERROR" if error else ("TERMINATED" if results and results[-1].get("done") else "RUNNING")
            epochs = _epoch_rows(trial_id, results)
        else:
            # reports in result.json win; the checkpoint fills epochs a restart dropped from it
            epochs = _merge_history(trial_id, _checkpoint_history(fs, root, trial_id), results)
            if status == "PENDING" and epochs:  # the saved state lags behind a trial already reporting
                status = "RUNNING"
        row = _trial_row(trial_id, status, config, epochs, last_result, results, fs)
        lines = [line.strip()[:300] for line in (error or "").splitlines() if line.strip()]
        row.update(path=folder, error=(lines[-1] if lines else "error") if status == "ERROR" else "", tune_order=order)
        rows.append(row)
        epoch_rows += epochs
    if not rows:
        raise FileNotFoundError(f"{path}: no Ray Tune trials and no results.json — not an experiment or run folder")
    sweep = _read_json(fs, f"{root}/ecg_ray_sweep.json")
    metric, mode = _spec_metric(sweep)
    return _frames(rows, epoch_rows, [config for _, _, config, *_ in found], {
        "kind": "tune", "path": str(path), "name": Path(root).name, "max_epochs": int(max(r["epochs"] for r in rows)),
        "metric": metric, "mode": mode, "sweep": sweep})


def metric_column(trials_df: pd.DataFrame, metric: str, scope: str = "last") -> str:
    """The ``trials_df`` column of ``metric``: a column name as is, else ``final_<m>`` (scope
    ``last``, Tune's default) or ``best_<m>`` (scope ``best`` / ``all``), ``m`` normalised
    (``f1_cinc`` → ``val_f1_cinc``, ``auroc`` → ``val_auroc_macro``)."""
    m = normalize_metric(metric)
    prefix = "final_" if scope == "last" else "best_"
    for candidate in (metric, m, prefix + m, prefix + metric):
        if candidate in trials_df.columns:
            return candidate
    known = sorted(c[len(prefix):] for c in trials_df.columns if c.startswith(prefix))
    raise ValueError(f"unknown metric {metric!r} for scope {scope!r}; available: {', '.join(known)}")


def best_trial(trials_df: pd.DataFrame, metric: str = HEADLINE, mode: str | None = None,
               scope: str = "last") -> pd.Series:
    """The best trial's row, chosen as Ray Tune's ``get_best_result(metric, mode)`` does with its default
    ``scope="last"``: by each trial's last reported value, NaN/inf never chosen, the first trial in Tune's
    order winning a tie (and a one-trial experiment returning its trial). ``scope="best"`` ranks on the best
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
    if augment is not None:
        augment = [normalize_augment(a) for a in ([augment] if isinstance(augment, str) else augment)]
    filters = (("model", model, str), ("imbalance", imbalance, str), ("augment", augment, str),
               ("seed", seed, lambda v: str(int(v)) if is_number(v) or str(v).lstrip("-").isdigit() else str(v)),
               ("status", status, lambda v: str(v).upper()))
    for col, values, norm in filters:  # each value as ``norm`` spells it, on both sides
        if values is not None and col in df:
            values = [values] if isinstance(values, (str, int, float)) else list(values)
            df = df[df[col].map(norm).isin([norm(v) for v in values])]
    if lr_min is not None and "lr" in df:
        df = df[pd.to_numeric(df["lr"]) >= lr_min]
    if lr_max is not None and "lr" in df:
        df = df[pd.to_numeric(df["lr"]) <= lr_max]
    return df


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


# -- a training config from wherever one is recorded --------------------------------------------

def best_trial_config(sweep_dir, metric: str = HEADLINE) -> tuple[dict, str]:
    """``(config, description)`` of the trial ``best_trial`` picks in a sweep folder."""
    try:
        trials, _ = load_experiment(sweep_dir)
        best = best_trial(trials, metric)
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"no finished trial with {metric} in sweep folder {sweep_dir} ({e})") from None
    col = metric_column(trials, metric)
    config = json.loads((Path(best["path"]) / "params.json").read_text())
    return config, (f"best trial of sweep {sweep_dir} ({best['trial_id']}: {metric} {best[col]:.4f} "
                    f"after {best['epochs']} epochs)")


def train_config_from(source) -> tuple[TrainConfig, str]:
    """A ``TrainConfig`` from a run folder or its ``results.json``, a crossval folder
    (``summary.json``), a sweep folder (its best trial, as ``best_trial`` picks it), a checkpoint,
    or a YAML/JSON file of ``TrainConfig`` fields: ``(config, description)``."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"config not found: {path}")
    if path.is_dir():
        if Run.holds(path):
            return TrainConfig.from_dict(Run(path).config), f"config of run {path}"
        if (path / "summary.json").is_file():
            summary = json.loads((path / "summary.json").read_text())
            return TrainConfig.from_dict(summary["config"]), f"config of cross-validation {path}"
        if (path / FILENAME).is_file():
            return train_config_from(path / FILENAME)
        if (path / "ecg_ray_sweep.json").is_file() or any(path.glob("run_trial_*")):
            config, what = best_trial_config(path)
            return TrainConfig.from_dict(config), what
        raise DataError(f"{path}: not a run, crossval or sweep folder (no {Run.RESULTS}, summary.json, "
                        f"{FILENAME} or run_trial_* folders)")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        return TrainConfig.from_dict(load_checkpoint(path)["config"]), f"config stored in checkpoint {path}"
    try:
        text = path.read_text()
        data = yaml.safe_load(text) if suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable config ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of training options")
    if "config" in data and isinstance(data["config"], dict):  # results.json / summary.json
        return TrainConfig.from_dict(data["config"]), f"config of run {path.parent}"
    if "param_space" in data:
        raise DataError(f"{path} is a sweep spec: pass the sweep's output folder (its best trial) "
                        "or a YAML of one config's TrainConfig fields")
    return TrainConfig.from_dict(data), f"config file {path}"
