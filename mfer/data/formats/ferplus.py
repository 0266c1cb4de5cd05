"""FERPlus: FER2013's pixels (``fer2013.csv``) with the FERPlus votes (``fer2013new.csv``).

``fer2013new.csv`` has the same rows in the same order as ``fer2013.csv``; its ten vote counts
per face become one label by FERPlus's *majority* rule (microsoft/FERPlus ``src/ferplus.py``,
``_process_data``): votes of 1 are dropped as outliers, then the top class must hold more than
half of the remaining votes, else the face has no label; a majority for ``unknown`` or ``NF``
(not a face) also drops it, as do rows whose ``Image name`` is empty (removed by FERPlus).
Every dropped row is listed in the report. Splits are the official usages: Training -> train,
PublicTest -> val (FERPlus's FER2013Valid), PrivateTest -> test. Pixels are read only when
the cache is built: 2,304 space-separated grey values (48x48) per row.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mfer.config import DataConfig
from mfer.data.classes import BASIC8, FERPLUS_NON_EMOTION, FERPLUS_VOTE_COLUMNS
from mfer.data.decode import UnreadableImage
from mfer.data.formats.base import DatasetError, Exclusion, Listing, Record, dataset_root, drop_repeats, first_file

LAYOUT = ("FERPlus: fer2013.csv (columns emotion, pixels, Usage; or Kaggle's icml_face_data.csv) and "
          "fer2013new.csv (Usage, Image name, neutral, ..., contempt, unknown, NF) in one folder")
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
VOTE_COLUMNS = (*FERPLUS_VOTE_COLUMNS, *FERPLUS_NON_EMOTION)
SIDE = 48


def majority(votes: list[float]) -> str | None:
    """FERPlus's majority rule on the ten vote counts (in ``VOTE_COLUMNS`` order): the winning
    column name, or None when no column holds more than half of the votes left after dropping 1s."""
    kept = [v if v > 1 else 0.0 for v in votes]
    top = max(kept)
    if top <= 0.5 * sum(kept):
        return None
    return VOTE_COLUMNS[kept.index(top)]


def _label_rows(path: Path):
    """Yields (row index, usage, image name, votes) of fer2013new.csv, failing on malformed lines."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [c.strip() for c in next(reader, [])]
        expected = ["Usage", "Image name", *VOTE_COLUMNS]
        if header != expected:
            raise DatasetError(f"{path}: header {header} is not FERPlus's {expected}")
        for i, row in enumerate(reader):
            if len(row) != len(expected):
                raise DatasetError(f"{path}, line {i + 2}: {len(row)} fields, expected {len(expected)}")
            try:
                votes = [float(v) for v in row[2:]]
            except ValueError:
                raise DatasetError(f"{path}, line {i + 2}: vote counts must be numbers, got {row[2:]}") from None
            yield i, row[0].strip(), row[1].strip(), votes


def _entries(rows: list, path: Path, pixels_csv: Path):
    for i, usage, image_name, votes in rows:
        split = USAGE_SPLITS.get(usage)
        where = f"{path.name} line {i + 2}"
        if split is None:
            raise DatasetError(f"{path}, line {i + 2}: Usage {usage!r} is not one of {list(USAGE_SPLITS)}")
        name = image_name or f"fer2013.csv row {i}"
        winner = majority(votes)
        shown = "votes " + ",".join(f"{v:g}" for v in votes)
        if not image_name:
            yield Exclusion(name, split, "FERPlus: no image name", "removed by FERPlus"), where
        elif winner is None:
            yield Exclusion(name, split, "FERPlus: no majority", shown), where
        elif winner in FERPLUS_NON_EMOTION:
            yield Exclusion(name, split, f"FERPlus: majority {winner}", shown), where
        else:
            yield Record(name, FERPLUS_VOTE_COLUMNS[winner], split, pixels_csv, row=i), where


def _pixel_reader(usages: list[str]) -> Callable[[Path], Callable[[int], np.ndarray]]:
    """A reader of fer2013.csv that checks it against fer2013new.csv's rows (count and Usage)."""

    def read(path: Path) -> Callable[[int], np.ndarray]:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.columns = [c.strip() for c in frame.columns]  # Kaggle's variant: "emotion, Usage, pixels"
        if not {"pixels", "Usage"} <= set(frame.columns):
            raise DatasetError(f"{path}: needs columns 'pixels' and 'Usage', found {list(frame.columns)}")
        if len(frame) != len(usages):
            raise DatasetError(f"{path} has {len(frame)} rows but fer2013new.csv has {len(usages)}: the two files "
                               "must come from the same release (same rows, same order)")
        theirs = frame["Usage"].str.strip().tolist()
        if theirs != usages:
            i = next(i for i, (a, b) in enumerate(zip(theirs, usages)) if a != b)
            raise DatasetError(f"{path}, line {i + 2}: Usage {theirs[i]!r} but fer2013new.csv says {usages[i]!r}: "
                               "the rows are not in the same order")
        pixels = frame["pixels"].tolist()

        def row(i: int) -> np.ndarray:
            try:
                values = np.array(pixels[i].split(), dtype=np.int64)
            except ValueError:
                raise UnreadableImage("malformed pixel row", "non-integer values") from None
            if values.size != SIDE * SIDE or values.min() < 0 or values.max() > 255:
                raise UnreadableImage("malformed pixel row", f"{values.size} values (need {SIDE * SIDE} in 0..255)")
            return values.astype(np.uint8).reshape(SIDE, SIDE)

        return row

    return read


def listing(cfg: DataConfig) -> Listing:
    root = dataset_root(cfg, LAYOUT)
    pixels_csv = first_file(root, ("fer2013.csv", "icml_face_data.csv"), "FER2013 pixel file", LAYOUT)
    votes_csv = first_file(root, ("fer2013new.csv",), "FERPlus vote file", LAYOUT)
    rows = list(_label_rows(votes_csv))
    records, excluded = drop_repeats(list(_entries(rows, votes_csv, pixels_csv)))
    usages = [usage for _, usage, _, _ in rows]
    return Listing(cfg.name, root, LAYOUT, BASIC8, records, excluded, [pixels_csv, votes_csv],
                   options={"label_rule": "majority"}, read_table=_pixel_reader(usages))
