"""The training data of a prepared dataset in memory, for the benchmarks' reference paths: whole records
(``TrainRecords``, read by ``crop_batches`` through ``InMemoryRecords`` as from a Ray shard: the bare training
loop, the feed's ceiling and DataLoader rows), chosen as a training run chooses them (no Ray needed:
``data.dataset.PreparedDataset.select``, the saved train split, optionally a label-stratified cap) so that bare
and Ray paths see the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import CLASSES
from ..data import store
from ..data.dataset import PreparedDataset


class InMemoryRecords:
    """Records in memory with a Ray shard's ``iter_batches``: zero-copy slices of one pyarrow table, in stored order,
    or with ``shuffle_seed`` in a new random record order at every pass (the shuffle bench's full-shuffle arm)."""

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


def load_training_records(prepared: Path, max_records: int | None = None) -> TrainRecords:
    """The training split's whole records (capped like a run's ``max_records``) in memory."""
    ids, _ = PreparedDataset(prepared).select(None, max_records)
    table = store.load_records(prepared, ids)
    if table.num_rows == 0:
        raise ValueError(f"{prepared}: no records for the {len(ids)} selected training ids")
    signals = [np.array(x) for x in store.record_signals(table)]
    return TrainRecords(signals, table.column("label_index").to_numpy().astype(np.int64),
                        table.column("record_id").to_pylist(),
                        "the training split as a run selects it (data.dataset.PreparedDataset.select)",
                        store.preprocess_config(prepared).segment_length)
