"""Every figure of the project: matplotlib on the Agg canvas, PNG, one style.

Each figure has a builder ``*_figure(...) -> Figure`` (no pyplot, no global
state: safe in tests, workers and threads) and a ``plot_*(..., out) -> Path``
that builds it in ``STYLE`` and writes the PNG. Inputs are plain pandas /
numpy: the frames of ``ecg_ray.tuning.analysis``, per-epoch history dicts of a
checkpoint, ``y_true`` + ``probs`` arrays, records read from disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import CLASS_KEYS as KEYS
from . import CLASSES, HEADLINE

DPI = 110
#: The one style of every figure.
STYLE = {
    "figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": "tight", "savefig.facecolor": "white",
    "font.size": 9.5, "axes.titlesize": 10.5, "axes.titleweight": "bold", "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5, "ytick.labelsize": 8.5, "legend.fontsize": 8, "legend.frameon": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6, "axes.spines.top": False,
    "axes.spines.right": False, "lines.linewidth": 1.6, "lines.markersize": 4,
    "axes.prop_cycle": matplotlib.cycler(color=["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]),
}
#: One colour per class everywhere (N, A, O, ~).
CLASS_COLORS = {"N": "#1f77b4", "A": "#d62728", "O": "#2ca02c", "~": "#7f7f7f"}
CLASS_KEYS = dict(zip(CLASSES, KEYS))
TRAIN_STYLE = {"linestyle": "--", "marker": "o"}
VAL_STYLE = {"linestyle": "-", "marker": "o"}
CMAP = "viridis"


def _figure(*args, **kwargs) -> Figure:
    fig = Figure(*args, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out, palette: bool = False) -> Path:
    """Write ``fig`` as PNG (``STYLE``'s dpi) to ``out``; returns the path. ``palette``:
    stored with 256 colours (median cut, no dither: a third of the bytes, nothing visible
    lost on a plot) -- for figures committed in bulk, such as the explain pages."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(STYLE):
        fig.savefig(out, format="png")
    if palette:
        from PIL import Image

        with Image.open(out) as image:
            quantized = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                                      dither=Image.Dither.NONE)
        quantized.save(out, optimize=True)
    return out


def _styled(builder):
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return builder(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = builder.__name__, builder.__doc__
    return wrapper


def _epochs_frame(epochs) -> pd.DataFrame:
    """A history (list of per-epoch dicts) or an epochs DataFrame, with ``epoch``."""
    df = epochs if isinstance(epochs, pd.DataFrame) else pd.DataFrame(list(epochs))
    if "epoch" not in df:
        df = df.assign(epoch=np.arange(len(df)))
    return df.sort_values("epoch", kind="stable")


def _series(ax, df: pd.DataFrame, key: str, label: str, **style) -> bool:
    if key not in df or not pd.to_numeric(df[key], errors="coerce").notna().any():
        return False
    ax.plot(df["epoch"] + 1, pd.to_numeric(df[key], errors="coerce"), label=label, **style)
    return True


def _epoch_axis(ax, df: pd.DataFrame) -> None:
    n = int(df["epoch"].max()) + 1 if len(df) else 1
    ax.set_xlabel("epoch")
    ax.set_xlim(0.7, n + 0.3)
    if n <= 20:
        ax.set_xticks(range(1, n + 1))


# -- training curves -----------------------------------------------------------------------------

#: Panels of ``training_curves_figure``: title, y label, [(metric key, legend label, style)].
CURVE_PANELS = [
    ("Loss", "cross-entropy", [("train_loss", "train", TRAIN_STYLE), ("val_loss", "validation", VAL_STYLE)]),
    ("Accuracy", "accuracy", [("train_acc", "train (segments)", TRAIN_STYLE),
                              ("val_seg_accuracy", "val segments", {"linestyle": ":", "marker": "s"}),
                              ("val_accuracy", "val recordings", VAL_STYLE)]),
    ("F1", "F1", [(HEADLINE, "F1(N,A,O) recordings", VAL_STYLE),
                  ("val_seg_f1_cinc", "F1(N,A,O) segments", {"linestyle": ":", "marker": "s"}),
                  ("val_f1_macro", "macro F1 (4 classes)", {"linestyle": "-.", "marker": "^"})]),
    ("Per-class F1 (recordings)", "F1", [(f"val_f1_{CLASS_KEYS[c]}", c, {**VAL_STYLE, "color": CLASS_COLORS[c]})
                                         for c in CLASSES]),
    ("AUROC (one-vs-rest, macro)", "AUROC", [("val_auroc_macro", "recordings", VAL_STYLE),
                                             ("val_seg_auroc_macro", "segments", {"linestyle": ":", "marker": "s"})]),
    ("Learning rate", "lr", [("lr", "lr", {"marker": "o", "color": "#555555"})]),
]


@_styled
def training_curves_figure(epochs, title: str | None = None) -> Figure:
    """Six panels of one run per epoch: loss, accuracy, F1, per-class F1, AUROC, lr."""
    df = _epochs_frame(epochs)
    fig = _figure(figsize=(12, 6.4), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, (name, ylabel, series) in zip(axes, CURVE_PANELS):
        drawn = [_series(ax, df, key, label, **style) for key, label, style in series]
        ax.set_title(name)
        ax.set_ylabel(ylabel)
        _epoch_axis(ax, df)
        if name != "Learning rate" and name != "Loss":
            ax.set_ylim(-0.02, 1.02)
        if name == "Learning rate" and "lr" in df and (pd.to_numeric(df["lr"]) > 0).all():
            ax.set_yscale("log")
        if sum(drawn) > 1:
            ax.legend(loc="best")
        if not any(drawn):
            ax.text(0.5, 0.5, "not reported", ha="center", va="center", transform=ax.transAxes, color="grey")
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig


def plot_training_curves(epochs, out, title: str | None = None) -> Path:
    """Training curves of one run (an epochs DataFrame or a checkpoint's history)."""
    return save(training_curves_figure(epochs, title), out)


@_styled
def runs_overlay_figure(runs: Mapping[str, object], metrics: Sequence[str] = (HEADLINE, "val_loss"),
                        title: str | None = None) -> Figure:
    """One panel per metric, one line per run (``runs``: label → epochs), labelled."""
    fig = _figure(figsize=(5.2 * len(metrics), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    longest = max((len(_epochs_frame(e)) for e in runs.values()), default=1)
    for ax, metric in zip(axes, metrics):
        for label, epochs in runs.items():
            df = _epochs_frame(epochs)
            if metric in df:
                ax.plot(df["epoch"] + 1, pd.to_numeric(df[metric], errors="coerce"), marker="o", label=str(label))
            else:
                ax.plot([], [], label=f"{label} (no {metric})")
        ax.set_title(metric)
        ax.set_ylabel(metric)
        ax.set_xlabel("epoch")
        if longest <= 20:
            ax.set_xticks(range(1, longest + 1))
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7.5)
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig


def plot_runs_overlay(runs: Mapping[str, object], out, metrics: Sequence[str] = (HEADLINE, "val_loss"),
                      title: str | None = None) -> Path:
    """Several runs' curves overlaid, one labelled line per run in each panel."""
    return save(runs_overlay_figure(runs, metrics, title), out)


# -- tables and ablation -------------------------------------------------------------------------

def _cell(v) -> str:
    from .tables import fmt_value

    return fmt_value(v, ".3f")


@_styled
def summary_table_figure(df: pd.DataFrame, title: str | None = None, index: bool = False) -> Figure:
    """A table of ``df`` drawn as a figure (header row shaded, numbers to 3 d.p.)."""
    frame = df.reset_index() if index else df
    text = [[_cell(v) for v in row] for row in frame.itertuples(index=False)] or [[""] * len(frame.columns)]
    columns = [str(c) for c in frame.columns]
    widths = [max([len(c) + 2] + [len(r[i]) + 2 for r in text]) for i, c in enumerate(columns)]
    row_h, title_h = 0.26, (0.4 if title else 0.0)
    height = row_h * (len(text) + 1)
    fig = _figure(figsize=(max(4.0, 0.085 * sum(widths)), height + title_h))
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + title_h)))
    ax.axis("off")
    table = ax.table(cellText=text, colLabels=columns, bbox=(0, 0, 1, 1), cellLoc="right", colLoc="center",
                     colWidths=[w / sum(widths) for w in widths])
    table.auto_set_font_size(False)
    table.set_fontsize(8.5)
    for (r, _), cell in table.get_celld().items():
        cell.set_edgecolor("#cccccc")
        if r == 0:
            cell.set_facecolor("#e8eef6")
            cell.set_text_props(fontweight="bold")
        elif r % 2 == 0:
            cell.set_facecolor("#f7f7f7")
    if title:
        fig.suptitle(title, fontweight="bold", y=1.0, va="top")
    return fig


def plot_summary_table(df: pd.DataFrame, out, title: str | None = None, index: bool = False) -> Path:
    """A summary statistics table as a PNG."""
    return save(summary_table_figure(df, title, index), out)


@_styled
def ablation_heatmap_figure(interaction: pd.DataFrame, metric_label: str = "mean best F1(N,A,O)",
                            counts: pd.DataFrame | None = None, title: str | None = None) -> Figure:
    """Row factor x column factor, cell colour and annotation = mean metric
    (``n=`` trials per cell when ``counts`` is given); empty cells grey."""
    values = interaction.to_numpy(dtype=float)
    fig = _figure(figsize=(1.6 + 1.5 * values.shape[1], 1.4 + 0.9 * values.shape[0]), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(False)
    masked = np.ma.masked_invalid(values)
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="#dddddd")
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.05, vmax + 0.05
    image = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in interaction.columns])
    ax.set_yticks(range(values.shape[0]), [str(i) for i in interaction.index])
    ax.set_xlabel(str(interaction.columns.name or ""))
    ax.set_ylabel(str(interaction.index.name or ""))
    mid = (vmin + vmax) / 2
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = "–" if not np.isfinite(v) else f"{v:.3f}"
            if counts is not None and np.isfinite(v):
                text += f"\nn={int(counts.iloc[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="black" if not np.isfinite(v) or v > mid else "white")
    fig.colorbar(image, ax=ax, label=metric_label, shrink=0.9)
    ax.set_title(title or f"{interaction.index.name} × {interaction.columns.name}: {metric_label}")
    return fig


def plot_ablation_heatmap(interaction: pd.DataFrame, out, metric_label: str = "mean best F1(N,A,O)",
                          counts: pd.DataFrame | None = None, title: str | None = None) -> Path:
    """The interaction table (e.g. model x imbalance) as an annotated heatmap."""
    return save(ablation_heatmap_figure(interaction, metric_label, counts, title), out)


@_styled
def factor_bars_figure(levels: pd.DataFrame, metric_label: str = "mean best F1(N,A,O)",
                       confidence: float = 0.95) -> Figure:
    """One panel per factor: a bar per level (mean) with CI whiskers, ``n`` on each
    bar; ``levels`` has ``factor, level, n, mean, ci_low, ci_high`` (``Ablation.levels``)."""
    factors = list(dict.fromkeys(levels["factor"]))
    fig = _figure(figsize=(max(4.0, 3.4 * len(factors)), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(factors), 1), sharey=True))
    hi_all = pd.concat([levels["mean"], levels["ci_high"]]).astype(float)
    top = float(np.nanmax(hi_all)) if np.isfinite(hi_all).any() else 1.0
    for ax, factor in zip(axes, factors):
        part = levels[levels["factor"] == factor].sort_values("mean", ascending=False, kind="stable")
        x = np.arange(len(part))
        mean = part["mean"].to_numpy(float)
        lo, hi = part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float)
        err = np.vstack([np.where(np.isfinite(lo), mean - lo, 0), np.where(np.isfinite(hi), hi - mean, 0)])
        ax.bar(x, mean, color=[STYLE["axes.prop_cycle"].by_key()["color"][i % 10] for i in range(len(part))],
               alpha=0.85, width=0.65)
        ax.errorbar(x, mean, yerr=err, fmt="none", ecolor="black", capsize=5, linewidth=1.2)
        for xi, m, n in zip(x, mean, part["n"]):
            ax.text(xi, 0.01 * top, f"n={n}", ha="center", va="bottom", fontsize=7.5, color="white")
        ax.set_xticks(x, [str(v) for v in part["level"]], rotation=20 if len(part) > 3 else 0, ha="right"
                      if len(part) > 3 else "center")
        ax.set_title(factor)
        ax.grid(axis="x", visible=False)
    axes[0].set_ylabel(f"{metric_label}\n(whiskers: {confidence:.0%} CI)")
    means = levels["mean"].astype(float)
    if ((means >= 0) & (means <= 1)).all():  # a score in [0, 1]: from 0, whiskers clipped at 1
        axes[0].set_ylim(0.0, min(1.0, max(top, 0.05) * 1.15))
    else:
        lows = levels["ci_low"].astype(float)
        axes[0].set_ylim(min(0.0, float(np.nanmin(lows)) if np.isfinite(lows).any() else 0.0),
                         top * 1.1 if top > 0 else 1.0)
    return fig


def plot_factor_bars(levels: pd.DataFrame, out, metric_label: str = "mean best F1(N,A,O)",
                     confidence: float = 0.95) -> Path:
    """Per-factor bar chart of level means with confidence-interval whiskers."""
    return save(factor_bars_figure(levels, metric_label, confidence), out)


# -- classification results ----------------------------------------------------------------------

@_styled
def confusion_matrix_figure(cm, classes: Sequence[str] = CLASSES, title: str | None = None) -> Figure:
    """Recording-level confusion matrix: rows true, columns predicted; cell text
    = count and row share, colour = row share (recall)."""
    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = _figure(figsize=(4.8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(False)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, label="share of true class", shrink=0.85)
    ax.set_title(title or f"Confusion matrix ({int(cm.sum())} recordings)")
    return fig


def plot_confusion_matrix(cm, out, classes: Sequence[str] = CLASSES, title: str | None = None) -> Path:
    return save(confusion_matrix_figure(cm, classes, title), out)


@_styled
def roc_figure(y_true, probs, classes: Sequence[str] = CLASSES, title: str | None = None) -> Figure:
    """One-vs-rest ROC curve per class present (and absent from not every sample),
    AUROC in the legend, plus the chance diagonal (label ``chance``)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=float)
    fig = _figure(figsize=(4.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for k, name in enumerate(classes):
        positives = y == k
        if not 0 < positives.sum() < len(y):
            continue
        fpr, tpr, _ = roc_curve(positives, p[:, k])
        auc = roc_auc_score(positives, p[:, k])
        ax.plot(fpr, tpr, color=CLASS_COLORS.get(name), label=f"{name} (AUROC {auc:.3f}, n={int(positives.sum())})")
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 − specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.legend(loc="lower right")
    ax.set_title(title or "One-vs-rest ROC (recordings)")
    return fig


def plot_roc_curves(y_true, probs, out, classes: Sequence[str] = CLASSES, title: str | None = None) -> Path:
    return save(roc_figure(y_true, probs, classes, title), out)


# -- data figures --------------------------------------------------------------------------------

@_styled
def preprocessing_figure(records_dir, record: str, cfg=None, label: str | None = None) -> Figure:
    """Three stacked panels of one real record: raw (mV), bandpassed + z-scored,
    and the segments the model sees, each boundary drawn and the dropped tail shaded."""
    from .data.physionet2017 import read_record
    from .data.preprocess import PreprocessConfig, filter_record, segment

    cfg = cfg or PreprocessConfig()
    raw, fs = read_record(Path(records_dir), record)
    filtered = filter_record(raw, fs, cfg, record)
    windows, padded = segment(filtered, cfg.segment_length, cfg.hop, cfg.short_policy == "pad")
    t_raw = np.arange(len(raw)) / fs
    t = np.arange(len(filtered)) / cfg.fs
    fig = _figure(figsize=(12, 6.6), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    axes[0].plot(t_raw, raw, color="#555555", linewidth=0.7)
    axes[0].set_ylabel("mV")
    axes[0].set_title(f"Raw: record {record}{f' (label {label})' if label else ''}, {fs:g} Hz, "
                      f"{len(raw) / fs:.1f} s")
    axes[1].plot(t, filtered, color=STYLE["axes.prop_cycle"].by_key()["color"][0], linewidth=0.7)
    axes[1].set_ylabel("z-score")
    axes[1].set_title(f"Bandpass {cfg.lowcut:g}–{cfg.highcut:g} Hz (Butterworth order {cfg.order}, zero-phase), "
                      f"resampled to {cfg.fs:g} Hz, z-scored")
    colors = ["#1f77b4", "#ff7f0e"]
    hop, length = cfg.hop, cfg.segment_length
    n = len(windows)
    for k in range(n):
        start = k * hop / cfg.fs
        seg_t = start + np.arange(length) / cfg.fs
        axes[2].plot(seg_t, windows[k], color=colors[k % 2], linewidth=0.7)
        axes[2].axvspan(start, start + length / cfg.fs, color=colors[k % 2], alpha=0.08, linewidth=0)
        axes[2].axvline(start, color="black", linewidth=0.8, linestyle="--")
        axes[2].text(start + 0.05, 0.97, f"#{k}", transform=axes[2].get_xaxis_transform(), va="top", fontsize=8)
    if n:
        end = ((n - 1) * hop + length) / cfg.fs
        axes[2].axvline(end, color="black", linewidth=0.8, linestyle="--")
        if end < t[-1]:
            axes[2].axvspan(end, t[-1], color="#999999", alpha=0.25, linewidth=0, label="dropped tail")
            axes[2].plot(t[t >= end], filtered[t >= end], color="#999999", linewidth=0.7)
            axes[2].legend(loc="lower right")
    axes[2].set_ylabel("z-score")
    axes[2].set_xlabel("time (s)")
    axes[2].set_title(f"{n} segment{'s' if n != 1 else ''} of {length} samples ({length / cfg.fs:g} s), "
                      f"stride {hop}{' (zero-padded)' if padded else ''}; each keeps the record's label")
    for ax in axes:
        ax.grid(True, axis="x")
    return fig


def plot_preprocessing(records_dir, record: str, out, cfg=None, label: str | None = None) -> Path:
    """Raw vs filtered vs segmented signal of a real record, segment boundaries drawn."""
    return save(preprocessing_figure(records_dir, record, cfg, label), out)


@_styled
def augmentation_figure(segment, name: str, seed: int = 0, fs: float = 300.0, **params) -> Figure:
    """One augmentation (applied with p=1) on one real segment: original and
    augmented overlaid, and their difference below."""
    import torch

    from .training.augment import build_augmenter, make_generator

    x = torch.tensor(np.array(segment, dtype=np.float32))[None]
    augmenter = build_augmenter([name], p=1.0, **params)
    y = augmenter(x, make_generator(seed)).numpy()[0]
    x = x.numpy()[0]
    t = np.arange(len(x)) / fs
    fig = _figure(figsize=(10, 4.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
    top.plot(t, x, color="#888888", linewidth=0.9, label="original")
    top.plot(t, y, color="#d62728", linewidth=0.9, alpha=0.85, label=name)
    top.set_ylabel("z-score")
    top.legend(loc="upper right", ncols=2)
    top.set_title(f"Augmentation '{name}': {augmenter.augmenters[0]!r}")
    bottom.plot(t, y - x, color="#444444", linewidth=0.8)
    bottom.set_ylabel("difference")
    bottom.set_xlabel("time (s)")
    return fig


def plot_augmentations(segment, out_dir, names: Sequence[str] | None = None, seed: int = 0,
                       fs: float = 300.0) -> list[Path]:
    """One PNG per augmentation (``augment_<name>.png``) on the same real segment."""
    from .training.augment import AUGMENT_NAMES

    return [save(augmentation_figure(segment, name, seed, fs), Path(out_dir) / f"augment_{name}.png")
            for name in (names or AUGMENT_NAMES)]


def reliability_figure(y_true, curves: Mapping[str, np.ndarray], n_bins: int = 15,
                       title: str | None = None) -> Figure:
    """Reliability diagram: top-label confidence vs accuracy per bin, one line per
    entry of ``curves`` (label → record probabilities), ECE in the legend, and the
    share of records per bin below."""
    from .training.calibration import expected_calibration_error, reliability_table

    fig = _figure(figsize=(5.2, 5.6))
    ax, hist = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect calibration")
    for label, probs in curves.items():
        table = reliability_table(y_true, probs, n_bins)
        ece = expected_calibration_error(y_true, probs, n_bins)
        line, = ax.plot(table["confidence"], table["accuracy"], marker="o", label=f"{label} (ECE {ece:.3f})")
        hist.bar((table["lo"] + table["hi"]) / 2, table["n"] / table["n"].sum(), width=1 / n_bins * 0.9,
                 alpha=0.45, color=line.get_color())
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title or "Reliability (recording level)")
    ax.legend(loc="upper left")
    hist.set(xlabel="confidence (top probability)", ylabel="share")
    return fig


@_styled
def plot_reliability(y_true, curves: Mapping[str, np.ndarray], out, n_bins: int = 15,
                     title: str | None = None) -> Path:
    return save(reliability_figure(y_true, curves, n_bins, title), out)
