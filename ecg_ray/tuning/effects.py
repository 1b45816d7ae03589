"""Fixed-budget factorial analysis of an ablation: the answer ``ecg-ray ablation`` gives.

This module owns the statistics of "which level of each factor is better, by how
much, and can we tell": it never compares a trial that ran 1 epoch with one that
ran 20. Pure pandas / numpy / scipy / statsmodels, no Ray.

- ``fixed_budget_table``: the trials that ran exactly ``budget`` epochs, scored by one
  rule for all (the value at epoch ``budget``, or the best epoch ≤ ``budget``); the
  others (ASHA-pruned, early-stopped, still running short, errored) are dropped and
  listed: a pruned trial never stands in for its level.
- ``rung_table``: the ASHA-stage reading: each trial's value *at* epoch ``rung``
  (only trials that reached it), i.e. what ASHA itself compared at that rung.
- ``effects``: on either table, a statsmodels OLS fit of ``score ~ C(f) + ... + C(f):C(g)
  (+ C(seed) as a block with ≥2 seeds)``, its Type-II ANOVA, per-level means with
  95 % t CIs, every pairwise level contrast of each factor as ΔF1 from a *paired*
  test (pairs matched on the other factors and the seed; ``scipy.stats.ttest_rel``
  and its 95 % CI by default, Wilcoxon signed-rank on request), Holm-adjusted over
  all contrasts of the analysis, the levels each factor can tell apart, and the
  minimum detectable difference (MDD) the design had. Every row carries
  ``budget_epochs``, ``n`` (trials behind it) and ``trials`` (their ids).
- ``ablation_answer``: the fixed-budget answer, the per-rung ASHA readings and
  (labelled budget-confounded) the old best-of-trial table, as one JSON-safe
  dict; ``format_answer`` renders it as a console table, markdown or JSON.

MDD (α = 0.05, power 0.8, two-sided): per contrast (paired) ``d* · sd(differences)``,
``d*`` the standardized effect a paired t test on ``n_pairs`` pairs detects with that
power (``statsmodels.stats.power.TTestPower().solve_power``, noncentral t); per factor
(model) ``(t_{1-α/2,df} + t_{power,df}) · σ · √(2/m)``, σ the residual SD of the OLS
fit, ``df`` its residual df, ``m`` trials per level.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .. import HEADLINE
from ..artifacts import json_safe
from ..tables import render
from .experiment import FACTORS, default_mode, load_experiment, metric_column, normalize_metric

ALPHA = 0.05
POWER = 0.8
TESTS = ("t", "wilcoxon")
SCORES = ("last", "best")
RESIDUAL = "Residual"


# -- tables --------------------------------------------------------------------------------------

def base_metric(metric: str) -> str:
    """``best_val_f1_cinc`` / ``final_val_f1_cinc`` / ``f1`` → ``val_f1_cinc``."""
    return normalize_metric(metric.removeprefix("best_").removeprefix("final_"))


def _not_errored(trials_df: pd.DataFrame) -> pd.DataFrame:
    return trials_df[trials_df["status"].ne("ERROR")] if "status" in trials_df else trials_df


def _keep_columns(trials_df: pd.DataFrame, factors) -> list[str]:
    return ["trial_id", *[c for c in (*factors, "seed") if c in trials_df], "epochs"]


def fixed_budget_table(trials_df: pd.DataFrame, budget: int, metric: str = HEADLINE,
                       score: str = "last", factors=FACTORS) -> pd.DataFrame:
    """Trials that ran exactly ``budget`` epochs, one ``score`` each: ``last`` (the trials table's
    ``final_<metric>``: the value at epoch ``budget``) or ``best`` (``best_<metric>``: the best of
    epochs 1..``budget``). Columns ``trial_id``, the factors, ``seed``, ``epochs``, ``score``,
    ``budget_epochs``. Dropped trials (error, another budget, no finite score) are in
    ``attrs["dropped"]`` as ``{trial_id, epochs, reason}``."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    metric = base_metric(metric)
    col = ("final_" if score == "last" else "best_") + metric
    if col not in trials_df:
        raise ValueError(f"trials table has no {col!r} column (score={score!r}, metric={metric!r})")
    df = trials_df.assign(score=pd.to_numeric(trials_df[col], errors="coerce"))
    status = df.get("status", pd.Series("", index=df.index))
    reason = np.select([status.eq("ERROR"), df["epochs"].lt(budget), df["epochs"].gt(budget),
                        ~np.isfinite(df["score"])],
                       ["error", f"fewer than {budget} epochs (pruned, early-stopped or unfinished)",
                        f"more than {budget} epochs (its epoch-{budget} value is the rung-{budget} reading)",
                        f"no finite {col}"], "")
    dropped = [{"trial_id": t, "epochs": int(e), "reason": r}
               for t, e, r in zip(df["trial_id"], df["epochs"], reason) if r]
    table = df[reason == ""][_keep_columns(df, factors) + ["score"]].assign(budget_epochs=int(budget))
    table = table.reset_index(drop=True)
    table.attrs.update({"kind": "fixed_budget", "budget_epochs": int(budget), "metric": metric, "score": score,
                        "dropped": dropped,
                        "label": f"fixed budget: trials that ran exactly {budget} epochs, scored by their "
                                 f"{'value at epoch ' + str(budget) if score == 'last' else 'best epoch'}"})
    return table


def known_epochs(trials_df: pd.DataFrame, metric: str = HEADLINE) -> pd.DataFrame:
    """The per-epoch values a trials table alone reveals (for a saved trials CSV without its
    epochs): ``final_<m>`` at epoch ``epochs`` and ``best_<m>`` at ``best_epoch`` (``best_epoch`` is
    of the headline metric). ``epoch`` is 0-based, as ``load_experiment`` reports it."""
    metric = base_metric(metric)
    rows = []
    for r in trials_df.to_dict("records"):
        if f"best_{metric}" in r and metric == HEADLINE and pd.notna(r.get("best_epoch")):
            rows.append({"trial_id": r["trial_id"], "epoch": int(r["best_epoch"]) - 1, metric: r[f"best_{metric}"]})
        if f"final_{metric}" in r and pd.notna(r.get("epochs")) and r["epochs"] > 0:
            rows.append({"trial_id": r["trial_id"], "epoch": int(r["epochs"]) - 1, metric: r[f"final_{metric}"]})
    out = pd.DataFrame(rows, columns=["trial_id", "epoch", metric])
    return out.drop_duplicates(["trial_id", "epoch"], keep="last").reset_index(drop=True)


def rung_table(trials_df: pd.DataFrame, epoch_df: pd.DataFrame, rung: int, metric: str = HEADLINE,
               factors=FACTORS) -> pd.DataFrame:
    """The ASHA-stage reading at ``rung`` (an epoch count, 1-based like ``epochs``): each trial that
    reached it, scored by its value at that epoch (``epoch_df`` row ``epoch == rung - 1``). Same
    columns as ``fixed_budget_table`` (``budget_epochs`` = ``rung``); ``attrs`` count the trials
    that reached the rung and those among them without a recorded value there."""
    metric = base_metric(metric)
    ok = _not_errored(trials_df)
    reached = ok[ok["epochs"] >= rung]
    at = epoch_df.loc[epoch_df["epoch"] == rung - 1, ["trial_id", metric]] if metric in epoch_df else \
        pd.DataFrame(columns=["trial_id", metric])
    merged = reached[_keep_columns(reached, factors)].merge(at, on="trial_id", how="left")
    merged["score"] = pd.to_numeric(merged.pop(metric), errors="coerce")
    missing = merged.loc[~np.isfinite(merged["score"]), "trial_id"].tolist()
    table = merged[np.isfinite(merged["score"])].assign(budget_epochs=int(rung)).reset_index(drop=True)
    table.attrs.update({"kind": "asha_rung", "budget_epochs": int(rung), "metric": metric, "score": "at_rung",
                        "reached": int(len(reached)), "missing": missing,
                        "dropped": [{"trial_id": t, "epochs": None, "reason": f"no recorded value at epoch {rung}"}
                                    for t in missing],
                        "label": f"ASHA-stage reading at rung {rung}: value at epoch {rung} of {len(table)} of the "
                                 f"{len(reached)} trials that reached it ("
                                 + ("every trial" if len(reached) == len(ok) else "the survivors ASHA promoted")
                                 + ") — compared at the same epoch; not the fixed-budget answer"})
    return table


# -- the linear model ----------------------------------------------------------------------------

def _varying(table: pd.DataFrame, factors) -> list[str]:
    return [f for f in factors if f in table and table[f].astype(str).nunique() > 1]


def fit_model(table: pd.DataFrame, factors) -> tuple[object | None, dict]:
    """The OLS fit behind the ANOVA: two-way interactions when the design leaves
    residual df ≥ 1 with a full-rank design matrix, else main effects only; None
    when even that cannot be estimated. Returns ``(fit, info)``."""
    import statsmodels.formula.api as smf

    factors = _varying(table, factors)
    if not factors or len(table) < 3:
        return None, {"model": None, "note": "fewer than 3 trials or no varying factor: no linear model"}
    # factors renamed f0, f1, ... (formula-safe), as strings; seed -> blk
    names = {f"f{i}": f for i, f in enumerate(factors)}
    data = pd.DataFrame({k: table[f].astype(str).to_numpy() for k, f in names.items()})
    data["score"] = table["score"].to_numpy(dtype=float)
    mains = [f"C({k})" for k in names]
    pairs = [f"C({a}):C({b})" for a, b in itertools.combinations(names, 2)]
    block = []
    if _varying(table, ["seed"]):
        data["blk"] = table["seed"].astype(str).to_numpy()
        names["blk"] = "seed (block)"
        block = ["C(blk)"]
    candidates = [("main effects + two-way interactions", mains + pairs + block)] if pairs else []
    candidates.append(("main effects only", mains + block))
    for label, terms in candidates:
        formula = "score ~ " + " + ".join(terms)
        with warnings.catch_warnings():  # a singular design is detected below and refitted smaller
            warnings.simplefilter("ignore")
            fit = smf.ols(formula, data=data).fit()
        rank = np.linalg.matrix_rank(fit.model.exog)
        if rank == fit.model.exog.shape[1] and fit.df_resid >= 1:
            shown = re.sub(r"C\((\w+)\)", lambda m: f"C({'seed' if m[1] == 'blk' else names[m[1]]})", formula)
            return fit, {"model": label, "formula": shown, "df_resid": int(fit.df_resid),
                         "resid_sd": float(np.sqrt(fit.scale)), "names": names,
                         "note": "" if label.startswith("main effects +") else
                         "too few trials for interactions: main effects only"}
    return None, {"model": None, "note": "design too small or unbalanced for a linear model (no residual df)"}


def anova_table(fit, info: dict) -> pd.DataFrame:
    """Type-II ANOVA of ``fit`` (``statsmodels.stats.anova.anova_lm(typ=2)``):
    one row per term, factor names restored, ``eta_sq_partial`` added."""
    from statsmodels.stats.anova import anova_lm

    cols = ["term", "sum_sq", "df", "F", "p", "eta_sq_partial"]
    if fit is None:
        return pd.DataFrame(columns=cols)
    table = anova_lm(fit, typ=2).reset_index(names="term")
    resid = float(table.loc[table["term"] == RESIDUAL, "sum_sq"].iloc[0])
    table["eta_sq_partial"] = np.where(table["term"] == RESIDUAL, np.nan, table["sum_sq"] / (table["sum_sq"] + resid))
    names = info["names"]  # "C(f0):C(f1)" -> "model x imbalance"
    table["term"] = [t if t == RESIDUAL else " x ".join(names.get(p.strip()[2:-1], p) for p in t.split(":"))
                     for t in table["term"]]
    return table.rename(columns={"PR(>F)": "p"})[cols]


# -- levels and paired contrasts -----------------------------------------------------------------

def _mean_interval(values, bounds) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the finite ``values``, ``bounds(x)`` giving the interval:
    NaN bounds with fewer than two values, the point itself when all are equal."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    mean = float(x.mean()) if x.size else float("nan")
    if x.size < 2:
        return mean, float("nan"), float("nan")
    if np.ptp(x) == 0:  # scipy's intervals are undefined at scale 0; the interval is the point
        return mean, mean, mean
    low, high = bounds(x)
    return mean, float(low), float(high)


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the t confidence interval of the mean (``scipy.stats.t.interval`` with the
    standard error, ddof 1); NaN values are ignored, and with fewer than two values the bounds are NaN."""
    return _mean_interval(values, lambda x: stats.t.interval(confidence, x.size - 1, loc=x.mean(),
                                                             scale=stats.sem(x)))


def bootstrap_interval(values, confidence: float = 0.95, n_boot: int = 5000,
                       seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: percentile bootstrap interval of the mean (``scipy.stats.bootstrap``, seeded)."""
    def bounds(x):
        ci = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_boot,
                             method="percentile", rng=np.random.default_rng(seed)).confidence_interval
        return ci.low, ci.high
    return _mean_interval(values, bounds)


def level_table(table: pd.DataFrame, factors, mode: str = "max", value: str = "score",
                interval=t_interval, confidence: float = 0.95) -> pd.DataFrame:
    """Per factor and level: n, mean, sd, CI of ``value`` (``interval``: ``t_interval``
    or ``bootstrap_interval``), trial ids, rank (1 = best); factors in order, best level first."""
    rows = []
    for f in [f for f in factors if f in table]:
        for level, g in table.groupby(table[f].astype(str), sort=True):
            mean, lo, hi = interval(g[value], confidence)
            rows.append({"factor": f, "level": level, "n": len(g), "mean": mean, "sd": float(g[value].std()),
                         "ci_low": lo, "ci_high": hi, "trials": sorted(g["trial_id"])})
    out = pd.DataFrame(rows, columns=["factor", "level", "n", "mean", "sd", "ci_low", "ci_high", "trials"])
    out["rank"] = out.groupby("factor")["mean"].rank(ascending=(mode == "min"), method="min").astype("Int64")
    order = out["factor"].map({f: i for i, f in enumerate(factors)})
    return out.assign(_o=order).sort_values(["_o", "rank"], kind="stable").drop(columns="_o").reset_index(drop=True)


def paired_scores(table: pd.DataFrame, factor: str, a: str, b: str, factors) -> pd.DataFrame:
    """Pairs of trials at levels ``a`` and ``b`` of ``factor`` that agree on every other factor and
    the seed: columns ``a``, ``b`` (scores), ``trial_a``, ``trial_b``. Trials that agree on all of
    those (a config column that is not a factor varied too) are averaged into one side of a pair."""
    keys = [f for f in factors if f in table and f != factor] + (["seed"] if "seed" in table else [])
    level = table[factor].astype(str)
    side = {}
    for name, lv in (("a", a), ("b", b)):
        part = table[level == lv].assign(**{k: table[k].astype(str) for k in keys})
        part = part.groupby(keys, sort=True).agg(score=("score", "mean"), trials=("trial_id", list)) if keys else \
            pd.DataFrame({"score": [part["score"].mean()], "trials": [list(part["trial_id"])]})
        side[name] = part.rename(columns={"score": name, "trials": f"trial_{name}"})
    return side["a"].join(side["b"], how="inner").reset_index(drop=True)


def _test(a: np.ndarray, b: np.ndarray, test: str) -> tuple[float, float, float]:
    """``(p, ci_low, ci_high)`` of the mean paired difference a − b: the 95 % CI
    from ``ttest_rel``; p from it (``t``) or from ``scipy.stats.wilcoxon``."""
    if len(a) < 2 or np.allclose(a - b, (a - b)[0]):
        return np.nan, np.nan, np.nan
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(1 - ALPHA)
    p = res.pvalue if test == "t" else stats.wilcoxon(a, b).pvalue
    return float(p), float(ci.low), float(ci.high)


def paired_mdd(diff: np.ndarray, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest mean paired difference a two-sided paired t test on these pairs
    detects with ``power``: ``d* · sd(diff)``, ``d*`` from ``TTestPower``."""
    from statsmodels.stats.power import TTestPower

    sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else np.nan
    if not sd > 0:  # fewer than 2 pairs, or every difference the same
        return np.nan
    try:
        d = TTestPower().solve_power(effect_size=None, nobs=len(diff), alpha=alpha, power=power,
                                     alternative="two-sided")
    except (ValueError, RuntimeError):
        return np.nan
    return float(np.asarray(d).item() * sd)


def contrast_table(table: pd.DataFrame, factors, mode: str = "max", test: str = "t") -> pd.DataFrame:
    """Every pair of levels of each factor: ΔF1 = mean paired difference (better −
    worse, ``better`` by the pairs' means), its 95 % CI, p (paired, ``test``), MDD,
    n_pairs, n (trials in the pairs) and their ids. ``p_holm``: Holm over all rows."""
    from statsmodels.stats.multitest import multipletests

    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    rows = []
    for f in _varying(table, factors):
        level = table[f].astype(str)
        for a, b in itertools.combinations(sorted(level.unique()), 2):
            pairs = paired_scores(table, f, a, b, factors)
            x, y = pairs["a"].to_numpy(float), pairs["b"].to_numpy(float)
            # which is better: by the pairs' means, by all trials' means when nothing pairs up
            mx, my = (x.mean(), y.mean()) if len(x) else (table.loc[level == a, "score"].mean(),
                                                            table.loc[level == b, "score"].mean())
            if (mx < my) if mode == "max" else (mx > my):
                a, b, x, y = b, a, y, x
            p, lo, hi = _test(x, y, test)
            trials = sorted(t for col in ("trial_a", "trial_b") for ts in pairs[col] for t in ts)
            rows.append({"factor": f, "better": a, "worse": b, "delta": float((x - y).mean()) if len(x) else np.nan,
                         "ci_low": lo, "ci_high": hi, "p": p, "mdd": paired_mdd(x - y), "n_pairs": int(len(x)),
                         "n": len(trials), "test": "paired t (ttest_rel)" if test == "t" else "Wilcoxon signed-rank",
                         "trials": trials})
    cols = ["factor", "better", "worse", "delta", "ci_low", "ci_high", "p", "p_holm", "significant", "mdd",
            "n_pairs", "n", "test", "trials"]
    out = pd.DataFrame(rows, columns=[c for c in cols if c not in ("p_holm", "significant")])
    p = out["p"].astype(float).dropna()  # untestable contrasts (NaN p) stay out of the correction
    out["p_holm"] = pd.Series(multipletests(p, method="holm")[1] if len(p) else [], index=p.index, dtype=float)
    out["significant"] = out["p_holm"] < ALPHA
    return out[cols]


def decide(levels: pd.DataFrame, contrasts: pd.DataFrame, factors, mode: str = "max") -> list[dict]:
    """Per factor: the best level by mean, whether every Holm-adjusted contrast with it is significant
    (``decided``), the levels it cannot be told from, and the pairs that are distinguishable."""
    out = []
    for f in [f for f in factors if f in set(levels["factor"])]:
        lv = levels[levels["factor"] == f]
        best = str(lv.iloc[0]["level"])
        c = contrasts[contrasts["factor"] == f]  # none for a factor with one level
        with_best = c[(c["better"] == best) | (c["worse"] == best)]
        other = {r.better if r.worse == best else r.worse: r for r in with_best.itertuples()}
        untestable = sorted(k for k, r in other.items() if not np.isfinite(r.p))
        ties = sorted(k for k, r in other.items() if np.isfinite(r.p) and not r.significant)
        decided = bool(len(lv) > 1 and len(other) == len(lv) - 1
                       and all(r.significant and r.better == best for r in other.values()))
        pairs = [f"{r.better} > {r.worse}" for r in c[c["significant"]].itertuples()]
        why = "; ".join(s for s in (f"not distinguishable from {', '.join(ties)}" if ties else "",
                                    f"no test against {', '.join(untestable)} (fewer than 2 matched pairs)"
                                    if untestable else "") if s)
        statement = (f"{f}: only one level ({best}), nothing to compare" if len(lv) < 2 else
                     f"{f}: {best} is best, distinguishable from every other level (Holm-adjusted p < {ALPHA})"
                     if decided else f"{f}: undecided — {best} leads by mean; {why or 'no contrast'}")
        out.append({"factor": f, "best": best, "decided": decided, "tied_with_best": ties,
                    "untestable_vs_best": untestable, "distinguishable": pairs, "statement": statement})
    return out


def factor_mdd(info: dict, table: pd.DataFrame, factors, alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """Per factor, from the OLS residual SD: ``(t_{1-α/2,df} + t_{power,df}) · σ · √(2/m)``,
    ``m`` = trials per level (the mean, for an unbalanced table); no rows without a model."""
    rows = []
    if info.get("model"):
        df, sd = info["df_resid"], info["resid_sd"]
        k = stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)
        for f in _varying(table, factors):
            m = len(table) / table[f].astype(str).nunique()
            rows.append({"factor": f, "mdd": float(k * sd * math.sqrt(2 / m)), "trials_per_level": m,
                         "resid_sd": sd, "df_resid": df})
    return pd.DataFrame(rows, columns=["factor", "mdd", "trials_per_level", "resid_sd", "df_resid"])


# -- one analysis --------------------------------------------------------------------------------

def _tag(df: pd.DataFrame, budget: int, trials: list[str] | None = None) -> pd.DataFrame:
    """``df`` with ``budget_epochs`` first and, given ``trials``, ``n`` and ``trials`` last."""
    out = df.copy()
    out.insert(0, "budget_epochs", int(budget))
    return out if trials is None else out.assign(n=len(trials), trials=[list(trials)] * len(out))


def effects(table: pd.DataFrame, factors=FACTORS, mode: str = "max", test: str = "t") -> dict:
    """The whole analysis of one score table (``fixed_budget_table`` or
    ``rung_table``) as a JSON-safe dict: ``levels``, ``anova``, ``contrasts``,
    ``decisions``, ``mdd``, ``model`` and the table's ``label``/``dropped``."""
    budget = int(table.attrs.get("budget_epochs", table["budget_epochs"].iloc[0] if len(table) else 0))
    factors = [f for f in factors if f in table]
    ids = sorted(table["trial_id"])
    seeds = sorted(table["seed"].astype(str).unique()) if "seed" in table else []
    fit, info = fit_model(table, factors)
    levels = _tag(level_table(table, factors, mode), budget)
    contrasts = _tag(contrast_table(table, factors, mode, test), budget)
    anova = _tag(anova_table(fit, info), budget, ids)
    mdd = _tag(factor_mdd(info, table, factors), budget, ids)
    notes = [info["note"]] if info.get("note") else []
    if len(seeds) < 2:
        notes.append("one seed: no seed block; pairs are matched on the other factors only, and the model's "
                     "residual is made of the interactions it leaves out (seed noise and those effects are one)")
    return json_safe({
        "kind": table.attrs.get("kind"), "label": table.attrs.get("label"), "budget_epochs": budget,
        "metric": table.attrs.get("metric"), "score": table.attrs.get("score"), "mode": mode, "n": len(table),
        "trials": ids, "seeds": seeds, "dropped": table.attrs.get("dropped", []),
        "reached": table.attrs.get("reached"), "alpha": ALPHA, "power": POWER,
        "test": contrasts["test"].iloc[0] if len(contrasts) else None,
        "correction": "Holm over all contrasts of this analysis (statsmodels multipletests)",
        "mdd_formulas": {"contrast": "d* x sd(paired differences); d* = TTestPower().solve_power(nobs=n_pairs, "
                                     "alpha, power, two-sided)",
                         "factor": "(t_{1-alpha/2,df_resid} + t_{power,df_resid}) x resid_sd x sqrt(2/m), "
                                   "m = trials per level"},
        "model": {k: v for k, v in info.items() if k != "names"},
        "anova": anova.to_dict("records"), "levels": levels.to_dict("records"),
        "contrasts": contrasts.to_dict("records"),
        "decisions": [{"budget_epochs": budget, **d, "n": len(ids), "trials": ids}
                      for d in decide(levels, contrasts, factors, mode)],
        "mdd": mdd.to_dict("records"), "notes": notes,
    })


# -- the ablation answer -------------------------------------------------------------------------

def asha_rungs(trials_df: pd.DataFrame) -> list[int]:
    """The epoch counts, below the most any trial ran, at which some trial stopped
    (ASHA's rungs; none for a FIFO sweep), whatever budget the answer uses."""
    ok = _not_errored(trials_df)
    return sorted(int(e) for e in ok["epochs"].unique() if 0 < e < ok["epochs"].max())


def load_tables(source, epochs_csv=None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(trials_df, epochs_df)`` of an experiment folder (``experiment.load_experiment``)
    or of a saved trials CSV (with ``epochs_csv``, else no epochs table)."""
    is_csv = str(source).endswith(".csv") and Path(source).is_file()
    trials, epochs = (pd.read_csv(source), None) if is_csv else load_experiment(source)
    return trials, (pd.read_csv(epochs_csv) if epochs_csv else epochs)


def ablation_answer(trials_df: pd.DataFrame, epoch_df: pd.DataFrame | None = None, budget: int | None = None,
                    metric: str = HEADLINE, score: str = "last", factors=FACTORS, mode: str | None = None,
                    test: str = "t", legacy: bool = True) -> dict:
    """What ``ecg-ray ablation`` prints: ``fixed_budget`` (``effects`` of the trials that ran ``budget``
    epochs, default the most any trial ran), ``asha_rungs`` (``effects`` at each rung where ASHA stopped
    trials) and, if ``legacy``, ``best_of_trial_budget_confounded`` (``ablation``)."""
    metric = base_metric(metric)
    mode = mode or default_mode(metric)
    ok = _not_errored(trials_df)
    budget = int(budget if budget is not None else (ok["epochs"].max() if len(ok) else 0))
    epochs = epoch_df if epoch_df is not None and metric in epoch_df else known_epochs(trials_df, metric)
    out = {"metric": metric, "mode": mode, "budget_epochs": budget, "score": score,
           "fixed_budget": effects(fixed_budget_table(trials_df, budget, metric, score, factors), factors, mode, test),
           "asha_rungs": [effects(rung_table(trials_df, epochs, r, metric, factors), factors, mode, test)
                          for r in asha_rungs(trials_df)]}
    if legacy:  # each level row says the range of epochs its trials ran (``budget_epochs`` None)
        old = ablation(trials_df, f"best_{metric}", tuple(factors), mode=mode)
        kept = trials_df[~trials_df["trial_id"].isin([e.split(" ")[0] for e in old.excluded])]
        ran = [kept.loc[kept[f].astype(str) == lv, "epochs"]
               for f, lv in zip(old.levels["factor"], old.levels["level"])]
        old.levels = old.levels.assign(budget_epochs=None, epochs_min=[int(e.min()) for e in ran],
                                       epochs_max=[int(e.max()) for e in ran])
        out["best_of_trial_budget_confounded"] = {
            "label": "best-of-trial, budget-confounded: each trial's best epoch whatever budget ASHA gave it; "
                     "CI overlap, no test, no correction — kept for comparison, not an answer",
            "factors": [f for f in factors if f in trials_df], **old.to_dict()}
    return json_safe(out)


# -- best-of-trial ablation (budget-confounded; kept for comparison) ---------------------------

@dataclass
class Ablation:
    """What ``ablation`` found. ``levels``: one row per (factor, level) with ``n, mean, sd, ci_low,
    ci_high, rank`` (1 = best); ``interaction``: mean metric per (row factor level, column factor
    level) cell, ``interaction_n`` the trial count per cell; ``notes``: plain-language findings
    (which levels cannot be told apart); ``stability``: mean ± sd of the metric across seeds for
    each config (``n_seeds``)."""

    metric: str
    mode: str
    confidence: float
    method: str
    n_trials: int
    levels: pd.DataFrame
    interaction: pd.DataFrame | None
    interaction_n: pd.DataFrame | None
    stability: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def frame(df, orient="split"):
            return None if df is None else json.loads(df.to_json(orient=orient))
        return {f.name: getattr(self, f.name) for f in fields(self)} | {  # the frames as JSON, in field order
            "levels": frame(self.levels, "records"), "interaction": frame(self.interaction),
            "interaction_n": frame(self.interaction_n), "stability": frame(self.stability, "records")}


def ablation(trials_df: pd.DataFrame, metric: str = f"best_{HEADLINE}",
             factors: tuple[str, ...] = FACTORS, *, mode: str | None = None, confidence: float = 0.95,
             method: str = "t", include_errored: bool = False) -> Ablation:
    """Per factor and level: n, mean, sd, CI of ``metric`` (``method`` ``t`` — ``scipy.stats.t``
    interval — or ``bootstrap``) over every trial at that level (so over seeds and the other
    factors), rank; the ``factors[0] x factors[1]`` interaction table; notes on levels whose CIs
    overlap ("not distinguishable"); seed stability of each config.

    Trials with status ERROR are left out (listed in ``excluded``) unless ``include_errored``;
    trials without a finite value of the metric always are. Trials ASHA stopped early count with the
    best value they reached.
    """
    col = metric_column(trials_df, metric, "best")
    mode = mode or default_mode(col)
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")
    df = trials_df.assign(**{col: pd.to_numeric(trials_df[col], errors="coerce")})
    errored = df["status"].eq("ERROR") if "status" in df and not include_errored else pd.Series(False, df.index)
    missing = ~errored & ~np.isfinite(df[col])
    excluded = ([f"{t} (error)" for t in df.loc[errored, "trial_id"]]
                + [f"{t} (no {col})" for t in df.loc[missing, "trial_id"]])
    df = df[~errored & ~missing]
    factors = tuple(f for f in factors if f in df.columns)

    levels = level_table(df, factors, mode, col, t_interval if method == "t" else bootstrap_interval,
                         confidence).drop(columns="trials")
    notes = []
    pct = f"{confidence:.0%}"
    for factor, rows in levels.groupby("factor", sort=False):
        if len(rows) < 2:
            notes.append(f"{factor}: only one level ({rows['level'].iloc[0]}), nothing to compare.")
        for a, b in itertools.combinations(rows.itertuples(index=False), 2):
            if not np.isfinite([a.ci_low, a.ci_high, b.ci_low, b.ci_high]).all():
                notes.append(f"{factor}: {a.level} vs {b.level} cannot be compared "
                             f"(a level has fewer than 2 trials: no {pct} CI).")
            elif a.ci_low <= b.ci_high and b.ci_low <= a.ci_high:
                notes.append(f"{factor}: {a.level} ({a.mean:.3f}) and {b.level} ({b.mean:.3f}) are not "
                             f"distinguishable ({pct} CIs overlap).")
            else:
                notes.append(f"{factor}: {a.level} ({a.mean:.3f}) beats {b.level} ({b.mean:.3f}); "
                             f"{pct} CIs do not overlap.")

    interaction = interaction_n = None
    if len(factors) >= 2 and not df.empty:
        cells = df.pivot_table(index=factors[0], columns=factors[1], values=col, aggfunc=["mean", "count"],
                               observed=True)
        interaction, interaction_n = cells["mean"], cells["count"]

    stability = seed_stability(df, col, trials_df.attrs.get("config_columns"), factors)
    if not stability.empty and stability["n_seeds"].max() < 2:
        notes.append("single seed per config: seed stability not estimated (rerun with several seeds).")
    return Ablation(col, mode, confidence, method, int(len(df)), levels, interaction, interaction_n,
                    stability, notes, excluded)


#: Config columns that describe resources or bookkeeping, not the trained model.
_NON_FACTOR_CONFIG = {"seed", "num_workers", "cpus_per_worker", "gpus_per_worker", "use_gpu", "torch_threads"}


def seed_stability(trials_df: pd.DataFrame, metric: str, config_columns=None,
                   factors: tuple[str, ...] = FACTORS) -> pd.DataFrame:
    """Mean ± sd (and min, max) of ``metric`` across seeds for each config: rows grouped by every
    varying config column except ``seed`` (the factors when ``config_columns`` is not known)."""
    if trials_df.empty:
        return pd.DataFrame(columns=[*factors, "n_seeds", "mean", "sd", "min", "max"])
    varying = _varying(trials_df, [c for c in (config_columns or factors) if c not in _NON_FACTOR_CONFIG])
    keys = list(dict.fromkeys([f for f in factors if f in trials_df] + varying))
    df = trials_df.assign(**{k: trials_df[k].astype(str) for k in keys})
    grouped = df.groupby(keys, sort=True)[metric] if keys else df.assign(_all="all").groupby("_all")[metric]
    out = grouped.agg(n_seeds="count", mean="mean", sd="std", min="min", max="max").reset_index()
    return out.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


_SHOW = {
    "anova": ["budget_epochs", "term", "df", "sum_sq", "F", "p", "eta_sq_partial", "n"],
    "levels": ["budget_epochs", "factor", "level", "rank", "n", "mean", "ci_low", "ci_high"],
    "contrasts": ["budget_epochs", "factor", "better", "worse", "delta", "ci_low", "ci_high", "p", "p_holm",
                  "significant", "mdd", "n_pairs", "n"],
    "mdd": ["budget_epochs", "factor", "mdd", "trials_per_level", "resid_sd", "df_resid", "n"],
}


def _render(rows: list[dict], key: str, fmt: str) -> str:
    """The ``_SHOW[key]`` columns of ``rows`` as a ``table`` or ``markdown`` table."""
    df = pd.DataFrame(rows)
    df = df[[c for c in _SHOW[key] if c in df]] if len(df) else pd.DataFrame(columns=_SHOW[key])
    return render(df, fmt) if len(df) or fmt == "markdown" else "(none)"


def format_effects(result: dict, fmt: str = "table", level: int = 2) -> str:
    """One ``effects`` dict as text (``table`` or ``markdown``)."""
    h, sub = ("#" * level + " ", "#" * (level + 1) + " ") if fmt == "markdown" else ("", "")
    model = result.get("model") or {}
    dropped = result.get("dropped") or []
    parts = [f"{h}{result['label']}", "",
             f"{result['n']} trials, metric {result['metric']} ({result['mode']}), score {result['score']}; "
             f"dropped {len(dropped)}" + (f": {', '.join(d['trial_id'] for d in dropped)}" if dropped else ""), ""]
    parts += [f"{sub}Decisions (paired tests, Holm-adjusted, α = {result['alpha']})", ""]
    parts += [f"- {d['statement']}" + (f"; distinguishable: {', '.join(d['distinguishable'])}"
                                       if d["distinguishable"] else "") for d in result["decisions"]] or ["- none"]
    parts += ["", f"{sub}Contrasts: ΔF1 (better − worse), 95% CI, {result.get('test') or 'paired test'}, "
                  f"Holm-adjusted p, MDD (α {result['alpha']}, power {result['power']})", "",
              _render(result["contrasts"], "contrasts", fmt)]
    parts += ["", f"{sub}Type-II ANOVA: {model.get('formula') or 'no model'}"
                  + (f" ({model['note']})" if model.get("note") else ""), "",
              _render(result["anova"], "anova", fmt)]
    parts += ["", f"{sub}Level means (95% t CI)", "", _render(result["levels"], "levels", fmt)]
    if result["mdd"]:
        parts += ["", f"{sub}Minimum detectable difference per factor (model residual SD)", "",
                  _render(result["mdd"], "mdd", fmt)]
    if result["notes"]:
        parts += [""] + [f"- note: {n}" for n in result["notes"]]
    return "\n".join(parts)


def format_answer(answer: dict, fmt: str = "table") -> str:
    """``ablation_answer`` as ``json``, ``table`` or ``markdown``: fixed budget first,
    then each ASHA rung, then (labelled) the best-of-trial table."""
    if fmt == "json":
        return json.dumps(answer, indent=1)
    if fmt not in ("table", "markdown"):
        raise ValueError(f"unknown format {fmt!r}; choose table, json or markdown")
    h = "## " if fmt == "markdown" else "=== "
    parts = [f"{h}Fixed-budget answer ({answer['budget_epochs']} epochs)", "",
             format_effects(answer["fixed_budget"], fmt, 3)]
    parts += ["", f"{h}ASHA-stage reading (per rung; survivors compared at the same epoch)", ""]
    parts += [format_effects(r, fmt, 3) + "\n" for r in answer["asha_rungs"]] or ["(no trial stopped below the budget)"]
    if "best_of_trial_budget_confounded" in answer:
        old = answer["best_of_trial_budget_confounded"]
        parts += ["", f"{h}Best-of-trial, budget-confounded (old table, for comparison only)", "", old["label"],
                  "", render(pd.DataFrame(old["levels"]), fmt)]
        if old.get("interaction"):
            inter = pd.DataFrame(**{k: old["interaction"][k] for k in ("index", "columns", "data")})
            parts += ["", f"{old['factors'][0]} x {old['factors'][1]}: mean best-of-trial {old['metric']}", "",
                      render(inter, fmt, index=True)]
        parts += ["", "Seed stability (mean ± sd across seeds of each config)", "",
                  render(pd.DataFrame(old["stability"]), fmt)]
    return "\n".join(parts)
