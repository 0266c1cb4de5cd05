"""FERPlus as its own scripts lay it out: ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/``, each
with the 48x48 PNGs and a ``label.csv``.

microsoft/FERPlus ``src/generate_training_data.py`` writes the PNGs from fer2013.csv, and
``data/FER2013*/label.csv`` (shipped in that repository) has one row per image and no header:
``<image name>,"(0, 0, 48, 48)",<10 vote counts>`` in ``fer2013new.csv``'s vote order (older copies
lack the face-box field). ``src/ferplus.py`` (``FERPlusReader.load_folders``) reads the same files.
The votes become labels by the same rules as ``data.name=ferplus`` (``mfer.data.formats.ferplus``,
``data.ferplus_labels`` for train, majority for val and test); the folders are the official splits:
Train -> train, Valid -> val, Test -> test. A row with the wrong field count is left out and named.
"""
from __future__ import annotations

import csv
from pathlib import Path

from mfer.config import DataConfig
from mfer.data.classes import BASIC8
from mfer.data.formats.base import DatasetError, Listing, dataset_root, drop_repeats, malformed
from mfer.data.formats.ferplus import VOTE_COLUMNS, parse_votes, vote_entry

LAYOUT = ("FERPlus folders: FER2013Train/, FER2013Valid/, FER2013Test/, each holding the PNGs and label.csv "
          "(rows '<image name>,\"(0, 0, 48, 48)\",<10 vote counts>', as microsoft/FERPlus writes them)")
FOLDERS = {"FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}


def _entries(folder: Path, split: str, root: Path, train_rule: str):
    label_csv = folder / "label.csv"
    rule = train_rule if split == "train" else "majority"
    with open(label_csv, newline="", encoding="utf-8-sig") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            where = f"{folder.name}/label.csv line {lineno}"
            if not row:
                continue
            if len(row) not in (1 + len(VOTE_COLUMNS), 2 + len(VOTE_COLUMNS)):  # with or without the face box
                yield malformed(where, split, f"{len(row)} fields, expected {2 + len(VOTE_COLUMNS)}"), where
                continue
            votes = parse_votes(row[-len(VOTE_COLUMNS):], f"{label_csv}, line {lineno}")
            image = folder / row[0].strip()
            yield vote_entry(image.relative_to(root).as_posix(), split, votes, rule, image), where


def listing(cfg: DataConfig) -> Listing:
    root = dataset_root(cfg, LAYOUT)
    missing = [f"{f}/label.csv" for f in FOLDERS if not (root / f / "label.csv").is_file()]
    if missing:
        raise DatasetError(f"{root}: {', '.join(missing)} not found. Point data.root at the folder holding {LAYOUT}")
    entries = [e for f, split in FOLDERS.items() for e in _entries(root / f, split, root, cfg.ferplus_labels)]
    records, excluded = drop_repeats(entries)
    return Listing(cfg.name, root, LAYOUT, BASIC8, records, excluded, [root / f / "label.csv" for f in FOLDERS],
                   options={"label_rule": cfg.ferplus_labels})
