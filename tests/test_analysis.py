"""ecg_ray.tuning.analysis: confidence intervals and ablation tables on hand-made
tables, and loading / ranking a real Ray Tune sweep on the real records the way
Tune itself does (``Tuner.restore(...).get_results().get_best_result``).

The sweep: ``$ECG_RAY_TEST_SWEEP`` (an existing finished experiment folder, to
reuse one while developing) or, by default, the smoke grid run once per session
through the real CLI on a small stratified subset of the real records.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecg_ray.tuning import analysis
from ecg_ray.tuning.analysis import (ablation, best_trial, bootstrap_interval, load_experiment, normalize_augment,
                                     t_interval)

# -- hand-made tables ----------------------------------------------------------------------------


def _table(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["model", "imbalance", "augment", "seed", "best_val_f1_cinc"])
    df.insert(0, "trial_id", [f"t{i:02d}" for i in range(len(df))])
    df["status"] = "TERMINATED"
    df["tune_order"] = range(len(df))
    df.attrs["config_columns"] = ["model", "imbalance", "augment", "seed"]
    return df


def test_t_interval_known_values():
    # n=5, mean 3, sd sqrt(2.5); t_{0.975,4} = 2.7764451
    mean, lo, hi = t_interval([1, 2, 3, 4, 5])
    half = 2.7764451052 * math.sqrt(2.5) / math.sqrt(5)
    assert mean == pytest.approx(3.0)
    assert (lo, hi) == pytest.approx((3 - half, 3 + half), abs=1e-9)
    assert (lo, hi) == pytest.approx((1.036756, 4.963244), abs=1e-6)
    # n=3, mean 0.7, sd 0.1; t_{0.975,2} = 4.3026527 → ±0.248414
    assert t_interval([0.6, 0.7, 0.8]) == pytest.approx((0.7, 0.451586, 0.948414), abs=1e-6)
    # 90%: t_{0.95,2} = 2.9199856
    assert t_interval([0.6, 0.7, 0.8], 0.90)[2] == pytest.approx(0.7 + 2.9199856 * 0.1 / math.sqrt(3), abs=1e-6)
    # one value: a mean but no interval; NaN values are ignored
    mean, lo, hi = t_interval([0.5, float("nan")])
    assert mean == 0.5 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in t_interval([]))


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    x = [0.61, 0.64, 0.66, 0.70, 0.72, 0.75]
    mean, lo, hi = bootstrap_interval(x, seed=3)
    assert lo < mean < hi and mean == pytest.approx(np.mean(x))
    assert bootstrap_interval(x, seed=3) == (mean, lo, hi)
    t_mean, t_lo, t_hi = t_interval(x)
    assert t_lo < lo and hi < t_hi  # percentile bootstrap of n=6 is narrower than the t interval
    assert math.isnan(bootstrap_interval([0.5])[1])


def test_ablation_on_hand_made_table():
    # 2 models x 2 imbalance x 3 seeds, augment fixed; cnn_lstm is clearly better, imbalance is not.
    rows = []
    for model, base in (("cnn_only", 0.60), ("cnn_lstm", 0.80)):
        for imb, shift in (("weighted", 0.0), ("focal", 0.01)):
            for seed, noise in ((1, -0.01), (2, 0.0), (3, 0.01)):
                rows.append((model, imb, "none", seed, base + shift + noise))
    result = ablation(_table(rows))
    levels = result.levels.set_index(["factor", "level"])

    lstm = levels.loc[("model", "cnn_lstm")]
    values = [0.79, 0.80, 0.81, 0.80, 0.81, 0.82]  # every cnn_lstm trial
    sd = float(np.std(values, ddof=1))
    half = 2.5705818366 * sd / math.sqrt(6)  # t_{0.975,5}
    assert lstm["n"] == 6 and lstm["mean"] == pytest.approx(0.805)
    assert lstm["sd"] == pytest.approx(sd)
    assert (lstm["ci_low"], lstm["ci_high"]) == pytest.approx((0.805 - half, 0.805 + half))
    assert lstm["rank"] == 1 and levels.loc[("model", "cnn_only"), "rank"] == 2
    assert levels.loc[("augment", "none"), "n"] == 12

    # interaction: mean per (model, imbalance) cell, 3 trials each
    assert result.interaction.shape == (2, 2)
    assert result.interaction.loc["cnn_lstm", "focal"] == pytest.approx(0.81)
    assert result.interaction.loc["cnn_only", "weighted"] == pytest.approx(0.60)
    assert (result.interaction_n.to_numpy() == 3).all()

    notes = "\n".join(result.notes)
    assert "model: cnn_lstm (0.805) beats cnn_only (0.605)" in notes
    assert "imbalance: focal (0.710) and weighted (0.700) are not distinguishable (95% CIs overlap)" in notes
    assert "augment: only one level (none)" in notes

    # seed stability: one row per config, 3 seeds, sd 0.01
    stab = result.stability
    assert len(stab) == 4 and (stab["n_seeds"] == 3).all()
    assert stab["sd"].to_numpy() == pytest.approx([0.01] * 4)
    assert stab.iloc[0][["model", "imbalance"]].tolist() == ["cnn_lstm", "focal"]


def test_ablation_leaves_out_errors_and_handles_single_trials():
    rows = [("cnn_only", "weighted", "none", 42, 0.5), ("cnn_lstm", "weighted", "none", 42, 0.6),
            ("cnn_lstm", "focal", "all", 42, float("nan"))]
    df = _table(rows)
    df.loc[2, "status"] = "ERROR"
    result = ablation(df)
    assert result.n_trials == 2 and result.excluded == ["t02 (error)"]
    assert "cannot be compared" in "\n".join(result.notes)
    assert "single seed per config" in "\n".join(result.notes)
    levels = result.levels.set_index(["factor", "level"])
    assert levels.loc[("model", "cnn_only"), ["ci_low", "ci_high"]].isna().all()  # n = 1: no interval
    assert levels.loc[("imbalance", "weighted"), "n"] == 2 and levels.loc[("imbalance", "weighted"), "ci_low"] < 0.5
    with pytest.raises(ValueError, match="method"):
        ablation(df, method="jackknife")
    assert json.loads(json.dumps(result.to_dict(), default=str))["n_trials"] == 2


def test_normalize_augment():
    assert normalize_augment("none") == "none"
    assert normalize_augment([]) == "none"
    assert normalize_augment(None) == "none"
    assert normalize_augment("all") == "all"
    assert normalize_augment(["jitter", "scaling", "time_warp", "cutout"]) == "all"  # TrainConfig's expansion
    assert normalize_augment(["cutout", "jitter"]) == "jitter+cutout"
    assert normalize_augment("cutout,jitter") == "jitter+cutout"
    assert normalize_augment("jitter+cutout") == "jitter+cutout"


def test_best_trial_follows_tune_rules():
    df = _table([("a", "w", "none", 1, 0.5), ("b", "w", "none", 1, 0.7), ("c", "w", "none", 1, 0.7),
                 ("d", "w", "none", 1, float("nan"))])
    df["final_val_f1_cinc"] = df["best_val_f1_cinc"]
    df["final_val_loss"] = [0.9, float("inf"), 0.4, 0.1]
    assert best_trial(df, "f1_cinc")["trial_id"] == "t01"  # tie: first in Tune's order
    df["tune_order"] = [0, 2, 1, 3]
    assert best_trial(df, "val_f1_cinc")["trial_id"] == "t02"
    assert best_trial(df, "loss")["trial_id"] == "t03"  # min for a loss; inf never wins
    assert best_trial(df, "val_loss", "max")["trial_id"] == "t00"
    assert best_trial(df.iloc[[3]], "f1_cinc")["trial_id"] == "t03"  # one trial: Tune returns it
    with pytest.raises(ValueError, match="unknown metric"):
        best_trial(df, "val_nonsense")
    assert analysis.metric_column(df, "best_val_f1_cinc") == "best_val_f1_cinc"
    assert analysis.normalize_metric("auroc") == "val_auroc_macro"
    assert analysis.normalize_metric("f1_cinc") == "val_f1_cinc"
    assert analysis.normalize_metric("seg_f1_cinc") == "val_seg_f1_cinc"


def test_render_formats():
    df = pd.DataFrame({"trial_id": ["a", "b"], "val": [0.5, float("nan")], "flag": [True, False]})
    md = analysis.render(df, "markdown").splitlines()
    assert md[0] == "| trial_id | val | flag |" and md[1] == "|---|---:|---|" and md[2] == "| a | 0.5000 | yes |"
    assert pd.read_csv(__import__("io").StringIO(analysis.render(df, "csv")))["val"].iloc[0] == 0.5
    assert json.loads(analysis.render(df, "json"))[1]["val"] is None
    text = analysis.render(df, "table").splitlines()
    assert text[0].split() == ["trial_id", "val", "flag"] and set(text[1]) <= {"-", " "}
    with pytest.raises(ValueError):
        analysis.render(df, "xml")


def test_filter_trials():
    df = _table([("cnn_only", "weighted", "none", 1, 0.5), ("cnn_lstm", "focal", "jitter+cutout", 2, 0.6)])
    df["lr"] = [1e-3, 3e-3]
    assert analysis.filter_trials(df, model="cnn_lstm")["trial_id"].tolist() == ["t01"]
    assert analysis.filter_trials(df, augment="cutout,jitter")["trial_id"].tolist() == ["t01"]
    assert analysis.filter_trials(df, lr_min=2e-3)["trial_id"].tolist() == ["t01"]
    assert analysis.filter_trials(df, lr_max=2e-3, seed=[1])["trial_id"].tolist() == ["t00"]
    assert analysis.filter_trials(df, imbalance=["focal", "weighted"]).shape[0] == 2


# -- a real sweep --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tune_grid(sweep_dir):
    """Tune's own view of the sweep: the ResultGrid of the restored Tuner."""
    from ray import tune

    from ecg_ray.tuning.sweep import run_trial

    return tune.Tuner.restore(str(sweep_dir), trainable=run_trial).get_results()


def test_checkpoint_history_fills_dropped_epochs_but_adds_none_tune_never_saw():
    from ecg_ray.tuning.experiment import _merge_history

    history = [{"epoch": e, "val_f1_cinc": 0.1 * (e + 1)} for e in range(3)]  # the Train checkpoint's
    # ASHA stopped the trial after epoch 1; its worker still checkpointed epoch 2
    stopped = _merge_history("t", history, [{"epoch": 0, "val_f1_cinc": 0.1}, {"epoch": 1, "val_f1_cinc": 0.2}])
    assert [r["epoch"] for r in stopped] == [0, 1]
    # restarted from its checkpoint: result.json holds only the epoch after the restart
    restarted = _merge_history("t", history, [{"epoch": 2, "val_f1_cinc": 0.35}])
    assert [r["epoch"] for r in restarted] == [0, 1, 2] and restarted[-1]["val_f1_cinc"] == 0.35
    assert _merge_history("t", history, []) == _merge_history("t", history, history)  # no report yet: all of it


def test_a_trial_rerun_in_a_new_folder_is_read_once(tmp_path):
    """Tune reruns a trial caught before its first report under the same id in a new
    folder on resume; without a saved experiment state the folder with reports wins."""
    config = {"model": "cnn_only", "imbalance": "weighted", "augment": "none", "seed": 0}
    row = {"trial_id": "abcde_00000", "epoch": 0, "val_f1_cinc": 0.5, "training_iteration": 1, "done": True}
    orphan = tmp_path / "run_trial_abcde_00000_0_model=cnn_only_2026-11-27_12-51-32"
    rerun = tmp_path / "run_trial_abcde_00000_0_model=cnn_only_2026-11-27_12-53-10"
    for folder in (orphan, rerun):
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(config))
    (rerun / "result.json").write_text(json.dumps(row) + "\n")
    trials, epochs = load_experiment(tmp_path)
    assert trials["trial_id"].tolist() == ["abcde_00000"]
    assert trials["path"].item() == str(rerun) and trials["epochs"].item() == 1
    assert len(epochs) == 1


@pytest.mark.e2e
def test_load_finished_sweep(sweep, sweep_dir):
    from ray.tune import ExperimentAnalysis

    trials, epochs = sweep
    ea = {t.trial_id: t for t in ExperimentAnalysis(str(sweep_dir)).trials}
    assert sorted(trials["trial_id"]) == sorted(ea)
    assert trials.attrs["kind"] == "tune" and trials.attrs["metric"] == "val_f1_cinc"
    assert set(trials["augment"]) <= {"none", "all"} and set(trials["model"]) == {"cnn_only", "cnn_lstm"}
    assert len(trials.drop_duplicates(["model", "imbalance", "augment"])) == len(trials) == 8
    ok = trials[trials["status"] == "TERMINATED"]
    assert len(ok) >= 1
    max_epochs = trials.attrs["max_epochs"]
    for row in trials.itertuples():
        t = ea[row.trial_id]
        assert row.status == t.status
        assert row.epochs == len(epochs[epochs["trial_id"] == row.trial_id])
        assert row.stopped_early == (row.status == "TERMINATED" and row.epochs < max_epochs)
        if row.status == "ERROR":
            assert row.error  # the last line of Tune's error.txt
            continue
        assert row.final_val_f1_cinc == pytest.approx(t.last_result["val_f1_cinc"])
        part = epochs[epochs["trial_id"] == row.trial_id]
        assert row.best_val_f1_cinc == pytest.approx(part["val_f1_cinc"].max())
        assert row.best_epoch == int(part.loc[part["val_f1_cinc"].idxmax(), "epoch"]) + 1
        assert Path(row.checkpoint, "model.pt").is_file()
        assert part["epoch"].tolist() == list(range(row.epochs))
    # every reported metric, per epoch
    for key in ("val_f1_cinc", "val_seg_f1_cinc", "val_auroc_macro", "val_f1_noisy", "train_loss", "lr"):
        assert key in epochs


@pytest.mark.e2e
@pytest.mark.parametrize("metric,mode", [("val_f1_cinc", "max"), ("val_auroc_macro", "max"), ("val_loss", "min"),
                                         ("val_seg_f1_cinc", "max"), ("train_loss", "min")])
def test_best_trial_is_tunes_best_result(sweep, tune_grid, metric, mode):
    trials, _ = sweep
    expected = tune_grid.get_best_result(metric=metric, mode=mode).metrics["trial_id"]
    assert best_trial(trials, metric, mode)["trial_id"] == expected
    short = metric.removeprefix("val_")
    assert best_trial(trials, short, mode)["trial_id"] == expected


@pytest.mark.e2e
def test_runs_best_cli_prints_tunes_choice(sweep_dir, tune_grid, capsys):
    from ecg_ray.cli import main

    expected = tune_grid.get_best_result(metric="val_f1_cinc", mode="max").metrics["trial_id"]
    assert main(["runs", str(sweep_dir), "best", "--metric", "f1_cinc"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].split() == ["trial_id", expected]
    assert main(["runs", str(sweep_dir), "best", "--metric", "auroc", "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["trial_id"] == tune_grid.get_best_result("val_auroc_macro", "max").metrics["trial_id"]
    assert record["metric"] == "final_val_auroc_macro" and record["config"]["model"] in ("cnn_only", "cnn_lstm")


@pytest.mark.e2e
def test_runs_list_and_compare_cli(sweep, sweep_dir, capsys):
    from ecg_ray.cli import main

    trials, _ = sweep
    assert main(["runs", str(sweep_dir), "list", "--model", "cnn_lstm", "--format", "csv"]) == 0
    listed = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert set(listed["model"]) == {"cnn_lstm"} and len(listed) == (trials["model"] == "cnn_lstm").sum()
    assert main(["runs", str(sweep_dir), "list", "--augment", "none", "--imbalance", "focal", "--format",
                 "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and {r["augment"] for r in rows} == {"none"}
    assert main(["runs", str(sweep_dir), "list", "--lr-min", "1", "--format", "csv"]) == 2  # nothing matches
    capsys.readouterr()
    ids = trials["trial_id"].tolist()[:2]
    assert main(["runs", str(sweep_dir), "compare", *ids, "--format", "markdown"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0] == f"| field | {ids[0]} | {ids[1]} |"
    assert any(line.startswith("| best_val_f1_cinc |") for line in md)
    assert main(["runs", str(sweep_dir), "compare", "nosuchtrial"]) == 2


@pytest.mark.e2e
def test_ablation_cli_on_sweep(sweep, sweep_dir, capsys):
    from ecg_ray.cli import main

    trials, _ = sweep
    assert main(["ablation", str(sweep_dir), "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    ok = trials[trials["status"] != "ERROR"]
    # the old best-of-trial table is kept, labelled budget-confounded
    result = answer["best_of_trial_budget_confounded"]
    by = {(r["factor"], r["level"]): r for r in result["levels"]}
    for level, group in ok.groupby("model"):
        assert by[("model", level)]["n"] == len(group)
        assert by[("model", level)]["mean"] == pytest.approx(group["best_val_f1_cinc"].mean())
    assert result["interaction"]["index"] == sorted(ok["model"].unique())
    # the answer: only trials that ran the full budget, each scored at its last epoch
    budget = int(ok["epochs"].max())
    fixed = answer["fixed_budget"]
    assert answer["budget_epochs"] == fixed["budget_epochs"] == budget
    full = ok[ok["epochs"] == budget]
    assert sorted(fixed["trials"]) == sorted(full["trial_id"]) and fixed["n"] == len(full)
    assert [r["budget_epochs"] for r in answer["asha_rungs"]] == sorted({int(e) for e in ok["epochs"] if 0 < e < budget})
    assert main(["ablation", str(sweep_dir)]) == 0
    text = capsys.readouterr().out
    assert "Fixed-budget answer" in text and "budget-confounded" in text
    assert "model x imbalance" in text and "Seed stability" in text


@pytest.mark.e2e
def test_running_and_resumed_experiment(sweep_dir, tmp_path):
    """A sweep caught mid-run (no saved state yet, a half-written result line)
    and one whose trial re-reported epochs after a resume."""
    copy = tmp_path / "smoke"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("checkpoint_*", "*.pkl"))
    for f in copy.glob("experiment_state-*.json"):
        f.unlink()
    # a trial started just before the job was stopped can leave a folder without result.json:
    # Tune regenerates that trial in a new folder on resume
    trial_dirs = sorted(d for d in copy.iterdir() if d.name.startswith("run_trial_") and
                        (d / "result.json").is_file() and (d / "result.json").stat().st_size > 0)
    # a trial with at least two epochs, so that cutting its last line leaves an unfinished trial
    running = next(d for d in trial_dirs if len((d / "result.json").read_text().splitlines()) >= 2)
    trial_dirs.remove(running)
    lines = (running / "result.json").read_text().splitlines()
    (running / "result.json").write_text(lines[0] + "\n" + lines[-1][: len(lines[-1]) // 2])
    trials, epochs = load_experiment(copy)
    row = trials[trials["path"] == str(running)].iloc[0]
    assert row["status"] == "RUNNING" and row["epochs"] == 1
    assert not row["stopped_early"]
    assert len(trials) == 8

    # resumed: epoch 0 reported again (training_iteration restarting), the last report wins
    resumed = trial_dirs[0]
    first = json.loads((resumed / "result.json").read_text().splitlines()[0])
    again = {**first, "val_f1_cinc": 0.987, "training_iteration": 1}
    with open(resumed / "result.json", "a") as f:
        f.write(json.dumps(again) + "\n")
    trials, epochs = load_experiment(copy)
    tid = first["trial_id"]
    part = epochs[epochs["trial_id"] == tid]
    assert part["epoch"].is_unique
    assert part.loc[part["epoch"] == first["epoch"], "val_f1_cinc"].item() == 0.987
    assert trials.set_index("trial_id").loc[tid, "best_val_f1_cinc"] == 0.987


@pytest.mark.e2e
def test_uri_and_train_run_folder(sweep, sweep_dir, tmp_path, capsys):
    from ecg_ray.cli import main
    from ecg_ray.training.checkpoint import load_checkpoint

    trials, _ = sweep
    via_uri, _ = load_experiment("file://" + str(Path(sweep_dir).resolve()))
    assert via_uri["trial_id"].tolist() == trials["trial_id"].tolist()
    assert via_uri["best_val_f1_cinc"].equals(trials["best_val_f1_cinc"])

    # an `ecg-ray train --out RUN` folder, as train_run writes it, from a real checkpoint
    row = trials.dropna(subset=["checkpoint"]).iloc[0]
    payload = load_checkpoint(row["checkpoint"])
    run = tmp_path / "run_a"
    run.mkdir()
    shutil.copy(Path(row["checkpoint"]) / "model.pt", run / "model.pt")
    history = payload["history"]
    (run / "history.json").write_text(json.dumps(history))
    (run / "results.json").write_text(json.dumps({
        "model": payload["model"], "config": payload["config"], "seconds": 12.5, "epochs": len(history),
        "best_epoch": payload["epoch"], "early_stopped": False, "best_metrics": payload["metrics"],
        "final_metrics": history[-1], "data": {"prepared": "/nowhere", "config_hash": "abc"}}))
    t, e = load_experiment(run)
    assert t.attrs["kind"] == "train" and len(t) == 1 and len(e) == len(history)
    r = t.iloc[0]
    assert r["trial_id"] == "run_a" and r["status"] == "TERMINATED" and r["time_s"] == 12.5
    assert r["best_epoch"] == payload["epoch"] + 1
    assert r["final_val_f1_cinc"] == pytest.approx(history[-1]["val_f1_cinc"])
    assert r["augment"] == analysis.normalize_augment(payload["config"]["augment"])
    assert r["checkpoint"] == str(run / "model.pt")
    assert main(["runs", str(sweep_dir), "compare", trials["trial_id"].iloc[0], str(run), "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == f"field,{trials['trial_id'].iloc[0]},run_a"


def _tensorboard_scalars(folder, tag: str) -> np.ndarray:
    """A tag's values in every event file of a folder, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    values = []
    for file in sorted(Path(folder).glob("events.out.tfevents*")):
        for event in EventFileLoader(str(file)).Load():
            values += [v.tensor.float_val[0] if v.HasField("tensor") else v.simple_value
                       for v in event.summary.value if v.tag == tag]
    return np.asarray(values)


@pytest.mark.e2e
def test_tensorboard_event_files_per_trial(sweep, sweep_dir):
    """Tune's TensorBoard logger wrote every trial's per-epoch scalars, so
    ``tensorboard --logdir <experiment>`` shows them."""
    trials, epochs = sweep
    for row in trials.itertuples():
        files = list(Path(row.path).glob("events.out.tfevents*"))
        assert files, f"no event file in {row.path}"
        if row.epochs:
            f1 = _tensorboard_scalars(row.path, "ray/tune/val_f1_cinc")  # in write order
            part = epochs[epochs["trial_id"] == row.trial_id]["val_f1_cinc"].to_numpy()
            # A trial Tune restarted after the session's kill starts its steps again at 1,
            # so steps do not order epochs: every logged value is one of the trial's epochs,
            # and the last one written is its last epoch.
            assert 1 <= len(f1)
            assert all(np.isclose(v, part, atol=1e-6).any() for v in f1), (f1, part)
            assert f1[-1] == pytest.approx(part[-1], abs=1e-6)
