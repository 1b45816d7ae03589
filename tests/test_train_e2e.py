"""`ecg-ray train` end to end through Ray Data and a TorchTrainer on real records,
its run folder and checkpoint contract, determinism, and the data feed's pieces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

from conftest import PROJECT_ROOT
from smoke_sweep import kill_ray_session
from ecg_ray import CLASSES
from ecg_ray.training.checkpoint import load_checkpoint, model_from_checkpoint
from ecg_ray.data.dataset import PreparedDataset, subsample


def _train(prepared, out, *extra):
    cmd = [sys.executable, "-m", "ecg_ray.cli", "train", "--data", str(prepared), "--out", str(out),
           "--model", "cnn_only", "--seed", "7", "--num-epochs", "1", "--max-records", "60",
           "--cpus-per-worker", "1", *extra]
    # Ray's own processes can outlive the driver and still write to its session
    # folder: kill them first, then remove the folder (as the ray_tmp fixture does)
    ray_tmp = tempfile.mkdtemp(prefix="ecgray", dir="/tmp")
    env = {**os.environ, "ECG_RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT, env=env)
    finally:
        kill_ray_session(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.e2e
def test_train_one_epoch_writes_run_folder_and_is_deterministic(prepared_small, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    # the same run twice, at the same time (two local Rays): equal numbers whatever the timing
    args = ("--augment", "all", "--imbalance", "sampler")
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda out: _train(prepared_small, out, *args), [tmp_path / "a", tmp_path / "b"])
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and 0 <= summary["val_f1_cinc"] <= 1
    assert "epoch   1" in first.stderr  # the per-epoch progress line

    run = tmp_path / "a"
    results = json.loads((run / "results.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1 and results["best_epoch"] == 0
    for key in ("val_f1_cinc", "val_seg_f1_cinc", "val_auroc_macro", "val_f1_weighted", "val_sens_A",
                "val_spec_noisy", "val_ppv_A", "train_loss", "train_acc", "val_loss", "lr", "segments_per_s"):
        assert key in history[0], key
    assert results["config"]["imbalance"] == "sampler" and results["data"]["train_records"] == 60
    assert set(results) >= {"started", "finished", "best_metrics", "early_stopped", "config"}

    payload = torch.load(run / "model.pt", weights_only=True)  # the contract: no pickled code
    assert payload["model"] == "cnn_only" and tuple(payload["classes"]) == CLASSES
    assert payload["preprocess"]["segment_length"] == 3000 and payload["preprocess"]["fs"] == 150
    assert results["calibration"]["temperature"] == pytest.approx(payload["temperature"])  # fitted on validation
    model = model_from_checkpoint(load_checkpoint(run))
    assert model(torch.zeros(2, 3000)).shape == (2, 4)

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


def test_record_selection_is_stratified_and_disjoint(prepared_small):
    data = PreparedDataset(prepared_small)
    train, val = data.select(None, max_records=60)
    assert len(train) == 60 and not set(train) & set(val)
    assert set(train) <= set(data.split("train"))
    fold_train, fold_val = data.select(val_fold=1)
    assert set(fold_val) == set(data.splits["folds"][1]) and not set(fold_train) & set(fold_val)
    labels = {r: "N" if i % 4 else "A" for i, r in enumerate(data.split("train"))}
    picked = subsample(list(labels), labels, 40)
    assert sum(labels[r] == "A" for r in picked) == pytest.approx(10, abs=1)


@pytest.mark.e2e
def test_two_gloo_workers_with_sampler_match_a_single_process_scoring(prepared_small_split, tmp_path):
    """DDP on CPU: 2 workers x 1 CPU, class-balanced resampling (ranks must take the same number of
    equal batches or the all-reduce hangs), the training records streamed from the split layout
    (each rank reads its own row groups), validation split over both ranks and gathered: the
    reported metrics equal a single-process scoring of the same checkpoint on the same records."""
    from ecg_ray.training.calibration import checkpoint_window_logits
    from ecg_ray.training.metrics import score_records

    run, prepared = tmp_path / "ddp", prepared_small_split
    out = _train(prepared, run, "--num-workers", "2", "--imbalance", "sampler", "--no-calibrate", "--no-materialize")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "2 worker(s)" in out.stdout + out.stderr and "data streamed" in out.stderr
    payload = load_checkpoint(run)
    assert payload["config"]["num_workers"] == 2 and "temperature" not in payload
    assert json.loads((run / "results.json").read_text())["data"]["materialized"] is False
    _, val_ids = PreparedDataset(prepared).select(None, max_records=60)
    y, logits, codes = checkpoint_window_logits(payload, prepared, val_ids)
    single = score_records(y, logits, codes, payload["config"]["aggregate"])
    assert len(y) == len(val_ids)  # every validation record scored once: none dropped by the split
    # the record-level NLL is continuous in every probability: equal means the gathered
    # probabilities are the single process's, up to float noise between batch shapes
    assert payload["metrics"]["val_loss"] == pytest.approx(single["val_loss"], abs=1e-6)
    # argmax- and rank-based metrics of a 1-epoch model sit on near-ties that such noise can
    # flip for a record or window or two, nothing more
    for key in ("val_f1_cinc", "val_accuracy", "val_seg_f1_cinc", "val_auroc_macro"):
        assert payload["metrics"][key] == pytest.approx(single[key], abs=0.02), key

    # --resume of the finished run: Train restores its last checkpoint, no epoch is trained again,
    # and the last epoch is reported once more (a sweep trial restored there ends on its real result)
    history = json.loads((run / "history.json").read_text())
    checkpoints = [d for d in run.rglob("checkpoint_*") if d.is_dir()]
    again = _train(prepared, run, "--num-workers", "2", "--imbalance", "sampler", "--no-calibrate",
                   "--no-materialize", "--resume")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert again.stderr.count("epoch   1 ") == 1 and "epoch   2" not in again.stderr
    assert json.loads((run / "history.json").read_text()) == history
    # reported with its checkpoint again (a sweep trial's last result keeps its checkpoint_path)
    assert len([d for d in run.rglob("checkpoint_*") if d.is_dir()]) == len(checkpoints) + 1, checkpoints
    assert load_checkpoint(run)["epoch"] == payload["epoch"]
