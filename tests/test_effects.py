"""ecg_ray.tuning.effects and ecg_ray.tuning.stages on hand-made tables (fast, no Ray).

The planted-effect test simulates what went wrong on the bench: a level that starts
slowly but ends best is pruned by ASHA at its first rung, so best-of-trial over the
ASHA table picks another level, while the fixed-budget analysis of the full-budget
(FIFO) trials picks it, distinguishable from every other level.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ecg_ray.tuning import analysis, effects
from ecg_ray.tuning.stages import stage2_dict, stage2_spec

BUDGET = 8
METRIC = "val_f1_cinc"
# F1 by epoch (1..8): A and B learn fast and plateau; X starts slowly but ends best.
CURVES = {
    "A": [0.50, 0.55, 0.58, 0.60, 0.61, 0.61, 0.62, 0.62],
    "B": [0.45, 0.52, 0.56, 0.58, 0.59, 0.60, 0.60, 0.60],
    "X": [0.20, 0.30, 0.42, 0.55, 0.64, 0.70, 0.73, 0.75],
}
IMBALANCE = {"weighted": 0.0, "focal": -0.01}


def _epochs_table(seeds=(1, 2, 3), noise=0.01) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    i = 0
    for model, curve in CURVES.items():
        for imb, shift in IMBALANCE.items():
            for seed in seeds:
                tid = f"t{i:02d}"
                i += 1
                for e, v in enumerate(curve):
                    rows.append({"trial_id": tid, "model": model, "imbalance": imb, "augment": "none",
                                 "seed": seed, "epoch": e, METRIC: v + shift + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def _asha_stops(epochs: pd.DataFrame, rungs=(1, 2, 4), keep: float = 2 / 3) -> dict:
    """Successive halving (reduction factor 1.5): at each rung the best two thirds, by the value at that
    epoch, go on."""
    alive = sorted(epochs["trial_id"].unique())
    stop = {t: BUDGET for t in alive}
    for r in rungs:
        at = epochs[(epochs["epoch"] == r - 1) & epochs["trial_id"].isin(alive)].sort_values(METRIC, ascending=False)
        n = max(1, int(len(at) * keep))
        for t in at["trial_id"].iloc[n:]:
            stop[t] = r
        alive = list(at["trial_id"].iloc[:n])
    return stop


def _trials_table(epochs: pd.DataFrame, stop: dict) -> pd.DataFrame:
    """What load_experiment gives: each trial's epochs up to its stop."""
    rows = []
    for tid, part in epochs.groupby("trial_id", sort=True):
        part = part[part["epoch"] < stop[tid]]
        best = part.loc[part[METRIC].idxmax()]
        rows.append({"trial_id": tid, "status": "TERMINATED", **part.iloc[0][["model", "imbalance", "augment",
                                                                               "seed"]].to_dict(),
                     "epochs": len(part), "best_epoch": int(best["epoch"]) + 1, f"best_{METRIC}": best[METRIC],
                     f"final_{METRIC}": part[METRIC].iloc[-1], "tune_order": len(rows)})
    df = pd.DataFrame(rows)
    df.attrs["config_columns"] = ["model", "imbalance", "augment", "seed"]
    return df


@pytest.fixture(scope="module")
def planted():
    epochs = _epochs_table()
    stop = _asha_stops(epochs)
    asha_epochs = epochs[epochs["epoch"] < epochs["trial_id"].map(stop)]
    return {"epochs": epochs, "asha": _trials_table(epochs, stop), "asha_epochs": asha_epochs,
            "fifo": _trials_table(epochs, {t: BUDGET for t in stop})}


def _rows(result: dict):
    for key in ("anova", "levels", "contrasts", "mdd", "decisions"):
        yield from ((key, r) for r in result[key])


# -- (a) the planted effect ----------------------------------------------------------------------

def test_asha_prunes_the_slow_starter_at_rung_1(planted):
    asha = planted["asha"]
    assert (asha.loc[asha["model"] == "X", "epochs"] == 1).all()
    assert (asha.loc[asha["model"] != "X", "epochs"] > 1).all()


def test_best_of_trial_on_asha_picks_the_wrong_level(planted):
    old = analysis.ablation(planted["asha"], f"best_{METRIC}", ("model",))
    ranks = old.levels.set_index("level")["rank"]
    assert ranks["X"] == 3 and ranks["A"] == 1  # the budget-confounded reading


def test_fixed_budget_analysis_picks_the_planted_level(planted):
    result = effects.effects(effects.fixed_budget_table(planted["fifo"], BUDGET), ("model", "imbalance"))
    decision = {d["factor"]: d for d in result["decisions"]}["model"]
    assert decision["best"] == "X" and decision["decided"]
    assert sorted(decision["distinguishable"]) == ["A > B", "X > A", "X > B"]
    xa = next(r for r in result["contrasts"] if {r["better"], r["worse"]} == {"X", "A"})
    assert xa["better"] == "X" and xa["ci_low"] < 0.13 < xa["ci_high"] and xa["ci_low"] > 0
    assert xa["n_pairs"] == 6 and xa["p_holm"] < 0.001
    # the same analysis on the ASHA table: X has no trial at the full budget, so it cannot win
    asha = effects.fixed_budget_table(planted["asha"], BUDGET)
    assert "X" not in set(asha["model"])
    assert {d["trial_id"] for d in asha.attrs["dropped"]} == set(planted["asha"].query("epochs != @BUDGET")["trial_id"])
    # ...and at rung 1 (every trial, same epoch) X is the worst: ASHA's own reading
    rung1 = effects.effects(effects.rung_table(planted["asha"], planted["asha_epochs"], 1), ("model", "imbalance"))
    assert [r["level"] for r in rung1["levels"] if r["factor"] == "model"][-1] == "X"


def test_ablation_answer_sections(planted):
    answer = effects.ablation_answer(planted["asha"], planted["asha_epochs"], budget=BUDGET,
                                     factors=("model", "imbalance"))
    assert [r["budget_epochs"] for r in answer["asha_rungs"]] == [1, 2, 4]
    assert answer["asha_rungs"][0]["n"] == 18 and answer["asha_rungs"][0]["kind"] == "asha_rung"
    legacy = answer["best_of_trial_budget_confounded"]
    assert "budget-confounded" in legacy["label"]
    x = next(r for r in legacy["levels"] if r["level"] == "X")
    assert x["budget_epochs"] is None and x["epochs_min"] == x["epochs_max"] == 1
    fifo = effects.ablation_answer(planted["fifo"], None, factors=("model", "imbalance"))
    assert fifo["budget_epochs"] == BUDGET and fifo["asha_rungs"] == []
    assert fifo["fixed_budget"]["n"] == 18 and fifo["fixed_budget"]["dropped"] == []


# -- (b) every row carries budget_epochs and n, and its trials ran that budget ------------------

@pytest.mark.parametrize("which", ["asha", "fifo"])
def test_every_row_carries_budget_and_n_of_trials_at_that_budget(planted, which):
    trials = planted[which]
    answer = json.loads(json.dumps(effects.ablation_answer(trials, None, budget=BUDGET,
                                                           factors=("model", "imbalance"))))
    ran = trials.set_index("trial_id")["epochs"]
    fixed = answer["fixed_budget"]
    assert fixed["budget_epochs"] == BUDGET
    rows = list(_rows(fixed))
    assert rows
    for key, row in rows:
        assert row["budget_epochs"] == BUDGET, (key, row)
        assert row["n"] == len(row["trials"]), (key, row)
        assert all(ran[t] == BUDGET for t in row["trials"]), (key, row)
    for d in fixed["dropped"]:
        assert ran[d["trial_id"]] != BUDGET and d["epochs"] == ran[d["trial_id"]]
    assert fixed["n"] + len(fixed["dropped"]) == len(trials)
    for rung in answer["asha_rungs"]:  # per rung: every trial behind a row reached that rung
        for key, row in _rows(rung):
            assert row["budget_epochs"] == rung["budget_epochs"] and row["n"] == len(row["trials"])
            assert all(ran[t] >= rung["budget_epochs"] for t in row["trials"])


def test_rung_table_reads_the_value_at_that_epoch(planted):
    epochs = planted["asha_epochs"]
    table = effects.rung_table(planted["asha"], epochs, 2)
    assert table.attrs["reached"] == (planted["asha"]["epochs"] >= 2).sum() == len(table)
    expected = epochs[epochs["epoch"] == 1].set_index("trial_id")[METRIC]
    assert table.set_index("trial_id")["score"].to_dict() == pytest.approx(expected[table["trial_id"]].to_dict())


def test_fixed_budget_score_rules():
    df = pd.DataFrame({"trial_id": ["a", "b", "c", "d", "e"], "status": ["TERMINATED", "ERROR", "TERMINATED",
                                                                          "RUNNING", "TERMINATED"],
                       "model": ["m", "m", "n", "n", "n"], "epochs": [4, 4, 2, 5, 4],
                       "best_val_f1_cinc": [0.7, 0.8, 0.9, 0.9, np.nan], "final_val_f1_cinc": [0.6, 0.8, 0.9, 0.9, np.nan]})
    last = effects.fixed_budget_table(df, 4)
    assert last["trial_id"].tolist() == ["a"] and last["score"].tolist() == [0.6]
    reasons = {d["trial_id"]: d["reason"] for d in last.attrs["dropped"]}
    assert reasons["b"] == "error" and reasons["e"] == "no finite final_val_f1_cinc"
    assert reasons["c"].startswith("fewer than 4 epochs") and reasons["d"].startswith("more than 4 epochs")
    assert effects.fixed_budget_table(df, 4, score="best")["score"].tolist() == [0.7]
    with pytest.raises(ValueError, match="score"):
        effects.fixed_budget_table(df, 4, score="median")


# -- (c) Holm against a hand-computed case --------------------------------------------------------

def test_holm_matches_hand_computation():
    # one factor, 3 levels, 5 seeds as the pairing: 3 contrasts
    base = np.array([0.50, 0.52, 0.49, 0.51, 0.53])
    shift = {"a": np.zeros(5), "b": np.array([0.02, 0.05, 0.01, 0.03, 0.04]),
             "c": np.array([0.00, 0.03, -0.02, 0.01, 0.01])}
    rows = [{"trial_id": f"{lv}{s}", "model": lv, "seed": s, "score": base[s] + shift[lv][s], "budget_epochs": 3}
            for lv in shift for s in range(5)]
    table = pd.DataFrame(rows)
    out = effects.contrast_table(table, ("model",)).set_index(["better", "worse"])
    raw = {("b", "a"): stats.ttest_rel(base + shift["b"], base).pvalue,
           ("c", "a"): stats.ttest_rel(base + shift["c"], base).pvalue,
           ("b", "c"): stats.ttest_rel(base + shift["b"], base + shift["c"]).pvalue}
    assert {k: out.loc[k, "p"] for k in raw} == pytest.approx(raw)
    # Holm by hand: sort ascending, multiply the i-th smallest by (m - i), keep it monotone, cap at 1
    order = sorted(raw, key=raw.get)
    adjusted, running = {}, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * raw[k]))
        adjusted[k] = running
    assert {k: out.loc[k, "p_holm"] for k in raw} == pytest.approx(adjusted)
    assert out.loc[("b", "a"), "delta"] == pytest.approx(shift["b"].mean())
    assert out.loc[("b", "a"), "n_pairs"] == 5 and out.loc[("b", "a"), "n"] == 10
    assert (out["significant"] == (out["p_holm"] < 0.05)).all()


def test_wilcoxon_option_and_untestable_contrasts():
    table = pd.DataFrame({"trial_id": list("abcdefgh"), "model": list("xxxxyyyy"), "seed": [1, 2, 3, 4] * 2,
                          "score": [0.6, 0.62, 0.61, 0.64, 0.5, 0.5, 0.52, 0.51], "budget_epochs": 2})
    out = effects.contrast_table(table, ("model",), test="wilcoxon").iloc[0]
    assert out["p"] == pytest.approx(stats.wilcoxon([0.6, 0.62, 0.61, 0.64], [0.5, 0.5, 0.52, 0.51]).pvalue)
    assert out["test"] == "Wilcoxon signed-rank"
    single = effects.effects(table.iloc[[0, 4]], ("model",))  # one pair: no test, no model
    assert single["contrasts"][0]["p"] is None and not single["decisions"][0]["decided"]
    assert single["decisions"][0]["untestable_vs_best"] == ["y"]
    assert single["model"]["model"] is None


# -- (d) ANOVA recovers a known additive effect ---------------------------------------------------

def test_anova_recovers_additive_effects():
    rng = np.random.default_rng(1)
    model_fx = {"p": 0.0, "q": 0.05, "r": 0.10}
    aug_fx = {"none": 0.0, "all": 0.03}
    seed_fx = {1: 0.0, 2: 0.01, 3: -0.01, 4: 0.02}
    rows = [{"trial_id": f"{m}-{a}-{s}", "model": m, "augment": a, "seed": s, "budget_epochs": 5,
             "score": 0.5 + model_fx[m] + aug_fx[a] + seed_fx[s] + rng.normal(0, 0.003)}
            for m in model_fx for a in aug_fx for s in seed_fx]
    table = pd.DataFrame(rows)
    result = effects.effects(table, ("model", "augment"))
    anova = {r["term"]: r for r in result["anova"]}
    assert set(anova) == {"model", "augment", "model x augment", "seed (block)", "Residual"}
    assert anova["model"]["p"] < 1e-8 and anova["augment"]["p"] < 1e-8 and anova["seed (block)"]["p"] < 1e-4
    assert anova["model x augment"]["p"] > 0.01  # none planted
    # Type-II sum of squares of a balanced main effect: n_per_level * sum of squared level deviations
    fx = np.array(list(model_fx.values()))
    assert anova["model"]["sum_sq"] == pytest.approx(8 * ((fx - fx.mean()) ** 2).sum(), rel=0.1)
    assert anova["model"]["df"] == 2 and anova["Residual"]["df"] == 24 - 1 - 2 - 1 - 2 - 3
    contrasts = {(c["better"], c["worse"]): c for c in result["contrasts"]}
    for (hi, lo), planted_delta in {("r", "p"): 0.10, ("q", "p"): 0.05, ("r", "q"): 0.05, ("all", "none"): 0.03}.items():
        c = contrasts[(hi, lo)]
        assert c["ci_low"] < planted_delta < c["ci_high"] and c["significant"]
        assert c["delta"] == pytest.approx(planted_delta, abs=0.005)
    assert all(d["decided"] for d in result["decisions"])
    assert result["model"]["formula"] == ("score ~ C(model) + C(augment) + C(model):C(augment) + C(seed)")
    assert 0 < result["mdd"][0]["mdd"] < 0.02  # residual SD 0.003: small differences are detectable


# -- rendering and the CLI ------------------------------------------------------------------------

def test_markdown_and_table_rendering(planted):
    answer = effects.ablation_answer(planted["asha"], planted["asha_epochs"], budget=BUDGET,
                                     factors=("model", "imbalance"))
    md = effects.format_answer(answer, "markdown")
    assert md.startswith("## Fixed-budget answer (8 epochs)")
    assert "## ASHA-stage reading" in md and "ASHA-stage reading at rung 1" in md
    assert "## Best-of-trial, budget-confounded" in md
    assert "| budget_epochs |" in md
    text = effects.format_answer(answer, "table")
    assert "Type-II ANOVA" in text and "model x imbalance" in text and "Seed stability" in text
    with pytest.raises(ValueError):
        effects.format_answer(answer, "csv")


def test_ablation_cli_on_a_trials_csv(planted, tmp_path, capsys):
    from ecg_ray.cli import main

    trials, epochs = tmp_path / "trials.csv", tmp_path / "epochs.csv"
    planted["asha"].to_csv(trials, index=False)
    planted["asha_epochs"].to_csv(epochs, index=False)
    assert main(["ablation", str(trials), "--epochs", str(epochs), "--budget", "8", "--factors", "model,imbalance",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["budget_epochs"] == 8 and out["fixed_budget"]["n"] == 5
    assert [r["n"] for r in out["asha_rungs"]] == [18, 12, 8]
    assert main(["ablation", str(trials), "--score", "best", "--format", "markdown"]) == 0
    assert "## Fixed-budget answer (8 epochs)" in capsys.readouterr().out


# -- stage 2 --------------------------------------------------------------------------------------

SMOKE = {"name": "smoke", "data": {"source": "cinc2017", "max_records": 300, "val_fold": None},
         "metric": "val_f1_cinc", "mode": "max",
         "scheduler": {"type": "asha", "max_t": 3, "grace_period": 1, "reduction_factor": 2},
         "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0, "num_workers": 1, "max_concurrent_trials": 2},
         "max_failures": 1,
         "param_space": {"model": {"grid_search": ["cnn_only", "cnn_lstm"]},
                         "imbalance": {"grid_search": ["weighted", "focal"]},
                         "augment": {"grid_search": ["none", "all"]}, "lr": 0.002, "batch_size": 64, "seed": 42,
                         "patience": 6}}


def test_stage2_spec_is_a_fifo_grid_at_the_budget():
    spec = stage2_spec(SMOKE, ["model", "imbalance", "augment"], seeds=[1, 2, 3], budget=12)
    assert spec.scheduler["type"] == "fifo" and spec.scheduler["max_t"] == 12
    space = spec.param_space
    assert space["num_epochs"] == 12 and space["patience"] == 0
    assert space["seed"] == {"grid_search": [1, 2, 3]}
    assert space["model"] == {"grid_search": ["cnn_only", "cnn_lstm"]} and space["lr"] == 0.002
    assert spec.name == "smoke_stage2_b12" and spec.num_samples == 1 and spec.data == SMOKE["data"]
    assert SMOKE["param_space"]["patience"] == 6  # the input is not changed
    # explicit levels; the factor left out is fixed first
    fixed = {**SMOKE, "param_space": {**SMOKE["param_space"], "augment": "all"}}
    spec = stage2_spec(fixed, {"model": ["cnn_lstm"], "imbalance": ["focal", "weighted"]}, [7], 5)
    assert spec.param_space["model"] == {"grid_search": ["cnn_lstm"]} and spec.param_space["augment"] == "all"


def test_stage2_rejects_unfixed_or_invalid_entries():
    from ecg_ray.tuning.search_space import SpecError

    with pytest.raises(SpecError, match="augment"):
        stage2_dict(SMOKE, ["model", "imbalance"], [1], 5)
    with pytest.raises(SpecError, match="budget"):
        stage2_dict(SMOKE, ["model", "imbalance", "augment"], [1], 0)
    with pytest.raises(SpecError, match="model"):
        stage2_spec(SMOKE, {"model": ["no_such_model"], "imbalance": ["focal"], "augment": ["none"]}, [1], 5)


# -- the committed bench, re-read ---------------------------------------------------------------

def test_bench_reread_reproduces_the_issue_numbers(tmp_path):
    import shutil
    from pathlib import Path

    from ecg_ray.bench import asha_reread

    src = Path(__file__).resolve().parents[1] / "results" / "bench_asha"
    for name in ("trials_asha.csv", "trials_fifo.csv"):
        shutil.copy(src / name, tmp_path / name)
    assert asha_reread.main([str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text()
    rows = {line.split(" | ")[1]: line for line in readme.splitlines() if line.startswith("| augment |")
            or line.startswith("| model | resnet")}
    # old ASHA reading: none 0.267 > all 0.185; exhaustive best-of-4: all 0.411 > none 0.357
    assert "0.185 [" in rows["all"].split(" | ")[2] and "0.267 [" in rows["none"].split(" | ")[2]
    assert rows["all"].split(" | ")[-1].startswith("0.411") and rows["none"].split(" | ")[-1].startswith("0.357")
    assert "#3)" in rows["resnet"].split(" | ")[2] and "#1)" in rows["resnet"].split(" | ")[-1]
    assert "Nothing is distinguishable at the fixed budget" in readme
    assert "python -m ecg_ray.bench.asha_reread" in readme
    assert (tmp_path / "fixed_budget_fifo.md").read_text().startswith("## Fixed-budget answer (4 epochs)")


def test_report_ablation_section_leads_with_the_fixed_budget_answer(tmp_path):
    from pathlib import Path

    from ecg_ray import report

    smoke = Path(__file__).resolve().parents[1] / "results" / "smoke"
    trials, epochs = pd.read_csv(smoke / "trials.csv"), pd.read_csv(smoke / "epochs.csv")
    (tmp_path / "figures").mkdir()
    text = report._ablation_section(trials, tmp_path / "figures", tmp_path, epochs)
    assert text.index("### fixed budget: trials that ran exactly 3 epochs") < text.index("budget-confounded")
    saved = json.loads((tmp_path / "effects.json").read_text())
    assert saved["fixed_budget"]["n"] == int((trials["epochs"] == 3).sum())
    assert [r["budget_epochs"] for r in saved["asha_rungs"]] == [1, 2]
    assert (tmp_path / "ablation.json").is_file()
