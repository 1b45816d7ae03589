"""The training recipe's deciding pieces, without Ray: crop batches (equal steps,
bounds, reproducibility, class balance), whole-record windows per rank, window →
record aggregation, temperature scaling and ECE, bootstrap CIs, F1 by length,
class weights, LR schedules, and CLI flags generated from ``TrainConfig``."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pyarrow as pa
import pytest
import torch
from sklearn.metrics import f1_score

from ecg_ray.data.preprocess import cut_windows, window_starts
from ecg_ray.training.calibration import expected_calibration_error, fit_temperature, reliability_table
from ecg_ray.training.config import TrainConfig
from ecg_ray.training.feed import (CropShuffleBuffer, chunk_records, crop_batches, steps_per_epoch,
                                   window_batches)
from ecg_ray.training.imbalance import class_weights
from ecg_ray.training.metrics import (_f1_per_class, bootstrap_f1, f1_by_length, record_probabilities,
                                      softmax)
from ecg_ray.training.schedule import build_scheduler


class FakeShard:
    """What ``crop_batches`` / ``window_batches`` read from a Ray shard: ``iter_batches``
    of numpy dicts with a variable-length ``signal`` column (an object array), or of
    pyarrow tables (``list<float32>``) as Ray gives them for ``batch_format="pyarrow"``."""

    def __init__(self, lengths, labels, seed=0):
        rng = np.random.default_rng(seed)
        self.ids = np.array([f"R{i:03d}" for i in range(len(lengths))], dtype=object)
        self.labels = np.asarray(labels, dtype=np.int8)
        self.signals = np.empty(len(lengths), dtype=object)
        for i, n in enumerate(lengths):  # signal i carries its record number in every sample
            self.signals[i] = np.full(n, float(i), np.float32) + rng.normal(0, 1e-3, n).astype(np.float32)

    def iter_batches(self, batch_size, batch_format="numpy", local_shuffle_buffer_size=None,
                     local_shuffle_seed=None, prefetch_batches=0):
        order = np.arange(len(self.ids))
        if local_shuffle_buffer_size:
            order = np.random.default_rng(local_shuffle_seed).permutation(order)
        for i in range(0, len(order), batch_size):
            take = order[i:i + batch_size]
            batch = {"record_id": self.ids[take], "label_index": self.labels[take], "signal": self.signals[take]}
            if batch_format == "pyarrow":
                batch = pa.table({"record_id": pa.array(list(batch["record_id"])),
                                  "label_index": pa.array(batch["label_index"]),
                                  "signal": pa.array(list(batch["signal"]), pa.list_(pa.float32()))})
            yield batch


def _crops(shard, epoch=0, rank=0, steps=None, **kw):
    args = dict(length=300, crops_per_record=2, batch_size=16, seed=1, epoch=epoch, rank=rank)
    args.update(kw)
    steps = steps or steps_per_epoch(len(shard.ids), 1, args["crops_per_record"], args["batch_size"])
    return list(crop_batches(shard, steps=steps, **args))


def test_crop_batches_equal_full_batches_and_reproducible():
    shard = FakeShard(lengths=[1000, 450, 300, 200, 3000] * 20, labels=[0, 1, 2, 3, 0] * 20)
    batches = _crops(shard)
    assert len(batches) == steps_per_epoch(100, 1, 2, 16) == 12
    for x, y in batches:
        assert x.shape == (16, 300) and x.dtype == torch.float32 and y.dtype == torch.int64
    again = _crops(shard)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    other = _crops(shard, epoch=1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batches, other))  # fresh crops each epoch
    # every crop comes from one record and carries that record's label
    for x, y in batches:
        rec = x[:, 0].round().long()
        assert torch.equal(y, torch.as_tensor(shard.labels[rec.numpy()], dtype=torch.int64))
        short = (shard.signals[0].size and np.array([len(shard.signals[r]) for r in rec.numpy()]) < 300)
        padded_tail = x[torch.as_tensor(short), -1]
        assert torch.all(padded_tail == 0)  # short records zero-padded


def test_chunk_records_reads_lists_and_bytes_alike():
    shard = FakeShard(lengths=[900, 3000, 12, 4500], labels=[0, 1, 2, 3])
    table = next(shard.iter_batches(2, batch_format="pyarrow"))  # the first two rows
    as_bytes = table.set_column(2, "signal", pa.array([np.asarray(x).tobytes() for x in shard.signals[:2]],
                                                      pa.binary()))
    whole = next(shard.iter_batches(4, batch_format="pyarrow"))
    for batch in (table, as_bytes, pa.concat_tables([table.slice(1), table.slice(0, 1)]), whole.slice(1, 2),
                  as_bytes.slice(1, 1)):
        flat, starts, lengths, labels = chunk_records(batch)
        assert flat.dtype == np.float32 and len(labels) == len(lengths) == batch.num_rows
        for s, n, y in zip(starts, lengths, labels):
            rec = int(round(float(flat[s])))  # record number carried in its samples
            np.testing.assert_array_equal(flat[s:s + n], shard.signals[rec])
            assert y == shard.labels[rec]


def test_cut_windows_pad_and_offsets():
    flat = np.arange(20, dtype=np.float32)
    out = cut_windows(flat, np.array([0, 5]), np.array([5, 15]), np.array([1, 0, 1]), np.array([10, 0, 0]), 8)
    np.testing.assert_array_equal(out[0], [15, 16, 17, 18, 19, 0, 0, 0])  # past the end: zeros
    np.testing.assert_array_equal(out[1], [0, 1, 2, 3, 4, 0, 0, 0])  # a short record: padded
    np.testing.assert_array_equal(out[2], np.arange(5, 13))


def test_crop_shuffle_buffer_hands_out_every_crop_once_and_mixes_chunks():
    rng = np.random.default_rng(0)
    pool = CropShuffleBuffer(length=3, capacity=40, rng=rng)
    out = []
    for chunk in range(6):  # chunks of 20 crops; crop id in its samples, its chunk as label
        ids = np.arange(chunk * 20, chunk * 20 + 20)
        pool.add(np.repeat(ids[:, None], 3, axis=1).astype(np.float32), np.full(20, chunk))
        while pool.ready(8, draining=False):
            out.append(pool.take(8))
    while pool.ready(8, draining=True):
        out.append(pool.take(8))
    ids = np.concatenate([x[:, 0] for x, _ in out]).astype(int)
    assert len(ids) == 120 and len(set(ids)) == 120  # no crop lost or repeated
    for x, y in out:
        assert np.array_equal(x[:, 0].astype(int) // 20, y)  # rows stay with their labels
    assert max(len(set(y)) for _, y in out) >= 2  # batches draw from several chunks


def test_crop_batches_steps_are_exact_even_when_a_shard_runs_short():
    shard = FakeShard(lengths=[500] * 10, labels=[0] * 10)
    assert len(_crops(shard, steps=7)) == 7  # 10 records x 2 crops = 20 < 7 x 16: the shard is read again


def test_crop_batches_sampler_balances_classes():
    labels = [0] * 80 + [1] * 10 + [2] * 8 + [3] * 2
    shard = FakeShard(lengths=[600] * 100, labels=labels)
    rates = class_weights(np.bincount(labels, minlength=4))
    ys = np.concatenate([y.numpy() for _, y in _crops(shard, steps=60, sample_rates=rates)])
    freq = np.bincount(ys, minlength=4) / len(ys)
    assert np.allclose(freq, 0.25, atol=0.06), freq


def test_window_batches_split_records_over_ranks_and_reach_the_tail():
    lengths = [9000, 9001, 2000, 18286, 3000, 6100, 4500]
    shard = FakeShard(lengths=lengths, labels=[0, 1, 2, 3, 0, 1, 2])
    seen = []
    for rank in range(3):
        for ids, labels, windows, codes in window_batches(shard, length=3000, hop=1500, rank=rank, world=3,
                                                         records_per_batch=2):
            for k, rid in enumerate(ids):
                i = int(rid[1:])
                w = windows[codes == k]
                assert len(w) == len(window_starts(lengths[i], 3000, 1500))
                n = lengths[i]
                if n >= 3000:  # the last window ends with the record's last sample
                    np.testing.assert_array_equal(w[-1], shard.signals[i][n - 3000:])
                seen.append(rid)
    assert sorted(seen) == sorted(shard.ids)  # every record once, none dropped


def test_record_probabilities_by_hand():
    logits = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1.0]])
    codes = np.array([0, 0, 1])
    p = record_probabilities(logits, codes, 2, "mean_prob")
    np.testing.assert_allclose(p[0], (softmax(logits[:1]) + softmax(logits[1:2]))[0] / 2)
    q = record_probabilities(logits, codes, 2, "mean_logit")
    np.testing.assert_allclose(q[0], softmax(np.array([[1.0, 1.0, 0, 0]]))[0])
    hot = record_probabilities(logits, codes, 2, "mean_prob", temperature=0.5)
    assert hot[1, 3] > p[1, 3]  # T < 1 sharpens
    with pytest.raises(ValueError, match="aggregate"):
        record_probabilities(logits, codes, 2, "vote")


def test_temperature_fitting_recovers_an_overconfident_scale():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 4)) * 1.5
    y = np.array([rng.choice(4, p=p) for p in softmax(z)])  # labels drawn from softmax(z): calibrated
    t = fit_temperature(3.0 * z, np.arange(4000), y)  # the model reports logits 3x too large
    assert t == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(y, softmax(3.0 * z))
    after = expected_calibration_error(y, softmax(3.0 * z, t))
    assert after < 0.03 < before


def test_ece_hand_computed():
    # two bins used: conf 0.9 (3 records, 2 right), conf 0.6 (2 records, 2 right)
    probs = np.array([[0.9, 0.1, 0, 0]] * 3 + [[0.6, 0.4, 0, 0]] * 2)
    y = np.array([0, 0, 1, 0, 0])
    table = reliability_table(y, probs, n_bins=10)
    assert table["n"].tolist() == [2, 3]
    assert expected_calibration_error(y, probs, n_bins=10) == pytest.approx((2 * 0.4 + 3 * abs(2 / 3 - 0.9)) / 5)


def test_bootstrap_f1_matches_sklearn_per_resample_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 400)
    pred = np.where(rng.random(400) < 0.7, y, rng.integers(0, 4, 400))
    for _ in range(5):
        idx = rng.integers(0, 400, 400)
        np.testing.assert_allclose(_f1_per_class(y[idx][None], pred[idx][None])[0],
                                   f1_score(y[idx], pred[idx], labels=[0, 1, 2, 3], average=None, zero_division=0))
    probs = np.eye(4)[pred]
    ci = bootstrap_f1(y, probs, n_boot=1000)
    point = f1_score(y, pred, labels=[0, 1, 2], average=None).mean()
    assert ci["f1_cinc"][0] < point < ci["f1_cinc"][1]
    assert 0.04 < ci["f1_cinc"][1] - ci["f1_cinc"][0] < 0.15  # about 4 standard errors wide at n = 400
    perfect = bootstrap_f1(y, np.eye(4)[y], n_boot=200)
    assert perfect["f1_cinc"] == [1.0, 1.0] and perfect["f1_A"] == [1.0, 1.0]
    # clustered: resampling 4 patients of 100 windows each is wider than resampling 400 windows
    clustered = bootstrap_f1(y, probs, n_boot=1000, clusters=np.repeat(np.arange(4), 100))
    assert set(clustered) == set(ci)


def test_f1_by_length_bands():
    y = np.array([0, 1, 0, 1])
    probs = np.eye(4)[[0, 1, 1, 0]]
    rows = f1_by_length(y, probs, [10, 15, 30, 61])
    assert [r["band_s"] for r in rows] == ["0-20", "20-40", "40-inf"] and [r["n"] for r in rows] == [2, 1, 1]


def test_sqrt_class_weights_are_gentler_and_mean_one():
    counts = np.array([3130, 468, 1493, 177])
    inv, sq = class_weights(counts), class_weights(counts, "sqrt")
    assert np.all(np.argsort(inv) == np.argsort(sq)) and sq.max() / sq.min() == pytest.approx(np.sqrt(inv.max() / inv.min()))
    assert (counts * sq).sum() / counts.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        class_weights(counts, "log")


@pytest.mark.parametrize("name", ["onecycle", "cosine"])
def test_schedules_warm_up_then_decay_to_near_zero(name):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    sched = build_scheduler(name, opt, total_steps=100, warmup=0.2)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert 15 <= peak <= 22 and max(lrs) == pytest.approx(2e-3, rel=0.01)
    assert lrs[0] < 0.5 * max(lrs) and lrs[-1] < 0.05 * max(lrs)
    assert np.all(np.diff(lrs[peak:]) <= 1e-12)
    assert opt.param_groups[0]["lr"] <= lrs[-1] + 1e-12  # after the last step too (what the last epoch reports)


@pytest.mark.parametrize("name", ["onecycle", "cosine"])
@pytest.mark.parametrize("total", [1, 2, 3, 4, 7])
def test_schedules_of_a_few_steps_run(name, total):
    """A tiny run (a few records, 2 epochs: 4 steps) steps through its schedule: onecycle's
    warm-up of under two steps divided by zero inside torch."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    sched = build_scheduler(name, opt, total_steps=total, warmup=0.2)
    for _ in range(total):
        opt.step()
        sched.step()
        assert 0 <= opt.param_groups[0]["lr"] <= 2e-3 + 1e-12


def test_every_config_field_is_a_cli_flag_and_defaults_stay_the_configs():
    from ecg_ray.cli import _config_overrides, build_parser

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert _config_overrides(args) == {}  # nothing given: the config's own defaults
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--schedule", "cosine",
                                      "--class-weighting", "inverse", "--no-calibrate", "--augment", "none",
                                      "--model-params", '{"dropout": 0.1}', "--crops-per-record", "3"])
    cfg = TrainConfig(**_config_overrides(args))
    assert (cfg.schedule, cfg.class_weighting, cfg.calibrate, cfg.augment) == ("cosine", "inverse", False, [])
    assert cfg.model_params == {"dropout": 0.1} and cfg.crops_per_record == 3
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for f in fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in help_text, f.name
    for bad in (dict(schedule="step"), dict(aggregate="vote"), dict(class_weighting="log"), dict(warmup=1.0)):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_fixed_mode_cuts_every_non_overlapping_window_the_same_each_epoch():
    shard = FakeShard(lengths=[900, 650, 300, 1000] * 4, labels=[0, 1, 2, 3] * 4)
    windows = sum(len(window_starts(n, 300, 300)) for n in [900, 650, 300, 1000] * 4)  # 3 + 3 + 1 + 4 per 4
    assert windows == 44
    a = _crops(shard, epoch=0, mode="fixed", steps=11, batch_size=4)  # 11 x 4: every window once
    b = _crops(shard, epoch=5, mode="fixed", steps=11, batch_size=4)
    first = sorted(map(tuple, torch.cat([x for x, _ in a])[:, ::50].tolist()))
    assert first == sorted(map(tuple, torch.cat([x for x, _ in b])[:, ::50].tolist()))  # same windows
    assert not torch.equal(a[0][0], b[0][0])  # in another order


def test_bf16_step_keeps_float32_weights_and_matches_fp32_loss():
    from ecg_ray.models import build_model
    from ecg_ray.training.step import train_step

    x, y = torch.randn(8, 1, 3000, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3] * 2)
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model("cnn_only")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        before = [p.detach().clone() for p in model.parameters()]
        losses[precision], _ = train_step(model, torch.nn.CrossEntropyLoss(), optimizer, x, y, 1.0, precision)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)
    with pytest.raises(ValueError, match="precision: choose from fp32, bf16"):
        TrainConfig(precision="fp16")


def test_recipe_verdict_needs_every_seed_to_agree_and_the_mean_to_clear_the_spread():
    from ecg_ray.bench.recipe import render, verdict

    assert verdict([0.03, 0.05]) == "better"  # mean 0.04 > spread 0.02, both up
    assert verdict([-0.03, -0.05]) == "worse"
    assert verdict([0.136, -0.013]) == "undecided"  # seeds disagree
    assert verdict([0.01, 0.05]) == "undecided"  # mean 0.03 < spread 0.04
    assert verdict([0.2]) == "undecided (one seed)"
    arms = {"baseline (old recipe)": [{"seed": 0, "f1": 0.70, "seconds": 100}, {"seed": 1, "f1": 0.74, "seconds": 90}],
            "random crops": [{"seed": 0, "f1": 0.75, "seconds": 80}, {"seed": 1, "f1": 0.80, "seconds": 80}]}
    table = render({"epochs": 6, "seeds": [0, 1], "max_records": 800, "arms": arms}, "cmd")
    assert "| random crops | 0.750, 0.800 | +0.050, +0.060 | +0.055 | 0.010 | better | 80 |" in table
    assert "0.040 (seed noise)" in table
