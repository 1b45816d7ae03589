"""``ecg-ray evaluate``: recording-level metrics of a checkpoint on real record folders.

A tiny untrained model saved with ``save_checkpoint`` stands in for a trained
one (the numbers are meaningless; the contract is what is tested): the CLI
prints exactly one strict-JSON object, its headline agrees with scikit-learn,
bad records are skipped and counted, and the checkpoint's own preprocessing of
raw records gives the same scores as the prepared segments of those records.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from conftest import save_tiny_checkpoint, PROJECT_ROOT
from ecg_ray import CLASSES, CLASS_TO_INDEX
from ecg_ray.data import store
from ecg_ray.data.dataset import PreparedDataset
from ecg_ray.data.preprocess import PreprocessConfig
from ecg_ray.artifacts import json_safe
from ecg_ray.bench.prepare import link_records
from ecg_ray.evaluate import evaluate_folder
from ecg_ray.predict import Predictor, load_predictor
from ecg_ray.training.metrics import score_records


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"))


# -- the headline against scikit-learn, through evaluate's own aggregation ---------------------------

#: A hand-made recording-level confusion matrix (rows true N, A, O, ~; columns predicted).
HAND = np.array([[5, 1, 1, 0],
                 [1, 3, 0, 0],
                 [1, 0, 4, 1],
                 [0, 1, 1, 2]])


class PlantedPredictor(Predictor):
    """Predicts a chosen class for each record: its segments carry the class
    index, and the 'model' turns that into a one-hot probability."""

    def __init__(self, planted: dict[str, int]):
        super().__init__(model=None, preprocess=PreprocessConfig(), source="planted", kind="test")
        self.planted = planted

    def segments(self, signal, fs, name="?"):
        n = 1 + len(name) % 3  # records of several segments: aggregation must still give one vote
        return np.full((n, 8), self.planted[name], dtype=np.float32), False

    def logits(self, segments):  # one-hot with a wide margin: softmax is (nearly) the planted class
        return 50.0 * np.eye(len(CLASSES))[segments[:, 0].astype(int)]


def test_f1_cinc_matches_sklearn_on_hand_made_confusion(cinc_dir, cinc_labels, tmp_path):
    names, planted, y_true, y_pred = [], {}, [], []
    for t, label in enumerate(CLASSES):
        pool = [r for r, l in cinc_labels.items() if l == label][:HAND[t].sum()]
        preds = [p for p in range(4) for _ in range(HAND[t, p])]
        for name, p in zip(pool, preds):
            names.append(name)
            planted[name] = p
            y_true.append(t)
            y_pred.append(p)
    folder = link_records(cinc_dir, sorted(names), cinc_labels, tmp_path / "hand")
    result = evaluate_folder(PlantedPredictor(planted), folder, log=lambda m: None)

    assert result["confusion"] == HAND.tolist()
    assert result["n_records"] == HAND.sum() and result["n_skipped"] == 0
    expected = f1_score(y_true, y_pred, labels=[0, 1, 2], average=None)
    assert result["f1_cinc"] == pytest.approx(expected.mean())
    # the challenge's formula, straight from the confusion matrix: 2 TP / (row + column)
    by_hand = [2 * HAND[k, k] / (HAND[k].sum() + HAND[:, k].sum()) for k in range(3)]
    assert result["f1_cinc"] == pytest.approx(np.mean(by_hand))
    assert result["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert result["f1_weighted"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert result["accuracy"] == pytest.approx(np.trace(HAND) / HAND.sum())
    assert result["sens_A"] == pytest.approx(HAND[1, 1] / HAND[1].sum())
    fp_a = HAND[:, 1].sum() - HAND[1, 1]
    assert result["spec_A"] == pytest.approx((HAND.sum() - HAND[1].sum() - fp_a) / (HAND.sum() - HAND[1].sum()))


def test_json_safe_turns_nan_into_null():
    out = json_safe({"a": float("nan"), "b": [np.float32(1.5), float("inf")], "c": np.int64(3)})
    assert json.dumps(out, allow_nan=False) == '{"a": null, "b": [1.5, null], "c": 3}'


# -- the CLI on real records ------------------------------------------------------------------------

def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecg_ray.cli", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_evaluate_cli_prints_one_json_object(small_cinc_dir, tiny_checkpoint, tmp_path):
    preds = tmp_path / "predictions.csv"
    out = _cli("evaluate", "--checkpoint", str(tiny_checkpoint), "--data-dir", str(small_cinc_dir),
               "--predictions", str(preds), "--threads", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)  # the whole of stdout is one JSON object
    assert "NaN" not in out.stdout and "Infinity" not in out.stdout

    n_labelled = len((small_cinc_dir / "REFERENCE.csv").read_text().splitlines())
    assert result["n_records"] + result["n_skipped"] == n_labelled
    assert result["n_records"] == n_labelled and result["skipped"] == {}
    for key in ["f1_cinc", "f1_macro", "f1_weighted", "accuracy", "auroc_macro",
                *[f"{m}_{k}" for m in ("f1", "auroc", "sens", "spec") for k in ("N", "A", "O", "noisy")]]:
        assert key in result, key
    assert 0.0 <= result["f1_cinc"] <= 1.0
    conf = np.array(result["confusion"])
    assert conf.shape == (4, 4) and conf.sum() == result["n_records"]
    assert conf.sum(axis=1).tolist() == [result["records_per_class"][c] for c in CLASSES]
    assert result["segment"]["f1_cinc"] is not None and result["checkpoint"] == str(tiny_checkpoint)

    # the predictions file holds the same records; sklearn on it gives the same headline and AUROC
    with open(preds) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result["n_records"]
    assert list(rows[0]) == ["record", "label", "p_N", "p_A", "p_O", "p_noisy", "predicted", "n_segments"]
    y = np.array([CLASS_TO_INDEX[r["label"]] for r in rows])
    p = np.array([[float(r[f"p_{k}"]) for k in ("N", "A", "O", "noisy")] for r in rows])
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    assert [CLASSES[i] for i in p.argmax(1)] == [r["predicted"] for r in rows]
    assert result["f1_cinc"] == pytest.approx(f1_score(y, p.argmax(1), labels=[0, 1, 2], average="macro"))
    assert result["auroc_A"] == pytest.approx(roc_auc_score(y == 1, p[:, 1]), abs=1e-3)  # CSV has 6 digits


def test_evaluate_skips_bad_records_and_counts_reasons(cinc_dir, cinc_labels, tmp_path, capsys):
    good = sorted(cinc_labels)[:4]
    folder = link_records(cinc_dir, good, cinc_labels, tmp_path / "mixed")
    # a truncated signal file, a record without a label, a record with an unknown label
    (folder / "Z00001.hea").write_text((cinc_dir / f"{good[0]}.hea").read_text().replace(good[0], "Z00001"))
    (folder / "Z00001.mat").write_bytes((cinc_dir / f"{good[0]}.mat").read_bytes()[:200])
    for name in ("Z00002", "Z00003"):
        for ext in (".hea", ".mat"):
            (folder / f"{name}{ext}").symlink_to(cinc_dir / f"{good[1]}{ext}")
    with open(folder / "REFERENCE.csv", "a") as f:
        f.write("Z00001,N\nZ00003,X\n")
    result = evaluate_folder(save_tiny_checkpoint(tmp_path / "ckpt"), folder)
    err = capsys.readouterr().err
    assert result["n_records"] == 4 and result["n_skipped"] == 3
    assert result["skipped"] == {"unreadable signal file": 1, "no label": 1, "unknown label": 1}
    for name in ("Z00001", "Z00002", "Z00003"):
        assert name in err


def test_evaluate_uses_the_checkpoints_preprocessing(prepared_small, small_cinc_dir, tiny_checkpoint):
    """Scores of raw test-split records = scores of their prepared segments."""
    test_ids = PreparedDataset(prepared_small).split("test")
    result, predictions = evaluate_folder(tiny_checkpoint, small_cinc_dir, records=test_ids,
                                          return_predictions=True, log=lambda m: None)
    assert result["n_records"] == len(test_ids)
    assert sorted(p["record"] for p in predictions) == sorted(test_ids)

    table = store.load_segments(prepared_small, test_ids)
    x = store.signal_matrix(table)
    predictor = load_predictor(tiny_checkpoint)
    codes, ids = pd.factorize(table.column("record_id").to_numpy())
    y = table.column("label_index").to_numpy()[[list(codes).index(k) for k in range(len(ids))]]
    expected = score_records(y, predictor.logits(x), codes, predictor.aggregate, predictor.temperature, prefix="")
    for key in ("f1_cinc", "accuracy", "auroc_macro", "f1_N", "sens_O"):
        assert result[key] == pytest.approx(expected[key], abs=1e-6), key


def test_evaluate_mitbih_windows(mitdb_dir, tiny_checkpoint, tmp_path):
    folder = tmp_path / "mitdb"
    folder.mkdir()
    for ext in (".hea", ".dat", ".atr"):
        (folder / f"100{ext}").symlink_to(mitdb_dir / f"100{ext}")
    result = evaluate_folder(tiny_checkpoint, folder, source="mitbih", log=lambda m: None)
    assert result["source"] == "mitbih"
    assert result["n_records"] > 50  # 30-s windows of a 30-min record, resampled 360 → 150 Hz
    assert result["n_segments"] == 2 * result["n_records"]  # 20-s windows every 10 s in 30 s
