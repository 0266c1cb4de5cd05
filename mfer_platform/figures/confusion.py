"""Row-normalised validation confusion matrices, one per group (MFER Fig. 7 shows them per dataset).

No model is run: the store already holds each trial's confusion matrix at its selected epoch
(read from ``state.pt`` at ingest). Each group shows its best-validation seed, the trial a
reader would pick from that group.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mfer_platform.pages import LAYOUT
from mfer_platform.stats import Comparison, best_trial, plain


def confusion_figure(cmp: Comparison, trials: pd.DataFrame, classes: list[str], top_k: int) -> Optional[go.Figure]:
    """The best ``top_k`` groups' validation confusion matrices (rows: true class, each row sums to 1)."""
    shown = []
    for g in cmp.groups.head(top_k).itertuples():
        trial = best_trial(cmp, trials, g.group)
        cm = plain(trial["val_confusion"])
        if cm:
            shown.append((g, trial, cm))
    if not shown or not classes:
        return None
    cols = min(len(shown), 3)
    rows = math.ceil(len(shown) / cols)
    titles = []
    for g, trial, cm in shown:
        titles.append(f"{'★ ' if g.is_best else ''}{g.group}<br>trial {trial['trial_id']}, seed {int(trial['seed'])}, "
                      f"epoch {int(trial['selected_epoch'])}, n={int(np.sum(cm))}")
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=0.2 / rows)
    for i, (_, _, cm) in enumerate(shown):
        counts = np.array(cm, dtype=float)
        norm = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        text = [[f"{norm[r, c]:.2f}<br>({int(counts[r, c])})" for c in range(len(classes))] for r in range(len(classes))]
        fig.add_heatmap(z=norm, x=classes, y=classes, zmin=0, zmax=1, colorscale="Blues", text=text,
                        texttemplate="%{text}", showscale=i == 0, row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(title="predicted")
    fig.update_yaxes(title="true", autorange="reversed")
    fig.update_layout(title="Validation confusion matrices per group (its best seed, selected epoch), "
                            "row-normalised; counts in brackets",
                      height=480 * rows + 80, **{**LAYOUT, "margin": dict(l=60, r=30, t=110, b=60)})
    return fig
