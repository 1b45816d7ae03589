"""Every figure of the project: matplotlib on the Agg canvas, PNG, one style.

Each figure has a builder ``*_figure(...) -> Figure`` (no pyplot, no global
state: safe in tests, workers and threads), drawn in ``STYLE``; ``save(fig, out)``
writes any of them as a PNG. Inputs are plain pandas / numpy: the frames of
``ecg_ray.tuning.analysis``, per-epoch history dicts of a checkpoint, ``y_true``
+ ``probs`` arrays, records read from disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import CLASS_KEYS, CLASSES, HEADLINE
from .tables import fmt_value

DPI = 110
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
#: The one style of every figure; ``@matplotlib.rc_context(STYLE)`` on each builder applies it.
STYLE = {
    "figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": "tight", "savefig.facecolor": "white",
    "font.size": 9.5, "axes.titlesize": 10.5, "axes.titleweight": "bold", "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5, "ytick.labelsize": 8.5, "legend.fontsize": 8, "legend.frameon": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6, "axes.spines.top": False,
    "axes.spines.right": False, "lines.linewidth": 1.6, "lines.markersize": 4,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}
#: One colour per class everywhere (N, A, O, ~).
CLASS_COLORS = {"N": "#1f77b4", "A": "#d62728", "O": "#2ca02c", "~": "#7f7f7f"}
TRAIN_STYLE = {"linestyle": "--", "marker": "o"}
VAL_STYLE = {"linestyle": "-", "marker": "o"}
SEGMENT_STYLE = {"linestyle": ":", "marker": "s"}


def _figure(*args, title: str | None = None, **kwargs) -> Figure:
    fig = Figure(*args, **kwargs)
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontweight="bold")
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
            quantized = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        quantized.save(out, optimize=True)
    return out


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


def _epoch_ticks(ax, n_epochs: int) -> None:
    ax.set_xlabel("epoch")
    if n_epochs <= 20:
        ax.set_xticks(range(1, n_epochs + 1))


def _cell_grid(fig: Figure, values: np.ndarray, texts, white: np.ndarray, columns, rows, colorbar: str,
               shrink: float, **imshow):
    """``values`` as an image with each cell annotated (white text where ``white``), the
    columns and rows labelled, and a colorbar: the heatmap and the confusion matrix."""
    ax = fig.add_subplot()
    ax.grid(False)
    image = ax.imshow(values, **imshow)
    for (i, j), text in np.ndenumerate(np.asarray(texts)):
        ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if white[i, j] else "black")
    ax.set_xticks(range(len(columns)), [str(c) for c in columns])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    fig.colorbar(image, ax=ax, label=colorbar, shrink=shrink)
    return ax


# -- training curves -----------------------------------------------------------------------------

#: Panels of ``training_curves_figure``: title, y label, [(metric key, legend label, style)].
CURVE_PANELS = [
    ("Loss", "cross-entropy", [("train_loss", "train", TRAIN_STYLE), ("val_loss", "validation", VAL_STYLE)]),
    ("Accuracy", "accuracy", [("train_acc", "train (segments)", TRAIN_STYLE),
                              ("val_seg_accuracy", "val segments", SEGMENT_STYLE),
                              ("val_accuracy", "val recordings", VAL_STYLE)]),
    ("F1", "F1", [(HEADLINE, "F1(N,A,O) recordings", VAL_STYLE),
                  ("val_seg_f1_cinc", "F1(N,A,O) segments", SEGMENT_STYLE),
                  ("val_f1_macro", "macro F1 (4 classes)", {"linestyle": "-.", "marker": "^"})]),
    ("Per-class F1 (recordings)", "F1", [(f"val_f1_{key}", c, {**VAL_STYLE, "color": CLASS_COLORS[c]})
                                         for c, key in zip(CLASSES, CLASS_KEYS)]),
    ("AUROC (one-vs-rest, macro)", "AUROC", [("val_auroc_macro", "recordings", VAL_STYLE),
                                             ("val_seg_auroc_macro", "segments", SEGMENT_STYLE)]),
    ("Learning rate", "lr", [("lr", "lr", {"marker": "o", "color": "#555555"})]),
]


@matplotlib.rc_context(STYLE)
def training_curves_figure(epochs, title: str | None = None) -> Figure:
    """Six panels of one run per epoch: loss, accuracy, F1, per-class F1, AUROC, lr."""
    df = _epochs_frame(epochs)
    n_epochs = int(df["epoch"].max()) + 1 if len(df) else 1
    fig = _figure(figsize=(12, 6.4), layout="constrained", title=title)
    for ax, (name, ylabel, series) in zip(fig.subplots(2, 3).ravel(), CURVE_PANELS):
        drawn = sum(_series(ax, df, key, label, **style) for key, label, style in series)
        ax.set(title=name, ylabel=ylabel, xlim=(0.7, n_epochs + 0.3))
        _epoch_ticks(ax, n_epochs)
        if name not in ("Loss", "Learning rate"):
            ax.set_ylim(-0.02, 1.02)
        if name == "Learning rate" and "lr" in df and (pd.to_numeric(df["lr"]) > 0).all():
            ax.set_yscale("log")
        if drawn > 1:
            ax.legend(loc="best")
        if not drawn:
            ax.text(0.5, 0.5, "not reported", ha="center", va="center", transform=ax.transAxes, color="grey")
    return fig


@matplotlib.rc_context(STYLE)
def runs_overlay_figure(runs: Mapping[str, object], metrics: Sequence[str] = (HEADLINE, "val_loss"),
                        title: str | None = None) -> Figure:
    """One panel per metric, one line per run (``runs``: label → epochs), labelled."""
    frames = {label: _epochs_frame(epochs) for label, epochs in runs.items()}
    longest = max((len(df) for df in frames.values()), default=1)
    fig = _figure(figsize=(5.2 * len(metrics), 4.0), layout="constrained", title=title)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        for label, df in frames.items():
            if metric in df:
                ax.plot(df["epoch"] + 1, pd.to_numeric(df[metric], errors="coerce"), marker="o", label=str(label))
            else:
                ax.plot([], [], label=f"{label} (no {metric})")
        ax.set(title=metric, ylabel=metric)
        _epoch_ticks(ax, longest)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7.5)
    return fig


# -- tables and ablation -------------------------------------------------------------------------

@matplotlib.rc_context(STYLE)
def summary_table_figure(df: pd.DataFrame, title: str | None = None) -> Figure:
    """A table of ``df`` drawn as a figure (header row shaded, numbers to 3 d.p.)."""
    text = [[fmt_value(v, ".3f") for v in row] for row in df.itertuples(index=False)] or [[""] * len(df.columns)]
    columns = [str(c) for c in df.columns]
    widths = [max(map(len, cells)) + 2 for cells in zip(columns, *text)]  # per column: header and cells
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


@matplotlib.rc_context(STYLE)
def ablation_heatmap_figure(interaction: pd.DataFrame, metric_label: str = "mean best F1(N,A,O)",
                            counts: pd.DataFrame | None = None, title: str | None = None) -> Figure:
    """Row factor x column factor, cell colour and annotation = mean metric
    (``n=`` trials per cell when ``counts`` is given); empty cells grey."""
    values = interaction.to_numpy(dtype=float)
    finite = np.isfinite(values)
    vmin, vmax = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.05, vmax + 0.05
    texts = np.full(values.shape, "–", dtype=object)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            texts[i, j] = f"{v:.3f}" + (f"\nn={int(counts.iloc[i, j])}" if counts is not None else "")
    fig = _figure(figsize=(1.6 + 1.5 * values.shape[1], 1.4 + 0.9 * values.shape[0]), layout="constrained")
    ax = _cell_grid(fig, np.ma.masked_invalid(values), texts, finite & (values <= (vmin + vmax) / 2),
                    interaction.columns, interaction.index, metric_label, 0.9, vmin=vmin, vmax=vmax,
                    cmap=matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd"), aspect="auto")
    ax.set(xlabel=str(interaction.columns.name or ""), ylabel=str(interaction.index.name or ""),
           title=title or f"{interaction.index.name} × {interaction.columns.name}: {metric_label}")
    return fig


@matplotlib.rc_context(STYLE)
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
        mean, lo, hi = part[["mean", "ci_low", "ci_high"]].to_numpy(float).T
        err = np.vstack([np.where(np.isfinite(lo), mean - lo, 0), np.where(np.isfinite(hi), hi - mean, 0)])
        ax.bar(x, mean, color=[PALETTE[i % len(PALETTE)] for i in range(len(part))], alpha=0.85, width=0.65)
        ax.errorbar(x, mean, yerr=err, fmt="none", ecolor="black", capsize=5, linewidth=1.2)
        for xi, n in zip(x, part["n"]):
            ax.text(xi, 0.01 * top, f"n={n}", ha="center", va="bottom", fontsize=7.5, color="white")
        many = len(part) > 3
        ax.set_xticks(x, [str(v) for v in part["level"]], rotation=20 if many else 0, ha="right" if many else "center")
        ax.set_title(factor)
        ax.grid(axis="x", visible=False)
    axes[0].set_ylabel(f"{metric_label}\n(whiskers: {confidence:.0%} CI)")
    if levels["mean"].astype(float).between(0, 1).all():  # a score in [0, 1]: from 0, whiskers clipped at 1
        axes[0].set_ylim(0.0, min(1.0, max(top, 0.05) * 1.15))
    else:
        lows = levels["ci_low"].astype(float)
        axes[0].set_ylim(min(0.0, float(np.nanmin(lows)) if np.isfinite(lows).any() else 0.0),
                         top * 1.1 if top > 0 else 1.0)
    return fig


# -- classification results ----------------------------------------------------------------------

@matplotlib.rc_context(STYLE)
def confusion_matrix_figure(cm, classes: Sequence[str] = CLASSES, title: str | None = None) -> Figure:
    """Recording-level confusion matrix: rows true, columns predicted; cell text
    = count and row share, colour = row share (recall)."""
    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    texts = [[f"{int(c)}\n{s:.0%}" for c, s in zip(cm_row, share_row)] for cm_row, share_row in zip(cm, share)]
    fig = _figure(figsize=(4.8, 4.2), layout="constrained")
    ax = _cell_grid(fig, share, texts, share > 0.55, classes, classes, "share of true class", 0.85,
                    cmap="Blues", vmin=0, vmax=1)
    ax.set(xlabel="predicted", ylabel="true", title=title or f"Confusion matrix ({int(cm.sum())} recordings)")
    return fig


@matplotlib.rc_context(STYLE)
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
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="false positive rate (1 − specificity)",
           ylabel="true positive rate (sensitivity)", title=title or "One-vs-rest ROC (recordings)")
    ax.legend(loc="lower right")
    return fig


@matplotlib.rc_context(STYLE)
def reliability_figure(y_true, curves: Mapping[str, np.ndarray], n_bins: int = 15, title: str | None = None) -> Figure:
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


# -- data figures --------------------------------------------------------------------------------

@matplotlib.rc_context(STYLE)
def preprocessing_figure(records_dir, record: str, cfg=None, label: str | None = None) -> Figure:
    """Three stacked panels of one real record: raw (mV), bandpassed + z-scored,
    and the segments the model sees, each boundary drawn and the dropped tail shaded."""
    from .data.physionet2017 import read_record
    from .data.preprocess import PreprocessConfig, filter_record, segment, window_starts

    cfg = cfg or PreprocessConfig()
    raw, fs = read_record(Path(records_dir), record)
    filtered = filter_record(raw, fs, cfg, record)
    windows, padded = segment(filtered, cfg.segment_length, cfg.hop, cfg.short_policy == "pad")
    t = np.arange(len(filtered)) / cfg.fs
    fig = _figure(figsize=(12, 6.6), layout="constrained")
    raw_ax, filtered_ax, segments_ax = fig.subplots(3, 1, sharex=True)
    raw_ax.plot(np.arange(len(raw)) / fs, raw, color="#555555", linewidth=0.7)
    raw_ax.set(ylabel="mV", title=f"Raw: record {record}{f' (label {label})' if label else ''}, {fs:g} Hz, "
                                  f"{len(raw) / fs:.1f} s")
    filtered_ax.plot(t, filtered, color=PALETTE[0], linewidth=0.7)
    filtered_ax.set(ylabel="z-score", title=f"Bandpass {cfg.lowcut:g}–{cfg.highcut:g} Hz (Butterworth order "
                                            f"{cfg.order}, zero-phase), resampled to {cfg.fs:g} Hz, z-scored")
    colors = [PALETTE[0], PALETTE[3]]
    hop, length = cfg.hop, cfg.segment_length
    n = len(windows)
    # where segment() cut each window: every hop, the last one ending at the record's end
    starts = window_starts(len(filtered), length, hop)[:n] / cfg.fs
    for k, start in enumerate(starts):
        segments_ax.plot(start + np.arange(length) / cfg.fs, windows[k], color=colors[k % 2], linewidth=0.7)
        segments_ax.axvspan(start, start + length / cfg.fs, color=colors[k % 2], alpha=0.08, linewidth=0)
        segments_ax.axvline(start, color="black", linewidth=0.8, linestyle="--")
        segments_ax.text(start + 0.05, 0.97, f"#{k}", transform=segments_ax.get_xaxis_transform(), va="top", fontsize=8)
    if n:
        end = starts[-1] + length / cfg.fs
        segments_ax.axvline(end, color="black", linewidth=0.8, linestyle="--")
        if end < t[-1]:
            segments_ax.axvspan(end, t[-1], color="#999999", alpha=0.25, linewidth=0, label="dropped tail")
            segments_ax.plot(t[t >= end], filtered[t >= end], color="#999999", linewidth=0.7)
            segments_ax.legend(loc="lower right")
    segments_ax.set(ylabel="z-score", xlabel="time (s)",
                    title=f"{n} segment{'s' if n != 1 else ''} of {length} samples ({length / cfg.fs:g} s), "
                          f"stride {hop}{' (zero-padded)' if padded else ''}; each keeps the record's label")
    return fig


@matplotlib.rc_context(STYLE)
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
    top.set(ylabel="z-score", title=f"Augmentation '{name}': {augmenter.augmenters[0]!r}")
    top.legend(loc="upper right", ncols=2)
    bottom.plot(t, y - x, color="#444444", linewidth=0.8)
    bottom.set(ylabel="difference", xlabel="time (s)")
    return fig


def plot_augmentations(segment, out_dir, fs: float = 300.0) -> list[Path]:
    """One PNG per augmentation (``augment_<name>.png``, seed 0) on the same real segment."""
    from .training.augment import AUGMENT_NAMES

    return [save(augmentation_figure(segment, name, fs=fs), Path(out_dir) / f"augment_{name}.png")
            for name in AUGMENT_NAMES]
