"""Row-normalised confusion matrices (MFER Fig. 7 shows them per dataset).

No model is run: the store already holds each trial's matrices — validation at its selected
epoch (from ``state.pt``) and test, evaluated once with those weights at the end (from
``meta.json``). Validation: one per group, each showing its best-validation seed, the trial a
reader would pick from that group. Test: the best group's chosen trial only, the model one would
export; it is shown, never used to choose.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mfer_platform.report.pages import LAYOUT
from mfer_platform.report.trials import shown_label
from mfer_platform.results.stats import Comparison, best_trial, plain


def _matrices_figure(shown: list[tuple[str, list]], classes: list[str], title: str) -> go.Figure:
    """One heatmap per (subplot title, count matrix), rows normalised to sum to 100 %."""
    cols = min(len(shown), 3)
    rows = math.ceil(len(shown) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t for t, _ in shown], horizontal_spacing=0.08,
                        vertical_spacing=0.25 / rows)
    for i, (_, cm) in enumerate(shown):
        counts = np.array(cm, dtype=float)
        norm = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
        text = [[f"{norm[r, c]:.0f}<br>({int(counts[r, c])})" for c in range(len(classes))] for r in range(len(classes))]
        fig.add_heatmap(z=norm, x=classes, y=classes, zmin=0, zmax=100, colorscale="Blues", text=text,
                        texttemplate="%{text}", showscale=i == 0, colorbar=dict(title="%"), row=i // cols + 1,
                        col=i % cols + 1)
    fig.update_xaxes(title="predicted")
    fig.update_yaxes(title="true", autorange="reversed")
    top = 125 + 25 * title.count("<br>")  # the title's lines above the three-line subplot titles
    # the title at the top of the margin (plotly centres it in the margin, onto the subplot titles)
    fig.update_layout(title=dict(text=title, yref="container", y=1, yanchor="top", pad=dict(t=20)),
                      height=480 * rows + 80, **{**LAYOUT, "margin": dict(l=60, r=30, t=top, b=60)})
    return fig


def _subtitle(label: str, trial: pd.Series, cm: list) -> str:
    """``★ G1`` over ``trial 0ec6f27a, seed 0`` over ``epoch 3, 119 images``: lines short enough for a
    third of a narrow page."""
    return (f"{label}<br>trial {trial['trial_id']}, seed {int(trial['seed'])}<br>"
            f"epoch {int(trial['selected_epoch'])}, {int(np.sum(cm))} images")


def confusion_figure(cmp: Comparison, trials: pd.DataFrame, classes: list[str], top_k: int) -> Optional[go.Figure]:
    """The best ``top_k`` groups' validation confusion matrices (rows: true class, each row sums to 1)."""
    shown = []
    for g in cmp.groups.head(top_k).itertuples():
        trial = best_trial(cmp, trials, g.group)
        cm = plain(trial["val_confusion"])
        if cm:
            shown.append((_subtitle(shown_label(cmp, g.group), trial, cm), cm))
    if not shown or not classes:
        return None
    return _matrices_figure(shown, classes, "Validation confusion matrices per group (its best seed, selected "
                                            "epoch), row-normalised (%); counts in brackets")


def selected_test_confusion_figure(cmp: Comparison, trials: pd.DataFrame, classes: list[str]) -> Optional[go.Figure]:
    """The test confusion matrix of the selected model (best group, best seed), or None where the
    trial has none (test not evaluated, or a checkpoint written before test matrices were kept)."""
    trial = best_trial(cmp, trials)
    cm = plain(trial.get("test_confusion"))
    if not cm or not classes:
        return None
    return _matrices_figure([(_subtitle(shown_label(cmp, cmp.best), trial, cm), cm)], classes,
                            "Test confusion matrix of the selected model (evaluated once, after selection on "
                            "validation),<br>row-normalised (%); counts in brackets")
