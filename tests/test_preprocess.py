"""Per-record preprocessing: filter response, z-score, resampling, segmentation, config."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from ecg_ray.data import physionet2017
from ecg_ray.data.errors import RecordError
from ecg_ray.data.preprocess import (
    PreprocessConfig, bandpass, filter_record, n_windows, preprocess_record, random_crops, resample, segment,
    window_starts, zscore,
)

FS = 300.0
#: The 2017 records' own rate (the default resamples to 150 Hz): window arithmetic on raw lengths.
AT_300 = PreprocessConfig(fs=300.0, segment_length=3000, stride=1500)
T = np.arange(0, 60, 1 / FS)  # 60 s
MID = slice(len(T) // 4, 3 * len(T) // 4)  # away from the filter's edge transients


def sine(freq: float, t: np.ndarray = T) -> np.ndarray:
    return np.sin(2 * np.pi * freq * t)


# -- bandpass ------------------------------------------------------------------------------------

@pytest.mark.parametrize("freq, max_gain", [(0.1, 1e-3), (60.0, 0.05)])
def test_bandpass_attenuates_out_of_band_sines(freq, max_gain):
    y = bandpass(sine(freq), FS, 0.5, 40.0, 4)
    assert np.abs(y[MID]).max() < max_gain


def test_bandpass_passes_10hz_with_unit_gain_and_no_shift():
    x = sine(10.0)
    y = bandpass(x, FS, 0.5, 40.0, 4)
    assert np.abs(y[MID]).max() == pytest.approx(1.0, abs=0.01)
    # zero-phase: the output lies on the input, sample for sample (no delay)
    assert np.abs(y[MID] - x[MID]).max() < 0.01
    xc = np.correlate(y[MID], x[MID], mode="full")
    assert int(np.argmax(xc)) - (len(x[MID]) - 1) == 0


def test_bandpass_on_real_record_removes_baseline(cinc_dir):
    signal, fs = physionet2017.read_record(cinc_dir, "A00001")
    y = bandpass(signal + 5.0, fs, 0.5, 40.0, 4)  # a DC offset must disappear
    assert abs(y[len(y) // 4: 3 * len(y) // 4].mean()) < 0.05


# -- z-score -------------------------------------------------------------------------------------

def test_zscore_mean_zero_std_one(cinc_dir):
    signal, _ = physionet2017.read_record(cinc_dir, "A00002")
    z = zscore(signal * 3.0 + 7.0)
    assert z.mean() == pytest.approx(0.0, abs=1e-9)
    assert z.std() == pytest.approx(1.0, abs=1e-9)


def test_zscore_constant_raises():
    with pytest.raises(ValueError):
        zscore(np.full(100, 2.0))


# -- resample ------------------------------------------------------------------------------------

def test_resample_360_to_300_length_and_5hz_sine():
    t_in = np.arange(3600) / 360.0  # 10 s at 360 Hz
    y = resample(sine(5.0, t_in), 360.0, 300.0)
    assert len(y) == 3000
    expected = sine(5.0, np.arange(3000) / 300.0)
    assert np.abs(y[200:-200] - expected[200:-200]).max() < 0.01


def test_resample_same_rate_is_identity():
    x = sine(5.0)
    assert resample(x, FS, FS) is x


# -- segment -------------------------------------------------------------------------------------

def test_segment_non_overlapping_reaches_tail():
    x = np.arange(11.0)
    windows, padded = segment(x, length=4, hop=4, pad=True)
    assert not padded
    assert windows.shape == (3, 4)  # 0..3, 4..7, and 7..10 aligned to the end: the tail is covered
    np.testing.assert_array_equal(windows[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(windows[1], [4, 5, 6, 7])
    np.testing.assert_array_equal(windows[2], [7, 8, 9, 10])
    assert not padded


def test_segment_overlapping_with_stride_below_length():
    x = np.arange(10.0)
    windows, padded = segment(x, length=4, hop=2, pad=False)
    assert not padded
    assert windows.shape == (4, 4)  # starts 0, 2, 4, 6: 6..9 already ends at the last sample
    np.testing.assert_array_equal(windows[:, 0], [0, 2, 4, 6])
    for a, b in zip(windows[:-1], windows[1:]):  # each window overlaps the next by length - hop
        np.testing.assert_array_equal(a[2:], b[:2])


def test_segment_exact_fit_has_no_tail():
    windows, _ = segment(np.arange(12.0), length=4, hop=4, pad=True)
    assert windows.shape == (3, 4)


def test_segment_short_signal_padded_and_flagged():
    x = np.arange(1.0, 4.0)
    windows, padded = segment(x, length=8, hop=8, pad=True)
    assert padded
    assert windows.shape == (1, 8)
    np.testing.assert_array_equal(windows[0], [1, 2, 3, 0, 0, 0, 0, 0])


def test_segment_short_signal_dropped():
    windows, padded = segment(np.arange(3.0), length=8, hop=8, pad=False)
    assert not padded
    assert windows.shape == (0, 8)


def test_segment_windows_are_copies():
    x = np.arange(10.0)
    windows, _ = segment(x, length=4, hop=2, pad=False)
    windows[0, 0] = 99.0
    assert x[0] == 0.0


@pytest.mark.parametrize("n,length,hop", [(10, 4, 4), (11, 4, 2), (12, 4, 4), (4, 4, 2), (3, 4, 2),
                                          (9000, 3000, 1500), (9001, 3000, 1500), (18286, 3000, 1500)])
def test_window_starts_cover_every_sample_and_stay_inside(n, length, hop):
    starts = window_starts(n, length, hop)
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s:s + length] = True
    assert covered.all()  # the tail is reached
    assert starts[0] == 0 and (n < length or starts[-1] + length <= n)
    assert np.all(np.diff(starts) <= hop) and np.all(np.diff(starts) > 0)
    assert n_windows(n, length, hop) == len(starts)


def test_random_crops_bounds_and_reproducibility():
    x = np.arange(10_000, dtype=np.float64)
    crops = random_crops(x, 3000, 64, np.random.default_rng([7, 3]))
    assert crops.shape == (64, 3000) and crops.dtype == np.float32
    starts = crops[:, 0].astype(int)
    assert starts.min() >= 0 and starts.max() <= 10_000 - 3000
    np.testing.assert_array_equal(crops, starts[:, None] + np.arange(3000))  # contiguous windows of x
    again = random_crops(x, 3000, 64, np.random.default_rng([7, 3]))
    np.testing.assert_array_equal(crops, again)  # same seed and epoch → same crops
    other = random_crops(x, 3000, 64, np.random.default_rng([7, 4]))
    assert not np.array_equal(crops, other)  # another epoch → fresh crops
    assert len(np.unique(starts)) > 32  # offsets spread, not a fixed grid


def test_random_crops_pad_short_records():
    crops = random_crops(np.ones(900), 3000, 3, np.random.default_rng(0))
    assert crops.shape == (3, 3000)
    assert np.all(crops[:, :900] == 1) and np.all(crops[:, 900:] == 0)


# -- preprocess_record on real data --------------------------------------------------------------

def test_preprocess_record_real_shapes_and_dtype(cinc_dir):
    signal, fs = physionet2017.read_record(cinc_dir, "A00001")  # 30 s at 300 Hz
    cfg = AT_300
    segments, padded = preprocess_record(signal, fs, cfg, "A00001")
    assert segments.dtype == np.float32
    starts = window_starts(len(signal), cfg.segment_length, cfg.hop)
    assert segments.shape == (len(starts), cfg.segment_length)
    assert starts[-1] + cfg.segment_length == len(signal)  # the last window ends with the record
    assert not padded
    overlapping, _ = preprocess_record(signal, fs, dataclasses.replace(AT_300, stride=750), "A00001")
    assert len(overlapping) == n_windows(len(signal), 3000, 750)
    default, _ = preprocess_record(signal, fs, PreprocessConfig(), "A00001")  # 150 Hz: half the samples
    assert default.shape == (n_windows(len(signal) // 2, 3000, 1500), 3000)  # 20-s windows every 10 s


def test_preprocess_record_short_policies(cinc_dir):
    signal, fs = physionet2017.read_record(cinc_dir, "A00001")
    short = signal[:900]  # 3 s < one 10-s window
    segments, padded = preprocess_record(short, fs, dataclasses.replace(AT_300, short_policy="pad"), "s")
    assert padded and segments.shape == (1, 3000)
    assert np.all(segments[0, 900:] == 0)
    with pytest.raises(RecordError) as e:
        preprocess_record(short, fs, PreprocessConfig(short_policy="drop"), "s")
    assert e.value.reason == "shorter than one segment"


def test_preprocess_record_nan_is_record_error(cinc_dir):
    signal, fs = physionet2017.read_record(cinc_dir, "A00001")
    signal = signal.copy()
    signal[100:110] = np.nan
    with pytest.raises(RecordError) as e:
        preprocess_record(signal, fs, PreprocessConfig(), "A00001")
    assert e.value.reason == "non-finite samples"
    assert e.value.record == "A00001"


def test_preprocess_record_flat_line_is_record_error():
    with pytest.raises(RecordError) as e:
        preprocess_record(np.full(9000, 0.2), FS, PreprocessConfig(), "flat")
    assert e.value.reason == "flat line"


def test_filter_record_rejects_two_leads():
    with pytest.raises(RecordError) as e:
        filter_record(np.zeros((2, 100)), FS, PreprocessConfig(), "x")
    assert e.value.reason == "signal is not one lead"


def test_filter_record_resamples_mitbih_rate():
    x = np.random.default_rng(0).standard_normal(3600)
    y = filter_record(x, 360.0, PreprocessConfig(), "x")
    assert len(y) == 1500  # 10 s at the default 150 Hz
    assert len(filter_record(x, 360.0, AT_300, "x")) == 3000
    assert y.mean() == pytest.approx(0, abs=1e-9) and y.std() == pytest.approx(1, abs=1e-9)


# -- PreprocessConfig ----------------------------------------------------------------------------

CHANGED = {"fs": 250.0, "lowcut": 1.0, "highcut": 35.0, "order": 2, "segment_length": 1000,
           "stride": 500, "short_policy": "drop", "min_std_mv": 0.01}


def test_changed_covers_every_field():
    assert set(CHANGED) == {f.name for f in dataclasses.fields(PreprocessConfig)}


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_config_hash_changes_with_every_field(field):
    base = PreprocessConfig()
    changed = dataclasses.replace(base, **{field: CHANGED[field]})
    assert changed.hash != base.hash


def test_config_hash_is_stable():
    assert PreprocessConfig().hash == PreprocessConfig().hash
    cfg = PreprocessConfig(segment_length=2250, stride=1125)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert PreprocessConfig.from_dict(cfg.to_dict()).hash == cfg.hash
    # ...and across interpreters (no dependence on hash randomisation)
    code = "from ecg_ray.data.preprocess import PreprocessConfig as C; print(C(segment_length=2250, stride=1125).hash)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == cfg.hash


def test_config_hop():
    assert PreprocessConfig().hop == 1500
    assert PreprocessConfig(stride=300).hop == 300
    assert PreprocessConfig(stride=None).hop == 3000


@pytest.mark.parametrize("kwargs", [
    {"segment_length": 8},
    {"stride": 0},
    {"short_policy": "truncate"},
    {"lowcut": 0.0},
    {"lowcut": 40.0, "highcut": 30.0},
    {"highcut": 150.0},  # not below Nyquist (75 Hz at the default 150 Hz)
    {"fs": 0.0},
    {"order": 0},
    {"min_std_mv": 0.0},
])
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError):
        PreprocessConfig(**kwargs)
