"""The report's two reading tables: the legend that maps each group's short label (G1…Gn, or its
name where every name is short) to its full config, and the per-trial table, where every trial the
sweep started stands — early-stopped, failed and running ones included, which the comparison
(completed trials only) counts but never shows.
"""
from __future__ import annotations

import html
from typing import Sequence

import pandas as pd

from mfer_platform.report.tables import column_name
from mfer_platform.results.cells import fmt
from mfer_platform.results.stats import Comparison, group_index, plain, short_names, value_text

BEST = "★"


def shown_label(cmp: Comparison, group: str) -> str:
    """A group's label in figures and tables: ``★ G1`` for the best group, ``G3`` for the others."""
    row = cmp.groups.loc[cmp.groups["group"] == group].iloc[0]
    return f"{BEST} {row['label']}" if row["is_best"] else str(row["label"])


def config_text(values: dict, factors: Sequence[str]) -> str:
    """``lr=0.0003281 feature=dsf msc_fractions=[0.5,0.75,1.0]``: a config in short form, the spelling
    of the group labels (``stats.value_text``)."""
    names = short_names(factors)
    return " ".join(f"{names[f]}={value_text(plain(values.get(f)))}" for f in factors)


def _table(header: Sequence[str], rows: list[Sequence[str]], css: str) -> str:
    """An HTML table of plain-text cells, every one escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def legend_table(cmp: Comparison) -> str:
    """Label, n and every varied factor's value of each compared group, best first."""
    factors = cmp.spec.factors
    names = short_names(factors)
    rows = [[shown_label(cmp, g["group"]), str(g["n"]), *[value_text(plain(g[f])) for f in factors]]
            for g in cmp.groups.to_dict("records")]
    return _table(["group", "n", *[names[f] for f in factors]], rows, "legend")


def trial_order(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials in the order they started (the store's order where no start time is known), numbered 1…N."""
    key = trials["started_at"] if "started_at" in trials.columns else pd.Series(pd.NaT, index=trials.index)
    ordered = trials.assign(_start=key).sort_values(["_start", "experiment", "trial_id"], na_position="last",
                                                   kind="stable").drop(columns="_start")
    return ordered.assign(number=range(1, len(ordered) + 1)).reset_index(drop=True)


def _group_of(cmp: Comparison, trials: pd.DataFrame) -> pd.Series:
    """Each trial's group label, or '–' for a trial whose config no completed trial shares."""
    keys, labels = group_index(trials, cmp.spec.factors)
    shown = {g: shown_label(cmp, g) for g in cmp.groups["group"]}
    return keys.map(labels).map(lambda g: shown.get(g, "–"))


def trial_table(cmp: Comparison, trials: pd.DataFrame) -> str:
    """One row per trial, in start order: number, state, epochs run of planned, the selection metric at
    its selected epoch (%), its group and its config in short form; a failed trial's reason."""
    metric = cmp.spec.metric
    ordered = trial_order(trials)
    groups = _group_of(cmp, ordered)
    rows = []
    for i, t in enumerate(ordered.to_dict("records")):
        value, started, error = (plain(t.get(k)) for k in (metric, "started_at", "error"))
        rows.append([str(t["number"]), str(t["trial_id"]), "" if pd.isna(started) else f"{started:%Y-%m-%d %H:%M:%S}",
                     str(t["status"]), f"{t['epochs_run']}/{t['epochs_planned']}",
                     "–" if value is None else fmt(metric, value), groups.iloc[i], config_text(t, cmp.spec.factors),
                     error if isinstance(error, str) else ""])
    header = ["#", "trial", "started (UTC)", "state", "epochs", column_name(metric), "group", "config", "error"]
    return _table(header, rows, "trials")


def trials_section(cmp: Comparison, trials: pd.DataFrame) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().items())
    note = (f"Every trial the sweep started (n={len(trials)}: {counts}), in start order. The metric is "
            f"{cmp.spec.metric} at the trial's selected epoch (an early-stopped trial's: of the epochs it ran); "
            "group: the compared group of its config (– where no completed trial shares it).")
    table = f'<div class="scroll">{trial_table(cmp, trials)}</div>'
    return f'<section><h2>Trials</h2><p class="caption">{html.escape(note)}</p>{table}</section>'
