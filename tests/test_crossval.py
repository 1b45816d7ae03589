"""``ecg-ray crossval`` / ``ecg-ray final``: config sources, fold views, summaries
(unit tests, no Ray), and one end-to-end run of the real CLI on a small real
prepared dataset (2 folds × 1 epoch, then the final model for 1 epoch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import PROJECT_ROOT
from ecg_ray.data import store
from ecg_ray.data.errors import DataError
from ecg_ray.tuning.experiment import train_config_from as load_train_config
from ecg_ray.training.crossval import (RECORD_METRICS, cv_splits, dataset_view,
                                       summarize, write_tables)


# -- where configs come from -----------------------------------------------------------------------

def test_config_from_yaml_results_and_sweep(tmp_path):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"model": "cnn_lstm", "lr": 0.002, "augment": "all"}))
    cfg, what = load_train_config(tmp_path / "cfg.yaml")
    assert cfg.model == "cnn_lstm" and cfg.lr == 0.002 and "jitter" in cfg.augment and "cfg.yaml" in what

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"config": {**cfg.to_dict(), "seed": 7}}))
    assert load_train_config(run)[0].seed == 7
    assert load_train_config(run / "results.json")[0].seed == 7

    sweep = tmp_path / "sweep"
    for i, (model, scores) in enumerate([("cnn_only", [0.5, 0.6]), ("gru", [0.7, 0.65]), ("resnet", [0.62])]):
        trial = sweep / f"run_trial_x_0000{i}_{i}_model={model}"
        trial.mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps({"model": model, "num_epochs": 3}))
        (trial / "result.json").write_text("".join(json.dumps({"val_f1_cinc": s, "training_iteration": n + 1}) + "\n"
                                                   for n, s in enumerate(scores)))
    cfg, what = load_train_config(sweep)
    assert cfg.model == "gru" and "0.6500" in what  # by the last reported score, as `ecg-ray sweep` ranks

    (tmp_path / "bad.yaml").write_text("model: cnn_only\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_train_config(tmp_path / "bad.yaml")
    with pytest.raises(DataError, match="sweep spec"):
        load_train_config(PROJECT_ROOT / "search_spaces" / "smoke.yaml")


# -- summaries -------------------------------------------------------------------------------------

def _fake_fold(fold: int, scores: list[float]) -> dict:
    history = [{"epoch": e, **{m: s for m in RECORD_METRICS}, "lr": 1e-3} for e, s in enumerate(scores)]
    best = int(np.argmax(scores))
    return {"fold": fold, "history": history,
            "results": {"best_epoch": best, "best_metrics": history[best], "early_stopped": False, "seconds": 1.0,
                        "data": {"train_records": 80, "val_records": 20}}}


def test_summary_mean_sd_and_median_best_epoch(tmp_path):
    folds = [_fake_fold(0, [0.5, 0.7, 0.6]), _fake_fold(1, [0.4, 0.5, 0.8]), _fake_fold(2, [0.6, 0.55, 0.5])]
    s = summarize(folds)
    assert s["best_epochs"] == [2, 3, 1] and s["median_best_epoch"] == 2 and s["final_epochs"] == 2
    assert s["best"]["mean"]["val_f1_cinc"] == pytest.approx(np.mean([0.7, 0.8, 0.6]))
    assert s["best"]["sd"]["val_f1_cinc"] == pytest.approx(np.std([0.7, 0.8, 0.6], ddof=1))
    assert s["common"]["mean"]["val_f1_cinc"] == pytest.approx(np.mean([0.7, 0.5, 0.55]))  # all at epoch 2
    assert s["last"]["mean"]["val_auroc_macro"] == pytest.approx(np.mean([0.6, 0.8, 0.5]))
    assert summarize(folds[:2])["final_epochs"] == 3  # median 2.5 rounds up

    s.update(config={"model": "cnn_only", "num_epochs": 3, "patience": 0, "max_records": None},
             config_source="test", prepared="/p", fold_source="3 folds", folds=3)
    write_tables(tmp_path, s)
    md = (tmp_path / "crossval.md").read_text()
    assert "**0.700 ± 0.100**" in md and "| 1 | 3/3 |" in md
    lines = (tmp_path / "crossval.csv").read_text().splitlines()
    assert lines[0].split(",")[:4] == ["readout", "fold", "best_epoch", "epochs_run"]
    assert len(lines) == 1 + 3 * (3 + 2)


# -- fold views ------------------------------------------------------------------------------------

def test_new_folds_view_shares_segments(prepared_small, tmp_path):
    manifest = store.read_manifest(prepared_small)
    same, _, changed = cv_splits(manifest, prepared_small, len(manifest["splits"]["folds"]))
    assert not changed and same is manifest["splits"]

    splits, what, changed = cv_splits(manifest, prepared_small, 3, exclude_test=True)
    assert changed and "test split left out" in what
    folds = splits["folds"]
    flat = [r for f in folds for r in f]
    assert len(folds) == 3 and len(flat) == len(set(flat))  # no record in two folds
    split = manifest["splits"]["split"]
    assert set(flat) == set(split["train"]) | set(split["val"])
    assert not set(flat) & set(split["test"])

    view = dataset_view(prepared_small, tmp_path / "view", splits, what)
    assert (view / "records").is_symlink()
    assert store.read_manifest(view)["splits"]["folds"] == folds
    assert store.load_index(view)["record_id"].size == store.load_index(prepared_small)["record_id"].size


def test_finished_folds_are_kept_and_other_configs_refused(prepared_small, tmp_path):
    """A rerun keeps finished folds (no training, so no Ray here) and refuses
    to mix a different config into the same folder."""
    from dataclasses import replace

    from ecg_ray.models import build_model
    from ecg_ray.training.checkpoint import save_checkpoint
    from ecg_ray.training.config import TrainConfig
    from ecg_ray.training.crossval import run_crossval

    cfg = TrainConfig(model="cnn_only", num_epochs=3, patience=0)
    out = tmp_path / "cv"
    model = build_model("cnn_only", channels=[4])
    for k, scores in enumerate([[0.4, 0.6, 0.5], [0.3, 0.35, 0.7]]):
        fold_cfg = replace(cfg, val_fold=k).to_dict()
        folder = out / f"fold_{k}"
        history = [{"epoch": e, **{m: v for m in RECORD_METRICS}} for e, v in enumerate(scores)]
        best = int(np.argmax(scores))
        save_checkpoint(folder, model_name="cnn_only", model_params=model.hparams, state_dict=model.state_dict(),
                        preprocess={}, config=fold_cfg, epoch=best, metrics=history[best])
        (folder / "history.json").write_text(json.dumps(history))
        (folder / "run_config.json").write_text(json.dumps(fold_cfg))
        (folder / "results.json").write_text(json.dumps({
            "config": fold_cfg, "best_epoch": best, "best_metrics": history[best], "epochs": 3,
            "early_stopped": False, "seconds": 1.0, "data": {"train_records": 300, "val_records": 100}}))
    logged = []
    summary = run_crossval(cfg, prepared_small, out, folds=2, log=logged.append)
    assert sum("already done" in line for line in logged) == 2
    assert summary["best_epochs"] == [2, 3] and summary["final_epochs"] == 3
    assert summary["best"]["mean"]["val_f1_cinc"] == pytest.approx(0.65)
    assert summary["common"]["mean"]["val_f1_cinc"] == pytest.approx(0.6)  # both folds after 3 epochs
    assert "300/100, 300/100" in (out / "crossval.md").read_text()
    with pytest.raises(DataError, match="different config"):
        run_crossval(replace(cfg, lr=0.01), prepared_small, out, folds=2, log=logged.append)


# -- end to end: the real CLI with Ray Train -------------------------------------------------------

@pytest.mark.e2e
def test_crossval_then_final_end_to_end(prepared_small, tmp_path, ray_tmp):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(ECG_RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": "cnn_only", "model_params": {"channels": [8, 16]},
                                      "num_epochs": 5, "patience": 0, "batch_size": 32, "lr": 0.002}))
    cv = tmp_path / "cv"

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "ecg_ray.cli", *args], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    head = cli("crossval", "--config", str(config), "--data", str(prepared_small), "--folds", "2",
               "--num-epochs", "1", "--max-records", "60", "--fold-ids", "1", "--out", str(cv))
    # one of the two folds is trained (the suite's time budget; summaries of several folds are unit-tested)
    assert head["folds"] == [1] and head["best_epochs"] == [1] and head["final_epochs"] == 1
    assert 0.0 <= head["val_f1_cinc_mean"] <= 1.0

    summary = json.loads((cv / "summary.json").read_text())
    assert summary["config"]["num_epochs"] == 1 and summary["config"]["max_records"] == 60
    assert "2 new stratified folds" in summary["fold_source"]
    folds = store.read_manifest(cv / "_data")["splits"]["folds"]
    assert len(folds) == 2 and not set(folds[0]) & set(folds[1])
    for k in (1,):
        results = json.loads((cv / f"fold_{k}" / "results.json").read_text())
        assert results["config"]["val_fold"] == k
        payload = torch.load(cv / f"fold_{k}" / "model.pt", weights_only=True)  # the checkpoint contract
        assert payload["config"]["val_fold"] == k
        row = summary["per_fold"][0]
        assert row["best_metrics"]["val_f1_cinc"] == pytest.approx(results["best_metrics"]["val_f1_cinc"])
    assert (cv / "crossval.md").read_text().startswith("# Cross-validation: `cnn_only`")
    assert len((cv / "crossval.csv").read_text().splitlines()) == 1 + 3 * (1 + 2)

    final = tmp_path / "final"
    head = cli("final", "--from-crossval", str(cv), "--data", str(prepared_small), "--max-records", "60",
               "--out", str(final))
    assert head["epochs"] == 1 and head["trained_on"] == "train+val split" and head["monitored_on"] == "test split"
    info = json.loads((final / "final.json").read_text())
    assert info["config"]["patience"] == 0 and info["config"]["val_fold"] is None
    manifest = store.read_manifest(final / "_data")
    saved = store.read_manifest(prepared_small)["splits"]["split"]
    assert manifest["splits"]["split"]["train"] == sorted(saved["train"] + saved["val"])
    assert manifest["splits"]["split"]["val"] == saved["test"]
    payload = torch.load(final / "model.pt", weights_only=True)
    assert payload["epoch"] == 0 and payload["model_params"]["channels"] == [8, 16]
