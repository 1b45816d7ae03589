"""Grad-CAM and attention maps on real records, the planted-spike check, the
deletion test, the case-analysis page and `ecg-ray explain`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import save_tiny_checkpoint
from ecg_ray.cli import main
from ecg_ray.data import physionet2017
from ecg_ray.data.preprocess import PreprocessConfig, filter_record
from ecg_ray.explain.cases import explain_cases, pick_cases
from ecg_ray.explain.faithfulness import FRACTIONS, deletion_curves
from ecg_ray.explain.figures import deletion_figure, explanation_figure
from ecg_ray.explain.saliency import (attention_map, default_layer, explain_filtered, explain_signal,
                                      gradcam, stitch, target_index)
from ecg_ray.data.preprocess import window_starts
from ecg_ray.models import build_model
from ecg_ray.plots import save

CFG = PreprocessConfig()


@pytest.fixture(scope="module")
def af_record(cinc_dir, cinc_labels):
    """A real AF record whose length is not a whole number of segments."""
    name = next(r for r, l in sorted(cinc_labels.items()) if l == "A"
                and physionet2017.read_record(cinc_dir, r)[0].size % CFG.segment_length)
    signal, fs = physionet2017.read_record(cinc_dir, name)
    return name, signal, fs


def _tiny(name="cnn_only", **kw):
    torch.manual_seed(0)
    defaults = {"cnn_only": dict(channels=[4, 8], kernel_size=5),
                "cnn_lstm": dict(channels=[4, 8], hidden=8, layers=1),
                "attention": dict(channels=[4, 8], hidden=8, layers=1),
                "transformer": dict(channels=[4, 8], d_model=8, heads=2, layers=1, ff_dim=16),
                "resnet": dict(width=4, blocks=3)}
    return build_model(name, **{**defaults.get(name, {}), **kw}).eval()


@pytest.mark.parametrize("name", ["cnn_only", "cnn_lstm", "resnet"])
def test_gradcam_covers_the_record_and_is_non_negative(name, af_record):
    rec, signal, fs = af_record
    e = explain_signal(_tiny(name), signal, fs, CFG, rec, method="gradcam")
    n = len(filter_record(signal, fs, CFG))
    assert e.saliency.shape == (n,) == e.signal.shape
    assert (e.saliency >= 0).all() and e.saliency.max() == pytest.approx(1.0)
    assert e.segment_starts == window_starts(n, CFG.segment_length, CFG.hop).tolist()
    assert e.segment_starts[-1] + CFG.segment_length == n  # the last window reaches the tail: all explained
    assert e.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_gradcam_layer_choice_and_errors(real_segments):
    model = _tiny("cnn_only")
    x = torch.from_numpy(real_segments[0][:3])
    assert default_layer(model) == "frontend.blocks.1"
    first = gradcam(model, x, 1, "frontend.blocks.0")
    assert first.shape == (3, x.shape[1]) and (first >= 0).all()
    with pytest.raises(ValueError, match="no layer 'frontend.blocks.7'"):
        gradcam(model, x, 1, "frontend.blocks.7")
    with pytest.raises(ValueError, match="no convolutional front end"):
        default_layer(build_model("lstm_only", hidden=8, layers=1))
    with pytest.raises(ValueError, match="no attention weights"):
        attention_map(model, x)
    assert target_index("A") == 1 and target_index("noisy") == 3 and target_index(None) is None
    with pytest.raises(ValueError, match="unknown class 'X'"):
        target_index("X")


@pytest.mark.parametrize("name", ["attention", "transformer"])
def test_attention_weights_sum_to_one_and_cover_the_record(name, real_segments, af_record):
    model = _tiny(name)
    x = torch.from_numpy(real_segments[0][:4])
    with torch.no_grad():
        _, weights = model(x, return_attention=True)
    assert torch.allclose(weights.sum(dim=1), torch.ones(4), atol=1e-5)
    assert attention_map(model, x).shape == (4, x.shape[1])
    rec, signal, fs = af_record
    e = explain_signal(model, signal, fs, CFG, rec, method="attention")
    assert e.saliency.shape == e.signal.shape and e.method == "attention" and e.layer is None


def test_stitch_averages_overlaps_and_leaves_gaps_zero():
    maps = np.array([[1.0, 1, 1, 1], [3.0, 3, 3, 3]])
    assert stitch(maps, [0, 2], 8).tolist() == [1, 1, 2, 2, 3, 3, 0, 0]
    assert stitch(maps[:1], [0], 3).tolist() == [1, 1, 1]  # a padded short record


def _spike_batch(rng, n, length, spike=None):
    """Noise; class 1 carries one sharp spike (at ``spike`` or a random place)."""
    x = rng.normal(0, 0.3, (n, length)).astype(np.float32)
    y = rng.integers(0, 2, n)
    where = rng.integers(50, length - 50, n) if spike is None else np.full(n, spike)
    for i in np.flatnonzero(y):
        x[i, where[i] - 3:where[i] + 4] += np.array([1, 3, 6, 8, 6, 3, 1], dtype=np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def test_gradcam_peaks_at_a_planted_spike():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    length = 1000
    model = build_model("cnn_only", num_classes=2, channels=[8, 16], kernel_size=7, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(120):
        x, y = _spike_batch(rng, 32, length)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = _spike_batch(rng, 64, length)
    assert (model(x).argmax(1) == y).float().mean() > 0.9  # it learned the rule
    for spike in (150, 500, 820):
        signal = np.random.default_rng(spike).normal(0, 0.3, length).astype(np.float32)
        signal[spike - 3:spike + 4] += np.array([1, 3, 6, 8, 6, 3, 1], dtype=np.float32)
        cam = gradcam(model, torch.from_numpy(signal[None]), 1)[0]
        assert abs(int(np.argmax(cam)) - spike) <= 12, (spike, int(np.argmax(cam)))
        assert cam[spike - 12:spike + 13].mean() > 5 * np.median(cam)


def test_deletion_test_returns_both_curves(af_record, tmp_path):
    rec, signal, fs = af_record
    model = _tiny("cnn_only")
    explained = [explain_signal(model, signal, fs, CFG, rec, method="gradcam")]
    curves = deletion_curves(model, explained, CFG, random_repeats=2)
    assert curves.fractions.tolist() == list(FRACTIONS)
    assert curves.salient.shape == curves.random.shape == (len(FRACTIONS),)
    assert curves.salient[0] == pytest.approx(curves.random[0])  # nothing masked: the same probability
    assert curves.salient[0] == pytest.approx(explained[0].probabilities[explained[0].target], abs=1e-5)
    assert ((0 <= curves.salient) & (curves.salient <= 1)).all()
    d = curves.to_dict()
    assert d["area_difference"] == pytest.approx(d["area_random"] - d["area_salient"])
    assert save(deletion_figure(curves), tmp_path / "deletion.png", palette=True).stat().st_size > 10_000
    with pytest.raises(ValueError, match="at least one"):
        deletion_curves(model, [], CFG)


def test_explanation_figure_of_a_long_record(cinc_dir, cinc_labels, tmp_path):
    name = max(cinc_labels, key=lambda r: physionet2017.read_record(cinc_dir, r)[0].size
               if r.startswith("A000") else 0)
    signal, fs = physionet2017.read_record(cinc_dir, name)
    e = explain_filtered(_tiny("cnn_only"), filter_record(signal, fs, CFG), CFG, name, cls="N")
    assert e.target_class == "N"
    out = save(explanation_figure(e, label=cinc_labels[name]), tmp_path / "long.png", palette=True)
    assert out.stat().st_size > 20_000


def test_pick_cases_orders_by_confidence():
    def row(rec, label, pred, **p):
        probs = {"p_N": 0.0, "p_A": 0.0, "p_O": 0.0, "p_noisy": 0.0, **{f"p_{k}": v for k, v in p.items()}}
        return {"record": rec, "label": label, "predicted": pred, **probs}

    preds = [row("a1", "A", "A", A=0.7), row("a2", "A", "A", A=0.9), row("a3", "A", "N", N=0.6),
             row("a4", "A", "O", O=0.95), row("n1", "N", "N", N=0.8), row("z1", "~", "N", N=0.5)]
    cases = pick_cases(preds, 1)
    assert [p["record"] for p in cases["A"]["correct"]] == ["a2"]
    assert [p["record"] for p in cases["A"]["wrong"]] == ["a4"]
    assert cases["O"] == {"correct": [], "wrong": []}
    assert [p["record"] for p in cases["~"]["wrong"]] == ["z1"]


def test_case_analysis_page_on_real_records(small_cinc_dir, cinc_labels, tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "ckpt")
    records = [r for c in ("N", "A", "O", "~") for r in sorted(r for r, l in cinc_labels.items() if l == c
                                                               and (small_cinc_dir / f"{r}.mat").exists())[:6]]
    summary = explain_cases(ckpt, small_cinc_dir, tmp_path / "cases", n=1, records=records, deletion_records=2)
    page = (tmp_path / "cases" / "cases.md").read_text()
    assert summary["records_scored"] == 24 and summary["figures"] >= 2
    assert page.count("![") == summary["figures"] + 1  # the case figures and the deletion curves
    assert "true **A**" in page and "## ~: most confident wrong" in page
    assert all((tmp_path / "cases" / line[line.index("(") + 1:-1]).is_file()
               for line in page.splitlines() if line.startswith("!["))
    deletion = json.loads((tmp_path / "cases" / "deletion.json").read_text())
    assert len(deletion["records"]) == 2 and len(deletion["salient"]) == len(FRACTIONS)


def test_explain_cli_on_a_real_record(cinc_dir, af_record, tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "ckpt")
    rec = af_record[0]
    assert main(["explain", "--checkpoint", str(ckpt), "--record", str(cinc_dir / f"{rec}.mat"),
                 "--class", "A", "--label", "A", "--out", str(tmp_path / "fig.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["explained_class"] == "A" and out["method"] == "gradcam" and (tmp_path / "fig.png").is_file()
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file")
    (tmp_path / "bad.hea").write_text("bad 1 300 9000\n")
    assert main(["explain", "--checkpoint", str(ckpt), "--record", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecg-ray: error:") and "bad" in err and "Traceback" not in err
    assert main(["explain", "--checkpoint", str(ckpt)]) == 2
    assert "either --record" in capsys.readouterr().err
