"""``cnn_only``: the original study's baseline — 3 conv blocks, global average
pooling over time, one linear layer."""

from __future__ import annotations

from collections.abc import Sequence

from . import register
from .blocks import CNNFrontend, ECGModel, linear_head


@register("cnn_only")
class CNNOnly(ECGModel):
    """CNN front end (``channels``, ``kernel_size``, ``pool``, ``dropout``) →
    global average pool → Dropout(``head_dropout``) → Linear."""

    def __init__(self, num_classes: int = 4, in_channels: int = 1,
                 channels: Sequence[int] = (32, 64, 128), kernel_size: int = 7,
                 pool: int = 2, dropout: float = 0.1, head_dropout: float = 0.0):
        super().__init__(in_channels, num_classes)
        self.frontend = CNNFrontend(in_channels, channels, kernel_size, pool, dropout)
        self.head = linear_head(self.frontend.out_channels, num_classes, head_dropout)
