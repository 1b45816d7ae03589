"""Figures of the explain stage, in the project's one style (``ecg_ray.plots``).

* :func:`explanation_figure` — the filtered ECG in rows of ``row_s`` seconds,
  the saliency as a coloured band behind the trace, segment boundaries dashed,
  seconds on the x axis, predicted probabilities in the title.
* :func:`deletion_figure` — the deletion test's two curves.

Both are saved with ``plots.save(fig, out, palette=True)``: they are committed in bulk.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .. import CLASS_KEYS
from ..plots import STYLE, _figure
from .faithfulness import DeletionCurves
from .saliency import Explanation

METHOD_NAMES = {"gradcam": "Grad-CAM", "attention": "attention"}


@matplotlib.rc_context(STYLE)
def explanation_figure(e: Explanation, label: str | None = None, row_s: float = 10.0) -> Figure:
    """The record with its saliency; one row per ``row_s`` seconds, all rows on one scale."""
    n = len(e.signal)
    per_row = int(round(row_s * e.fs))
    rows = max(1, math.ceil(n / per_row))
    fig = _figure(figsize=(12, 1.35 * rows + 0.9))
    axes = fig.subplots(rows, 1, squeeze=False, sharey=True)[:, 0]
    lo, hi = np.percentile(e.signal, [0.5, 99.5])
    lo, hi = lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)
    for i, ax in enumerate(axes):
        a, b = i * per_row, min((i + 1) * per_row, n)
        t = np.arange(a, b) / e.fs
        image = ax.imshow(e.saliency[a:b][None, :], aspect="auto", cmap="Reds", vmin=0, vmax=1,
                          extent=(a / e.fs, b / e.fs, lo, hi), alpha=0.75, interpolation="nearest")
        ax.plot(t, e.signal[a:b], color="black", linewidth=0.6)
        for k, s in enumerate(e.segment_starts):
            for edge in (s, s + e.segment_length):
                if a <= edge <= b:
                    ax.axvline(edge / e.fs, color="#1f77b4", linestyle="--", linewidth=0.8, alpha=0.7)
            mid = s + min(e.segment_length, n - s) / 2
            if e.segment_probabilities is not None and a <= mid < b:
                ax.text(mid / e.fs, hi, f"p({e.target_class}) {e.segment_probabilities[k, e.target]:.2f}",
                        ha="center", va="top", fontsize=7.5, color="#1f77b4")
        ax.set(xlim=(a / e.fs, a / e.fs + row_s), ylim=(lo, hi), ylabel="z")
        ax.grid(False)
    axes[-1].set_xlabel("time (s)   — dashed: segment boundaries, blue text: the segment's probability")
    probs = "  ".join(f"{key} {p:.2f}" for key, p in zip(CLASS_KEYS, e.probabilities))
    truth = f"true {label}, " if label else ""
    what = METHOD_NAMES[e.method] + (f" ({e.layer})" if e.layer else "")
    axes[0].set_title(f"{e.record}: {truth}predicted {e.predicted}   [{probs}]\n{what} for class {e.target_class}"
                      + ("   (padded to one segment)" if e.padded else ""), loc="left")
    fig.colorbar(image, ax=list(axes), fraction=0.015, pad=0.01, label="saliency")
    return fig


@matplotlib.rc_context(STYLE)
def deletion_figure(curves: DeletionCurves, title: str | None = None) -> Figure:
    """Mean probability of the explained class as more of each record is masked, salient vs random first."""
    fig = _figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    pct = 100 * curves.fractions
    ax.plot(pct, curves.salient, marker="o", label=f"most salient first (area {curves.area_salient:.3f})")
    ax.plot(pct, curves.random, marker="o", label=f"random windows (area {curves.area_random:.3f})")
    ax.set(xlabel="record masked (%)", ylabel="probability of the explained class", ylim=(0, 1.02),
           title=title or f"Deletion test, {curves.n_records} records: area difference {curves.area_difference:+.3f}")
    ax.legend(loc="lower left")
    return fig
