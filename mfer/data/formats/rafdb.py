"""RAF-DB basic: ``EmoLabel/list_patition_label.txt`` + ``Image/aligned`` or ``Image/original``.

Each label line is ``<name> <1..7>`` (e.g. ``train_00001.jpg 5``); the split is the name's
prefix (``train_``/``test_``); 1..7 = surprise, fear, disgust, happiness, sadness, anger,
neutral (``RAFDB_LABELS``). The release spells the file "patition"; some mirrors fix it, so
both names are accepted. ``data.rafdb_images`` picks the official aligned 100x100 crops
(``<stem>_aligned.jpg``) or the original photos (to align with ``mfer-prepare``).
RAF-DB has no validation split: it is carved from train.
"""
from __future__ import annotations

from pathlib import Path

from mfer.config import DataConfig
from mfer.data.classes import BASIC7, RAFDB_LABELS
from mfer.data.formats.base import DatasetError, Listing, Record, dataset_root, first_file, drop_repeats

LAYOUT = ("RAF-DB basic: EmoLabel/list_patition_label.txt (lines '<name> <1..7>') and "
          "Image/aligned/<stem>_aligned.jpg or Image/original/<name>")
LABEL_FILES = ("EmoLabel/list_patition_label.txt", "EmoLabel/list_partition_label.txt")
_PREFIX_SPLIT = {"train_": "train", "test_": "test"}


def _image_path(root: Path, name: str, images: str) -> Path:
    if images == "aligned":
        return root / "Image" / "aligned" / f"{Path(name).stem}_aligned{Path(name).suffix}"
    return root / "Image" / "original" / name


def _parse_line(label_file: Path, lineno: int, line: str) -> tuple[str, str, str]:
    """(name, split, canonical label) of one label line, or an error naming the line and the fix."""
    where = f"{label_file}, line {lineno}"
    parts = line.split()
    if len(parts) != 2:
        raise DatasetError(f"{where}: expected '<name> <label>', got {line!r}")
    name, code = parts
    split = next((s for prefix, s in _PREFIX_SPLIT.items() if name.startswith(prefix)), None)
    if split is None:
        raise DatasetError(f"{where}: image name {name!r} must start with train_ or test_ (that is how RAF-DB "
                           "marks the split); rename it or use data.name=folder")
    if not code.isdigit() or int(code) not in RAFDB_LABELS:
        raise DatasetError(f"{where}: label {code!r} of {name} is out of range; RAF-DB basic uses 1..7 "
                           f"({', '.join(f'{k} {v}' for k, v in RAFDB_LABELS.items())}). Fix the line; "
                           "compound-expression labels belong to a different release")
    return name, split, RAFDB_LABELS[int(code)]


def listing(cfg: DataConfig) -> Listing:
    root = dataset_root(cfg, LAYOUT)
    label_file = first_file(root, LABEL_FILES, "RAF-DB label file", LAYOUT)
    image_dir = root / "Image" / cfg.rafdb_images
    if not image_dir.is_dir():
        other = "original" if cfg.rafdb_images == "aligned" else "aligned"
        raise DatasetError(f"{image_dir} does not exist (data.rafdb_images={cfg.rafdb_images}); "
                           f"set data.rafdb_images={other} if that is the folder you have")
    entries = []
    lines = label_file.read_text(encoding="utf-8-sig").splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, split, label = _parse_line(label_file, lineno, line)
        path = _image_path(root, name, cfg.rafdb_images)
        record = Record(path.relative_to(root).as_posix(), label, split, path)
        entries.append((record, f"{label_file.name} line {lineno}"))
    records, excluded = drop_repeats(entries)
    return Listing(cfg.name, root, LAYOUT, BASIC7, records, excluded, sources=[label_file],
                   options={"rafdb_images": cfg.rafdb_images})
