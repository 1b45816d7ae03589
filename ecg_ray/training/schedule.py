"""Learning-rate schedules of a run (plain torch, no Ray): the ``schedule`` field.

- ``onecycle``: ``torch.optim.lr_scheduler.OneCycleLR`` over the run's fixed
  number of optimizer steps (warm-up ``warmup`` of them, cosine annealing after);
- ``cosine``: linear warm-up over the first ``warmup`` share of steps, then cosine decay to 0 (``LambdaLR``);
- ``plateau``: ``ReduceLROnPlateau`` on validation F1, stepped once per epoch;
- ``constant``: no schedule.

``per_step`` schedules advance after every optimizer step; ``plateau`` after each validation.
"""

from __future__ import annotations

import math

import torch

SCHEDULES: tuple[str, ...] = ("onecycle", "cosine", "plateau", "constant")


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, *, total_steps: int, warmup: float = 0.1,
                    plateau_factor: float = 0.5, plateau_patience: int = 2):
    """The scheduler for ``name``, or None for ``constant``."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    total_steps = max(int(total_steps), 1)
    if name == "onecycle":
        # one step more than the run takes: torch's OneCycleLR reaches its floor after total_steps - 1
        # steps and its last step wraps the cosine back up (a run's last epoch reported the warm-up's lr).
        # The warm-up must span more than one step (torch divides by its length in steps - 1): a run of
        # a few steps gets a longer warm-up share instead of a ZeroDivisionError.
        steps = total_steps + 1
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=steps,
            pct_start=min(max(warmup, 0.01, 1.5 / steps), 0.99), anneal_strategy="cos")
    if name == "cosine":
        warm = max(int(round(warmup * total_steps)), 1)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            progress = min((step - warm) / max(total_steps - warm, 1), 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=plateau_factor,
                                                          patience=plateau_patience)
    return None


def per_step(name: str) -> bool:
    return name in ("onecycle", "cosine")
