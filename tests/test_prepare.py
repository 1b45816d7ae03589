"""``prepare``: bad input is skipped and counted (never a traceback), unusable
input is a ``DataError`` naming the path, re-runs are no-ops, and the real
datasets prepare into exactly the records and labels they should."""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from conftest import CINC_DIR
from ecg_ray import CLASS_TO_INDEX, CLASSES
from ecg_ray.data import physionet2017, store
from ecg_ray.data.errors import DataError
from ecg_ray.data.prepare import SplitConfig, prepare
from ecg_ray.data.preprocess import PreprocessConfig, filter_record

PARTS = ("train", "val", "test")


def quiet(*args, **kwargs):
    pass


# -- building input folders from a handful of real records ---------------------------------------

def first_per_class(labels: dict[str, str], per_class: int, skip: int = 0) -> list[str]:
    names = []
    for c in CLASSES:
        names += [r for r, l in labels.items() if l == c][skip:skip + per_class]
    return sorted(names)


def copy_record(src: Path, name: str, dst: Path) -> None:
    for ext in (".hea", ".mat"):
        shutil.copyfile(src / f"{name}{ext}", dst / f"{name}{ext}")


def edit_header(path: Path, *, n: int | None = None, fs: float | None = None) -> None:
    """Rewrite the sample count and/or sampling rate on a .hea's record line."""
    lines = path.read_text().splitlines()
    fields = lines[0].split()
    if fs is not None:
        fields[2] = f"{fs:g}"
    if n is not None:
        fields[3] = str(n)
    path.write_text("\n".join([" ".join(fields)] + lines[1:]) + "\n")


def write_record(src: Path, like: str, dst: Path, name: str, val: np.ndarray) -> None:
    """A record ``name`` with samples ``val`` (shape (1, n)) and ``like``'s header."""
    scipy.io.savemat(str(dst / f"{name}.mat"), {"val": val}, format="4")
    header = (src / f"{like}.hea").read_text().replace(like, name)
    (dst / f"{name}.hea").write_text(header)
    edit_header(dst / f"{name}.hea", n=val.shape[1])


def write_labels(folder: Path, labels: dict[str, str], name: str = "REFERENCE.csv") -> None:
    (folder / name).write_text("".join(f"{r},{l}\n" for r, l in labels.items()))


def raw_val(src: Path, name: str) -> np.ndarray:
    return scipy.io.loadmat(str(src / f"{name}.mat"))["val"]


def manifest_skips(manifest: dict) -> dict[str, str]:
    return {s["record"]: s["reason"] for s in manifest["skipped"]}


def split_ids(manifest: dict) -> set[str]:
    return {r for p in PARTS for r in manifest["splits"]["split"][p]}


# -- one folder holding every kind of bad record, prepared once ----------------------------------

#: case → (record name, expected skip reason, or None when the record is kept)
#: 10-s windows: the bad-record cases are sized against them (a real 9-18-s record is shorter
#: than the default 20-s window and would be padded too).
TEN_S = PreprocessConfig(segment_length=1500, stride=750)

CASES = {
    "truncated mat": ("A90001", "unreadable signal file"),
    "garbage mat": ("A90002", "unreadable signal file"),
    "empty mat": ("A90003", "unreadable signal file"),
    "header length disagrees": ("A90004", "header length disagrees with signal"),
    "implausible fs": ("A90005", "implausible sampling rate"),
    "zero fs": ("A90006", "implausible sampling rate"),
    "missing from label file": ("A90007", "no label"),
    "label outside N/A/O/~": ("A90008", "unknown label"),
    "NaN samples": ("A90009", "non-finite samples"),
    "flat line": ("A90010", "flat line"),
    "header without signal": ("A90011", "missing signal file"),
    "signal without header": ("A90012", "missing header"),
    "garbage header": ("A90013", "unreadable header"),
    "shorter than one segment": ("A90014", None),
}
ORPHAN = "A99999"  # a label with no record


@pytest.fixture(scope="module")
def bad_dir(cinc_dir, cinc_labels, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad") / "training2017"
    folder.mkdir()
    good = first_per_class(cinc_labels, 3)  # 12 good real records
    for name in good:
        copy_record(cinc_dir, name, folder)
    labels = {r: cinc_labels[r] for r in good}
    donor = "A00001"  # 30 s, N
    donor_mat = (cinc_dir / f"{donor}.mat").read_bytes()
    rec = {case: name for case, (name, _) in CASES.items()}

    def from_donor(name):
        write_record(cinc_dir, donor, folder, name, raw_val(cinc_dir, donor))

    for case in CASES:
        name = rec[case]
        labels[name] = "N"
        if case == "truncated mat":
            from_donor(name)
            (folder / f"{name}.mat").write_bytes(donor_mat[: len(donor_mat) // 2])
        elif case == "garbage mat":
            from_donor(name)
            (folder / f"{name}.mat").write_bytes(b"this is not a MATLAB file\n" * 200)
        elif case == "empty mat":
            from_donor(name)
            (folder / f"{name}.mat").write_bytes(b"")
        elif case == "header length disagrees":
            from_donor(name)
            edit_header(folder / f"{name}.hea", n=9001)
        elif case == "implausible fs":
            from_donor(name)
            edit_header(folder / f"{name}.hea", fs=3)
        elif case == "zero fs":
            from_donor(name)
            edit_header(folder / f"{name}.hea", fs=0)
        elif case == "missing from label file":
            from_donor(name)
            del labels[name]
        elif case == "label outside N/A/O/~":
            from_donor(name)
            labels[name] = "X"
        elif case == "NaN samples":
            val = raw_val(cinc_dir, donor).astype(np.float64)
            val[0, 1000:1010] = np.nan
            write_record(cinc_dir, donor, folder, name, val)
        elif case == "flat line":
            write_record(cinc_dir, donor, folder, name, np.full((1, 9000), 37, dtype=np.int16))
        elif case == "header without signal":
            from_donor(name)
            (folder / f"{name}.mat").unlink()
        elif case == "signal without header":
            from_donor(name)
            (folder / f"{name}.hea").unlink()
        elif case == "garbage header":
            from_donor(name)
            (folder / f"{name}.hea").write_text("\x00\x01 garbage \xff\n")
        elif case == "shorter than one segment":
            write_record(cinc_dir, donor, folder, name, raw_val(cinc_dir, donor)[:, :900])  # 3 s
    labels[ORPHAN] = "A"
    write_labels(folder, labels)
    return folder


@pytest.fixture(scope="module")
def bad_prepared(bad_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bad_out")
    manifest = prepare("cinc2017", bad_dir, out, TEN_S, workers=1, log=quiet)  # must not raise
    return out, manifest


@pytest.mark.parametrize("case", [c for c, (_, reason) in CASES.items() if reason])
def test_bad_record_is_skipped_with_reason(bad_prepared, case):
    out, manifest = bad_prepared
    name, reason = CASES[case]
    skips = manifest_skips(manifest)
    assert skips.get(name) == reason, f"{case}: {name} → {skips.get(name)!r}"
    assert manifest["skipped_counts"][reason] >= 1
    assert name not in split_ids(manifest)
    assert all(name not in fold for fold in manifest["splits"]["folds"])
    assert name not in set(store.load_segments(out).column("record_id").to_pylist())
    detail = next(s["detail"] for s in manifest["skipped"] if s["record"] == name)
    assert detail  # says what was wrong, for the log


def test_skip_counts_are_exact(bad_prepared):
    _, manifest = bad_prepared
    expected = Counter(reason for _, reason in CASES.values() if reason)
    assert manifest["skipped_counts"] == dict(expected)
    assert len(manifest["skipped"]) == sum(expected.values())


def test_label_without_record_is_listed(bad_prepared):
    _, manifest = bad_prepared
    assert manifest["labels_without_record"] == [ORPHAN]
    assert ORPHAN not in manifest_skips(manifest)


def test_short_record_padded_under_pad_policy(bad_prepared):
    out, manifest = bad_prepared
    name = CASES["shorter than one segment"][0]
    assert manifest["padded_records"] == [name]
    assert name in split_ids(manifest)
    table = store.load_segments(out, [name])
    assert table.num_rows == 1
    assert table.column("padded").to_pylist() == [True]
    assert np.all(store.signal_matrix(table)[0, 900:] == 0)


def test_good_records_kept_with_their_labels(bad_prepared, cinc_labels):
    out, manifest = bad_prepared
    good = first_per_class(cinc_labels, 3)
    kept = good + [CASES["shorter than one segment"][0]]
    assert manifest["n_records"] == len(kept)
    assert split_ids(manifest) == set(kept)
    table = store.load_segments(out)
    ids = table.column("record_id").to_pylist()
    assert set(ids) == set(kept)
    for r, label in zip(ids, table.column("label").to_pylist()):
        assert label == cinc_labels.get(r, "N")
    assert manifest["n_segments"] == table.num_rows
    assert sorted(r for f in manifest["splits"]["folds"] for r in f) == sorted(kept)


def test_short_record_dropped_under_drop_policy(bad_dir, tmp_path):
    manifest = prepare("cinc2017", bad_dir, tmp_path / "out", dataclasses.replace(TEN_S, short_policy="drop"),
                       workers=1, log=quiet)
    name = CASES["shorter than one segment"][0]
    assert manifest_skips(manifest)[name] == "shorter than one segment"
    assert manifest["skipped_counts"]["shorter than one segment"] == 1
    assert manifest["padded_records"] == []
    assert name not in split_ids(manifest)


# -- input that cannot be used at all: DataError naming the path ---------------------------------

@pytest.fixture
def good_dir(cinc_dir, cinc_labels, tmp_path) -> Path:
    """12 real records (3 per class) with their labels, in tmp_path/in/training2017."""
    folder = tmp_path / "in" / "training2017"
    folder.mkdir(parents=True)
    names = first_per_class(cinc_labels, 3)
    for name in names:
        copy_record(cinc_dir, name, folder)
    write_labels(folder, {r: cinc_labels[r] for r in names})
    return folder


def test_empty_folder_is_data_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=str(empty)):
        prepare("cinc2017", empty, tmp_path / "out", log=quiet)


def test_missing_folder_is_data_error(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nowhere")):
        prepare("cinc2017", tmp_path / "nowhere", tmp_path / "out", log=quiet)


def test_no_label_file_is_data_error(good_dir, tmp_path):
    (good_dir / "REFERENCE.csv").unlink()
    with pytest.raises(DataError, match=str(good_dir)) as e:
        prepare("cinc2017", good_dir, tmp_path / "out", log=quiet)
    assert "REFERENCE.csv" in str(e.value)


def test_explicit_missing_label_file_is_data_error(good_dir, tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "labels.csv")):
        prepare("cinc2017", good_dir, tmp_path / "out", labels_path=tmp_path / "labels.csv", log=quiet)


def test_unwritable_output_is_data_error(good_dir, tmp_path):
    # Tests may run as root, where a read-only folder is still writable: put the
    # output under a regular *file* instead, which nobody can write into.
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "out"
    with pytest.raises(DataError, match=str(out)) as e:
        prepare("cinc2017", good_dir, out, log=quiet)
    assert "not writable" in str(e.value)


def test_no_usable_record_is_data_error(cinc_dir, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    labels = {}
    for i in range(3):
        name = f"A8000{i}"
        write_record(cinc_dir, "A00001", folder, name, np.zeros((1, 9000), dtype=np.int16))
        labels[name] = "N"
    write_labels(folder, labels)
    with pytest.raises(DataError, match=str(folder)) as e:
        prepare("cinc2017", folder, tmp_path / "out", log=quiet)
    assert "no usable records" in str(e.value)


def test_too_few_records_to_split_is_data_error(cinc_dir, cinc_labels, tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    names = sorted(cinc_labels)[:3]
    for name in names:
        copy_record(cinc_dir, name, folder)
    write_labels(folder, {r: cinc_labels[r] for r in names})
    with pytest.raises(DataError, match=str(folder)) as e:
        prepare("cinc2017", folder, tmp_path / "out", log=quiet)
    assert "split" in str(e.value)


def test_unknown_source_is_data_error(good_dir, tmp_path):
    with pytest.raises(DataError, match="unknown source"):
        prepare("ptbxl", good_dir, tmp_path / "out", log=quiet)


# -- re-running is a no-op unless forced or something changed -----------------------------------

def test_rerun_is_noop_unless_forced_or_changed(good_dir, tmp_path):
    out = tmp_path / "out"
    logs: list[str] = []
    first = prepare("cinc2017", good_dir, out, workers=1, log=logs.append)
    assert not any("up to date" in line for line in logs)
    sentinel = out / store.RECORDS / "sentinel"  # vanishes whenever prepare really runs
    sentinel.write_text("")
    manifest_mtime = (out / store.MANIFEST).stat().st_mtime_ns

    logs.clear()
    again = prepare("cinc2017", good_dir, out, workers=1, log=logs.append)
    assert any("up to date" in line for line in logs)
    assert again["created"] == first["created"]
    assert again == first
    assert sentinel.exists()
    assert (out / store.MANIFEST).stat().st_mtime_ns == manifest_mtime

    logs.clear()
    forced = prepare("cinc2017", good_dir, out, workers=1, force=True, log=logs.append)
    assert not any("up to date" in line for line in logs)
    assert not sentinel.exists()
    assert forced["prepare_hash"] == first["prepare_hash"]
    assert forced["splits"] == first["splits"]

    sentinel.write_text("")
    changed = prepare("cinc2017", good_dir, out, PreprocessConfig(segment_length=750), workers=1, log=quiet)
    assert not sentinel.exists()
    assert changed["config_hash"] != first["config_hash"]
    assert changed["prepare_hash"] != first["prepare_hash"]
    assert changed["n_segments"] > first["n_segments"]  # 5-s windows every 5 s instead of 10-s every 5 s
    assert store.load_segments(out).column("signal").type.list_size == 750

    sentinel.write_text("")
    prepare("cinc2017", good_dir, out, PreprocessConfig(segment_length=750), SplitConfig(seed=1),
            workers=1, log=quiet)
    assert not sentinel.exists()  # a different split is a different dataset too


def test_rerun_after_input_changes(good_dir, cinc_dir, cinc_labels, tmp_path):
    out = tmp_path / "out"
    first = prepare("cinc2017", good_dir, out, workers=1, log=quiet)
    extra = first_per_class(cinc_labels, 1, skip=3)[0]
    copy_record(cinc_dir, extra, good_dir)
    with open(good_dir / "REFERENCE.csv", "a") as f:
        f.write(f"{extra},{cinc_labels[extra]}\n")
    logs: list[str] = []
    second = prepare("cinc2017", good_dir, out, workers=1, log=logs.append)
    assert not any("up to date" in line for line in logs)
    assert second["n_records"] == first["n_records"] + 1


def test_manifest_contents(good_dir, cinc_labels, tmp_path):
    out = tmp_path / "out"
    manifest = prepare("cinc2017", good_dir, out, workers=1, log=quiet)
    cfg = PreprocessConfig()
    assert manifest == store.read_manifest(out)
    assert manifest["source"] == "cinc2017"
    assert manifest["classes"] == list(CLASSES)
    assert manifest["config_hash"] == cfg.hash
    assert PreprocessConfig.from_dict(manifest["preprocess"]) == cfg
    assert manifest["records"] == {c: 3 for c in CLASSES}
    assert sum(manifest["segments"].values()) == manifest["n_segments"]
    assert sum(manifest["train_class_counts"].values()) == len(manifest["splits"]["split"]["train"])
    assert manifest["skipped"] == [] and manifest["skipped_counts"] == {}
    assert manifest["label_file"] == str((good_dir / "REFERENCE.csv").resolve())
    table = store.load_segments(out)
    labels = table.column("label").to_pylist()
    assert table.column("label_index").to_pylist() == [CLASS_TO_INDEX[l] for l in labels]
    x = store.signal_matrix(table)
    assert x.shape == (table.num_rows, cfg.segment_length) and x.dtype == np.float32
    assert np.isfinite(x).all()


# -- MIT-BIH ---------------------------------------------------------------------------------------

def test_prepare_mitbih_real(mitdb_dir, tmp_path):
    out = tmp_path / "mit"
    manifest = prepare("mitbih", mitdb_dir, out, workers=2, log=quiet)
    assert manifest["source"] == "mitbih" and manifest["window_s"] == 30.0
    assert set(manifest["records"]) == set(CLASSES)
    assert all(manifest["records"][c] > 0 for c in CLASSES), manifest["records"]
    # every record of RECORDS with an MLII lead gives 60 windows, less those whose rhythm changes;
    # 102 and 104 have no MLII lead (see ../shared/data/README.md) and are skipped whole
    listed = (mitdb_dir / "RECORDS").read_text().split()
    no_mlii = {s["record"] for s in manifest["skipped"] if s["reason"] == "no MLII lead"}
    assert no_mlii <= {"102", "104"} and len(no_mlii) == manifest["skipped_counts"].get("no MLII lead", 0)
    skipped = manifest["skipped_counts"]["rhythm changes within window"]
    assert manifest["n_records"] + skipped == (len(listed) - len(no_mlii)) * 60
    assert manifest["segments"]["N"] == 2 * manifest["records"]["N"]  # 30 s → two 20-s windows, 10 s apart
    # windows of one patient never straddle two parts or two folds
    patient = {r: r.split("_w")[0] for p in PARTS for r in manifest["splits"]["split"][p]}
    part_patients = [{patient[r] for r in manifest["splits"]["split"][p]} for p in PARTS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not part_patients[i] & part_patients[j]
    fold_patients = [{patient[r] for r in f} for f in manifest["splits"]["folds"]]
    assert sum(len(f) for f in fold_patients) == len(set(patient.values()))
    table = store.load_segments(out)
    assert set(table.column("record_id").to_pylist()) == set(patient)
    assert table.column("signal").type.list_size == 3000
    assert set(store.load_records(out).column("n_samples").to_pylist()) == {4500}  # 30 s resampled 360 → 150 Hz


def test_prepare_mitbih_single_patient_is_data_error(mitdb_dir, tmp_path):
    folder = tmp_path / "mitdb"
    folder.mkdir()
    for ext in (".hea", ".dat", ".atr"):
        (folder / f"100{ext}").symlink_to(mitdb_dir / f"100{ext}")
    with pytest.raises(DataError, match=str(folder)) as e:  # one patient cannot be split by patient
        prepare("mitbih", folder, tmp_path / "out", workers=1, log=quiet)
    assert "split" in str(e.value)


# -- the real datasets -----------------------------------------------------------------------------

def test_prepared_small(prepared_small, small_cinc_dir):
    manifest = store.read_manifest(prepared_small)
    assert manifest["records"] == {c: 100 for c in CLASSES}  # conftest.SMALL_PER_CLASS
    assert manifest["skipped"] == []
    labels = physionet2017.read_labels(small_cinc_dir / "REFERENCE.csv")
    index = store.load_index(prepared_small)
    assert set(index["record_id"]) == set(labels)
    assert all(labels[r] == l for r, l in zip(index["record_id"], index["label"]))


@pytest.mark.e2e
def test_prepare_full_real_cinc(prepared_cinc, cinc_labels):
    manifest = store.read_manifest(prepared_cinc)
    reference = Counter(cinc_labels.values())
    assert reference == {"N": 4481, "A": 669, "O": 2132, "~": 246}
    assert manifest["records"] == dict(reference)
    assert manifest["n_records"] == 7528
    assert manifest["skipped"] == [] and manifest["labels_without_record"] == []

    split = manifest["splits"]["split"]
    parts = [set(split[p]) for p in PARTS]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 7528
    folds = manifest["splits"]["folds"]
    assert Counter(r for f in folds for r in f) == Counter(set(cinc_labels))

    index = store.load_index(prepared_cinc)
    ids, labels = index["record_id"].tolist(), index["label"].tolist()
    assert sorted(ids) == sorted(cinc_labels)  # one row per record, each once
    wrong = [(r, l) for r, l in zip(ids, labels) if cinc_labels[r] != l]
    assert not wrong, f"{len(wrong)} records carry the wrong label, e.g. {wrong[:3]}"
    assert index["label_index"].tolist() == [CLASS_TO_INDEX[l] for l in labels]
    assert int(index["n_windows"].sum()) == manifest["n_segments"]
    per_class = Counter()
    for label, n in zip(labels, index["n_windows"]):
        per_class[label] += int(n)
    assert dict(per_class) == {c: n for c, n in manifest["segments"].items() if n}
    # the stored signal is the whole filtered record, sample for sample
    cfg = PreprocessConfig.from_dict(manifest["preprocess"])
    table = store.load_records(prepared_cinc, ["A00001", "A00005"])
    for rid, sig in zip(table.column("record_id").to_pylist(), store.record_signals(table)):
        raw, fs = physionet2017.read_record(CINC_DIR, rid)
        np.testing.assert_allclose(sig, filter_record(raw, fs, cfg, rid).astype(np.float32), atol=1e-6)


@pytest.mark.e2e
def test_prepare_through_ray_tasks_equals_the_process_pool(good_dir, tmp_path, ray_tmp):
    """`prepare --ray` fans the same chunk functions out as Ray tasks: same records, same
    signals, same splits and counts as the local process pool."""
    import os
    import subprocess
    import sys

    from conftest import PROJECT_ROOT

    pool = prepare("cinc2017", good_dir, tmp_path / "pool", workers=2, log=quiet)
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "ECG_RAY_TMPDIR": ray_tmp}
    out = subprocess.run([sys.executable, "-m", "ecg_ray.cli", "prepare", "--data-dir", str(good_dir),
                          "--out", str(tmp_path / "ray"), "--ray"], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Ray tasks" in out.stdout
    via_ray = store.read_manifest(tmp_path / "ray")
    volatile = {"created", "seconds", "data_dir"}
    assert {k: v for k, v in via_ray.items() if k not in volatile} == \
        {k: v for k, v in pool.items() if k not in volatile}
    a = store.load_records(tmp_path / "pool").sort_by("record_id")
    b = store.load_records(tmp_path / "ray").sort_by("record_id")
    assert a.equals(b)  # byte for byte in content: ids, labels, lengths and every sample
