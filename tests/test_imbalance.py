"""Unit tests for ecg_ray.training.imbalance (losses, class weights, balanced sampling)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ecg_ray.training.imbalance import (IMBALANCE_NAMES, FocalLoss, build_loss,
                                        class_weights)

torch.set_num_threads(1)
REAL_COUNTS = [4481, 669, 2132, 246]  # N, A, O, ~ in PhysioNet 2017 training set


def logits_targets(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64) * 2, torch.randint(0, 4, (n,), generator=g)


def test_class_weights_known_counts():
    w = class_weights([60, 30, 10])
    np.testing.assert_allclose(w, [100 / 180, 100 / 90, 100 / 30])
    w = class_weights(REAL_COUNTS)
    n = sum(REAL_COUNTS)
    np.testing.assert_allclose(w, [n / (4 * c) for c in REAL_COUNTS])
    assert np.dot(w, REAL_COUNTS) / n == pytest.approx(1.0)  # sample-weighted mean is 1
    np.testing.assert_allclose(class_weights({"N": 4481, "A": 669, "O": 2132, "~": 246}), w)


def test_class_weights_absent_class_gets_zero_with_warning():
    with pytest.warns(UserWarning, match="no samples"):
        w = class_weights([50, 0, 25, 25])
    np.testing.assert_allclose(w, [100 / 150, 0, 100 / 75, 100 / 75])
    with pytest.raises(ValueError):
        class_weights([0, 0, 0, 0])


def test_focal_gamma_zero_is_cross_entropy():
    logits, y = logits_targets()
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, y), F.cross_entropy(logits, y))
    alpha = torch.tensor(class_weights(REAL_COUNTS))
    torch.testing.assert_close(FocalLoss(gamma=0.0, alpha=alpha)(logits, y),
                               F.cross_entropy(logits, y, weight=alpha))


def test_focal_down_weights_easy_examples():
    y = torch.tensor([0, 1, 2, 3])
    easy = F.one_hot(y, 4).double() * 5  # confident and correct: p_y ≈ 0.98
    hard = -easy  # confident and wrong
    focal, ce = FocalLoss(gamma=2.0, reduction="none"), nn.CrossEntropyLoss(reduction="none")
    assert (focal(easy, y) < 0.01 * ce(easy, y)).all()
    assert (focal(hard, y) > 0.9 * ce(hard, y)).all()
    assert FocalLoss(gamma=2.0)(easy, y) < FocalLoss(gamma=1.0)(easy, y) < F.cross_entropy(easy, y)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_gradients_finite_when_certain(gamma):
    logits = torch.tensor([[50.0, -50.0, -50.0, -50.0], [0.0, 1.0, 2.0, 3.0]], requires_grad=True)
    FocalLoss(gamma=gamma)(logits, torch.tensor([0, 1])).backward()
    assert torch.isfinite(logits.grad).all()


def test_build_loss():
    logits, y = logits_targets()
    w = torch.tensor(class_weights(REAL_COUNTS), dtype=torch.float32)
    for name in ("none", "sampler"):
        loss = build_loss(name, REAL_COUNTS)
        assert isinstance(loss, nn.CrossEntropyLoss) and loss.weight is None
    weighted = build_loss("weighted", REAL_COUNTS)
    torch.testing.assert_close(weighted.weight, w)
    focal = build_loss("focal", REAL_COUNTS, gamma=1.5)
    assert isinstance(focal, FocalLoss) and focal.gamma == 1.5
    torch.testing.assert_close(focal.alpha, w)
    assert build_loss("focal", None, focal_alpha=False).alpha is None
    assert "alpha" in dict(focal.named_buffers())  # moves with .to(device)
    with pytest.raises(ValueError, match="'smote'.*sampler"):
        build_loss("smote", REAL_COUNTS)
    with pytest.raises(ValueError, match="class_counts"):
        build_loss("weighted", None)
    assert set(IMBALANCE_NAMES) == {"none", "weighted", "sampler", "focal"}


