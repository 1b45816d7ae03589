"""``TrainConfig``: every knob of one training run, with defaults and validation.

The same object backs ``ecg-ray train`` flags, a sweep trial's config and the
``config`` stored in checkpoints, so a name means one thing everywhere.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

from ..models import model_names
from .augment import parse_augment
from .imbalance import CLASS_WEIGHTINGS, IMBALANCE_NAMES
from .metrics import AGGREGATES
from .schedule import SCHEDULES
from .step import PRECISIONS


def knob(default=MISSING, help: str = "", **kwargs):
    """A field with its ``--help`` line (the CLI's flags are generated from the dataclass)."""
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class TrainConfig:
    model: str = knob("resnet_stages", "architecture (ecg-ray models)")
    model_params: dict = knob(help="JSON dict of model hyper-parameters", default_factory=dict)
    seed: int = 42
    lr: float = knob(2e-3, "peak learning rate")  # under onecycle / cosine
    weight_decay: float = 1e-3
    batch_size: int = 32  # of 20-s crops: the samples of 64 10-s crops per step
    num_epochs: int = 24
    patience: int = knob(0, "early stopping on val F1 (epochs); 0 = off")  # epochs without improvement
    imbalance: str = knob("weighted", "none | weighted | sampler | focal")
    class_weighting: str = knob("sqrt", "inverse | sqrt (class weights of weighted, focal, sampler)")
    focal_gamma: float = 2.0
    augment: list = knob(help="jitter,scaling,time_warp,cutout joined by , or + | all | none",
                         default_factory=lambda: ["scaling", "jitter"])  # names from AUGMENT_NAMES, or ["all"]
    augment_p: float = knob(0.5, "probability each augmentation is applied to a crop")
    crops_per_record: int = knob(1, "fresh random training windows per record per epoch")
    crop_mode: str = knob("random",
                          "random (fresh crops each epoch) | fixed (every non-overlapping window, each epoch)")
    aggregate: str = knob("mean_prob", "mean_prob | mean_logit: windows → record")  # metrics.AGGREGATES
    schedule: str = knob("onecycle", "onecycle | cosine | plateau | constant")  # schedule.SCHEDULES
    warmup: float = knob(0.2, "share of the steps warming up (onecycle, cosine)")
    calibrate: bool = knob(True, "fit a temperature on the validation records after training")  # stand-alone runs
    plateau_factor: float = 0.5  # ReduceLROnPlateau on val F1 (schedule=plateau)
    plateau_patience: int = 2
    grad_clip: float = knob(1.0, "max gradient norm; 0 = off")
    lstm_lr: float | None = knob(None, "learning rate of the recurrent part")  # the "recurrent" parameter group
    init_from: str | None = knob(None, "checkpoint whose front end initialises the model")
    freeze: str | None = knob(None, "'frontend' to freeze the initialised front end")
    val_fold: int | None = knob(None, "hold out this fold (default: the saved train/val split)")
    max_records: int | None = knob(None, "cap on training records")
    # materialize None: feed.load_datasets decides; a sweep passes its data.materialize
    materialize: bool | None = knob(None, "keep the records in the object store (default: when they fit in 40%% "
                                          "of it); --no-materialize streams them from parquet every epoch")
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = knob(1.0, "CPUs (and torch threads) per worker "
                                       "(train default: all cores shared by the workers)")
    gpus_per_worker: float | None = None  # fractional GPUs (sweeps pack trials)
    torch_threads: int = knob(0, "0: one per CPU of the worker")
    shuffle_buffer: int = knob(1024, "training records whose crops the crop shuffle buffer mixes")
    precision: str = knob("fp32", "fp32 | bf16 (bf16 autocast of forward and loss; meant for CUDA, slow on most CPUs)")

    def __post_init__(self):
        """Normalise ``augment`` ("all" becomes every name) and check every field: ValueError naming it."""
        if self.model not in model_names():
            raise ValueError(f"model: unknown model {self.model!r}; choose from {', '.join(model_names())}")
        if self.imbalance not in IMBALANCE_NAMES:
            raise ValueError(f"imbalance: unknown strategy {self.imbalance!r}; "
                             f"choose from {', '.join(IMBALANCE_NAMES)}")
        self.augment = parse_augment(self.augment)
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
