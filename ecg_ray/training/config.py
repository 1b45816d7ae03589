"""``TrainConfig``: every knob of one training run, with defaults and validation.

The same object backs ``ecg-ray train`` flags, a sweep trial's config and the
``config`` stored in checkpoints, so a name means one thing everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..models import model_names
from .augment import AUGMENT_NAMES
from .imbalance import IMBALANCE_NAMES


@dataclass
class TrainConfig:
    model: str = "cnn_only"
    model_params: dict = field(default_factory=dict)
    seed: int = 42
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    num_epochs: int = 20
    patience: int = 6  # early stopping on val F1 (epochs without improvement); 0 = off
    imbalance: str = "weighted"
    focal_gamma: float = 2.0
    augment: list = field(default_factory=list)  # names from AUGMENT_NAMES, or ["all"]
    augment_p: float = 0.5
    plateau_factor: float = 0.5  # ReduceLROnPlateau on val F1
    plateau_patience: int = 2
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    lstm_lr: float | None = None  # lr of the "recurrent" parameter group
    init_from: str | None = None  # checkpoint whose front end initialises this model
    freeze: str | None = None  # "frontend" to freeze the initialised front end
    val_fold: int | None = None  # None: saved train/val split; k: fold k held out
    max_records: int | None = None  # cap on training records (small runs)
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # fractional GPUs (sweeps pack trials)
    torch_threads: int = 0  # 0: one per CPU of the worker
    shuffle_buffer: int = 4096

    def __post_init__(self):
        if isinstance(self.augment, str):
            self.augment = [] if self.augment in ("", "none") else [a for a in self.augment.split(",") if a]
        self.augment = [a for a in self.augment if a != "none"]
        if "all" in self.augment:
            self.augment = list(AUGMENT_NAMES)
        self.validate()

    def validate(self) -> None:
        if self.model not in model_names():
            raise ValueError(f"model: unknown model {self.model!r}; choose from {', '.join(model_names())}")
        if self.imbalance not in IMBALANCE_NAMES:
            raise ValueError(f"imbalance: unknown strategy {self.imbalance!r}; choose from {', '.join(IMBALANCE_NAMES)}")
        for name in self.augment:
            if name not in AUGMENT_NAMES and name != "all":
                raise ValueError(f"augment: unknown augmentation {name!r}; choose from {', '.join(AUGMENT_NAMES)}, all, none")
        if self.freeze not in (None, "frontend"):
            raise ValueError(f"freeze: only 'frontend' can be frozen, got {self.freeze!r}")
        if self.freeze and not self.init_from:
            raise ValueError("freeze: freezing the front end needs --init-from CHECKPOINT")
        for name in ("lr", "batch_size", "num_epochs", "num_workers"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
