"""FERPlus: FER2013's pixels (``fer2013.csv``) with the FERPlus votes (``fer2013new.csv``).

``fer2013new.csv`` has the same rows in the same order as ``fer2013.csv``; ten vote counts per
face become a training target by one of FERPlus's four rules, ``data.ferplus_labels`` (Barsoum et
al., "Training deep networks for facial expression recognition with crowd-sourced label
distribution", ICMI 2016; microsoft/FERPlus ``src/ferplus.py``). Every rule first drops votes of
1 as outliers:

- ``majority``: the top class must hold more than half of the remaining votes;
- ``crossentropy`` and ``probability``: the distribution over the top classes (ties taken
  together, at most 3) until they hold 75 % of the votes; kept if they hold more than half;
- ``multi_target``: every class with at least 30 % of the votes; kept if they hold more than half.

A face whose rule keeps nothing, or whose top class is ``unknown`` or ``NF`` (not a face), has no
label; so do rows whose ``Image name`` is empty (removed by FERPlus). Every dropped row is listed in
the report. The rule shapes the **train** split only: val and test always take the majority rule,
so that every rule is scored on the same images and labels, the benchmark's. Splits are the
official usages: Training -> train, PublicTest -> val (FERPlus's FER2013Valid), PrivateTest ->
test. Pixels are read only when the cache is built: 2,304 space-separated grey values (48x48) per row.
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
from mfer.data.formats.base import (DatasetError, Exclusion, Listing, Record, dataset_root, drop_repeats, first_file,
                                    malformed)

LAYOUT = ("FERPlus: fer2013.csv (columns emotion, pixels, Usage; or Kaggle's icml_face_data.csv) and "
          "fer2013new.csv (Usage, Image name, neutral, ..., contempt, unknown, NF) in one folder")
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
VOTE_COLUMNS = (*FERPLUS_VOTE_COLUMNS, *FERPLUS_NON_EMOTION)
EMOTIONS = len(FERPLUS_VOTE_COLUMNS)  # the first EMOTIONS vote columns are emotions
SIDE = 48
LABEL_RULES = ("majority", "crossentropy", "probability", "multi_target")  # data.ferplus_labels


def _without_outliers(votes: list[float]) -> list[float]:
    return [v if v > 1 else 0.0 for v in votes]


def _top_classes(kept: list[float]) -> list[float]:
    """The crossentropy/probability rule: take the highest vote counts (ties together) until they
    hold 75 % of the votes or 3 classes are taken; stop at unknown/NF, which counts only if it is
    the top class. Returns the kept counts (zeros elsewhere), or all zeros if the face is dropped."""
    total, left = sum(kept), list(kept)
    chosen = [0.0] * len(kept)
    taken = 0
    while sum(chosen) < 0.75 * total and taken < 3:
        top = max(left)
        ties = [i for i, v in enumerate(left) if v == top]
        non_emotion = next((i for i in ties if i >= EMOTIONS), None)
        for i in ties if non_emotion is None else [i for i in ties if i <= non_emotion]:
            chosen[i], left[i] = top, 0.0
            taken += 1
        if non_emotion is not None:
            if sum(chosen) > top:  # emotions came first: unknown/NF is left out of the target
                chosen[non_emotion] = 0.0
                taken -= 1
            break
    return chosen if sum(chosen) > 0.5 * total and taken <= 3 else [0.0] * len(kept)


def vote_distribution(votes: list[float], rule: str) -> list[float] | None:
    """The ten vote counts (``VOTE_COLUMNS`` order) as a distribution under ``rule``, or None when
    the rule keeps no class (a face without a label)."""
    kept = _without_outliers(votes)
    total = sum(kept)
    if rule == "majority":
        top = max(kept)
        chosen = [0.0] * len(kept)
        if top > 0.5 * total:
            chosen[kept.index(top)] = top
    elif rule == "multi_target":
        chosen = [v if v >= 0.3 * total else 0.0 for v in kept]
        chosen = chosen if sum(chosen) > 0.5 * total else [0.0] * len(kept)
    else:
        chosen = _top_classes(kept)
    if sum(chosen) <= 0:
        return None
    return [v / sum(chosen) for v in chosen]


def _label_rows(path: Path):
    """Yields (row index, usage, image name, votes) of fer2013new.csv; a row with the wrong field
    count yields (row index, None, None, why) and is left out, its index still aligned with fer2013.csv."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [c.strip() for c in next(reader, [])]
        expected = ["Usage", "Image name", *VOTE_COLUMNS]
        if header != expected:
            raise DatasetError(f"{path}: header {header} is not FERPlus's {expected}")
        for i, row in enumerate(reader):
            if len(row) != len(expected):
                yield i, None, None, f"{len(row)} fields, expected {len(expected)}"
                continue
            yield i, row[0].strip(), row[1].strip(), parse_votes(row[2:], f"{path}, line {i + 2}")


def parse_votes(fields: list[str], where: str) -> list[float]:
    try:
        return [float(v) for v in fields]
    except ValueError:
        raise DatasetError(f"{where}: vote counts must be numbers, got {fields}") from None


def vote_entry(name: str, split: str, votes: list[float], rule: str, path: Path, row: int | None = None):
    """The record of one face under ``rule``, or the exclusion saying why it has no label."""
    dist = vote_distribution(votes, rule)
    shown = "votes " + ",".join(f"{v:g}" for v in votes)
    if dist is None:
        return Exclusion(name, split, f"FERPlus: no {rule} label", shown)
    if max(dist[EMOTIONS:]) > max(dist[:EMOTIONS]):  # on a tie the emotion wins, as in FERPlus
        return Exclusion(name, split, f"FERPlus: top class {VOTE_COLUMNS[dist.index(max(dist))]}", shown)
    emotions = dict(zip(FERPLUS_VOTE_COLUMNS.values(), dist))
    mass = sum(emotions.values())
    target = tuple(emotions.get(c, 0.0) / mass for c in BASIC8)  # in the canonical class order
    label = BASIC8[target.index(max(target))]  # the top class; of tied ones, the first in that order
    return Record(name, label, split, path, row=row, target=None if rule == "majority" else target)


def _entries(rows: list, path: Path, pixels_csv: Path, train_rule: str):
    for i, usage, image_name, votes in rows:
        where = f"{path.name} line {i + 2}"
        if usage is None:
            yield malformed(where, "unknown", votes), where
            continue
        split = USAGE_SPLITS.get(usage)
        if split is None:
            raise DatasetError(f"{path}, line {i + 2}: Usage {usage!r} is not one of {list(USAGE_SPLITS)}")
        if not image_name:
            yield Exclusion(f"fer2013.csv row {i}", split, "FERPlus: no image name", "removed by FERPlus"), where
            continue
        rule = train_rule if split == "train" else "majority"
        yield vote_entry(image_name, split, votes, rule, pixels_csv, row=i), where


def _pixel_reader(usages: list[str | None]) -> Callable[[Path], Callable[[int], np.ndarray]]:
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
        mismatch = [i for i, (a, b) in enumerate(zip(theirs, usages)) if b is not None and a != b]
        if mismatch:  # rows left out as malformed (usage None) have nothing to compare
            i = mismatch[0]
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
    records, excluded = drop_repeats(list(_entries(rows, votes_csv, pixels_csv, cfg.ferplus_labels)))
    usages = [usage for _, usage, _, _ in rows]
    return Listing(cfg.name, root, LAYOUT, BASIC8, records, excluded, [pixels_csv, votes_csv],
                   options={"label_rule": cfg.ferplus_labels}, read_table=_pixel_reader(usages))
