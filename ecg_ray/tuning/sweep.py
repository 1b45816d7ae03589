"""``ecg-ray sweep``: the factorial grid as one ASHA-pruned Ray Tune experiment.

Ray 2.60 / Train V2 pattern: each Tune trial runs ``run_trial``, a function that launches the
``TorchTrainer`` of ``training.trainer``; its workers call ``ray.train.report`` and a
``TuneReportCallback`` forwards every epoch to Tune, where ASHA decides who goes on. The trial
driver itself holds no CPU (it only waits), so on a 2-core machine all logical CPUs go to Train
workers; the datasets are read and materialized once per sweep and handed to every trial.

Because a trial driver asks for no CPU, Tune would start every trial of the grid at once
(each with its Train controller and placement group, waiting): ``max_concurrent_trials``
is therefore always bounded, by the spec, by ``--max-concurrent``, or by what the
cluster's CPUs and GPUs fit (``concurrency_bound``). On a multi-node cluster the storage
must be a URI or a filesystem every node mounts (``check_storage``).

A killed sweep resumes with ``Tuner.restore``: finished trials are kept, unfinished ones
restart from their last Train checkpoint. ``print_sweep_summary`` is the console's trial
table; ``run_stage2`` runs a spec's fixed-budget stage 2 and prints its answer.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from .. import HEADLINE
from ..artifacts import log_stderr, verbose as ray_verbose
from ..training.config import TrainConfig
from ..training.feed import load_datasets
from ..training.trainer import check_gpus_per_worker, init_ray, make_trainer
from .search_space import SCHEDULER_DEFAULTS, SweepSpec, to_tune

TIME_ATTR = "epochs_done"
#: Resources of the trial driver: it only waits on the TorchTrainer it launched. Ray refuses an
#: all-zero request, so it asks for a token of memory and no CPU (hence ``trial_limit``). It runs
#: on the head node: Train V2 puts the run's controller and placement-group cleaner on the driver's
#: node, so a driver on a worker node that is lost takes them along, and the workers' placement
#: group (owned by the dead controller, living as long as the job) is never removed: Ray
#: reschedules its lost bundles onto the next node that joins and the sweep waits on those CPUs
#: forever. On the head, losing a worker node only loses Train workers.
TRIAL_DRIVER_RESOURCES = {"CPU": 0, "memory": 64 * 2**20, "node:__internal_head__": 0.001}
#: Directories (``os.pathsep``-separated) mounted at the same path on every node
#: (NFS, EFS): a ``--storage`` under one of them is fine on a multi-node cluster.
SHARED_STORAGE_ENV = "ECG_RAY_SHARED_STORAGE"


class StorageError(ValueError):
    """``--storage`` that the trials of a multi-node cluster cannot all reach."""


def run_trial(config: dict, train_ds=None, val_ds=None, info=None, preprocess=None, experiment_path=None):
    """One Tune trial: a TorchTrainer run whose epochs are reported to Tune."""
    cfg = TrainConfig.from_dict(config)
    trial_id = tune.get_context().get_trial_id()
    trainer = make_trainer(cfg, train_ds, val_ds, info, preprocess, storage_path=experiment_path,
                           name=f"train_{trial_id}", callbacks=[TuneReportCallback()], max_failures=0)
    trainer.fit()


def _scheduler(spec: SweepSpec):
    s = {**SCHEDULER_DEFAULTS, **spec.scheduler}
    if s["type"] == "fifo":
        return FIFOScheduler()
    # ASHA counts epochs as the runs report them (``epochs_done``), not Tune's
    # iterations, which restart at 0 when a killed trial resumes from its checkpoint.
    return ASHAScheduler(time_attr=TIME_ATTR, max_t=int(s["max_t"]), grace_period=int(s["grace_period"]),
                         reduction_factor=float(s["reduction_factor"]))


def trial_param_space(spec: SweepSpec, gpus_per_trial: float) -> dict:
    """The Tune param space: the spec's factors plus per-trial resources."""
    space = dict(spec.param_space)
    space.setdefault("num_epochs", int(spec.scheduler.get("max_t", SCHEDULER_DEFAULTS["max_t"])))
    space["num_workers"] = int(spec.resources.get("num_workers") or 1)
    space["cpus_per_worker"] = cpus_per_trial(spec) / space["num_workers"]
    if gpus_per_trial:
        space["use_gpu"] = True
        try:
            space["gpus_per_worker"] = check_gpus_per_worker(gpus_per_trial / space["num_workers"],
                                                             space["num_workers"])
        except ValueError as e:
            raise ValueError(f"sweep {spec.name}: gpus_per_trial {gpus_per_trial:g} over "
                             f"num_workers {space['num_workers']}: {e}") from None
    space.update(max_records=spec.data.get("max_records"), val_fold=spec.data.get("val_fold"))
    return to_tune(space)


def cpus_per_trial(spec: SweepSpec) -> float:
    return float(spec.resources.get("cpus_per_trial") or 1)


def concurrency_bound(total: dict, cpus_per_trial: float, gpus_per_trial: float = 0) -> int:
    """How many trials fit at once in ``total`` (``ray.cluster_resources()``): at least 1."""
    fits = [math.floor(total.get("CPU", 0) / cpus_per_trial + 1e-9)] if cpus_per_trial > 0 else []
    if gpus_per_trial:
        fits.append(math.floor(total.get("GPU", 0) / gpus_per_trial + 1e-9))
    return max(1, min(fits, default=1))


def trial_limit(spec: SweepSpec, gpus_per_trial: float, override: int | None, total: dict) -> int:
    """``max_concurrent_trials``: ``override``, else the spec's, else ``concurrency_bound``."""
    limit = override or spec.resources.get("max_concurrent_trials")
    if limit is None:
        limit = concurrency_bound(total, cpus_per_trial(spec), gpus_per_trial)
        log_stderr(f"sweep {spec.name}: at most {limit} trials at once, what {total.get('CPU', 0):g} CPUs and "
                   f"{total.get('GPU', 0):g} GPUs fit (on an autoscaling cluster set "
                   "resources.max_concurrent_trials or --max-concurrent)")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"sweep {spec.name}: max_concurrent_trials must be an integer >= 1, got {limit!r}")
    return limit


def check_storage(storage: str, alive_nodes: int, shared: list[str] = ()) -> None:
    """Refuse a node-local ``storage`` when trials may run on other nodes.

    Fine: a URI (``s3://``, ``gs://``, ...; not ``file://``), a single-node Ray, or a path under one
    of the ``shared`` roots. Otherwise each node would write its trials' results
    and checkpoints to its own disk, out of the driver's reach."""
    local = storage.removeprefix("file://")
    if "://" in local or alive_nodes <= 1:
        return
    path = Path(local).expanduser().resolve()
    if any(path.is_relative_to(Path(root).expanduser().resolve()) for root in shared):
        return
    raise StorageError(
        f"--storage {storage!r} is a folder on this node's own disk ({path}), but the Ray cluster has "
        f"{alive_nodes} nodes: trials on the other nodes could not write their results and checkpoints "
        f"there. Use a URI (s3://bucket/prefix, gs://...) or a folder on a filesystem mounted at the same "
        f"path on every node, and mark that filesystem shared: {SHARED_STORAGE_ENV}=/mnt/efs "
        f"(several: separated by {os.pathsep!r}).")


def storage_root(storage) -> str:
    """Where experiments are stored: a URI as given, a local path made absolute (Tune needs one)."""
    return str(storage) if "://" in str(storage) else str(Path(storage).resolve())


def experiment_dir(storage: str, name: str) -> str:
    return storage.rstrip("/") + "/" + name


class EpochLines(tune.Callback):
    """One console line per trial-epoch (and per failure), in place of Tune's status
    tables: ``$ECG_RAY_VERBOSE`` brings those back."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        cfg = trial.config
        augment = cfg.get("augment")
        augment = ",".join(augment) or "none" if isinstance(augment, list) else augment
        print(f"{trial.trial_id}  {cfg.get('model')}/{cfg.get('imbalance')}/{augment} seed {cfg.get('seed')}  "
              f"epoch {int(result.get('epochs_done', 0))}  F1(N,A,O) {result.get(HEADLINE, float('nan')):.3f}  "
              f"AUROC {result.get('val_auroc_macro', float('nan')):.3f}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"{trial.trial_id}  failed (retried while max_failures allows): {trial.path}", flush=True)


def make_tuner(trainable, spec: SweepSpec, storage: str, param_space: dict, max_concurrent: int,
               verbose: int | None = None, reuse_actors: bool = False) -> tune.Tuner:
    """A new sweep's ``Tuner``: at most ``max_concurrent`` trials run at once."""
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, scheduler=_scheduler(spec), num_samples=spec.num_samples,
            max_concurrent_trials=max_concurrent, reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            verbose=verbose if verbose is not None else int(ray_verbose()), callbacks=[EpochLines()],
        ),
    )


def run_sweep(spec: SweepSpec, prepared: Path, storage: str, *, resume: bool = False,
              address: str | None = None, gpus_per_trial: float | None = None,
              max_concurrent: int | None = None, verbose: int | None = None):
    """Run (or resume) the sweep; returns Tune's ``ResultGrid``."""
    from ..data import store

    gpus = spec.resources.get("gpus_per_trial", 0) if gpus_per_trial is None else gpus_per_trial
    param_space = trial_param_space(spec, gpus)  # refuses GPU shares DDP cannot use, before any work
    # the console is the driver's: one line per trial-epoch (EpochLines); what trials, Train workers and
    # Ray's own actors print stays in the session logs unless $ECG_RAY_VERBOSE. Tune's new console output
    # prints a settings box even at verbose=0 (for a new and a restored sweep alike); the legacy one is silent there.
    init_ray(address, worker_logs=ray_verbose())
    if not ray_verbose():
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    shared = [p for p in os.environ.get(SHARED_STORAGE_ENV, "").split(os.pathsep) if p]  # mounted on every node
    check_storage(storage, sum(1 for node in ray.nodes() if node.get("Alive")), shared)
    storage = storage_root(storage)
    path = experiment_dir(storage, spec.name)
    limit = trial_limit(spec, gpus, max_concurrent, ray.cluster_resources())
    manifest = store.read_manifest(prepared)
    t0 = time.perf_counter()
    train_ds, val_ds, info = load_datasets(prepared, spec.data.get("val_fold"),
                                           materialize=spec.data.get("materialize"),
                                           max_records=spec.data.get("max_records"))
    fed = "materialized once" if info.materialized else "streamed"
    log_stderr(f"sweep {spec.name}: {info.train_records} training records ({info.train_segments} segments), "
               f"{info.val_records} validation records; data {fed} in {time.perf_counter() - t0:.1f} s → {path}")

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, train_ds=train_ds, val_ds=val_ds, info=info,
                             preprocess=manifest["preprocess"], experiment_path=path),
        TRIAL_DRIVER_RESOURCES)
    if resume:
        if not tune.Tuner.can_restore(path):
            raise FileNotFoundError(f"no sweep to resume at {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=param_space)
    else:
        tuner = make_tuner(trainable, spec, storage, param_space, limit, verbose)
    grid = tuner.fit()
    if "://" not in path:
        (Path(path) / "ecg_ray_sweep.json").write_text(json.dumps(
            {"spec": spec.path, "name": spec.name, "prepared": str(Path(prepared).resolve()),
             "config_hash": manifest["config_hash"], "feed": info.to_dict(), "argv": sys.argv,
             "seconds": round(time.perf_counter() - t0, 1)}, indent=1))
    return grid


def print_sweep_summary(grid, spec: SweepSpec) -> None:
    """The trial table (iterations show ASHA's early stops) and the best trial."""
    from ..training.augment import augment_label

    rows = []
    for result in grid:
        cfg, m = result.config or {}, result.metrics or {}
        rows.append((cfg.get("model"), cfg.get("imbalance"), augment_label(cfg.get("augment")),
                     int(m.get("epochs_done", 0)), m.get(spec.metric, float("nan")), "error" if result.error else ""))
    print(f"{'model':<12}{'imbalance':<10}{'augment':<34}{'epochs':>7}{spec.metric:>14}")
    for r in sorted(rows, key=lambda r: -(r[4] if r[4] == r[4] else -1)):
        print(f"{r[0]!s:<12}{r[1]!s:<10}{r[2]!s:<34}{r[3]:>7}{r[4]:>14.4f} {r[5]}")
    max_t = max((r[3] for r in rows), default=0)
    stopped = sum(1 for r in rows if 0 < r[3] < max_t)
    print(f"{len(rows)} trials, {stopped} stopped early by {spec.scheduler.get('type', 'asha').upper()}, "
          f"{sum(r[3] for r in rows)} trial-epochs (exhaustive: {len(rows) * max_t})")
    try:
        best = grid.get_best_result(metric=spec.metric, mode=spec.mode)
        print(f"best trial: {best.path}\n  " + json.dumps(
            {k: best.config.get(k) for k in ("model", "imbalance", "augment", "lr", "seed")}) +
            f"\n  {spec.metric} = {best.metrics.get(spec.metric):.4f}")
    except RuntimeError as e:
        print(f"no best trial: {e}")


def run_stage2(spec: SweepSpec, best_config: dict, prepared: Path, storage: str, *, resume: bool = False,
               **where) -> int:
    """Stage 2: the fixed-budget multi-seed factorial (around stage 1's best for any sampled entry
    that is not a factor), then the answer (``tuning.effects``) printed; the exit status.
    ``where``: ``run_sweep``'s address, gpus_per_trial and max_concurrent."""
    from . import effects
    from .stages import stage2_from

    stage2 = stage2_from(spec, best_config)
    budget = stage2.param_space["num_epochs"]
    seeds = stage2.param_space["seed"]["grid_search"]
    print(f"\nstage 2: every arm {budget} epochs, seeds {seeds}, no pruning → {stage2.name}", flush=True)
    experiment = experiment_dir(storage_root(storage), stage2.name)
    grid = run_sweep(stage2, prepared, storage, resume=resume and tune.Tuner.can_restore(experiment), **where)
    if grid.errors:
        print(f"stage 2: {len(grid.errors)} trial(s) failed", file=sys.stderr)
        return 1
    trials, epochs = effects.load_tables(experiment)
    answer = effects.ablation_answer(trials, epochs, budget, spec.metric, legacy=False)
    print("\n" + effects.format_answer(answer, "table"))
    return 0
