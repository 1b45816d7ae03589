"""Issue #16: long records in bounded memory, the split layout, and the feed that reads it.

All on real PhysioNet 2017 records: the chunked filter must equal the whole-record
filter; a record stored in parts must concatenate back to it and stay in one split;
the split layout must hold the same records as the flat one, and each run's
folders exactly the records of its split.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import CINC_DIR
from ecg_ray.data import physionet2017, prepare as prepare_module, store
from ecg_ray.data.errors import RecordError
from ecg_ray.data.prepare import prepare
from ecg_ray.bench.prepare import link_records
from ecg_ray.bench.scale import scale_config
from ecg_ray.data.preprocess import filter_record, filter_record_chunked
from ecg_ray.data.shards import RecordFiles
from ecg_ray.data.splits import fold_records

CFG = scale_config()  # the records' own 300 Hz: what lets a long record take the chunked path


def quiet(*args, **kwargs):
    pass


@pytest.fixture
def folder(cinc_labels, tmp_path) -> Path:
    """16 real records (4 per class) as symlinks, with their labels."""
    names = []
    for label in ("N", "A", "O", "~"):
        names += [r for r, l in cinc_labels.items() if l == label][:4]
    return link_records(CINC_DIR, sorted(names), cinc_labels, tmp_path / "in" / "training2017")


def _chunked(signal, fs, chunk, cfg=CFG, name="?"):
    with tempfile.TemporaryFile() as scratch:
        return list(filter_record_chunked(lambda a, b: signal[a:b], len(signal), fs, cfg, scratch, name, chunk))


@pytest.mark.parametrize("name", ["A00001", "A00105", "A00167"])
@pytest.mark.parametrize("chunk", [64, 1000, 1 << 20])
def test_chunked_filter_equals_whole_record_filter(name, chunk):
    """Forward-backward filter with state across chunks + z-score from per-chunk sums:
    the same float32 signal as ``filter_record`` (here to the last bit)."""
    signal, fs = physionet2017.read_record(CINC_DIR, name)
    whole = filter_record(signal, fs, CFG, name).astype(np.float32)
    pieces = _chunked(signal, fs, chunk)
    assert [len(p) for p in pieces[:-1]] == [max(chunk, 28)] * (len(pieces) - 1)
    np.testing.assert_allclose(np.concatenate(pieces), whole, rtol=0, atol=1e-6)


def test_chunked_filter_raises_the_same_record_errors():
    signal, fs = physionet2017.read_record(CINC_DIR, "A00001")
    flat = np.full(5000, 0.2)
    with pytest.raises(RecordError, match="flat line"):
        _chunked(flat, fs, 1000)
    broken = signal.copy()
    broken[7000] = np.nan
    with pytest.raises(RecordError, match="non-finite"):
        _chunked(broken, fs, 1000)
    with pytest.raises(ValueError, match="300 Hz"):
        _chunked(signal, 250.0, 1000)


def test_long_records_are_stored_in_parts_that_concatenate_to_the_whole(folder, tmp_path, monkeypatch):
    """With the long-record threshold under 9,000 samples every 30-s record takes the
    chunked path: parts of PART_SAMPLES (a short tail joined to the part before), each a
    record of its own, all parts of a record in one split, signals equal to the whole filter."""
    monkeypatch.setattr(prepare_module, "LONG_SAMPLES", 8999)
    monkeypatch.setattr(prepare_module, "PART_SAMPLES", 4000)
    manifest = prepare("cinc2017", folder, tmp_path / "out", CFG, workers=1, log=quiet)
    table = store.load_records(tmp_path / "out")
    ids = table.column("record_id").to_pylist()
    signals = dict(zip(ids, store.record_signals(table)))
    originals = sorted({r.split("_p")[0] for r in ids})
    assert len(originals) == 16
    parted = [r for r in originals if f"{r}_p0000" in signals]
    assert parted  # the 30-s records
    where = {r: part for part, members in manifest["splits"]["split"].items() for r in members}
    for name in parted:
        parts = sorted(r for r in ids if r.startswith(f"{name}_p"))
        raw, fs = physionet2017.read_record(folder, name)
        whole = filter_record(raw, fs, CFG, name).astype(np.float32)
        assert [len(signals[p]) for p in parts[:-1]] == [4000] * (len(parts) - 1)
        assert 3000 <= len(signals[parts[-1]]) < 4000 + 3000  # the 1,000-sample tail went to the last part
        np.testing.assert_allclose(np.concatenate([signals[p] for p in parts]), whole, rtol=0, atol=1e-6)
        assert len({where[p] for p in parts}) == 1
    assert manifest["n_records"] == len(ids)


def test_split_layout_holds_the_same_records_and_each_run_reads_exactly_its_own(folder, tmp_path):
    from ecg_ray.cli import main

    flat = prepare("cinc2017", folder, tmp_path / "flat", workers=2, log=quiet)
    assert main(["prepare", "--data-dir", str(folder), "--out", str(tmp_path / "split"), "--workers", "2",
                 "--split-layout"]) == 0  # the CLI flag
    split = store.read_manifest(tmp_path / "split")
    assert split["layout"] == store.SPLIT_LAYOUT and "layout" not in flat
    assert split["splits"] == flat["splits"] and split["segments"] == flat["segments"]
    assert not list((tmp_path / "split" / store.RECORDS).glob("*.parquet"))  # shards regrouped, not copied
    a = store.load_records(tmp_path / "flat").sort_by("record_id")
    b = store.load_records(tmp_path / "split").sort_by("record_id")
    assert a.equals(b)
    assert store.cell_dirs(tmp_path / "flat", flat) is None
    for val_fold in (None, *range(len(split["splits"]["folds"]))):
        train_dirs, val_dirs = store.cell_dirs(tmp_path / "split", split, val_fold)
        train, val = fold_records(split["splits"], val_fold)
        for dirs, want in ((train_dirs, train), (val_dirs, val)):
            got = [r for d in dirs for r in pq.read_table(d, columns=["record_id"]).column(0).to_pylist()]
            assert sorted(got) == sorted(want)


@pytest.mark.parametrize("max_records", [None, 8])
def test_feed_reads_only_the_runs_cells_of_a_split_layout(folder, tmp_path, monkeypatch, max_records):
    """``load_datasets`` on a split-layout folder reads each side from its own cell
    folders (``store.cell_dirs``), with no record filter unless a record cap asks for one;
    materialized, the driver reads exactly the run's records and puts them in the object
    store itself (``held_by_driver``: a lost worker node holds none of them)."""
    import ray

    from ecg_ray.data.dataset import PreparedDataset
    from ecg_ray.training.feed import load_datasets

    prepare("cinc2017", folder, tmp_path / "split", workers=1, split_layout=True, log=quiet)
    manifest = store.read_manifest(tmp_path / "split")
    def no_ray_data_read(*args, **kwargs):
        raise AssertionError("the split layout is read with pyarrow, never through ray.data.read_parquet")

    monkeypatch.setattr(ray.data, "read_parquet", no_ray_data_read)
    monkeypatch.setattr(ray.data, "from_arrow", lambda chunks: chunks)  # the tables the driver would put
    train_dirs, val_dirs = store.cell_dirs(tmp_path / "split", manifest, 2)
    selected = PreparedDataset(tmp_path / "split").select(2, max_records)
    for materialize in (True, False):
        train_ds, val_ds, info = load_datasets(tmp_path / "split", val_fold=2, materialize=materialize,
                                               max_records=max_records)
        assert info.materialized == materialize
        for ds, dirs, ids in ((train_ds, train_dirs, selected[0]), (val_ds, val_dirs, selected[1])):
            if materialize:
                got = [r for chunk in ds for r in chunk.column("record_id").to_pylist()]
                assert sorted(got) == sorted(ids) and len(got) == len(set(got))
                assert ds[0].schema.names == ["record_id", "label_index", "signal"]
            else:  # streamed: the workers read the cells' files themselves (no Ray Data)
                assert isinstance(ds, RecordFiles)
                assert sorted({str(Path(f).parent) for f in ds.files}) == sorted(str(d.resolve()) for d in dirs)
                assert (ds.record_ids is not None) == bool(max_records)


def test_record_shards_split_the_training_cells_between_ranks(folder, tmp_path):
    """Streamed training records: ranks read disjoint row groups that together are the
    run's training records; a record cap keeps exactly its records; the order is new each
    epoch and the same for the same (seed, epoch); more ranks than row groups is an error."""
    from ecg_ray.data.errors import DataError
    from ecg_ray.training.feed import crop_batches

    prepare("cinc2017", folder, tmp_path / "split", workers=1, split_layout=True, log=quiet)
    manifest = store.read_manifest(tmp_path / "split")
    train_dirs, _ = store.cell_dirs(tmp_path / "split", manifest, None)
    want, _ = fold_records(manifest["splits"], None)
    files = RecordFiles.from_dirs(train_dirs)

    def ids(shard, epoch=0, prefetch=True):
        shard.epoch = epoch
        return [r for t in shard.iter_batches(3, prefetch=prefetch) for r in t.column("record_id").to_pylist()]

    groups = len(files.row_groups())
    assert groups >= 2
    parts = [ids(files.shard(rank, 2, seed=1)) for rank in (0, 1)]
    assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == sorted(want)
    shard = files.shard(0, 1, seed=1)
    orders = {tuple(ids(shard, epoch)) for epoch in range(6)}
    assert len(orders) > 1 and ids(shard, 4) == ids(shard, 4, prefetch=False)
    capped = RecordFiles.from_dirs(train_dirs, want[:3])
    assert sorted(ids(capped.shard(0, 1))) == sorted(want[:3])
    with pytest.raises(DataError, match="row groups"):
        files.shard(groups, groups + 1)
    with pytest.raises(DataError, match="not found on this node"):  # e.g. a node-local folder on a cluster
        RecordFiles((str(tmp_path / "elsewhere" / "part-0.parquet"),)).shard(0, 1)

    batches = list(crop_batches(files.shard(0, 1), length=CFG.segment_length, crops_per_record=2, batch_size=4,
                                steps=5, seed=0, epoch=0, rank=0, prefetch=True))
    assert len(batches) == 5 and all(x.shape == (4, CFG.segment_length) for x, _ in batches)


def test_signal_bytes_round_trip_and_the_feed_reads_them(prepared_small):
    """The split layout's float32-bytes signal column: the same samples after a filter
    (sliced arrays), back to lists for ``load_records``, and read in place (``record_signals``
    through ``signal_buffer``, as the feed reads them)."""
    import pyarrow as pa

    table = store.load_records(prepared_small).slice(0, 40)
    table = table.filter(pa.array(np.arange(40) % 3 != 0))  # offsets that do not start at 0
    as_bytes = store.signal_bytes(table)
    assert as_bytes.schema == store.BYTES_SCHEMA
    assert store.signal_lists(as_bytes).equals(table)
    from_bytes = store.record_signals(as_bytes)
    for a, b in zip(from_bytes, store.record_signals(table)):
        assert a.dtype == np.float32 and np.array_equal(a, b)


def test_record_windows_reach_every_record_s_tail(prepared_small):
    """``store.record_windows``: each record cut into overlapping windows whose last one ends
    at the record's end (a record shorter than a window padded to one), windows in file
    order with their record index, one label per record."""
    ids = list(store.load_records(prepared_small, columns=["record_id"]).column("record_id").to_pylist())[:12]
    cfg = store.preprocess_config(prepared_small)
    got_ids, y, windows, codes = store.record_windows(prepared_small, ids, cfg)
    table = store.load_records(prepared_small, ids)
    assert list(got_ids) == table.column("record_id").to_pylist() and sorted(got_ids) == sorted(ids)
    assert len(y) == len(ids) and windows.dtype == np.float32 and windows.shape[1] == cfg.segment_length
    assert np.array_equal(np.unique(codes), np.arange(len(ids))) and np.all(np.diff(codes) >= 0)
    for i, signal in enumerate(store.record_signals(table)):
        mine = windows[codes == i]
        if len(signal) >= cfg.segment_length:
            assert np.array_equal(mine[0], signal[:cfg.segment_length])
            assert np.array_equal(mine[-1], signal[-cfg.segment_length:])  # the tail is scored
            assert len(mine) == int(np.ceil((len(signal) - cfg.segment_length) / cfg.hop)) + 1
        else:
            assert len(mine) == 1 and np.array_equal(mine[0][:len(signal)], signal)
