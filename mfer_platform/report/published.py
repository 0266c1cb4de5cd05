"""Published figures beside our results: the ``paper`` column of a study's comparison table.

Researchers reproducing MFER want each row's published number next to what they got, and want to
see at a glance which rows have none: MFER's own ablation tables were never published, so most
rows say so instead of borrowing a number. The figures live in ``published.yaml`` (each with
its source and kind: published | sibling | absent); this module only looks them up.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Optional

import yaml

from mfer_platform.keys import ROW_KEY
from mfer_platform.results.stats import Comparison

ABSENT = "absent (MFER ablations unpublished)"
DSF_STANDIN = "DSF stand-in (not the unpublished original)"
STUDY_PREFIX = "paper/"
DATASET_NAMES = {"rafdb": "RAF-DB", "affectnet7": "AffectNet-7", "affectnet8": "AffectNet-8", "ferplus": "FERPlus",
                 "synthetic": "synthetic"}


@dataclass(frozen=True)
class Figure:
    """One published accuracy (%), or an absent one."""

    method: str
    kind: str  # published | sibling | absent
    source: str
    value: Optional[float]

    def cell(self) -> str:
        if self.value is None:  # MFER's ablations, or a sibling figure the sister paper lacks for the dataset
            return ABSENT
        return f"{self.value:.2f} ({self.kind}: {self.method})"


@dataclass(frozen=True)
class PaperColumn:
    """What a comparison table shows in its ``paper`` column: header, a cell per group, a note."""

    header: str
    cells: dict[str, str]
    note: str


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    return yaml.safe_load(resources.files("mfer_platform.report").joinpath("published.yaml").read_text())


def figure(figure_id: str, dataset: str) -> Figure:
    """A figure of ``published.yaml`` on ``dataset`` (a ``data=`` name), its source spelled out."""
    entry = table()["figures"][figure_id]
    return Figure(entry["method"], entry["kind"], table()["sources"][entry["source"]], entry["acc"].get(dataset))


def per_class(dataset: str) -> Optional[tuple[dict[str, float], str]]:
    """MFER's published per-class test accuracy on ``dataset`` ({class abbreviation: fraction}, the
    diagonals of its released confusion matrices) and their source; None where none is published."""
    entry = table()["per_class"]
    return (entry[dataset], table()["sources"][entry["source"]]) if dataset in entry else None


def study_name(search_space: str) -> Optional[str]:
    """``paper/loss_comparison`` -> ``loss_comparison``; None for a space that is not a paper study."""
    return search_space.removeprefix(STUDY_PREFIX) if search_space.startswith(STUDY_PREFIX) else None


def row_figure(study: str, row: str, dataset: str) -> Figure:
    figure_id = table()["studies"].get(study, {}).get(row)
    return figure(figure_id, dataset) if figure_id else Figure("MFER", "absent", "mfer_spec.md §3.3", None)


def uses_dsf_standin(record: dict, row: Optional[str]) -> bool:
    """Whether the row trains with our DSF stand-in (the sweep record holds the base and the rows)."""
    overrides = (record.get("rows") or {}).get(row, {}) if row is not None else {}
    return overrides.get("loss.feature", record["base_config"]["loss"]["feature"]) == "dsf"


def paper_column(cmp: Comparison, record: dict) -> Optional[PaperColumn]:
    """The ``paper`` column of a paper study's comparison (None for other sweeps): per group the
    published figure for its row on the study's dataset, or ABSENT; DSF rows are labelled."""
    study = study_name(str(record.get("search_space", "")))
    if study is None or study not in table()["studies"]:
        return None
    dataset = record.get("dataset", "synthetic")
    cells, sources = {}, {}
    for g in cmp.groups.to_dict("records"):
        row = g.get(ROW_KEY)
        fig = row_figure(study, row, dataset)
        cells[g["group"]] = fig.cell() + (f"; ours: {DSF_STANDIN}" if uses_dsf_standin(record, row) else "")
        if fig.value is not None:
            sources[fig.method] = fig.source
    pretty = DATASET_NAMES.get(dataset, dataset)
    ours = record["base_config"]["data"]["name"]
    note = (f"paper = published accuracy on {pretty} (%), test split; sources: "
            + ("; ".join(f"{m}: {s}" for m, s in sources.items()) or "none") + ".")
    if ours != dataset:
        note += f" Ours ran on {DATASET_NAMES.get(ours, ours)} data (a scaled-down run): not comparable."
    return PaperColumn(f"paper {pretty} (%)", cells, note)
