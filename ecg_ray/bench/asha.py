"""Section ``asha``: what ASHA saves, on the real sweep path.

Runs ``tuning.sweep.run_sweep`` twice on the same prepared data and search space (default
``search_spaces/bench_asha.yaml``): once with ``scheduler.type: asha``, once with ``fifo`` (every trial runs every
epoch: the exhaustive grid). Reads both back with ``tuning.analysis.load_experiment`` and compares trial-epochs,
wall time, and the best config and F1 each picks (Tune's rule: each trial's last reported value). One run each:
a sweep is too long to repeat.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from .stats import markdown_table

DEFAULT_SPEC = Path(__file__).resolve().parents[2] / "search_spaces" / "bench_asha.yaml"


def _key(row) -> str:
    from ..tuning.experiment import FACTORS

    return " / ".join(str(row[f]) for f in FACTORS if f in row)


def _sweep(spec_path: Path, overrides: list[str], scheduler: str, prepared: Path, storage: str, stamp: str) -> dict:
    from ..tuning import analysis
    from ..tuning.search_space import load_spec
    from ..tuning.sweep import experiment_dir, run_sweep

    spec = load_spec(spec_path, [*overrides, f"scheduler.type={scheduler}"])
    spec.name = f"{spec.name}_{scheduler}_{stamp}"
    print(f"bench asha: sweep {spec.name} ({scheduler}) …", flush=True)
    t0 = time.perf_counter()
    run_sweep(spec, prepared, storage, verbose=0)
    wall = time.perf_counter() - t0
    experiment = experiment_dir(storage, spec.name)
    trials, _ = analysis.load_experiment(experiment)
    column = analysis.metric_column(trials, spec.metric, "last")
    best = analysis.best_trial(trials, spec.metric, spec.mode)
    per_config = {_key(r): {"epochs": int(r["epochs"]), "f1": float(r[column]), "status": r["status"]}
                  for _, r in trials.iterrows()}
    return {"experiment": experiment, "wall_s": wall, "trials": len(trials),
            "trial_epochs": int(trials["epochs"].sum()), "max_epochs": int(trials.attrs["max_epochs"]),
            "errors": int((trials["status"] == "ERROR").sum()), "stopped_early": int(trials["stopped_early"].sum()),
            "metric": spec.metric, "mode": spec.mode, "best": {"config": _key(best), "f1": float(best[column])},
            "per_config": per_config}


def compare(asha: dict, fifo: dict) -> dict:
    """Savings and agreement of an ASHA run with the exhaustive (FIFO) run."""
    pick = asha["best"]["config"]
    sign = 1 if fifo.get("mode", "max") == "max" else -1
    ranked = sorted(fifo["per_config"], key=lambda k: -sign * fifo["per_config"][k]["f1"])
    in_fifo = fifo["per_config"].get(pick, {}).get("f1")
    return {
        "same_best": pick == fifo["best"]["config"],
        "f1_gap": fifo["best"]["f1"] - asha["best"]["f1"],
        "pick_f1_exhaustive": in_fifo,
        "pick_rank_exhaustive": ranked.index(pick) + 1 if pick in ranked else None,
        "pick_gap_exhaustive": None if in_fifo is None else fifo["best"]["f1"] - in_fifo,
        "trial_epochs_ratio": asha["trial_epochs"] / max(fifo["trial_epochs"], 1),
        "wall_ratio": asha["wall_s"] / max(fifo["wall_s"], 1e-9),
    }


def run(opts) -> dict:
    from ..training.trainer import init_ray
    from ..tuning.sweep import storage_root

    spec = Path(opts.asha_spec or DEFAULT_SPEC)
    storage = storage_root(opts.storage)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    init_ray()  # before the clock starts, so neither run pays Ray's start-up
    asha = _sweep(spec, list(opts.asha_set), "asha", opts.prepared, storage, stamp)
    fifo = _sweep(spec, list(opts.asha_set), "fifo", opts.prepared, storage, stamp)
    return {"spec": str(spec), "overrides": list(opts.asha_set), "runs": {"asha": asha, "fifo": fifo},
            "comparison": compare(asha, fifo)}


def render(result: dict, context: dict) -> str:
    runs, c = result["runs"], result["comparison"]
    table = [[name.upper() + (" (exhaustive)" if name == "fifo" else ""), r["trials"], r["stopped_early"],
              r["trial_epochs"], r["wall_s"], r["best"]["config"], r["best"]["f1"], r["errors"]]
             for name, r in runs.items()]
    out = [markdown_table(["run", "trials", "stopped early", "trial-epochs", "wall s", "best config",
                           f"best {runs['fifo']['metric']}", "errors"], table, align="lrrrrlrr")]
    a, f = runs["asha"], runs["fifo"]
    out.append(f"- ASHA used {c['trial_epochs_ratio']:.0%} of the exhaustive trial-epochs "
               f"({a['trial_epochs']} of {f['trial_epochs']}) and {c['wall_ratio']:.0%} of its wall time")
    out.append(f"- same best config: **{'yes' if c['same_best'] else 'no'}**; F1 gap (exhaustive best − ASHA best, "
               f"as each reported): {c['f1_gap']:+.4f}")
    if not c["same_best"] and c["pick_rank_exhaustive"]:
        out.append(f"- ASHA's pick ranks {c['pick_rank_exhaustive']} of {f['trials']} in the exhaustive run, "
                   f"{c['pick_gap_exhaustive']:+.4f} below its best there")
    spec = Path(result["spec"]).name + (f" with {' '.join(result['overrides'])}" if result["overrides"] else "")
    out.append(f"- search space: `{spec}`; experiments: `{a['experiment']}`, `{f['experiment']}`")
    rows = [[k, f["per_config"][k]["epochs"], f["per_config"][k]["f1"],
             a["per_config"].get(k, {}).get("epochs"), a["per_config"].get(k, {}).get("f1")]
            for k in sorted(f["per_config"], key=lambda k: -f["per_config"][k]["f1"])]
    out += ["", markdown_table(["config (model / imbalance / augment)", "exhaustive epochs", "exhaustive F1",
                                "ASHA epochs", "ASHA F1 (last reported)"], rows)]
    return "\n".join(out)

