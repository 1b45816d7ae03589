"""Section ``feed``: training crops/s delivered to a training loop with no model.

Every path does what a training epoch does — two fresh random 10-s crops (``preprocess.random_crops``) from each
whole training record, shuffled, batched — and is timed for one pass per repeat: (d) ``feed.crop_batches`` over
records already in memory (the ceiling of the crop code itself), (c) a plain torch ``DataLoader`` over an
in-memory ``Dataset`` of records that crops in ``__getitem__`` (the reference: what a 100-line PyTorch script
does), (a) Ray Data streaming from parquet and (b) Ray Data materialized, both through ``crop_batches``, and the
path a sweep actually uses: the dataset shard inside a ``TorchTrainer`` worker (materialized or not as
``load_datasets`` decides). The Ray rows are skipped, and say so, when Ray is not installed.
"""

from __future__ import annotations

import itertools
import tempfile

import numpy as np
import torch

from ..training.config import TrainConfig
from ..training.feed import crop_batches, load_datasets, steps_per_epoch, train_shard, trainer_datasets
from . import stats
from .arrays import load_training_records
from .machine import ray_available
from .stats import fmt, fmt_ratio, markdown_table, section_body, summary_cells

#: (key, label) of every row, in table order.
ROWS = [
    ("numpy_slicing", "(d) crop_batches over in-memory records — ceiling"),
    ("dataloader", "(c) torch DataLoader, in-memory records cropped in the Dataset — reference"),
    ("ray_streaming", "(a) Ray Data streaming from parquet → crop_batches"),
    ("ray_materialized", "(b) Ray Data materialized → crop_batches"),
    ("train_worker", "sweep path: dataset shard in a TorchTrainer worker → crop_batches"),
]
TARGET_RATIO = 1.0
CROPS = 2


class CropDataset(torch.utils.data.Dataset):
    """The plain-PyTorch way: ``CROPS`` random crops of record ``i`` per item."""

    def __init__(self, signals, labels, length: int, epoch: int = 0):
        self.signals, self.labels, self.length, self.epoch = signals, labels, length, epoch

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from ..data.preprocess import random_crops

        crops = random_crops(self.signals[i], self.length, CROPS, np.random.default_rng([self.epoch, i]))
        return torch.from_numpy(crops), torch.full((CROPS,), int(self.labels[i]))


def _collate(items):
    return torch.cat([x for x, _ in items]), torch.cat([y for _, y in items])


def _crop_step(source, n_records: int, length: int, batch_size: int, **feed):
    """One training pass of ``crop_batches`` over ``source`` per call (the next epoch each time);
    returns the crops it delivered. ``feed``: more ``crop_batches`` arguments."""
    steps = steps_per_epoch(n_records, 1, CROPS, batch_size)
    epochs = itertools.count()

    def step() -> int:
        return sum(len(y) for _, y in crop_batches(source, length=length, crops_per_record=CROPS,
                                                   batch_size=batch_size, steps=steps, seed=0,
                                                   epoch=next(epochs), rank=0, **feed))
    return step


def _dataloader_step(signals, labels, length: int, batch_size: int):
    dataset = CropDataset(signals, labels, length)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size // CROPS, shuffle=True, num_workers=0,
                                         collate_fn=_collate, generator=torch.Generator().manual_seed(0))

    def step() -> int:
        dataset.epoch += 1
        return sum(len(yb) for _, yb in loader)
    return step


def feed_loop(config: dict):
    """TorchTrainer worker: draw the train shard's crops as ``train_loop_per_worker`` does, no model."""
    import ray.train.torch

    step = _crop_step(train_shard(config, 0, 1, 0), config["records"], config["length"], config["batch_size"],
                      shuffle_buffer=config["shuffle_buffer"], device=ray.train.torch.get_device(),
                      prefetch=config["prefetch"])
    return stats.rates(step, config["repeats"], config["warmup"])


def fit_one_worker(loop, config: dict, datasets: tuple | None, storage: str, name: str):
    """``TorchTrainer(loop).fit()`` with one 1-CPU worker (a sweep trial's) and, if given, the
    ``(train, val, …)`` of ``load_datasets`` attached as a training run attaches them; the fit's result."""
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    from ..training.trainer import data_config, scaling_config

    attached = {}
    if datasets is not None:
        sets, files = trainer_datasets(datasets[0], datasets[1])
        attached, config = {"datasets": sets, "dataset_config": data_config()}, {**config, **files}
    return TorchTrainer(loop, train_loop_config=config, scaling_config=scaling_config(TrainConfig()),
                        run_config=RunConfig(name=name, storage_path=storage), **attached).fit()


def _train_worker_rates(train_ds, val_ds, info, opts) -> list[float]:
    config = {"warmup": opts.warmup, "repeats": opts.repeats, "batch_size": opts.batch_size,
              "shuffle_buffer": TrainConfig().shuffle_buffer, "records": info.train_records,
              "length": info.segment_length, "prefetch": not info.materialized}
    with tempfile.TemporaryDirectory(prefix="ecg_bench_feed_", ignore_cleanup_errors=True) as storage:
        return list(fit_one_worker(feed_loop, config, (train_ds, val_ds), storage, "feed").return_value)


def _ray_rows(opts, rows: dict, notes: list[str], length: int) -> None:
    from ..training.trainer import init_ray

    init_ray()
    for key, materialize in (("ray_streaming", False), ("ray_materialized", True)):
        train_ds, _, info = load_datasets(opts.prepared, None, materialize=materialize, max_records=opts.feed_records)
        step = _crop_step(train_ds, info.train_records, length, opts.batch_size, prefetch=not materialize)
        rows[key] = stats.rates(step, opts.repeats, opts.warmup)
    del train_ds, step  # free the materialized copy before the sweep path loads its own
    train_ds, val_ds, info = load_datasets(opts.prepared, None, materialize=None, max_records=opts.feed_records)
    rows["train_worker"] = _train_worker_rates(train_ds, val_ds, info, opts)
    notes.append(f"sweep path: the data {'materialized' if info.materialized else 'streamed'} (as `load_datasets` "
                 f"decides for this size), one TorchTrainer worker with 1 CPU, as a sweep trial")


def run(opts) -> dict:
    data = load_training_records(opts.prepared, opts.feed_records)
    signals, labels, length = data.signals, data.labels, data.segment_length
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a 1-CPU sweep trial's worker
    try:
        rows = {"numpy_slicing": stats.rates(_crop_step(data.shard(), len(labels), length, opts.batch_size),
                                             opts.repeats, opts.warmup),
                "dataloader": stats.rates(_dataloader_step(signals, labels, length, opts.batch_size),
                                          opts.repeats, opts.warmup)}
        notes = [f"data: {data.describe()}; {CROPS} crops of {length} samples per record per pass",
                 f"batch size {opts.batch_size}, one torch thread; (c) crops each record with "
                 "preprocess.random_crops in its Dataset, every other path with feed.crop_batches (records read "
                 "in place from pyarrow in chunks of 1,024, crops mixed in a crop shuffle buffer); Ray's prefetch "
                 "thread only for (a), streamed from storage (for data in the object store it only contends for the "
                 "GIL)"]
        if ray_available():
            _ray_rows(opts, rows, notes, length)
        else:
            notes.append("Ray rows skipped: ray is not installed")
    finally:
        torch.set_num_threads(threads)
    return {"rows": {k: stats.summarize(v) for k, v in rows.items()}, "segments": len(labels) * CROPS,
            "notes": notes}


def render(result: dict, context: dict) -> str:
    rows = result["rows"]
    ref = rows.get("dataloader")  # (c), the reference
    table = [[label, *summary_cells(rows.get(key)), fmt_ratio(stats.ratio(rows.get(key), ref))]
             for key, label in ROWS if key in rows]
    notes = list(result.get("notes", []))
    if sweep := rows.get("train_worker"):  # the sweep path
        r = stats.ratio(sweep, ref)
        notes.append(f"target: sweep path ≥ {TARGET_RATIO}× of (c): {r:.2f}× — "
                     + ("**met**" if r >= TARGET_RATIO else "**NOT met**"))
        if fastest := context.get("fastest_train_rate"):
            name, rate = fastest
            notes.append(f"target: feed far above the fastest model's training rate ({name}, bare torch "
                         f"{fmt(rate)} crops/s): sweep path is {sweep['median'] / rate:.0f}× that — "
                         + ("**met**" if sweep["median"] >= 5 * rate else "**NOT met** (< 5×)"))
    return section_body(markdown_table(["path", "crops/s (median)", "min", "max", "× (c)"], table), notes)
