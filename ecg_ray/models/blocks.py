"""Building blocks shared by every architecture (plain torch, no Ray): the
:class:`ECGModel` base class (input normalisation, parameter groups, freezing),
the original study's CNN front end (three :class:`ConvBlock`, 32→64→128, which
down-sample by 8: a 1500-sample segment becomes 187 steps of 128-d features),
sequence pooling (mean, max, direction-aware last, meanlast, additive attention),
sinusoidal positions, the Dropout → Linear head and the weight initialisers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

POOLINGS = ("mean", "max", "last", "meanlast", "attention")


def _as_channels(channels) -> tuple[int, ...]:
    """Accept an int, a tuple or a list (YAML gives lists) of channel widths."""
    if isinstance(channels, int):
        channels = (channels,)
    channels = tuple(int(c) for c in channels)
    if not channels or any(c < 1 for c in channels):
        raise ValueError(f"channels must be a non-empty sequence of positive ints, got {channels!r}")
    return channels


def _check_prob(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")
    return p


def linear_head(in_dim: int, num_classes: int, dropout: float, name: str = "head_dropout") -> nn.Sequential:
    """Dropout → Linear: the classifier every model ends with (state-dict keys ``head.1.*``)."""
    return nn.Sequential(nn.Dropout(_check_prob(name, dropout)), nn.Linear(in_dim, num_classes))


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming-normal conv weights (ReLU nets; no conv has a bias); BatchNorm keeps torch's unit/zero init."""
    for m in module.modules():
        if isinstance(m, nn.Conv1d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def init_rnn(rnn: nn.RNNBase) -> None:
    """Xavier input weights, orthogonal recurrent weights, zero biases and — for
    LSTMs — forget-gate bias 1 (on ``bias_ih`` only, so the effective bias is 1).
    PyTorch's gate order is (input, forget, cell, output) for LSTM."""
    gates = 4 if isinstance(rnn, nn.LSTM) else 3 if isinstance(rnn, nn.GRU) else 1
    for name, p in rnn.named_parameters():
        if name.startswith("weight"):
            init = nn.init.xavier_uniform_ if name.startswith("weight_ih") else nn.init.orthogonal_
            for chunk in p.data.chunk(gates, 0):
                init(chunk)
        elif name.startswith("bias"):
            nn.init.zeros_(p)
            if isinstance(rnn, nn.LSTM) and name.startswith("bias_ih"):
                p.data[rnn.hidden_size:2 * rnn.hidden_size].fill_(1.0)


class SameConv1d(nn.Conv1d):
    """Stride-1 Conv1d whose output has the input's length for odd *and* even
    kernels (even: pads ``(k-1)//2`` left, ``k//2`` right — what
    ``padding="same"`` does, without its copy-warning)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        odd = kernel_size % 2 == 1
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2 if odd else 0, bias=False)
        self.extra_pad = None if odd else ((kernel_size - 1) // 2, kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_pad is not None:
            x = nn.functional.pad(x, self.extra_pad)
        return super().forward(x)


class ConvBlock(nn.Sequential):
    """Conv1d ('same' padding) → BatchNorm1d → ReLU → MaxPool1d → Dropout."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 7,
                 pool: int = 2, dropout: float = 0.1):
        super().__init__(OrderedDict(
            conv=SameConv1d(in_channels, out_channels, kernel_size), bn=nn.BatchNorm1d(out_channels),
            act=nn.ReLU(inplace=True), pool=nn.MaxPool1d(pool) if pool > 1 else nn.Identity(),
            drop=nn.Dropout(dropout) if dropout > 0 else nn.Identity()))


class CNNFrontend(nn.Module):
    """Stack of :class:`ConvBlock`; ``(B, C_in, L)`` → ``(B, channels[-1], L // pool**n)``."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128),
                 kernel_size: int = 7, pool: int = 2, dropout: float = 0.1):
        super().__init__()
        channels = _as_channels(channels)
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        dropout = _check_prob("dropout", dropout)
        self.blocks = nn.Sequential(*(ConvBlock(c_in, c, kernel_size, pool, dropout)
                                      for c_in, c in zip((in_channels, *channels), channels)))
        self.out_channels = channels[-1]
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class AdditiveAttention(nn.Module):
    """Bahdanau attention pooling: ``score_t = v · tanh(W h_t + b)``,
    ``w = softmax_t(score)``, ``pooled = Σ_t w_t h_t``."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, 1, bias=False)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.v(torch.tanh(self.proj(h))).squeeze(-1)  # (B, T)
        weights = torch.softmax(scores.float(), dim=1).to(h.dtype)
        return torch.bmm(weights.unsqueeze(1), h).squeeze(1), weights


class SequencePool(nn.Module):
    """Pool a ``(B, T, D)`` sequence. ``forward`` returns ``(pooled, weights)``;
    ``weights`` is ``(B, T)`` for ``attention`` pooling and ``None`` otherwise.

    ``last`` is the output at the final time step; with ``bidirectional=True``
    the features are taken as ``[forward | backward]`` halves and ``last`` is
    ``concat(forward output at t=T-1, backward output at t=0)`` — the two
    directions' final states — not the backward direction's first step.
    """

    def __init__(self, mode: str, dim: int, bidirectional: bool = False):
        super().__init__()
        if mode not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}")
        self.mode = mode
        self.dim = dim
        self.bidirectional = bidirectional
        self.attention = AdditiveAttention(dim) if mode == "attention" else None
        self.out_dim = 2 * dim if mode == "meanlast" else dim

    def last(self, h: torch.Tensor) -> torch.Tensor:
        if self.bidirectional:
            half = self.dim // 2
            return torch.cat([h[:, -1, :half], h[:, 0, half:]], dim=1)
        return h[:, -1]

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.mode == "mean":
            return h.mean(dim=1), None
        if self.mode == "max":
            return h.amax(dim=1), None
        if self.mode == "last":
            return self.last(h), None
        if self.mode == "meanlast":
            return torch.cat([h.mean(dim=1), self.last(h)], dim=1), None
        return self.attention(h)


class PositionalEncoding(nn.Module):
    """Sinusoidal positional encoding (Vaswani et al.), added to a ``(B, T, D)``
    input; computed for the input's length on the fly (no length limit, nothing
    in the state dict)."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.dim = dim
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def encoding(self, length: int, device=None, dtype=torch.float32) -> torch.Tensor:
        pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, self.dim, 2, device=device, dtype=torch.float32)
                        * (-math.log(10000.0) / self.dim))
        # interleaved: sin at the even features, cos at the odd ones
        return torch.stack([torch.sin(pos * div), torch.cos(pos * div)], dim=2).flatten(1)[:, : self.dim].to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x + self.encoding(x.shape[1], x.device, x.dtype).unsqueeze(0))


class ECGModel(nn.Module):
    """Base class: every model maps ``(B, in_channels, L)`` (or ``(B, L)``) to
    ``(B, num_classes)`` logits and names its parts.

    Subclasses build ``frontend`` and ``head``; those with more parts override
    :meth:`module_groups` (always ``frontend``, ``recurrent``, ``head``, possibly
    empty, together every parameter exactly once) and :meth:`forward`. A frozen
    group (:func:`ecg_ray.models.freeze`) gets no gradients and stays in eval mode
    through later ``model.train()`` calls (BatchNorm statistics fixed, dropout off:
    a frozen feature extractor is deterministic); ``model.frontend.train()`` bypasses this.
    """

    #: whether ``forward(x, return_attention=True)`` is available
    supports_attention: bool = False

    def __init__(self, in_channels: int = 1, num_classes: int = 4):
        super().__init__()
        if in_channels < 1 or num_classes < 2:
            raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels}, {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.frozen_groups: set[str] = set()

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (B, {self.in_channels}, L) or (B, L), got {tuple(x.shape)}")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Default: front end → global average pool over time → head."""
        return self.head(self.frontend(self._prepare(x)).mean(dim=2))

    def module_groups(self) -> dict[str, list[nn.Module]]:
        """Group name → modules; this default suits the models without a recurrent part."""
        return {"frontend": [self.frontend], "recurrent": [], "head": [self.head]}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Group name → parameters (every parameter exactly once across groups)."""
        # dict.fromkeys: a parameter shared by two modules of a group is listed once
        return {name: list(dict.fromkeys(p for m in modules for p in m.parameters()))
                for name, modules in self.module_groups().items()}

    def set_frozen(self, group: str, frozen: bool) -> "ECGModel":
        """(Un)freeze ``group``: gradients off/on, and re-apply train/eval so a
        frozen group's BatchNorm stays in eval mode."""
        groups = self.module_groups()
        if group not in groups:
            raise ValueError(f"unknown parameter group {group!r}; valid: {sorted(groups)}")
        for m in groups[group]:
            m.requires_grad_(not frozen)
        self.frozen_groups = (self.frozen_groups | {group}) if frozen else (self.frozen_groups - {group})
        return self.train(self.training)

    def train(self, mode: bool = True) -> "ECGModel":
        super().train(mode)
        if mode and self.frozen_groups:
            groups = self.module_groups()
            for module in (m for g in self.frozen_groups for m in groups[g]):
                module.eval()
        return self
