"""ecg_ray.plots and ecg_ray.report: every figure is a valid, non-empty PNG with
the expected number of series / cells, drawn from real records and a real sweep;
``ecg-ray report`` on that sweep writes report.md whose every figure exists."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D

from conftest import PROJECT_ROOT, save_tiny_checkpoint
from ecg_ray import CLASSES, plots
from ecg_ray.data.physionet2017 import read_record
from ecg_ray.data.preprocess import PreprocessConfig, preprocess_record
from ecg_ray.training.augment import AUGMENT_NAMES
from ecg_ray.tuning.analysis import SUMMARY_COLUMNS, ablation, best_trial

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side: int = 100) -> np.ndarray:
    """A real PNG: magic bytes, decodes, not tiny, not one flat colour."""
    path = Path(path)
    assert path.is_file() and path.stat().st_size > 2000, path
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_side, image.shape
    assert float(image[..., :3].std()) > 0.01, f"{path} is blank"
    return image


def data_lines(ax) -> list[Line2D]:
    """Lines carrying data (legend-labelled, not matplotlib's '_child' helpers)."""
    return [l for l in ax.get_lines() if not l.get_label().startswith("_")]


# -- figures from runs ---------------------------------------------------------------------------

@pytest.mark.e2e
def test_training_curves(sweep, tmp_path):
    trials, epochs = sweep
    tid = trials.loc[trials["epochs"].idxmax(), "trial_id"]
    run = epochs[epochs["trial_id"] == tid]
    fig = plots.training_curves_figure(run, "t")
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == [p[0] for p in plots.CURVE_PANELS]
    by_title = {a.get_title(): a for a in axes}
    assert len(data_lines(by_title["Loss"])) == 2
    assert len(data_lines(by_title["F1"])) == 3
    assert [l.get_label() for l in data_lines(by_title["Per-class F1 (recordings)"])] == list(CLASSES)
    f1 = data_lines(by_title["F1"])[0]
    assert f1.get_label().startswith("F1(N,A,O)") and len(f1.get_xdata()) == len(run)
    assert np.allclose(f1.get_ydata(), run["val_f1_cinc"])
    assert_png(plots.save(plots.training_curves_figure(run, "t"), tmp_path / "curves.png"))
    # a checkpoint's history (list of dicts) works as well
    assert_png(plots.save(plots.training_curves_figure(run.to_dict("records")), tmp_path / "curves2.png"))


@pytest.mark.e2e
def test_runs_overlay_one_line_per_run(sweep, tmp_path):
    trials, epochs = sweep
    runs = {f"{t} ({m})": epochs[epochs["trial_id"] == t] for t, m in zip(trials["trial_id"], trials["model"])
            if (epochs["trial_id"] == t).any()}
    fig = plots.runs_overlay_figure(runs, ("val_f1_cinc", "val_loss", "train_loss"))
    assert len(fig.get_axes()) == 3
    for ax in fig.get_axes():
        assert [l.get_label() for l in data_lines(ax)] == list(runs)
    assert_png(plots.save(plots.runs_overlay_figure(runs), tmp_path / "overlay.png"))


@pytest.mark.e2e
def test_summary_table_cells(sweep, tmp_path):
    trials, _ = sweep
    table = trials[SUMMARY_COLUMNS]
    fig = plots.summary_table_figure(table, "Trials")
    cells = fig.get_axes()[0].tables[0].get_celld()
    assert len(cells) == (len(table) + 1) * len(SUMMARY_COLUMNS)
    assert cells[(0, 0)].get_text().get_text() == "trial_id"
    assert_png(plots.save(plots.summary_table_figure(table, "Trials"), tmp_path / "table.png"))


@pytest.mark.e2e
def test_ablation_heatmap_and_bars(sweep, tmp_path):
    trials, _ = sweep
    result = ablation(trials)
    inter = result.interaction
    fig = plots.ablation_heatmap_figure(inter, counts=result.interaction_n)
    ax = fig.get_axes()[0]
    assert ax.images[0].get_array().shape == inter.shape
    assert len(ax.texts) == inter.size == trials["model"].nunique() * trials["imbalance"].nunique()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(inter.columns)
    assert_png(plots.save(plots.ablation_heatmap_figure(inter, counts=result.interaction_n), tmp_path / "heat.png"))

    fig = plots.factor_bars_figure(result.levels)
    factors = list(dict.fromkeys(result.levels["factor"]))
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == factors
    for ax, factor in zip(axes, factors):
        assert len(ax.patches) == (result.levels["factor"] == factor).sum()
    assert_png(plots.save(plots.factor_bars_figure(result.levels), tmp_path / "bars.png"))


def test_heatmap_and_bars_on_hand_made_levels(tmp_path):
    inter = pd.DataFrame([[0.61, 0.64, np.nan], [0.70, 0.72, 0.69]], index=pd.Index(["cnn", "resnet"], name="model"),
                         columns=pd.Index(["none", "weighted", "focal"], name="imbalance"))
    ax = plots.ablation_heatmap_figure(inter).get_axes()[0]
    assert ax.images[0].get_array().shape == (2, 3) and len(ax.texts) == 6
    assert "–" in [t.get_text() for t in ax.texts]  # the empty cell
    assert_png(plots.save(plots.ablation_heatmap_figure(inter), tmp_path / "h.png"))
    levels = pd.DataFrame({"factor": ["model", "model", "imbalance"], "level": ["a", "b", "w"], "n": [3, 3, 6],
                           "mean": [0.6, 0.7, 0.65], "ci_low": [0.5, 0.65, np.nan], "ci_high": [0.7, 0.75, np.nan]})
    axes = plots.factor_bars_figure(levels).get_axes()
    assert [len(a.patches) for a in axes] == [2, 1]
    assert_png(plots.save(plots.factor_bars_figure(levels), tmp_path / "b.png"))


# -- classification figures ----------------------------------------------------------------------

def test_confusion_matrix(tmp_path):
    cm = [[40, 3, 2, 0], [2, 6, 1, 0], [5, 1, 14, 1], [0, 0, 1, 2]]
    ax = plots.confusion_matrix_figure(cm).get_axes()[0]
    assert ax.images[0].get_array().shape == (4, 4) and len(ax.texts) == 16
    assert ax.texts[0].get_text() == "40\n89%"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
    assert_png(plots.save(plots.confusion_matrix_figure(cm), tmp_path / "cm.png"))


def test_roc_curves_one_per_present_class(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)  # '~' absent: no curve for it
    probs = rng.dirichlet(np.ones(4), len(y))
    probs[np.arange(len(y)), y] += 0.6
    probs /= probs.sum(1, keepdims=True)
    ax = plots.roc_figure(y, probs).get_axes()[0]
    labels = [l.get_label() for l in data_lines(ax)]
    assert [l.split()[0] for l in labels] == ["N", "A", "O", "chance"]
    assert all("AUROC" in l for l in labels[:3])
    assert_png(plots.save(plots.roc_figure(y, probs), tmp_path / "roc.png"))


# -- data figures --------------------------------------------------------------------------------

def test_preprocessing_figure_of_a_real_record(cinc_dir, cinc_labels, tmp_path):
    cfg = PreprocessConfig()
    folder = cinc_dir
    # an AF record whose tail needs the extra last window (it does not end on a stride)
    for name in (r for r, l in cinc_labels.items() if l == "A"):
        signal, fs = read_record(folder, name)
        if round(len(signal) * cfg.fs / fs) % cfg.hop:
            break
    segments, _ = preprocess_record(signal, fs, cfg, name)
    fig = plots.preprocessing_figure(folder, name, cfg, "A")
    raw_ax, filt_ax, seg_ax = fig.get_axes()
    assert np.allclose(raw_ax.get_lines()[0].get_ydata(), signal)
    # one trace per segment + the boundaries: a dashed line at each start and one at the end
    traces = [l for l in seg_ax.get_lines() if len(l.get_xdata()) == cfg.segment_length]
    assert len(traces) == len(segments)
    assert np.allclose(traces[0].get_ydata(), segments[0], atol=1e-5)
    # each trace drawn where segment() cut it: the last one ends at the record's last sample
    n_filtered = len(filt_ax.get_lines()[0].get_xdata())
    assert traces[-1].get_xdata()[-1] == pytest.approx((n_filtered - 1) / cfg.fs)
    assert np.allclose(traces[-1].get_ydata(), segments[-1], atol=1e-5)
    boundaries = [l for l in seg_ax.get_lines() if l.get_linestyle() == "--"]
    assert len(boundaries) == len(segments) + 1
    assert f"{len(segments)} segments" in seg_ax.get_title()
    assert_png(plots.save(plots.preprocessing_figure(folder, name, cfg, "A"), tmp_path / "prep.png"))


def test_one_figure_per_augmentation_on_a_real_segment(real_segments, tmp_path):
    segment = real_segments[0][4]  # a real AF segment
    paths = plots.plot_augmentations(segment, tmp_path)
    assert [p.name for p in paths] == [f"augment_{n}.png" for n in AUGMENT_NAMES]
    for p in paths:
        assert_png(p)
    for name in AUGMENT_NAMES:
        top = plots.augmentation_figure(segment, name).get_axes()[0]
        original, augmented = (l.get_ydata() for l in data_lines(top))
        assert np.allclose(original, segment) and not np.allclose(augmented, original), name


# -- the report ----------------------------------------------------------------------------------

@pytest.mark.e2e
def test_report_on_real_sweep(sweep_dir, sweep, tmp_path, capsys):
    from ecg_ray.cli import main

    trials, _ = sweep
    out = tmp_path / "results" / "smoke"
    assert main(["report", str(sweep_dir), "--out", str(out)]) == 0
    report = out / "report.md"
    assert capsys.readouterr().out.strip() == str(report)
    text = report.read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    expected = {"trials_table", "best_curves", "all_trials_curves", "best_confusion", "best_roc", "ablation_bars",
                "ablation_heatmap", "preprocessing", *[f"augment_{n}" for n in AUGMENT_NAMES]}
    assert {Path(i).stem for i in images} == expected
    for image in images:
        assert_png(out / image)
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(f"{e}.png" for e in expected)
    # the data, split, config hash and command are stated; the best trial is Tune's
    sweep_info = trials.attrs["sweep"]
    assert sweep_info["config_hash"] in text and "## Data" in text and "Split" in text
    assert f"ecg-ray report {sweep_dir} --out {out}" in text
    best = best_trial(trials, "val_f1_cinc", "max")["trial_id"]
    assert f"trial **{best}**" in text
    # the best checkpoint re-run on its validation records gives the F1 the trial reported
    assert re.search(r"Recomputed F1\(N,A,O\) [0-9.]+ \(reported at that epoch: [0-9.]+ — matches\)", text)
    assert f"tensorboard --logdir {sweep_dir}" in text
    assert pd.read_csv(out / "trials.csv")["trial_id"].tolist() == trials["trial_id"].tolist()
    assert (out / "ablation.json").is_file() and (out / "epochs.csv").is_file()


def test_palette_save_keeps_the_picture_in_256_colours(tmp_path):
    """Explain pages are committed in bulk: ``save(palette=True)`` stores them as palette PNGs."""
    from PIL import Image

    fig = plots._figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.imshow(np.linspace(0, 1, 400).reshape(20, 20), cmap="viridis")
    full, small = plots.save(fig, tmp_path / "rgb.png"), plots.save(fig, tmp_path / "palette.png", palette=True)
    with Image.open(full) as a, Image.open(small) as b:
        assert a.mode in ("RGB", "RGBA") and b.mode == "P" and a.size == b.size
        diff = np.abs(np.asarray(a.convert("RGB"), dtype=int) - np.asarray(b.convert("RGB"), dtype=int))
    assert np.percentile(diff, 99) <= 8  # the colours a plot uses survive
    assert small.stat().st_size < full.stat().st_size


def test_report_on_a_run_whose_prepared_folder_is_gone(cinc_dir, tmp_path):
    """A train run names a prepared folder that was since deleted: the report names it, draws the data
    figures from the records folder and skips the validation section, instead of failing to read it."""
    from ecg_ray.cli import main

    run = tmp_path / "run"
    shutil.copytree(PROJECT_ROOT / "results" / "training" / "cnn_only_s42", run)
    save_tiny_checkpoint(run)  # a checkpoint to validate, so only the missing folder stops the validation
    results = json.loads((run / "results.json").read_text())
    results["data"]["prepared"] = str(tmp_path / "deleted_prepared")
    (run / "results.json").write_text(json.dumps(results))
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out), "--data-dir", str(cinc_dir)]) == 0
    text = (out / "report.md").read_text()
    assert str(tmp_path / "deleted_prepared") in text
    assert "preprocessing.png" in text and "augment_jitter.png" in text
    assert "validation confusion matrix / ROC skipped: prepared dataset not found" in text
