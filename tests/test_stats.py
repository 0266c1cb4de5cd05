"""Comparison statistics and tables, checked against values computed by hand in this file."""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mfer_platform.results.stats import (PAIRED, WELCH, CompareSpec, StatsError, compare, compute_spent, holm, pareto_front,
                                 spec_from_record)
from mfer_platform.report.tables import to_csv, to_latex, to_markdown
from mfer_platform.results.cells import metric_cell

F = "model.attn_variant"
# variant -> {seed: (val_acc, test_acc)}. "ds" wins on validation, "global" on test: selection must
# follow validation. "global" ran other seeds than the baseline (Welch); "local" ran one seed.
RUNS = {
    "none": {0: (0.80, 0.78), 1: (0.82, 0.79), 2: (0.81, 0.80)},
    "ds": {0: (0.83, 0.80), 1: (0.86, 0.81), 2: (0.84, 0.79)},
    "global": {3: (0.79, 0.90), 4: (0.85, 0.91)},
    "local": {0: (0.70, 0.70)},
}


def _trials() -> pd.DataFrame:
    rows = [{"trial_id": f"{v}-{s}", F: v, "seed": s, "status": "completed", "val_acc": va, "test_acc": te,
             "epochs_run": 4, "epochs_planned": 4, "cpu_seconds": 100.0, "gpu_seconds": 0.0}
            for v, seeds in RUNS.items() for s, (va, te) in seeds.items()]
    rows.append({"trial_id": "ds-stopped", F: "ds", "seed": 5, "status": "early_stopped", "val_acc": 0.99,
                 "test_acc": None, "epochs_run": 1, "epochs_planned": 4, "cpu_seconds": 25.0, "gpu_seconds": 0.0})
    rows.append({"trial_id": "ds-error", F: "ds", "seed": 6, "status": "error", "val_acc": None, "test_acc": None,
                 "epochs_run": 0, "epochs_planned": 4, "cpu_seconds": 3.0, "gpu_seconds": 0.0})
    return pd.DataFrame(rows)


SPEC = CompareSpec([F], "val_acc", "max", {F: "none"}, metrics=("val_acc", "test_acc"))


def _values(variant: str, col: int) -> np.ndarray:
    return np.array([v[col] for v in RUNS[variant].values()])


def _paired_p(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b  # Student's paired t: t = mean(d) / (sd(d) / sqrt(n)), n - 1 degrees of freedom
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return 2 * sps.t.sf(abs(t), len(d) - 1)


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch–Satterthwaite
    return 2 * sps.t.sf(abs(t), df)


def test_group_mean_std_ci_by_hand():
    cmp = compare(_trials(), SPEC)
    s = cmp.stat("attn_variant=ds", "val_acc")
    x = _values("ds", 0)  # the early-stopped 0.99 and the errored run stay out
    mean, std = x.sum() / 3, math.sqrt(((x - x.sum() / 3) ** 2).sum() / 2)
    half = sps.t.ppf(0.975, 2) * std / math.sqrt(3)
    assert s["n"] == 3
    assert (s["mean"], s["std"]) == (pytest.approx(mean), pytest.approx(std))
    assert (s["ci_low"], s["ci_high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert cmp.excluded == {"early_stopped": 1, "error": 1}
    one = cmp.stat("attn_variant=local", "val_acc")
    assert one["n"] == 1 and one["mean"] == 0.70 and math.isnan(one["std"]) and math.isnan(one["ci_low"])


def test_delta_paired_welch_and_holm_by_hand():
    cmp = compare(_trials(), SPEC)
    ds, glob, local = (cmp.stat(f"attn_variant={v}", "val_acc") for v in ("ds", "global", "local"))
    base = _values("none", 0)
    assert ds["delta"] == pytest.approx(_values("ds", 0).mean() - base.mean())
    assert (ds["test"], ds["n_pairs"]) == (PAIRED, 3)
    p_ds = _paired_p(_values("ds", 0), base)
    assert ds["p_value"] == pytest.approx(p_ds)
    d = _values("ds", 0) - base
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert (ds["delta_ci_low"], ds["delta_ci_high"]) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert glob["test"] == WELCH and glob["p_value"] == pytest.approx(_welch_p(_values("global", 0), base))
    # ...and scipy's implementations agree with the hand formulas and with ours.
    assert ds["p_value"] == pytest.approx(sps.ttest_rel(_values("ds", 0), base).pvalue)
    welch = sps.ttest_ind(_values("global", 0), base, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert (glob["p_value"], glob["delta_ci_low"], glob["delta_ci_high"]) == (
        pytest.approx(welch.pvalue), pytest.approx(ci.low), pytest.approx(ci.high))
    assert math.isnan(local["p_value"]) and local["test"].startswith("none")
    # Holm over the two valid comparisons: the smaller p x 2, the larger x 1 but never below the first.
    lo, hi = sorted([p_ds, glob["p_value"]])
    adjusted = {lo: min(1, 2 * lo), hi: max(min(1, 2 * lo), min(1, hi))}
    assert ds["p_holm"] == pytest.approx(adjusted[p_ds]) and glob["p_holm"] == pytest.approx(adjusted[glob["p_value"]])
    assert math.isnan(local["p_holm"]) and math.isnan(cmp.stat("attn_variant=none", "val_acc")["delta"])


def test_best_is_chosen_on_validation_never_test():
    cmp = compare(_trials(), SPEC)
    assert cmp.best == "attn_variant=ds" and list(cmp.groups["group"])[0] == "attn_variant=ds"
    assert cmp.stat("attn_variant=global", "test_acc")["mean"] > cmp.stat("attn_variant=ds", "test_acc")["mean"]
    assert cmp.reference == "attn_variant=none" and cmp.reference_is_baseline
    with pytest.raises(StatsError, match="never on test"):
        CompareSpec([F], metric="test_acc")


def test_without_a_baseline_the_best_group_is_the_reference():
    cmp = compare(_trials(), CompareSpec([F], metrics=("val_acc",)))
    assert cmp.reference == cmp.best == "attn_variant=ds" and not cmp.reference_is_baseline


def test_unknown_baseline_lists_the_groups():
    with pytest.raises(StatsError, match="matches 0 completed groups.*attn_variant=ds"):
        compare(_trials(), CompareSpec([F], baseline={F: "sparse"}))


def test_holm_matches_the_textbook_example():
    # m = 4 sorted p: 0.01*4 = 0.04, 0.02*3 = 0.06, 0.03*2 = 0.06, 0.5*1 = 0.5 (monotone); NaN ignored.
    np.testing.assert_allclose(holm([0.03, np.nan, 0.01, 0.5, 0.02]), [0.06, np.nan, 0.04, 0.5, 0.06])


def test_spec_from_sweep_record():
    record = {"factors": [F], "metric": "best_val_acc", "mode": "max", "baseline": None,
              "base_config": {"trainer": {"selection_metric": "val_macro_f1"}}}
    assert spec_from_record(record).metric == "val_acc"
    assert spec_from_record({**record, "metric": "train_loss", "mode": "min"}).metric == "val_macro_f1"
    assert spec_from_record(record, baseline={F: "none"}).baseline == {F: "none"}


def test_pareto_front_and_compute_spent():
    # (params: minimise, val_acc: maximise): (3, .85) is beaten by (2, .9), (1.5, .7) by (1, .8).
    points = np.array([[1, 0.8], [2, 0.9], [3, 0.85], [1.5, 0.7]])
    assert pareto_front(points, [False, True]).tolist() == [True, True, False, False]
    spent = compute_spent(_trials(), [F])
    assert spent.unit == "CPU" and spent.spent_s == pytest.approx(9 * 100 + 25 + 3)
    assert spent.saved_s == pytest.approx(25 * 3)  # 3 epochs skipped at 25 s each
    assert spent.saved_share == pytest.approx(75 / (928 + 75))
    row = spent.per_group.set_index("group").loc["attn_variant=ds"]
    assert (row["trials"], row["early_stopped"], row["seconds"]) == (5, 1, 328)


def test_tables_show_every_number_with_its_n_in_three_formats():
    cmp = compare(_trials(), SPEC)
    md = to_markdown(cmp)
    rows = [line for line in md.splitlines() if line.startswith("| ") and "group" not in line]
    assert len(rows) == 4 and rows[0].startswith("| ★ attn_variant=ds")
    for line, n in zip(rows, (3, 2, 3, 1)):  # ds, global, none, local: the n column says it, no cell repeats it
        cells = line.strip("| ").split(" | ")
        assert cells[1] == str(n) and not any("(n=" in c for c in cells[2:4]), line
        assert all("n=" in c or c in ("baseline", "– (no test)") or c.endswith("(no test)") for c in cells[4:]), line
    ds_mean, ds_std = _values("ds", 0).mean(), _values("ds", 0).std(ddof=1)
    assert f"{100 * ds_mean:.2f} ± {100 * ds_std:.2f}" in rows[0]
    assert "paired t, n=3 pairs" in rows[0] and "Welch t, n=2 vs 3" in md
    # a metric that some trials of a group lack names its own n
    assert metric_cell({"metric": "test_acc", "n": 2, "mean": 0.8, "std": 0.01, "ci_low": 0.7, "ci_high": 0.9},
                       row_n=3).endswith("(n=2)")
    assert "attn_variant=none (baseline)" in md and "left out: 1 early_stopped, 1 error" in md

    csv = pd.read_csv(io.StringIO(to_csv(cmp)))
    got = csv[(csv["group"] == "attn_variant=ds") & (csv["metric"] == "val_acc")].iloc[0]
    assert got["mean"] == pytest.approx(ds_mean) and got["n"] == 3 and got[F] == "ds" and got["is_best"]

    tex = to_latex(cmp)
    assert r"\toprule" in tex and r"$\pm$" in tex and r"attn\_variant=ds" in tex and r"$\star$" in tex
    assert r"attn\_variant=ds & 3 &" in tex and " % " not in tex.replace(r"\%", "")
