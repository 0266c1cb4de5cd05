"""The report's plotly figures of a sweep: one function per picture, each from the comparison and
the store's tables, each stating how many trials or seeds stand behind what it draws."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mfer_platform.keys import PRETTY
from mfer_platform.report.figures.sweep import class_abbreviations
from mfer_platform.report.importance import is_log
from mfer_platform.report.pages import LAYOUT
from mfer_platform.report.published import DATASET_NAMES, per_class
from mfer_platform.report.tables import column_name
from mfer_platform.report.trials import shown_label
from mfer_platform.results.cells import unit_scale
from mfer_platform.results.stats import Comparison, compute_spent, pareto_front, plain, short_names, value_text


def _group_members(cmp: Comparison, trials: pd.DataFrame, top_k: int) -> list[tuple[str, pd.DataFrame]]:
    """(shown label, completed trials) of the best ``top_k`` groups, best first."""
    out = []
    for g in cmp.groups.head(top_k).itertuples():
        members = trials[trials["trial_id"].isin(g.trial_ids) & (trials["status"] == "completed")]
        out.append((shown_label(cmp, g.group), members))
    return out


TWO_LINE_MARGIN = dict(l=60, r=30, t=100, b=60)  # room for a title of two lines


def _is_number(values: pd.Series) -> bool:
    return values.map(lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)).all()


def _log_axis(label: str, v: pd.Series) -> dict:
    """A parallel-coordinates axis on a log scale (plotly's parcoords has none): log10 positions,
    ticked at 1, 2 and 5 times each power of ten in range, labelled with the values themselves."""
    lo, hi = np.log10(v.min()), np.log10(v.max())
    ticks = [m * 10.0**e for e in range(int(np.floor(lo)), int(np.ceil(hi)) + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if lo - 1e-9 <= np.log10(t) <= hi + 1e-9] or [float(v.min()), float(v.max())]
    return dict(label=f"{label} (log)", values=np.log10(v), tickvals=list(np.log10(ticks)),
                ticktext=[f"{t:g}" for t in ticks])


def _axis(label: str, values: pd.Series, log: bool) -> dict:
    if _is_number(values):
        v = values.astype(float)
        return _log_axis(label, v) if log and (v > 0).all() else dict(label=label, values=v)
    text = values.map(value_text)
    cats = sorted(text.unique())
    return dict(label=label, values=text.map(cats.index), tickvals=list(range(len(cats))), ticktext=cats)


def parallel_coordinates(trials: pd.DataFrame, factors: list[str], metric: str,
                         params: Optional[dict] = None) -> Optional[go.Figure]:
    """Every trial with a validation value, one axis per varied factor (log-searched ones on a log
    axis: the sweep record's ``params``), coloured by ``metric`` in %."""
    rows = trials[trials[metric].notna()]
    if rows.empty or not factors:
        return None
    names = short_names(factors)
    dims = []
    for f in factors:
        values = rows[f].map(plain)
        dims.append(_axis(names[f], values, _is_number(values) and is_log(f, values.astype(float), params)))
    if (rows["status"] == "early_stopped").any():
        dims.append(dict(label="epochs run", values=rows["epochs_run"]))
    shown = unit_scale(metric) * rows[metric]
    dims.append(dict(label=column_name(metric), values=shown))
    fig = go.Figure(go.Parcoords(line=dict(color=shown, colorscale="Viridis", showscale=True), dimensions=dims))
    fig.update_layout(title=f"The sweep: {len(rows)} trials, one line each (early-stopped included)",
                      **{**LAYOUT, "margin": dict(l=60, r=60, t=120, b=40)})
    return fig


def ablation_bars(cmp: Comparison, top_k: int) -> go.Figure:
    """Mean of the selection metric and test accuracy per group, with 95 % CI error bars."""
    groups = list(cmp.groups["group"].head(top_k))[::-1]
    labels = [shown_label(cmp, g) for g in groups]
    fig = go.Figure()
    for metric in dict.fromkeys((cmp.spec.metric, "test_acc")):
        s = [cmp.stat(g, metric) for g in groups]
        scale = unit_scale(metric)
        mean = [scale * r["mean"] for r in s]
        half = [0.0 if math.isnan(r["ci_high"]) else scale * (r["ci_high"] - r["mean"]) for r in s]
        fig.add_bar(y=labels, x=mean, orientation="h", name=PRETTY.get(metric, metric),
                    error_x=dict(type="data", array=half, visible=True),
                    text=[f"n={r['n']}" for r in s], textposition="inside")
    fig.update_layout(title=f"Ablation: mean ± {100 * cmp.spec.confidence:g}% CI over seeds (%, n on each bar)",
                      barmode="group", height=max(350, 60 * len(labels)), xaxis_title="%", **LAYOUT)
    return fig


def learning_curves(cmp: Comparison, trials: pd.DataFrame, epochs: pd.DataFrame, top_k: int) -> go.Figure:
    """Validation metric and training loss per epoch, mean over each group's seeds."""
    metric = cmp.spec.metric
    fig = make_subplots(rows=1, cols=2, subplot_titles=(column_name(metric), "train loss"))
    for i, (label, members) in enumerate(_group_members(cmp, trials, top_k)):
        curves = epochs[epochs["trial_id"].isin(members["trial_id"])].groupby("epoch")
        mean, n = curves[[metric, "train_loss"]].mean(), curves.size()
        color = f"hsl({(i * 137) % 360},60%,45%)"
        hover = [f"n={k}" for k in n]
        for col, key in ((1, metric), (2, "train_loss")):
            fig.add_scatter(x=mean.index, y=unit_scale(key) * mean[key], mode="lines+markers", name=label,
                            legendgroup=label,
                            showlegend=col == 1, line=dict(color=color), text=hover, row=1, col=col,
                            hovertemplate="epoch %{x}: %{y:.3f} (%{text})")
    fig.update_layout(title=f"Learning curves: mean over each group's seeds (top {top_k} groups; n in hover)",
                      height=480, **LAYOUT)
    fig.update_xaxes(title="epoch")
    return fig


def class_labels(trials: pd.DataFrame) -> list[str]:
    found = trials["classes"].dropna()
    return class_abbreviations(plain(found.iloc[0])) if len(found) else []


def per_class_vs_paper(trial: pd.Series, classes: list[str], record: dict) -> Optional[go.Figure]:
    """The selected model's per-class *test* accuracy beside MFER's published diagonals (Fig. 7),
    for sweeps whose study names a dataset the paper reports; None otherwise."""
    dataset = record.get("dataset") or ""
    published = per_class(dataset)
    ours = plain(trial.get("test_per_class_acc"))
    if published is None or not ours or not classes:
        return None
    paper, source = published
    ran_on = record["base_config"]["data"]["name"]
    note = "" if ran_on == dataset else f" — ours ran on {DATASET_NAMES.get(ran_on, ran_on)} data: not comparable"
    theirs = [paper.get(c) for c in classes]
    ours, theirs = [100 * v for v in ours], [None if v is None else 100 * v for v in theirs]
    fig = go.Figure([
        go.Bar(name=f"ours: selected model (1 seed: {int(trial['seed'])})", x=classes, y=ours,
               text=[f"{v:.1f}" for v in ours], textposition="outside"),
        go.Bar(name=f"MFER published ({source})", x=classes, y=theirs,
               text=["" if v is None else f"{v:.1f}" for v in theirs], textposition="outside"),
    ])
    fig.update_layout(barmode="group", yaxis=dict(title="test accuracy (%)", range=[0, 110]), height=450,
                      title=f"Per-class test accuracy on {DATASET_NAMES.get(dataset, dataset)} vs MFER's "
                            f"published confusion-matrix diagonals{note}", **LAYOUT)
    return fig


def per_class_heatmap(cmp: Comparison, trials: pd.DataFrame, top_k: int) -> Optional[go.Figure]:
    """Validation per-class accuracy at the selected epoch, mean over seeds, group x class."""
    classes = class_labels(trials)
    labels, rows = [], []
    for label, members in _group_members(cmp, trials, top_k):
        per_class = [plain(v) for v in members["val_per_class_acc"].dropna()]
        if per_class:
            arr = np.array([[np.nan if x is None else x for x in row] for row in per_class], dtype=float)
            labels.append(label)
            rows.append(100 * (np.nanmean(arr, axis=0) if not np.isnan(arr).all() else arr[0]))
    if not rows or not classes:
        return None
    z = np.vstack(rows)[::-1]
    fig = go.Figure(go.Heatmap(z=z, x=classes, y=labels[::-1], zmin=0, zmax=100, colorscale="Blues",
                               text=np.round(z, 1), texttemplate="%{text}", colorbar=dict(title="%")))
    missing = int(((trials["status"] == "completed") & trials["val_per_class_acc"].isna()).sum())
    note = (f"<br>{missing} completed trials have none recorded (written before per-class results were "
            "reported with the metrics; their state.pt is never opened)") if missing else ""
    title = f"Per-class validation accuracy (%) at the selected epoch, mean over each group's seeds{note}"
    fig.update_layout(title=title, height=max(350, 45 * len(labels) + 150), **{**LAYOUT, "margin": TWO_LINE_MARGIN})
    return fig


def pareto_figure(trials: pd.DataFrame, metric: str, mode: str, objectives: dict[str, str]) -> Optional[go.Figure]:
    """Multi-objective searches: ``metric`` against each extra objective, Pareto-optimal trials joined."""
    objectives = {k: v for k, v in objectives.items() if k in trials.columns}
    if not objectives:
        return None
    fig = make_subplots(rows=1, cols=len(objectives), subplot_titles=list(objectives))
    for i, (obj, obj_mode) in enumerate(objectives.items(), start=1):
        rows = trials[(trials["status"] == "completed") & trials[metric].notna() & trials[obj].notna()]
        front = pareto_front(rows[[obj, metric]].to_numpy(float), [obj_mode == "max", mode == "max"])
        fig.add_scatter(x=rows[obj], y=unit_scale(metric) * rows[metric], mode="markers",
                        name=f"trials (n={len(rows)})", text=rows["trial_id"], marker=dict(color="lightgray"),
                        showlegend=i == 1, row=1, col=i)
        best = rows[front].sort_values(obj)
        fig.add_scatter(x=best[obj], y=unit_scale(metric) * best[metric], mode="lines+markers",
                        name=f"Pareto front (n={len(best)})",
                        text=best["trial_id"], marker=dict(color="crimson"), showlegend=i == 1, row=1, col=i)
        fig.update_xaxes(title=f"{obj} ({obj_mode})", row=1, col=i)
    fig.update_yaxes(title=f"{column_name(metric)} ({mode})")
    fig.update_layout(title="Pareto front of the multi-objective search (completed trials, n=1 each point)", **LAYOUT)
    return fig


def compute_figure(cmp: Comparison, trials: pd.DataFrame, top_k: int) -> go.Figure:
    """Reserved device-seconds per group; configs no completed trial shares are one bar together."""
    spent = compute_spent(trials, cmp.spec.factors)
    labels = {g: shown_label(cmp, g) for g in cmp.groups["group"]}
    per_group = spent.per_group.assign(group=spent.per_group["group"].map(lambda g: labels.get(g, "not compared")))
    per_group = per_group.groupby("group", sort=False)[["trials", "seconds", "early_stopped"]].sum().reset_index()
    shown = per_group.sort_values("seconds", ascending=False).head(top_k)[::-1]
    hours = spent.spent_s / 3600
    text = [f"n={t} trials, {e} stopped early" for t, e in zip(shown["trials"], shown["early_stopped"])]
    fig = go.Figure(go.Bar(y=shown["group"], x=shown["seconds"], orientation="h", text=text, textposition="auto"))
    fig.update_layout(title=f"Compute: {spent.spent_s:,.0f} reserved {spent.unit}-seconds ({hours:.2f} "
                            f"{spent.unit}-hours) over n={len(trials)} trials<br>early stopping saved "
                            f"≈{spent.saved_s:,.0f} s ({100 * spent.saved_share:.1f}% of the full budget)",
                      xaxis_title=f"{spent.unit}-seconds",
                      height=max(350, 45 * len(shown) + 150), **{**LAYOUT, "margin": TWO_LINE_MARGIN})
    return fig
