"""Shared fixtures: where the real data lives, and small real samples of it.

Tests read the real PhysioNet files from ``../shared/data`` (or ``$ECG_RAY_DATA``);
nothing is copied into the project.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecg_ray import CLASS_TO_INDEX
from ecg_ray.bench.prepare import link_records
from ecg_ray.data import physionet2017
from ecg_ray.data.preprocess import PreprocessConfig, preprocess_record

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("ECG_RAY_DATA", PROJECT_ROOT.parent / "shared" / "data"))
CINC_DIR = DATA_ROOT / "cinc2017" / "training2017"
MITDB_DIR = DATA_ROOT / "mitdb"


@pytest.fixture(scope="session")
def cinc_dir() -> Path:
    if not (CINC_DIR / "REFERENCE.csv").is_file():
        pytest.fail(f"real data not found at {CINC_DIR}: set ECG_RAY_DATA to the shared data folder")
    return CINC_DIR


@pytest.fixture(scope="session")
def mitdb_dir() -> Path:
    if not (MITDB_DIR / "100.hea").is_file():
        pytest.fail(f"MIT-BIH data not found at {MITDB_DIR}")
    return MITDB_DIR


@pytest.fixture(scope="session")
def cinc_labels(cinc_dir) -> dict[str, str]:
    return physionet2017.read_labels(cinc_dir / "REFERENCE.csv")


def load_real_segments(cinc_dir: Path, labels: dict[str, str], per_class: int,
                       cfg: PreprocessConfig = PreprocessConfig()) -> tuple[np.ndarray, np.ndarray]:
    """The first segment of the first ``per_class`` records of each class:
    ``(x float32 (n, segment_length), y int64 (n,))`` in class order."""
    xs, ys = [], []
    for label, index in CLASS_TO_INDEX.items():
        names = [r for r, l in labels.items() if l == label][:per_class]
        for name in names:
            signal, fs = physionet2017.read_record(cinc_dir, name)
            segments, _ = preprocess_record(signal, fs, cfg, name)
            xs.append(segments[0])
            ys.append(index)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


@pytest.fixture(scope="session")
def real_segments(cinc_dir, cinc_labels) -> tuple[np.ndarray, np.ndarray]:
    """16 real preprocessed 5-s segments, 4 per class N, A, O, ~."""
    return load_real_segments(cinc_dir, cinc_labels, per_class=4, cfg=PreprocessConfig(segment_length=1500, stride=None))


# -- prepared datasets, made once per session -----------------------------------------------------

def _prepare_quietly(*args, **kwargs) -> dict:
    from ecg_ray.data.prepare import prepare

    return prepare(*args, log=lambda *a, **k: None, **kwargs)


@pytest.fixture(scope="session")
def prepared_cinc(cinc_dir, tmp_path_factory):
    """All 7,528 real records prepared with the default config (about a minute on
    2 cores, ~300 MB): the folder holding ``manifest.json`` and ``segments/``."""
    out = tmp_path_factory.mktemp("prepared_cinc")
    _prepare_quietly("cinc2017", cinc_dir, out, workers=min(2, os.cpu_count() or 1))
    yield out
    shutil.rmtree(out, ignore_errors=True)  # don't leave 300 MB in each of pytest's kept tmp dirs


#: Records per class in ``prepared_small`` (there are 246 '~' records, so all four fit).
SMALL_PER_CLASS = 100


@pytest.fixture(scope="session")
def small_cinc_dir(cinc_dir, cinc_labels, tmp_path_factory) -> Path:
    """A records folder of the first ``SMALL_PER_CLASS`` real records of each class:
    symlinks to the shared files plus a REFERENCE.csv of just those records."""
    chosen = []
    for label in CLASS_TO_INDEX:
        chosen += [r for r, l in cinc_labels.items() if l == label][:SMALL_PER_CLASS]
    return link_records(cinc_dir, sorted(chosen), cinc_labels, tmp_path_factory.mktemp("small_cinc") / "training2017")


@pytest.fixture(scope="session")
def prepared_small(small_cinc_dir, tmp_path_factory) -> Path:
    """A stratified subset of ~400 real records (``SMALL_PER_CLASS`` per class),
    prepared with the default config, for fast end-to-end training tests."""
    out = tmp_path_factory.mktemp("prepared_small")
    _prepare_quietly("cinc2017", small_cinc_dir, out, workers=min(2, os.cpu_count() or 1))
    return out


@pytest.fixture(scope="session")
def prepared_small_split(small_cinc_dir, tmp_path_factory) -> Path:
    """``prepared_small``'s records in the split layout (one folder per split x fold):
    what a run that streams reads, each rank its own row groups (``data.shards``)."""
    out = tmp_path_factory.mktemp("prepared_small_split")
    _prepare_quietly("cinc2017", small_cinc_dir, out, workers=min(2, os.cpu_count() or 1), split_layout=True)
    return out


@pytest.fixture(scope="session")
def smoke_sweep(request, tmp_path_factory):
    """The session's one real two-stage sweep on a local 3-node cluster, its driver
    killed once and resumed, a node lost (see smoke_sweep.py)."""
    from smoke_sweep import SmokeSweep, run_on_cluster

    given = os.environ.get("ECG_RAY_TEST_SWEEP")
    if given:
        return SmokeSweep(Path(given))
    prepared = request.getfixturevalue("prepared_small")
    return run_on_cluster(prepared, tmp_path_factory.mktemp("smoke_sweep"))


@pytest.fixture(scope="session")
def sweep_dir(smoke_sweep) -> Path:
    """The experiment folder of the session's real smoke sweep."""
    return smoke_sweep.experiment


@pytest.fixture(scope="session")
def sweep(sweep_dir):
    """``(trials_df, epochs_df)`` of the session's real smoke sweep."""
    from ecg_ray.tuning.analysis import load_experiment

    return load_experiment(sweep_dir)


def save_tiny_checkpoint(folder: Path, seed: int = 0, **overrides) -> Path:
    """A small cnn_only checkpoint with random weights and non-trivial BatchNorm
    statistics, for tests that need a checkpoint but no training."""
    import torch

    from ecg_ray.models import build_model
    from ecg_ray.training.checkpoint import save_checkpoint
    from ecg_ray.training.config import TrainConfig

    torch.manual_seed(seed)
    model = build_model("cnn_only", channels=[8, 16], kernel_size=5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    cfg = TrainConfig(model="cnn_only", model_params={"channels": [8, 16], "kernel_size": 5})
    fields = dict(model_name="cnn_only", model_params=model.hparams, state_dict=model.state_dict(),
                  preprocess=PreprocessConfig().to_dict(), config=cfg.to_dict(), epoch=0,
                  metrics={"val_f1_cinc": 0.5})
    return save_checkpoint(folder, **{**fields, **overrides})


@pytest.fixture
def ray_tmp():
    """A short Ray session folder (socket paths must stay < 108 chars) for a test's
    own Ray; every process of that session is killed afterwards, even on failure."""
    import shutil
    import tempfile

    from smoke_sweep import kill_ray_session

    path = tempfile.mkdtemp(prefix="ecgray", dir="/tmp")
    yield path
    kill_ray_session(path)
    shutil.rmtree(path, ignore_errors=True)
