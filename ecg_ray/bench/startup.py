"""Section ``startup``: the fixed cost of one Ray Train run and of one Tune trial, before any training step.

Three rows, each the wall time of a run whose training function returns at once, ``--repeats`` times after
``--warmup`` untimed runs, on the Ray the bench started:
- a bare ``TorchTrainer.fit()`` (one 1-CPU worker, no datasets): the controller actor, the worker actor (a
  fresh Python process importing torch), the gloo process group, the train function shipped to the worker and
  the shutdown;
- the same with the run's datasets attached as a training run attaches them (``load_datasets`` on
  ``--train-records`` records, the run's ``DataConfig``): adds the streaming split's coordinator actor and the
  first ``iter_batches`` call;
- a one-trial ``Tuner`` whose trial function builds and fits that trainer, as a sweep trial does: adds the
  trial actor and Tune's bookkeeping.

Divided by the epochs of a run this is what a short trial pays per epoch before training; it is why a 1-epoch
trial on this machine takes ~30 s.

The bare run is split in two: from ``fit()`` to the first line of the training function on the worker
(controller, placement group, worker process, process group), and from its last line to ``fit()``'s return
(the controller notices the end at its next poll of the workers, every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``,
then shuts the group down). Two more rows rerun it with one of Train V2's knobs turned: that poll every 0.2 s
instead of 2 s, and no ``PreemptionWatcher`` actor.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

from . import stats
from .machine import ray_available
from .stats import markdown_table, section_body, summary_cells, timed

ROWS = [("trainer", "TorchTrainer.fit(), no datasets"),
        ("trainer_until_loop", "… of which fit() → training function's first line"),
        ("trainer_after_loop", "… of which its last line → fit() returns"),
        ("trainer_poll_0.2", "TorchTrainer.fit(), RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.2"),
        ("trainer_no_preemption", "TorchTrainer.fit(), RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0"),
        ("trainer_data", "TorchTrainer.fit() with the run's datasets, first batch read"),
        ("tune_trial", "one Tune trial launching that TorchTrainer")]


#: Train V2's knobs that the knob rows turn, and their values there
KNOBS = {"trainer_poll_0.2": ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"),
         "trainer_no_preemption": ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")}


def _empty_loop(config: dict):
    from ..training.feed import record_chunks, train_shard

    started = time.time()
    if config.get("data"):
        next(iter(record_chunks(train_shard(config, 0, 1, 0), 0, False)), None)
    # the bench's Ray is local: the worker hands its times back through a file
    Path(config["marks"]).write_text(json.dumps({"started": started, "ended": time.time()}))


def _fit(datasets, storage: str, name: str) -> dict:
    """Fit a trainer whose loop returns at once; ``{started, ended, called, returned}``
    in ``time.time()`` seconds (the first two read on the worker)."""
    from .feed import fit_one_worker

    marks = Path(storage) / f"{name}.json"
    called = time.time()
    fit_one_worker(_empty_loop, {"data": datasets is not None, "marks": str(marks)}, datasets, storage, name)
    return {**json.loads(marks.read_text()), "called": called, "returned": time.time()}


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
    runs = itertools.count()

    def trial(config):
        _fit(datasets, storage, f"trial_{next(runs)}")
        tune.report({"done": 1})

    def tune_once():
        tune.Tuner(tune.with_resources(trial, TRIAL_DRIVER_RESOURCES),
                   run_config=tune.RunConfig(name=f"tune_{next(runs)}", storage_path=storage, verbose=0)).fit()

    def bare():
        return _fit(None, storage, f"bare_{next(runs)}")

    # ``storage``, which the functions above write their runs into, is bound here
    with tempfile.TemporaryDirectory(prefix="ecg_bench_startup_", ignore_cleanup_errors=True) as storage:
        marks = []
        rows = {"trainer": timed(bare, opts.repeats, opts.warmup, marks),
                "trainer_until_loop": [m["started"] - m["called"] for m in marks],
                "trainer_after_loop": [m["returned"] - m["ended"] for m in marks],
                # Train V2 hands its knobs from the driver's environment to the controller it starts
                **{key: timed(mock.patch.dict(os.environ, {var: value})(bare), opts.repeats, opts.warmup)
                   for key, (var, value) in KNOBS.items()},
                "trainer_data": timed(lambda: _fit(datasets, storage, f"data_{next(runs)}"), opts.repeats,
                                      opts.warmup),
                "tune_trial": timed(tune_once, opts.repeats, opts.warmup)}
    notes = [f"{datasets[2].train_records} training + {datasets[2].val_records} validation records, "
             f"{'materialized' if datasets[2].materialized else 'streamed'}; one worker with 1 CPU "
             f"(a sweep trial's); Ray {ray.__version__}, Train V2"]
    return {"rows": {k: stats.summarize(v) for k, v in rows.items()}, "notes": notes}


def render(result: dict, context: dict) -> str:
    rows = result["rows"]
    table = [[label, *summary_cells(rows.get(key))] for key, label in ROWS if key in rows]
    return section_body(markdown_table(["run with an empty training function", "wall s (median)", "min", "max"],
                                       table), result.get("notes", []))
