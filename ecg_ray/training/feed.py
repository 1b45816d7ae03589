"""The data feed: prepared records (parquet) → Ray Datasets → torch batches on a worker.

Driver side (``load_datasets``): the run's train/val *whole records*, when they fit,
are read once by the driver and put in the object store from there (``held_by_driver``),
then reused by every epoch and, in a sweep, by every trial. When they do not fit they
stream from parquet each epoch (flat layout: ``ray.data.read_parquet`` filtered by a
pyarrow expression). With the split layout (``store.cell_dirs``) each side reads only its
own cell folders, and streamed records skip Ray Data: ``shards.RecordFiles`` sets go
through ``trainer_datasets`` to the workers, each training rank reads its own row groups
(``train_shard``), every rank the validation records (``val_records``). Ray Data's
per-epoch read ran at 0.03-0.12x the materialized rate (results/scale.md), and its read
tasks wait for a CPU the workers hold (with every CPU booked, a streamed read never starts).

Worker side:
- ``crop_batches`` streams the worker's shard of training records and draws
  ``crops_per_record`` fresh random windows from each one every epoch
  (``preprocess.crop_offsets``/``cut_windows``, seeded by (seed, epoch, rank): reproducible),
  mixes them in a crop shuffle buffer that spans about ``shuffle_buffer`` records (records
  are read in place, only crops are copied) and yields exactly ``steps`` equal-size
  ``(x, y)`` batches — every rank the same number, so DDP never waits on a rank that ran
  out or skipped. ``imbalance=sampler`` draws each chunk's records with probability
  proportional to their class weight (same count).
- ``window_batches`` cuts validation records into the inference windows
  (``preprocess.segment``, the same cut ``evaluate`` and ``predict`` use); each rank takes
  every ``world``-th record of the unsplit validation set, so no record is dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from .. import CLASSES
from ..data import store
from ..data.dataset import PreparedDataset
from ..data.preprocess import crop_offsets, cut_windows, n_windows, segment, window_starts
from ..data.shards import COLUMNS, RecordFiles, RecordShard

#: Materialize when the selected records take less than this share of the object store.
MATERIALIZE_FRACTION = 0.4
#: Training records per chunk read from the shard (their crops go into the shuffle buffer).
RECORDS_PER_CHUNK = 1024


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
    ids = index["record_id"].astype(str)  # unicode, not object: np.isin would compare every pair (n x m)
    in_train = np.isin(ids, np.asarray(train_ids, dtype=str))
    in_val = np.isin(ids, np.asarray(val_ids, dtype=str))
    class_counts = np.bincount(index["label_index"][in_train], minlength=len(CLASSES)).tolist()
    n_bytes = int(index["n_samples"][in_train | in_val].sum() * 4 + (in_train | in_val).sum() * 64)
    if materialize is None:
        materialize = n_bytes < MATERIALIZE_FRACTION * ray.available_resources().get("object_store_memory", 0)

    fixed = sum(n_windows(int(n), length, length) for n in index["n_samples"][in_train])
    info = FeedInfo(len(train_ids), len(val_ids), int(index["n_windows"][in_train].sum()),
                    int(index["n_windows"][in_val].sum()), class_counts, length, materialize, fixed)
    cells = store.cell_dirs(prepared, data.manifest, val_fold)
    if materialize:
        files = ([store.record_files(prepared)] * 2 if cells is None else
                 [RecordFiles.from_dirs(side).files for side in cells])
        return held_by_driver(files[0], train_ids), held_by_driver(files[1], val_ids), info
    if cells is not None:  # streamed, split layout: the workers read with pyarrow (module docstring)
        return tuple(RecordFiles.from_dirs(d, ids if max_records else None)
                     for d, ids in ((cells[0], train_ids), (cells[1], val_ids))) + (info,)

    ds = ray.data.read_parquet(str(Path(prepared) / store.RECORDS)).select_columns(list(COLUMNS))
    return (ds.filter(expr=col("record_id").is_in(list(train_ids))),
            ds.filter(expr=col("record_id").is_in(list(val_ids))), info)


def held_by_driver(files: list[Path], ids):
    """The records ``ids`` of parquet ``files`` (in file order) as a materialized Ray Dataset
    whose blocks this process read with pyarrow and put in the object store itself: owned and
    stored on the driver's node (the head, for a job), so a lost worker node loses none. Blocks
    that Ray Data tasks materialized live on the worker nodes that ran them; one lost with its
    node must be rebuilt by a task that needs a CPU, which DDP workers waiting for it may hold: a hang."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import ray

    table = pq.read_table([str(f) for f in files], columns=list(COLUMNS),
                          filters=pc.field("record_id").isin(list(ids)))
    # blocks of the size the workers read (``record_chunks``), so each batch is one zero-copy block
    chunks = [table.slice(i, RECORDS_PER_CHUNK) for i in range(0, table.num_rows, RECORDS_PER_CHUNK)]
    return ray.data.from_arrow(chunks or [table])


def steps_per_epoch(train_records: int, world: int, crops_per_record: int, batch_size: int) -> int:
    """Optimizer steps every rank takes per epoch (full batches only, equal on all ranks)."""
    return max((train_records // world) * crops_per_record // batch_size, 1)


def chunk_records(batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(samples, start of each record in them, record lengths, labels)`` of a chunk
    of records as ``iter_batches(batch_format="pyarrow")`` gives it, read in place
    (``store.signal_buffer``: no per-record objects)."""
    flat, offsets = store.signal_buffer(batch.column("signal"))
    return flat, offsets[:-1], np.diff(offsets), batch.column("label_index").to_numpy().astype(np.int64)


class CropShuffleBuffer:
    """Crops from the last chunks of records, handed out as batches drawn at random:
    crops of one record land in different batches and neighbouring records mix.
    Only crops are copied (never whole records): one copy in, one out."""

    def __init__(self, length: int, capacity: int, rng: np.random.Generator):
        self.x = np.empty((0, length), dtype=np.float32)
        self.y = np.empty(0, dtype=np.int64)
        self.n, self.capacity, self.rng = 0, capacity, rng

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        if self.n + len(y) > len(self.y):  # grow (amortized: at most a few times per run)
            spare = max(self.n + len(y), 2 * len(self.y)) - self.n
            self.x = np.concatenate([self.x[:self.n], np.empty((spare, self.x.shape[1]), dtype=np.float32)])
            self.y = np.concatenate([self.y[:self.n], np.empty(spare, dtype=np.int64)])
        self.x[self.n:self.n + len(y)] = x
        self.y[self.n:self.n + len(y)] = y
        self.n += len(y)

    def ready(self, batch_size: int, draining: bool) -> bool:
        return self.n >= batch_size and (draining or self.n >= self.capacity + batch_size)

    def take(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        n, take = self.n, self.rng.choice(self.n, batch_size, replace=False)
        x, y = self.x[take], self.y[take]
        holes = take[take < n - batch_size]  # refill them from the tail, then drop the tail
        tail = np.setdiff1d(np.arange(n - batch_size, n), take, assume_unique=True)
        self.x[holes], self.y[holes] = self.x[tail], self.y[tail]
        self.n -= batch_size
        return x, y


def crop_batches(shard, *, length: int, crops_per_record: int, batch_size: int, steps: int, seed: int,
                 epoch: int, rank: int, sample_rates: np.ndarray | None = None, shuffle_buffer: int = 1024,
                 device="cpu", mode: str = "random", prefetch: bool = False,
                 records_per_chunk: int = RECORDS_PER_CHUNK):
    """Yield exactly ``steps`` batches ``(x (B, L) float32, y (B,) int64)`` of fresh
    random crops from the records of ``shard``, through a ``CropShuffleBuffer`` (see
    module docstring). ``mode="fixed"``: every record's non-overlapping windows
    instead, the same each epoch (the old recipe, kept to measure what random crops
    add). ``prefetch``: read the next chunk in Ray's background thread — for data
    streamed from storage; for records already in the object store the thread only
    contends for the GIL (measured 2-4x slower)."""
    rng = np.random.default_rng([seed, epoch, rank])
    pool = CropShuffleBuffer(length, max(shuffle_buffer, 1) * crops_per_record, rng)

    def batches():  # endless: a shard shorter than ``steps`` batches is read again (same epoch, new crops)
        while True:
            read = 0
            for batch in record_chunks(shard, epoch, prefetch, records_per_chunk):
                flat, starts, lengths, labels = chunk_records(batch)
                read += len(labels)
                pick = np.arange(len(labels))
                if sample_rates is not None:  # class-balanced: records drawn ∝ their class weight
                    weight = sample_rates[labels]
                    pick = rng.choice(len(labels), size=len(labels), p=weight / weight.sum())
                if mode == "fixed":
                    cuts = [window_starts(int(lengths[i]), length, length) for i in pick]
                    rec, offsets = np.repeat(pick, [len(c) for c in cuts]), np.concatenate(cuts)
                else:
                    rec, offsets = crop_offsets(lengths[pick], length, crops_per_record, rng)
                    rec = pick[rec]
                pool.add(cut_windows(flat, starts, lengths, rec, offsets, length), labels[rec])
                while pool.ready(batch_size, draining=False):
                    yield pool.take(batch_size)
            if not read:
                raise ValueError(f"rank {rank}: its shard of training records is empty (fewer records than workers?)")
            while pool.ready(batch_size, draining=True):  # end of the shard
                yield pool.take(batch_size)

    # islice stops without resuming ``batches``: nothing is read or drawn past the last step
    for x, y in islice(batches(), steps):
        yield _to_device(x, device), _to_device(y, device)


def record_chunks(shard, epoch: int, prefetch: bool, size: int = RECORDS_PER_CHUNK):
    """A shard's records in chunks of at most ``size`` (pyarrow tables): a Ray Data
    shard, or a rank's own parquet row groups (``shards.RecordShard``)."""
    if isinstance(shard, RecordShard):
        shard.epoch = epoch
        return shard.iter_batches(size, prefetch=prefetch)
    return shard.iter_batches(batch_size=size, batch_format="pyarrow", prefetch_batches=int(prefetch))


def train_shard(loop_config: dict, rank: int, world: int, seed: int):
    """The worker's training records: its own row groups when the driver streamed the
    split layout (``trainer_datasets``), else Ray Train's shard of the ``train`` dataset."""
    return _records(loop_config, "train", rank, world, seed)


def val_records(loop_config: dict):
    """The validation records every rank reads (``window_batches`` takes its share)."""
    return _records(loop_config, "val", 0, 1)  # files: the same order on every rank


def _records(loop_config: dict, name: str, rank: int, world: int, seed: int = 0):
    files = loop_config.get(f"{name}_files")
    if files is not None:
        return files.shard(rank, world, seed)
    import ray.train

    return ray.train.get_dataset_shard(name)


def trainer_datasets(train, val) -> tuple[dict, dict]:
    """``(datasets, loop-config entries)`` of a TorchTrainer for ``load_datasets``' output:
    Ray Datasets go to Train's ``datasets``, ``RecordFiles`` sets through the loop config."""
    parts = {"train": train, "val": val}
    return ({name: part for name, part in parts.items() if not isinstance(part, RecordFiles)},
            {f"{name}_files": part for name, part in parts.items() if isinstance(part, RecordFiles)})


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
    for batch in record_chunks(dataset, 0, False, records_per_batch):  # pyarrow, from either source
        signals = store.record_signals(batch)
        mine = [i for i in range(len(signals)) if (seen + i) % world == rank]
        seen += len(signals)
        if not mine:
            continue
        windows = [segment(signals[i], length, hop, pad=True)[0] for i in mine]
        codes = np.repeat(np.arange(len(mine)), [len(w) for w in windows])
        yield (batch.column("record_id").to_numpy(zero_copy_only=False)[mine],
               batch.column("label_index").to_numpy().astype(np.int64)[mine],
               np.concatenate(windows).astype(np.float32, copy=False), codes)
