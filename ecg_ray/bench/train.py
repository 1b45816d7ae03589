"""Sections ``train`` and ``gpu``: forward+backward segments/s per architecture,
inside the ``TorchTrainer`` versus the same model in a bare torch loop.

The TorchTrainer side is the real training path (``training.trainer.make_trainer``
→ ``train_loop_per_worker`` on datasets from ``load_datasets``), one epoch per
repeat after the warm-up epochs, read from the ``segments_per_s`` each epoch
reports (the training loop only; validation is not counted). The bare side runs
the same step (model, class-weighted loss, AdamW, gradient clipping, the
per-batch ``loss.item()``) on the same segments and batch size, fed from numpy
arrays in memory, with the same number of torch threads. Their ratio is Ray
Train's overhead. ``gpu`` repeats both on CUDA (skipped without a CUDA device);
without Ray only the bare loop runs.
"""

from __future__ import annotations

import shutil
import tempfile
import time

import torch

from . import stats
from .arrays import TrainArrays, load_training_arrays, shuffled_batches
from .machine import ray_available
from .stats import fmt, markdown_table, summary_cells

TARGET_OVERHEAD = 0.10


def bench_config(name: str, opts, use_gpu: bool = False):
    """The ``TrainConfig`` both sides run: weighted loss, no augmentation, no early stop."""
    from ..training.config import TrainConfig

    return TrainConfig(model=name, batch_size=opts.batch_size, num_epochs=opts.warmup + opts.repeats, patience=0,
                       imbalance="weighted", augment=[], max_records=opts.train_records, use_gpu=use_gpu,
                       gpus_per_worker=1 if use_gpu else None, cpus_per_worker=float(opts.threads),
                       torch_threads=opts.threads)


def bare_rates(cfg, arrays: TrainArrays, device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Segments/s of each epoch of a plain torch loop (after ``warmup`` epochs)."""
    from ..models import build_model
    from ..training.imbalance import build_loss
    from ..training.step import train_step

    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, **cfg.model_params).to(device).train()
    loss_fn = build_loss(cfg.imbalance, arrays.class_counts).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rates = []
    for epoch in range(warmup + repeats):
        seen, t0 = 0, time.perf_counter()
        for xb, yb in shuffled_batches(arrays.x, arrays.y, cfg.batch_size, seed=epoch):
            if len(yb) < 2:
                continue
            x = torch.from_numpy(xb).to(device, non_blocking=True)
            y = torch.from_numpy(yb).to(device)
            train_step(model, loss_fn, optimizer, x, y, cfg.grad_clip)  # the worker's step, loss.item() included
            seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(seen / (time.perf_counter() - t0))
    return rates[warmup:]


def trainer_rates(cfg, datasets, preprocess: dict, warmup: int) -> list[float]:
    """Segments/s of each epoch the real TorchTrainer run reports (after ``warmup``)."""
    from ..training.checkpoint import load_checkpoint
    from ..training.trainer import make_trainer

    train_ds, val_ds, info = datasets
    storage = tempfile.mkdtemp(prefix="ecg_bench_train_")
    try:
        result = make_trainer(cfg, train_ds, val_ds, info, preprocess, storage_path=storage,
                              name=f"bench_{cfg.model}").fit()
        with result.checkpoint.as_directory() as d:
            history = load_checkpoint(d)["history"]
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return [h["segments_per_s"] for h in history][warmup:]


def _measure(opts, device: torch.device, use_ray: bool) -> dict:
    from ..data import store
    from ..models import build_model, count_parameters, model_names

    arrays = load_training_arrays(opts.prepared, opts.train_records)
    notes = [f"data: {arrays.describe()}; {arrays.selection}",
             f"batch size {opts.batch_size}, {opts.threads} torch thread(s) on both sides, weighted loss, "
             f"no augmentation; one epoch per repeat after {opts.warmup} warm-up epoch(s)"]
    datasets = preprocess = None
    if use_ray:
        from ..training.feed import load_datasets
        from ..training.trainer import init_ray

        init_ray()
        datasets = load_datasets(opts.prepared, None, materialize=None, max_records=opts.train_records)
        preprocess = store.read_manifest(opts.prepared)["preprocess"]
        if datasets[2].train_segments != len(arrays.y):
            notes.append(f"WARNING: TorchTrainer side has {datasets[2].train_segments} training segments, "
                         f"bare side {len(arrays.y)}")
    else:
        notes.append("TorchTrainer side skipped: " + ("ray is not installed" if not ray_available()
                                                      else "not requested"))
    rows = {}
    for name in opts.models or model_names():
        cfg = bench_config(name, opts, use_gpu=device.type == "cuda")
        row = {"parameters": count_parameters(build_model(name))}
        print(f"bench {device.type}: {name} bare torch …", flush=True)
        row["bare"] = stats.summarize(bare_rates(cfg, arrays, device, opts.repeats, opts.warmup))
        if use_ray:
            print(f"bench {device.type}: {name} TorchTrainer …", flush=True)
            try:
                row["trainer"] = stats.summarize(trainer_rates(cfg, datasets, preprocess, opts.warmup))
            except Exception as e:  # one model's failed run is reported, the others still measured
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        rows[name] = row
    return {"device": str(device), "rows": rows, "segments": len(arrays.y), "notes": notes}


def run(opts) -> dict:
    return _measure(opts, torch.device("cpu"), use_ray=ray_available())


def run_gpu(opts) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
    result = _measure(opts, torch.device("cuda"), use_ray=ray_available())
    result["gpu"] = torch.cuda.get_device_name(0)
    return result


def fastest_bare(result: dict) -> tuple[str, float] | None:
    rows = result.get("rows") or {}
    if not rows:
        return None
    name = max(rows, key=lambda n: rows[n]["bare"]["median"])
    return name, rows[name]["bare"]["median"]


def render(result: dict, context: dict) -> str:
    table, short = [], []
    for name, row in result["rows"].items():
        r = stats.ratio(row.get("trainer"), row["bare"])
        overhead = None if r is None else 1 - r
        if overhead is not None and overhead > TARGET_OVERHEAD:
            short.append(f"{name} ({overhead:.0%})")
        extra = None if r is None else result["segments"] * (1 / row["trainer"]["median"] - 1 / row["bare"]["median"])
        table.append([name, f"{row['parameters']:,}", *summary_cells(row["bare"]), *summary_cells(row.get("trainer")),
                      "—" if r is None else f"{r:.2f}",
                      row.get("error") or ("—" if overhead is None else f"{overhead:+.0%}"),
                      "—" if extra is None else f"{extra:+.2f}"])
    out = [markdown_table(["model", "parameters", "bare seg/s (median)", "min", "max", "TorchTrainer seg/s (median)",
                           "min", "max", "Trainer / bare", "overhead", "extra s / epoch"], table)]
    out += [f"- {n}" for n in result.get("notes", [])]
    if any("trainer" in row for row in result["rows"].values()):
        out.append(f"- extra s / epoch: the TorchTrainer epoch's time minus the bare epoch's, for its "
                   f"{result['segments']:,} segments (a constant across models points at per-epoch start-up, "
                   "one growing with the model's time at per-step cost)")
        out.append(f"- target: overhead ≤ {TARGET_OVERHEAD:.0%}: " + (
            "**met** for every model" if not short else "**NOT met** for " + ", ".join(short)))
    fastest = fastest_bare(result)
    if fastest:
        out.append(f"- fastest model (bare): {fastest[0]} at {fmt(fastest[1])} segments/s")
    return "\n".join(out)
