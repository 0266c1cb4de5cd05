"""2-D embeddings of pooled features and the per-group panel MFER's t-SNE figures show.

MFER's README (Figs. 3/4) argues for its feature loss with t-SNE pictures of the features
without a feature loss, with LGM and with DSF. We draw the same picture for every group of a
sweep, side by side, with one colour per class, and print the compactness number
(``mfer.metrics.feature_compactness``, computed on the full-dimensional features, not the 2-D
points) in each title, so the picture and the table can be checked against each other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.manifold import TSNE

from mfer.metrics import feature_compactness
from mfer_platform.report.pages import LAYOUT

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")


def tsne(features: np.ndarray, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """(N, 2) t-SNE coordinates (van der Maaten & Hinton 2008), identical for identical inputs and seed.

    PCA initialisation and a fixed ``random_state`` make scikit-learn's Barnes-Hut t-SNE
    deterministic; perplexity is capped below N/3, as t-SNE needs, for small evaluation splits."""
    x = np.asarray(features, dtype=np.float32)
    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)


@dataclass
class Panel:
    """One group's embedding: its points, their true labels, and the compactness of its features."""

    title: str
    coords: np.ndarray  # (N, 2)
    labels: np.ndarray  # (N,) indices into the class names
    compactness: float


def panel(title: str, features: np.ndarray, labels: np.ndarray, seed: int, perplexity: float) -> Panel:
    return Panel(title, tsne(features, seed, perplexity), np.asarray(labels), feature_compactness(features, labels))


def embedding_figure(panels: list[Panel], classes: list[str], seed: int) -> go.Figure:
    """One subplot per group, points coloured by class (same colour in every subplot, one legend)."""
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    titles = [f"{p.title}<br>compactness {p.compactness:.3f} (1 seed, {len(p.labels)} images)" for p in panels]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.04,
                        vertical_spacing=0.12 / rows)
    in_legend: set[str] = set()
    for i, p in enumerate(panels):
        for k, name in enumerate(classes):
            pts = p.coords[p.labels == k]
            if len(pts):
                fig.add_scatter(x=pts[:, 0], y=pts[:, 1], mode="markers", name=name, legendgroup=name,
                                showlegend=name not in in_legend, marker=dict(size=5, color=_PALETTE[k % len(_PALETTE)]),
                                row=i // cols + 1, col=i % cols + 1)
                in_legend.add(name)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    title = (f"Pooled features of the validation split, t-SNE (seed {seed}), one panel per group (its best seed)<br>"
             "compactness = mean distance to the class centroid / mean distance between centroids,<br>"
             "on the full features: lower = tighter classes")
    # lines short enough for a narrow window, at the top of the margin (not centred onto the panel titles)
    fig.update_layout(title=dict(text=title, yref="container", y=1, yanchor="top", pad=dict(t=20)),
                      height=420 * rows + 160, **{**LAYOUT, "margin": dict(l=30, r=30, t=170, b=30)})
    return fig
