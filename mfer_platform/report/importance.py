"""Which varied factors moved the metric: parameter importance, computed by us from the trials table
for every sweep — searched, grid and row studies alike — so a report never depends on a searcher
having kept its study.

Two or more factors: fANOVA (Hutter, Hoos & Leyton-Brown, "An Efficient Approach for Assessing
Hyperparameter Importance", ICML 2014) — a random forest fitted to (config → metric), its variance
decomposed into each factor's main effect — through Optuna's ``FanovaImportanceEvaluator`` (a
scikit-learn forest) on a study built in memory from the table, with every factor's search
distribution (log-uniform ones on a log scale). fANOVA apportions variance, so the direction of the
metric does not enter (Optuna's default PED-ANOVA would: given a target it assumes lower is better).
One factor: η², the share of the trials' variance that the factor's group means explain (Pearson's
correlation ratio, 1905), the rest being seed noise. Each result says how many trials stand behind it;
too few, and it is left out with the reason.
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from mfer_platform.results.stats import plain, value_text

MIN_TRIALS = 4  # below this a forest (or a between-group variance) fitted to the trials says nothing
NUMERIC_KINDS = {"uniform": False, "loguniform": True, "int": False}  # range distributions -> log scale


@dataclass
class Importance:
    what: str  # which trials and value, e.g. "completed trials at their selected epoch"
    method: str  # "fANOVA" | "η²" | "" (not computed)
    n: int  # trials behind it
    shares: dict[str, float] = field(default_factory=dict)  # factor -> share of variance (sums to 1 for fANOVA)
    note: str = ""  # why it was left out, or what limits it


def is_log(factor: str, values: Sequence[float], params: Optional[dict]) -> bool:
    """Was ``factor`` searched on a log scale? The sweep record's params say (``loguniform``); records
    written before it kept them fall back to the values spanning more than a factor of 20."""
    spec = (params or {}).get(factor)
    if isinstance(spec, dict) and spec:
        return next(iter(spec)) == "loguniform"
    v = np.asarray(values, dtype=float)
    return len(v) > 0 and bool((v > 0).all()) and v.max() / v.min() > 20


def _numeric(values: pd.Series) -> bool:
    return values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all()


def _distribution(factor: str, values: pd.Series, params: Optional[dict]) -> Any:
    """Optuna's distribution of a factor: the searched range where the record has it, else the range
    seen; categories (lists as their one spelling) for choices, grids and rows."""
    import optuna.distributions as od

    spec = (params or {}).get(factor)
    kind, bounds = next(iter(spec.items())) if isinstance(spec, dict) and spec else (None, None)
    if _numeric(values) and kind in (*NUMERIC_KINDS, None):
        low, high = (float(min(bounds)), float(max(bounds))) if kind else (float(values.min()), float(values.max()))
        low, high = min(low, float(values.min())), max(high, float(values.max()))
        if kind == "int":
            return od.IntDistribution(int(low), int(high))
        return od.FloatDistribution(low, high, log=is_log(factor, values, params))
    return od.CategoricalDistribution(sorted({value_text(v, None) for v in values}))


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every in-memory study it creates; here that is noise."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def fanova(table: pd.DataFrame, factors: Sequence[str], target: str, params: Optional[dict],
           seed: int = 0) -> dict[str, float]:
    """fANOVA main-effect shares (normalised to 1) of ``factors`` for ``target``, one Optuna trial per row."""
    import optuna

    dists = {f: _distribution(f, table[f], params) for f in factors}
    with _quiet_optuna():
        study = optuna.create_study(direction="maximize")
        for row in table.to_dict("records"):
            values = {f: row[f] if not isinstance(dists[f], optuna.distributions.CategoricalDistribution)
                      else value_text(row[f], None) for f in factors}
            study.add_trial(optuna.trial.create_trial(params=values, distributions=dists, value=float(row[target])))
        shares = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    return dict(shares)


def eta_squared(table: pd.DataFrame, factor: str, target: str) -> float:
    """η² = SS_between / SS_total of ``target`` grouped by ``factor``."""
    y = table[target].to_numpy(float)
    keys = table[factor].map(lambda v: value_text(v, None))
    means = table.groupby(keys)[target].transform("mean").to_numpy(float)
    total = ((y - y.mean()) ** 2).sum()
    return float(((means - y.mean()) ** 2).sum() / total)


def importance(table: pd.DataFrame, factors: Sequence[str], target: str, what: str,
               params: Optional[dict] = None) -> Importance:
    """Importance of the ``factors`` that vary within ``table`` for its ``target`` column."""
    rows = table[table[target].notna()].copy()
    for f in factors:
        rows[f] = rows[f].map(plain)
    varied = [f for f in factors if rows[f].map(lambda v: value_text(v, None)).nunique() > 1]
    n = len(rows)
    if not varied:
        return Importance(what, "", n, note="no factor took two values among these trials")
    if n < MIN_TRIALS:
        return Importance(what, "", n, note=f"n={n} trials: at least {MIN_TRIALS} are needed")
    if math.isclose(float(rows[target].var()), 0.0, abs_tol=1e-12):
        return Importance(what, "", n, note="every trial scored the same")
    if len(varied) == 1:
        if rows[varied[0]].map(lambda v: value_text(v, None)).nunique() == n:
            return Importance(what, "", n, note="one trial per value: seed noise cannot be told from the factor")
        return Importance(what, "η²", n, {varied[0]: eta_squared(rows, varied[0], target)})
    shares = fanova(rows, varied, target, params)
    note = f"{n} trials for {len(varied)} factors: indicative only" if n < 5 * len(varied) else ""
    return Importance(what, "fANOVA", n, dict(sorted(shares.items(), key=lambda kv: -kv[1])), note)


def at_common_epoch(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, int]:
    """(every trial with ``metric`` at the last epoch all of them reached, that epoch): what an
    early-stopping scheduler compared them on, so early-stopped trials count at equal budget."""
    have = epochs[epochs[metric].notna()]
    reached = have.groupby(["experiment", "trial_id"])["epoch"].max()
    if reached.empty:
        return trials.iloc[:0], 0
    epoch = int(reached.min())
    at = have[have["epoch"] == epoch][["experiment", "trial_id", metric]]
    return trials.drop(columns=[metric]).merge(at, on=["experiment", "trial_id"]), epoch


def sweep_importances(trials: pd.DataFrame, epochs: pd.DataFrame, factors: Sequence[str], metric: str,
                      params: Optional[dict] = None) -> list[Importance]:
    """Importance on the completed trials (metric at their selected epoch) and, where some trials
    stopped early, on all trials at the epoch every one of them reached."""
    done = trials[trials["status"] == "completed"]
    out = [importance(done, factors, metric, f"completed trials, {metric} at the selected epoch", params)]
    if (trials["status"] == "early_stopped").any():
        common, epoch = at_common_epoch(trials, epochs, metric)
        out.append(importance(common, factors, metric, f"all trials, {metric} at epoch {epoch} (all reached it)",
                              params))
    return out
