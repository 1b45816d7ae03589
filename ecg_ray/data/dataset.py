"""``PreparedDataset``: the handle of a prepared folder (``ecg-ray prepare --out``).

One object answers what every later stage asks of the prepared data: its manifest (read
once, through ``store.read_manifest``), the record index, the preprocessing config's hash,
the saved splits, and which records a run trains and validates on (``select``: the saved
split or a held-out fold, optionally a label-stratified subset for small runs). No Ray.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sklearn.model_selection import train_test_split

from . import store
from .errors import DataError
from .splits import fold_records


def subsample(ids: list[str], labels: dict[str, str], n: int, seed: int = 0) -> list[str]:
    """A label-stratified subset of ``n`` record ids (all of them if n >= len)."""
    if n >= len(ids):
        return list(ids)
    keep, _ = train_test_split(list(ids), train_size=n, stratify=[labels[r] for r in ids], random_state=seed)
    return sorted(keep)


class PreparedDataset:
    """A prepared folder: ``manifest``, ``index``, ``config_hash``, ``splits``;
    ``split(name)`` and ``select(val_fold, max_records)`` give record ids."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"PreparedDataset({str(self.path)!r})"

    @functools.cached_property
    def manifest(self) -> dict:
        return store.read_manifest(self.path)

    @functools.cached_property
    def index(self) -> dict:
        """``store.load_index``: one entry per record (no signal), in file order."""
        return store.load_index(self.path)

    @property
    def config_hash(self) -> str:
        return self.manifest["config_hash"]

    @property
    def splits(self) -> dict:
        return self.manifest["splits"]

    def labels(self) -> dict[str, str]:
        return dict(zip(self.index["record_id"], self.index["label"]))

    def split(self, name: str) -> list[str]:
        """Record ids of the saved ``train``, ``val`` or ``test`` split."""
        splits = self.splits["split"]
        if name not in splits:
            raise DataError(f"{self.path}: no split {name!r} (have {', '.join(splits)})")
        return list(splits[name])

    def select(self, val_fold: int | None = None, max_records: int | None = None,
               seed: int = 0) -> tuple[list[str], list[str]]:
        """``(train ids, val ids)`` of a run: the saved train/val split, or fold
        ``val_fold`` held out; ``max_records`` caps the training records (and
        validation at ``max(max_records // 4, 40)``) by stratified subsampling."""
        train_ids, val_ids = fold_records(self.splits, val_fold)
        if max_records:
            labels = self.labels()
            train_ids = subsample(train_ids, labels, max_records, seed)
            val_ids = subsample(val_ids, labels, max(max_records // 4, 40), seed)
        return train_ids, val_ids
