"""A plain class-per-folder tree: ``train/<class>/*``, ``test/<class>/*``, optionally ``val/<class>/*``.

Class folders are matched to the canonical vocabulary by name, case-insensitively — canonical
names (``happiness``), abbreviations (``HA``) or common aliases (``happy``, see
``FOLDER_ALIASES``) — never by their alphabetical position, which is how label orders get mixed
up. The set is 8-class (BASIC8) when any split has a contempt folder, else 7-class. Files
without an image extension are listed in the report, not read. An official ``val/`` is used
as the validation split; without one it is carved from train.
"""
from __future__ import annotations

from pathlib import Path

from mfer.config import DataConfig
from mfer.data.classes import BASIC7, BASIC8, canonical_class
from mfer.data.decode import display_name, is_image_name
from mfer.data.formats.base import SPLITS, DatasetError, Exclusion, Listing, Record, dataset_root

LAYOUT = ("a class-per-folder tree: train/<class>/<images>, test/<class>/<images> and optionally val/<class>/<images>, "
          "class folders named e.g. anger|angry|AN, ..., surprise|surprised|SU (contempt for 8 classes)")


def _class_dirs(split_dir: Path) -> list[tuple[Path, str]]:
    """(folder, canonical class) for each class folder, or an error naming the unknown ones."""
    dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [d.name for d in dirs if canonical_class(d.name) is None]
    if unknown:
        raise DatasetError(f"{split_dir}: folder(s) {unknown} name no known class; rename them to one of "
                           f"{list(BASIC8)} (or an alias such as happy, sad, angry)")
    return [(d, canonical_class(d.name)) for d in dirs]


def listing(cfg: DataConfig) -> Listing:
    root = dataset_root(cfg, LAYOUT)
    records, excluded = [], []
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        for class_dir, label in _class_dirs(root / split):
            for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
                name = display_name(path.relative_to(root).as_posix())
                if is_image_name(path.name):
                    records.append(Record(name, label, split, path))
                else:
                    excluded.append(Exclusion(name, split, "not an image extension", path.suffix or "no extension"))
    classes = BASIC8 if any(r.label == "contempt" for r in records) else BASIC7
    return Listing(cfg.name, root, LAYOUT, classes, records, excluded)
