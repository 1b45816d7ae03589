"""A trained model as a callable: load once, then label any record (no Ray).

``load_predictor`` loads every form a model ships in and returns a
``Predictor`` that repeats the model's own preprocessing (resample to its rate,
bandpass, z-score, overlapping windows that reach the record's end, pad short
records), runs the windows in batches under ``torch.inference_mode`` and turns
their logits into one prediction per record with the model's own aggregation
and calibration temperature (``metrics.record_probabilities``, the function
training's validation uses). ``read_input`` reads one record from a path.
"""

from __future__ import annotations

import functools
import json
import tarfile
import tempfile
import timeit
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import CLASS_KEYS, CLASSES
from .data import physionet2017
from .data.errors import RecordError
from .data.preprocess import PreprocessConfig, preprocess_record
from .models import batched_logits
from .training.checkpoint import FILENAME as CHECKPOINT_NAME, load_checkpoint, model_from_checkpoint
from .training.metrics import record_probabilities

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript")
CONFIG_NAME = "config.json"
TORCHSCRIPT_NAME = "model.ts"


@dataclass
class Predictor:
    """A loaded model and the preprocessing it was trained with."""

    model: torch.nn.Module  # eager (eval mode) or TorchScript; (B, 1, L) → (B, 4) logits
    preprocess: PreprocessConfig
    source: str  # what was loaded
    kind: str  # "checkpoint" or "torchscript"
    info: dict = field(default_factory=dict)  # model name, params, epoch, metrics, ...
    batch_size: int = 256
    temperature: float = 1.0  # fitted on validation records (calibration); 1 = none
    aggregate: str = "mean_prob"  # how window outputs become a record's probabilities

    def logits(self, segments: np.ndarray) -> np.ndarray:
        """Raw logits ``(n, 4)`` of preprocessed windows ``(n, L)``, batched."""
        return batched_logits(self.model, segments, self.batch_size)

    def record_probabilities(self, window_logits: np.ndarray, codes: np.ndarray, n_records: int) -> np.ndarray:
        """One probability vector per record from its windows' logits."""
        return record_probabilities(window_logits, codes, n_records, self.aggregate, self.temperature)

    def segments(self, signal: np.ndarray, fs: float, name: str = "?") -> tuple[np.ndarray, bool]:
        """The model's own preprocessing: ``(segments (n, L) float32, padded)``."""
        return preprocess_record(signal, fs, self.preprocess, name)

    def predict_signal(self, signal: np.ndarray, fs: float, name: str = "?") -> dict:
        """Label and mean segment probabilities of one raw record (mV at ``fs``)."""
        segments, padded = self.segments(signal, fs, name)
        probs = self.record_probabilities(self.logits(segments), np.zeros(len(segments), np.int64), 1)[0]
        return {"record": name, "label": CLASSES[int(np.argmax(probs))],
                "probabilities": {k: round(float(p), 6) for k, p in zip(CLASS_KEYS, probs)},
                "n_segments": len(segments), "padded": bool(padded), "duration_s": round(float(len(signal) / fs), 3)}


# -- loading --------------------------------------------------------------------------------------

def predictor_from_checkpoint(payload: dict, source: str, batch_size: int = 256) -> Predictor:
    """The ``Predictor`` of a loaded checkpoint (``training.checkpoint.load_checkpoint``)."""
    config = payload.get("config", {})
    info = {"model": payload["model"], "model_params": payload["model_params"], "epoch": payload["epoch"],
            "metrics": payload.get("metrics", {}), "config": config}
    return Predictor(model_from_checkpoint(payload), PreprocessConfig.from_dict(payload["preprocess"]), source,
                     "checkpoint", info, batch_size, float(payload.get("temperature", 1.0)),
                     config.get("aggregate", "mean_prob"))


def _from_torchscript(file: Path, source: str, batch_size: int) -> Predictor:
    extra = {CONFIG_NAME: ""}
    try:
        model = torch.jit.load(str(file), map_location="cpu", _extra_files=extra)
    except Exception as e:
        raise ValueError(f"cannot load TorchScript model {file}: {str(e).splitlines()[0]}") from None
    text = extra[CONFIG_NAME]  # bytes when embedded; json.loads takes bytes or str
    if not text:
        beside = file.parent / CONFIG_NAME
        if not beside.is_file():
            raise FileNotFoundError(f"{file}: no embedded config and no {CONFIG_NAME} beside it")
        text = beside.read_text()
    config = json.loads(text)
    classes = config.get("classes")
    if classes is not None and tuple(classes) != CLASSES:
        raise ValueError(f"{file}: class order {classes} differs from {list(CLASSES)}")
    if "preprocess" not in config:
        raise ValueError(f"{file}: no 'preprocess' section")
    return Predictor(model.eval(), PreprocessConfig.from_dict(config["preprocess"]), source, "torchscript", config,
                     batch_size, float(config.get("temperature", 1.0)), config.get("aggregate", "mean_prob"))


def _from_folder(folder: Path, source: str, batch_size: int, prefer: str) -> Predictor:
    """A run folder or an unpacked export: its checkpoint, unless TorchScript is preferred or alone."""
    script = folder / TORCHSCRIPT_NAME
    if script.is_file() and (prefer == "torchscript" or not (folder / CHECKPOINT_NAME).is_file()):
        return _from_torchscript(script, source, batch_size)
    return predictor_from_checkpoint(load_checkpoint(folder / CHECKPOINT_NAME), source, batch_size)


def load_predictor(path: Path | str, batch_size: int = 256, prefer: str = "checkpoint") -> Predictor:
    """Load a checkpoint (``model.pt`` or the run folder holding it), an export
    archive (``model.tar.gz`` from ``ecg-ray export``) or its unpacked folder, or
    the TorchScript file of an export (``model.ts``; its preprocessing is embedded
    in the file and also read from ``config.json`` beside it).

    An export (archive or folder) holds both forms: ``prefer="checkpoint"``
    (default: the weights-only ``model.pt``, no code is loaded) or
    ``"torchscript"`` picks one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir():
        return _from_folder(path, str(path), batch_size, prefer)
    if path.name.endswith(TORCHSCRIPT_SUFFIXES):
        return _from_torchscript(path, str(path), batch_size)
    if not path.name.endswith(ARCHIVE_SUFFIXES):
        return predictor_from_checkpoint(load_checkpoint(path), str(path), batch_size)
    try:  # an archive: unpack the model files and load them as a folder
        with tarfile.open(path, "r:gz") as tar, tempfile.TemporaryDirectory(prefix="ecgray-model-") as tmp:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            if CHECKPOINT_NAME not in members and TORCHSCRIPT_NAME not in members:
                raise ValueError(f"{path}: archive holds neither {CHECKPOINT_NAME} nor {TORCHSCRIPT_NAME}")
            for name in {CHECKPOINT_NAME, TORCHSCRIPT_NAME, CONFIG_NAME} & members.keys():
                (Path(tmp) / name).write_bytes(tar.extractfile(members[name]).read())
            return _from_folder(Path(tmp), str(path), batch_size, prefer)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"unreadable model archive {path}: {e}") from None


# -- input records ---------------------------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _wfdb_signal(base: Path, lead: str | int | None) -> tuple[np.ndarray, float]:
    import wfdb

    try:
        record = wfdb.rdrecord(str(base))
    except FileNotFoundError as e:
        raise RecordError(str(base), "missing file", _one_line(e)) from None
    except Exception as e:  # wfdb raises assorted errors on bad files
        raise RecordError(str(base), "unreadable WFDB record", _one_line(f"{type(e).__name__}: {e}")) from None
    if record.p_signal is None or record.p_signal.ndim != 2 or record.p_signal.shape[1] == 0:
        raise RecordError(str(base), "no signal in WFDB record")
    names = list(record.sig_name or [])
    if lead is None:
        index = names.index("MLII") if "MLII" in names else 0
    elif isinstance(lead, int) or str(lead).isdigit():
        index = int(lead)
        if not 0 <= index < record.p_signal.shape[1]:
            raise RecordError(str(base), "no such lead", f"index {index}; leads {names}")
    elif lead in names:
        index = names.index(lead)
    else:
        raise RecordError(str(base), "no such lead", f"{lead!r}; leads {names}")
    return record.p_signal[:, index].astype(np.float64), float(record.fs)


def read_input(path: Path | str, fs: float | None = None, lead: str | int | None = None) -> tuple[np.ndarray, float]:
    """One record from ``path`` as ``(signal (n,), fs)``; ``RecordError`` if unusable.

    ``.npy`` needs ``fs`` (samples taken as mV, one lead: shape (n,), (1, n) or
    (n, 1)); a ``.mat``/``.hea`` pair in the CinC layout (by either file or the
    stem) is read with the challenge reader; any other ``.hea`` as a WFDB record
    (lead ``lead``, default MLII if present, else the first).
    """
    path = Path(path)
    name = str(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if not path.is_file():
            raise RecordError(name, "no such file")
        if not fs:
            raise RecordError(name, "sampling rate unknown", "pass --fs HZ for .npy input")
        try:
            signal = np.asarray(np.load(path, allow_pickle=False))
        except Exception as e:
            raise RecordError(name, "unreadable .npy file", _one_line(f"{type(e).__name__}: {e}")) from None
        if signal.ndim == 2 and 1 in signal.shape:
            signal = signal.reshape(-1)
        if signal.ndim != 1 or not np.issubdtype(signal.dtype, np.number):
            raise RecordError(name, "not a one-lead numeric signal", f"shape {signal.shape}, dtype {signal.dtype}")
        return signal.astype(np.float64), float(fs)
    known = suffix in (".mat", ".hea", ".dat")
    if not known and path.exists():
        raise RecordError(name, "unsupported file type", "expected .mat/.hea (PhysioNet), WFDB .hea/.dat, or .npy")
    base = path.with_suffix("") if known else path
    hea, mat, dat = (Path(f"{base}{ext}") for ext in (".hea", ".mat", ".dat"))
    if not (hea.is_file() or mat.is_file() or dat.is_file()):
        raise RecordError(name, "no such record", f"no {base.name}.hea/.mat/.dat in {base.parent}")
    if mat.is_file():
        try:
            signal, rate = physionet2017.read_record(base.parent, base.name)
        except RecordError as e:
            raise RecordError(name, e.reason, _one_line(e.detail)) from None
    elif not hea.is_file():
        raise RecordError(name, "missing header", str(hea))
    else:
        signal, rate = _wfdb_signal(base, lead)
    if fs and abs(fs - rate) > 1e-6:
        raise RecordError(name, "sampling rate mismatch", f"--fs {fs:g} but the header says {rate:g} Hz")
    return signal, rate


def predict_paths(predictor: Predictor, paths, fs: float | None = None, lead: str | int | None = None):
    """Yield ``(path, result dict, None)`` or ``(path, None, RecordError)`` per path."""
    for path in paths:
        try:
            signal, rate = read_input(path, fs, lead)
            yield str(path), predictor.predict_signal(signal, rate, str(path)), None
        except RecordError as e:
            yield str(path), None, e


def error_line(path: str, e: RecordError) -> str:
    """The one-line message for an unusable input."""
    return str(RecordError(path, e.reason, _one_line(e.detail)))


def format_table(rows: list[dict]) -> str:
    """The ``--format table`` text: a header, then one line per record."""
    width = max(len(r["record"]) for r in [{"record": "record"}, *rows])
    lines = [[f"{'record':<{width}}", "label", *(f"{c:>6}" for c in CLASSES), "segments"]]
    lines += [[f"{r['record']:<{width}}", f"{r['label']:<5}", *(f"{r['probabilities'][k]:6.3f}" for k in CLASS_KEYS),
               f"{r['n_segments']:8d}"] for r in rows]
    return "\n".join("  ".join(cells) for cells in lines)


def synthetic_ecg(seconds: float = 30.0, fs: float = 300.0, seed: int = 0) -> np.ndarray:
    """An ECG-like test signal in mV (narrow QRS-like pulses at ~72 bpm plus noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * fs))) / fs
    beats = np.arange(0.3, seconds, 60 / 72)
    signal = sum(np.exp(-((t - b) / 0.012) ** 2) for b in beats) + 0.15 * np.sin(2 * np.pi * 0.3 * t)
    return signal + 0.02 * rng.standard_normal(t.size)


def time_predict(predictor: Predictor, seconds: float = 30.0, fs: float = 300.0, repeats: int = 20,
                 signal: np.ndarray | None = None, warmup: int = 2) -> float:
    """Median wall time in ms of ``predict_signal`` (preprocessing + model) on
    one ``seconds``-long record at ``fs``, the model already loaded."""
    signal = synthetic_ecg(seconds, fs) if signal is None else signal
    run = functools.partial(predictor.predict_signal, signal, fs, "timing")
    timeit.repeat(run, number=1, repeat=warmup)
    return float(np.median(timeit.repeat(run, number=1, repeat=repeats)) * 1000)


__all__ = ["Predictor", "load_predictor", "predictor_from_checkpoint", "read_input", "predict_paths", "error_line",
           "format_table", "time_predict", "synthetic_ecg"]
