"""The model zoo: registry, shapes, parameter groups, freezing, attention,
determinism, and that every architecture can fit a batch of real ECG segments."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ecg_ray.models import (MODELS, benchmark_models, build_model, count_parameters,
                            default_hparams, format_table, freeze, model_names, unfreeze)

ALL = ["cnn_only", "cnn_lstm", "bilstm", "simple_lstm", "lstm_only", "residual", "gru",
       "attention", "transformer", "resnet", "resnet_stages"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _build(name, seed=0, **hp):
    torch.manual_seed(seed)
    return build_model(name, **hp)


# -- registry ------------------------------------------------------------------

def test_registry_has_every_family():
    assert set(model_names()) == set(ALL)
    assert set(MODELS) == set(ALL)


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        build_model("not_a_model")
    msg = str(e.value)
    assert "not_a_model" in msg and all(n in msg for n in ALL)


def test_unknown_hparam_is_named():
    with pytest.raises(TypeError, match="hiden"):
        build_model("cnn_lstm", hiden=64)
    with pytest.raises(TypeError, match="blocks"):
        build_model("cnn_only", blocks=3)


def test_bad_hparam_values_raise():
    with pytest.raises(ValueError, match="pooling"):
        build_model("cnn_lstm", pooling="median")
    with pytest.raises(ValueError, match="dropout"):
        build_model("cnn_only", dropout=1.5)
    with pytest.raises(ValueError, match="cell"):
        build_model("cnn_lstm", cell="rnn")


def test_subclass_hparams_include_parent_kwargs():
    hp = default_hparams("bilstm")
    assert hp["bidirectional"] is True and hp["hidden"] == 128 and "pooling" in hp
    assert default_hparams("simple_lstm")["hidden"] == 64
    assert default_hparams("simple_lstm")["layers"] == 1


@pytest.mark.parametrize("name", ALL)
def test_hparams_rebuild_the_same_model(name):
    """``model.hparams`` is JSON-friendly and rebuilds the same architecture
    (what a checkpoint stores)."""
    model = _build(name, dropout=0.2)
    hp = json.loads(json.dumps(model.hparams))
    assert hp["dropout"] == 0.2 and hp["num_classes"] == 4 and hp["in_channels"] == 1
    again = _build(name, **hp)
    assert type(again) is type(model)
    assert [(k, v.shape) for k, v in again.state_dict().items()] == \
           [(k, v.shape) for k, v in model.state_dict().items()]


# -- shapes --------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_logits_shape_for_any_length(name):
    model = _build(name).eval()
    with torch.no_grad():
        for length in (500, 1500, 1501, 3000):
            out = model(torch.randn(2, 1, length))
            assert out.shape == (2, 4), (length, out.shape)
            assert out.dtype == torch.float32 and torch.isfinite(out).all()
        assert model(torch.randn(3, 1500)).shape == (3, 4)  # (B, L) is accepted too
    with pytest.raises(ValueError):
        model(torch.randn(2, 2, 1500))


def test_num_classes_and_even_kernel():
    model = _build("resnet", num_classes=3, kernel_size=16, blocks=4, width=8).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 1499)).shape == (2, 3)
    model = _build("cnn_only", channels=[8, 16], kernel_size=16, in_channels=2).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 2, 777)).shape == (2, 4)


def test_rnn_sequence_length_is_cnn_downsampled():
    model = _build("cnn_lstm").eval()
    with torch.no_grad():
        feats = model.frontend(torch.randn(1, 1, 1500))
    assert 100 <= feats.shape[-1] <= 200  # ~187 steps for 5 s, not 1500


def test_resnet_default_size():
    model = _build("resnet")
    assert 1_000_000 <= count_parameters(model) <= 1_600_000
    assert model.hparams["blocks"] == 9 and model.hparams["kernel_size"] == 9


# -- parameter groups and freezing ---------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_param_groups_cover_every_parameter_once(name):
    model = _build(name)
    assert hasattr(model, "frontend")
    groups = model.param_groups()
    assert {"frontend", "recurrent", "head"} <= set(groups)
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert groups["head"], "every model has a trainable head"
    if name in ("cnn_only", "resnet", "resnet_stages"):
        assert groups["recurrent"] == []
    else:
        assert groups["recurrent"]
    if name == "lstm_only":
        assert groups["frontend"] == []
    else:
        assert groups["frontend"]


@pytest.mark.parametrize("name", ["cnn_only", "cnn_lstm", "resnet", "transformer"])
def test_frozen_frontend_does_not_change(name):
    model = _build(name)
    freeze(model, "frontend")
    model.train()  # a later train() must not wake the frozen BatchNorms up
    bns = [m for m in model.frontend.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for p in model.param_groups()["frontend"])
    before = {k: v.clone() for k, v in model.frontend.state_dict().items()}
    head_before = [p.detach().clone() for p in model.param_groups()["head"]]
    # an optimizer over *all* parameters, with weight decay, as a careless trainer would build it
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(8, 1, 1000), torch.randint(0, 4, (8,))
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    after = model.frontend.state_dict()
    for k, v in before.items():  # weights and BN running_mean / running_var / num_batches_tracked
        assert torch.equal(v, after[k]), k
    assert any(not torch.equal(a, p) for a, p in zip(head_before, model.param_groups()["head"]))
    unfreeze(model, "frontend")
    model.train()
    assert all(m.training for m in bns)
    assert all(p.requires_grad for p in model.param_groups()["frontend"])


def test_freeze_unknown_group():
    with pytest.raises(ValueError, match="backbone"):
        freeze(_build("cnn_only"), "backbone")


# -- recurrent details ----------------------------------------------------------

def test_lstm_forget_gate_bias_is_one():
    model = _build("cnn_lstm")
    h = model.rnn.hidden_size
    for name, p in model.rnn.named_parameters():
        if name.startswith("bias_ih"):
            assert torch.all(p[h:2 * h] == 1) and torch.all(p[:h] == 0)
        if name.startswith("bias_hh"):
            assert torch.all(p == 0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_pooling_is_final_state_of_top_layer(bidirectional):
    """``pooling="last"`` must be the top layer's final state: h_n[-1] (and for a
    bidirectional LSTM concat(forward at T-1, backward at 0) == h_n[-2:])."""
    model = _build("cnn_lstm", pooling="last", bidirectional=bidirectional, layers=2,
                   hidden=16, channels=[8, 16]).eval()
    with torch.no_grad():
        feats = model.frontend(torch.randn(3, 1, 800)).transpose(1, 2)
        out, (h_n, _) = model.rnn(feats)
        pooled, _ = model.pool(out)
    expected = torch.cat([h_n[-2], h_n[-1]], dim=1) if bidirectional else h_n[-1]
    assert torch.allclose(pooled, expected, atol=1e-6)


def test_meanlast_pooling_width():
    model = _build("cnn_lstm", pooling="meanlast", hidden=16, channels=[8, 16]).eval()
    assert model.head[-1].in_features == 32
    with torch.no_grad():
        assert model(torch.randn(2, 1, 600)).shape == (2, 4)


# -- attention -----------------------------------------------------------------

@pytest.mark.parametrize("name,hp", [
    ("attention", {}),
    ("transformer", {}),  # last encoder layer's self-attention, mean over queries
    ("transformer", {"pooling": "attention"}),  # attention-pooling weights
    ("cnn_lstm", {"pooling": "attention"}),
])
def test_attention_weights_sum_to_one(name, hp):
    model = _build(name, **hp).eval()
    assert model.supports_attention
    x = torch.randn(3, 1, 1500)
    with torch.no_grad():
        logits, weights = model(x, return_attention=True)
        plain = model(x)
        t = model.frontend(x).shape[-1]
    assert logits.shape == (3, 4) and torch.allclose(logits, plain, atol=1e-5)
    assert weights.shape == (3, t)
    assert torch.all(weights >= 0)
    assert torch.allclose(weights.sum(dim=1), torch.ones(3), atol=1e-5)


def test_return_attention_without_attention_raises():
    model = _build("cnn_lstm").eval()
    assert not model.supports_attention
    with pytest.raises(ValueError, match="attention"):
        model(torch.randn(1, 1, 600), return_attention=True)


# -- determinism ---------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_seeded_builds_are_identical(name):
    a, b = _build(name, seed=0).eval(), _build(name, seed=0).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.randn(2, 1, 1000)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert torch.equal(a(x), a(x))
    c = _build(name, seed=1)
    assert any(not torch.equal(sa[k], v) for k, v in c.state_dict().items())


# -- learning ------------------------------------------------------------------

# Overfit one fixed batch of 16 real segments (4 per class). Default hparams for
# the baselines (cnn_only, cnn_lstm, resnet) and for attention/transformer;
# the other variants use reduced widths (noted per case) only to keep this file
# within ~90 s on one CPU thread — at their defaults they fit as fast or faster
# in steps (checked by hand: 23–50 Adam steps at lr 3e-3).
REDUCED = {"channels": [16, 32, 64], "hidden": 64}
OVERFIT_CASES = [
    ("cnn_only", {}),
    ("cnn_lstm", {}),
    ("resnet", {}),
    ("resnet_stages", {}),
    ("attention", {}),
    ("transformer", {}),
    ("simple_lstm", {}),
    ("bilstm", REDUCED),  # reduced widths, for speed
    ("gru", REDUCED),  # reduced widths, for speed
    ("residual", REDUCED),  # reduced widths, for speed
    ("lstm_only", {"hidden": 64}),  # reduced width, for speed
]


@pytest.mark.parametrize("name,hp", OVERFIT_CASES, ids=[c[0] for c in OVERFIT_CASES])
def test_model_can_fit_a_real_batch(name, hp, real_segments):
    x_np, y_np = real_segments
    assert x_np.shape == (16, 1500) and np.bincount(y_np).tolist() == [4, 4, 4, 4]
    # the first 2.5 s of each segment: half the compute, still real beats to tell apart
    x, y = torch.from_numpy(x_np[:, :750]).unsqueeze(1), torch.from_numpy(y_np)
    model = _build(name, **hp).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] < 0.1:
            break
    assert losses[0] > 1.0  # starts near chance (ln 4 ≈ 1.39), not pre-fitted
    assert losses[-1] < 0.1, f"{name} did not fit 16 real segments: loss {losses[0]:.3f} → {losses[-1]:.3f} " \
                             f"after {len(losses)} steps"


# -- benchmark -----------------------------------------------------------------

def test_benchmark_models_rows():
    rows = benchmark_models(batch_size=2, length=500, iters=1, names=["cnn_only", "lstm_only"])
    assert [r["name"] for r in rows] == ["cnn_only", "lstm_only"]
    for r in rows:
        assert r["parameters"] > 0 and r["segments_per_s"] > 0
    table = format_table(rows)
    assert "cnn_only" in table and "segments/s" in table
