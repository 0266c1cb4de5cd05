"""The sweep as a study, trial by trial (what optuna-dashboard shows of a search, for every sweep):
the optimisation history, every trial's metric per epoch — early-stopped ones included, which the
comparison leaves out — and the parameters' importance. Values in % (ratios as themselves)."""
from __future__ import annotations

import html
from typing import Optional, Sequence

import pandas as pd
import plotly.graph_objects as go

from mfer_platform.report.importance import Importance
from mfer_platform.report.pages import LAYOUT
from mfer_platform.report.tables import column_name
from mfer_platform.report.trials import config_text, trial_order
from mfer_platform.results.cells import unit_scale
from mfer_platform.results.stats import short_names

STATE_STYLE = {"completed": ("#1f77b4", "circle"), "early_stopped": ("#ff7f0e", "circle-open"),
               "error": ("#d62728", "x"), "running": ("#2ca02c", "diamond-open")}
_OTHER = ("#7f7f7f", "square-open")
_LEGEND_BELOW = dict(l=60, r=30, t=60, b=110)  # a legend of long names under the plot, not over it


def _hover(t: dict, factors: Sequence[str]) -> str:
    return "<br>".join(html.escape(part) for part in (f"#{t['number']} trial {t['trial_id']} ({t['status']})",
                                                      config_text(t, factors)))


def history_figure(trials: pd.DataFrame, factors: Sequence[str], metric: str, mode: str) -> Optional[go.Figure]:
    """Each trial's metric by start order, and the best completed value so far as a step line."""
    ordered = trial_order(trials)
    scale = unit_scale(metric)
    if ordered[metric].notna().sum() == 0:
        return None
    fig = go.Figure()
    for state, rows in ordered[ordered[metric].notna()].groupby("status", sort=False):
        color, symbol = STATE_STYLE.get(state, _OTHER)
        fig.add_scatter(x=rows["number"], y=scale * rows[metric], mode="markers", name=f"{state} (n={len(rows)})",
                        marker=dict(color=color, symbol=symbol, size=9),
                        text=[_hover(t, factors) for t in rows.to_dict("records")], hovertemplate="%{text}: %{y:.2f}")
    done = ordered[metric].where(ordered["status"] == "completed")
    best = done.cummax() if mode == "max" else done.cummin()
    fig.add_scatter(x=ordered["number"], y=scale * best, mode="lines", line=dict(shape="hv", color="#222"),
                    name="best completed so far", connectgaps=True)
    fig.update_layout(title=f"Optimisation history: {len(ordered)} trials in start order", height=420,
                      xaxis_title="trial number (start order)", yaxis_title=column_name(metric), **LAYOUT)
    return fig


def intermediate_figure(trials: pd.DataFrame, epochs: pd.DataFrame, factors: Sequence[str],
                        metric: str) -> Optional[go.Figure]:
    """Every trial's metric at every epoch it ran, one line per trial, coloured by its final state."""
    if epochs.empty or epochs[metric].notna().sum() == 0:
        return None
    scale, fig, seen = unit_scale(metric), go.Figure(), set()
    by_trial = {k: g for k, g in epochs.groupby(["experiment", "trial_id"])}
    for t in trial_order(trials).to_dict("records"):
        curve = by_trial.get((t["experiment"], t["trial_id"]))
        if curve is None or curve[metric].notna().sum() == 0:
            continue
        color, symbol = STATE_STYLE.get(t["status"], _OTHER)
        fig.add_scatter(x=curve["epoch"], y=scale * curve[metric], mode="lines+markers", name=str(t["status"]),
                        legendgroup=str(t["status"]), showlegend=t["status"] not in seen,
                        line=dict(color=color, width=1.5), marker=dict(symbol=symbol, size=6),
                        text=[_hover(t, factors)] * len(curve), hovertemplate="%{text}<br>epoch %{x}: %{y:.2f}")
        seen.add(t["status"])
    fig.update_layout(title=f"Intermediate values: {column_name(metric)} per epoch, every trial (n={len(by_trial)})",
                      height=450, xaxis=dict(title="epoch", dtick=1), yaxis_title=column_name(metric), **LAYOUT)
    return fig


def importance_figure(results: list[Importance], factors: Sequence[str]) -> Optional[go.Figure]:
    """One bar group per computed importance, share of variance in %."""
    shown = [r for r in results if r.shares]
    if not shown:
        return None
    names = short_names(factors)
    order = list(dict.fromkeys(f for r in shown for f in r.shares))[::-1]
    fig = go.Figure()
    for r in shown:
        x = [100 * r.shares[f] if f in r.shares else None for f in order]  # None: constant among these trials
        fig.add_bar(y=[names[f] for f in order], x=x, orientation="h", name=f"{r.method}, {r.what} (n={r.n})",
                    texttemplate="%{x:.0f}%", textposition="outside")
    fig.update_layout(title="Parameter importance: share of the metric's variance (%)", barmode="group",
                      height=160 + 24 * len(order) * len(shown), xaxis=dict(title="%", range=[0, 110]),
                      legend=dict(orientation="h", yanchor="top", y=-0.3), **{**LAYOUT, "margin": _LEGEND_BELOW})
    return fig


def importance_caption(results: list[Importance]) -> str:
    """Trusted HTML: what each importance rests on, or why it was left out."""
    lines = []
    for r in results:
        status = f"{r.method} on n={r.n} trials" if r.shares else f"left out ({r.note})"
        extra = f"; {r.note}" if r.shares and r.note else ""
        lines.append(f"{html.escape(r.what)}: {html.escape(status + extra)}.")
    return ("fANOVA: a random forest fitted to the trials, its variance split into each factor's main effect "
            "(Hutter et al., ICML 2014; Optuna's evaluator); η²: the share of the trials' variance the factor's "
            "group means explain. " + " ".join(lines))
