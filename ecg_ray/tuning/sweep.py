"""``ecg-ray sweep``: the factorial grid as one ASHA-pruned Ray Tune experiment.

Ray 2.60 / Train V2 pattern: each Tune trial runs ``run_trial``, a function
that launches the ``TorchTrainer`` of ``training.trainer``; its workers call
``ray.train.report`` and a ``TuneReportCallback`` forwards every epoch to Tune,
where ASHA decides who goes on. The trial driver itself holds no CPU (it only
waits), so on a 2-core machine all logical CPUs go to Train workers; the
datasets are read and materialized once per sweep and handed to every trial.
A killed sweep resumes with ``Tuner.restore``: finished trials are kept,
unfinished ones restart from their last Train checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from ..training.config import TrainConfig
from ..training.feed import load_datasets
from ..training.trainer import init_ray, make_trainer
from .search_space import SweepSpec, to_tune

#: Resources of the trial driver: it only waits on the TorchTrainer it launched.
TIME_ATTR = "epochs_done"
#: Ray refuses an all-zero request, so it asks for a token of memory and no CPU.
TRIAL_DRIVER_RESOURCES = {"CPU": 0, "memory": 64 * 2**20}


def run_trial(config: dict, train_ds=None, val_ds=None, info=None, preprocess=None, experiment_path=None):
    """One Tune trial: a TorchTrainer run whose epochs are reported to Tune."""
    cfg = TrainConfig.from_dict(config)
    trial_id = tune.get_context().get_trial_id()
    trainer = make_trainer(cfg, train_ds, val_ds, info, preprocess, storage_path=experiment_path,
                           name=f"train_{trial_id}", callbacks=[TuneReportCallback()], max_failures=0)
    trainer.fit()


def _scheduler(spec: SweepSpec):
    s = spec.scheduler
    if s.get("type", "asha") == "fifo":
        return FIFOScheduler()
    # ASHA counts epochs as the runs report them (``epochs_done``), not Tune's
    # iterations, which restart at 0 when a killed trial resumes from its checkpoint.
    return ASHAScheduler(time_attr=TIME_ATTR, max_t=int(s.get("max_t", 20)),
                         grace_period=int(s.get("grace_period", 1)),
                         reduction_factor=float(s.get("reduction_factor", 3)))


def trial_param_space(spec: SweepSpec, gpus_per_trial: float) -> dict:
    """The Tune param space: the spec's factors plus per-trial resources."""
    res = spec.resources
    space = dict(spec.param_space)
    space.setdefault("num_epochs", int(spec.scheduler.get("max_t", 20)))
    space["num_workers"] = int(res.get("num_workers") or 1)
    space["cpus_per_worker"] = float(res.get("cpus_per_trial") or 1) / space["num_workers"]
    if gpus_per_trial:
        space["use_gpu"] = True
        space["gpus_per_worker"] = gpus_per_trial / space["num_workers"]
    space["max_records"] = spec.data.get("max_records")
    space["val_fold"] = spec.data.get("val_fold")
    return to_tune(space)


def experiment_dir(storage: str, name: str) -> str:
    return storage.rstrip("/") + "/" + name


def run_sweep(spec: SweepSpec, prepared: Path, storage: str, *, resume: bool = False,
              address: str | None = None, gpus_per_trial: float | None = None,
              max_concurrent: int | None = None, verbose: int = 1):
    """Run (or resume) the sweep; returns Tune's ``ResultGrid``."""
    from ..data import store

    storage = storage if "://" in storage else str(Path(storage).resolve())
    path = experiment_dir(storage, spec.name)
    init_ray(address)
    manifest = store.read_manifest(prepared)
    t0 = time.perf_counter()
    train_ds, val_ds, info = load_datasets(prepared, spec.data.get("val_fold"),
                                           materialize=spec.data.get("materialize"),
                                           max_records=spec.data.get("max_records"))
    print(f"sweep {spec.name}: {info.train_records} training records ({info.train_segments} segments), "
          f"{info.val_records} validation records; data {'materialized once' if info.materialized else 'streamed'} "
          f"in {time.perf_counter() - t0:.1f} s → {path}", file=sys.stderr, flush=True)

    gpus = spec.resources.get("gpus_per_trial", 0) if gpus_per_trial is None else gpus_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, train_ds=train_ds, val_ds=val_ds, info=info,
                             preprocess=manifest["preprocess"], experiment_path=path),
        TRIAL_DRIVER_RESOURCES)
    if resume:
        if not tune.Tuner.can_restore(path):
            raise FileNotFoundError(f"no sweep to resume at {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=trial_param_space(spec, gpus))
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=trial_param_space(spec, gpus),
            tune_config=tune.TuneConfig(
                metric=spec.metric, mode=spec.mode, scheduler=_scheduler(spec), num_samples=spec.num_samples,
                max_concurrent_trials=max_concurrent or spec.resources.get("max_concurrent_trials"),
            ),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                verbose=verbose,
            ),
        )
    grid = tuner.fit()
    (Path(path) / "ecg_ray_sweep.json").write_text(json.dumps(
        {"spec": spec.path, "name": spec.name, "prepared": str(Path(prepared).resolve()),
         "config_hash": manifest["config_hash"], "feed": info.to_dict(), "argv": sys.argv,
         "seconds": round(time.perf_counter() - t0, 1)}, indent=1)) if "://" not in path else None
    return grid
