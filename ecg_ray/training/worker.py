"""The Ray Train worker loop: one training run, one epoch per ``ray.train.report``.

Runs inside each TorchTrainer worker: builds the model (optionally from a
pre-trained front end, frozen), streams its shard of the training set with
``iter_torch_batches``, augments on the device, steps AdamW, validates on the
validation records every epoch at segment and recording level, schedules the
learning rate on validation F1, stops early, and reports metrics plus a
checkpoint that can resume the run or be evaluated on its own.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..models import build_model, freeze
from .augment import build_augmenter, make_generator
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .feed import TrainCollate, signal_batch
from .imbalance import build_loss, class_weights
from .metrics import evaluate_segments
from .step import train_step

HEADLINE = "val_f1_cinc"


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = model.param_groups()
    param_groups = []
    for name, params in groups.items():
        params = [p for p in params if p.requires_grad]
        if not params:
            continue
        lr = cfg.lstm_lr if (name == "recurrent" and cfg.lstm_lr) else cfg.lr
        param_groups.append({"params": params, "lr": lr, "name": name})
    return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _init_frontend(model: torch.nn.Module, path: str) -> None:
    """Copy the ``frontend.*`` weights of a checkpoint into ``model``."""
    state = load_checkpoint(path)["state_dict"]
    front = {k[len("frontend."):]: v for k, v in state.items() if k.startswith("frontend.")}
    if not front:
        raise ValueError(f"--init-from {path}: checkpoint has no front-end weights")
    model.frontend.load_state_dict(front)


def _gather(value):
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, value)
        return out
    return [value]


@torch.no_grad()
def validate(model, shard, device, batch_size: int = 512) -> dict:
    """Metrics on this worker's validation shard, gathered over all workers."""
    model.eval()
    ids, ys, logits = [], [], []
    for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
        x = torch.as_tensor(signal_batch(batch["signal"])).to(device)
        logits.append(model(x).float().cpu())
        ids.append(batch["record_id"])
        ys.append(batch["label_index"].astype(np.int64))
    parts = _gather((np.concatenate(ids), np.concatenate(ys), torch.cat(logits)))
    ids = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    logits = torch.cat([p[2] for p in parts])
    probs = torch.softmax(logits, dim=1).numpy()
    metrics = evaluate_segments(ids, y, probs, prefix="val_")
    metrics["val_loss"] = float(F.cross_entropy(logits, torch.as_tensor(y)))
    return metrics


def train_loop_per_worker(loop_config: dict) -> None:
    cfg = TrainConfig.from_dict(loop_config["train"])
    preprocess, class_counts = loop_config["preprocess"], np.asarray(loop_config["class_counts"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    torch.set_num_threads(max(1, cfg.torch_threads or int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = ray.train.torch.get_device()

    model = build_model(cfg.model, **cfg.model_params)
    model_params = model.hparams  # every constructor argument, resolved: rebuilds the model exactly
    if cfg.init_from:
        _init_frontend(model, cfg.init_from)
    if cfg.freeze:
        freeze(model, cfg.freeze)
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    start_epoch, history, best, since_best = 0, [], -1.0, 0

    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # resuming: restart after the last finished epoch
        with checkpoint.as_directory() as d:
            payload = load_checkpoint(d)
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        history = payload["history"]
        start_epoch = payload["epoch"] + 1
        best = max(h[HEADLINE] for h in history)
        since_best = start_epoch - 1 - max(h["epoch"] for h in history if h[HEADLINE] == best)

    model = ray.train.torch.prepare_model(model)
    raw_model = model.module if hasattr(model, "module") else model
    if cfg.freeze:
        freeze(raw_model, cfg.freeze)  # keep frozen BatchNorm stats in eval mode after .to(device)
    loss_fn = build_loss(cfg.imbalance, class_counts, gamma=cfg.focal_gamma).to(device)
    augment = build_augmenter(cfg.augment, p=cfg.augment_p)
    sample_rates = class_weights(class_counts) if cfg.imbalance == "sampler" else None
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")

    for epoch in range(start_epoch, cfg.num_epochs):
        model.train()
        generator = make_generator(cfg.seed * 1000 + epoch * 10 + rank, device)
        collate = TrainCollate(device, cfg.seed * 100 + rank, epoch, sample_rates)
        loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
        for x, y in train_shard.iter_torch_batches(
            batch_size=cfg.batch_size, collate_fn=collate, drop_last=False,
            local_shuffle_buffer_size=cfg.shuffle_buffer, local_shuffle_seed=cfg.seed * 1000 + epoch,
        ):
            if len(y) < 2:  # BatchNorm cannot train on one sample
                continue
            batch_loss, batch_correct = train_step(model, loss_fn, optimizer, augment(x, generator), y,
                                                   cfg.grad_clip)
            loss_sum += batch_loss
            correct += batch_correct
            seen += len(y)
        seconds = time.perf_counter() - start
        totals = np.sum(_gather((loss_sum, correct, seen, seconds)), axis=0)

        metrics = validate(raw_model, val_shard, device)
        metrics.update(
            epoch=epoch, epochs_done=epoch + 1, train_loss=totals[0] / max(totals[2], 1), train_acc=totals[1] / max(totals[2], 1),
            segments_per_s=totals[2] / max(seconds, 1e-9), epoch_seconds=seconds,
            lr=optimizer.param_groups[0]["lr"],
        )
        scheduler.step(metrics[HEADLINE])
        if metrics[HEADLINE] > best:
            best, since_best = metrics[HEADLINE], 0
        else:
            since_best += 1
        stop = bool(cfg.patience and since_best >= cfg.patience)
        metrics.update(best_val_f1_cinc=best, early_stopped=stop)
        metrics = {k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in metrics.items()}
        history.append(metrics)

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_checkpoint(
                    tmp, model_name=cfg.model, model_params=model_params, state_dict=raw_model.state_dict(),
                    preprocess=preprocess, config=cfg.to_dict(), epoch=epoch, metrics=metrics, history=history,
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
        if stop:
            break
