"""``TrainConfig``: every knob of one training run, with defaults and validation.

The same object backs ``ecg-ray train`` flags, a sweep trial's config and the
``config`` stored in checkpoints, so a name means one thing everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..models import model_names
from .augment import AUGMENT_NAMES, parse_augment
from .imbalance import CLASS_WEIGHTINGS, IMBALANCE_NAMES
from .metrics import AGGREGATES
from .schedule import SCHEDULES
from .step import PRECISIONS


#: One line per field for ``--help`` (the CLI's flags are generated from the dataclass).
FIELD_HELP = {
    "model": "architecture (ecg-ray models)",
    "model_params": "JSON dict of model hyper-parameters",
    "lr": "peak learning rate",
    "patience": "early stopping on val F1 (epochs); 0 = off",
    "imbalance": "none | weighted | sampler | focal",
    "class_weighting": "inverse | sqrt (class weights of weighted, focal, sampler)",
    "augment": "jitter,scaling,time_warp,cutout joined by , or + | all | none",
    "augment_p": "probability each augmentation is applied to a crop",
    "crops_per_record": "fresh random training windows per record per epoch",
    "crop_mode": "random (fresh crops each epoch) | fixed (every non-overlapping window, each epoch)",
    "aggregate": "mean_prob | mean_logit: windows → record",
    "schedule": "onecycle | cosine | plateau | constant",
    "warmup": "share of the steps warming up (onecycle, cosine)",
    "calibrate": "fit a temperature on the validation records after training",
    "grad_clip": "max gradient norm; 0 = off",
    "lstm_lr": "learning rate of the recurrent part",
    "init_from": "checkpoint whose front end initialises the model",
    "freeze": "'frontend' to freeze the initialised front end",
    "val_fold": "hold out this fold (default: the saved train/val split)",
    "max_records": "cap on training records",
    "materialize": "keep the records in the object store (default: when they fit in 40%% of it); "
                   "--no-materialize streams them from parquet every epoch",
    "cpus_per_worker": "CPUs (and torch threads) per worker (train default: all cores shared by the workers)",
    "torch_threads": "0: one per CPU of the worker",
    "shuffle_buffer": "training records whose crops the crop shuffle buffer mixes",
    "precision": "fp32 | bf16 (bf16 autocast of forward and loss; meant for CUDA, slow on most CPUs)",
}


@dataclass
class TrainConfig:
    model: str = "resnet_stages"
    model_params: dict = field(default_factory=dict)
    seed: int = 42
    lr: float = 2e-3  # peak rate under onecycle / cosine
    weight_decay: float = 1e-3
    batch_size: int = 32  # of 20-s crops: the samples of 64 10-s crops per step
    num_epochs: int = 24
    patience: int = 0  # early stopping on val F1 (epochs without improvement); 0 = off
    imbalance: str = "weighted"
    class_weighting: str = "sqrt"  # weights of weighted / focal / sampler: inverse or sqrt(inverse) frequency
    focal_gamma: float = 2.0
    augment: list = field(default_factory=lambda: ["scaling", "jitter"])  # names from AUGMENT_NAMES, or ["all"]
    augment_p: float = 0.5
    crops_per_record: int = 1  # fresh random windows per training record per epoch
    crop_mode: str = "random"  # random crops, or "fixed": every non-overlapping window, the same each epoch
    aggregate: str = "mean_prob"  # windows → record: mean_prob or mean_logit (metrics.AGGREGATES)
    schedule: str = "onecycle"  # onecycle, cosine (with warm-up), plateau, constant (schedule.SCHEDULES)
    warmup: float = 0.2  # share of steps warming up (onecycle, cosine)
    calibrate: bool = True  # fit a temperature on validation after training (stand-alone runs)
    plateau_factor: float = 0.5  # ReduceLROnPlateau on val F1 (schedule=plateau)
    plateau_patience: int = 2
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    lstm_lr: float | None = None  # lr of the "recurrent" parameter group
    init_from: str | None = None  # checkpoint whose front end initialises this model
    freeze: str | None = None  # "frontend" to freeze the initialised front end
    val_fold: int | None = None  # None: saved train/val split; k: fold k held out
    max_records: int | None = None  # cap on training records (small runs)
    materialize: bool | None = None  # None: when they fit (feed.load_datasets); a sweep's data.materialize
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # fractional GPUs (sweeps pack trials)
    torch_threads: int = 0  # 0: one per CPU of the worker
    shuffle_buffer: int = 1024
    precision: str = "fp32"  # or "bf16": autocast of forward and loss (training.step.PRECISIONS)

    def __post_init__(self):
        self.augment = parse_augment(self.augment)
        self.validate()

    def validate(self) -> None:
        if self.model not in model_names():
            raise ValueError(f"model: unknown model {self.model!r}; choose from {', '.join(model_names())}")
        if self.imbalance not in IMBALANCE_NAMES:
            raise ValueError(f"imbalance: unknown strategy {self.imbalance!r}; "
                             f"choose from {', '.join(IMBALANCE_NAMES)}")
        for name in self.augment:
            if name not in AUGMENT_NAMES and name != "all":
                raise ValueError(f"augment: unknown augmentation {name!r}; "
                                 f"choose from {', '.join(AUGMENT_NAMES)}, all, none")
        for name, allowed in (("class_weighting", CLASS_WEIGHTINGS), ("aggregate", AGGREGATES),
                              ("schedule", SCHEDULES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: choose from {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup: a share of the steps in [0, 1), got {self.warmup}")
        if self.crop_mode not in ("random", "fixed"):
            raise ValueError(f"crop_mode: random or fixed, got {self.crop_mode!r}")
        if self.crops_per_record < 1:
            raise ValueError(f"crops_per_record: must be >= 1, got {self.crops_per_record}")
        if self.freeze not in (None, "frontend"):
            raise ValueError(f"freeze: only 'frontend' can be frozen, got {self.freeze!r}")
        if self.freeze and not self.init_from:
            raise ValueError("freeze: freezing the front end needs --init-from CHECKPOINT")
        for name in ("lr", "batch_size", "num_epochs", "num_workers"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
