"""The training recipe, one change at a time: ``recipe_arms.md`` / ``recipe_arms.json``
in ``--out`` (``results/training/``; ``recipe.md`` there is the written reading).

Each change of the default recipe is switched on alone on top of the old recipe (fixed non-overlapping windows,
ReduceLROnPlateau, inverse-frequency class weights, mean-probability aggregation) at one equal epoch budget,
with paired seeds (the same seeds for every arm), trained with ``train_run`` on the same records and scored on
the same validation records; the aggregation change needs no training and is scored on the baseline's
checkpoints. The table gives each arm's validation F1(N,A,O) per seed, ΔF1 against the baseline per seed
(paired) with its mean and spread, the verdict (``verdict``) and the wall time per run.

    python -m ecg_ray.bench.recipe --data PREPARED --out results/training --max-records 800 --epochs 5
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import HEADLINE
from ..artifacts import Run, write_json
from ..tables import to_markdown

#: The old recipe's choices for the four things the new one changes.
BASELINE = {"crop_mode": "fixed", "schedule": "plateau", "class_weighting": "inverse", "aggregate": "mean_prob"}
#: Each change alone: arm name → the fields it switches to the new recipe's value.
CHANGES = {"random crops": {"crop_mode": "random"}, "onecycle schedule": {"schedule": "onecycle"},
           "sqrt class weights": {"class_weighting": "sqrt"}}


def _val_f1(run: Path, prepared: Path, aggregate: str | None = None) -> float:
    """Validation F1(N,A,O) of a run's best checkpoint, rescored with ``aggregate`` if given."""
    from ..training.calibration import checkpoint_window_logits
    from ..training.checkpoint import load_checkpoint
    from ..data.dataset import PreparedDataset
    from ..training.metrics import score_records

    payload = load_checkpoint(run)
    if aggregate is None:
        return float(payload["metrics"][HEADLINE])
    cfg = payload["config"]
    _, val_ids = PreparedDataset(prepared).select(cfg["val_fold"], cfg["max_records"])
    y, logits, codes = checkpoint_window_logits(payload, prepared, val_ids)
    return float(score_records(y, logits, codes, aggregate)[HEADLINE])


def run(prepared: Path, work: Path, epochs: int, seeds: list[int], max_records: int | None,
        changes_only: bool = False, render_only: bool = False) -> dict:
    from ..training.config import TrainConfig
    from ..training.trainer import train_run

    # As `ecg-ray train` runs: one worker given every core (a bare TrainConfig asks for 1 CPU).
    base = replace(TrainConfig(), num_epochs=epochs, max_records=max_records, calibrate=False,
                   cpus_per_worker=float(os.cpu_count() or 1), **BASELINE)
    new = replace(base, **{key: v for change in CHANGES.values() for key, v in change.items()})
    arms = {"baseline (old recipe)": base, **{k: replace(base, **v) for k, v in CHANGES.items()},
            # Threads change wall time, not the answer: one seed of the new recipe with one torch thread.
            "all changes (new recipe)": new, "new recipe, 1 torch thread": replace(new, torch_threads=1)}
    if changes_only:  # the baseline and each change alone: what the table needs, at a third less cost
        arms = {k: v for k, v in arms.items() if k == "baseline (old recipe)" or k in CHANGES}
    rows = {}
    for name, cfg in arms.items():
        for seed in (seeds[:1] if "thread" in name else seeds):
            run_dir = work / f"{name.split(' (')[0].replace(' ', '_')}_s{seed}"
            t0 = time.perf_counter()
            if render_only and not Run.holds(run_dir):
                continue  # not run (yet): the table shows the seeds that were
            if not Run.holds(run_dir):
                train_run(replace(cfg, seed=seed), prepared, run_dir, force=True)
            seconds = Run(run_dir).results["seconds"]
            rows.setdefault(name, []).append({"seed": seed, "f1": _val_f1(run_dir, prepared), "seconds": seconds,
                                              "run": str(run_dir), "took": time.perf_counter() - t0})
    rows["mean-logit aggregation"] = [{"seed": r["seed"], "f1": _val_f1(Path(r["run"]), prepared, "mean_logit"),
                                       "seconds": 0.0, "run": r["run"]} for r in rows["baseline (old recipe)"]]
    return {"epochs": epochs, "seeds": seeds, "max_records": max_records, "arms": rows}


def verdict(deltas: list[float]) -> str:
    """The paired test the table applies: a change is decided only when every seed moves
    the same way and the mean ΔF1 is larger than the spread between seeds."""
    if len(deltas) < 2:
        return "undecided (one seed)"
    mean, spread = float(np.mean(deltas)), max(deltas) - min(deltas)
    if abs(mean) > spread and (min(deltas) > 0 or max(deltas) < 0):
        return "better" if mean > 0 else "worse"
    return "undecided"


def render(result: dict, command: str) -> str:
    arms = result["arms"]
    base = {r["seed"]: r["f1"] for r in arms["baseline (old recipe)"]}
    lines = ["# The training recipe, one change at a time", "",
             f"Each change switched on alone on top of the old recipe, `resnet_stages`, {result['epochs']} epochs "
             f"each, seeds {result['seeds']} paired across arms, "
             f"{result['max_records'] or 'all'} training records, scored on the validation records "
             "(recording level, best epoch); the aggregation arm rescores the baseline's checkpoints.", "",
             f"Command: `{command}`", ""]
    rows = []
    for name, runs in arms.items():
        if len(runs) < len(result["seeds"]) and "thread" not in name:
            name += f" ({len(runs)} seed{'s' if len(runs) != 1 else ''} only: no spread)"
        f1 = [r["f1"] for r in runs]
        delta = [r["f1"] - base[r["seed"]] for r in runs]
        if name.startswith("baseline"):  # its row: the seed-to-seed spread of F1 itself, the noise floor
            paired = ["—", "—", f"{max(f1) - min(f1):.3f} (seed noise)", "—"]
        else:
            paired = [", ".join(f"{d:+.3f}" for d in delta), f"{np.mean(delta):+.3f}", f"{max(delta) - min(delta):.3f}",
                      verdict(delta)]
        rows.append([name, ", ".join(f"{v:.3f}" for v in f1), *paired, f"{np.mean([r['seconds'] for r in runs]):.0f}"])
    table = pd.DataFrame(rows, columns=["arm", "val F1(N,A,O) per seed", "ΔF1 vs baseline per seed", "mean ΔF1",
                                        "spread (max−min)", "verdict", "wall s per run"])
    lines.append(to_markdown(table))
    if "new recipe, 1 torch thread" in arms:
        lines += ["", "The new recipe's runs use every core (2 torch threads here); the 1-thread arm is one seed "
                  "of the same recipe, for wall time."]
    lines += ["", "Verdict (`bench.recipe.verdict`): decided only when every seed moves the same way and the "
              "mean ΔF1 is larger than its spread; otherwise inside the noise: undecided."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("results/training"))
    p.add_argument("--work", type=Path, default=Path("/tmp/ecg_recipe_runs"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--max-records", type=int, default=800)
    p.add_argument("--render-only", action="store_true",
                   help="train nothing: tabulate the runs already in --work (an arm with fewer seeds says so)")
    p.add_argument("--changes-only", action="store_true",
                   help="skip the all-changes and 1-thread arms (each change alone against the baseline only)")
    args = p.parse_args(argv)
    command = shlex.join(["python", "-m", "ecg_ray.bench.recipe", *(argv or sys.argv[1:])])
    result = run(args.data, args.work, args.epochs, [int(s) for s in args.seeds.split(",")],
                 args.max_records or None, args.changes_only, args.render_only)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "recipe_arms.json", result)
    (args.out / "recipe_arms.md").write_text(render(result, command))
    print((args.out / "recipe_arms.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
