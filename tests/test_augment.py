"""Unit tests for ecg_ray.training.augment (CPU; a CUDA run is exercised when available)."""

import pytest
import torch

from ecg_ray.training.augment import (AUGMENT_NAMES, Cutout, Jitter, Scaling, TimeWarp, build_augmenter,
                                      make_generator, parse_augment)
from ecg_ray.training.config import TrainConfig

torch.set_num_threads(1)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def batch(shape=(16, 1, 1000), seed=0, device="cpu"):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)


def test_time_warp_preserves_length_and_strength_zero_is_identity():
    x = batch()
    g = make_generator(0)
    assert TimeWarp(p=1.0)(x, g).shape == x.shape
    torch.testing.assert_close(TimeWarp(p=1.0, strength=0.0)(x, g), x, atol=1e-4, rtol=0)


def test_time_warp_is_a_smooth_stretch_of_a_smooth_signal():
    t = torch.linspace(0, 1, 1000)
    x = torch.sin(2 * torch.pi * 5 * t).repeat(4, 1)
    y = TimeWarp(p=1.0, strength=0.2)(x, make_generator(1))
    assert not torch.allclose(y, x, atol=1e-3)
    assert (y[:, 0] - x[:, 0]).abs().max() < 1e-5 and (y[:, -1] - x[:, -1]).abs().max() < 1e-5  # ends pinned
    assert y.abs().max() <= 1 + 1e-6 and y.diff().abs().max() < 2 * x.diff().abs().max()  # no jumps


@pytest.mark.parametrize("fraction,n_spans", [(0.1, 1), (0.1, 2), (0.25, 3)])
def test_cutout_zeroes_requested_fraction(fraction, n_spans):
    x = batch(shape=(32, 1000))
    y = Cutout(p=1.0, fraction=fraction, n_spans=n_spans)(x, make_generator(0))
    zeros = (y == 0).sum(1)
    assert ((zeros - fraction * 1000).abs() <= n_spans).all()
    kept = y != 0
    assert torch.equal(y[kept], x[kept])


def test_jitter_changes_std_by_sigma():
    x = batch(shape=(64, 2000))
    y = Jitter(p=1.0, sigma=0.3)(x, make_generator(0))
    assert (y - x).std().item() == pytest.approx(0.3, rel=0.02)
    assert y.std().item() == pytest.approx((x.std() ** 2 + 0.09).sqrt().item(), rel=0.02)


def test_scaling_keeps_waveform_shape():
    x = batch(shape=(32, 1, 500))
    y = Scaling(p=1.0, sigma=0.1)(x, make_generator(0))
    ratio = y / x
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio))
    assert 0.03 < ratio[:, 0, 0].std() < 0.2


@pytest.mark.parametrize("name", AUGMENT_NAMES)
def test_p_zero_is_identity_and_input_untouched(name):
    x = batch()
    before = x.clone()
    assert torch.equal(build_augmenter(name, p=0.0)(x, make_generator(0)), x)
    y = build_augmenter(name, p=1.0)(x, make_generator(0))
    assert torch.equal(x, before) and not torch.equal(y, x)


def test_p_applies_to_a_subset_of_samples():
    x = batch(shape=(200, 100))
    changed = (Jitter(p=0.5)(x, make_generator(0)) != x).any(1).float().mean()
    assert 0.35 < changed < 0.65


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(8, 600), (8, 1, 600)])
def test_all_deterministic_under_seed_and_shapes(device, shape):
    x = batch(shape=shape, device=device)
    aug = build_augmenter("all", p=0.7)
    a = aug(x, make_generator(3, device))
    b = aug(x, make_generator(3, device))
    c = aug(x, make_generator(4, device))
    assert a.shape == x.shape and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_build_augmenter_names_and_params():
    assert build_augmenter(None).augmenters == [] and build_augmenter("none").augmenters == []
    assert [type(a) for a in build_augmenter("all").augmenters] == [Jitter, Scaling, TimeWarp, Cutout]
    assert [type(a) for a in build_augmenter("jitter+cutout").augmenters] == [Jitter, Cutout]
    aug = build_augmenter(["scaling"], p=0.3, scaling_sigma=0.2, cutout_fraction=0.5)  # unused key ignored
    assert aug.augmenters[0].p == 0.3 and aug.augmenters[0].sigma == 0.2
    x = batch()
    assert build_augmenter("none")(x, make_generator(0)) is x
    with pytest.raises(ValueError, match="'warp'.*time_warp"):
        build_augmenter(["jitter", "warp"])
    with pytest.raises(ValueError, match="jitter_sigmaa"):
        build_augmenter("jitter", jitter_sigmaa=0.1)


@pytest.mark.parametrize("value", ["all,bogus", "bogus+all", ["all", "bogus"], "jitter,bogus"])
def test_parse_augment_refuses_unknown_names_even_with_all(value):
    with pytest.raises(ValueError, match="'bogus'.*jitter, scaling, time_warp, cutout, all, none"):
        parse_augment(value)
    with pytest.raises(ValueError, match="augment: unknown augmentation 'bogus'"):
        TrainConfig(augment=value)


def test_augment_label_reads_any_stored_setting_without_checking_it():
    """Run tables label what a stored trial was given: unknown names are kept (last), never an error."""
    from ecg_ray.training.augment import augment_label

    assert augment_label("bogus+cutout,jitter") == "jitter+cutout+bogus"
    assert augment_label("all,bogus") == "all" and augment_label(None) == augment_label("none") == "none"
