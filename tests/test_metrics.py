"""Unit tests for ecg_ray.training.metrics (hand-made examples checked by hand and against sklearn)."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from ecg_ray import CLASS_KEYS
from ecg_ray.training.metrics import classification_metrics, confusion, record_probabilities, score_records

# rows = true N, A, O, ~ ; columns = predicted
C = np.array([[50, 3, 5, 2],
              [2, 10, 3, 0],
              [8, 2, 20, 1],
              [1, 0, 2, 4]])


def from_confusion(c):
    """(y_true, one-hot probs) realising confusion matrix ``c``."""
    pairs = [(t, p) for t in range(4) for p in range(4) for _ in range(c[t, p])]
    y_true, y_pred = map(np.array, zip(*pairs))
    return y_true, np.eye(4)[y_pred]


def test_f1_cinc_by_hand_and_sklearn():
    y, probs = from_confusion(C)
    m = classification_metrics(y, probs)
    # F1_k = 2 TP / (truly k (row) + predicted k (column))
    f1_n, f1_a, f1_o, f1_noisy = 100 / (60 + 61), 20 / (15 + 15), 40 / (31 + 30), 8 / (7 + 7)
    assert m["f1_N"] == pytest.approx(f1_n) and m["f1_A"] == pytest.approx(f1_a)
    assert m["f1_O"] == pytest.approx(f1_o) and m["f1_noisy"] == pytest.approx(f1_noisy)
    assert m["f1_cinc"] == pytest.approx((f1_n + f1_a + f1_o) / 3)
    y_pred = probs.argmax(1)
    assert m["f1_cinc"] == pytest.approx(f1_score(y, y_pred, labels=[0, 1, 2], average="macro"))
    assert m["f1_macro"] == pytest.approx(f1_score(y, y_pred, average="macro"))
    assert m["f1_weighted"] == pytest.approx(f1_score(y, y_pred, average="weighted"))
    assert m["accuracy"] == pytest.approx(84 / 113)
    assert confusion(y, y_pred) == C.tolist()


def test_sensitivity_specificity_known_example():
    y, probs = from_confusion(C)
    m = classification_metrics(y, probs, prefix="val_")
    # N: TP 50, FN 10, FP 11, TN = 113 - 60 - 61 + 50 = 42
    assert m["val_sens_N"] == pytest.approx(50 / 60) and m["val_spec_N"] == pytest.approx(42 / 53)
    # ~: TP 4, FN 3, FP 3, TN = 113 - 7 - 7 + 4 = 103
    assert m["val_sens_noisy"] == pytest.approx(4 / 7) and m["val_spec_noisy"] == pytest.approx(103 / 106)
    assert set(m) == {f"val_{k}" for k in ["f1_cinc", "f1_macro", "f1_weighted", "accuracy", "auroc_macro"]} | {
        f"val_{m_}_{k}" for m_ in ("f1", "auroc", "sens", "spec", "ppv") for k in CLASS_KEYS}
    # PPV = TP / predicted-as-class: N predicted 61 times, 50 right; ~ predicted 7 times, 4 right
    assert m["val_ppv_N"] == pytest.approx(50 / 61) and m["val_ppv_noisy"] == pytest.approx(4 / 7)
    assert all(isinstance(v, float) for v in m.values())


def test_auroc_matches_sklearn_ovr_and_survives_absent_class():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200) + 0.3 * np.eye(4)[y]
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(y, probs)
    assert m["auroc_macro"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", labels=[0, 1, 2, 3]))
    present = y != 3  # no noisy recordings at all
    m = classification_metrics(y[present], probs[present])
    assert np.isnan(m["auroc_noisy"]) and np.isnan(m["sens_noisy"])
    per_class = [roc_auc_score(y[present] == k, probs[present, k]) for k in range(3)]
    assert [m["auroc_N"], m["auroc_A"], m["auroc_O"]] == pytest.approx(per_class)
    assert m["auroc_macro"] == pytest.approx(np.mean(per_class))
    assert np.isnan(classification_metrics([0, 0], [[0.9, 0.1, 0, 0], [0.6, 0.4, 0, 0]])["auroc_macro"])


def _logits(probs) -> np.ndarray:
    """Window logits whose softmax is ``probs`` (a zero probability → -inf)."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(probs, dtype=float))


def test_record_probabilities_hand_example():
    codes = np.array([1, 0, 2, 1, 2, 2])  # windows of records r1 (0), r2 (1), r3 (2)
    probs = np.array([[0.6, 0.4, 0.0, 0.0],   # r2: N on its own ...
                      [0.0, 0.0, 1.0, 0.0],   # r1
                      [0.1, 0.0, 0.0, 0.9],   # r3
                      [0.2, 0.8, 0.0, 0.0],   # r2: ... but A on average
                      [0.4, 0.0, 0.3, 0.3],   # r3
                      [0.4, 0.0, 0.3, 0.3]])  # r3: N, O, ~ average to [0.3, 0, 0.2, 0.5] -> ~
    rec_probs = record_probabilities(_logits(probs), codes, 3, "mean_prob")
    np.testing.assert_allclose(rec_probs, [[0, 0, 1, 0], [0.4, 0.6, 0, 0], [0.3, 0, 0.2, 0.5]], atol=1e-12)
    assert rec_probs.argmax(1).tolist() == [2, 1, 3]


def test_score_records_record_and_segment_level():
    codes = np.array([0, 0, 0, 1, 1, 2, 3])  # records a, b, c, d
    y = np.array([0, 1, 2, 0])
    pred = [0, 0, 1, 1, 0, 2, 2]  # windows: 4/7 right; records a->N, b tie (N first), c->O, d->O
    m = score_records(y, _logits(np.eye(4)[pred]), codes, "mean_prob")
    assert m["val_seg_accuracy"] == pytest.approx(4 / 7)
    assert m["val_accuracy"] == pytest.approx(2 / 4)
    # N: TP 1, true {a,d}, predicted {a,b}; A: TP 0; O: TP 1, true {c}, predicted {c,d}
    assert m["val_f1_cinc"] == pytest.approx((2 * 1 / (2 + 2) + 0 + 2 * 1 / (1 + 2)) / 3)
    assert "val_seg_f1_cinc" in m and len(m) == 2 * len(classification_metrics(y, np.eye(4)[y])) + 1
