"""A class-per-folder tree: ``train/<class>/*`` plus ``test/<class>/*`` and/or ``val/`` (or ``valid/``).

Class folders are matched to the canonical vocabulary by name, case-insensitively — canonical
names (``happiness``), abbreviations (``HA``) or common aliases (``happy``, see
``FOLDER_ALIASES``) — never by their alphabetical position, which is how label orders get mixed
up. Numbered folders (Kaggle's RAF-DB copy ``1..7``; DAN's AffectNet export ``0..7``, yaoing/DAN
``utils/convert_affectnet.py``) mean whatever their exporter meant, so ``data.class_order`` must
say it (``mfer.data.classes.CLASS_ORDERS``); without it they are refused. The set is 8-class
(BASIC8) when any split has contempt or the order has it, else 7-class. Files without an image
extension are listed in the report, not read.

Splits: with a ``test/`` folder, ``val/`` (or ``valid/``) is the validation split. Without one,
``val/`` or ``valid/`` *is* the test set — that is what MFER's ``train.py`` (``dataset/{train,val}``)
and POSTER_V2's ``main.py`` (``train/`` + ``valid/``) evaluate on — so it is read as test, the
validation split is carved from train, and ``report.json`` says so.
"""
from __future__ import annotations

from pathlib import Path

from mfer.config import DataConfig
from mfer.data.classes import (BASIC7, BASIC8, CLASS_ORDER_LEFT_OUT, CLASS_ORDERS, canonical_class,
                               describe_order)
from mfer.data.decode import display_name, is_image_name
from mfer.data.formats.base import DatasetError, Exclusion, Listing, Record, dataset_root

LAYOUT = ("a class-per-folder tree: train/<class>/<images> with test/<class>/ and/or val/<class>/ (or valid/), "
          "class folders named e.g. anger|angry|AN, ..., surprise|surprised|SU (contempt for 8 classes), "
          "or numbered with data.class_order saying what the numbers mean")
VAL_DIRS = ("val", "valid")


def _split_dirs(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """(folder, split) pairs and the notes for report.json on how they were read."""
    vals = [d for d in VAL_DIRS if (root / d).is_dir()]
    if len(vals) > 1:
        raise DatasetError(f"{root}: both val/ and valid/ exist; keep the one that is your validation (or test) split")
    dirs = [(root / "train", "train")] if (root / "train").is_dir() else []
    if (root / "test").is_dir():
        return dirs + [(root / "test", "test")] + [(root / v, "val") for v in vals], []
    if not vals:
        return dirs, []
    note = (f"{vals[0]}/ read as the test split: there is no test/ folder, and in this layout (MFER's train.py, "
            f"POSTER_V2) {vals[0]}/ is what is evaluated on. The validation split is carved from train "
            "(data.val_fraction), so model selection never sees it")
    return dirs + [(root / vals[0], "test")], [note]


def _numbered(split_dir: Path, folder: str, order: str | None) -> tuple[str | None, str | None]:
    if order is None:
        raise DatasetError(f"{split_dir / folder}: numbered class folders need data.class_order to say what the "
                           f"numbers mean (nothing is guessed). Choose one of: "
                           + "; ".join(describe_order(o) for o in CLASS_ORDERS))
    number = int(folder)
    if number in CLASS_ORDER_LEFT_OUT.get(order, {}):
        return None, CLASS_ORDER_LEFT_OUT[order][number]
    if number not in CLASS_ORDERS[order]:
        raise DatasetError(f"{split_dir / folder}: folder {folder} is not a class of data.class_order="
                           f"{describe_order(order)}; is that the order your folders were written in?")
    return CLASS_ORDERS[order][number], None


def _class_dirs(split_dir: Path, order: str | None) -> list[tuple[Path, str | None, str | None]]:
    """(folder, canonical class or None, why it is left out) for each class folder."""
    dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [d.name for d in dirs if not d.name.isdigit() and canonical_class(d.name) is None]
    if unknown:
        raise DatasetError(f"{split_dir}: folder(s) {unknown} name no known class; rename them to one of "
                           f"{list(BASIC8)} (or an alias such as happy, sad, angry)")
    return [(d, *(_numbered(split_dir, d.name, order) if d.name.isdigit() else (canonical_class(d.name), None)))
            for d in dirs]


def _entries(root: Path, split_dir: Path, split: str, order: str | None):
    records, excluded = [], []
    for class_dir, label, left_out in _class_dirs(split_dir, order):
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            name = display_name(path.relative_to(root).as_posix())
            if left_out:
                excluded.append(Exclusion(name, split, left_out, f"data.class_order={order}"))
            elif is_image_name(path.name):
                records.append(Record(name, label, split, path))
            else:
                excluded.append(Exclusion(name, split, "not an image extension", path.suffix or "no extension"))
    return records, excluded


def listing(cfg: DataConfig) -> Listing:
    root = dataset_root(cfg, LAYOUT)
    dirs, notes = _split_dirs(root)
    records, excluded = [], []
    for split_dir, split in dirs:
        r, e = _entries(root, split_dir, split, cfg.class_order)
        records += r
        excluded += e
    eight = any(r.label == "contempt" for r in records) or "contempt" in CLASS_ORDERS.get(cfg.class_order, {}).values()
    return Listing(cfg.name, root, LAYOUT, BASIC8 if eight else BASIC7, records, excluded,
                   options={"class_order": cfg.class_order}, notes=notes)
