"""The committed release model loads from a fresh clone and reproduces the
test-split predictions it was released with."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from conftest import PROJECT_ROOT
from ecg_ray.evaluate import evaluate_folder
from ecg_ray.predict import load_predictor

RELEASE = PROJECT_ROOT / "results" / "release" / "resnet_stages"
PREDICTIONS = PROJECT_ROOT / "results" / "release" / "resnet_stages_test_predictions.csv"


def test_release_reproduces_its_committed_predictions(cinc_dir):
    payload = torch.load(RELEASE / "model.pt", weights_only=True)  # the checkpoint contract
    assert payload["temperature"] > 0 and payload["calibration"]["fitted_on"].endswith("validation records")
    rows = list(csv.DictReader(PREDICTIONS.open()))
    metrics = json.loads((RELEASE / "metrics.json").read_text())
    assert len(rows) == metrics["metrics"]["n_records"] == 1130
    chosen = rows[:: len(rows) // 24][:24]
    result, predictions = evaluate_folder(RELEASE, cinc_dir, records=[r["record"] for r in chosen],
                                          return_predictions=True, log=lambda m: None)
    assert result["n_records"] == len(chosen)
    by_name = {p["record"]: p for p in predictions}
    for row in chosen:
        got = by_name[row["record"]]
        assert got["predicted"] == row["predicted"]
        for key in ("p_N", "p_A", "p_O", "p_noisy"):
            assert got[key] == pytest.approx(float(row[key]), abs=1e-5)

def test_release_exports_to_torchscript_that_matches_eager(cinc_dir, tmp_path):
    """The TorchScript form is not committed (the tree stays small): `ecg-ray export` makes it
    from the committed checkpoint, and it scores a real record like the eager model."""
    from ecg_ray.export import export_model

    export_model(RELEASE, tmp_path / "export", verify_record=cinc_dir / "A00005")
    script = load_predictor(tmp_path / "export", prefer="torchscript")
    eager = load_predictor(RELEASE)
    assert script.kind == "torchscript" and script.temperature == pytest.approx(eager.temperature)
    from ecg_ray.predict import read_input

    signal, fs = read_input(cinc_dir / "A00005")
    assert script.predict_signal(signal, fs)["probabilities"] == pytest.approx(
        eager.predict_signal(signal, fs)["probabilities"], abs=1e-5)
