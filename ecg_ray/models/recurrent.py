"""CNN → RNN families (and the RNN-only diagnostic).

One implementation, :class:`RecurrentClassifier`, covers them all; the
registered names are that class with different defaults (presets):

==============  ==============================================================
``cnn_lstm``    CNN front end → 2-layer LSTM (128) → pooled outputs → linear
``bilstm``      as ``cnn_lstm`` but bidirectional
``simple_lstm`` CNN front end → 1-layer LSTM (64)
``gru``         CNN front end → 2-layer GRU (128)
``residual``    ``cnn_lstm`` + residual connection around the recurrent block
                (``Linear(CNN features) + LSTM outputs``)
``attention``   CNN front end → 2-layer LSTM → additive (Bahdanau) attention
                pooling; ``forward(x, return_attention=True)`` gives the weights
``lstm_only``   no CNN: the raw signal in frames of ``downsample`` (8) samples
                (or, with ``frontend="avg"``, average-pooled by 8: learns far
                more slowly, one number per step) → LSTM — a diagnostic of what
                the CNN contributes
==============  ==============================================================

The CNN front end down-samples by 8 (three max-pools of 2), so a 1500-sample
segment becomes a 187-step sequence: long enough to see several beats per
step's receptive field, short enough for an LSTM on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import register
from .blocks import CNNFrontend, ECGModel, SequencePool, _check_prob, init_rnn, linear_head

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class Framer(nn.Module):
    """``(B, C, L)`` → ``(B, C * frame, L // frame)``: non-overlapping frames of
    ``frame`` samples stacked as channels (a trailing partial frame is dropped)."""

    def __init__(self, frame: int):
        super().__init__()
        self.frame = frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unfold(2, self.frame, self.frame).transpose(2, 3).flatten(1, 2)  # unfold: (B, C, T, frame)


# decorators apply bottom-up: cnn_lstm is registered first
@register("lstm_only", frontend="frame")
@register("attention", pooling="attention")
@register("residual", residual=True)
@register("gru", cell="gru")
@register("simple_lstm", hidden=64, layers=1)
@register("bilstm", bidirectional=True)
@register("cnn_lstm")
class RecurrentClassifier(ECGModel):
    """CNN front end → LSTM/GRU over the CNN's time axis → pooling → linear head.

    Hyper-parameters: ``channels``, ``kernel_size``, ``pool``, ``dropout`` (CNN);
    ``cell`` (``lstm``/``gru``), ``hidden``, ``layers``, ``bidirectional``,
    ``rnn_dropout`` (between stacked layers); ``pooling`` (one of
    ``mean, max, last, meanlast, attention``); ``residual``; ``head_dropout``;
    ``frontend``: ``cnn``, or no learned front end: ``frame`` (``lstm_only``: non-overlapping
    frames of ``downsample`` raw samples as each step's features) or ``avg`` (their average).
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 1,
                 channels: Sequence[int] = (32, 64, 128), kernel_size: int = 7,
                 pool: int = 2, dropout: float = 0.1,
                 cell: str = "lstm", hidden: int = 128, layers: int = 2,
                 bidirectional: bool = False, rnn_dropout: float = 0.1,
                 pooling: str = "mean", residual: bool = False,
                 head_dropout: float = 0.1, frontend: str = "cnn", downsample: int = 8):
        super().__init__(in_channels, num_classes)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {hidden}, {layers}")
        if frontend == "cnn":
            self.frontend = CNNFrontend(in_channels, channels, kernel_size, pool, dropout)
            feat_dim = self.frontend.out_channels
        elif frontend in ("frame", "avg"):
            if downsample < 1:
                raise ValueError(f"downsample must be >= 1, got {downsample}")
            self.frontend = Framer(downsample) if frontend == "frame" else nn.AvgPool1d(downsample)
            feat_dim = in_channels * (downsample if frontend == "frame" else 1)
        else:
            raise ValueError(f"frontend must be 'cnn', 'frame' or 'avg', got {frontend!r}")

        self.rnn = CELLS[cell](feat_dim, hidden, num_layers=layers, batch_first=True,
                               bidirectional=bool(bidirectional),
                               dropout=_check_prob("rnn_dropout", rnn_dropout) if layers > 1 else 0.0)
        init_rnn(self.rnn)
        out_dim = hidden * (2 if bidirectional else 1)
        # residual connection around the recurrent block: project CNN features
        self.skip = nn.Linear(feat_dim, out_dim) if residual else None
        self.pool = SequencePool(pooling, out_dim, bidirectional=bool(bidirectional))
        self.supports_attention = pooling == "attention"
        self.head = linear_head(self.pool.out_dim, num_classes, head_dropout)

    def module_groups(self):
        return {"frontend": [self.frontend], "recurrent": [m for m in (self.rnn, self.skip) if m is not None],
                "head": [self.pool, self.head]}

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if return_attention and not self.supports_attention:
            raise ValueError(f"{type(self).__name__} with pooling={self.pool.mode!r} "
                             "has no attention weights; use pooling='attention'")
        feats = self.frontend(self._prepare(x)).transpose(1, 2)  # (B, T, C)
        out, _ = self.rnn(feats)  # (B, T, hidden * directions), top layer
        if self.skip is not None:
            out = out + self.skip(feats)
        pooled, weights = self.pool(out)
        logits = self.head(pooled)
        return (logits, weights) if return_attention else logits

