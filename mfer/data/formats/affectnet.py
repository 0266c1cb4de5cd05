"""AffectNet, original CSV release: ``Manually_Annotated_file_lists/{training,validation}.csv``.

Images live under ``Manually_Annotated_Images/`` at the CSV's ``subDirectory_filePath``
(e.g. ``459/<hash>.jpg``); ``expression`` codes 0..7 = neutral, happiness, sadness, surprise,
fear, disgust, anger, contempt (``AFFECTNET_LABELS``). Codes 8 None, 9 Uncertain, 10 No-Face
are not expressions and are left out, as is contempt for the 7-class set — all listed in the
report. ``validation.csv`` (500 per class) is the test set of the literature; the validation
split is carved from training. Images are used whole (the released files are face crops).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mfer.config import DataConfig
from mfer.data.classes import AFFECTNET_LABELS, AFFECTNET_NON_EXPRESSION
from mfer.data.formats.base import DatasetError, Exclusion, Listing, Record, dataset_root, first_file, drop_repeats

LAYOUT = ("AffectNet: Manually_Annotated_file_lists/{training,validation}.csv (columns subDirectory_filePath, "
          "expression, ...) and Manually_Annotated_Images/<subDirectory_filePath>")
IMAGES = "Manually_Annotated_Images"
_CSV_SPLITS = {"training": "train", "validation": "test"}
_COLUMNS = ("subDirectory_filePath", "expression")


def _read_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; found {list(frame.columns)[:6]}... "
                           "Is this AffectNet's training.csv/validation.csv?")
    return frame[list(_COLUMNS)]


def _entries(path: Path, split: str, root: Path, classes: tuple[str, ...]):
    """Yields (record or exclusion, where) for every row of one CSV."""
    for i, (rel, code) in enumerate(_read_csv(path).itertuples(index=False)):
        where = f"{path.name} line {i + 2}"  # 1-based, after the header
        code = code.strip()
        if not code.lstrip("-").isdigit():
            raise DatasetError(f"{path}, line {i + 2}: expression {code!r} is not an integer code 0..10")
        code_i = int(code)
        name = f"{IMAGES}/{rel.strip()}"
        if code_i in AFFECTNET_NON_EXPRESSION:
            yield Exclusion(name, split, "non-expression code", f"{code_i} {AFFECTNET_NON_EXPRESSION[code_i]}"), where
        elif code_i not in AFFECTNET_LABELS:
            raise DatasetError(f"{path}, line {i + 2}: expression code {code_i} is out of range; AffectNet uses 0..7 "
                               "for expressions and 8..10 for none/uncertain/no-face. Fix or delete the row")
        elif AFFECTNET_LABELS[code_i] not in classes:
            yield Exclusion(name, split, "contempt (not in the 7-class set)", "data.name=affectnet8 keeps it"), where
        else:
            yield Record(name, AFFECTNET_LABELS[code_i], split, root / name), where


def listing(cfg: DataConfig, classes: tuple[str, ...]) -> Listing:
    """``classes`` is BASIC7 (affectnet7: contempt left out) or BASIC8 (affectnet8)."""
    root = dataset_root(cfg, LAYOUT)
    entries, sources = [], []
    for stem, split in _CSV_SPLITS.items():
        candidates = (f"Manually_Annotated_file_lists/{stem}.csv", f"{stem}.csv")
        csv = first_file(root, candidates, f"AffectNet {stem}.csv", LAYOUT)
        sources.append(csv)
        entries.extend(_entries(csv, split, root, classes))
    records, excluded = drop_repeats(entries)
    return Listing(cfg.name, root, LAYOUT, classes, records, excluded, sources)
