"""Where a model looked: Grad-CAM and attention maps on whole recordings (no Ray).

A record is explained the way it is classified: the model's own preprocessing
cuts the filtered signal into segments, every segment gets a saliency map at
full sample resolution, and the maps are stitched back onto the record's time
axis (averaged where segments overlap; samples no segment covers get 0).

* **Grad-CAM** uses Captum's ``LayerGradCam`` on a convolutional layer (by
  default the last block of the CNN front end, or the last residual block of
  ``resnet``; any module name with ``layer=``), ReLU'd, then upsampled to the
  segment length with ``LayerAttribution.interpolate``.
* **Attention** reads ``model(x, return_attention=True)`` — the pooling weights
  of ``attention`` models, the last self-attention layer's (mean over queries)
  of ``transformer`` — and upsamples them the same way.

Maps are scaled by their maximum over the record, so a record's saliency lies
in [0, 1] with 1 at its most salient sample.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from .. import CLASS_TO_INDEX, CLASSES
from ..data.preprocess import PreprocessConfig, filter_record, segment, window_starts
from ..models import batched_logits
from ..models.blocks import CNNFrontend
from ..training.metrics import record_probabilities, softmax

METHODS = ("gradcam", "attention")


@dataclass
class Explanation:
    """One explained record: the filtered signal and its saliency, sample for sample."""

    record: str
    signal: np.ndarray  # filtered, z-scored record at ``fs``
    fs: float
    saliency: np.ndarray  # same length as ``signal``, in [0, 1]
    probabilities: np.ndarray  # (4,) mean segment probabilities
    target: int  # index of the explained class
    method: str
    layer: str | None
    segment_starts: list[int]
    segment_length: int
    padded: bool
    segment_probabilities: np.ndarray | None = None  # (n_segments, 4)

    @property
    def predicted(self) -> str:
        return CLASSES[int(np.argmax(self.probabilities))]

    @property
    def target_class(self) -> str:
        return CLASSES[self.target]

    @property
    def seconds(self) -> float:
        return len(self.signal) / self.fs


def default_layer(model: nn.Module) -> str:
    """Name of the module Grad-CAM reads by default: the last convolutional block."""
    frontend = getattr(model, "frontend", None)
    if isinstance(frontend, CNNFrontend):
        return f"frontend.blocks.{len(frontend.blocks) - 1}"
    if isinstance(frontend, nn.Sequential):  # resnet: ..., last residual block, BatchNorm, ReLU
        blocks = [i for i, m in enumerate(frontend) if any(isinstance(c, nn.Conv1d) for c in m.modules())]
        if blocks:
            return f"frontend.{blocks[-1]}"
    raise ValueError(f"{type(model).__name__} has no convolutional front end for Grad-CAM; "
                     "use method='attention' for attention models")


def target_index(cls: str | int | None) -> int | None:
    """A class given as ``N``/``A``/``O``/``~`` (or ``noisy``), an index, or None (the predicted)."""
    if cls is None or isinstance(cls, int):
        return cls
    name = "~" if cls == "noisy" else cls
    if name not in CLASS_TO_INDEX:
        raise ValueError(f"unknown class {cls!r}; expected one of {', '.join(CLASSES)}")
    return CLASS_TO_INDEX[name]


def gradcam(model: nn.Module, segments: torch.Tensor, target: torch.Tensor | int,
            layer: str | None = None) -> np.ndarray:
    """Grad-CAM ``(n, L)`` (non-negative, not yet scaled) of segments ``(n, L)`` for ``target``."""
    name = layer or default_layer(model)
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no layer {name!r}") from None
    # cuDNN RNNs refuse a backward pass in eval mode; the native kernels do not.
    with torch.backends.cudnn.flags(enabled=False) if segments.is_cuda else nullcontext():
        attr = LayerGradCam(model, module).attribute(segments.unsqueeze(1), target=target, relu_attributions=True)
    if attr.dim() != 3:
        raise ValueError(f"layer {name!r} gives {attr.dim()}-d outputs; Grad-CAM needs (B, C, T)")
    return LayerAttribution.interpolate(attr.detach(), segments.shape[-1], "linear")[:, 0].cpu().numpy()


def attention_map(model: nn.Module, segments: torch.Tensor) -> np.ndarray:
    """Attention weights over time ``(n, L)``, upsampled from the model's ``(n, T)``."""
    if not getattr(model, "supports_attention", False):
        raise ValueError(f"{type(model).__name__} has no attention weights; use method='gradcam'")
    with torch.no_grad():
        _, weights = model(segments, return_attention=True)
    return LayerAttribution.interpolate(weights.unsqueeze(1).float(), segments.shape[-1], "linear")[:, 0].cpu().numpy()


def stitch(maps: np.ndarray, starts: list[int], length: int) -> np.ndarray:
    """Segment maps ``(n, L)`` → one map of ``length`` samples (mean where they overlap)."""
    index = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(maps.shape[1])
    inside = index < length  # a padded short record's map runs past its end
    total = np.bincount(index[inside], maps[inside], minlength=length)
    count = np.bincount(index[inside], minlength=length)
    return np.divide(total, count, out=np.zeros(length), where=count > 0)


def explain_filtered(model: nn.Module, filtered: np.ndarray, cfg: PreprocessConfig, record: str = "?",
                     cls: str | int | None = None, method: str = "gradcam", layer: str | None = None,
                     device: str | torch.device = "cpu", temperature: float = 1.0,
                     aggregate: str = "mean_prob") -> Explanation:
    """Explain an already filtered record (``preprocess.filter_record``'s output); its
    probabilities come from the windows as ``evaluate`` scores them (``temperature``
    and ``aggregate`` of the model, see ``metrics.record_probabilities``)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    model = model.eval()
    cut, padded = segment(filtered, cfg.segment_length, cfg.hop, True)
    logits = batched_logits(model, cut, device=device)
    probs = record_probabilities(logits, np.zeros(len(logits), np.int64), 1, aggregate, temperature)[0]
    target = int(np.argmax(probs)) if cls is None else target_index(cls)
    x = torch.from_numpy(cut.astype(np.float32)).to(device)
    if method == "gradcam":
        maps = gradcam(model, x, target, layer)
        layer = layer or default_layer(model)
    else:
        maps = attention_map(model, x)
        layer = None
    starts = window_starts(len(filtered), cfg.segment_length, cfg.hop).tolist()  # the cut ``segment`` made
    saliency = stitch(maps, starts, len(filtered))
    saliency = saliency / (saliency.max() or 1.0)  # peak 1; an all-zero map stays zero
    return Explanation(record, filtered.astype(np.float32), cfg.fs, saliency, probs, target, method, layer,
                       starts, cfg.segment_length, padded, softmax(logits, temperature))


def explain_signal(model: nn.Module, signal: np.ndarray, fs: float, cfg: PreprocessConfig,
                   record: str = "?", **kwargs) -> Explanation:
    """Explain one raw record (mV at ``fs``): the model's preprocessing, then :func:`explain_filtered`."""
    return explain_filtered(model, filter_record(signal, fs, cfg, record), cfg, record, **kwargs)


def default_method(model: nn.Module) -> str:
    """``attention`` for models that expose attention weights, else ``gradcam``."""
    return "attention" if getattr(model, "supports_attention", False) else "gradcam"
