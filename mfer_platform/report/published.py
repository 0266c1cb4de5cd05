"""Published figures beside our results: the ``paper`` column of a study's comparison table.

Researchers reproducing MFER want each row's published number next to what they got, and want to
see at a glance which rows have none: MFER's own ablation tables were never published, so most
rows say so instead of borrowing a number. The figures live in ``published.yaml`` (each with
its source and kind: published | sibling | absent); this module only looks them up. A figure
published with a ``setup`` (backbone, pretraining, split) is marked not comparable where that
setup differs from the run's: a method's number from its own paper measures its paper's recipe
too, which is why the methods study (``search_spaces/peers/``) exists.
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
NOT_PUBLISHED = "absent (not published for this dataset)"  # a peers study's row without a figure
DSF_STANDIN = "DSF stand-in (not the unpublished original)"
STUDY_PREFIX = "paper/"
PEERS_PREFIX = "peers/"  # studies keyed by their path in published.yaml
# How every run of ours uses the split: model selection on a validation split carved from train,
# the test split evaluated once. No published setup of a peer does so.
OUR_SPLIT = "validation carved from train, test once"
DATASET_NAMES = {"rafdb": "RAF-DB", "affectnet7": "AffectNet-7", "affectnet8": "AffectNet-8", "ferplus": "FERPlus",
                 "synthetic": "synthetic"}


@dataclass(frozen=True)
class Figure:
    """One published accuracy (%), or an absent one."""

    method: str
    kind: str  # published | sibling | absent
    source: str
    value: Optional[float]
    setup: Optional[dict] = None  # backbone, pretraining, split as published (published.yaml)
    absent: str = ABSENT  # what the cell says without a value

    def cell(self) -> str:
        if self.value is None:  # MFER's ablations, a sibling figure the sister paper lacks, a peer's dataset
            return self.absent
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


def figure(figure_id: str, dataset: str, absent: str = ABSENT) -> Figure:
    """A figure of ``published.yaml`` on ``dataset`` (a ``data=`` name), its source spelled out."""
    entry = table()["figures"][figure_id]
    return Figure(entry["method"], entry["kind"], table()["sources"][entry["source"]], entry["acc"].get(dataset),
                  entry.get("setup"), absent)


def per_class(dataset: str) -> Optional[tuple[dict[str, float], str]]:
    """MFER's published per-class test accuracy on ``dataset`` ({class abbreviation: fraction}, the
    diagonals of its released confusion matrices) and their source; None where none is published."""
    entry = table()["per_class"]
    return (entry[dataset], table()["sources"][entry["source"]]) if dataset in entry else None


def study_name(search_space: str) -> Optional[str]:
    """``paper/loss_comparison`` -> ``loss_comparison``, ``peers/methods`` as it is; None for a
    space that is neither a paper study nor a peers study."""
    if search_space.startswith(PEERS_PREFIX):
        return search_space
    return search_space.removeprefix(STUDY_PREFIX) if search_space.startswith(STUDY_PREFIX) else None


def row_figure(study: str, row: str, dataset: str) -> Figure:
    figure_id = table()["studies"].get(study, {}).get(row)
    if study.startswith(PEERS_PREFIX):  # a method, or the plain baseline, with no number on this dataset
        return figure(figure_id, dataset, NOT_PUBLISHED) if figure_id else Figure(row, "absent", "", None, None,
                                                                                   NOT_PUBLISHED)
    return figure(figure_id, dataset) if figure_id else Figure("MFER", "absent", "mfer_spec.md §3.3", None)


def row_setting(record: dict, row: Optional[str], section: str, key: str) -> Any:
    """A config value of one row of a sweep (the record holds the base and the rows): the row's
    override, else the sweep's base config."""
    overrides = (record.get("rows") or {}).get(row, {}) if row is not None else {}
    return overrides.get(f"{section}.{key}", record["base_config"][section].get(key))


def uses_dsf_standin(record: dict, row: Optional[str]) -> bool:
    """Whether the row trains with our DSF stand-in."""
    return row_setting(record, row, "loss", "feature") == "dsf"


def differences(fig: Figure, record: dict, row: Optional[str]) -> list[str]:
    """What of a figure's published setup differs from the row's run: backbone, pretraining, split."""
    if not fig.setup:
        return []
    ours = {"backbone": row_setting(record, row, "model", "backbone"),
            "pretraining": row_setting(record, row, "model", "pretrained") or "random init", "split": OUR_SPLIT}
    return [k for k in ("backbone", "pretraining", "split") if k in fig.setup and fig.setup[k] != ours[k]]


def setup_note(fig: Figure) -> str:
    """``resnet18, MS-Celeb-1M …, official train/test`` for the column's note."""
    return ", ".join(str(fig.setup[k]) for k in ("backbone", "pretraining", "split") if k in fig.setup)


def paper_column(cmp: Comparison, record: dict) -> Optional[PaperColumn]:
    """The ``paper`` column of a paper study's comparison (None for other sweeps): per group the
    published figure for its row on the study's dataset, or ABSENT; DSF rows are labelled."""
    study = study_name(str(record.get("search_space", "")))
    if study is None or study not in table()["studies"]:
        return None
    dataset = record.get("dataset", "synthetic")
    cells, sources, unlike = {}, {}, {}
    for g in cmp.groups.to_dict("records"):
        row = g.get(ROW_KEY)
        fig = row_figure(study, row, dataset)
        differ = differences(fig, record, row) if fig.value is not None else []
        cells[g["group"]] = (fig.cell() + (f"; not comparable: {', '.join(differ)}" if differ else "")
                             + (f"; ours: {DSF_STANDIN}" if uses_dsf_standin(record, row) else ""))
        if fig.value is not None:
            sources[fig.method] = fig.source + (f" (setup: {setup_note(fig)})" if fig.setup else "")
        if differ:
            unlike[fig.method] = ", ".join(differ)
    pretty = DATASET_NAMES.get(dataset, dataset)
    ours = record["base_config"]["data"]["name"]
    note = (f"paper = published accuracy on {pretty} (%), test split; sources: "
            + ("; ".join(f"{m}: {s}" for m, s in sources.items()) or "none") + ".")
    if unlike:
        note += (" Not comparable, published with another setup (what differs): "
                 + "; ".join(f"{m}: {d}" for m, d in unlike.items()) + ".")
    if ours != dataset:
        note += f" Ours ran on {DATASET_NAMES.get(ours, ours)} data (a scaled-down run): not comparable."
    return PaperColumn(f"paper {pretty} (%)", cells, note)
