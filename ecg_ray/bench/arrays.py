"""The training data of a prepared dataset in memory, for the benchmarks'
reference paths: whole records (``TrainRecords``, read by ``crop_batches`` through
``InMemoryRecords`` as from a Ray shard: the bare training loop, the feed's
ceiling and DataLoader rows).

Records are chosen as a training run chooses them (``data.dataset.PreparedDataset.select``:
the saved train split, optionally a label-stratified cap) so that bare and Ray
paths see the same data. Without Ray installed (a GPU box with only torch,
numpy and pyarrow) a numpy stratified cap stands in, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import CLASSES
from ..data import store
from .machine import ray_available


def _numpy_cap(ids: list[str], labels: dict[str, str], n: int, seed: int) -> list[str]:
    """A label-stratified subset of about ``n`` ids (at least one per label)."""
    rng = np.random.default_rng(seed)
    keep = []
    by_label: dict[str, list[str]] = {}
    for r in ids:
        by_label.setdefault(labels[r], []).append(r)
    for members in by_label.values():
        k = max(1, round(n * len(members) / len(ids)))
        keep += list(rng.choice(members, size=min(k, len(members)), replace=False))
    return sorted(keep)


def training_records(prepared: Path, max_records: int | None = None, seed: int = 0) -> tuple[list[str], str]:
    """``(record ids, how chosen)`` of the training split, capped like a run's ``max_records``."""
    if ray_available():
        from ..data.dataset import PreparedDataset

        train_ids, _ = PreparedDataset(prepared).select(None, max_records, seed)
        return train_ids, "the training split as a run selects it (data.dataset.select_records)"
    train_ids = list(store.read_manifest(prepared)["splits"]["split"]["train"])
    if not max_records or max_records >= len(train_ids):
        return train_ids, "the training split"
    index = store.load_index(prepared)
    capped = _numpy_cap(train_ids, dict(zip(index["record_id"], index["label"])), max_records, seed)
    return capped, "the training split, numpy stratified cap (Ray not installed: not a run's exact subset)"


class InMemoryRecords:
    """Records in memory with the ``iter_batches`` a Ray shard offers: zero-copy
    slices of one pyarrow table, in stored order, or with ``shuffle_seed`` in a new
    random record order at every pass (the shuffle bench's full-shuffle arm)."""

    def __init__(self, signals: list[np.ndarray], labels: np.ndarray, shuffle_seed: int | None = None):
        import pyarrow as pa

        self.table = pa.table({"label_index": pa.array(np.asarray(labels)),
                               "signal": pa.array(list(signals), pa.list_(pa.float32()))})
        self.rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)

    def iter_batches(self, batch_size, batch_format="pyarrow", prefetch_batches=0):
        assert batch_format == "pyarrow", batch_format
        table = self.table if self.rng is None else self.table.take(self.rng.permutation(self.table.num_rows))
        for i in range(0, table.num_rows, batch_size):
            yield table.slice(i, batch_size)


@dataclass
class TrainRecords:
    signals: list[np.ndarray]  # float32, one whole record each
    labels: np.ndarray  # int64 (n,)
    records: list[str]
    selection: str
    segment_length: int  # the model's input window, from the prepared dataset's manifest

    @property
    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(CLASSES)).tolist()

    def shard(self, shuffle_seed: int | None = None) -> InMemoryRecords:
        return InMemoryRecords(self.signals, self.labels, shuffle_seed)

    def describe(self) -> str:
        mib = sum(map(len, self.signals)) * 4 / 2**20
        return f"{len(self.records)} training records ({mib:.0f} MiB); {self.selection}"


def load_training_records(prepared: Path, max_records: int | None = None, seed: int = 0) -> TrainRecords:
    """The training split's whole records (capped like a run's ``max_records``) in memory."""
    ids, selection = training_records(prepared, max_records, seed)
    table = store.load_records(prepared, ids)
    if table.num_rows == 0:
        raise ValueError(f"{prepared}: no records for the {len(ids)} selected training ids")
    signals = [np.array(x) for x in store.record_signals(table)]
    return TrainRecords(signals, table.column("label_index").to_numpy().astype(np.int64),
                        table.column("record_id").to_pylist(), selection,
                        store.preprocess_config(prepared).segment_length)
