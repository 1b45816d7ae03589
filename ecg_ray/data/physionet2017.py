"""Reader for the PhysioNet/CinC Challenge 2017 layout (plain numpy/scipy/wfdb).

A folder of ``A?????.mat`` (MATLAB v4, key ``val``, shape (1, N), int16) with a
WFDB ``.hea`` header each, plus the label file ``REFERENCE.csv`` (or
``REFERENCE-v3.csv``, or any path given explicitly): ``record,label`` lines.

The header is the authority for the sampling rate, gain and baseline; the
``.mat`` for the samples. Any disagreement between the two is a ``RecordError``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import scipy.io
import wfdb

from .errors import DataError, RecordError

LABEL_FILE_NAMES = ("REFERENCE.csv", "REFERENCE-v3.csv")
#: Sampling rates outside this range cannot be an ECG header we understand.
MIN_FS, MAX_FS = 50.0, 5000.0


def find_label_file(data_dir: Path, labels: Path | None = None) -> Path:
    """The label file to use: ``labels`` if given, else one beside the records."""
    if labels is not None:
        labels = Path(labels)
        if not labels.is_file():
            raise DataError(f"label file not found: {labels}")
        return labels
    for name in LABEL_FILE_NAMES:
        for folder in (data_dir, data_dir.parent):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"no label file in {data_dir}: expected one of {', '.join(LABEL_FILE_NAMES)} "
                    "(or pass --labels PATH)")


def read_labels(path: Path) -> dict[str, str]:
    """``record -> label`` from a ``record,label`` CSV (no header). Labels are not
    validated here: the caller decides what an unknown label means."""
    labels: dict[str, str] = {}
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or not row[0].strip():
                continue
            if len(row) < 2:
                raise DataError(f"{path}:{line_no}: expected 'record,label', got {row!r}")
            labels[row[0].strip()] = row[1].strip()
    if not labels:
        raise DataError(f"label file is empty: {path}")
    return labels


def list_records(data_dir: Path) -> list[str]:
    """Record names in a folder: every ``.hea`` or ``.mat`` stem, sorted."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder not found: {data_dir}")
    names = {p.stem for p in data_dir.glob("*.hea")} | {p.stem for p in data_dir.glob("*.mat")}
    if not names:
        raise DataError(f"no records (.hea/.mat files) in {data_dir}")
    return sorted(names)


def read_header(data_dir: Path, name: str) -> tuple[float, int | None, float, float]:
    """``(fs, samples or None, gain, baseline)`` of a record's ``.hea``; ``RecordError``
    when it cannot be read or its sampling rate is implausible."""
    hea = Path(data_dir) / f"{name}.hea"
    try:
        header = wfdb.rdheader(str(Path(data_dir) / name))
    except Exception as e:  # wfdb raises bare ValueErrors/IndexErrors on bad headers
        raise RecordError(name, "unreadable header", f"{hea}: {e}") from None
    fs = float(header.fs or 0)
    if not MIN_FS <= fs <= MAX_FS:
        raise RecordError(name, "implausible sampling rate", f"{hea} says fs={fs:g} Hz")
    gain = (header.adc_gain or [1000.0])[0] or 1000.0
    baseline = (header.baseline or [0])[0] or 0
    return fs, header.sig_len, gain, baseline


def read_record(data_dir: Path, name: str) -> tuple[np.ndarray, float]:
    """One record as ``(signal in mV as float64 of shape (n,), fs)``; ``RecordError``
    for a missing, unreadable or inconsistent record."""
    hea, mat = Path(data_dir) / f"{name}.hea", Path(data_dir) / f"{name}.mat"
    if not hea.is_file():
        raise RecordError(name, "missing header", str(hea))
    if not mat.is_file():
        raise RecordError(name, "missing signal file", str(mat))
    fs, sig_len, gain, baseline = read_header(data_dir, name)
    try:
        val = np.asarray(scipy.io.loadmat(str(mat))["val"])
    except Exception as e:  # truncated or non-MATLAB file
        raise RecordError(name, "unreadable signal file", f"{mat}: {type(e).__name__}: {e}") from None
    if val.ndim != 2 or val.shape[0] != 1:
        raise RecordError(name, "unexpected signal shape", f"{mat}: {val.shape}, expected (1, N)")
    if sig_len is not None and sig_len != val.shape[1]:
        raise RecordError(name, "header length disagrees with signal",
                          f"{hea} says {sig_len} samples, {mat} has {val.shape[1]}")
    return (val[0].astype(np.float64) - baseline) / gain, fs
