"""The prepared dataset on disk: parquet segments + ``manifest.json`` (pyarrow).

Layout of a prepared folder::

    manifest.json          config + hash, counts, skipped records, splits
    segments/part-*.parquet  one row per segment

Columns: ``record_id`` (string), ``segment_index`` (int32), ``label`` (string),
``label_index`` (int8, class order of ``ecg_ray.CLASSES``), ``padded`` (bool),
``signal`` (fixed_size_list<float32>[segment_length]; ~3x faster to read in Ray
Data than one column per sample). The manifest is written last: a folder
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

MANIFEST = "manifest.json"
SEGMENTS = "segments"


def schema(segment_length: int) -> pa.Schema:
    return pa.schema([
        ("record_id", pa.string()),
        ("segment_index", pa.int32()),
        ("label", pa.string()),
        ("label_index", pa.int8()),
        ("padded", pa.bool_()),
        ("signal", pa.list_(pa.float32(), segment_length)),
    ])


def segments_table(records: list[tuple[str, str, np.ndarray, bool]], segment_length: int) -> pa.Table:
    """A table from ``(record_id, label, segments (n, L) float32, padded)`` tuples."""
    ids, index, labels, padded, chunks = [], [], [], [], []
    for record_id, label, segments, pad in records:
        n = len(segments)
        ids += [record_id] * n
        index += range(n)
        labels += [label] * n
        padded += [pad] * n
        chunks.append(np.ascontiguousarray(segments, dtype=np.float32).ravel())
    flat = np.concatenate(chunks) if chunks else np.empty(0, np.float32)
    signal = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), segment_length)
    return pa.Table.from_arrays(
        [pa.array(ids, pa.string()), pa.array(index, pa.int32()), pa.array(labels, pa.string()),
         pa.array([CLASS_TO_INDEX[l] for l in labels], pa.int8()), pa.array(padded, pa.bool_()), signal],
        schema=schema(segment_length),
    )


def write_segments(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path, row_group_size=4096)


def segment_files(prepared: Path) -> list[Path]:
    return sorted((Path(prepared) / SEGMENTS).glob("*.parquet"))


def read_manifest(prepared: Path) -> dict:
    path = Path(prepared) / MANIFEST
    if not path.is_file():
        raise DataError(f"not a prepared dataset (no {MANIFEST}): {prepared} — run `ecg-ray prepare` first")
    with open(path) as f:
        return json.load(f)


def write_manifest(prepared: Path, manifest: dict) -> None:
    tmp = Path(prepared) / (MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    tmp.replace(Path(prepared) / MANIFEST)


def signal_matrix(table: pa.Table) -> np.ndarray:
    """The ``signal`` column as a contiguous float32 array of shape (n, L)."""
    column = table.column("signal").combine_chunks()
    length = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, length)


def load_segments(prepared: Path, record_ids: list[str] | None = None) -> pa.Table:
    """All segments (or those of ``record_ids``) as one in-memory table, no Ray."""
    files = segment_files(prepared)
    if not files:
        raise DataError(f"no segment files in {Path(prepared) / SEGMENTS}")
    filters = pc.field("record_id").isin(record_ids) if record_ids is not None else None
    return pq.read_table(str(Path(prepared) / SEGMENTS), filters=filters)


def load_index(prepared: Path) -> dict[str, np.ndarray]:
    """The small columns of every segment (no signal): ``record_id``, ``label``,
    ``label_index``, ``segment_index`` as numpy arrays, in file order."""
    table = pq.read_table(str(Path(prepared) / SEGMENTS),
                          columns=["record_id", "segment_index", "label", "label_index"])
    return {name: table.column(name).to_numpy() for name in table.column_names}
