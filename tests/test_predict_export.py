"""``ecg-ray predict`` and ``ecg-ray export``, and the checkpoint's weights-only contract.

Real records from ../shared/data; a tiny random model saved with
``save_checkpoint`` stands in for a trained one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from conftest import PROJECT_ROOT, save_tiny_checkpoint
from ecg_ray.bench.prepare import link_records
from ecg_ray.data import physionet2017
from ecg_ray.data.errors import RecordError
from ecg_ray.evaluate import evaluate_folder
from ecg_ray.export import export_model
from ecg_ray.predict import load_predictor, read_input, time_predict
from ecg_ray.training.checkpoint import FORMAT, load_checkpoint

#: A real 30-s record.
RECORD_30S = "A00001"


def _tiny(folder: Path, seed: int = 0) -> Path:
    return save_tiny_checkpoint(folder, seed, epoch=3, metrics={"val_f1_cinc": 0.5, "val_f1_N": 0.7},
                                history=[{"epoch": 0}], optimizer={"state": {}, "param_groups": []})


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory.mktemp("tiny_ckpt"))


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecg_ray.cli", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


# -- the checkpoint contract -----------------------------------------------------------------------

def test_checkpoint_loads_with_weights_only(tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    assert payload["format"] == FORMAT and payload["model"] == "cnn_only"
    assert payload["preprocess"]["segment_length"] == 3000 and payload["classes"] == ["N", "A", "O", "~"]


class Sneaky:
    """Any class: unpickling it would mean running code named by the file."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("planted", [Sneaky(), os.system, Path("/tmp")], ids=["object", "function", "path"])
def test_checkpoint_with_pickled_object_is_refused(tiny_checkpoint, tmp_path, planted):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["config"]["extra"] = planted
    bad = tmp_path / "model.pt"
    torch.save(payload, bad)
    with pytest.raises(ValueError, match="refusing checkpoint .*weights_only=True"):
        load_checkpoint(bad)
    with pytest.raises(ValueError, match="refusing checkpoint"):
        load_predictor(bad)


def test_cli_refuses_pickled_checkpoint_in_one_line(tiny_checkpoint, tmp_path):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["metrics"] = Sneaky()
    bad = tmp_path / "model.pt"
    torch.save(payload, bad)
    out = _cli("predict", "--checkpoint", str(bad), str(physionet2017_record(RECORD_30S)))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("ecg-ray: error: refusing checkpoint") and out.stderr.count("\n") == 1


def physionet2017_record(name: str) -> Path:
    from conftest import CINC_DIR

    return CINC_DIR / f"{name}.mat"


# -- predict ---------------------------------------------------------------------------------------

def test_predict_real_record_well_under_a_second(cinc_dir, tiny_checkpoint):
    predictor = load_predictor(tiny_checkpoint)
    signal, fs = read_input(cinc_dir / f"{RECORD_30S}.hea")
    assert len(signal) == 30 * fs
    ms = time_predict(predictor, signal=signal, fs=fs, repeats=5)
    assert ms < 250, f"{ms:.0f} ms per 30-s record"

    out = _cli("predict", "--checkpoint", str(tiny_checkpoint), str(cinc_dir / f"{RECORD_30S}.mat"),
               str(cinc_dir / "A00002"), "--threads", "1")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["record"] for r in rows] == [str(cinc_dir / f"{RECORD_30S}.mat"), str(cinc_dir / "A00002")]
    for r in rows:
        assert r["label"] in ("N", "A", "O", "~")
        assert sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert rows[0]["n_segments"] == 2 and rows[0]["padded"] is False  # 30 s: 20-s windows every 10 s
    expected = predictor.predict_signal(signal, fs, "x")["probabilities"]
    assert rows[0]["probabilities"] == pytest.approx(expected, abs=1e-5)


def test_predict_rejects_corrupt_file(cinc_dir, tiny_checkpoint, tmp_path):
    (tmp_path / "A99999.hea").write_text((cinc_dir / "A00001.hea").read_text().replace("A00001", "A99999"))
    (tmp_path / "A99999.mat").write_bytes((cinc_dir / "A00001.mat").read_bytes()[:300])  # truncated
    bad = tmp_path / "A99999.mat"
    out = _cli("predict", "--checkpoint", str(tiny_checkpoint), str(bad))
    assert out.returncode != 0 and out.stdout == ""
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"ecg-ray: error: {bad}: unreadable signal file")

    # several inputs: each unusable one gets its line, the good one is still answered, exit non-zero
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    good = cinc_dir / "A00002.mat"
    inputs = [(good, None), (bad, "unreadable signal file"), (tmp_path / "nope.mat", "no such record"),
              (tmp_path / "junk.npy", "unreadable .npy file")]
    out = _cli("predict", "--checkpoint", str(tiny_checkpoint), "--fs", "300", *(str(p) for p, _ in inputs))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert [line.split(": ")[2] for line in lines] == [str(p) for p, r in inputs if r]
    for line, (path, reason) in zip(lines, [i for i in inputs if i[1]]):
        assert line.startswith(f"ecg-ray: error: {path}: {reason}")
    assert json.loads(out.stdout)["record"] == str(good)

    np.save(tmp_path / "sig.npy", np.zeros(10))
    with pytest.raises(RecordError, match="sampling rate unknown"):
        read_input(tmp_path / "sig.npy")


def test_predict_any_rate_any_length_and_formats(cinc_dir, mitdb_dir, tiny_checkpoint, tmp_path):
    predictor = load_predictor(tiny_checkpoint)
    signal, fs = physionet2017.read_record(cinc_dir, RECORD_30S)
    at_300 = predictor.predict_signal(signal, fs, "a")
    # the same record at 500 Hz as .npy: resampled back by the preprocessing
    np.save(tmp_path / "rec500.npy", scipy.signal.resample_poly(signal, 5, 3))
    s500, fs500 = read_input(tmp_path / "rec500.npy", fs=500)
    at_500 = predictor.predict_signal(s500, fs500, "b")
    assert at_500["n_segments"] == at_300["n_segments"] == 2
    assert at_500["probabilities"] == pytest.approx(at_300["probabilities"], abs=0.03)
    # shorter than one segment: zero-padded to one (the checkpoint's policy is "pad")
    short = predictor.predict_signal(signal[: int(3 * fs)], fs, "short")
    assert short["n_segments"] == 1 and short["padded"] is True
    # a WFDB record at 360 Hz (MLII lead by default)
    wfdb_signal, wfdb_fs = read_input(mitdb_dir / "100.hea")
    assert wfdb_fs == 360
    row = predictor.predict_signal(wfdb_signal[: int(60 * wfdb_fs)], wfdb_fs, "100")
    assert row["n_segments"] == 5  # 60 s: 20-s windows starting 0, 10, ..., 40 s
    # the CLI's table
    out = _cli("predict", "--checkpoint", str(tiny_checkpoint), str(tmp_path / "rec500.npy"), "--fs", "500",
               "--format", "table")
    assert out.returncode == 0, out.stderr
    header, line = out.stdout.splitlines()
    assert header.split()[:2] == ["record", "label"] and line.split()[0] == str(tmp_path / "rec500.npy")


# -- export ----------------------------------------------------------------------------------------

def test_export_archive_contents_and_torchscript(cinc_dir, cinc_labels, tiny_checkpoint, tmp_path):
    record = cinc_dir / "A00005.mat"
    # release metrics from an evaluate run (a handful of real records)
    small = link_records(cinc_dir, sorted(cinc_labels)[:12], cinc_labels, tmp_path / "few")
    metrics_file = tmp_path / "evaluate.json"
    metrics_file.write_text(json.dumps(evaluate_folder(tiny_checkpoint, small, log=lambda m: None)))

    archive = tmp_path / "release" / "model.tar.gz"
    out = _cli("export", "--checkpoint", str(tiny_checkpoint), "--out", str(archive), "--metrics",
               str(metrics_file), "--verify-record", str(record))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["torchscript_max_abs_diff"] <= 1e-4 and "real record" in summary["verified_on"]

    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == sorted(["model.pt", "model.ts", "config.json", "metrics.json",
                                                  "MODEL_CARD.md"])
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked"
    config = json.loads((unpacked / "config.json").read_text())
    assert config["model"] == "cnn_only" and config["classes"] == ["N", "A", "O", "~"]
    assert config["model_params"]["channels"] == [8, 16]
    assert config["preprocess"] == load_checkpoint(tiny_checkpoint)["preprocess"]
    metrics = json.loads((unpacked / "metrics.json").read_text())
    assert metrics["metrics"]["f1_cinc"] == json.loads(metrics_file.read_text())["f1_cinc"]
    card = (unpacked / "MODEL_CARD.md").read_text()
    assert "NOT a medical device" in card and "10.22489/CinC.2017.065-469" in card
    assert "Research use only" in card and "| F1(N,A,O)" in card
    # the slim checkpoint keeps the contract and drops the optimizer state
    slim = torch.load(unpacked / "model.pt", weights_only=True)
    assert "optimizer" not in slim and slim["epoch"] == 3

    # TorchScript == eager, on real segments, at a batch size other than the traced one
    predictor = load_predictor(tiny_checkpoint)
    signal, fs = read_input(record)
    segments, _ = predictor.segments(signal, fs)
    x = torch.from_numpy(segments).unsqueeze(1)
    scripted = torch.jit.load(str(unpacked / "model.ts"))
    with torch.inference_mode():
        assert torch.allclose(scripted(x), predictor.model(x), atol=1e-5)
        assert torch.allclose(scripted(x[:1]), predictor.model(x[:1]), atol=1e-5)

    # predict loads every form and agrees
    reference = predictor.predict_signal(signal, fs)["probabilities"]
    (unpacked / "config.json").unlink()  # the .ts carries its config inside
    for source, prefer in [(archive, "checkpoint"), (archive, "torchscript"), (unpacked / "model.ts", "checkpoint"),
                           (unpacked, "checkpoint")]:
        p = load_predictor(source, prefer=prefer)
        assert p.kind == ("torchscript" if prefer == "torchscript" or source.suffix == ".ts" else "checkpoint")
        assert p.predict_signal(signal, fs)["probabilities"] == pytest.approx(reference, abs=1e-5)
    out = _cli("predict", "--checkpoint", str(archive), str(record))
    assert out.returncode == 0 and json.loads(out.stdout)["probabilities"] == pytest.approx(reference, abs=1e-5)


def test_export_folder_with_checkpoint_metrics(tiny_checkpoint, tmp_path):
    summary = export_model(tiny_checkpoint, tmp_path / "release")
    assert summary["verified_on"] == "synthetic ECG-like signal"
    metrics = json.loads((tmp_path / "release" / "metrics.json").read_text())
    assert metrics["metrics"]["val_f1_cinc"] == 0.5 and "epoch 4" in metrics["from"]
    assert "| F1(N,A,O) — challenge headline | 0.5000 |" in (tmp_path / "release" / "MODEL_CARD.md").read_text()
