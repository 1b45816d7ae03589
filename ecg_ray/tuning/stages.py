"""Stage 2 of an ablation: the fixed-budget confirmation grid.

Stage 1 is the ASHA sweep (cheap, budget-confounded). This module owns turning a sweep
spec into stage 2: the chosen factors × seeds, every trial run to the same ``budget``
epochs, FIFO (no pruning) and no early stopping, so that
``tuning.effects.fixed_budget_table`` keeps every trial. It only builds and validates the
spec (``search_space.load_spec``'s checks); the sweep command runs it like any other spec.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

from .search_space import SCHEDULER_DEFAULTS, SpecError, SweepSpec, sampler_of, spec_from_dict


def _levels(space: dict, factor: str) -> list:
    value = space.get(factor)
    kind = sampler_of(value)
    if kind in ("grid_search", "choice"):
        return list(value[kind])
    if value is None or isinstance(value, dict):
        raise SpecError(f"stage 2: factor {factor!r} has no grid_search/choice levels in the spec; pass its levels")
    return [value]


def stage2_dict(spec_dict: dict, factors, seeds, budget: int) -> dict:
    """The stage-2 spec as a dict: ``factors`` (names, whose levels come from the spec's
    ``grid_search``/``choice``, or a ``{name: [levels]}`` mapping) and ``seeds`` as ``grid_search``,
    ``num_epochs: budget``, ``patience: 0``, a FIFO scheduler and ``num_samples: 1``. Any other
    sampled entry must be fixed first (a SpecError names it): stage 2 compares only the factors."""
    if int(budget) < 1:
        raise SpecError(f"stage 2: budget must be >= 1 epoch, got {budget!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise SpecError("stage 2: at least one seed")
    out = copy.deepcopy(spec_dict)
    space = out.get("param_space") or {}
    levels = dict(factors) if isinstance(factors, dict) else {f: _levels(space, f) for f in factors}
    loose = [k for k, v in space.items() if k not in levels and k != "seed" and sampler_of(v)]
    if loose:
        raise SpecError(f"stage 2: param_space.{loose[0]} is sampled but not a stage-2 factor; fix it to one value "
                        f"(e.g. the stage-1 choice) or list it among the factors")
    space.update({f: {"grid_search": list(v)} for f, v in levels.items()})
    space.update({"seed": {"grid_search": seeds}, "num_epochs": int(budget), "patience": 0})
    out.update(param_space=space, scheduler={"type": "fifo", "max_t": int(budget)}, num_samples=1,
               name=f"{out.get('name') or 'sweep'}_stage2_b{int(budget)}")
    return out


def stage2_spec(spec_dict: dict, factors, seeds, budget: int) -> SweepSpec:
    """``stage2_dict`` validated exactly as a spec file is (``load_spec``): a ``SweepSpec``."""
    data = stage2_dict(spec_dict, factors, seeds, budget)
    return spec_from_dict(data, where=data["name"], default_name=data["name"])


def stage2_from(spec: SweepSpec, best_config: dict | None = None) -> SweepSpec:
    """The stage-2 spec a sweep spec's ``stage2`` section asks for: ``factors`` (default: every
    ``grid_search`` entry but ``seed``), ``seeds`` (default ``[0, 1, 2]``), ``budget`` (default:
    stage 1's ``scheduler.max_t``), ``resources`` (stage 1's, with these keys replaced: e.g. more
    workers per trial, as stage 2 has fewer trials and no pruning) and ``fixed`` (param_space values
    for stage 2 only). Sampled entries that are neither factors nor in ``fixed`` are fixed at stage
    1's best trial (``best_config``): the factorial then runs *around* stage 1's choice."""
    section = spec.stage2 or {}
    fixed = section.get("fixed") or {}
    factors = section.get("factors") or [k for k, v in spec.param_space.items()
                                         if k != "seed" and sampler_of(v) == "grid_search"]
    clash = sorted(set(fixed) & set(factors))
    if clash:
        raise SpecError(f"stage 2: {clash[0]!r} is both a factor and in stage2.fixed")
    base = {k: v for k, v in asdict(spec).items() if k not in ("path", "stage2")}  # asdict copies deeply
    base["resources"] = {**(base.get("resources") or {}), **(section.get("resources") or {})}
    space = {k: v for k, v in base["param_space"].items() if k != "seed"}
    for key, value in list(space.items()):
        if sampler_of(value) and key not in factors and best_config and key in best_config:
            best = best_config[key]
            space[key] = ",".join(best) or "none" if isinstance(best, list) else best
    base["param_space"] = {**space, **fixed}
    budget = section.get("budget") or int(spec.scheduler.get("max_t", SCHEDULER_DEFAULTS["max_t"]))
    out = stage2_spec(base, factors, section.get("seeds") or [0, 1, 2], budget)
    out.path = spec.path
    return out
