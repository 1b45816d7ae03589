"""The Ray Train worker loop: one training run, one epoch per ``ray.train.report``.

Runs inside each TorchTrainer worker: builds the model (optionally from a pre-trained
front end, frozen) and moves it to the device (``prepare_model``) *before* the optimizer
is built and its state restored, so a resumed run's optimizer state lives where the
gradients do. Each epoch draws fresh random crops from the rank's shard of training
records (``feed.crop_batches``), augments on the device, steps AdamW under the configured
schedule, scores the validation records whole (``metrics.record_probabilities``) and
reports metrics plus a checkpoint that can resume the run or be evaluated on its own.
"""

from __future__ import annotations

import logging
import tempfile
import time

import numpy as np
import ray.train.torch  # binds ray and ray.train too
import torch
import torch.distributed as dist

from .. import HEADLINE
from ..artifacts import verbose
from ..models import batched_logits, build_model, freeze
from .augment import build_augmenter, make_generator
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .feed import crop_batches, steps_per_epoch, train_shard, val_records, window_batches
from .imbalance import build_loss, class_weights
from .metrics import score_records
from .schedule import build_scheduler, per_step
from .step import train_step


def _optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the model's trainable parameter groups; the ``recurrent`` group at ``lstm_lr`` when set."""
    groups = [{"params": [p for p in params if p.requires_grad],
               "lr": cfg.lstm_lr if (name == "recurrent" and cfg.lstm_lr) else cfg.lr, "name": name}
              for name, params in model.param_groups().items()]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay)


def _gather(value):
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, value)
        return out
    return [value]


def validate(model, dataset, device, cfg: TrainConfig, length: int, hop: int, rank: int, world: int) -> dict:
    """Metrics on the validation records: each rank scores every world-th record, the parts
    are gathered, every rank gets the same numbers. Every rank first takes rank 0's buffers
    (BatchNorm statistics): DDP sends them at each forward, so after the epoch's last step
    each rank holds its own update, and only rank 0's model is checkpointed."""
    if world > 1 and dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    model.eval()
    # per batch of this rank's records: (labels, window logits, record of each window within the batch)
    mine = [(labels, batched_logits(model, windows, 512, device), codes)
            for _, labels, windows, codes in window_batches(dataset, length=length, hop=hop, rank=rank, world=world)]
    y, logits, codes = zip(*(part for rank_parts in _gather(mine) for part in rank_parts))  # rank 0's batches first
    offsets = np.cumsum([0, *map(len, y)])  # records before each batch
    codes = [batch_codes + offset for batch_codes, offset in zip(codes, offsets)]
    return score_records(np.concatenate(y), np.concatenate(logits), np.concatenate(codes), cfg.aggregate)


def _quiet_report_dumps() -> None:
    """Ray Train V2 logs every report's whole metrics dict at INFO, under a logger named
    by its file path (outside ``ray.train``'s hierarchy, so ``LoggingConfig`` misses it),
    and Ray Data three lines per epoch for the shard's execution; the driver prints one
    line per epoch instead. ``$ECG_RAY_VERBOSE`` keeps them."""
    if verbose():
        return
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:  # another Ray layout: nothing to quiet
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(loop_config: dict) -> None:
    _quiet_report_dumps()
    cfg = TrainConfig.from_dict(loop_config["train"])
    preprocess, class_counts = loop_config["preprocess"], np.asarray(loop_config["class_counts"])
    length, hop = int(preprocess["segment_length"]), int(preprocess.get("stride") or preprocess["segment_length"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    threads = max(1, cfg.torch_threads or int(cfg.cpus_per_worker))
    torch.set_num_threads(threads)
    if rank == 0:
        print(f"worker: {threads} torch thread(s) per worker, {world} worker(s)", flush=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = ray.train.torch.get_device()

    model = build_model(cfg.model, **cfg.model_params)
    model_params = model.hparams  # every constructor argument, resolved: rebuilds the model exactly
    if cfg.init_from:  # the ``frontend.*`` weights of a checkpoint
        state = load_checkpoint(cfg.init_from)["state_dict"]
        front = {k[len("frontend."):]: v for k, v in state.items() if k.startswith("frontend.")}
        if not front:
            raise ValueError(f"--init-from {cfg.init_from}: checkpoint has no front-end weights")
        model.frontend.load_state_dict(front)
    checkpoint = ray.train.get_checkpoint()
    payload = None
    if checkpoint:  # resuming: restart after the last finished epoch
        with checkpoint.as_directory() as d:
            payload = load_checkpoint(d)
        model.load_state_dict(payload["state_dict"])
    model = ray.train.torch.prepare_model(model)  # on the device (and DDP-wrapped) before the optimizer
    raw_model = model.module if hasattr(model, "module") else model
    if cfg.freeze:
        freeze(raw_model, cfg.freeze)  # also keeps frozen BatchNorm stats in eval mode after .to(device)

    if cfg.crop_mode == "fixed":  # every non-overlapping window once per epoch
        steps = steps_per_epoch(int(loop_config["train_fixed_windows"]), world, 1, cfg.batch_size)
    else:
        steps = steps_per_epoch(int(loop_config["train_records"]), world, cfg.crops_per_record, cfg.batch_size)
    optimizer = _optimizer(raw_model, cfg)
    scheduler = build_scheduler(cfg.schedule, optimizer, total_steps=steps * cfg.num_epochs, warmup=cfg.warmup,
                                plateau_factor=cfg.plateau_factor, plateau_patience=cfg.plateau_patience)
    start_epoch, history, best, since_best = 0, [], -1.0, 0
    if payload is not None:
        optimizer.load_state_dict(payload["optimizer"])  # state tensors follow the (on-device) params
        if scheduler is not None and payload.get("scheduler"):
            scheduler.load_state_dict(payload["scheduler"])
        history = payload["history"]
        start_epoch = payload["epoch"] + 1
        best = max(h[HEADLINE] for h in history)
        since_best = start_epoch - 1 - max(h["epoch"] for h in history if h[HEADLINE] == best)
        if start_epoch >= cfg.num_epochs or history[-1].get("early_stopped"):
            # Restored after its last epoch: a sweep's driver killed between that epoch's report and
            # its own record of it restarts the trial from the old record. Report the epoch again, with
            # its checkpoint, so Tune ends on the run's real result (every rank: a report is collective).
            ray.train.report(history[-1], checkpoint=checkpoint if rank == 0 else None)
            return

    loss_fn = build_loss(cfg.imbalance, class_counts, gamma=cfg.focal_gamma, weighting=cfg.class_weighting).to(device)
    augment = build_augmenter(cfg.augment, p=cfg.augment_p)
    sample_rates = class_weights(class_counts, cfg.class_weighting) if cfg.imbalance == "sampler" else None
    shard = train_shard(loop_config, rank, world, cfg.seed)
    val_shard = val_records(loop_config)

    for epoch in range(start_epoch, cfg.num_epochs):
        model.train()
        generator = make_generator(cfg.seed * 1000 + epoch * 10 + rank, device)
        sums, start = np.zeros(3), time.perf_counter()  # summed loss, correct predictions, crops seen
        for x, y in crop_batches(shard, length=length, crops_per_record=cfg.crops_per_record,
                                 batch_size=cfg.batch_size, steps=steps, seed=cfg.seed, epoch=epoch, rank=rank,
                                 sample_rates=sample_rates, shuffle_buffer=cfg.shuffle_buffer, device=device,
                                 mode=cfg.crop_mode, prefetch=not loop_config.get("materialized", True)):
            batch_loss, batch_correct = train_step(model, loss_fn, optimizer, augment(x, generator), y,
                                                   cfg.grad_clip, cfg.precision)
            if scheduler is not None and per_step(cfg.schedule):
                scheduler.step()
            sums += (batch_loss, batch_correct, len(y))
        seconds = time.perf_counter() - start
        totals = np.sum(_gather((*sums, seconds)), axis=0)

        metrics = validate(raw_model, val_shard, device, cfg, length, hop, rank, world)
        metrics.update(
            epoch=epoch, epochs_done=epoch + 1, train_loss=totals[0] / max(totals[2], 1),
            train_acc=totals[1] / max(totals[2], 1), segments_per_s=totals[2] / max(seconds, 1e-9),
            epoch_seconds=seconds, lr=optimizer.param_groups[0]["lr"],
            node_id=ray.get_runtime_context().get_node_id(),  # where rank 0 ran: a retry shows a new node
            workers=world,
        )
        if scheduler is not None and not per_step(cfg.schedule):
            scheduler.step(metrics[HEADLINE])
        since_best = 0 if metrics[HEADLINE] > best else since_best + 1
        best = max(best, metrics[HEADLINE])
        stop = bool(cfg.patience and since_best >= cfg.patience)
        metrics.update({f"best_{HEADLINE}": best, "early_stopped": stop})
        metrics = {k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in metrics.items()}
        history.append(metrics)

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_checkpoint(
                    tmp, model_name=cfg.model, model_params=model_params, state_dict=raw_model.state_dict(),
                    preprocess=preprocess, config=cfg.to_dict(), epoch=epoch, metrics=metrics, history=history,
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict() if scheduler is not None else None,
                    provenance=loop_config.get("provenance"))
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
        if stop:
            break
