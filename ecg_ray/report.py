"""``ecg-ray report EXP --out results/<name>/``: one markdown report of a sweep
(or of an ``ecg-ray train`` run) with its figures and tables.

What it holds: the data, split and config hash the runs saw and the command
that made them; the trial table; the best trial (Tune's choice) with its
training curves, and — when the prepared dataset is at hand — its
recording-level confusion matrix and one-vs-rest ROC on the validation records
it was scored on (the checkpoint run in torch, no Ray; the recomputed F1 is
checked against the one the trial reported); the ablation (per-factor means
with confidence intervals, ranks, the model x imbalance interaction, notes,
seed stability); a preprocessing figure of a real record and one figure per
augmentation on a real segment; and how to open the sweep in TensorBoard.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import CLASS_KEYS, CLASSES, HEADLINE, plots
from .artifacts import json_safe, write_json
from .data import store
from .data.dataset import PreparedDataset
from .data.errors import DataError
from .data.preprocess import PreprocessConfig, preprocess_record
from .data.sources import DEFAULT_SOURCE, get_source
from .tables import render
from .tuning import effects
from .tuning import experiment as exp

FIGURES = "figures"


# -- validation predictions of a checkpoint ------------------------------------------------------

def predict_records(checkpoint, prepared, record_ids) -> dict:
    """Run ``checkpoint`` (eval mode, CPU, no Ray) on the inference windows of
    ``record_ids``, aggregated per recording as training's validation did.

    Returns ``record_ids`` (sorted), ``y_true``, ``probs`` (recording level),
    ``metrics`` (``training.metrics.score_records`` keys, ``val_`` prefix),
    ``confusion`` (4x4, rows true), ``epoch`` and ``reported`` (the metrics the
    checkpoint was saved with)."""
    from .training.calibration import checkpoint_window_logits
    from .training.checkpoint import load_checkpoint
    from .training.metrics import confusion, record_probabilities, score_records

    payload = load_checkpoint(checkpoint)
    ids, y_rec, logits, codes = checkpoint_window_logits(payload, prepared, list(record_ids), with_ids=True)
    if len(ids) == 0:
        raise ValueError(f"none of the {len(record_ids)} records is in {prepared}")
    aggregate = payload.get("config", {}).get("aggregate", "mean_prob")
    # scored as training's validation scored it (temperature 1), so the reported value can be checked
    p_rec = record_probabilities(logits, codes, len(ids), aggregate)
    metrics = score_records(y_rec, logits, codes, aggregate)
    order = np.argsort(ids, kind="stable")
    ids, y_rec, p_rec = ids[order], y_rec[order], p_rec[order]
    return {"record_ids": ids.tolist(), "y_true": y_rec, "probs": p_rec, "metrics": metrics,
            "confusion": confusion(y_rec, p_rec.argmax(1)), "epoch": payload.get("epoch"),
            "reported": payload.get("metrics", {}), "segments": int(len(logits))}


# -- report --------------------------------------------------------------------------------------

def _md_kv(rows: list[tuple[str, object]]) -> str:
    """A markdown list of ``- **key**: value``, rows without a value left out."""
    return "\n".join(f"- **{k}**: {v}" for k, v in rows if v not in (None, ""))


def _img(path: Path, out: Path, alt: str) -> str:
    """A markdown image of ``path``, linked relative to the report folder ``out``."""
    return f"![{alt}]({Path(path).resolve().relative_to(out.resolve()).as_posix()})"


def _first_int(trials: pd.DataFrame, key: str) -> int | None:
    """The first trial's integer setting ``key`` (None where unset)."""
    value = trials[key].iloc[0] if key in trials and len(trials) else None
    return None if value is None or pd.isna(value) else int(value)


def build_report(experiment, out, *, metric: str | None = None, mode: str | None = None,
                 prepared=None, records_dir=None, evaluate: bool = True, record: str | None = None,
                 command: str | None = None) -> Path:
    """Write ``out/report.md`` (+ ``out/figures/*.png``, ``trials.csv``,
    ``epochs.csv``, ``ablation.json``, ``effects.json``) for a sweep or train-run folder; returns
    the report path. ``prepared`` / ``records_dir`` override where the data is
    looked up (default: from ``ecg_ray_sweep.json`` / ``results.json`` and the
    prepared manifest); without them the validation and data figures are
    skipped with a note. ``evaluate=False`` skips running the best checkpoint."""
    out = Path(out)
    fig_dir = out / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob("*.png"):  # a rerun must not leave figures of another sweep behind
        old.unlink()
    trials, epochs = exp.load_experiment(experiment)
    attrs = trials.attrs
    metric = exp.normalize_metric(metric or attrs.get("metric") or HEADLINE)
    mode = mode or attrs.get("mode") or exp.default_mode(metric)
    # the prepared folder, manifest and feed the runs read, where known
    sweep, data = attrs.get("sweep") or {}, attrs.get("data") or {}
    prepared = prepared or sweep.get("prepared") or data.get("prepared")
    manifest = {}
    if prepared and Path(prepared).is_dir():
        with contextlib.suppress(Exception):  # a moved or incomplete prepared folder: report without it
            manifest = PreparedDataset(prepared).manifest
    prepared = Path(prepared) if prepared else None
    readable = prepared if prepared and prepared.exists() else None  # a folder since deleted: named, not read
    feed = sweep.get("feed") or {k: v for k, v in data.items() if k not in ("prepared", "config_hash")}
    command = command or shlex.join(["ecg-ray", *sys.argv[1:]])
    is_sweep = attrs.get("kind") == "tune"
    name = attrs.get("name") or Path(str(experiment)).name
    n = len(trials)
    with_ablation = is_sweep and n > 1
    notes: list[str] = []

    trials.to_csv(out / "trials.csv", index=False)
    if not epochs.empty:
        epochs.to_csv(out / "epochs.csv", index=False)

    md = [f"# {'Sweep' if is_sweep else 'Training run'} report: {name}\n",
          f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by\n\n```\n{command}\n```\n"]
    produced = shlex.join(sweep["argv"]) if sweep.get("argv") else None
    resumed = "--resume" in (sweep.get("argv") or [])
    md.append(_md_kv([
        ("Experiment", f"`{attrs.get('path')}`"),
        ("Produced by", f"`{produced}`" + (" (the last run of the sweep: started by the same command without "
                                           "`--resume`, then resumed with this one)" if resumed else "")
         if produced else None),
        ("Search space", f"`{sweep['spec']}`" if sweep.get("spec") else None),
        ("Sweep wall time", f"{sweep['seconds']:.0f} s{' (the resumed run)' if resumed else ''}"
         if sweep.get("seconds") else None),
        ("Ranking metric", f"`{metric}` ({mode}), Tune's default scope: each trial's last reported value"
         if is_sweep else None),
    ]) + "\n")

    # -- data
    md.append("## Data\n")
    pre = manifest.get("preprocess", {})
    splits = manifest.get("splits", {})
    config_hash = sweep.get("config_hash") or data.get("config_hash") or manifest.get("config_hash")
    val_fold, max_records = _first_int(trials, "val_fold"), _first_int(trials, "max_records")
    counts = feed.get("class_counts")
    md.append(_md_kv([
        ("Source", f"{manifest.get('source', '?')} records in `{manifest.get('data_dir', '?')}`"
                   f" ({manifest.get('n_records', '?')} records, {manifest.get('n_segments', '?')} segments)"
         if manifest else None),
        ("Prepared dataset", f"`{prepared}`" if prepared else "unknown (pass --data)"),
        ("Config hash", f"`{config_hash}`" if config_hash else None),
        ("Preprocessing", f"bandpass {pre.get('lowcut')}–{pre.get('highcut')} Hz (order {pre.get('order')}), "
                          f"{pre.get('fs'):g} Hz, z-score, segments of {pre.get('segment_length')} samples, "
                          f"stride {pre.get('stride') or pre.get('segment_length')}" if pre else None),
        ("Split", (f"recording-level, stratified={splits.get('stratified')}, seed {splits.get('seed')}; "
                   + ("the saved train/val split" if val_fold is None else f"fold {val_fold} held out")
                   + (f"; training records capped at {max_records} (stratified subsample, validation "
                      f"max({max_records}//4, 40))" if max_records else "")) if splits or val_fold is not None
         else None),
        ("Records used", f"{feed.get('train_records')} training ({feed.get('train_segments')} segments), "
                         f"{feed.get('val_records')} validation ({feed.get('val_segments')} segments)"
         if feed.get("train_records") is not None else None),
        ("Training segments per class", ", ".join(f"{c} {k}" for c, k in zip(CLASSES, counts)) if counts else None),
    ]) + "\n")

    # -- trials
    md.append("## Trials\n")
    status = trials["status"].value_counts().to_dict()
    stops = trials["stop_reason"].value_counts()
    max_epochs = attrs.get("max_epochs")
    md.append(f"{n} trial{'s' if n != 1 else ''}: " + ", ".join(f"{v} {k}" for k, v in status.items()) +
              (f"; {stops.get('asha', 0)} stopped by ASHA, {stops.get('patience', 0)} by early stopping"
               if is_sweep else "") +
              f"; {int(trials['epochs'].sum())} trial-epochs" +
              (f" (exhaustive: {n * max_epochs})" if is_sweep and max_epochs else "") + ".\n")
    cols = [c for c in exp.SUMMARY_COLUMNS if c in trials]
    table = trials[cols].sort_values(f"best_{HEADLINE}", ascending=False, na_position="last", kind="stable")
    md.append(render(table, "markdown", ".3f") + "\n")
    table_png = plots.save(plots.summary_table_figure(table, "Trials"), fig_dir / "trials_table.png")
    md.append(_img(table_png, out, "trial table") + "\n")
    retried = trials[trials["retried"]] if "retried" in trials else trials.iloc[:0]
    if len(retried):
        md.append("Retried trials (a lost node or worker; each resumed from its last checkpoint):\n")
        md.append("\n".join(f"- `{r.trial_id}`: reported from {r.nodes} node(s), {r.epochs} epochs kept"
                            for r in retried.itertuples()) + "\n")
    errored = trials[trials["status"] == "ERROR"]
    if len(errored):
        md.append("Errored trials (left out of the ablation):\n")
        md.append("\n".join(f"- `{r.trial_id}`: {r.error}" for r in errored.itertuples()) + "\n")

    # -- best trial
    md.append("## Best trial\n" if is_sweep else "## The run\n")
    try:
        best = exp.best_trial(trials, metric, mode)
    except ValueError as e:
        best = None
        md.append(f"No best trial: {e}\n")
    if best is not None:
        md.append(_best_section(best, trials, epochs, metric, mode, fig_dir, out))
        checkpoint = best.get("checkpoint")
        if evaluate and checkpoint and isinstance(checkpoint, str) and readable and Path(checkpoint).exists():
            md.append(_validation_section(checkpoint, readable, fig_dir, out, val_fold, max_records))
        elif evaluate:
            notes.append("validation confusion matrix / ROC skipped: "
                         + ("no checkpoint on storage" if not checkpoint else "prepared dataset not found (--data)"))

    if with_ablation:
        md.append(_ablation_section(trials, fig_dir, out, epochs))

    md += ["## Data figures\n", _data_figures(manifest, readable, records_dir, record, fig_dir, out, notes)]

    if is_sweep:
        local = "://" not in str(attrs.get("path"))
        events = sorted(Path(attrs["path"]).glob("*/events.out.tfevents*")) if local else []
        md.append("## TensorBoard\n")
        md.append(f"Tune writes TensorBoard event files for every trial ({len(events)} files under the "
                  f"experiment{'' if local else ' — not counted for a remote URI'}). Watch a running or "
                  f"finished sweep with\n\n```\ntensorboard --logdir {attrs.get('path')}\n```\n\n"
                  f"(scalars under `ray/tune/`, e.g. `ray/tune/{HEADLINE}`, one run per trial).\n")

    md += ["## Reproduce\n", "```\n" + "\n".join(filter(None, [produced, command])) + "\n```\n"]
    md.append("Tables as data: `trials.csv` (one row per trial), `epochs.csv` (one row per trial-epoch)"
              + (", `ablation.json`, `effects.json`" if with_ablation else "") + ".\n")
    if notes:
        md.append("Notes: " + "; ".join(notes) + ".\n")
    report = out / "report.md"
    report.write_text("\n".join(md))
    return report


def _best_section(best: pd.Series, trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, mode: str,
                  fig_dir: Path, out: Path) -> str:
    """The best trial (Tune's choice) or the run: its metric, config, training curves and all trials overlaid."""
    is_sweep = trials.attrs.get("kind") == "tune"
    col = exp.metric_column(trials, metric, "last")
    config = {k: json_safe(best.get(k)) for k in ("model", "imbalance", "augment", "lr", "seed", "batch_size")
              if k in best}
    chosen = (f"Tune's `get_best_result({metric!r}, {mode!r})` — the same as "
              f"`ecg-ray runs {trials.attrs.get('path')} best --metric {metric} --mode {mode}`: trial "
              if is_sweep else "Run ")
    parts = [f"{chosen}**{best['trial_id']}**, {col} = {best[col]:.4f} (best epoch "
             f"{best['best_epoch'] if pd.notna(best['best_epoch']) else '?'} of {best['epochs']}: "
             f"{HEADLINE} {best[f'best_{HEADLINE}']:.4f}).\n",
             _md_kv([("Config", f"`{json.dumps(config, default=str)}`"), ("Epochs", f"{best['epochs']}"),
                     ("Checkpoint", f"`{best.get('checkpoint')}`")]) + "\n"]
    run_epochs = epochs[epochs["trial_id"] == best["trial_id"]] if not epochs.empty else epochs
    if len(run_epochs):
        fig = plots.training_curves_figure(run_epochs, f"Trial {best['trial_id']}: {config.get('model')}, "
                                                       f"{config.get('imbalance')}, augment {config.get('augment')}")
        path = plots.save(fig, fig_dir / "best_curves.png")
        parts.append(_img(path, out, "training curves of the best trial") + "\n")
    if not epochs.empty and epochs["trial_id"].nunique() > 1:
        labels = {r.trial_id: f"{r.trial_id[-5:]} {r.model}/{r.imbalance}/{r.augment}"
                  for r in trials.itertuples() if hasattr(r, "model")}
        runs = {labels.get(t, t): g for t, g in epochs.groupby("trial_id", sort=True)}
        overlay = plots.save(plots.runs_overlay_figure(runs), fig_dir / "all_trials_curves.png")
        parts += ["All trials, validation F1(N,A,O) and loss per epoch (a short line is a trial ASHA stopped):\n",
                  _img(overlay, out, "all trials overlaid") + "\n"]
    return "\n".join(parts)


def _validation_section(checkpoint, prepared, fig_dir: Path, out: Path, val_fold, max_records) -> str:
    """The best checkpoint re-run on the validation records its run was scored on
    (``PreparedDataset.select``, as training selects them): metrics, confusion matrix, ROC."""
    pred = predict_records(checkpoint, prepared, PreparedDataset(prepared).select(val_fold, max_records)[1])
    m = pred["metrics"]
    cm = plots.confusion_matrix_figure(pred["confusion"], title=f"Validation, {len(pred['record_ids'])} recordings")
    cm_path = plots.save(cm, fig_dir / "best_confusion.png")
    roc_path = plots.save(plots.roc_figure(pred["y_true"], pred["probs"]), fig_dir / "best_roc.png")
    keys = [("f1", "F1"), ("sens", "sensitivity"), ("spec", "specificity"), ("auroc", "AUROC")]
    per_class = pd.DataFrame({label: [m[f"val_{k}_{c}"] for c in CLASS_KEYS] for k, label in keys},
                             index=pd.Index(CLASSES, name="class"))
    rep = pred["reported"].get(HEADLINE)
    check = ("nothing reported to check" if rep is None else
             f"reported at that epoch: {rep:.4f} — {'matches' if abs(rep - m[HEADLINE]) < 1e-4 else 'DIFFERS'}")
    headline = pd.DataFrame([{"level": level, **{k: m[f"{prefix}{k}"] for k in
                                                 ("f1_cinc", "f1_macro", "f1_weighted", "accuracy", "auroc_macro")}}
                             for level, prefix in (("recordings", "val_"), ("segments", "val_seg_"))])
    return "\n".join([
        f"### Validation predictions of the best checkpoint (epoch {pred['epoch'] + 1})\n",
        f"The checkpoint run in torch on the {len(pred['record_ids'])} validation recordings "
        f"({pred['segments']} segments) it was scored on; segment probabilities averaged per recording. "
        f"Recomputed F1(N,A,O) {m[HEADLINE]:.4f} ({check}).\n",
        render(headline, "markdown", ".3f") + "\n",
        render(per_class, "markdown", ".3f", index=True) + "\n",
        _img(cm_path, out, "confusion matrix") + " " + _img(roc_path, out, "ROC curves") + "\n",
    ])


def _ablation_section(trials: pd.DataFrame, fig_dir: Path, out: Path, epochs: pd.DataFrame | None = None) -> str:
    answer = effects.ablation_answer(trials, epochs, legacy=False)  # no epochs: what the trials table reveals
    write_json(out / "effects.json", answer)
    result = effects.ablation(trials, f"best_{HEADLINE}")
    write_json(out / "ablation.json", result.to_dict(), default=str)
    label = "best val F1(N,A,O)"
    parts = ["## Ablation\n",
             "The answer compares trials at one budget only (`ecg-ray ablation`; all of it in `effects.json`, "
             "with ASHA's per-rung readings).\n",
             effects.format_effects(answer["fixed_budget"], "markdown", 3) + "\n",
             "### Best-of-trial, budget-confounded\n",
             "For comparison only: under ASHA the trials below ran different numbers of epochs. "
             f"Metric: each trial's **best** validation F1(N,A,O) over its epochs ({result.n_trials} trials"
             + (f"; left out: {', '.join(result.excluded)}" if result.excluded else "") + "). Per level: "
             f"the mean over every trial at that level (across the other factors and seeds), "
             f"{result.confidence:.0%} t confidence interval (`scipy.stats.t`, n − 1 degrees of freedom), "
             "rank 1 = best. Trials ASHA stopped count with the best value they reached.\n",
             render(result.levels, "markdown", ".3f") + "\n"]
    if len(result.levels):
        bars = plots.factor_bars_figure(result.levels, label, result.confidence)
        parts.append(_img(plots.save(bars, fig_dir / "ablation_bars.png"), out, "per-factor means with CIs") + "\n")
    if result.interaction is not None and result.interaction.size:
        inter = result.interaction.copy()
        parts.append(f"### {inter.index.name} × {inter.columns.name} interaction (mean {label} per cell)\n")
        parts.append(render(inter, "markdown", ".3f", index=True) + "\n")
        heatmap = plots.ablation_heatmap_figure(inter, f"mean {label}", result.interaction_n)
        parts.append(_img(plots.save(heatmap, fig_dir / "ablation_heatmap.png"), out, "interaction heatmap") + "\n")
    if result.notes:
        parts += ["### Notes\n", "\n".join(f"- {n}" for n in result.notes) + "\n"]
    parts.append("### Seed stability (mean ± sd across seeds of each config)\n")
    parts.append(render(result.stability, "markdown", ".3f") + "\n")
    return "\n".join(parts)


def _pick_record(manifest: dict, prepared, wanted: str | None) -> tuple[str | None, str | None]:
    """A validation record to draw (first AF record, else the first one) and its label."""
    if wanted:
        return wanted, None
    val = (manifest.get("splits", {}).get("split", {}) or {}).get("val") or []
    if not val or not prepared:
        return None, None
    labels = PreparedDataset(prepared).labels()
    rid = next((r for r in val if labels.get(r) == "A"), val[0])
    return rid, labels.get(rid)


def _data_figures(manifest: dict, prepared, records_dir, record, fig_dir: Path, out: Path, notes: list) -> str:
    """A real record's preprocessing figure and one figure per augmentation on one of its segments."""
    cfg = PreprocessConfig.from_dict(manifest["preprocess"]) if manifest.get("preprocess") else PreprocessConfig()
    records_dir = records_dir if records_dir is not None else manifest.get("data_dir")
    records_dir = Path(records_dir) if records_dir else None
    src = get_source(manifest.get("source", DEFAULT_SOURCE))
    drawable = bool(records_dir) and not src.grouped  # whole recordings, not windows cut from them
    record, label = _pick_record(manifest, prepared, record)
    if record is None and drawable:
        with contextlib.suppress(DataError):
            labels = src.labels(records_dir)[1] or {}
            record = next((r for r, l in labels.items() if l == "A"), next(iter(labels), None))
            label = labels.get(record)
    on_disk = bool(records_dir and record) and (records_dir / f"{record}.hea").is_file()
    parts = []
    if drawable and on_disk:
        path = plots.save(plots.preprocessing_figure(records_dir, record, cfg, label), fig_dir / "preprocessing.png")
        parts.append(f"Preprocessing of record `{record}`: raw, filtered and z-scored, and the "
                     "segments the model sees with their boundaries.\n")
        parts.append(_img(path, out, "preprocessing") + "\n")
    else:
        notes.append("preprocessing figure skipped: records folder not found (--data-dir)")
    segment = None
    if prepared and record:
        table = store.load_segments(Path(prepared), [record])
        if table.num_rows:
            segment = store.signal_matrix(table)[0]
    if segment is None and on_disk:
        _, _, signal, fs = src.read(records_dir, record)[0][0]
        segment = preprocess_record(signal, fs, cfg, record)[0][0]
    if segment is not None:
        paths = plots.plot_augmentations(segment, fig_dir, fs=cfg.fs)
        parts.append(f"Each augmentation applied (p = 1, seed 0) to the first segment of `{record}`; "
                     "in training each is applied per sample with probability `augment_p`.\n")
        parts.append("\n".join(_img(p, out, p.stem) for p in paths) + "\n")
    else:
        notes.append("augmentation figures skipped: no real segment found")
    return "\n".join(parts) if parts else "(no data available to draw)\n"
