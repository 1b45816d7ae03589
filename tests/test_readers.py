"""Readers: PhysioNet 2017 records and labels, MIT-BIH windows and their labels."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from ecg_ray.data import mitbih, physionet2017
from ecg_ray.data.errors import DataError, RecordError

# -- PhysioNet/CinC 2017 -------------------------------------------------------------------------


def test_real_record_reads_with_fs_300_and_header_length(cinc_dir):
    signal, fs = physionet2017.read_record(cinc_dir, "A00001")
    assert fs == 300.0
    assert signal.shape == (9000,)  # A00001.hea: 9000 samples, 30 s
    assert signal.dtype == np.float64
    # converted to mV with the header's gain (1000/mV): a real ECG is a few mV at most
    assert 0.1 < np.ptp(signal) < 20


@pytest.mark.parametrize("name", ["A00002", "A00005", "A00010", "A01000"])
def test_real_records_match_their_headers(cinc_dir, name):
    signal, fs = physionet2017.read_record(cinc_dir, name)
    header = wfdb.rdheader(str(cinc_dir / name))
    assert fs == 300.0
    assert len(signal) == header.sig_len
    assert 9 * 300 <= len(signal) <= 61 * 300


def test_real_labels(cinc_labels):
    assert len(cinc_labels) == 7528
    assert set(cinc_labels.values()) == {"N", "A", "O", "~"}
    assert cinc_labels["A00001"] == "N"


def test_list_records_real(cinc_dir):
    names = physionet2017.list_records(cinc_dir)
    assert len(names) == 7528
    assert names[0] == "A00001" and names == sorted(names)


def test_find_label_file_prefers_explicit_then_beside(tmp_path, cinc_dir):
    (tmp_path / "recs").mkdir()
    with pytest.raises(DataError, match="no label file"):
        physionet2017.find_label_file(tmp_path / "recs")
    (tmp_path / "REFERENCE-v3.csv").write_text("A00001,N\n")  # in the parent folder: found
    assert physionet2017.find_label_file(tmp_path / "recs") == tmp_path / "REFERENCE-v3.csv"
    assert physionet2017.find_label_file(tmp_path / "recs", cinc_dir / "REFERENCE.csv") == cinc_dir / "REFERENCE.csv"
    with pytest.raises(DataError, match="nope.csv"):
        physionet2017.find_label_file(tmp_path / "recs", tmp_path / "nope.csv")


def test_read_labels_bad_rows(tmp_path):
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        physionet2017.read_labels(tmp_path / "empty.csv")
    (tmp_path / "bad.csv").write_text("A00001,N\nA00002\n")
    with pytest.raises(DataError, match="bad.csv:2"):
        physionet2017.read_labels(tmp_path / "bad.csv")


def test_missing_files_are_record_errors(tmp_path, cinc_dir):
    (tmp_path / "A00001.hea").write_bytes((cinc_dir / "A00001.hea").read_bytes())
    with pytest.raises(RecordError) as e:
        physionet2017.read_record(tmp_path, "A00001")
    assert e.value.reason == "missing signal file"
    with pytest.raises(RecordError) as e:
        physionet2017.read_record(tmp_path, "A00002")
    assert e.value.reason == "missing header"


# -- MIT-BIH: label_windows on hand-made annotations ---------------------------------------------

def _ann(*items):
    """``(sample, symbol, aux_note, subtype)`` tuples → label_windows' arrays."""
    samples = np.array([i[0] for i in items])
    return samples, [i[1] for i in items], [i[2] for i in items], np.array([i[3] for i in items])


def _labels(items, n=1000, window=100, lead_index=0):
    samples, symbols, aux, sub = _ann(*items)
    return dict(mitbih.label_windows(n, window, samples, symbols, aux, sub, lead_index))


def test_rhythm_classes():
    assert mitbih.rhythm_class("(N\x00") == "N"
    assert mitbih.rhythm_class("(AFIB") == "A"
    assert mitbih.rhythm_class("(AFL") == "A"
    assert mitbih.rhythm_class("(VT") == "O"
    assert mitbih.rhythm_class("(B") == "O"


def test_label_windows_rhythm_and_change():
    labels = _labels([
        (0, "+", "(N", 0),
        (250, "+", "(AFIB", 0),   # change inside window 200-300
        (600, "+", "(VT", 0),     # change exactly on a window boundary
        (650, "N", "", 0),        # a beat annotation: not a rhythm change
    ])
    assert sorted(labels) == list(range(0, 1000, 100))
    assert labels[0] == labels[100] == "N"
    assert labels[200] is None
    assert labels[300] == labels[500] == "A"
    assert labels[600] == labels[900] == "O"


def test_label_windows_before_first_rhythm_is_none():
    # Real records put the first rhythm label on the first beat (samples 7-67 in
    # mitdb): the window it falls in takes that rhythm, windows wholly before it
    # have no rhythm.
    labels = _labels([(150, "+", "(N", 0)])
    assert labels[0] is None
    assert labels[100] == labels[200] == "N"


def test_label_windows_noisy_mlii_interval():
    labels = _labels([
        (0, "+", "(N", 0),
        (500, "~", "", 1),    # MLII (lead 0) noisy from here...
        (600, "~", "", 0),    # ...to here: clean again
    ])
    assert labels[400] == "N"  # ends where the noise starts: untouched
    assert labels[500] == "~"
    assert labels[600] == "N"


def test_label_windows_noise_touching_window_makes_it_noisy():
    labels = _labels([(0, "+", "(N", 0), (550, "~", "", 1), (570, "~", "", 0)])
    assert labels[500] == "~"
    assert labels[400] == labels[600] == "N"


def test_label_windows_noise_on_other_lead_only_is_not_noisy():
    labels = _labels([(0, "+", "(N", 0), (300, "~", "", 2), (800, "~", "", 0)])  # bit 1: lead V1/V5
    assert all(label == "N" for label in labels.values())
    # the same annotations seen from lead 1 are noisy
    labels_v = _labels([(0, "+", "(N", 0), (300, "~", "", 2), (800, "~", "", 0)], lead_index=1)
    assert labels_v[300] == labels_v[700] == "~" and labels_v[800] == "N"


def test_label_windows_subtype_minus_one_is_noisy():
    labels = _labels([(0, "+", "(AFIB", 0), (700, "~", "", -1)])
    assert labels[600] == "A"
    assert labels[700] == labels[800] == labels[900] == "~"


def test_label_windows_unreadable_mlii_is_noisy():
    labels = _labels([(0, "+", "(N", 0), (300, "~", "", 0x10), (400, "~", "", 0x20), (500, "~", "", 0)])
    assert labels[300] == "~"   # bit 4: lead 0 unreadable
    assert labels[400] == "N"   # bit 5: lead 1 unreadable only
    assert labels[500] == "N"


def test_label_windows_noise_wins_over_rhythm_change():
    labels = _labels([(0, "+", "(N", 0), (250, "+", "(AFL", 0), (220, "~", "", 1), (280, "~", "", 0)])
    assert labels[200] == "~"


def test_label_windows_drops_incomplete_tail():
    labels = _labels([(0, "+", "(N", 0)], n=1050)
    assert max(labels) == 900


# -- MIT-BIH: real records -----------------------------------------------------------------------

def test_mitbih_203_gives_af_windows(mitdb_dir):
    windows, skipped = mitbih.read_windows(mitdb_dir, "203")
    labels = {w.label for w in windows}
    assert "A" in labels
    assert labels <= {"N", "A", "O", "~"}
    assert skipped.get("rhythm changes within window", 0) > 0
    w = windows[0]
    assert w.fs == 360.0 and len(w.signal) == 30 * 360
    assert w.record_id.startswith("203_w")


def test_mitbih_100_gives_only_normal(mitdb_dir):
    windows, skipped = mitbih.read_windows(mitdb_dir, "100")
    assert {w.label for w in windows} == {"N"}
    assert len(windows) == 650000 // (30 * 360)  # 60 full 30-s windows, no skips
    assert skipped == {}
    assert len({w.record_id for w in windows}) == len(windows)


def test_mitbih_window_length_parameter(mitdb_dir):
    windows, _ = mitbih.read_windows(mitdb_dir, "100", window_s=10.0)
    assert len(windows) == 650000 // 3600
    assert all(len(w.signal) == 3600 for w in windows)


def test_mitbih_list_records_and_errors(mitdb_dir, tmp_path):
    listed = (mitdb_dir / "RECORDS").read_text().split()
    assert mitbih.list_records(mitdb_dir) == listed and len(listed) >= 6
    assert mitbih.list_records(mitdb_dir) == sorted(p.stem for p in mitdb_dir.glob("*.hea"))
    with pytest.raises(DataError, match=str(tmp_path)):
        mitbih.list_records(tmp_path)
    for ext in ("hea", "dat"):
        (tmp_path / f"100.{ext}").write_bytes((mitdb_dir / f"100.{ext}").read_bytes())
    with pytest.raises(RecordError) as e:  # no .atr
        mitbih.read_windows(tmp_path, "100")
    assert e.value.reason == "missing file"
