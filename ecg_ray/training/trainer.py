"""Driver side of one training run: datasets + ``TorchTrainer`` + the run folder.

``make_trainer`` is shared by ``ecg-ray train`` and by every sweep trial (the
trial passes a ``TuneReportCallback`` and datasets it was handed);
``train_run`` is the stand-alone command: it fits, then writes the run folder
(``model.pt`` of the best epoch, ``history.json``, ``results.json``).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import ray
import ray.train
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from .. import HEADLINE
from ..artifacts import Run, log_stderr, provenance, verbose
from ..data.dataset import PreparedDataset
from ..data.preprocess import PreprocessConfig
from .checkpoint import FILENAME, load_checkpoint
from .config import TrainConfig
from .feed import FeedInfo, load_datasets, trainer_datasets
from .worker import train_loop_per_worker


def log_level() -> str:
    """Ray's console chatter: WARNING unless $ECG_RAY_VERBOSE is set."""
    return "INFO" if verbose() else "WARNING"


def check_gpus_per_worker(gpus: float, num_workers: int) -> float:
    """``gpus`` per Train worker, or a ``ValueError`` if Ray or NCCL would refuse it.

    Fractional GPUs pack *trials* on a GPU; the DDP ranks of one trial each need a
    GPU of their own (NCCL: "Duplicate GPU detected"), and Ray takes amounts above 1
    only as whole numbers."""
    if gpus <= 0:
        raise ValueError(f"GPUs per worker must be > 0, got {gpus:g}")
    if num_workers > 1 and gpus < 1:
        raise ValueError(
            f"{num_workers} DDP workers with {gpus:g} GPU each would put ranks of one trial on the same "
            f"GPU, which NCCL refuses (\"Duplicate GPU detected\"). Give each worker a whole GPU "
            f"(GPUs per trial >= num_workers = {num_workers}), or use num_workers: 1 to pack trials on a GPU.")
    if gpus > 1 and not float(gpus).is_integer():
        raise ValueError(f"{gpus:g} GPUs per worker: Ray accepts fractions of one GPU only, "
                         "amounts above 1 must be whole numbers")
    return gpus


def scaling_config(cfg: TrainConfig) -> ScalingConfig:
    """Ray Train's workers for ``cfg``; refuses GPU shares that DDP cannot use."""
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = check_gpus_per_worker(cfg.gpus_per_worker or 1, cfg.num_workers)
    return ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources)


def data_config() -> DataConfig:
    """Only the training set is split over workers (``equal=True`` there: every rank gets
    as many records); validation reaches every worker whole, each scoring every world-th
    record, so none is dropped. ``preserve_order`` is set in these options, which Train
    applies to the shards (a trial's TorchTrainer does not see the driver's DataContext);
    built here since ``DataConfig.default_ingest_options()`` passes the deprecated
    ``exclude_resources`` and warns on every trial."""
    from ray.data import DataContext, ExecutionOptions

    current = DataContext.get_current().execution_options
    options = ExecutionOptions(resource_limits=current.resource_limits, preserve_order=True,
                               verbose_progress=current.verbose_progress)
    return DataConfig(datasets_to_split=["train"], execution_options=options)


def make_trainer(cfg: TrainConfig, train_ds, val_ds, info: FeedInfo, preprocess: dict, *,
                 storage_path: str, name: str, callbacks=(), max_failures: int = 0) -> TorchTrainer:
    # Ray Train gives a worker group 60 s to start; on a busy 2-core node (a trial's workers
    # queued behind others) that fails trials which would have started. Ray passes this
    # variable from the process that builds the trainer to its controller.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "600")
    datasets, files = trainer_datasets(train_ds, val_ds)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": cfg.to_dict(), "preprocess": preprocess, **info.to_dict(), **files,
                           "provenance": provenance(PreprocessConfig.from_dict(preprocess).hash)},
        scaling_config=scaling_config(cfg),
        datasets=datasets,
        dataset_config=data_config(),
        run_config=RunConfig(
            name=name, storage_path=storage_path, callbacks=list(callbacks),
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=HEADLINE,
                                               checkpoint_score_order="max"),
            failure_config=FailureConfig(max_failures=max_failures),
            logging_config=ray.train.LoggingConfig(log_level=log_level()),
        ),
    )


RUN_NAME = "ray_train"  # Ray Train's folder inside a run folder


class EpochPrinter(ray.train.UserCallback):
    """One progress line per epoch on the driver's console."""

    def after_report(self, run_context, metrics, checkpoint):
        m = metrics[0]
        log_stderr(f"epoch {m['epoch'] + 1:3d}  loss {m['train_loss']:.3f}  acc {m['train_acc']:.3f}  "
                   f"val F1(N,A,O) {m[HEADLINE]:.3f} (seg {m['val_seg_f1_cinc']:.3f})  "
                   f"AUROC {m['val_auroc_macro']:.3f}  lr {m['lr']:.2g}  {m['segments_per_s']:,.0f} seg/s")


#: Ray Data's logging config as Ray documents it ("Configuring logging" in Ray Data's
#: monitoring guide), with the console at WARNING: the split coordinators that feed
#: Train workers are Ray actors and would print three INFO lines per dataset per epoch.
RAY_DATA_LOGGING = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"ray": {"format": "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"}},
    "handlers": {
        "file": {"class": "ray.data._internal.logging.SessionFileHandler", "formatter": "ray",
                 "filename": "ray-data.log"},
        "console": {"class": "ray._private.log.PlainRayHandler", "formatter": "ray", "level": "WARNING"},
    },
    "loggers": {"ray.data": {"level": "DEBUG", "handlers": ["file", "console"], "propagate": False}},
}


def quiet_ray_data_env() -> dict:
    """Env vars that keep Ray Data's INFO lines off every worker's console (they stay
    in each session's ``ray-data.log``); none with ``$ECG_RAY_VERBOSE``."""
    if verbose():
        return {}
    import yaml

    path, text = Path(tempfile.gettempdir()) / "ecg_ray" / "ray_data_logging.yaml", yaml.safe_dump(RAY_DATA_LOGGING)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return {"RAY_DATA_LOGGING_CONFIG": str(path)}


def remove_leaked_placement_groups(log=log_stderr) -> int:
    """Remove the placement groups that jobs which have ended still hold; how many.

    A job stopped while one of its trials starts (``ray job stop`` of a sweep, to resume it)
    can leave that trial's worker placement group reserved: it was created just as Ray
    ended the job, so Ray never frees it, and a resumed sweep (or any later run) that needs
    those CPUs waits forever (seen with Ray 2.60 on the local 3-node test cluster). A
    non-detached group whose creator job has ended can have no user, so removing it is safe.
    ``init_ray`` calls this whenever it joins a running cluster. Needs Ray's state API (the
    dashboard); without it, nothing is done."""
    from ray.util import state
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    try:
        ended = {j.job_id for j in state.list_jobs(detail=True) if str(j.status).split(".")[-1]
                 in ("STOPPED", "SUCCEEDED", "FAILED")}
        groups = state.list_placement_groups(detail=True, limit=10_000)
    except Exception as e:  # no dashboard, an older cluster: leave Ray's bookkeeping alone
        log(f"ray: placement groups not checked ({type(e).__name__}: {e})")
        return 0
    leaked = [g for g in groups if g.state == "CREATED" and not g.is_detached and g.creator_job_id in ended]
    for g in leaked:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(g.placement_group_id))))
        log(f"ray: removed placement group {g.placement_group_id} left reserved by ended job {g.creator_job_id}")
    return len(leaked)


def init_ray(address: str | None = None, num_cpus: int | None = None, worker_logs: bool = True, *,
             object_store_memory: int | None = None, include_dashboard: bool | None = None) -> None:
    """Connect to ``address`` (or a running cluster) or start a local Ray. ``worker_logs``:
    forward what Ray's workers and actors print to this console (off for sweeps: they
    stay in the session's log files). ``object_store_memory`` (bytes) and ``include_dashboard`` go
    to ``ray.init`` (the scale bench caps the store and keeps the dashboard out)."""
    if ray.is_initialized():
        return
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # deterministic batches under a seed
    ctx.enable_progress_bars = False
    level = log_level()
    local = not (address or os.environ.get("RAY_ADDRESS"))
    # $ECG_RAY_TMPDIR gives a local Ray its own session folder (tests use it to clean up).
    temp_dir = os.environ.get("ECG_RAY_TMPDIR") if local else None
    runtime_env = None
    if local:
        # Ray Train's PlacementGroupCleaner frees a stopped trial's resources through the
        # state API, which finds "the" cluster by scanning the machine: with a second Ray
        # on the same machine it gives up and ASHA-stopped trials leak their CPUs. So the
        # GCS port is chosen here and every worker is told the address explicitly.
        with socket.socket() as s:  # a TCP port free on this machine now
            s.bind(("", 0))
            port = s.getsockname()[1]
        os.environ["RAY_GCS_SERVER_PORT"] = str(port)
        runtime_env = {"env_vars": {"RAY_ADDRESS": f"{ray.util.get_node_ip_address()}:{port}",
                                    **quiet_ray_data_env()}}
    ray.init(address=address, num_cpus=num_cpus, include_dashboard=include_dashboard, _temp_dir=temp_dir,
             object_store_memory=object_store_memory, runtime_env=runtime_env,
             log_to_driver=worker_logs, logging_config=ray.LoggingConfig(encoding="TEXT", log_level=level),
             configure_logging=True, logging_level=level)
    logging.getLogger("ray.data").setLevel(level if verbose() else "ERROR")
    if not local:  # a running cluster: what an ended job left reserved must not block this one
        remove_leaked_placement_groups()


def train_run(cfg: TrainConfig, prepared: Path, out: Path, *, address: str | None = None,
              resume: bool = False, force: bool = False, selection: str | None = None) -> dict:
    """Train one config stand-alone and write the run folder ``out``; returns results.

    An existing run in ``out`` is continued from its last checkpoint with ``resume`` (Ray
    Train restores it by name), replaced with ``force``. ``model.pt`` is the best epoch's
    checkpoint; with ``selection`` (why, written to ``results.json``) the last epoch's, as for a final model."""
    out = Path(out).resolve()
    if (out / RUN_NAME).exists():
        if force:
            shutil.rmtree(out / RUN_NAME)
        elif not resume:
            raise FileExistsError(f"run folder already holds a run: {out} (use --resume to continue it, "
                                  "--force to start over, or another --out)")
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedDataset(prepared)
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    init_ray(address)
    train_ds, val_ds, info = load_datasets(prepared, cfg.val_fold, materialize=cfg.materialize,
                                           max_records=cfg.max_records)
    log_stderr(f"train: {cfg.model} on {info.train_records} records ({info.train_segments} segments), "
               f"validating on {info.val_records} records; data {'materialized' if info.materialized else 'streamed'}")
    result = make_trainer(cfg, train_ds, val_ds, info, data.manifest["preprocess"],
                          storage_path=str(out), name=RUN_NAME, callbacks=[EpochPrinter()]).fit()
    kept = result.checkpoint if selection else (result.get_best_checkpoint(HEADLINE, "max") or result.checkpoint)
    with kept.as_directory() as d:
        shutil.copy(Path(d) / FILENAME, out / FILENAME)
    with result.checkpoint.as_directory() as d:
        history = load_checkpoint(d)["history"]
    calibration = None
    if cfg.calibrate:  # temperature on the validation records, stored in model.pt
        from .calibration import calibrate_checkpoint

        _, val_ids = data.select(cfg.val_fold, cfg.max_records)
        calibration = calibrate_checkpoint(out / FILENAME, prepared, val_ids, log=log_stderr)
    best_payload = load_checkpoint(out / FILENAME)
    results = {
        "model": cfg.model,
        "config": cfg.to_dict(),
        "data": {"prepared": str(data.path.resolve()), "config_hash": data.config_hash, **info.to_dict()},
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 1),
        "epochs": len(history),
        "best_epoch": best_payload["epoch"],
        "early_stopped": bool(history[-1]["early_stopped"]),
        "best_metrics": best_payload["metrics"],
        "final_metrics": history[-1],
        "calibration": calibration,
        "provenance": provenance(data.config_hash),
        **({"selection": selection} if selection else {}),
    }
    Run(out).write(results, history)
    return results
