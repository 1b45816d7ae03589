"""Model zoo: a registry of ECG rhythm classifiers (plain torch, no Ray).

Every model maps ``(B, in_channels, L)`` float32 (or ``(B, L)``) with any
``L >= 500`` to ``(B, num_classes)`` logits in the class order ``N, A, O, ~``,
has a ``frontend`` (the feature extractor) and ``param_groups()`` →
``{"frontend", "recurrent", "head"}`` covering every parameter exactly once.
Models with ``supports_attention`` accept ``forward(x, return_attention=True)``
and return ``(logits, weights)``, ``weights`` ``(B, T)`` summing to 1 over T.

    >>> model = build_model("cnn_lstm", hidden=64, pooling="meanlast")
    >>> model.hparams          # every constructor argument, resolved — for checkpoints
    >>> freeze(model)          # front end: no grad, BatchNorm stats fixed

Registered: ``cnn_only`` (baseline), ``cnn_lstm``, ``bilstm``, ``simple_lstm``,
``lstm_only``, ``residual``, ``gru``, ``attention``, ``transformer``, ``resnet``,
``resnet_stages`` (the default recipe's model).
"""

from __future__ import annotations

import inspect
import timeit
from typing import Any

import numpy as np
import torch
from torch import nn

MODELS: dict[str, type] = {}
#: name → the constructor defaults that name overrides (``bilstm``: ``bidirectional=True``)
PRESETS: dict[str, dict[str, Any]] = {}


def register(name: str, **preset):
    """Class decorator: add a model class to :data:`MODELS` under ``name``; ``preset``
    overrides constructor defaults, so one class can back several names."""

    def deco(cls: type) -> type:
        if name in MODELS and (MODELS[name], PRESETS[name]) != (cls, preset):
            raise ValueError(f"model name {name!r} is already registered to {MODELS[name].__name__}")
        MODELS[name] = cls
        PRESETS[name] = preset
        return cls

    return deco


def model_names() -> list[str]:
    """The registered model names, in registration order."""
    return list(MODELS)


def default_hparams(name: str) -> dict[str, Any]:
    """Every constructor keyword of model ``name`` with its default (the name's preset applied)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    params = inspect.signature(MODELS[name]).parameters.values()
    return {**{p.name: p.default for p in params}, **PRESETS[name]}


def build_model(name: str, **hparams) -> nn.Module:
    """Build model ``name`` with the given hyper-parameters (others default).

    Raises ``ValueError`` for an unknown name (listing the valid ones) and
    ``TypeError`` for an unknown hyper-parameter (naming it). The built model
    carries ``model.model_name`` and ``model.hparams`` (all constructor
    arguments, resolved, JSON-friendly) so a checkpoint can rebuild it with
    ``build_model(model.model_name, **model.hparams)``.
    """
    defaults = default_hparams(name)
    if unknown := sorted(set(hparams) - set(defaults)):
        raise TypeError(f"unknown hyper-parameter(s) {', '.join(map(repr, unknown))} for model "
                        f"{name!r}; valid: {', '.join(sorted(defaults))}")
    resolved = {**defaults, **hparams}
    model = MODELS[name](**resolved)
    model.model_name = name
    model.hparams = {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}
    groups = model.param_groups()  # the contract of the module doc: every parameter in one group
    if missing := {"frontend", "recurrent", "head"} - set(groups):
        raise RuntimeError(f"{type(model).__name__}.param_groups() lacks {sorted(missing)}")
    ids = [id(p) for ps in groups.values() for p in ps]
    if len(ids) != len(set(ids)) or set(ids) != {id(p) for p in model.parameters()}:
        raise RuntimeError(f"{type(model).__name__}.param_groups() must hold every parameter exactly once")
    return model


def freeze(model: nn.Module, group: str = "frontend") -> nn.Module:
    """Freeze parameter group ``group``: ``requires_grad=False`` and the group
    stays in eval mode (BatchNorm running statistics fixed, dropout off) through
    later ``model.train()`` calls. Returns the model."""
    return model.set_frozen(group, True)


def unfreeze(model: nn.Module, group: str = "frontend") -> nn.Module:
    """Undo :func:`freeze`."""
    return model.set_frozen(group, False)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def batched_logits(model, windows: np.ndarray, batch_size: int = 256, device="cpu") -> np.ndarray:
    """Logits ``(n, K)`` (float64) of windows ``(n, L)`` run through ``model`` (eager
    or TorchScript) as ``(B, 1, L)`` float32 batches under ``torch.inference_mode``:
    the one window → logits loop of validation, calibration, evaluate and predict."""
    windows = np.require(windows, np.float32, ["C", "W"])  # W: copies a read-only (e.g. Arrow) view
    with torch.inference_mode():
        chunks = [model(torch.from_numpy(windows[i:i + batch_size]).unsqueeze(1).to(device)).float().cpu().numpy()
                  for i in range(0, len(windows), batch_size)]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.empty((0, 4), dtype=np.float64)


def benchmark_models(batch_size: int = 64, length: int = 1500, iters: int = 3,
                     names: list[str] | None = None, warmup: int = 1) -> list[dict]:
    """Forward+backward throughput of every model (default hyper-parameters) on
    CPU, in train mode: ``[{"name", "parameters", "segments_per_s", "seconds_per_iter"}]``."""
    rows = []
    for name in names or model_names():
        torch.manual_seed(0)
        model = build_model(name).train()
        x = torch.randn(batch_size, 1, length)
        y = torch.randint(0, model.num_classes, (batch_size,))

        def step():
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()

        for _ in range(warmup):
            step()
        dt = timeit.timeit(step, number=iters) / max(iters, 1)
        rows.append({"name": name, "parameters": count_parameters(model),
                     "segments_per_s": batch_size / dt, "seconds_per_iter": dt})
    return rows


def format_table(rows: list[dict]) -> str:
    """One line per model: name, parameter count, segments/s and seconds per iteration."""
    header = f"{'model':<14} {'parameters':>11} {'segments/s':>11} {'s/iter':>8}"
    return "\n".join([header, *(f"{r['name']:<14} {r['parameters']:>11,} {r['segments_per_s']:>11.1f} "
                                 f"{r['seconds_per_iter']:>8.3f}" for r in rows)])


# registration happens on import of the family modules (they import `register` above)
from . import cnn, recurrent, resnet, transformer  # noqa: E402,F401

__all__ = ["MODELS", "PRESETS", "register", "build_model", "model_names", "default_hparams",
           "freeze", "unfreeze", "count_parameters", "benchmark_models", "format_table"]
