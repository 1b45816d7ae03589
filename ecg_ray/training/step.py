"""One optimisation step on one batch (plain torch, no Ray): shared by the
Ray Train worker loop and the bare-torch benchmark, so both time the same work."""

from __future__ import annotations

import torch

#: Training precisions: ``bf16`` runs forward and loss under ``torch.autocast``
#: (weights, gradients and optimizer state stay float32).
PRECISIONS = ("fp32", "bf16")


def train_step(model: torch.nn.Module, loss_fn, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, grad_clip: float | None, precision: str = "fp32") -> tuple[float, int]:
    """Forward, loss, backward, optional gradient-norm clipping, step.
    Returns ``(summed loss over the batch, correct predictions)``."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(x)
        loss = loss_fn(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item() * len(y), int((logits.argmax(1) == y).sum())
