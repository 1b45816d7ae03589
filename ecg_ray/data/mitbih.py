"""Reader for the MIT-BIH Arrhythmia Database (wfdb), mapped to the 2017 classes.

Each 30-min record is cut into fixed windows of lead MLII; each window becomes a
pseudo-record (``100_w0007``) labelled from the reference rhythm annotations: ``(N`` → N,
``(AFIB``/``(AFL`` → A, any other rhythm → O, and a window that touches a stretch where the
signal-quality (``~``) annotations mark MLII as noisy or unreadable → ~. Windows in which
the rhythm changes are skipped and counted. The windows stay at the record's own rate
(360 Hz); the shared preprocessing resamples them to the configured rate like any other record.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import wfdb

from .errors import DataError, RecordError

RHYTHM_TO_CLASS = {"(N": "N", "(AFIB": "A", "(AFL": "A"}
LEAD = "MLII"


class Window(NamedTuple):
    """One labelled window, in the ``(item id, label, signal, fs)`` order of ``Source.read``'s items."""
    record_id: str
    label: str
    signal: np.ndarray  # mV, at ``fs``
    fs: float


def list_records(data_dir: Path) -> list[str]:
    """Record names: the folder's ``RECORDS`` file (PhysioNet's own list) when it
    has one, else every ``.hea`` header."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder not found: {data_dir}")
    listing = data_dir / "RECORDS"
    names = listing.read_text().split() if listing.is_file() else sorted(p.stem for p in data_dir.glob("*.hea"))
    if not names:
        raise DataError(f"no MIT-BIH records (.hea files) in {data_dir}")
    return names


def rhythm_class(aux_note: str) -> str:
    """The 2017 class of a rhythm annotation such as ``'(AFIB'``."""
    return RHYTHM_TO_CLASS.get(aux_note.strip("\x00 "), "O")


def _intervals(marks: list[tuple[int, object]], end: int) -> list[tuple[int, int, object]]:
    """``(start, stop, value)`` of each ``(start, value)`` mark, lasting until the next one (the last until ``end``)."""
    stops = [start for start, _ in marks[1:]] + [end]
    return [(int(start), int(stop), value) for (start, value), stop in zip(marks, stops)]


def label_windows(
    n_samples: int, window: int, ann_samples: np.ndarray, symbols: list[str], aux_notes: list[str],
    subtypes: np.ndarray, lead_index: int,
) -> list[tuple[int, str | None]]:
    """``(start, label)`` for each non-overlapping window; label ``None`` when the rhythm
    changes inside the window or no rhythm is annotated yet. A ``~`` annotation's subtype says
    which leads are bad from there on (WFDB convention): bit j = lead j noisy, bit 4+j = lead j
    unreadable, -1 = all leads unreadable, 0 = all clean."""
    rhythm = _intervals([(s, rhythm_class(a)) for s, a in zip(ann_samples, aux_notes) if a.startswith("(")],
                        n_samples)
    quality = _intervals([(s, t) for s, sym, t in zip(ann_samples, symbols, subtypes) if sym == "~"], n_samples)
    bad_lead = (1 << lead_index) | (1 << (4 + lead_index))
    noisy = [(a, b) for a, b, t in quality if t == -1 or (t > 0 and t & bad_lead)]

    def label(start: int, stop: int) -> str | None:
        if any(a < stop and b > start for a, b in noisy):
            return "~"
        inside = {c for a, b, c in rhythm if a < stop and b > start}
        return inside.pop() if len(inside) == 1 else None
    return [(start, label(start, start + window)) for start in range(0, n_samples - window + 1, window)]


def read_windows(data_dir: Path, name: str, window_s: float = 30.0) -> tuple[list[Window], dict[str, int]]:
    """All labelled windows of one record, plus ``{skip reason: count}``."""
    path = str(Path(data_dir) / name)
    try:
        record = wfdb.rdrecord(path)
        ann = wfdb.rdann(path, "atr")
    except FileNotFoundError as e:
        raise RecordError(name, "missing file", str(e)) from None
    except Exception as e:
        raise RecordError(name, "unreadable record", f"{path}: {type(e).__name__}: {e}") from None
    if LEAD not in record.sig_name:
        raise RecordError(name, f"no {LEAD} lead", f"{path}.hea has {record.sig_name}")
    lead_index = record.sig_name.index(LEAD)
    signal = record.p_signal[:, lead_index]
    window = int(round(window_s * record.fs))
    labelled = label_windows(len(signal), window, ann.sample, ann.symbol, ann.aux_note,
                             np.asarray(ann.subtype), lead_index)
    windows = [Window(f"{name}_w{i:04d}", label, signal[start:start + window], float(record.fs))
               for i, (start, label) in enumerate(labelled) if label is not None]
    changes = len(labelled) - len(windows)
    return windows, {"rhythm changes within window": changes} if changes else {}
