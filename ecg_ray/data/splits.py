"""Recording-level, label-stratified, seeded splits (scikit-learn).

Two schemes are made at once and saved in the manifest so every trial of a
sweep sees the same records: a train/val/test split (default 70/15/15) and k
folds (default 5) over all records for cross-validation. With ``groups`` (e.g.
the MIT-BIH patient a window came from), whole groups stay on one side.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.model_selection import (
    GroupShuffleSplit, KFold, StratifiedGroupKFold, StratifiedKFold, train_test_split,
)


def _hold_out(idx, labels, groups, size, seed, stratify):
    """``(kept, held out)`` indices from ``idx``, ``size`` of them held out: whole groups
    when ``groups`` is given, else stratified by label when ``stratify`` and possible."""
    if groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        kept, held = next(splitter.split(idx, groups=groups[idx]))
        return idx[kept], idx[held]
    if stratify:
        try:
            return train_test_split(idx, test_size=size, stratify=labels[idx], random_state=seed)
        except ValueError:  # a part too small to hold one record of every class (small inputs)
            pass
    return train_test_split(idx, test_size=size, random_state=seed)


def make_splits(
    record_ids: list[str], labels: list[str], *, seed: int = 42, val_frac: float = 0.15,
    test_frac: float = 0.15, k: int = 5, groups: list[str] | None = None,
) -> dict:
    """``{"seed", "stratified", "split": {"train"|"val"|"test": [ids]}, "folds": [[ids], ...]}``:
    every record lands in exactly one of train/val/test and in exactly one fold."""
    if len(record_ids) != len(labels) or len(set(record_ids)) != len(record_ids):
        raise ValueError("record_ids must be unique and match labels one to one")
    if not 0 < val_frac < 1 or not 0 < test_frac < 1 or val_frac + test_frac >= 1:
        raise ValueError(f"bad split fractions val={val_frac}, test={test_frac}")
    n_groups = len(set(groups)) if groups is not None else len(record_ids)
    if n_groups < max(k, 3):
        raise ValueError(f"need at least {max(k, 3)} records/groups to split, got {n_groups}")
    ids, label_array = np.asarray(record_ids), np.asarray(labels)
    group_array = np.asarray(groups) if groups is not None else None
    smallest_class = min(Counter(labels).values())  # stratified parts need one record of each class
    stratify = smallest_class >= 3
    rest, test = _hold_out(np.arange(len(ids)), label_array, group_array, test_frac, seed, stratify)
    # the rest in input order, for determinism
    train, val = _hold_out(np.sort(rest), label_array, group_array, val_frac / (1 - test_frac), seed, stratify)

    stratified = smallest_class >= k
    kfold = StratifiedGroupKFold if groups is not None else StratifiedKFold if stratified else KFold
    parts = kfold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(record_ids)), labels, groups)
    return {
        "seed": seed,
        "stratified": stratified,
        "split": {name: sorted(ids[part].tolist()) for name, part in (("train", train), ("val", val), ("test", test))},
        "folds": [sorted(ids[held].tolist()) for _, held in parts],
    }


def fold_records(splits: dict, val_fold: int | None = None) -> tuple[list[str], list[str]]:
    """``(train ids, val ids)``: the saved train/val split when ``val_fold`` is
    None, else fold ``val_fold`` held out and all other folds for training."""
    if val_fold is None:
        return splits["split"]["train"], splits["split"]["val"]
    folds = splits["folds"]
    if not 0 <= val_fold < len(folds):
        raise ValueError(f"val_fold must be in 0..{len(folds) - 1}, got {val_fold}")
    train = [r for i, fold in enumerate(folds) if i != val_fold for r in fold]
    return sorted(train), folds[val_fold]
