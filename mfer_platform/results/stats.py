"""Comparison statistics over seeds: what a claim "A beats B" needs (fer_pitfalls #1, #3, #6).

Trials are grouped by the factors the sweep varied, so a group is one configuration and its
members are seeds. Per group and metric: n, mean, sample standard deviation and a Student-t
95 % confidence interval of the mean. Every group is compared with one reference row — the
baseline the search space names, or else the best group — by the difference of means and a
test across seeds: a paired t-test on the seeds both groups ran (seed-to-seed noise cancels),
Welch's t-test when fewer than two seeds are shared; p-values are Holm-corrected across the
comparisons of each metric. Only completed trials enter (an early-stopped trial's numbers are
from a shorter run); the rest are counted. The best group is chosen on the mean *validation*
metric, never on test (fer_pitfalls #2).
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from mfer_platform.keys import COMPARED_METRICS, METRIC_MODES, ROW_KEY
from mfer_platform.overrides import choice_text

STAT_COLUMNS = ("group", "metric", "n", "mean", "std", "ci_low", "ci_high", "delta", "delta_ci_low",
                "delta_ci_high", "test", "n_pairs", "p_value", "p_holm")
PAIRED, WELCH, NO_TEST = "paired t", "Welch t", "none (n<2)"


class StatsError(ValueError):
    """The comparison cannot be made as asked; the message says why and what to change."""


@dataclass
class CompareSpec:
    factors: list[str]  # dotted config keys the sweep varied (the seed excluded)
    metric: str = "val_acc"  # validation metric that picks the best group
    mode: str = "max"
    baseline: Optional[dict[str, Any]] = None  # {dotted key: value} naming the reference group
    metrics: tuple[str, ...] = COMPARED_METRICS
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not self.metric.startswith("val_"):
            raise StatsError(f"metric={self.metric!r}: the best configuration is selected on a validation "
                             "metric (val_acc, val_mean_class_acc, val_macro_f1, val_compactness), never on test")
        if self.mode not in ("max", "min"):
            raise StatsError(f"mode={self.mode!r}: use max or min")
        if METRIC_MODES.get(self.metric, self.mode) != self.mode:
            raise StatsError(f"metric={self.metric!r} with mode={self.mode!r}: that metric is better when "
                             f"{'higher' if METRIC_MODES[self.metric] == 'max' else 'lower'}; "
                             f"use mode={METRIC_MODES[self.metric]!r}")


def spec_from_record(record: dict, baseline: Optional[dict[str, Any]] = None) -> CompareSpec:
    """The comparison a sweep asked for (``mfer_sweep.json``); ``baseline`` overrides its baseline.

    A search that optimised ``best_val_acc`` selects on ``val_acc`` (the store keeps values at the
    selected epoch); one that optimised a non-validation metric falls back to the trainer's
    validation selection metric."""
    metric, mode = str(record.get("metric", "val_acc")).removeprefix("best_"), record.get("mode", "max")
    if not metric.startswith("val_"):
        metric, mode = record["base_config"]["trainer"]["selection_metric"], "max"
    return CompareSpec(list(record.get("factors") or []), metric, mode, baseline or record.get("baseline"))


# ---------------------------------------------------------------- groups
def plain(value: Any) -> Any:
    """Parquet list cells arrive as numpy arrays and scalars as numpy types: back to Python values."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def short_names(factors: Sequence[str]) -> dict[str, str]:
    """``model.attn_variant`` -> ``attn_variant``, unless two factors would share the short name."""
    last = Counter(f.rsplit(".", 1)[-1] for f in factors)
    return {f: f.rsplit(".", 1)[-1] if last[f.rsplit(".", 1)[-1]] == 1 else f for f in factors}


def value_text(value: Any, digits: Optional[int] = 4) -> str:
    """A config value as labels and tables write it: floats to ``digits`` significant digits (None: all)."""
    if isinstance(value, float):
        return repr(value) if digits is None else f"{value:.{digits}g}"
    return choice_text(value)  # lists in their one spelling (overrides.choice_text), never rounded


def group_index(trials: pd.DataFrame, factors: Sequence[str]) -> tuple[pd.Series, dict[str, str]]:
    """(group key of every trial, {key: readable label}). Labels round floats to 4 significant
    digits unless that would make two groups look alike; then they show full precision."""
    values = [[plain(v) for v in row] for row in trials[list(factors)].itertuples(index=False)] if factors else \
        [[] for _ in range(len(trials))]
    keys = pd.Series([json.dumps(v) for v in values], index=trials.index, dtype=object)
    names = short_names(factors)
    unique = {k: json.loads(k) for k in dict.fromkeys(keys)}

    def labels(digits: Optional[int]) -> dict[str, str]:
        return {k: ", ".join(f"{names[f]}={value_text(v, digits)}" for f, v in zip(factors, vals)) or "all trials"
                for k, vals in unique.items()}

    short = labels(4)
    return keys, short if len(set(short.values())) == len(short) else labels(None)


SHORT_LABEL_CHARS = 30  # a group name longer than this clips or overlaps as a panel title or an axis label


def short_labels(groups: Sequence[str]) -> list[str]:
    """Labels of groups in figures and tables: their names when every one is short (``attn_variant=ds``),
    else G1…Gn in the order given (best first), which the report's legend table maps to full configs."""
    if all(len(g) <= SHORT_LABEL_CHARS for g in groups):
        return list(groups)
    return [f"G{i}" for i in range(1, len(groups) + 1)]


def _matches(values: dict[str, Any], baseline: dict[str, Any]) -> bool:
    return all(values.get(k) == plain(v) for k, v in baseline.items())  # 1 == 1.0, [1, 2] == [1.0, 2.0]


# ---------------------------------------------------------------- statistics
@contextmanager
def _nan_ok() -> Iterator[None]:
    """NaN in, NaN out: groups without enough seeds get no interval or test; numpy's warnings about it are noise."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def t_interval(mean: np.ndarray, std: np.ndarray, n: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Student-t CI of a mean (Student 1908): mean ± t_{(1+c)/2, n-1} · s/√n; NaN where n < 2."""
    n = np.asarray(n, dtype=float)
    with _nan_ok():
        half = sps.t.ppf((1 + confidence) / 2, np.where(n >= 2, n - 1, np.nan)) * np.asarray(std) / np.sqrt(n)
    return np.asarray(mean) - half, np.asarray(mean) + half


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaNs stay NaN and do not count in m.

    With the m valid p sorted ascending, p_adj(i) = max_{j<=i} min(1, (m - j + 1) · p(j))."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def paired_t(diff: np.ndarray, confidence: float) -> tuple[np.ndarray, ...]:
    """Paired t-test per row of ``diff`` (groups x seeds, group − reference; NaN where a seed is not
    shared) (Student 1908): t = mean(d) / (s_d/√n), n − 1 degrees of freedom, two-sided.
    Returns (n pairs, p, CI low, CI high) of the mean difference."""
    with _nan_ok():
        n = (~np.isnan(diff)).sum(1)
        mean, se = np.nanmean(diff, 1), np.nanstd(diff, 1, ddof=1) / np.sqrt(n)
        df = np.where(n >= 2, n - 1, np.nan)
        p = 2 * sps.t.sf(np.abs(mean / se), df)
        half = sps.t.ppf((1 + confidence) / 2, df) * se
    return n, p, mean - half, mean + half


def welch_t(m1, v1, n1, m2, v2, n2, confidence: float) -> tuple[np.ndarray, ...]:
    """Welch's unequal-variance t-test of m1 − m2 (Welch 1947), elementwise; degrees of freedom by
    Welch–Satterthwaite: (a + b)² / (a²/(n1−1) + b²/(n2−1)) with a = v1/n1, b = v2/n2.
    Returns (p, CI low, CI high) of the difference."""
    with _nan_ok():
        a, b = np.asarray(v1) / n1, np.asarray(v2) / n2
        se = np.sqrt(a + b)
        df = (a + b) ** 2 / (a**2 / (n1 - 1) + b**2 / (n2 - 1))
        diff = np.asarray(m1) - m2
        p = 2 * sps.t.sf(np.abs(diff / se), df)
        half = sps.t.ppf((1 + confidence) / 2, df) * se
    return p, diff - half, diff + half


@dataclass
class Comparison:
    """The comparison table's content: ``groups`` (one row per group, best first) and ``stats``
    (long format: one row per group x metric, with STAT_COLUMNS)."""

    spec: CompareSpec
    groups: pd.DataFrame
    stats: pd.DataFrame
    best: str  # label of the best group (validation)
    reference: str  # label of the group every Δ is taken against
    reference_is_baseline: bool  # False: no baseline was named, the best group is the reference
    excluded: dict[str, int] = field(default_factory=dict)  # status -> trials left out

    def __post_init__(self) -> None:
        self._rows = {(r["group"], r["metric"]): r for r in self.stats.to_dict("records")}

    def stat(self, group: str, metric: str) -> dict[str, Any]:
        """One row of ``stats`` (a dict with STAT_COLUMNS)."""
        return self._rows[(group, metric)]


def _groups(done: pd.DataFrame, spec: CompareSpec, labels: dict[str, str]) -> pd.DataFrame:
    """One row per group: label, factor values, n, seeds, trial ids; best (validation) first."""
    seeds, ids, score = done["seed"].to_numpy(), done["trial_id"].to_numpy(), done[spec.metric].to_numpy(float)
    rows = []
    for key, idx in done.groupby("_key", sort=False).indices.items():
        rows.append({"group": labels[key], **dict(zip(spec.factors, json.loads(key))), "n": len(idx),
                     "seeds": sorted({int(x) for x in seeds[idx]}), "trial_ids": sorted(ids[idx]), "_key": key,
                     "_score": np.nanmean(score[idx]) if not np.isnan(score[idx]).all() else np.nan})
    return pd.DataFrame(rows).sort_values(["_score", "n", "group"], ascending=[spec.mode == "min", False, True],
                                          na_position="last", ignore_index=True).drop(columns="_score")


def _reference(groups: pd.DataFrame, spec: CompareSpec) -> str:
    if not spec.baseline:
        return groups.loc[0, "group"]
    hits = [g["group"] for g in groups.to_dict("records") if _matches(g, spec.baseline)]
    if len(hits) != 1:
        raise StatsError(f"baseline {spec.baseline} matches {len(hits)} completed groups ({hits or 'none'}); "
                         f"name every varied factor, one of: {sorted(groups['group'])}")
    return hits[0]


def compare(trials: pd.DataFrame, spec: CompareSpec) -> Comparison:
    """Group completed trials by ``spec.factors``, summarise each metric, test each group against the reference."""
    missing = [f for f in spec.factors if f not in trials.columns]
    if missing:
        raise StatsError(f"factors {missing} are not columns of the trials table")
    keys, labels = group_index(trials, spec.factors)
    completed = trials["status"] == "completed"
    excluded = dict(Counter(trials.loc[~completed, "status"]))
    done = trials[completed].assign(_key=keys[completed])
    if done.empty:
        raise StatsError(f"no completed trials to compare (statuses: {dict(Counter(trials['status']))})")
    groups = _groups(done, spec, labels)
    reference = _reference(groups, spec)
    ref_key = groups.loc[groups["group"] == reference, "_key"].iloc[0]
    groups["is_best"] = groups.index == 0
    groups["is_reference"] = groups["group"] == reference
    groups.insert(1, "label", short_labels(list(groups["group"])))

    metrics = list(spec.metrics)
    agg = done.groupby("_key")[metrics].agg(["count", "mean", "std"]).reindex(groups["_key"])
    # The unit of the tests is the seed: repeated runs of one seed are averaged, so a seed pairs once.
    per_seed = done.groupby(["_key", "seed"])[metrics].mean()
    seed_stats = per_seed.groupby(level=0).agg(["count", "mean", "var"]).reindex(groups["_key"])
    is_ref = groups["is_reference"].to_numpy()
    frames = []
    for metric in metrics:
        a, s = agg[metric], seed_stats[metric]
        lo, hi = t_interval(a["mean"], a["std"], a["count"], spec.confidence)
        ref_seeds = per_seed.loc[ref_key, metric].dropna()
        shared = per_seed[metric][per_seed.index.get_level_values("seed").isin(ref_seeds.index)]
        wide = shared.unstack("seed").reindex(index=groups["_key"], columns=ref_seeds.index)
        n_pairs, p_pair, lo_pair, hi_pair = paired_t(wide.to_numpy(float) - ref_seeds.to_numpy(float), spec.confidence)
        r = s.loc[ref_key]
        p_welch, lo_welch, hi_welch = welch_t(s["mean"], s["var"], s["count"], r["mean"], r["var"], r["count"],
                                              spec.confidence)
        paired = (n_pairs >= 2) & ~is_ref
        welch = ~paired & (s["count"].to_numpy() >= 2) & (r["count"] >= 2) & ~is_ref
        frames.append(pd.DataFrame({
            "group": groups["group"].to_numpy(), "metric": metric, "n": a["count"].to_numpy(int),
            "mean": a["mean"].to_numpy(), "std": a["std"].to_numpy(), "ci_low": lo, "ci_high": hi,
            "delta": np.where(is_ref, np.nan, a["mean"] - a.loc[ref_key, "mean"]),
            "delta_ci_low": np.select([paired, welch], [lo_pair, lo_welch], np.nan),
            "delta_ci_high": np.select([paired, welch], [hi_pair, hi_welch], np.nan),
            "test": np.select([is_ref, paired, welch], ["", PAIRED, WELCH], NO_TEST), "n_pairs": n_pairs,
            "p_value": np.select([paired, welch], [p_pair, p_welch], np.nan),
        }))
        frames[-1]["p_holm"] = holm(frames[-1]["p_value"].to_numpy(float))
    stats = pd.concat(frames, ignore_index=True)[list(STAT_COLUMNS)]
    return Comparison(spec, groups.drop(columns="_key"), stats, groups.loc[0, "group"], reference,
                      bool(spec.baseline), excluded)


@dataclass
class CrossComparison:
    """A study's rows by the other factors it varied (e.g. method x backbone): per column, the column's
    own trials compared with its own baseline row, so each Δ is against the same backbone's baseline."""

    rows: list[str]  # row names, table order (the baseline first)
    baseline_row: str
    columns: dict[str, Optional[Comparison]]  # column label -> its comparison; None: no completed baseline row

    def stat(self, row: str, column: str, metric: str) -> Optional[dict[str, Any]]:
        """The row's statistics in one column, or None where the row (or the column's baseline) has no
        completed trial."""
        cmp = self.columns[column]
        group = f"{ROW_KEY}={value_text(row)}"
        return cmp.stat(group, metric) if cmp is not None and group in set(cmp.groups["group"]) else None


def cross_compare(trials: pd.DataFrame, spec: CompareSpec, row_order: Sequence[str] = ()) -> Optional[CrossComparison]:
    """The cross table of a study whose baseline names a row and that varied more than its rows (None
    for any other sweep): columns are the values of the other factors together, and each column is
    ``compare``d on its own trials with the baseline row as the reference — paired over the seeds it
    shares with that column's baseline, Welch otherwise."""
    others = [f for f in spec.factors if f != ROW_KEY]
    if not others or not spec.baseline or ROW_KEY not in spec.baseline or ROW_KEY not in spec.factors:
        return None
    baseline_row = str(spec.baseline[ROW_KEY])
    column_spec = dataclasses.replace(spec, factors=[ROW_KEY], baseline={ROW_KEY: baseline_row})
    keys, labels = group_index(trials, others)
    columns: dict[str, Optional[Comparison]] = {}
    for key in sorted(dict.fromkeys(keys), key=lambda k: labels[k]):
        try:
            columns[labels[key]] = compare(trials[keys == key], column_spec)
        except StatsError:  # nothing completed in the column, or not its baseline row: its cells say so
            columns[labels[key]] = None
    seen = [str(plain(r)) for r in dict.fromkeys(trials[ROW_KEY])]
    rest = [r for r in dict.fromkeys([*map(str, row_order), *seen]) if r in seen and r != baseline_row]
    return CrossComparison([baseline_row, *rest], baseline_row, columns)


def ranked_trials(cmp: Comparison, trials: pd.DataFrame, group: Optional[str] = None) -> pd.DataFrame:
    """The completed trials of ``group`` (default: the best group, by mean validation over seeds),
    best validation value first: the order an export falls back in when a checkpoint is corrupt."""
    ids = cmp.groups.loc[cmp.groups["group"] == (group or cmp.best), "trial_ids"].iloc[0]
    members = trials[trials["trial_id"].isin(ids) & (trials["status"] == "completed")]
    return members.sort_values([cmp.spec.metric, "seed"], ascending=[cmp.spec.mode == "min", True])


def best_trial(cmp: Comparison, trials: pd.DataFrame, group: Optional[str] = None) -> pd.Series:
    """Within ``group`` (default: the best group), the seed with the best validation value."""
    return ranked_trials(cmp, trials, group).iloc[0]


def pareto_front(points: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Mask of the non-dominated rows of ``points`` (n, k): no other row is at least as good in
    every objective and strictly better in one (Pareto optimality)."""
    signed = np.where(np.asarray(maximise), 1.0, -1.0) * np.asarray(points, dtype=float)
    return np.array([not ((signed >= p).all(1) & (signed > p).any(1)).any() for p in signed], dtype=bool)


# ---------------------------------------------------------------- compute
@dataclass
class ComputeSpent:
    per_group: pd.DataFrame  # group, trials, seconds, early_stopped
    unit: str  # "GPU" when any trial held a GPU, else "CPU"
    spent_s: float
    saved_s: float  # estimated: epochs early stopping skipped x that trial's mean epoch time

    @property
    def saved_share(self) -> float:
        total = self.spent_s + self.saved_s
        return self.saved_s / total if total else 0.0


def compute_spent(trials: pd.DataFrame, factors: Sequence[str]) -> ComputeSpent:
    """Reserved device-seconds per group (all trials, whatever their status) and what early stopping saved."""
    keys, labels = group_index(trials, factors)
    unit = "GPU" if trials["gpu_seconds"].fillna(0).gt(0).any() else "CPU"
    seconds = trials["gpu_seconds" if unit == "GPU" else "cpu_seconds"].fillna(0.0)
    stopped = trials["status"] == "early_stopped"
    per_epoch = seconds / trials["epochs_run"].clip(lower=1)
    saved = (per_epoch * (trials["epochs_planned"] - trials["epochs_run"]))[stopped].sum()
    frame = pd.DataFrame({"group": keys.map(labels), "seconds": seconds, "early_stopped": stopped.astype(int)})
    per_group = frame.groupby("group", sort=False).agg(trials=("seconds", "size"), seconds=("seconds", "sum"),
                                                       early_stopped=("early_stopped", "sum")).reset_index()
    return ComputeSpent(per_group.sort_values("seconds", ascending=False, ignore_index=True), unit,
                        float(seconds.sum()), float(saved))
