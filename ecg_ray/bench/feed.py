"""Section ``feed``: segments/s delivered to a training loop with no model.

One pass over the training split per repeat, batch size and shuffle buffer as a
training run uses them, by (d) contiguous numpy slicing (the memory-bandwidth
ceiling), (c) a plain in-memory torch ``DataLoader`` (the reference), (a) Ray
Data streaming from parquet and (b) Ray Data materialized, both through the
run's ``iter_torch_batches`` + ``TrainCollate``, and the path a sweep actually
uses: the dataset shard inside a ``TorchTrainer`` worker (materialized or not
as ``load_datasets`` decides). Two profile rows split (b) into its stages.
The Ray rows are skipped, and say so, when Ray is not installed.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time

import numpy as np
import torch

from . import stats
from .arrays import load_training_arrays
from .machine import ray_available
from .stats import fmt, fmt_ratio, markdown_table, summary_cells

REFERENCE = "dataloader"
SWEEP_PATH = "train_worker"
#: (key, label) of every row, in table order.
ROWS = [
    ("numpy_slicing", "(d) contiguous numpy slicing — ceiling"),
    ("dataloader", "(c) torch DataLoader over in-memory arrays — reference"),
    ("ray_streaming", "(a) Ray Data streaming from parquet"),
    ("ray_materialized", "(b) Ray Data materialized"),
    ("train_worker", "sweep path: dataset shard in a TorchTrainer worker"),
    ("profile_numpy", "profile of (b): iter_batches, numpy, no shuffle"),
    ("profile_torch", "profile of (b): iter_torch_batches + TrainCollate, no shuffle"),
]
TARGET_RATIO = 0.5


def _numpy_step(x: np.ndarray, y: np.ndarray, batch_size: int):
    def step() -> int:
        n = 0
        for i in range(0, len(y), batch_size):  # one copy per batch, as a loader must hand over
            batch = torch.from_numpy(x[i:i + batch_size]).clone(), torch.from_numpy(y[i:i + batch_size]).clone()
            n += len(batch[1])
        return n
    return step


def _dataloader_step(x: np.ndarray, y: np.ndarray, batch_size: int):
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch_size,
                        shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(0))

    def step() -> int:
        return sum(len(yb) for _, yb in loader)
    return step


def _ray_step(ds, batch_size: int, shuffle_buffer: int | None, torch_batches: bool = True):
    from ..training.feed import TrainCollate

    epochs = itertools.count()

    def step() -> int:
        epoch = next(epochs)
        if not torch_batches:
            return sum(len(b["label_index"]) for b in ds.iter_batches(batch_size=batch_size, batch_format="numpy"))
        return sum(len(yb) for _, yb in ds.iter_torch_batches(
            batch_size=batch_size, collate_fn=TrainCollate("cpu", 0, epoch), drop_last=False,
            local_shuffle_buffer_size=shuffle_buffer, local_shuffle_seed=epoch if shuffle_buffer else None))
    return step


def feed_loop(config: dict):
    """TorchTrainer worker: iterate the train shard as ``train_loop_per_worker`` does, no model."""
    import ray.train
    import ray.train.torch

    from ..training.feed import TrainCollate

    shard = ray.train.get_dataset_shard("train")
    device = ray.train.torch.get_device()
    rates = []
    for epoch in range(config["warmup"] + config["repeats"]):
        t0, n = time.perf_counter(), 0
        for _, y in shard.iter_torch_batches(
                batch_size=config["batch_size"], collate_fn=TrainCollate(device, 0, epoch), drop_last=False,
                local_shuffle_buffer_size=config["shuffle_buffer"], local_shuffle_seed=epoch):
            n += len(y)
        rates.append(n / (time.perf_counter() - t0))
    return rates[config["warmup"]:]


def _train_worker_rates(train_ds, val_ds, opts) -> list[float]:
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    from ..training.config import TrainConfig
    from ..training.trainer import scaling_config

    storage = tempfile.mkdtemp(prefix="ecg_bench_feed_")
    try:
        trainer = TorchTrainer(
            feed_loop, scaling_config=scaling_config(TrainConfig()),  # one worker, 1 CPU: a sweep trial
            train_loop_config={"warmup": opts.warmup, "repeats": opts.repeats, "batch_size": opts.batch_size,
                               "shuffle_buffer": TrainConfig().shuffle_buffer},
            datasets={"train": train_ds, "val": val_ds}, run_config=RunConfig(name="feed", storage_path=storage))
        return list(trainer.fit().return_value)
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def _ray_rows(opts, rows: dict, notes: list[str]) -> None:
    from ..training.config import TrainConfig
    from ..training.feed import load_datasets
    from ..training.trainer import init_ray

    init_ray()
    bs, buffer = opts.batch_size, TrainConfig().shuffle_buffer
    train_ds, _, info = load_datasets(opts.prepared, None, materialize=False, max_records=opts.feed_records)
    rows["ray_streaming"] = stats.rates(_ray_step(train_ds, bs, buffer), opts.repeats, opts.warmup)
    train_ds, _, info = load_datasets(opts.prepared, None, materialize=True, max_records=opts.feed_records)
    rows["ray_materialized"] = stats.rates(_ray_step(train_ds, bs, buffer), opts.repeats, opts.warmup)
    rows["profile_numpy"] = stats.rates(_ray_step(train_ds, bs, None, torch_batches=False), opts.repeats, opts.warmup)
    rows["profile_torch"] = stats.rates(_ray_step(train_ds, bs, None), opts.repeats, opts.warmup)
    del train_ds
    train_ds, val_ds, info = load_datasets(opts.prepared, None, materialize=None, max_records=opts.feed_records)
    rows["train_worker"] = _train_worker_rates(train_ds, val_ds, opts)
    notes.append(f"sweep path: the data {'materialized' if info.materialized else 'streamed'} (as `load_datasets` "
                 f"decides for this size), one TorchTrainer worker with 1 CPU, as a sweep trial")
    notes.append("(a) reads every parquet file and filters rows by record id on each pass: with a record cap "
                 "its rate is set by the full read, not by the records kept")


def run(opts) -> dict:
    arrays = load_training_arrays(opts.prepared, opts.feed_records)
    x, y = arrays.x, arrays.y
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a 1-CPU sweep trial's worker; copies of a batch gain nothing from more
    try:
        rows = {"numpy_slicing": stats.rates(_numpy_step(x, y, opts.batch_size), opts.repeats, opts.warmup),
                "dataloader": stats.rates(_dataloader_step(x, y, opts.batch_size), opts.repeats, opts.warmup)}
        notes = [f"data: {arrays.describe()}; {arrays.selection}",
                 f"batch size {opts.batch_size}, one torch thread; one pass over the data per repeat; the Ray "
                 "paths shuffle through the run's local shuffle buffer, (c) shuffles indices"]
        if ray_available():
            _ray_rows(opts, rows, notes)
        else:
            notes.append("Ray rows skipped: ray is not installed")
    finally:
        torch.set_num_threads(threads)
    return {"rows": {k: stats.summarize(v) for k, v in rows.items()}, "segments": len(y), "notes": notes}


def sweep_feed_rate(result: dict) -> float | None:
    row = result.get("rows", {}).get(SWEEP_PATH)
    return row["median"] if row else None


def render(result: dict, context: dict) -> str:
    rows = result["rows"]
    ref = rows.get(REFERENCE)
    table = [[label, *summary_cells(rows.get(key)), fmt_ratio(stats.ratio(rows.get(key), ref))]
             for key, label in ROWS if key in rows]
    out = [markdown_table(["path", "segments/s (median)", "min", "max", "× (c)"], table)]
    out += [f"- {n}" for n in result.get("notes", [])]
    sweep = rows.get(SWEEP_PATH)
    if sweep:
        r = stats.ratio(sweep, ref)
        out.append(f"- target: sweep path ≥ {TARGET_RATIO}× of (c): {r:.2f}× — "
                   + ("**met**" if r >= TARGET_RATIO else "**NOT met**"))
        fastest = context.get("fastest_train_rate")
        if fastest:
            name, rate = fastest
            out.append(f"- target: feed far above the fastest model's training rate ({name}, bare torch "
                       f"{fmt(rate)} segments/s): sweep path is {sweep['median'] / rate:.0f}× that — "
                       + ("**met**" if sweep["median"] >= 5 * rate else "**NOT met** (< 5×)"))
    return "\n".join(out)
