"""Per-record preprocessing: resample → bandpass → z-score, then windows.

Plain numpy/scipy, no Ray. ``PreprocessConfig`` is the single description of
what was done to the signal and of the model's input window; its ``hash``
names a prepared dataset and travels inside every checkpoint, so evaluation and
prediction repeat exactly the same steps on new records.

Two ways to cut a filtered record into model inputs, both here so training and
inference agree on what a window is:
- ``segment`` (inference, validation, evaluate/predict/explain): windows of
  ``segment_length`` every ``stride`` samples, plus one window aligned to the
  record's end when the stride leaves its tail uncovered; a record shorter than
  one window is zero-padded (and flagged);
- ``random_crops`` (training): ``k`` windows at uniformly random offsets, fresh
  each epoch, from a generator seeded by the caller.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from fractions import Fraction

import numpy as np
import scipy.signal

from .errors import RecordError

#: Bumped when the meaning of the steps below changes, so old hashes stop matching.
PREPROCESS_VERSION = 2  # 2: windows reach the record's tail; whole records stored


@dataclass(frozen=True)
class PreprocessConfig:
    fs: float = 300.0  # target sampling rate (Hz)
    lowcut: float = 0.5  # bandpass edges (Hz), Butterworth, zero-phase
    highcut: float = 40.0
    order: int = 4
    segment_length: int = 3000  # model input window, samples (10 s at 300 Hz)
    stride: int | None = 1500  # samples between inference window starts; None = segment_length
    short_policy: str = "pad"  # "pad" (zero-pad, flagged) or "drop" records shorter than a segment
    min_std_mv: float = 1e-3  # a raw signal flatter than this (in mV) is a flat line

    def __post_init__(self):
        if self.order < 1:
            raise ValueError(f"order must be >= 1, got {self.order}")
        if not self.min_std_mv > 0:
            raise ValueError(f"min_std_mv must be > 0 (a constant signal cannot be z-scored), got {self.min_std_mv}")
        if self.segment_length < 16:
            raise ValueError(f"segment_length must be >= 16 samples, got {self.segment_length}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.short_policy not in ("pad", "drop"):
            raise ValueError(f"short_policy must be 'pad' or 'drop', got {self.short_policy!r}")
        if not 0 < self.lowcut < self.highcut < self.fs / 2:
            raise ValueError(
                f"need 0 < lowcut < highcut < fs/2, got {self.lowcut}, {self.highcut}, fs={self.fs}"
            )

    @property
    def hop(self) -> int:
        return self.stride or self.segment_length

    def to_dict(self) -> dict:
        return {**asdict(self), "version": PREPROCESS_VERSION}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from ``fs_in`` to ``fs_out``."""
    if fs_in == fs_out:
        return signal
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return scipy.signal.resample_poly(signal, ratio.numerator, ratio.denominator)


def bandpass(signal: np.ndarray, fs: float, lowcut: float, highcut: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth bandpass (second-order sections, forward-backward)."""
    sos = scipy.signal.butter(order, [lowcut, highcut], btype="bandpass", fs=fs, output="sos")
    return scipy.signal.sosfiltfilt(sos, signal)


def zscore(signal: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per record."""
    std = signal.std()
    if not std > 0:
        raise ValueError("cannot z-score a constant signal")
    return (signal - signal.mean()) / std


def window_starts(n: int, length: int, hop: int) -> np.ndarray:
    """Start sample of every window ``segment`` cuts from ``n`` samples: one every
    ``hop``, plus a last one ending at sample ``n`` when the tail is not yet
    covered (so no part of the record is left out). ``[0]`` when ``n <= length``."""
    if n <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n - length + 1, hop)
    if starts[-1] + length < n:
        starts = np.append(starts, n - length)
    return starts


def n_windows(n: int, length: int, hop: int) -> int:
    """How many windows ``segment`` cuts from ``n`` samples."""
    return len(window_starts(n, length, hop))


def segment(signal: np.ndarray, length: int, hop: int, pad: bool) -> tuple[np.ndarray, bool]:
    """Cut ``signal`` into windows of ``length`` every ``hop`` samples, the last
    one aligned to the end so the tail is covered (see ``window_starts``).

    A signal shorter than one window is zero-padded at the end when ``pad``
    (returned flag True), else yields no windows. Returns ``(windows of shape
    (n, length), padded)``.
    """
    n = len(signal)
    if n < length:
        if not pad:
            return np.empty((0, length), dtype=signal.dtype), False
        out = np.zeros((1, length), dtype=signal.dtype)
        out[0, :n] = signal
        return out, True
    starts = window_starts(n, length, hop)
    return np.lib.stride_tricks.sliding_window_view(signal, length)[starts].copy(), False


def random_crops(signal: np.ndarray, length: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` windows of ``length`` samples at uniformly random offsets (float32,
    shape ``(k, length)``); a signal shorter than ``length`` is zero-padded."""
    n = len(signal)
    out = np.zeros((k, length), dtype=np.float32)
    if n <= length:
        out[:, :n] = signal
        return out
    starts = rng.integers(0, n - length + 1, size=k)
    return np.lib.stride_tricks.sliding_window_view(signal, length)[starts].astype(np.float32)


def filter_record(signal: np.ndarray, fs: float, cfg: PreprocessConfig, record: str = "?") -> np.ndarray:
    """Validate, resample to ``cfg.fs``, bandpass and z-score one record."""
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 1:
        raise RecordError(record, "signal is not one lead", f"shape {signal.shape}")
    if not np.isfinite(signal).all():
        raise RecordError(record, "non-finite samples", f"{int((~np.isfinite(signal)).sum())} NaN/inf")
    if signal.std() < cfg.min_std_mv:
        raise RecordError(record, "flat line", f"std {signal.std():.2g} mV < {cfg.min_std_mv:g}")
    signal = resample(signal, fs, cfg.fs)
    min_len = 3 * (2 * cfg.order + 1)  # sosfiltfilt's default padding needs this much
    if len(signal) <= min_len:
        raise RecordError(record, "too short to filter", f"{len(signal)} samples")
    return zscore(bandpass(signal, cfg.fs, cfg.lowcut, cfg.highcut, cfg.order))


def preprocess_record(
    signal: np.ndarray, fs: float, cfg: PreprocessConfig, record: str = "?"
) -> tuple[np.ndarray, bool]:
    """Raw record → ``(float32 segments of shape (n, segment_length), padded)``.

    Raises ``RecordError`` for records that cannot give a trustworthy segment
    (non-finite, flat, or shorter than one segment under ``short_policy='drop'``).
    """
    filtered = filter_record(signal, fs, cfg, record)
    segments, padded = segment(filtered, cfg.segment_length, cfg.hop, cfg.short_policy == "pad")
    if len(segments) == 0:
        raise RecordError(
            record, "shorter than one segment", f"{len(filtered)} < {cfg.segment_length} samples"
        )
    return segments.astype(np.float32), padded
