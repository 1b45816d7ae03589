"""Recording-level, stratified, seeded splits — checked on the real 2017 labels."""

from __future__ import annotations

from collections import Counter

import pytest

from ecg_ray import CLASSES
from ecg_ray.data.splits import fold_records, make_splits

PARTS = ("train", "val", "test")


@pytest.fixture(scope="module")
def real(cinc_labels):
    ids = sorted(cinc_labels)
    labels = [cinc_labels[r] for r in ids]
    return ids, labels, make_splits(ids, labels, seed=42)


def _proportions(ids, label_of):
    counts = Counter(label_of[r] for r in ids)
    return {c: counts.get(c, 0) / len(ids) for c in CLASSES}


def test_train_val_test_disjoint_and_complete(real):
    ids, _, splits = real
    parts = [set(splits["split"][p]) for p in PARTS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not parts[i] & parts[j], f"{PARTS[i]} and {PARTS[j]} share records"
    assert set().union(*parts) == set(ids)
    assert sum(len(p) for p in parts) == len(ids)


def test_train_val_test_sizes(real):
    ids, _, splits = real
    n = len(ids)
    assert len(splits["split"]["test"]) == pytest.approx(0.15 * n, abs=2)
    assert len(splits["split"]["val"]) == pytest.approx(0.15 * n, abs=2)


def test_every_record_in_exactly_one_fold(real):
    ids, _, splits = real
    folds = splits["folds"]
    assert len(folds) == 5
    seen = Counter(r for fold in folds for r in fold)
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1 * len(CLASSES)


def test_class_proportions_within_2_points(real, cinc_labels):
    ids, _, splits = real
    overall = _proportions(ids, cinc_labels)
    parts = {p: splits["split"][p] for p in PARTS} | {f"fold{i}": f for i, f in enumerate(splits["folds"])}
    for name, part in parts.items():
        props = _proportions(part, cinc_labels)
        for c in CLASSES:
            assert abs(props[c] - overall[c]) <= 0.02, f"{name}: {c} {props[c]:.3f} vs {overall[c]:.3f}"
    assert splits["stratified"] is True


def test_seeded(real):
    ids, labels, splits = real
    assert make_splits(ids, labels, seed=42) == splits
    other = make_splits(ids, labels, seed=7)
    assert other["split"]["test"] != splits["split"]["test"]
    assert other["folds"] != splits["folds"]
    assert other["seed"] == 7


def test_fold_records(real):
    ids, _, splits = real
    train, val = fold_records(splits)
    assert (train, val) == (splits["split"]["train"], splits["split"]["val"])
    for k, fold in enumerate(splits["folds"]):
        train, val = fold_records(splits, k)
        assert val == fold
        assert not set(train) & set(val)
        assert set(train) | set(val) == set(ids)
    for bad in (-1, 5):
        with pytest.raises(ValueError, match="val_fold"):
            fold_records(splits, bad)


def test_grouped_splits_keep_groups_together():
    # 30 "patients", 10 windows each, one rhythm per patient (cycling N, A, O, ~)
    ids, labels, groups = [], [], []
    for p in range(30):
        for w in range(10):
            ids.append(f"p{p:02d}_w{w}")
            labels.append(CLASSES[p % 4])
            groups.append(f"p{p:02d}")
    group_of = dict(zip(ids, groups))
    splits = make_splits(ids, labels, seed=1, groups=groups, k=5)
    part_groups = [{group_of[r] for r in splits["split"][p]} for p in PARTS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not part_groups[i] & part_groups[j]
    assert sum(len(splits["split"][p]) for p in PARTS) == len(ids)
    fold_groups = [{group_of[r] for r in fold} for fold in splits["folds"]]
    assert sum(len(g) for g in fold_groups) == 30  # each patient in one fold only
    assert Counter(r for f in splits["folds"] for r in f) == Counter(ids)


def test_small_input_still_splits():
    # 12 records, 3 per class: too few to stratify a 15 % test part (< 4 records)
    ids = [f"r{i:02d}" for i in range(12)]
    labels = [CLASSES[i % 4] for i in range(12)]
    splits = make_splits(ids, labels, seed=0)
    assert sorted(r for p in PARTS for r in splits["split"][p]) == ids
    assert all(splits["split"][p] for p in PARTS)
    assert sorted(r for f in splits["folds"] for r in f) == ids


@pytest.mark.parametrize("kwargs, match", [
    ({"val_frac": 0.0}, "fractions"),
    ({"val_frac": 0.5, "test_frac": 0.5}, "fractions"),
    ({"k": 20}, "at least"),
])
def test_invalid_inputs(kwargs, match):
    ids = [f"r{i}" for i in range(10)]
    labels = ["N", "A"] * 5
    with pytest.raises(ValueError, match=match):
        make_splits(ids, labels, **kwargs)


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError, match="unique"):
        make_splits(["a", "a", "b", "c", "d", "e"], ["N"] * 6)
