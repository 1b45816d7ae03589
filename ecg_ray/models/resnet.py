"""``resnet``: a 1-D residual CNN in the spirit of Hannun et al. (2019),
*Cardiologist-level arrhythmia detection ... using a deep neural network*.

stem (Conv → BN → ReLU) → ``blocks`` pre-activation residual blocks
(BN → ReLU → Dropout → Conv → BN → ReLU → Dropout → Conv, plus shortcut) →
BN → ReLU → global average pool → Linear.

* every other block (1st, 3rd, ...) subsamples by ``stride`` (2) — its shortcut
  is a max-pool with the same stride;
* channels start at ``width`` and double every ``grow_every`` blocks (the
  shortcut then gets a 1×1 conv);
* defaults: ``width=32``, 9 blocks, kernel 9, channels 32→64→128 ≈ 1.1 M
  parameters, total down-sampling 2**5 = 32 (1500 samples → 47 steps).

``frontend`` is everything but the linear head.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register
from .blocks import ECGModel, SameConv1d, _check_prob, init_conv_bn


class PreActBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int, dropout: float, first: bool = False):
        super().__init__()
        # 'same' padding for stride 1 (asymmetric for even kernels, e.g. 16);
        # (k-1)//2 for the strided conv, so its output never outgrows the shortcut
        # the first block follows the stem's BN-ReLU directly (as in Hannun et al.)
        self.pre = nn.Identity() if first else nn.Sequential(
            nn.BatchNorm1d(in_channels), nn.ReLU(inplace=False), nn.Dropout(dropout))
        self.conv1 = (nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=(kernel_size - 1) // 2, bias=False)
                      if stride > 1 else SameConv1d(in_channels, out_channels, kernel_size))
        self.mid = nn.Sequential(nn.BatchNorm1d(out_channels), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout))
        self.conv2 = SameConv1d(out_channels, out_channels, kernel_size)
        shortcut = []
        if stride > 1:
            shortcut.append(nn.MaxPool1d(stride, ceil_mode=True))
        if in_channels != out_channels:
            shortcut.append(nn.Conv1d(in_channels, out_channels, 1, bias=False))
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.mid(self.conv1(self.pre(x))))
        skip = self.shortcut(x)
        if skip.shape[-1] != out.shape[-1]:  # odd lengths: conv and ceil-mode pool can differ by 1
            skip = skip[..., : out.shape[-1]]
        return out + skip


@register("resnet")
class ResNet1D(ECGModel):
    def __init__(self, num_classes: int = 4, in_channels: int = 1, width: int = 32,
                 blocks: int = 9, kernel_size: int = 9, grow_every: int = 3,
                 stride: int = 2, dropout: float = 0.2, head_dropout: float = 0.0):
        super().__init__(in_channels, num_classes)
        if blocks < 1 or width < 1 or grow_every < 1 or stride < 1 or kernel_size < 1:
            raise ValueError("width, blocks, kernel_size, grow_every and stride must be >= 1")
        dropout = _check_prob("dropout", dropout)
        layers: list[nn.Module] = [
            SameConv1d(in_channels, width, kernel_size),
            nn.BatchNorm1d(width), nn.ReLU(inplace=True),
        ]
        c_in = width
        for i in range(blocks):
            c_out = width * 2 ** (i // grow_every)
            s = stride if i % 2 == 0 else 1
            layers.append(PreActBlock(c_in, c_out, kernel_size, s, dropout, first=(i == 0)))
            c_in = c_out
        layers += [nn.BatchNorm1d(c_in), nn.ReLU(inplace=True)]
        self.frontend = nn.Sequential(*layers)
        self.out_channels = c_in
        self.head = nn.Sequential(nn.Dropout(_check_prob("head_dropout", head_dropout)),
                                  nn.Linear(c_in, num_classes))
        init_conv_bn(self.frontend)

    def module_groups(self):
        return {"frontend": [self.frontend], "recurrent": [], "head": [self.head]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.frontend(self._prepare(x)).mean(dim=2))
