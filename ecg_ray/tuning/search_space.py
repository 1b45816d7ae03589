"""Search-space YAML → a validated ``SweepSpec`` and a Tune ``param_space``.

A spec file (see ``search_spaces/``) has sections ``data``, ``metric``/``mode``,
``scheduler`` (ASHA), ``resources``, ``max_failures``, ``num_samples`` and
``param_space``. Each ``param_space`` entry is a constant or one of
``{grid_search: [...]}``, ``{choice: [...]}``, ``{uniform|loguniform|randint: [lo, hi]}``.
Every value a trial could get is checked against ``TrainConfig`` before any
trial starts, so a typo fails at once with a message naming the key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .. import HEADLINE
from ..training.config import TrainConfig

SAMPLERS = ("grid_search", "choice", "uniform", "loguniform", "randint")
DATA_KEYS = {"source", "data_dir", "prepared", "preprocess", "max_records", "val_fold", "materialize"}
#: The scheduler section's defaults: a spec's own values override them (``sweep`` fills them in too).
SCHEDULER_DEFAULTS = {"type": "asha", "max_t": 20, "grace_period": 2, "reduction_factor": 3}
SCHEDULER_KEYS = set(SCHEDULER_DEFAULTS)
RESOURCE_KEYS = {"cpus_per_trial", "gpus_per_trial", "num_workers", "max_concurrent_trials"}
TOP_KEYS = {"name", "description", "data", "metric", "mode", "scheduler", "resources",
            "max_failures", "num_samples", "param_space", "stage2"}
#: ``stage2``: the fixed-budget confirmation after the ASHA search (``tuning.stages``).
#: resources: overrides for stage 2 only; fixed: param_space values for stage 2 only (instead of stage 1's best)
STAGE2_KEYS = {"factors", "seeds", "budget", "resources", "fixed"}


class SpecError(ValueError):
    """A malformed search-space spec; the message names the offending key."""


@dataclass
class SweepSpec:
    name: str
    param_space: dict
    data: dict = field(default_factory=dict)
    metric: str = HEADLINE
    mode: str = "max"
    scheduler: dict = field(default_factory=lambda: dict(SCHEDULER_DEFAULTS))
    resources: dict = field(default_factory=lambda: {"cpus_per_trial": 1, "gpus_per_trial": 0,
                                                      "num_workers": 1, "max_concurrent_trials": None})
    max_failures: int = 1
    num_samples: int = 1
    stage2: dict | None = None  # {factors, seeds, budget}: run the fixed-budget stage after stage 1
    path: str | None = None


def _candidates(key: str, value):
    """Every concrete value a trial may get for ``key`` (bounds for ranges)."""
    if not isinstance(value, dict) or key == "model_params" and not (set(value) & set(SAMPLERS)):
        return [value]
    if len(value) != 1 or next(iter(value)) not in SAMPLERS:
        raise SpecError(f"param_space.{key}: expected a constant or one of {{{', '.join(SAMPLERS)}: ...}}, got {value!r}")
    kind, arg = next(iter(value.items()))
    if not isinstance(arg, list) or not arg:
        raise SpecError(f"param_space.{key}.{kind}: expected a non-empty list, got {arg!r}")
    if kind in ("uniform", "loguniform", "randint"):
        if len(arg) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in arg) or arg[0] >= arg[1]:
            raise SpecError(f"param_space.{key}.{kind}: expected [low, high] numbers with low < high, got {arg!r}")
        if kind == "loguniform" and arg[0] <= 0:
            raise SpecError(f"param_space.{key}.loguniform: bounds must be > 0, got {arg!r}")
    return arg


def _check_types(key: str, value, default) -> None:
    if default is None or value is None:
        return
    number = (int, float)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, number):
        ok = isinstance(value, number) and not isinstance(value, bool)
        if isinstance(default, int) and not isinstance(default, bool):
            ok = ok and float(value).is_integer()
    elif isinstance(default, (list, dict, str)):
        ok = isinstance(value, (type(default), str)) if isinstance(default, list) else isinstance(value, type(default))
    else:
        ok = True
    if not ok:
        raise SpecError(f"param_space.{key}: {value!r} has the wrong type (expected {type(default).__name__})")


def validate_param_space(space: dict) -> None:
    defaults = TrainConfig().to_dict()
    for key, value in space.items():
        if key not in defaults:
            raise SpecError(f"param_space.{key}: unknown training option (known: {', '.join(sorted(defaults))})")
        for candidate in _candidates(key, value):
            _check_types(key, candidate, defaults[key])
            try:
                TrainConfig.from_dict({key: candidate})
            except (ValueError, TypeError) as e:
                raise SpecError(f"param_space.{key}: {e}") from None
    _check_model_params(space)


def _check_model_params(space: dict) -> None:
    """Every model candidate must accept every ``model_params`` candidate."""
    from ..models import build_model

    if "model_params" not in space:
        return
    models = _candidates("model", space.get("model", TrainConfig().model))
    for params in _candidates("model_params", space["model_params"]):
        if not isinstance(params, dict):
            raise SpecError(f"param_space.model_params: expected a mapping, got {params!r}")
        for model in models:
            try:
                build_model(model, **params)
            except (TypeError, ValueError) as e:
                raise SpecError(f"param_space.model_params: {params} do not fit model {model!r}: {e}") from None


def to_tune(space: dict) -> dict:
    """The Tune ``param_space`` for a validated spec."""
    from ray import tune

    out = {}
    for key, value in space.items():
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SAMPLERS:
            kind, arg = next(iter(value.items()))
            out[key] = {"grid_search": tune.grid_search, "choice": tune.choice}[kind](arg) \
                if kind in ("grid_search", "choice") else getattr(tune, kind)(*arg)
        else:
            out[key] = value
    return out


def _set(d: dict, dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = yaml.safe_load(raw)


def load_spec(path: Path, overrides: list[str] = ()) -> SweepSpec:
    """Load and validate a spec; ``overrides`` are ``section.key=value`` strings."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"search space not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"--set {item!r}: expected section.key=value")
        _set(raw, *item.split("=", 1))
    for section, allowed in (("", TOP_KEYS), ("data", DATA_KEYS), ("scheduler", SCHEDULER_KEYS),
                             ("resources", RESOURCE_KEYS), ("stage2", STAGE2_KEYS)):
        block = raw if not section else raw.get(section) or {}
        if not isinstance(block, dict):
            raise SpecError(f"{path}: {section} must be a mapping")
        unknown = sorted(set(block) - allowed)
        for key in ("resources", "fixed"):
            if section == "stage2" and not isinstance(block.get(key) or {}, dict):
                raise SpecError(f"{path}: stage2.{key} must be a mapping")
        unknown += [f"resources.{k}" for k in sorted(set(block.get("resources") or {}) - RESOURCE_KEYS)
                    if section == "stage2"]
        if unknown:
            raise SpecError(f"{path}: unknown key {(section + '.') if section else ''}{unknown[0]} "
                            f"(allowed: {', '.join(sorted(allowed))})")
    if not isinstance(raw.get("param_space"), dict) or not raw["param_space"]:
        raise SpecError(f"{path}: param_space must be a non-empty mapping")
    validate_param_space(raw["param_space"])
    spec = SweepSpec(name=raw.get("name") or path.stem, param_space=raw["param_space"], path=str(path))
    for f in fields(SweepSpec):
        if f.name in raw and f.name not in ("name", "param_space"):
            value = raw[f.name]
            current = getattr(spec, f.name)
            setattr(spec, f.name, {**current, **value} if isinstance(value, dict) and current else value)
    if spec.mode not in ("max", "min"):
        raise SpecError(f"{path}: mode must be max or min, got {spec.mode!r}")
    sched = spec.scheduler
    if sched.get("type", "asha") not in ("asha", "fifo"):
        raise SpecError(f"{path}: scheduler.type must be asha or fifo, got {sched['type']!r}")
    for key in ("max_t", "grace_period", "reduction_factor"):
        if key in sched and not (isinstance(sched[key], (int, float)) and sched[key] >= 1):
            raise SpecError(f"{path}: scheduler.{key} must be a number >= 1, got {sched[key]!r}")
    if spec.data.get("val_fold") is not None and not isinstance(spec.data["val_fold"], int):
        raise SpecError(f"{path}: data.val_fold must be an integer, got {spec.data['val_fold']!r}")
    return spec
