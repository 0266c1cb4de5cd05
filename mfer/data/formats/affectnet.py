"""AffectNet, original CSV release: ``Manually_Annotated_file_lists/{training,validation}.csv``.

Images live under ``Manually_Annotated_Images/`` at the CSV's ``subDirectory_filePath``
(e.g. ``459/<hash>.jpg``); ``expression`` codes 0..7 = neutral, happiness, sadness, surprise,
fear, disgust, anger, contempt (``AFFECTNET_LABELS``). Codes 8 None, 9 Uncertain, 10 No-Face
are not expressions and are left out, as is contempt for the 7-class set — all listed in the
report. ``validation.csv`` (500 per class) is the test set of the literature; the validation
split is carved from training. Layout as nRknpy/AffectNet_torch and hhj1897/AffectNet_Scripts read it.

Images are used whole by default (the usual download holds face crops). For the raw photos,
``data.crop_face_box=true`` crops each to its row's ``face_x, face_y, face_width, face_height``
when the cache is packed (the box 1980x/SCAN-CCI-FER ``GACNN/affectnet_dataset.py`` reads from
columns 1..4). The CSV is read with the
csv module, row by row: a row with the wrong number of fields (where pandas raises ``ParserError``
and loses the whole file) is left out and named in the report.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from mfer.config import DataConfig
from mfer.data.classes import AFFECTNET_LABELS, AFFECTNET_NON_EXPRESSION
from mfer.data.formats.base import (DatasetError, Exclusion, Listing, Record, dataset_root, drop_repeats, first_file,
                                    malformed)

LAYOUT = ("AffectNet: Manually_Annotated_file_lists/{training,validation}.csv (columns subDirectory_filePath, "
          "expression, ...) and Manually_Annotated_Images/<subDirectory_filePath>")
IMAGES = "Manually_Annotated_Images"
_CSV_SPLITS = {"training": "train", "validation": "test"}
_COLUMNS = ("subDirectory_filePath", "expression")
BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line number, {column: value}) per row, or (line number, why it does not parse)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        header = [c.strip() for c in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {missing}; found {header[:9]}... "
                               "Is this AffectNet's training.csv/validation.csv?")
        where = {c: header.index(c) for c in columns}
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # e.g. a NUL byte: this line is lost, the reader goes on
                yield reader.line_num, f"csv: {e}"
                continue
            if not row:
                continue
            if len(row) != len(header):
                yield reader.line_num, f"{len(row)} fields, expected {len(header)}"
                continue
            yield reader.line_num, {c: row[i].strip() for c, i in where.items()}


def _box(row: dict[str, str]) -> tuple[int, int, int, int] | None:
    try:
        x, y, w, h = (int(float(row[c])) for c in BOX_COLUMNS)
    except ValueError:
        return None
    return (x, y, w, h) if w > 0 and h > 0 and x >= 0 and y >= 0 else None


def _entry(path: Path, lineno: int, row: dict[str, str], split: str, root: Path, classes, crop: bool):
    """The record or exclusion of one parsed row; an impossible expression code is an error."""
    code, name = row["expression"], f"{IMAGES}/{row['subDirectory_filePath']}"
    if not code.lstrip("-").isdigit():
        raise DatasetError(f"{path}, line {lineno}: expression {code!r} is not an integer code 0..10")
    code_i = int(code)
    if code_i in AFFECTNET_NON_EXPRESSION:
        return Exclusion(name, split, "non-expression code", f"{code_i} {AFFECTNET_NON_EXPRESSION[code_i]}")
    if code_i not in AFFECTNET_LABELS:
        raise DatasetError(f"{path}, line {lineno}: expression code {code_i} is out of range; AffectNet uses 0..7 "
                           "for expressions and 8..10 for none/uncertain/no-face. Fix or delete the row")
    if AFFECTNET_LABELS[code_i] not in classes:
        return Exclusion(name, split, "contempt (not in the 7-class set)", "data.name=affectnet8 keeps it")
    box = _box(row) if crop else None
    if crop and box is None:
        return Exclusion(name, split, "unusable face box", ", ".join(f"{c}={row[c]!r}" for c in BOX_COLUMNS))
    return Record(name, AFFECTNET_LABELS[code_i], split, root / name, box=box)


def _entries(path: Path, split: str, root: Path, classes: tuple[str, ...], crop: bool):
    """Yields (record or exclusion, where) for every row of one CSV."""
    for lineno, row in _rows(path, _COLUMNS + (BOX_COLUMNS if crop else ())):
        where = f"{path.name} line {lineno}"
        if isinstance(row, str):
            yield malformed(where, split, row), where
        else:
            yield _entry(path, lineno, row, split, root, classes, crop), where


def listing(cfg: DataConfig, classes: tuple[str, ...]) -> Listing:
    """``classes`` is BASIC7 (affectnet7: contempt left out) or BASIC8 (affectnet8)."""
    root = dataset_root(cfg, LAYOUT)
    entries, sources = [], []
    for stem, split in _CSV_SPLITS.items():
        candidates = (f"Manually_Annotated_file_lists/{stem}.csv", f"{stem}.csv")
        csv_file = first_file(root, candidates, f"AffectNet {stem}.csv", LAYOUT)
        sources.append(csv_file)
        entries.extend(_entries(csv_file, split, root, classes, cfg.crop_face_box))
    records, excluded = drop_repeats(entries)
    return Listing(cfg.name, root, LAYOUT, classes, records, excluded, sources,
                   options={"crop_face_box": cfg.crop_face_box})
