"""The data feed: prepared parquet → Ray Datasets → torch batches on a worker.

Driver side (``load_datasets``): the prepared segments are read once with
``ray.data.read_parquet``, filtered to the run's train/val records by a pyarrow
expression, and materialized in the object store when they fit (then reused by
every epoch and, in a sweep, by every trial). Worker side (``TrainCollate``):
the collate function of ``iter_torch_batches`` turns a numpy batch into
``(x, y)`` tensors and, for ``imbalance=sampler``, resamples it class-balanced,
deterministically per (seed, epoch, batch number).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn
from sklearn.model_selection import train_test_split

from .. import CLASSES
from ..data import store
from ..data.splits import fold_records

#: Materialize when the selected segments take less than this share of the object store.
MATERIALIZE_FRACTION = 0.4
COLUMNS = ["record_id", "label_index", "signal"]


@dataclass
class FeedInfo:
    train_records: int
    val_records: int
    train_segments: int
    val_segments: int
    class_counts: list[int]  # training segments per class, in class order
    segment_length: int
    materialized: bool

    def to_dict(self) -> dict:
        return asdict(self)


def subsample(ids: list[str], labels: dict[str, str], n: int, seed: int = 0) -> list[str]:
    """A label-stratified subset of ``n`` record ids (all of them if n >= len)."""
    if n >= len(ids):
        return list(ids)
    strat = [labels[r] for r in ids]
    keep, _ = train_test_split(list(ids), train_size=n, stratify=strat, random_state=seed)
    return sorted(keep)


def select_records(prepared: Path, val_fold: int | None = None, max_records: int | None = None,
                   seed: int = 0, index: dict | None = None) -> tuple[list[str], list[str], dict]:
    """``(train ids, val ids, manifest)`` for a run; ``max_records`` caps the
    training records (and validation at a quarter of it) for small runs.
    ``index`` is ``store.load_index(prepared)`` when the caller has it already."""
    manifest = store.read_manifest(prepared)
    train_ids, val_ids = fold_records(manifest["splits"], val_fold)
    if max_records:
        index = index if index is not None else store.load_index(prepared)
        labels = dict(zip(index["record_id"], index["label"]))
        train_ids = subsample(train_ids, labels, max_records, seed)
        val_ids = subsample(val_ids, labels, max(max_records // 4, 40), seed)
    return train_ids, val_ids, manifest


def load_datasets(prepared: Path, val_fold: int | None = None, materialize: bool | None = None,
                  max_records: int | None = None):
    """``(train_ds, val_ds, FeedInfo)`` for a prepared folder; needs ``ray.init``.

    ``val_fold=None`` uses the saved train/val split; an int holds that fold out.
    """
    import ray

    index = store.load_index(prepared)
    train_ids, val_ids, manifest = select_records(prepared, val_fold, max_records, index=index)
    length = manifest["preprocess"]["segment_length"]
    in_train = np.isin(index["record_id"], train_ids)
    in_val = np.isin(index["record_id"], val_ids)
    class_counts = np.bincount(index["label_index"][in_train], minlength=len(CLASSES)).tolist()
    n_bytes = int((in_train.sum() + in_val.sum()) * (length * 4 + 48))
    if materialize is None:
        materialize = n_bytes < MATERIALIZE_FRACTION * ray.available_resources().get("object_store_memory", 0)

    from ray.data.expressions import col

    # One parquet read for both parts; the split filters then run on the blocks in memory.
    ds = ray.data.read_parquet(str(Path(prepared) / store.SEGMENTS), columns=COLUMNS)
    ds = ds.filter(expr=col("record_id").is_in(list(train_ids) + list(val_ids)))
    # parquet's fixed-size lists arrive as one array per row; stack them once here, so every
    # later batch is a single (B, L) tensor column instead of B arrays stacked per batch
    ds = ds.map_batches(_stack_signal, batch_format="numpy")
    if materialize:
        ds = ds.materialize()

    def select(ids):
        part = ds.filter(expr=col("record_id").is_in(list(ids)))
        return part.materialize() if materialize else part

    info = FeedInfo(len(train_ids), len(val_ids), int(in_train.sum()), int(in_val.sum()),
                    class_counts, length, materialize)
    return select(train_ids), select(val_ids), info


def _stack_signal(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**batch, "signal": signal_batch(batch["signal"])}


def signal_batch(column: np.ndarray) -> np.ndarray:
    """A batch's ``signal`` column as float32 (B, L), whether Ray handed it over
    as a 2-D array or as an object array of per-row arrays."""
    if column.dtype == object:
        column = np.stack(column)
    return np.ascontiguousarray(column, dtype=np.float32)


class TrainCollate(NumpyBatchCollateFn):
    """numpy batch → ``(x float32 (B, L), y int64 (B,))`` on ``device``.

    With ``sample_rates`` (per class, e.g. ``n / (K * n_c)``), each row is kept
    a Poisson(rate of its class) number of times: class-balanced resampling in
    expectation, fresh every epoch, reproducible from (seed, epoch, batch no.).
    """

    def __init__(self, device, seed: int, epoch: int, sample_rates: np.ndarray | None = None):
        self.device, self.seed, self.epoch = device, seed, epoch
        self.sample_rates = sample_rates
        self.batch_no = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = signal_batch(batch["signal"]), batch["label_index"].astype(np.int64)
        if self.sample_rates is not None:
            rng = np.random.default_rng([self.seed, self.epoch, self.batch_no])
            repeats = rng.poisson(self.sample_rates[y])
            x, y = np.repeat(x, repeats, axis=0), np.repeat(y, repeats)
        self.batch_no += 1
        return torch.as_tensor(x).to(self.device, non_blocking=True), torch.as_tensor(y).to(self.device)
