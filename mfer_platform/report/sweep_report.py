"""The sweep report: one self-contained HTML file of plotly figures plus the comparison table.

Pictures a researcher would rather look at than read: the sweep in parallel coordinates, the
ablation as bars with confidence intervals, learning curves per group, per-class accuracy
across groups, a confusion matrix per group, the Pareto front of a multi-objective search, and
where the compute went (``plots``); with figures on, also the paper's figures (``figures/``):
a t-SNE panel of the groups' features and the best model's Grad-CAM grids. plotly.js and the
PNGs are embedded, so the file opens offline, e-mailed or archived. Every figure states its n.
"""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from mfer.data.formats.base import DatasetError
from mfer_platform.report.figures.confusion import confusion_figure, selected_test_confusion_figure
from mfer_platform.report.figures.sweep import GRADCAM_DIR, FigureOptions, SweepFigures, make_figures
from mfer_platform.report.importance import sweep_importances
from mfer_platform.report.pages import plotly_sections, write_page
from mfer_platform.report.plots import (ablation_bars, class_labels, compute_figure, learning_curves,
                                        parallel_coordinates, pareto_figure, per_class_heatmap, per_class_vs_paper)
from mfer_platform.report.published import PaperColumn, paper_column
from mfer_platform.report.study_plots import history_figure, importance_caption, importance_figure, intermediate_figure
from mfer_platform.report.tables import cross_html, to_html, write_tables
from mfer_platform.report.trials import legend_table, shown_label, trials_section
from mfer_platform.results.stats import Comparison, CrossComparison, best_trial
from mfer_platform.results.summary import whole_sweep

log = logging.getLogger("mfer_platform")
TOP_K = 12  # groups drawn in the per-group figures (best first); the table lists them all


def _provenance(trials: pd.DataFrame) -> str:
    def distinct(col: str) -> str:
        return ", ".join(sorted({str(v) for v in trials[col].dropna()})) or "unknown"

    return (f"git commit: {html.escape(distinct('git_commit'))}<br>dataset fingerprint: "
            f"{html.escape(distinct('dataset_fingerprint'))}<br>{trials['config_hash'].nunique()} distinct config hashes")


@dataclass
class ReportInputs:
    experiment: str
    record: dict
    trials: pd.DataFrame
    epochs: pd.DataFrame
    cmp: Comparison
    paper: Optional[PaperColumn] = None  # published figures beside ours (paper studies only)
    figures: Optional[SweepFigures] = None  # t-SNE panel and Grad-CAM grids (they need the checkpoints)
    cross: Optional[CrossComparison] = None  # rows x the other varied factors (method x backbone)


def _study_figures(inp: ReportInputs) -> tuple[dict, dict]:
    """The sweep trial by trial ({title: figure}, {title: caption}): every trial on parallel axes, the
    optimisation history, every trial's metric per epoch, and the parameters' importance."""
    trials, spec, params = inp.trials, inp.cmp.spec, inp.record.get("params")
    importances = sweep_importances(trials, inp.epochs, spec.factors, spec.metric, params)
    figures = {
        "Sweep": parallel_coordinates(trials, spec.factors, spec.metric, params),
        "Optimisation history": history_figure(trials, spec.factors, spec.metric, spec.mode),
        "Intermediate values": intermediate_figure(trials, inp.epochs, spec.factors, spec.metric),
        "Parameter importance": importance_figure(importances, spec.factors),
    }
    return figures, {"Parameter importance": importance_caption(importances)}


def _cross_section(cross: Optional[CrossComparison]) -> str:
    """The rows x columns tables (each row vs its column's own baseline row), where the study has them."""
    if cross is None:
        return ""
    title = "Rows by the other varied factors (Δ vs each column's own baseline)"
    return f"<section><h2>{html.escape(title)}</h2>{cross_html(cross)}</section>"


def build_report(inp: ReportInputs, path: str | Path, top_k: int = TOP_K) -> Path:
    """Write the self-contained HTML report to ``path``."""
    trials, cmp, record = inp.trials, inp.cmp, inp.record
    best = best_trial(cmp, trials)
    study, captions = _study_figures(inp)
    sections = plotly_sections({
        **study,
        "Ablation": ablation_bars(cmp, top_k),
        "Learning curves": learning_curves(cmp, trials, inp.epochs, top_k),
        "Per-class accuracy": per_class_heatmap(cmp, trials, top_k),
        "Confusion matrices": confusion_figure(cmp, trials, class_labels(trials), top_k),
        "Test confusion matrix": selected_test_confusion_figure(cmp, trials, class_labels(trials)),
        "Per-class test accuracy vs paper": per_class_vs_paper(best, class_labels(trials), record),
        "Feature embedding": inp.figures.embedding if inp.figures else None,
        "Pareto front": pareto_figure(trials, cmp.spec.metric, cmp.spec.mode, record.get("objectives") or {}),
        "Compute": compute_figure(cmp, trials, top_k),
    }, captions)
    if inp.figures:
        sections.append(inp.figures.gradcam_section())
    statuses = ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().items())
    head = (f"<h1>Sweep report: {html.escape(inp.experiment)}</h1><p>search space {html.escape(str(record.get('search_space')))}"
            f" · searcher {html.escape(str((record.get('searcher') or {}).get('algorithm')))}"
            f" · scheduler {html.escape(str((record.get('scheduler') or {}).get('name')))}"
            f" · created {html.escape(str(record.get('created')))}<br>n={len(trials)} trials: {statuses}<br>"
            f"best (mean {cmp.spec.metric} over seeds, validation): <b>{html.escape(shown_label(cmp, cmp.best))}</b> = "
            f"{html.escape(cmp.best)}; best seed: trial "
            f"{html.escape(str(best['trial_id']))} (seed {best['seed']})</p><p>{_provenance(trials)}</p>")
    table = (f"<section><h2>Comparison table</h2>{to_html(cmp, inp.paper, short=True)}<h3>Groups</h3>"
             f"{legend_table(cmp)}</section>{_cross_section(inp.cross)}{trials_section(cmp, trials)}")
    return write_page(path, f"{inp.experiment} — MFER sweep report", head + table + "".join(sections))


def _figures_if_data(storage_path: str, cmp: Comparison, trials: pd.DataFrame, output_dir: str | Path,
                     options: FigureOptions) -> Optional[SweepFigures]:
    """The paper's figures, or None with a warning where the sweep's dataset is not on this machine:
    the tables and the other figures need only the store, and should not be lost for want of it."""
    try:
        return make_figures(storage_path, cmp, trials, output_dir, options)
    except DatasetError as e:
        log.warning(f"report written without the t-SNE and Grad-CAM figures: {e}; run mfer-figures where the "
                    "data is, or pass figures=false to skip them")
        return None


def make_report(storage_path: str, name: str, output_dir: str | Path, baseline: Optional[dict] = None,
                top_k: int = TOP_K, figures: Optional[FigureOptions] = None) -> dict[str, Path]:
    """Read sweep ``name`` (with its extensions), then write the comparison tables and ``report.html`` to
    ``output_dir``; with ``figures``, also the paper's figures (Grad-CAM PNGs in ``output_dir/gradcam/``)."""
    res = whole_sweep(storage_path, name, baseline)
    paper = paper_column(res.cmp, res.record)
    paths = write_tables(res.cmp, output_dir, paper, res.cross)
    figs = _figures_if_data(storage_path, res.cmp, res.trials, output_dir, figures) if figures else None
    inputs = ReportInputs(name, res.record, res.trials, res.epochs, res.cmp, paper, figs, res.cross)
    paths["html"] = build_report(inputs, Path(output_dir) / "report.html", top_k)
    if figs:
        paths["gradcam"] = Path(output_dir) / GRADCAM_DIR
    return paths
