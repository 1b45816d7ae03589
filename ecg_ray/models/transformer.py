"""``transformer``: CNN front end → sinusoidal positions → Transformer encoder
(``nn.TransformerEncoder``, batch-first, pre-norm) → pooling → linear head.

Attention weights: ``forward(x, return_attention=True)`` returns ``(logits,
weights)`` with ``weights`` of shape ``(B, T)`` summing to 1 over the CNN time
axis. With ``pooling="attention"`` they are the attention-pooling weights (what
the classifier actually reads); otherwise they are the last encoder layer's
self-attention, averaged over heads and over query positions — how much
attention each time step *receives* (each query's row sums to 1, so the mean
over queries does too).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import register
from .blocks import POOLINGS, CNNFrontend, ECGModel, PositionalEncoding, SequencePool, _check_prob, linear_head


@register("transformer")
class TransformerClassifier(ECGModel):
    supports_attention = True

    def __init__(self, num_classes: int = 4, in_channels: int = 1,
                 channels: Sequence[int] = (32, 64, 128), kernel_size: int = 7,
                 pool: int = 2, dropout: float = 0.1,
                 d_model: int = 128, heads: int = 4, layers: int = 2, ff_dim: int = 256,
                 attn_dropout: float = 0.1, pooling: str = "mean", head_dropout: float = 0.1):
        super().__init__(in_channels, num_classes)
        if pooling not in POOLINGS or pooling in ("last", "meanlast"):
            raise ValueError(f"pooling must be one of ('mean', 'max', 'attention'), got {pooling!r}")
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.frontend = CNNFrontend(in_channels, channels, kernel_size, pool, dropout)
        feat = self.frontend.out_channels
        self.proj = nn.Linear(feat, d_model) if feat != d_model else nn.Identity()
        self.pos = PositionalEncoding(d_model, _check_prob("attn_dropout", attn_dropout))
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_dim, attn_dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.pool = SequencePool(pooling, d_model)
        self.head = linear_head(self.pool.out_dim, num_classes, head_dropout)

    def module_groups(self):
        return {"frontend": [self.frontend], "recurrent": [self.proj, self.encoder],
                "head": [self.pool, self.head]}

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        feats = self.frontend(self._prepare(x)).transpose(1, 2)  # (B, T, C)
        h = self.pos(self.proj(feats))
        if return_attention and self.pool.mode != "attention":
            # run the layers one by one so the last one's self-attention can be read
            for layer in self.encoder.layers[:-1]:
                h = layer(h)
            last = self.encoder.layers[-1]
            q = last.norm1(h) if last.norm_first else h
            _, attn = last.self_attn(q, q, q, need_weights=True, average_attn_weights=True)
            weights = attn.mean(dim=1)  # (B, T_query, T_key) → mean over queries → (B, T)
            h = self.encoder.norm(last(h))
        else:
            h = self.encoder(h)
            weights = None
        pooled, pool_weights = self.pool(h)
        logits = self.head(pooled)
        return (logits, weights if pool_weights is None else pool_weights) if return_attention else logits
