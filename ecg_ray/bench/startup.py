"""Section ``startup``: the fixed cost of one Ray Train run and of one Tune trial,
before any training step.

Three rows, each the wall time of a run whose training function returns at once,
``--repeats`` times after ``--warmup`` untimed runs, on the Ray the bench started:
- a bare ``TorchTrainer.fit()`` (one 1-CPU worker, no datasets): the controller
  actor, the worker actor (a fresh Python process importing torch), the gloo
  process group, the train function shipped to the worker and the shutdown;
- the same with the run's datasets attached as a training run attaches them
  (``load_datasets`` on ``--train-records`` records, the run's ``DataConfig``): adds
  the streaming split's coordinator actor and the first ``iter_batches`` call;
- a one-trial ``Tuner`` whose trial function builds and fits that trainer, as a
  sweep trial does: adds the trial actor and Tune's bookkeeping.

Divided by the epochs of a run this is what a short trial pays per epoch before
training; it is why a 1-epoch trial on this machine takes ~30 s.
"""

from __future__ import annotations

import shutil
import tempfile
import time

from . import stats
from .machine import ray_available
from .stats import markdown_table, summary_cells

ROWS = [("trainer", "TorchTrainer.fit(), no datasets"),
        ("trainer_data", "TorchTrainer.fit() with the run's datasets, first batch read"),
        ("tune_trial", "one Tune trial launching that TorchTrainer")]


def _empty_loop(config: dict):
    from ..training.feed import record_chunks, train_shard

    if config.get("data"):
        next(iter(record_chunks(train_shard(config, 0, 1, 0), 0, False)), None)


def _fit(datasets, storage: str, name: str) -> None:
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    from ..training.config import TrainConfig
    from ..training.feed import trainer_datasets
    from ..training.trainer import data_config, scaling_config

    kwargs, files = {}, {}
    if datasets is not None:
        sets, files = trainer_datasets(datasets[0], datasets[1])
        kwargs = {"datasets": sets, "dataset_config": data_config()}
    TorchTrainer(_empty_loop, train_loop_config={"data": datasets is not None, **files},
                 scaling_config=scaling_config(TrainConfig()), run_config=RunConfig(name=name, storage_path=storage),
                 **kwargs).fit()


def _timed(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run(opts) -> dict:
    if not ray_available():
        return {"skipped": "ray is not installed"}
    import ray
    from ray import tune

    from ..training.feed import load_datasets
    from ..training.trainer import init_ray
    from ..tuning.sweep import TRIAL_DRIVER_RESOURCES

    init_ray()
    datasets = load_datasets(opts.prepared, None, materialize=None, max_records=opts.train_records)
    storage = tempfile.mkdtemp(prefix="ecg_bench_startup_")
    runs = iter(range(10**6))

    def trial(config):
        _fit(datasets, storage, f"trial_{next(runs)}")
        tune.report({"done": 1})

    def tune_once():
        tune.Tuner(tune.with_resources(trial, TRIAL_DRIVER_RESOURCES),
                   run_config=tune.RunConfig(name=f"tune_{next(runs)}", storage_path=storage, verbose=0)).fit()

    try:
        rows = {"trainer": _timed(lambda: _fit(None, storage, f"bare_{next(runs)}"), opts.repeats, opts.warmup),
                "trainer_data": _timed(lambda: _fit(datasets, storage, f"data_{next(runs)}"), opts.repeats,
                                       opts.warmup),
                "tune_trial": _timed(tune_once, opts.repeats, opts.warmup)}
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    notes = [f"{datasets[2].train_records} training + {datasets[2].val_records} validation records, "
             f"{'materialized' if datasets[2].materialized else 'streamed'}; one worker with 1 CPU "
             f"(a sweep trial's); Ray {ray.__version__}, Train V2"]
    return {"rows": {k: stats.summarize(v) for k, v in rows.items()}, "notes": notes}


def render(result: dict, context: dict) -> str:
    rows = result["rows"]
    table = [[label, *summary_cells(rows.get(key))] for key, label in ROWS if key in rows]
    out = [markdown_table(["run with an empty training function", "wall s (median)", "min", "max"], table)]
    out += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(out)
