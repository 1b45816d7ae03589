"""`ecg-ray train` end to end through Ray Data and a TorchTrainer on real records,
its run folder and checkpoint contract, determinism, and the data feed's pieces."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch

from conftest import PROJECT_ROOT
from ecg_ray import CLASS_TO_INDEX, CLASSES
from ecg_ray.training.checkpoint import load_checkpoint, model_from_checkpoint
from ecg_ray.training.feed import TrainCollate, select_records, signal_batch, subsample
from ecg_ray.training.imbalance import class_weights


def _train(prepared, out, *extra):
    cmd = [sys.executable, "-m", "ecg_ray.cli", "train", "--data", str(prepared), "--out", str(out),
           "--model", "cnn_only", "--seed", "7", "--num-epochs", "1", "--max-records", "60",
           "--cpus-per-worker", "1", *extra]
    with tempfile.TemporaryDirectory(prefix="ecgray", dir="/tmp") as ray_tmp:
        env = {**__import__("os").environ, "ECG_RAY_TMPDIR": ray_tmp}
        env.pop("RAY_ADDRESS", None)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT, env=env)


@pytest.mark.e2e
def test_train_one_epoch_writes_run_folder_and_is_deterministic(prepared_small, tmp_path):
    first = _train(prepared_small, tmp_path / "a", "--augment", "all", "--imbalance", "sampler")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and 0 <= summary["val_f1_cinc"] <= 1
    assert "epoch   1" in first.stderr  # the per-epoch progress line

    run = tmp_path / "a"
    results = json.loads((run / "results.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1 and results["best_epoch"] == 0
    for key in ("val_f1_cinc", "val_seg_f1_cinc", "val_auroc_macro", "val_f1_weighted", "val_sens_A",
                "val_spec_noisy", "train_loss", "train_acc", "val_loss", "lr", "segments_per_s"):
        assert key in history[0], key
    assert results["config"]["imbalance"] == "sampler" and results["data"]["train_records"] == 60
    assert set(results) >= {"started", "finished", "best_metrics", "early_stopped", "config"}

    payload = torch.load(run / "model.pt", weights_only=True)  # the contract: no pickled code
    assert payload["model"] == "cnn_only" and tuple(payload["classes"]) == CLASSES
    assert payload["preprocess"]["segment_length"] == 1500
    model = model_from_checkpoint(load_checkpoint(run))
    assert model(torch.zeros(2, 1500)).shape == (2, 4)

    second = _train(prepared_small, tmp_path / "b", "--augment", "all", "--imbalance", "sampler")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((tmp_path / "b" / "history.json").read_text())
    for key in ("train_loss", "val_loss", "val_f1_cinc", "val_auroc_macro"):
        assert again[0][key] == history[0][key], key


def test_train_rejects_unknown_model_before_starting_ray(prepared_small, tmp_path):
    out = subprocess.run([sys.executable, "-m", "ecg_ray.cli", "train", "--data", str(prepared_small),
                          "--out", str(tmp_path), "--model", "wavenet"],
                         capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("ecg-ray: error: model: unknown model 'wavenet'")
    assert "Traceback" not in out.stderr


def test_collate_sampler_balances_real_labels(cinc_labels):
    labels = np.array([CLASS_TO_INDEX[l] for l in cinc_labels.values()])
    rates = class_weights(np.bincount(labels, minlength=4))
    collate = TrainCollate("cpu", seed=0, epoch=0, sample_rates=rates)
    ys = []
    for start in range(0, len(labels), 64):
        y = labels[start:start + 64]
        _, out = collate({"signal": np.zeros((len(y), 8), np.float32), "label_index": y.astype(np.int8)})
        ys.append(out.numpy())
    freq = np.bincount(np.concatenate(ys), minlength=4) / sum(len(y) for y in ys)
    assert np.allclose(freq, 0.25, atol=0.03), freq
    # reproducible per (seed, epoch), different across epochs
    def draw(epoch):
        c = TrainCollate("cpu", seed=0, epoch=epoch, sample_rates=rates)
        return c({"signal": np.zeros((64, 8), np.float32), "label_index": labels[:64].astype(np.int8)})[1]
    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))


def test_signal_batch_accepts_both_layouts():
    rows = np.empty(3, dtype=object)
    for i in range(3):
        rows[i] = np.arange(5, dtype=np.float32) + i
    assert np.array_equal(signal_batch(rows), signal_batch(np.stack(list(rows))))
    assert signal_batch(rows).dtype == np.float32 and signal_batch(rows).shape == (3, 5)


def test_record_selection_is_stratified_and_disjoint(prepared_small):
    train, val, manifest = select_records(prepared_small, None, max_records=60)
    assert len(train) == 60 and not set(train) & set(val)
    assert set(train) <= set(manifest["splits"]["split"]["train"])
    fold_train, fold_val, _ = select_records(prepared_small, val_fold=1)
    assert set(fold_val) == set(manifest["splits"]["folds"][1]) and not set(fold_train) & set(fold_val)
    labels = {r: "N" if i % 4 else "A" for i, r in enumerate(manifest["splits"]["split"]["train"])}
    picked = subsample(list(labels), labels, 40)
    assert sum(labels[r] == "A" for r in picked) == pytest.approx(10, abs=1)
