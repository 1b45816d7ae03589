"""One optimisation step on one batch (plain torch, no Ray): shared by the
Ray Train worker loop and the bare-torch benchmark, so both time the same work."""

from __future__ import annotations

import torch


def train_step(model: torch.nn.Module, loss_fn, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, grad_clip: float | None) -> tuple[float, int]:
    """Forward, loss, backward, optional gradient-norm clipping, step.
    Returns ``(summed loss over the batch, correct predictions)``."""
    logits = model(x)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item() * len(y), int((logits.argmax(1) == y).sum())
