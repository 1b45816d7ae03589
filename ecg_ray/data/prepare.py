"""``ecg-ray prepare``: a records folder → parquet of whole preprocessed records + manifest.

Chunks of records fan out over a process pool (the per-record functions stay plain
numpy/scipy), each writing its own parquet shard, so no signal travels back to the
parent. Bad records are skipped and counted with their reason; splits are made over
the survivors and the manifest is written last. Re-running with the same input,
config and split settings is a no-op unless ``force``.

Memory per task is bounded by the chunk, not the corpus: a record longer than
``LONG_SAMPLES`` (a Holter recording of days) is filtered in pieces
(``preprocess.filter_record_chunked``) and stored as parts of ``PART_SAMPLES``
(``<name>_p0000``, …: records of their own, kept in one split by their original name).

``split_layout``: the shards are then regrouped into one folder per (split, fold) cell
(``store.cell_name``), so a run reads only its own records' files (``store.cell_dirs``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import CLASSES
from . import physionet2017, store
from .download import user_cache
from .errors import DataError, RecordError
from .preprocess import PreprocessConfig, filter_record_chunked, filtered_record, n_windows
from .sources import check_label, get_source
from .splits import make_splits

#: A record with more raw samples than this is filtered in pieces and stored in parts
#: (2**22 samples: 3.9 h at 300 Hz; every PhysioNet 2017 record is under a minute).
LONG_SAMPLES = 1 << 22
#: Samples per stored part of a long record (2**20: 58 min at 300 Hz) and per filter piece.
PART_SAMPLES = 1 << 20
#: Rows / bytes per row group when shards are regrouped by split cell (the memory of
#: a regrouping task is about one such group per cell: 15 cells × 8 MiB at most).
CELL_ROWS, CELL_BYTES = 512, 8 << 20


@dataclass
class SplitConfig:
    seed: int = 42
    val_frac: float = 0.15
    test_frac: float = 0.15
    folds: int = 5


def _open_long_mat(data_dir: Path, name: str, min_samples: int):
    """``(read(a, b) → mV float64, n, fs)`` for a PhysioNet-2017-style record longer
    than ``min_samples`` stored as a plain MATLAB v4 int16 row, reading only the
    samples asked for; ``None`` for anything else (then ``read_record`` reads it whole)."""
    mat, hea = Path(data_dir) / f"{name}.mat", Path(data_dir) / f"{name}.hea"
    if not (mat.is_file() and hea.is_file()) or mat.stat().st_size < 2 * min_samples:
        return None
    head = np.fromfile(mat, dtype="<i4", count=5)
    if len(head) < 5 or head[0] != 30 or head[1] != 1 or head[3] != 0:  # little-endian int16, 1 row, real
        return None
    offset, n = 20 + int(head[4]), int(head[2])
    if n <= min_samples or mat.stat().st_size < offset + 2 * n:
        return None
    try:
        fs, sig_len, gain, baseline = physionet2017.read_header(data_dir, name)
    except RecordError:
        return None  # read_record reports it
    if sig_len not in (None, n):
        return None

    def read(a: int, b: int) -> np.ndarray:
        raw = np.fromfile(mat, dtype="<i2", count=b - a, offset=offset + 2 * a)
        return (raw.astype(np.float64) - baseline) / gain
    return read, n, fs


def _merged_tail(pieces, length: int):
    """The pieces, the last one joined to the one before when shorter than ``length``."""
    prev = None
    for piece in pieces:
        if prev is not None and len(piece) >= length:
            yield prev
        elif prev is not None:
            piece = np.concatenate([prev, piece])
        prev = piece
    if prev is not None:
        yield prev


def _long_record(opened, name: str, label: str, cfg: PreprocessConfig, part_samples: int, path: Path):
    """Filter one long record in pieces and write it as parts to ``path``; its kept rows."""
    read, n, fs = opened
    kept, writer = [], None
    try:
        with tempfile.TemporaryFile(prefix="ecg_ray_long_") as scratch:
            pieces = filter_record_chunked(read, n, fs, cfg, scratch, name, chunk=part_samples)
            for i, piece in enumerate(_merged_tail(pieces, cfg.segment_length)):
                rid = f"{name}_p{i:04d}"
                writer = writer or pq.ParquetWriter(path, store.SCHEMA)  # opened late: a skipped record leaves no file
                writer.write_table(store.records_table([(rid, label, piece)]))
                kept.append((rid, label, n_windows(len(piece), cfg.segment_length, cfg.hop),
                             len(piece) < cfg.segment_length, name))
    finally:
        if writer is not None:
            writer.close()
    return kept


def _chunk(source: str, data_dir, names, labels, window_s, cfg, limits, shard):
    """Read, filter and write one chunk of records of ``source``: ``(kept, skipped, n records)``,
    ``kept`` holding ``(item id, label, n windows, padded, record)``."""
    src = get_source(source)
    long_samples, part_samples = limits
    kept, skipped, rows = [], [], []
    for name in names:
        try:
            opened = _open_long_mat(data_dir, name, long_samples) if src.long_mat else None
            if opened is not None and opened[2] == cfg.fs:  # long records at another rate: read whole
                kept += _long_record(opened, name, labels[name], cfg, part_samples,
                                     shard.with_name(f"{shard.stem}-{name}.parquet"))
                continue
            items, skipped_items = src.read(data_dir, name, labels, window_s)
        except RecordError as e:
            skipped.append((e.record, e.reason, e.detail))
            continue
        skipped += [(name, reason, "") for reason, count in skipped_items.items() for _ in range(count)]
        for item_id, label, signal, fs in items:
            try:
                filtered, n, padded = filtered_record(signal, fs, cfg, item_id)
            except RecordError as e:
                skipped.append((e.record, e.reason, e.detail))
                continue
            rows.append((item_id, label, filtered))
            kept.append((item_id, label, n, padded, name))
    if rows:
        pq.write_table(store.records_table(rows), shard, row_group_size=512)
    return kept, skipped, len(names)


def _run_chunk(fn, args, shard):
    return fn(*args, shard)


def _regroup(sources: list[str], cell_of: dict[str, str], shard: Path):
    """Copy the rows of ``sources`` (parquet shards) into ``<cell>/<shard name>``, one
    file per split cell, a row group at a time (memory: one row group per cell), the
    signal as float32 bytes (``store.BYTES_SCHEMA``), uncompressed (float noise does not compress)."""
    writers, buffers = {}, {}

    def flush(cell):
        table = pa.concat_tables(buffers.pop(cell))
        if cell not in writers:
            (shard.parent / cell).mkdir(exist_ok=True)
            writers[cell] = pq.ParquetWriter(shard.parent / cell / shard.name, store.BYTES_SCHEMA,
                                             compression="none", use_dictionary=["record_id", "label"])
        writers[cell].write_table(table, row_group_size=CELL_ROWS)

    try:
        for source in sources:
            pf = pq.ParquetFile(source)
            for g in range(pf.num_row_groups):
                table = store.signal_bytes(pf.read_row_group(g))
                cells = np.array([cell_of[r] for r in table.column("record_id").to_pylist()])
                for cell in np.unique(cells):
                    buffers.setdefault(cell, []).append(table.filter(pa.array(cells == cell)))
                    held = buffers[cell]
                    if sum(t.num_rows for t in held) >= CELL_ROWS or sum(t.nbytes for t in held) >= CELL_BYTES:
                        flush(cell)
        for cell in list(buffers):
            flush(cell)
    finally:
        for writer in writers.values():
            writer.close()


def _split_layout(seg_dir: Path, splits: dict, use_ray: bool, workers: int) -> None:
    """Regroup the shards of ``seg_dir`` into one folder per split cell (see module docstring)."""
    sources = sorted(str(p) for p in seg_dir.glob("*.parquet"))
    cell_of = store.record_cells(splits)
    if use_ray:
        import ray

        workers = int(ray.cluster_resources().get("CPU", 1))
    groups = max(1, min(len(sources), workers))
    tasks = [(_regroup, (sources[i::groups], cell_of)) for i in range(groups)]
    list(_fan_out(tasks, seg_dir, use_ray, groups))  # wait for every task
    for source in sources:
        os.unlink(source)


def _fan_out(tasks, seg_dir: Path, use_ray: bool, workers: int):
    """Each task's ``fn(*args, shard)`` result, as they finish: on a local process pool,
    or with ``use_ray`` as Ray tasks (1 CPU each). Ray is imported here only: the
    per-record functions stay Ray-free."""
    calls = [(fn, args, seg_dir / f"part-{i:05d}.parquet") for i, (fn, args) in enumerate(tasks)]
    if not use_ray:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield from (done.result() for done in as_completed([pool.submit(_run_chunk, *call) for call in calls]))
        return
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    run = ray.remote(num_cpus=1, max_retries=2)(_run_chunk)
    pending = [run.remote(*call) for call in calls]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        yield ray.get(ready[0])


def _input_signature(data_dir: Path, label_file: Path | None) -> str:
    h = hashlib.sha256()
    for entry in sorted(os.scandir(data_dir), key=lambda e: e.name):
        if entry.is_file():
            h.update(f"{entry.name}:{entry.stat().st_size}\n".encode())
    if label_file is not None:
        h.update(Path(label_file).read_bytes())
    return h.hexdigest()[:16]


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-test").write_text("")
        (out / ".write-test").unlink()
    except OSError as e:
        raise DataError(f"output folder is not writable: {out} ({e.strerror or e})") from None


def prepare(
    source: str, data_dir: Path, out: Path, cfg: PreprocessConfig = PreprocessConfig(),
    split: SplitConfig = SplitConfig(), labels_path: Path | None = None, workers: int | None = None,
    force: bool = False, window_s: float = 30.0, use_ray: bool = False, split_layout: bool = False, log=print,
) -> dict:
    """Prepare ``data_dir`` into ``out``; returns the manifest. Chunks of records go to a local
    process pool, or with ``use_ray`` to Ray tasks (the connected cluster's, or a local Ray): the
    same chunk functions and output, only fanned out further; every node must see ``data_dir`` and
    ``out`` (a shared filesystem). ``split_layout``: one folder per split cell (module docstring)."""
    src = get_source(source)
    data_dir, out = Path(data_dir), Path(out)
    names = src.list_records(data_dir)
    label_file, labels = src.labels(data_dir, labels_path)

    settings = {"source": source, "preprocess": cfg.to_dict(), "split": vars(split),
                "window_s": window_s if src.grouped else None,
                "input": _input_signature(data_dir, label_file)}
    if split_layout:
        settings["layout"] = store.SPLIT_LAYOUT
    key = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:16]
    _check_writable(out)
    if not force and (out / store.MANIFEST).is_file():
        old = store.read_manifest(out)
        if old.get("prepare_hash") == key:
            log(f"prepare: {out} is up to date (hash {key}); nothing to do (use --force to redo)")
            return old

    seg_dir = out / store.RECORDS
    (out / store.MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(seg_dir, ignore_errors=True)
    shutil.rmtree(out / "segments", ignore_errors=True)  # layout of PREPROCESS_VERSION 1
    seg_dir.mkdir(parents=True)

    skipped, orphans = [], []
    if labels is not None:  # records without a usable label are skipped before any is read
        orphans, usable = sorted(set(labels) - set(names)), []
        for name in names:
            try:
                check_label(name, labels)
                usable.append(name)
            except RecordError as e:
                skipped.append((e.record, e.reason, e.detail))
        names = usable
    chunks = [names[i:i + src.chunk] for i in range(0, len(names), src.chunk)]
    tasks = [(_chunk, (source, data_dir, c, {n: labels[n] for n in c} if labels is not None else None, window_s, cfg,
                       (LONG_SAMPLES, PART_SAMPLES))) for c in chunks]

    workers = workers or min(len(tasks), os.cpu_count() or 1) or 1
    total = len(names)
    kept, done, start = [], 0, time.perf_counter()
    log(f"prepare: {total} {source} records from {data_dir} with "
        + ("Ray tasks (one per chunk of records, across the cluster)" if use_ray else f"{workers} process(es)"))
    for k, s, n in _fan_out(tasks, seg_dir, use_ray, workers):
        kept += k
        skipped += s
        done += n
        rate = done / (time.perf_counter() - start)
        print(f"\r  records {done}/{total}  {rate:,.0f} records/s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    seconds = time.perf_counter() - start
    if not kept:
        raise DataError(f"no usable records in {data_dir} ({len(skipped)} skipped)")

    ids, kept_labels, windows, padded, records = (list(column) for column in zip(*sorted(kept)))
    # records stored in parts stay together: group by the original record
    groups = records if src.grouped or ids != records else None
    try:
        splits = make_splits(ids, kept_labels, seed=split.seed, val_frac=split.val_frac,
                             test_frac=split.test_frac, k=split.folds, groups=groups)
    except ValueError as e:  # too few records/patients for the requested split
        raise DataError(f"cannot split the {len(ids)} usable records of {data_dir}: {e}") from None
    layout = {}
    if split_layout:
        t0 = time.perf_counter()
        _split_layout(seg_dir, splits, use_ray, workers)
        layout = {"layout": store.SPLIT_LAYOUT, "layout_seconds": round(time.perf_counter() - t0, 2)}
    label_of = dict(zip(ids, kept_labels))
    record_counts, train_counts = Counter(kept_labels), Counter(label_of[r] for r in splits["split"]["train"])
    skip_counts = Counter(reason for _, reason, _ in skipped)
    manifest = {
        "source": source,
        "data_dir": str(data_dir.resolve()),
        "label_file": str(label_file.resolve()) if label_file else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prepare_hash": key,
        "config_hash": cfg.hash,
        "preprocess": cfg.to_dict(),
        "classes": list(CLASSES),
        "window_s": settings["window_s"],
        "seconds": round(seconds, 2),
        "records": {c: record_counts[c] for c in CLASSES},
        "segments": {c: sum(n for label, n in zip(kept_labels, windows) if label == c) for c in CLASSES},
        "n_records": len(ids),
        "n_segments": sum(windows),
        "padded_records": [r for r, pad in zip(ids, padded) if pad],
        "skipped_counts": dict(skip_counts),
        "skipped": [{"record": r, "reason": reason, "detail": d} for r, reason, d in sorted(skipped)],
        "labels_without_record": orphans,
        "train_class_counts": {c: train_counts[c] for c in CLASSES},
        "splits": splits,
        **layout,
    }
    store.write_manifest(out, manifest)
    summary = ", ".join(f"{c} {manifest['records'][c]}" for c in CLASSES)
    skip_text = ", ".join(f"{n} {r}" for r, n in skip_counts.most_common()) or "none"
    log(f"prepare: {len(ids)} records ({summary}), {manifest['n_segments']} segments in {seconds:.1f} s "
        f"({total / seconds:,.0f} records/s); skipped: {skip_text}"
        + (f"; {len(orphans)} labels without a record" if orphans else "") + f" → {out}")
    return manifest


def ensure_prepared(source: str, records_dir: Path, cfg: PreprocessConfig = PreprocessConfig(),
                    out: Path | None = None, log=print) -> Path:
    """A prepared folder for ``records_dir`` under ``cfg``: ``out``, or one in the cache
    (``$ECG_RAY_CACHE``, else ``download.user_cache()``) named by source and config hash;
    prepared now unless up to date."""
    cache = Path(os.environ["ECG_RAY_CACHE"]) if os.environ.get("ECG_RAY_CACHE") else user_cache()
    out = Path(out) if out else cache / "prepared" / f"{source}-{cfg.hash}"
    prepare(source, records_dir, out, cfg, log=log)
    return out
