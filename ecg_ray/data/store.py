"""The prepared dataset on disk: whole preprocessed records in parquet + ``manifest.json``.

Layout of a prepared folder::

    manifest.json                   config + hash, counts, skipped records, splits
    records/part-*.parquet          one row per record: the whole filtered signal
    records/<cell>/part-*.parquet   the same with ``layout: split`` in the manifest
                                    (``prepare(split_layout=True)``): one folder per split cell
                                    (``train.f3`` = split train, fold 3), the signal as float32
                                    bytes (``BYTES_SCHEMA``: parquet decodes them ~8× faster than
                                    a float list, as a streaming feed needs); ``load_records``
                                    gives the same list<float32> table

Columns: ``record_id`` (string), ``label`` (string), ``label_index`` (int8, class order
of ``ecg_ray.CLASSES``), ``n_samples`` (int32), ``signal`` (list<float32>, the whole
filtered, z-scored record). Training draws fresh random crops from these every epoch;
inference cuts them into the config's sliding windows (``preprocess.segment``;
``load_segments`` gives them as a table). The manifest is written last: a folder
without one is incomplete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import CLASS_TO_INDEX
from .errors import DataError
from .preprocess import PreprocessConfig, n_windows, segment

MANIFEST = "manifest.json"
RECORDS = "records"
#: ``manifest["layout"]`` of a folder whose records are grouped by split cell.
SPLIT_LAYOUT = "split"
SPLIT_PARTS = ("train", "val", "test")

SCHEMA = pa.schema([("record_id", pa.string()), ("label", pa.string()), ("label_index", pa.int8()),
                    ("n_samples", pa.int32()), ("signal", pa.list_(pa.float32()))])
#: The split layout's schema: ``signal`` as the little-endian float32 bytes of the record.
BYTES_SCHEMA = SCHEMA.set(SCHEMA.get_field_index("signal"), pa.field("signal", pa.large_binary()))


def signal_bytes(table: pa.Table) -> pa.Table:
    """A records table with ``signal`` as float32 bytes (``BYTES_SCHEMA``); no copy of the samples."""
    column = table.column("signal").combine_chunks()
    offsets = column.offsets.to_numpy().astype(np.int64)
    values = column.flatten()  # the samples from offsets[0] to offsets[-1]
    data = values.buffers()[1].slice(values.offset * 4, len(values) * 4)
    binary = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(column),
                                              [None, pa.py_buffer((offsets - offsets[0]) * 4), data])
    return table.set_column(table.schema.get_field_index("signal"), "signal", binary)


def signal_lists(table: pa.Table) -> pa.Table:
    """The inverse of ``signal_bytes`` (a table already in lists is returned as is)."""
    index = table.schema.get_field_index("signal")
    if index < 0 or not pa.types.is_large_binary(table.schema.field(index).type):
        return table
    chunks = [pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values))
              for values, offsets in map(signal_buffer, table.column(index).chunks)]
    return table.set_column(index, "signal", pa.chunked_array(chunks, pa.list_(pa.float32())))


def records_table(records: list[tuple[str, str, np.ndarray]]) -> pa.Table:
    """A table from ``(record_id, label, filtered signal (n,))`` tuples."""
    signals = [np.asarray(sig, dtype=np.float32) for _, _, sig in records]
    labels = [label for _, label, _ in records]
    return pa.table({"record_id": [r for r, _, _ in records], "label": labels,
                     "label_index": [CLASS_TO_INDEX[l] for l in labels], "n_samples": [len(s) for s in signals],
                     "signal": signals}, schema=SCHEMA)


def record_files(prepared: Path) -> list[Path]:
    return sorted((Path(prepared) / RECORDS).rglob("*.parquet"))


def cell_name(part: str, fold: int) -> str:
    """The folder of the records in split ``part`` (train/val/test) and fold ``fold``."""
    return f"{part}.f{fold}"


def record_cells(splits: dict) -> dict[str, str]:
    """``record id → cell name`` for the splits of a manifest (every record is in one
    split and one fold, so in exactly one cell)."""
    fold_of = {r: i for i, fold in enumerate(splits["folds"]) for r in fold}
    return {r: cell_name(part, fold_of[r]) for part in SPLIT_PARTS for r in splits["split"][part]}


def cell_dirs(prepared: Path, manifest: dict, val_fold: int | None = None) -> tuple[list[Path], list[Path]] | None:
    """``(train folders, val folders)`` holding exactly the records
    ``splits.fold_records(manifest["splits"], val_fold)`` selects, for a folder
    prepared with the split layout; ``None`` for the flat layout."""
    if manifest.get("layout") != SPLIT_LAYOUT:
        return None
    k = len(manifest["splits"]["folds"])
    if val_fold is None:
        train, val = [cell_name("train", f) for f in range(k)], [cell_name("val", f) for f in range(k)]
    else:
        train = [cell_name(p, f) for p in SPLIT_PARTS for f in range(k) if f != val_fold]
        val = [cell_name(p, val_fold) for p in SPLIT_PARTS]
    root = Path(prepared) / RECORDS
    return [root / c for c in train if (root / c).is_dir()], [root / c for c in val if (root / c).is_dir()]


def read_manifest(prepared: Path) -> dict:
    path = Path(prepared) / MANIFEST
    if not path.is_file():
        raise DataError(f"not a prepared dataset (no {MANIFEST}): {prepared} — run `ecg-ray prepare` first")
    return json.loads(path.read_text())


def write_manifest(prepared: Path, manifest: dict) -> None:
    tmp = Path(prepared) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(Path(prepared) / MANIFEST)  # in one step: a folder with a manifest is complete


def signal_matrix(table: pa.Table) -> np.ndarray:
    """The ``signal`` column of a window table as a contiguous float32 array (n, L)."""
    column = table.column("signal").combine_chunks()
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size)


def signal_buffer(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(samples, offsets)`` of a record table's ``signal`` column, read in place:
    record ``i`` is ``samples[offsets[i]:offsets[i + 1]]`` (float32). Takes both the
    ``list<float32>`` column and the split layout's float32 bytes."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        offsets = np.frombuffer(column.buffers()[1], dtype=np.int64 if pa.types.is_large_binary(column.type)
                                else np.int32)[column.offset:column.offset + len(column) + 1]
        data = column.buffers()[2]
        samples = np.frombuffer(data, np.float32, count=int(offsets[-1]) // 4) if data else np.empty(0, np.float32)
        return samples, offsets.astype(np.int64) // 4
    return column.values.to_numpy(zero_copy_only=False), column.offsets.to_numpy().astype(np.int64)


def record_signals(table: pa.Table) -> list[np.ndarray]:
    """The ``signal`` column of a record table as one float32 array per record
    (zero-copy views of the Arrow buffer)."""
    values, offsets = signal_buffer(table.column("signal"))
    return [values[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def _windows(table: pa.Table, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(windows (n, segment_length) float32, record index of each window)``: every record of a
    record table cut into ``cfg``'s overlapping windows up to its tail (a short one padded)."""
    windows = [segment(s, cfg.segment_length, cfg.hop, pad=True)[0] for s in record_signals(table)]
    codes = np.repeat(np.arange(len(windows)), [len(w) for w in windows])
    if not windows:
        return np.empty((0, cfg.segment_length), np.float32), codes
    return np.concatenate(windows).astype(np.float32, copy=False), codes


def record_windows(prepared: Path, record_ids: list[str], cfg: PreprocessConfig):
    """``(record ids in file order, labels, windows, record index of each window)`` of
    ``record_ids``, cut as whole-record scoring reads them (``_windows``)."""
    table = load_records(prepared, record_ids)
    return (np.asarray(table.column("record_id").to_pylist()),
            table.column("label_index").to_numpy().astype(np.int64), *_windows(table, cfg))


def load_records(prepared: Path, record_ids: list[str] | None = None, columns: list[str] | None = None) -> pa.Table:
    """All records (or those of ``record_ids``) as one in-memory table, no Ray."""
    if not record_files(prepared):
        raise DataError(f"no record files in {Path(prepared) / RECORDS}")
    filters = pc.field("record_id").isin(record_ids) if record_ids is not None else None
    return signal_lists(pq.read_table(str(Path(prepared) / RECORDS), columns=columns, filters=filters))


def preprocess_config(prepared: Path) -> PreprocessConfig:
    return PreprocessConfig.from_dict(read_manifest(prepared)["preprocess"])


def load_segments(prepared: Path, record_ids: list[str] | None = None) -> pa.Table:
    """The inference windows of all records, or of ``record_ids``, cut with the prepared
    folder's own window config: one row per window with ``record_id``, ``segment_index``,
    ``label``, ``label_index``, ``padded`` and ``signal`` (fixed_size_list<float32>[segment_length])."""
    cfg = preprocess_config(prepared)
    records = load_records(prepared, record_ids)
    windows, codes = _windows(records, cfg)
    first = np.searchsorted(codes, codes)  # the first window of each window's record
    short = records.column("n_samples").to_numpy() < cfg.segment_length
    return pa.table({"record_id": records.column("record_id").take(codes),
                     "segment_index": pa.array(np.arange(len(codes)) - first, pa.int32()),
                     "label": records.column("label").take(codes),
                     "label_index": records.column("label_index").take(codes),
                     "padded": pa.array(short[codes], pa.bool_()),
                     "signal": pa.FixedSizeListArray.from_arrays(pa.array(windows.ravel()), cfg.segment_length)})


def load_index(prepared: Path) -> dict[str, np.ndarray]:
    """One entry per record (no signal), in file order: ``record_id``, ``label``,
    ``label_index``, ``n_samples`` and ``n_windows`` (inference windows) as numpy arrays."""
    table = load_records(prepared, columns=["record_id", "label", "label_index", "n_samples"])
    out = {name: table.column(name).to_numpy() for name in table.column_names}
    cfg = preprocess_config(prepared)
    out["n_windows"] = np.array([n_windows(int(n), cfg.segment_length, cfg.hop) for n in out["n_samples"]],
                                dtype=np.int64)
    return out
