"""Search-space YAML → a validated ``SweepSpec`` and a Tune ``param_space``.

A spec file (see ``search_spaces/``) has sections ``data``, ``metric``/``mode``, ``scheduler``
(ASHA), ``resources``, ``max_failures``, ``num_samples`` and ``param_space``. Each ``param_space``
entry is a constant or one of ``{grid_search: [...]}``, ``{choice: [...]}``,
``{uniform|loguniform|randint: [lo, hi]}``. Every value a trial could get is checked against
``TrainConfig`` before any trial starts, so a typo fails at once with a message naming the key.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .. import HEADLINE
from ..models import build_model
from ..training.config import TrainConfig

SAMPLERS = ("grid_search", "choice", "uniform", "loguniform", "randint")
#: The scheduler section's defaults: a spec's own values override them (``sweep`` fills them in too).
SCHEDULER_DEFAULTS = {"type": "asha", "max_t": 20, "grace_period": 2, "reduction_factor": 3}
RESOURCE_KEYS = {"cpus_per_trial", "gpus_per_trial", "num_workers", "max_concurrent_trials"}
#: The keys each section may hold ("": the top level; None: any key). ``stage2`` is the fixed-budget
#: confirmation after the ASHA search (``tuning.stages.stage2_from`` says what its keys do).
SECTIONS = {
    "": {"name", "description", "data", "metric", "mode", "scheduler", "resources",
         "max_failures", "num_samples", "param_space", "stage2"},
    "data": {"source", "data_dir", "prepared", "preprocess", "max_records", "val_fold", "materialize"},
    "scheduler": set(SCHEDULER_DEFAULTS),
    "resources": RESOURCE_KEYS,
    "stage2": {"factors", "seeds", "budget", "resources", "fixed"},
    "stage2.resources": RESOURCE_KEYS,
    "stage2.fixed": None,
}


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


def sampler_of(value) -> str | None:
    """The sampler of a ``param_space`` entry (``{grid_search: [...]}`` → ``grid_search``); None for a constant."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SAMPLERS:
        return next(iter(value))
    return None


def is_number(value) -> bool:
    """An int or float, numpy's included; not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _candidates(key: str, value):
    """Every concrete value a trial may get for ``key`` (bounds for ranges)."""
    if not isinstance(value, dict) or key == "model_params" and not (set(value) & set(SAMPLERS)):
        return [value]
    kind = sampler_of(value)
    if kind is None:
        raise SpecError(f"param_space.{key}: expected a constant or one of "
                        f"{{{', '.join(SAMPLERS)}: ...}}, got {value!r}")
    arg = value[kind]
    if not isinstance(arg, list) or not arg:
        raise SpecError(f"param_space.{key}.{kind}: expected a non-empty list, got {arg!r}")
    if kind in ("uniform", "loguniform", "randint"):
        if len(arg) != 2 or not all(map(is_number, arg)) or arg[0] >= arg[1]:
            raise SpecError(f"param_space.{key}.{kind}: expected [low, high] numbers with low < high, got {arg!r}")
        if kind == "loguniform" and arg[0] <= 0:
            raise SpecError(f"param_space.{key}.loguniform: bounds must be > 0, got {arg!r}")
    return arg


def _check_type(key: str, value, default) -> None:
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = is_number(value) and (isinstance(default, float) or float(value).is_integer())
    elif isinstance(default, list):
        ok = isinstance(value, (list, str))  # augment: a list of names or one comma-separated string
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise SpecError(f"param_space.{key}: {value!r} has the wrong type (expected {type(default).__name__})")


def validate_param_space(space: dict) -> None:
    """Check every value a trial could get against ``TrainConfig`` and the chosen models."""
    defaults = TrainConfig().to_dict()
    for key, value in space.items():
        if key not in defaults:
            raise SpecError(f"param_space.{key}: unknown training option (known: {', '.join(sorted(defaults))})")
        for candidate in _candidates(key, value):
            _check_type(key, candidate, defaults[key])
            try:
                TrainConfig.from_dict({key: candidate})
            except (ValueError, TypeError) as e:
                raise SpecError(f"param_space.{key}: {e}") from None
    if "model_params" not in space:
        return
    # every model candidate must accept every model_params candidate
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

    out = dict(space)
    for key, value in space.items():
        kind = sampler_of(value)
        if kind:
            sample = getattr(tune, kind)
            out[key] = sample(value[kind]) if kind in ("grid_search", "choice") else sample(*value[kind])
    return out


def load_spec(path: Path, overrides: list[str] = ()) -> SweepSpec:
    """Load and validate a spec; ``overrides`` are ``section.key=value`` strings."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"search space not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"--set {item!r}: expected section.key=value")
        dotted, value = item.split("=", 1)
        *sections, key = dotted.split(".")
        block = functools.reduce(lambda outer, section: outer.setdefault(section, {}), sections, raw)
        block[key] = yaml.safe_load(value)
    spec = spec_from_dict(raw, str(path), default_name=path.stem)
    spec.path = str(path)
    return spec


def spec_from_dict(raw: dict, where: str, default_name: str) -> SweepSpec:
    """Validate a spec file's content into a ``SweepSpec``; error messages start with ``where``."""
    for section, allowed in SECTIONS.items():
        block = functools.reduce(lambda outer, key: outer.get(key) or {}, filter(None, section.split(".")), raw)
        if not isinstance(block, dict):
            raise SpecError(f"{where}: {section or 'the spec'} must be a mapping")
        unknown = sorted(set(block) - allowed) if allowed is not None else []
        if unknown:
            raise SpecError(f"{where}: unknown key {(section + '.') if section else ''}{unknown[0]} "
                            f"(allowed: {', '.join(sorted(allowed))})")
    if not isinstance(raw.get("param_space"), dict) or not raw["param_space"]:
        raise SpecError(f"{where}: param_space must be a non-empty mapping")
    validate_param_space(raw["param_space"])
    spec = SweepSpec(name=raw.get("name") or default_name, param_space=raw["param_space"])
    for key in {f.name for f in fields(SweepSpec)} & set(raw) - {"name", "param_space"}:
        current = getattr(spec, key)  # a section updates its defaults; anything else replaces them
        setattr(spec, key, {**current, **raw[key]} if isinstance(raw[key], dict) and current else raw[key])
    if spec.mode not in ("max", "min"):
        raise SpecError(f"{where}: mode must be max or min, got {spec.mode!r}")
    sched = spec.scheduler
    if sched.get("type", "asha") not in ("asha", "fifo"):
        raise SpecError(f"{where}: scheduler.type must be asha or fifo, got {sched['type']!r}")
    for key in ("max_t", "grace_period", "reduction_factor"):
        if key in sched and not (is_number(sched[key]) and sched[key] >= 1):
            raise SpecError(f"{where}: scheduler.{key} must be a number >= 1, got {sched[key]!r}")
    if spec.data.get("val_fold") is not None and not isinstance(spec.data["val_fold"], int):
        raise SpecError(f"{where}: data.val_fold must be an integer, got {spec.data['val_fold']!r}")
    return spec
