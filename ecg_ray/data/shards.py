"""A training rank's own share of a split-layout record set, streamed straight from parquet.

Training records that do not fit the object store stream from storage every epoch;
through Ray Data that meant a read planned and launched per epoch and every block moved
through the object store: 0.03-0.12x the materialized rate (results/scale.md). The split
layout (``store.cell_dirs``) makes whole files a unit of the split, so each rank instead
reads its own row groups of the run's cell folders with pyarrow:

- ``RecordFiles``: the files of a record set (and, under a record cap, the record ids
  kept). Small and picklable: the driver hands it to every worker.
- ``RecordFiles.shard(rank, world)``: every ``world``-th row group (a few hundred
  records each), so ranks read disjoint records.
- ``RecordShard.iter_batches``: its row groups in a new seeded order each epoch, as
  pyarrow tables of at most ``batch_size`` records, the next row group read in a
  background thread while this one is used (pyarrow decodes without the GIL).

No Ray here: the worker (``training.feed``) decides when to use it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import DataError

COLUMNS = ("record_id", "label_index", "signal")


@dataclass(frozen=True)
class RecordFiles:
    files: tuple[str, ...]
    record_ids: tuple[str, ...] | None = None  # None: every record of the files
    columns: tuple[str, ...] = COLUMNS

    @classmethod
    def from_dirs(cls, dirs, record_ids=None, columns=COLUMNS) -> "RecordFiles":
        dirs = [Path(d).resolve() for d in dirs]  # workers run in other folders
        files = tuple(str(f) for d in dirs for f in sorted(d.glob("*.parquet")))
        if not files:
            raise DataError(f"no parquet files in {', '.join(map(str, dirs)) or '(no folders)'}")
        return cls(files, tuple(sorted(record_ids)) if record_ids is not None else None, tuple(columns))

    def row_groups(self) -> list[tuple[str, int]]:
        """Every ``(file, row group)`` of the set, in file order."""
        return [(f, g) for f in self.files for g in range(_open(f).num_row_groups)]

    def shard(self, rank: int, world: int, seed: int = 0) -> "RecordShard":
        units = self.row_groups()
        mine = units[rank::world]
        if not mine:
            raise DataError(f"rank {rank} of {world} gets no records: the set has only {len(units)} row groups "
                            f"in {len(self.files)} files ({Path(self.files[0]).parent.parent}); use fewer "
                            "workers or let the data be materialized")
        return RecordShard(self, mine, seed, rank)


class RecordShard:
    """One rank's row groups of a ``RecordFiles`` set (see module docstring)."""

    def __init__(self, files: RecordFiles, units: list[tuple[str, int]], seed: int, rank: int):
        self.files, self.units, self.seed, self.rank = files, units, seed, rank
        self.keep = pa.array(files.record_ids, pa.string()) if files.record_ids is not None else None
        self.epoch = 0
        self._readers: dict[str, pq.ParquetFile] = {}

    def _read(self, unit: tuple[str, int]) -> pa.Table:
        path, group = unit
        if path not in self._readers:
            self._readers[path] = _open(path)
        table = self._readers[path].read_row_group(group, columns=list(self.files.columns))
        if self.keep is not None:
            table = table.filter(pc.is_in(table.column("record_id"), value_set=self.keep))
        return table

    def iter_batches(self, batch_size: int = 1024, prefetch: bool = True):
        """This epoch's records as pyarrow tables of at most ``batch_size`` rows; the
        row-group order is drawn from (seed, epoch, rank), so a resumed run reads as
        the first did. Set ``epoch`` before each epoch."""
        order = np.random.default_rng([self.seed, self.epoch, self.rank]).permutation(len(self.units))
        units = [self.units[i] for i in order]
        for table in self._prefetched(units) if prefetch else map(self._read, units):
            for start in range(0, table.num_rows, batch_size):
                yield table.slice(start, batch_size)

    def _prefetched(self, units: list[tuple[str, int]]):
        """``map(self._read, units)``, the next row group read in a background thread while this one is used."""
        with ThreadPoolExecutor(1, thread_name_prefix="record-shard") as pool:
            pending = pool.submit(self._read, units[0])
            for unit in units[1:]:
                table, pending = pending.result(), pool.submit(self._read, unit)
                yield table
            yield pending.result()


def _open(path: str) -> pq.ParquetFile:
    if not Path(path).is_file():
        raise DataError(f"{path}: prepared records not found on this node: on a multi-node cluster the "
                        "prepared folder must be on storage every node mounts at the same path")
    return pq.ParquetFile(path)
