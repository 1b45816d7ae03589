"""The checkpoint contract (DESIGN.md): one ``model.pt`` that rebuilds and runs
the model on its own, loadable with ``torch.load(..., weights_only=True)``.

Contents: ``format``, ``model`` (registry name), ``model_params``, ``state_dict``,
``preprocess`` (``PreprocessConfig.to_dict()``), ``classes``, ``config`` (the run's
training config, JSON types only), ``epoch``, ``metrics``, ``provenance``
(``artifacts.provenance``: commit, package versions, data config hash, command; absent
in older checkpoints); for resuming, ``optimizer``/``scheduler`` state and ``history``.
No pickled code: a checkpoint holding arbitrary objects is refused on load.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from .. import CLASSES
from ..artifacts import Run, json_safe
from ..models import build_model

FORMAT = "ecg-ray-checkpoint/1"
FILENAME = Run.CHECKPOINT  # "model.pt", named once in artifacts.Run


#: Only str/int/float/bool/list/dict remain (NaN kept: a metric may be NaN).
_plain = partial(json_safe, strict=False)


def save_checkpoint(directory: Path, *, model_name: str, model_params: dict, state_dict: dict,
                    preprocess: dict, config: dict, epoch: int, metrics: dict,
                    history: list[dict] | None = None, optimizer: dict | None = None,
                    scheduler: dict | None = None, provenance: dict | None = None) -> Path:
    path = Path(directory) / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model": model_name,
        "model_params": _plain(model_params),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "preprocess": _plain(preprocess),
        "classes": list(CLASSES),
        "config": _plain(config),
        "epoch": int(epoch),
        "metrics": _plain(metrics),
        "history": _plain(history or []),
    }
    optional = {"optimizer": optimizer, "scheduler": _plain(scheduler), "provenance": _plain(provenance)}
    payload.update({k: v for k, v in optional.items() if v is not None})
    torch.save(payload, path)
    return path


def checkpoint_file(path: Path) -> Path:
    """Accept a checkpoint directory or the ``model.pt`` inside it."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load with ``weights_only=True``; a file carrying pickled objects is refused."""
    file = checkpoint_file(path)
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"refusing checkpoint {file}: not loadable with weights_only=True "
                         f"(it may carry pickled code): {str(e).splitlines()[0]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{file} is not an ecg-ray checkpoint (format {FORMAT!r} expected)")
    if tuple(payload["classes"]) != CLASSES:
        raise ValueError(f"{file}: class order {payload['classes']} differs from {list(CLASSES)}")
    return payload


def model_from_checkpoint(payload: dict) -> torch.nn.Module:
    """Rebuild the model of a loaded checkpoint, in eval mode."""
    model = build_model(payload["model"], **payload["model_params"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()
