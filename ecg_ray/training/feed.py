"""The data feed: prepared records (parquet) → Ray Datasets → torch batches on a worker.

Driver side (``load_datasets``): the prepared *whole records* are read once with
``ray.data.read_parquet``, filtered to the run's train/val records by a pyarrow
expression, and materialized in the object store when they fit (then reused by
every epoch and, in a sweep, by every trial). When they do not fit they stream
from parquet each epoch; a folder prepared with the split layout
(``store.cell_dirs``) is then read folder by folder, only the run's own records
and no filter, instead of every file filtered by record id.

Worker side:
- ``crop_batches`` streams the worker's shard of training records and draws
  ``crops_per_record`` fresh random windows from each one every epoch
  (``preprocess.random_crops``, seeded by (seed, epoch, rank): reproducible),
  shuffles the crops of a chunk of records and yields exactly ``steps``
  equal-size ``(x, y)`` batches — every rank the same number, so DDP never waits
  on a rank that ran out or skipped. ``imbalance=sampler`` draws each chunk's
  records with probability proportional to their class weight (same count).
- ``window_batches`` cuts validation records into the inference windows
  (``preprocess.segment``, the same cut ``evaluate`` and ``predict`` use); each
  rank takes every ``world``-th record of the unsplit validation set, so no
  record is dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import CLASSES
from ..data import store
from ..data.dataset import PreparedDataset, select_records  # noqa: F401  (select_records: re-exported)
from ..data.preprocess import n_windows, random_crops, segment

#: Materialize when the selected records take less than this share of the object store.
MATERIALIZE_FRACTION = 0.4
COLUMNS = ["record_id", "label_index", "signal"]
#: Training records per chunk: the crops of one chunk are shuffled together.
RECORDS_PER_CHUNK = 256


@dataclass
class FeedInfo:
    train_records: int
    val_records: int
    train_segments: int  # inference windows of the training records (for reference)
    val_segments: int  # inference windows of the validation records
    class_counts: list[int]  # training records per class, in class order
    segment_length: int
    materialized: bool
    train_fixed_windows: int = 0  # non-overlapping windows of the training records (crop_mode=fixed)

    def to_dict(self) -> dict:
        return asdict(self)


def load_datasets(prepared: Path, val_fold: int | None = None, materialize: bool | None = None,
                  max_records: int | None = None):
    """``(train_ds, val_ds, FeedInfo)`` for a prepared folder; needs ``ray.init``.

    ``val_fold=None`` uses the saved train/val split; an int holds that fold out.
    """
    import ray
    from ray.data.expressions import col

    data = PreparedDataset(prepared)
    index = data.index
    train_ids, val_ids = data.select(val_fold, max_records)
    length = data.manifest["preprocess"]["segment_length"]
    in_train = np.isin(index["record_id"], train_ids)
    in_val = np.isin(index["record_id"], val_ids)
    class_counts = np.bincount(index["label_index"][in_train], minlength=len(CLASSES)).tolist()
    n_bytes = int(index["n_samples"][in_train | in_val].sum() * 4 + (in_train | in_val).sum() * 64)
    if materialize is None:
        materialize = n_bytes < MATERIALIZE_FRACTION * ray.available_resources().get("object_store_memory", 0)

    fixed = sum(n_windows(int(n), length, length) for n in index["n_samples"][in_train])
    info = FeedInfo(len(train_ids), len(val_ids), int(index["n_windows"][in_train].sum()),
                    int(index["n_windows"][in_val].sum()), class_counts, length, materialize, fixed)
    cells = store.cell_dirs(prepared, store.read_manifest(prepared), val_fold)
    if cells is not None:  # split layout: each side reads its own folders, filtered only under a record cap
        def read(dirs, ids):
            part = ray.data.read_parquet([str(d) for d in dirs], columns=COLUMNS)
            if max_records:
                part = part.filter(expr=col("record_id").is_in(list(ids)))
            return part.materialize() if materialize else part

        return read(cells[0], train_ids), read(cells[1], val_ids), info

    ds = ray.data.read_parquet(str(Path(prepared) / store.RECORDS), columns=COLUMNS)
    ds = ds.filter(expr=col("record_id").is_in(list(train_ids) + list(val_ids)))
    if materialize:
        ds = ds.materialize()

    def select(ids):
        part = ds.filter(expr=col("record_id").is_in(list(ids)))
        return part.materialize() if materialize else part

    return select(train_ids), select(val_ids), info


def steps_per_epoch(train_records: int, world: int, crops_per_record: int, batch_size: int) -> int:
    """Optimizer steps every rank takes per epoch (full batches only, equal on all ranks)."""
    return max((train_records // world) * crops_per_record // batch_size, 1)


def _signals(column: np.ndarray) -> list[np.ndarray]:
    """A batch's variable-length ``signal`` column as a list of float32 arrays
    (float32 bytes in the split layout: read in place)."""
    if column.dtype != object and column.ndim == 2:
        return list(column.astype(np.float32, copy=False))
    if len(column) and isinstance(column[0], bytes):
        return [np.frombuffer(x, dtype=np.float32) for x in column]
    return [np.asarray(x, dtype=np.float32) for x in column]


def crop_batches(shard, *, length: int, crops_per_record: int, batch_size: int, steps: int, seed: int,
                 epoch: int, rank: int, sample_rates: np.ndarray | None = None, shuffle_buffer: int = 1024,
                 device="cpu", mode: str = "random"):
    """Yield exactly ``steps`` batches ``(x (B, L) float32, y (B,) int64)`` of
    fresh random crops from the records of ``shard`` (see module docstring).
    ``mode="fixed"``: every record's non-overlapping windows instead, the same each
    epoch (the old recipe, kept to measure what random crops add)."""
    rng = np.random.default_rng([seed, epoch, rank])
    xs, ys, buffered, done = [], [], 0, 0
    while done < steps:  # a shard shorter than ``steps`` batches is read again (same epoch, new crops)
        for batch in shard.iter_batches(batch_size=RECORDS_PER_CHUNK, batch_format="numpy",
                                        local_shuffle_buffer_size=shuffle_buffer or None,
                                        local_shuffle_seed=int(rng.integers(2**31))):
            signals, labels = _signals(batch["signal"]), batch["label_index"].astype(np.int64)
            pick = np.arange(len(labels))
            if sample_rates is not None:  # class-balanced: records drawn ∝ their class weight
                weight = sample_rates[labels]
                pick = rng.choice(len(labels), size=len(labels), p=weight / weight.sum())
            if mode == "fixed":
                cut = [segment(signals[i], length, length, pad=True)[0] for i in pick]
                crops, y = np.concatenate(cut).astype(np.float32), np.repeat(labels[pick], [len(c) for c in cut])
            else:
                crops = np.concatenate([random_crops(signals[i], length, crops_per_record, rng) for i in pick])
                y = np.repeat(labels[pick], crops_per_record)
            order = rng.permutation(len(y))
            xs.append(crops[order])
            ys.append(y[order])
            buffered += len(y)
            while buffered >= batch_size and done < steps:
                x_all, y_all = np.concatenate(xs), np.concatenate(ys)
                xs, ys = [x_all[batch_size:]], [y_all[batch_size:]]
                buffered -= batch_size
                done += 1
                yield _to_device(x_all[:batch_size], device), _to_device(y_all[:batch_size], device)
            if done >= steps:
                return


def _to_device(array: np.ndarray, device) -> torch.Tensor:
    """Host array → tensor on ``device``; through pinned memory (asynchronous copy) for CUDA.
    Runs in the training loop's own thread, not in Ray's prefetch thread."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def window_batches(dataset, *, length: int, hop: int, rank: int = 0, world: int = 1, records_per_batch: int = 64):
    """Yield ``(record ids, labels, windows (n, L) float32, record of each window)``
    per batch of records; this rank's share is every ``world``-th record."""
    seen = 0
    for batch in dataset.iter_batches(batch_size=records_per_batch, batch_format="numpy"):
        signals = _signals(batch["signal"])
        mine = [i for i in range(len(signals)) if (seen + i) % world == rank]
        seen += len(signals)
        if not mine:
            continue
        windows = [segment(signals[i], length, hop, pad=True)[0] for i in mine]
        codes = np.repeat(np.arange(len(mine)), [len(w) for w in windows])
        yield (np.asarray(batch["record_id"])[mine], batch["label_index"].astype(np.int64)[mine],
               np.concatenate(windows).astype(np.float32, copy=False), codes)
