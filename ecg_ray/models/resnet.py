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
  parameters, total down-sampling 2**5 = 32 (a 20-s window, 3000 samples at 150 Hz → 94 steps).

``frontend`` is everything but the linear head.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register
from .blocks import ECGModel, SameConv1d, _as_channels, _check_prob, init_conv_bn, linear_head


def bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm1d(channels), nn.ReLU(inplace=True)]


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> list[nn.Module]:
    """Conv1d (no bias, padding ``(k-1)//2``) → BatchNorm1d."""
    return [nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                      bias=False), nn.BatchNorm1d(out_channels)]


class PreActBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int, dropout: float, first: bool = False):
        super().__init__()
        # 'same' padding for stride 1 (asymmetric for even kernels, e.g. 16);
        # (k-1)//2 for the strided conv, so its output never outgrows the shortcut
        # the first block follows the stem's BN-ReLU directly (as in Hannun et al.)
        self.pre = nn.Identity() if first else nn.Sequential(*bn_relu(in_channels), nn.Dropout(dropout))
        self.conv1 = (nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=(kernel_size - 1) // 2, bias=False)
                      if stride > 1 else SameConv1d(in_channels, out_channels, kernel_size))
        self.mid = nn.Sequential(*bn_relu(out_channels), nn.Dropout(dropout))
        self.conv2 = SameConv1d(out_channels, out_channels, kernel_size)
        shortcut = [nn.MaxPool1d(stride, ceil_mode=True)] if stride > 1 else []
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
        widths = [width * 2 ** (i // grow_every) for i in range(blocks)]
        self.frontend = nn.Sequential(
            SameConv1d(in_channels, width, kernel_size), *bn_relu(width),
            *(PreActBlock(c_in, c_out, kernel_size, stride if i % 2 == 0 else 1, dropout, first=(i == 0))
              for i, (c_in, c_out) in enumerate(zip([width, *widths], widths))),
            *bn_relu(widths[-1]))
        self.head = linear_head(widths[-1], num_classes, head_dropout)
        init_conv_bn(self.frontend)


class BasicBlock(nn.Module):
    """Post-activation residual block: Conv(stride) → BN → ReLU → Conv → BN, plus
    a shortcut (1×1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(in_channels, out_channels, kernel_size, stride), nn.ReLU(inplace=True),
                                  *conv_bn(out_channels, out_channels, kernel_size))
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels
                         else nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


@register("resnet_stages")
class StageResNet1D(ECGModel):
    """``resnet_stages``: the default recipe's 1-D ResNet (≈ 1.6 M parameters).

    stem Conv(``stem_kernel``, stride 2) → BN → ReLU, then one stage per entry of
    ``channels`` of ``blocks_per_stage`` basic blocks (kernel ``kernel_size``; the
    first block of each stage subsamples by 2), global average pool, dropout,
    Linear. Defaults: stem 32 channels, stages 64→96→128→128, kernel 9: a 20-s
    window (3000 samples at 150 Hz) becomes 94 steps. Any input length ≥ 32 works.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 1, stem_channels: int = 32,
                 channels: list | tuple = (64, 96, 128, 128), blocks_per_stage: int = 2, kernel_size: int = 9,
                 stem_kernel: int = 15, dropout: float = 0.3):
        super().__init__(in_channels, num_classes)
        channels = _as_channels(channels)
        if blocks_per_stage < 1 or kernel_size < 1 or stem_channels < 1:
            raise ValueError("blocks_per_stage, kernel_size and stem_channels must be >= 1")
        widths = [c for c in channels for _ in range(blocks_per_stage)]
        self.frontend = nn.Sequential(
            *conv_bn(in_channels, stem_channels, stem_kernel, stride=2), nn.ReLU(inplace=True),
            *(BasicBlock(c_in, c_out, kernel_size, 1 if i % blocks_per_stage else 2)  # a stage's first block: stride 2
              for i, (c_in, c_out) in enumerate(zip([stem_channels, *widths], widths))))
        self.head = linear_head(widths[-1], num_classes, dropout, name="dropout")
        init_conv_bn(self.frontend)
