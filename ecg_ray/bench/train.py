"""Sections ``train`` and ``gpu``: forward+backward crops/s per architecture, inside the ``TorchTrainer``
versus the same model in a bare torch loop.

Both sides run the same training epoch: ``feed.crop_batches`` (fresh random crops of the same whole records,
the same steps) and ``step.train_step`` (model, class-weighted loss, AdamW, gradient clipping, the per-batch
``loss.item()``), with the same number of torch threads. The bare side reads the records from memory in this
process; the TorchTrainer side is the real training path (``training.trainer.make_trainer`` →
``train_loop_per_worker`` on datasets from ``load_datasets``), read from the ``segments_per_s`` each epoch
reports (the training loop only; validation is not counted). Their ratio is Ray Train's overhead.

The two sides are **interleaved**: each repeat is one round of a bare run and a TorchTrainer run (``--warmup``
untimed epochs, then one timed epoch each), so a slow minute of the machine hits both; the rounds' medians and
their spread are reported, and the median of the per-round ratios. ``gpu`` repeats both on CUDA (skipped
without a CUDA device); without Ray only the bare loop runs.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch

from ..data import store
from ..models import build_model, count_parameters, model_names
from ..training.config import TrainConfig
from ..training.feed import crop_batches, load_datasets, steps_per_epoch
from ..training.imbalance import build_loss
from ..training.step import train_step
from . import stats
from .arrays import TrainRecords, load_training_records
from .machine import ray_available
from .stats import fmt, markdown_table, section_body, summary_cells

TARGET_OVERHEAD = 0.05


def bench_config(name: str, opts, use_gpu: bool = False):
    """The ``TrainConfig`` both sides run: weighted loss, no augmentation, no early stop."""
    return TrainConfig(model=name, batch_size=opts.batch_size, num_epochs=opts.warmup + 1, patience=0, augment=[],
                       imbalance="weighted", max_records=opts.train_records, torch_threads=opts.threads,
                       use_gpu=use_gpu, gpus_per_worker=1 if use_gpu else None, cpus_per_worker=float(opts.threads))


def train_epochs(cfg, data: TrainRecords, shard, epochs: int, device: torch.device = torch.device("cpu"),
                 **feed) -> tuple[torch.nn.Module, list[tuple[int, float, float]]]:
    """A fresh ``cfg.model`` trained ``epochs`` epochs on ``shard`` as the worker trains it (``crop_batches``, given
    ``feed`` too, → ``step.train_step``); the model and, per epoch, ``(crops, summed loss, seconds)``."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, **cfg.model_params).to(device).train()
    loss_fn = build_loss(cfg.imbalance, data.class_counts).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = steps_per_epoch(len(data.labels), 1, cfg.crops_per_record, cfg.batch_size)
    log = []
    for epoch in range(epochs):
        seen, total, t0 = 0, 0.0, time.perf_counter()
        for x, y in crop_batches(shard, length=data.segment_length, crops_per_record=cfg.crops_per_record,
                                 batch_size=cfg.batch_size, steps=steps, seed=cfg.seed, epoch=epoch, rank=0,
                                 device=device, **feed):
            loss, _ = train_step(model, loss_fn, optimizer, x, y, cfg.grad_clip, cfg.precision)
            seen, total = seen + len(y), total + loss
        if device.type == "cuda":
            torch.cuda.synchronize()
        log.append((seen, total, time.perf_counter() - t0))
    return model, log


def bare_rates(cfg, data: TrainRecords, device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Crops/s of each epoch of a plain torch loop over ``crop_batches`` (after ``warmup`` epochs)."""
    torch.set_num_threads(cfg.torch_threads)
    _, log = train_epochs(cfg, data, data.shard(), warmup + repeats, device, shuffle_buffer=cfg.shuffle_buffer)
    return [seen / seconds for seen, _, seconds in log[warmup:]]


def trainer_rates(cfg, datasets, preprocess: dict, warmup: int) -> list[float]:
    """Crops/s of each epoch the real TorchTrainer run reports (after ``warmup``)."""
    from ..training.checkpoint import load_checkpoint
    from ..training.trainer import make_trainer

    with tempfile.TemporaryDirectory(prefix="ecg_bench_train_", ignore_cleanup_errors=True) as storage:
        result = make_trainer(cfg, *datasets, preprocess, storage_path=storage, name=f"bench_{cfg.model}").fit()
        with result.checkpoint.as_directory() as d:
            history = load_checkpoint(d)["history"]
    return [h["segments_per_s"] for h in history][warmup:]


def _measure(opts, device: torch.device) -> dict:
    data = load_training_records(opts.prepared, opts.train_records)
    per_record = TrainConfig().crops_per_record  # what bench_config leaves at the default
    crops = steps_per_epoch_of(data, opts.batch_size, per_record)
    notes = [f"data: {data.describe()}; {crops:,} crops per epoch ({per_record} per record, full batches)",
             f"batch size {opts.batch_size}, {opts.threads} torch thread(s) on both sides, weighted loss, "
             f"no augmentation; {opts.repeats} interleaved rounds, each a bare run and a TorchTrainer run of "
             f"{opts.warmup} untimed + 1 timed epoch"]
    datasets = preprocess = None
    if ray_available():
        from ..training.trainer import init_ray

        init_ray()
        datasets = load_datasets(opts.prepared, None, materialize=None, max_records=opts.train_records)
        preprocess = store.read_manifest(opts.prepared)["preprocess"]
        if datasets[2].train_records != len(data.labels):
            notes.append(f"WARNING: TorchTrainer side has {datasets[2].train_records} training records, "
                         f"bare side {len(data.labels)}")
    else:
        notes.append("TorchTrainer side skipped: ray is not installed")
    rows = {}
    for name in opts.models or model_names():
        cfg = bench_config(name, opts, use_gpu=device.type == "cuda")
        row, bare, trainer = {"parameters": count_parameters(build_model(name))}, [], []
        for round_ in range(opts.repeats):
            print(f"bench {device.type}: {name} round {round_ + 1}/{opts.repeats} …", flush=True)
            bare += bare_rates(cfg, data, device, 1, opts.warmup)
            if datasets is not None and "error" not in row:
                try:
                    trainer += trainer_rates(cfg, datasets, preprocess, opts.warmup)
                except Exception as e:  # one model's failed run is reported, the others still measured
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        row["bare"] = stats.summarize(bare)
        if trainer:
            row["trainer"] = stats.summarize(trainer)
            if len(trainer) == len(bare):
                row["round_ratios"] = [t / b for t, b in zip(trainer, bare)]
        rows[name] = row
    return {"device": str(device), "rows": rows, "segments": crops, "notes": notes}


def steps_per_epoch_of(data: TrainRecords, batch_size: int, crops_per_record: int) -> int:
    """Crops one epoch trains on (full batches of ``crops_per_record`` crops per record)."""
    return steps_per_epoch(len(data.labels), 1, crops_per_record, batch_size) * batch_size


def run(opts) -> dict:
    return _measure(opts, torch.device("cpu"))


def run_gpu(opts) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
    result = _measure(opts, torch.device("cuda"))
    result["gpu"] = torch.cuda.get_device_name(0)
    return result


def fastest_bare(result: dict) -> tuple[str, float] | None:
    rows = result.get("rows") or {}
    name = max(rows, key=lambda n: rows[n]["bare"]["median"], default=None)
    return None if name is None else (name, rows[name]["bare"]["median"])


def render(result: dict, context: dict) -> str:
    table, short = [], []
    for name, row in result["rows"].items():
        r = stats.ratio(row.get("trainer"), row["bare"])
        overhead = None if r is None else 1 - r
        if overhead is not None and round(overhead, 4) > TARGET_OVERHEAD:
            short.append(f"{name} ({overhead:.0%})")
        extra = None if r is None else result["segments"] * (1 / row["trainer"]["median"] - 1 / row["bare"]["median"])
        ratios = row.get("round_ratios")
        spread = f"{np.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}]" if ratios else "—"
        table.append([name, f"{row['parameters']:,}", *summary_cells(row["bare"]), *summary_cells(row.get("trainer")),
                      "—" if r is None else f"{r:.2f}", spread,
                      row.get("error") or ("—" if overhead is None else f"{overhead:+.0%}"),
                      "—" if extra is None else f"{extra:+.2f}"])
    notes = list(result.get("notes", []))
    if any("trainer" in row for row in result["rows"].values()):
        notes.append(f"extra s / epoch: the TorchTrainer epoch's time minus the bare epoch's, for its "
                     f"{result['segments']:,} crops (a constant across models points at per-epoch start-up, "
                     "one growing with the model's time at per-step cost)")
        notes.append(f"target: overhead ≤ {TARGET_OVERHEAD:.0%}: " + (
            "**met** for every model" if not short else "**NOT met** for " + ", ".join(short)))
    if fastest := fastest_bare(result):
        notes.append(f"fastest model (bare): {fastest[0]} at {fmt(fastest[1])} crops/s")
    return section_body(markdown_table(["model", "parameters", "bare crops/s (median)", "min", "max",
                                        "TorchTrainer crops/s (median)", "min", "max", "Trainer / bare",
                                        "per-round ratio: median [min, max]", "overhead", "extra s / epoch"], table),
                        notes)
