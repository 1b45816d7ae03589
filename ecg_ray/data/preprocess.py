"""Per-record preprocessing: resample → bandpass → z-score, then windows (numpy/scipy, no Ray).

``PreprocessConfig`` is the single description of what was done to the signal and
of the model's input window; its ``hash`` names a prepared dataset and travels
inside every checkpoint, so evaluation and prediction repeat exactly the same steps.

Both ways to cut a filtered record into model inputs live here, so training and
inference agree on what a window is: ``segment`` (inference, validation, evaluate) cuts
windows every ``stride`` samples (plus one ending at the tail if uncovered), zero-padding
(and flagging) a record shorter than one window; ``random_crops`` (training) draws
``k`` windows at seeded random offsets, fresh each epoch (for many records at once:
``crop_offsets`` draws the offsets, ``cut_windows`` copies the windows out).
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
    fs: float = 150.0  # target sampling rate (Hz): the 0.5–40 Hz band needs no more; half 300 Hz's compute
    lowcut: float = 0.5  # bandpass edges (Hz), Butterworth, zero-phase
    highcut: float = 40.0
    order: int = 4
    segment_length: int = 3000  # model input window, samples (20 s at 150 Hz: results/training/recipe.md)
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
            raise ValueError(f"need 0 < lowcut < highcut < fs/2, got {self.lowcut}, {self.highcut}, fs={self.fs}")

    @property
    def hop(self) -> int:
        return self.stride or self.segment_length

    def to_dict(self) -> dict:
        return {**asdict(self), "version": PREPROCESS_VERSION}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from ``fs_in`` to ``fs_out``."""
    if fs_in == fs_out:
        return signal
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return scipy.signal.resample_poly(signal, ratio.numerator, ratio.denominator)


def bandpass_sos(fs: float, lowcut: float, highcut: float, order: int = 4) -> np.ndarray:
    """The Butterworth bandpass ``bandpass`` applies, as second-order sections."""
    return scipy.signal.butter(order, [lowcut, highcut], btype="bandpass", fs=fs, output="sos")


def bandpass(signal: np.ndarray, fs: float, lowcut: float, highcut: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth bandpass (second-order sections, forward-backward)."""
    return scipy.signal.sosfiltfilt(bandpass_sos(fs, lowcut, highcut, order), signal)


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
    """``(windows of shape (n, length), padded)``: one every ``hop`` samples, the last
    aligned to the end (``window_starts``). A signal shorter than one window is
    zero-padded at the end when ``pad`` (flag True), else yields no windows."""
    n = len(signal)
    if n < length:
        if not pad:
            return np.empty((0, length), dtype=signal.dtype), False
        return np.pad(signal, (0, length - n))[None], True
    starts = window_starts(n, length, hop)
    return np.lib.stride_tricks.sliding_window_view(signal, length)[starts].copy(), False


def crop_offsets(lengths: np.ndarray, length: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(record of each crop, its start)`` for ``k`` crops of every record: starts
    uniform over the record's valid range, ``0`` for a record of ``length`` samples
    or fewer (it is zero-padded by ``cut_windows``). Crops are listed record by record."""
    lengths = np.asarray(lengths, dtype=np.int64)
    rec = np.repeat(np.arange(len(lengths)), k)
    room = np.maximum(lengths[rec] - length + 1, 1)
    return rec, rng.integers(0, room, dtype=np.int64) if len(rec) else np.zeros(0, np.int64)


def cut_windows(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, rec: np.ndarray,
                offsets: np.ndarray, length: int) -> np.ndarray:
    """Windows ``(len(rec), length)`` float32 from records stored one after the other
    in ``flat`` (record ``r``: ``flat[starts[r]:starts[r] + lengths[r]]``): window ``j``
    is record ``rec[j]`` from sample ``offsets[j]``, zero-padded past the record's end."""
    out = np.zeros((len(rec), length), dtype=np.float32)
    starts, lengths = np.asarray(starts).tolist(), np.asarray(lengths).tolist()
    for j, (r, o) in enumerate(zip(np.asarray(rec).tolist(), np.asarray(offsets).tolist())):
        n = max(min(length, lengths[r] - o), 0)
        out[j, :n] = flat[starts[r] + o:starts[r] + o + n]
    return out


def random_crops(signal: np.ndarray, length: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` windows of ``length`` samples at uniformly random offsets (float32,
    shape ``(k, length)``); a signal shorter than ``length`` is zero-padded."""
    n = np.array([len(signal)])
    rec, offsets = crop_offsets(n, length, k, rng)
    return cut_windows(np.asarray(signal), np.zeros(1, np.int64), n, rec, offsets, length)


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


def filtered_record(signal: np.ndarray, fs: float, cfg: PreprocessConfig, name: str) -> tuple[np.ndarray, int, bool]:
    """``(filtered float32 signal, n windows, padded)`` of one raw record; a record
    shorter than one window is padded at inference, or skipped under ``short_policy='drop'``."""
    filtered = filter_record(signal, fs, cfg, name).astype(np.float32)
    padded = len(filtered) < cfg.segment_length
    if padded and cfg.short_policy == "drop":
        raise RecordError(name, "shorter than one segment", f"{len(filtered)} < {cfg.segment_length} samples")
    return filtered, n_windows(len(filtered), cfg.segment_length, cfg.hop), padded


def preprocess_record(signal: np.ndarray, fs: float, cfg: PreprocessConfig,
                      record: str = "?") -> tuple[np.ndarray, bool]:
    """Raw record → ``(float32 segments of shape (n, segment_length), padded)``; ``RecordError``
    for one that cannot give a trustworthy segment (non-finite, flat, or too short under 'drop')."""
    filtered, _, padded = filtered_record(signal, fs, cfg, record)
    return segment(filtered, cfg.segment_length, cfg.hop, pad=True)[0], padded


# --- long records in bounded memory -------------------------------------------------------------
# ``filter_record`` holds a whole record (and a few float64 copies) in memory: ~15 GB for a
# two-week Holter record. ``filter_record_chunked`` reads ``chunk`` samples at a time and keeps
# the intermediate signal in a float64 scratch file: the same forward-backward filter (state
# carried across chunks, equal to the sample); the z-score's mean and std are summed per
# chunk, so the float32 output can differ in the last bit.


def _stats(total: tuple[int, float, float], x: np.ndarray) -> tuple[int, float, float]:
    """Running ``(count, mean, M2)`` merged with chunk ``x`` (Chan et al.)."""
    n_a, mean_a, m2_a = total
    n_b, mean_b = len(x), float(x.mean())
    m2_b = float(((x - mean_b) ** 2).sum())
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n


def filter_record_chunked(read, n: int, fs: float, cfg: PreprocessConfig, scratch, record: str = "?",
                          chunk: int = 1 << 20):
    """``filter_record`` for a record too long to hold in memory: yields the float32 filtered,
    z-scored signal in consecutive pieces of ``chunk`` samples (the last one shorter).
    ``read(a, b)`` returns raw samples ``a:b`` (mV); ``scratch`` is an open binary file (``w+b``)
    that receives ``n`` float64 intermediate samples. The record must already be at ``cfg.fs``
    (no resampling here). Same checks, same ``RecordError`` s as ``filter_record``."""
    if fs != cfg.fs:
        raise ValueError(f"filter_record_chunked needs a record at {cfg.fs:g} Hz, got {fs:g} Hz")
    sos = bandpass_sos(cfg.fs, cfg.lowcut, cfg.highcut, cfg.order)
    # the odd-extension length sosfiltfilt pads each end with by default
    edge = 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum())))
    if n <= edge:  # the limit ``filter_record`` checks: ``edge`` is 3 * (2 * order + 1) for this bandpass
        raise RecordError(record, "too short to filter", f"{n} samples")
    chunk = max(int(chunk), edge + 1)
    zi = scipy.signal.sosfilt_zi(sos)
    spans = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]

    # pass 1: checks on the raw signal, forward filter (odd extension at both ends) → scratch
    raw_stats, bad = (0, 0.0, 0.0), 0
    head = np.asarray(read(0, edge + 1), dtype=np.float64)
    left = 2 * head[0] - head[edge:0:-1]
    y, z = scipy.signal.sosfilt(sos, left, zi=zi * left[0])
    scratch.seek(0)
    for a, b in spans:
        x = np.asarray(read(a, b), dtype=np.float64)
        finite = np.isfinite(x)
        if not finite.all():
            bad += int((~finite).sum())
            continue
        raw_stats = _stats(raw_stats, x)
        y, z = scipy.signal.sosfilt(sos, x, zi=z)
        y.tofile(scratch)
    if bad:
        raise RecordError(record, "non-finite samples", f"{bad} NaN/inf")
    std = np.sqrt(raw_stats[2] / raw_stats[0])
    if std < cfg.min_std_mv:
        raise RecordError(record, "flat line", f"std {std:.2g} mV < {cfg.min_std_mv:g}")
    tail = np.asarray(read(n - edge - 1, n), dtype=np.float64)
    right = 2 * tail[-1] - tail[-2::-1]
    y_right, _ = scipy.signal.sosfilt(sos, right, zi=z)

    # pass 2: backward filter, last chunk first, in place in scratch; stats of the result
    _, z = scipy.signal.sosfilt(sos, y_right[::-1], zi=zi * y_right[-1])
    out_stats = (0, 0.0, 0.0)
    for a, b in reversed(spans):
        scratch.seek(a * 8)
        y = np.fromfile(scratch, dtype=np.float64, count=b - a)
        r, z = scipy.signal.sosfilt(sos, y[::-1], zi=z)
        r = r[::-1]
        out_stats = _stats(out_stats, r)
        scratch.seek(a * 8)
        np.ascontiguousarray(r).tofile(scratch)

    # pass 3: z-score, float32, in order
    mean, std = out_stats[1], np.sqrt(out_stats[2] / out_stats[0])
    if not std > 0:
        raise ValueError("cannot z-score a constant signal")
    for a, b in spans:
        scratch.seek(a * 8)
        y = np.fromfile(scratch, dtype=np.float64, count=b - a)
        yield ((y - mean) / std).astype(np.float32)
