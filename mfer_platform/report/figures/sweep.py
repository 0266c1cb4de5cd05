"""The paper's figures for a whole sweep: a t-SNE panel across groups, confusion matrices per group,
and Grad-CAM grids of the best model — for ``mfer-figures`` and the report's figure sections.

A group is one configuration (the sweep's varied factors, as ``stats.compare`` groups trials);
each is represented by its best-validation seed, and "the best model" is the one ``mfer-export``
exports (``stats.best_trial``). Only the validation split is read.
"""
from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import plotly.graph_objects as go
from tqdm import tqdm

from mfer.data.arrays import ArraySplit
from mfer.data.classes import ABBREVIATIONS
from mfer.data.decode import list_images
from mfer_platform.report.figures.confusion import confusion_figure
from mfer_platform.report.figures.embedding import Panel, embedding_figure, panel
from mfer_platform.report.figures.features import TrialModel, evaluation_sample, extract, from_trial
from mfer_platform.report.figures.gradcam import cam_layers, class_grids, gradcam_files
from mfer_platform.report.pages import image_section, plotly_sections, write_page
from mfer_platform.report.trials import legend_table, shown_label

from mfer_platform.results.stats import Comparison, best_trial
from mfer_platform.results.summary import whole_sweep

GRADCAM_DIR = "gradcam"
FIGURES_PAGE = "figures.html"
PREVIEW_SIDE = 320  # px: photos are embedded in figures.html at most this large (the PNG files keep full size)

@dataclass
class FigureOptions:
    seed: int = 0  # t-SNE seed, validation subset and Grad-CAM examples
    max_points: int = 1000  # validation images embedded per group (stratified subset; 0 = all)
    perplexity: float = 30.0  # t-SNE perplexity (capped below n/3 for small splits)
    per_class: int = 4  # Grad-CAM examples per class
    top_k: int = 12  # groups drawn, best first
    batch_size: int = 64
    device: str = "auto"  # CUDA when present

@dataclass
class SweepFigures:
    embedding: go.Figure
    gradcam: dict[str, Path]  # caption -> grid PNG
    best: TrialModel  # the model the Grad-CAM grids explain

    def gradcam_section(self) -> str:
        intro = (f"Best model ({html.escape(self.best.source)}): validation faces, a row per true class; Grad-CAM of the "
                 f"predicted class at each layer; a red frame marks a misclassified face. PNGs in {GRADCAM_DIR}/.")
        return image_section("Grad-CAM", intro, self.gradcam)

def class_abbreviations(classes: Sequence[str]) -> list[str]:
    """``anger`` -> ``AN``: the axis labels of MFER's confusion matrices."""
    return [ABBREVIATIONS.get(c, c) for c in classes]

def make_figures(storage_path: str, cmp: Comparison, trials: pd.DataFrame, out_dir: str | Path,
                 opts: FigureOptions) -> SweepFigures:
    """Embed every shown group's validation features; write the best model's Grad-CAM grids to
    ``out_dir/gradcam/``. Each group's model is released before the next is loaded (the best one is kept)."""
    groups = list(cmp.groups.head(opts.top_k).itertuples())
    splits: dict[str, ArraySplit] = {}  # data config -> evaluation sample: groups usually share one dataset
    panels: list[Panel] = []
    best = None
    for g in tqdm(groups, desc="features + t-SNE", unit="group"):
        tm = from_trial(storage_path, best_trial(cmp, trials, g.group), opts.device)
        key = json.dumps(asdict(tm.cfg.data), sort_keys=True)
        if key not in splits:
            splits[key] = evaluation_sample(tm.cfg, opts.max_points, opts.seed)
        pred = extract(tm, splits[key], opts.batch_size)
        panels.append(panel(shown_label(cmp, g.group), pred.features.numpy(), pred.labels.numpy(),
                            opts.seed, opts.perplexity))
        if g.is_best:
            best, best_split = tm, splits[key]
    layers = cam_layers(best.model)
    grids = class_grids(best, best_split, opts.per_class, opts.seed, Path(out_dir) / GRADCAM_DIR, opts.batch_size)
    captions = {f"{layers[slug].title} ({path.name})": path for slug, path in grids.items()}
    return SweepFigures(embedding_figure(panels, best.classes, opts.seed), captions, best)

def write_sweep_figures(storage_path: str, name: str, output_dir: str | Path, opts: FigureOptions,
                        images: Optional[Sequence[str]] = None) -> dict[str, Path]:
    """``mfer-figures``: read the sweep, then write ``figures.html`` (self-contained) and the Grad-CAM
    PNGs; ``images``: files or folders of (aligned) faces to explain with the best model as well."""
    res = whole_sweep(storage_path, name)
    cmp, trials, out = res.cmp, res.trials, Path(output_dir)
    figs = make_figures(storage_path, cmp, trials, out, opts)
    sections = plotly_sections({
        "Feature embedding": figs.embedding,
        "Confusion matrices": confusion_figure(cmp, trials, class_abbreviations(figs.best.classes), opts.top_k),
    })
    sections.append(figs.gradcam_section())
    paths = {"html": out / FIGURES_PAGE, "gradcam": out / GRADCAM_DIR}
    if images:
        files = gradcam_files(figs.best, list_images(images), out / GRADCAM_DIR / "images", opts.batch_size)
        layers = cam_layers(figs.best.model)
        shown = {f"{Path(src).name}: {layers[slug].title} (predicted {files.predicted[src]})": png
                 for src, pngs in files.written.items() for slug, png in pngs.items()}
        skipped = "".join(f"<br>skipped {html.escape(src)}: {html.escape(why)}" for src, why in files.skipped.items())
        intro = f"Best model ({html.escape(figs.best.source)}); full-size PNGs in {GRADCAM_DIR}/images/.{skipped}"
        sections.append(image_section("Grad-CAM on your images", intro, shown, max_side=PREVIEW_SIDE))
        paths["images"] = out / GRADCAM_DIR / "images"
    legend = f"<section><h2>Groups</h2>{legend_table(cmp)}</section>"
    body = f"<h1>Figures: {html.escape(name)}</h1>{legend}" + "".join(sections)
    write_page(paths["html"], f"{name} — MFER figures", body)
    return paths
