"""RAF-DB basic: ``Image/aligned`` or ``Image/original`` and one of two kinds of label files.

``data.name=rafdb``: the release's ``EmoLabel/list_patition_label.txt``. Each line is
``<name> <1..7>`` (e.g. ``train_00001.jpg 5``); the split is the name's prefix
(``train_``/``test_``); 1..7 = surprise, fear, disgust, happiness, sadness, anger, neutral
(``RAFDB_LABELS``). The release spells the file "patition"; some mirrors fix it, so both names
are accepted (yaoing/DAN ``rafdb.py``, zczcwh/POSTER ``data_preprocessing/dataset_raf.py``).

``data.name=rafdb_lists``: per-split lists, ``EmoLabel/train.txt`` + ``test.txt``
(youqingxiaozhua/APViT ``mmcls/datasets/raf.py``) or ``EmoLabel/train_label.txt`` +
``test_label.txt`` (1980x/SCAN-CCI-FER ``dataset/rafdb_dataset.py``, 1980x/DNFER). Lines are
``<name> <label>``; the file gives the split, and ``data.class_order`` says what the numbers mean,
since these files are written by each repository's own scripts (both named ones use RAF-DB's
1..7: ``rafdb_1to7``). Names come with or without ``_aligned`` (APViT strips it, SCAN-CCI adds it).

``data.rafdb_images`` picks the official aligned 100x100 crops (``<stem>_aligned.jpg``) or the
original photos (to align with ``mfer-prepare``). RAF-DB has no validation split: it is carved
from train.
"""
from __future__ import annotations

from pathlib import Path

from mfer.config import DataConfig
from mfer.data.classes import BASIC7, BASIC8, CLASS_ORDERS, RAFDB_LABELS, describe_order
from mfer.data.formats.base import DatasetError, Listing, Record, dataset_root, drop_repeats, first_file, malformed

LAYOUT = ("RAF-DB basic: EmoLabel/list_patition_label.txt (lines '<name> <1..7>') and "
          "Image/aligned/<stem>_aligned.jpg or Image/original/<name>")
LISTS_LAYOUT = ("RAF-DB with per-split label lists: EmoLabel/train.txt + EmoLabel/test.txt (APViT) or "
                "EmoLabel/train_label.txt + EmoLabel/test_label.txt (SCAN-CCI, DNFER), lines '<name> <label>', "
                "and Image/aligned/<stem>_aligned.jpg or Image/original/<name>")
LABEL_FILES = ("EmoLabel/list_patition_label.txt", "EmoLabel/list_partition_label.txt")
LIST_PAIRS = (("EmoLabel/train.txt", "EmoLabel/test.txt"), ("EmoLabel/train_label.txt", "EmoLabel/test_label.txt"))
_PREFIX_SPLIT = {"train_": "train", "test_": "test"}


def _image_path(root: Path, name: str, images: str) -> Path:
    stem, suffix = Path(name).stem.removesuffix("_aligned"), Path(name).suffix
    if images == "aligned":
        return root / "Image" / "aligned" / f"{stem}_aligned{suffix}"
    return root / "Image" / "original" / f"{stem}{suffix}"


def _label(where: str, name: str, code: str, order: dict[int, str], order_name: str) -> str:
    if not code.isdigit() or int(code) not in order:
        raise DatasetError(f"{where}: label {code!r} of {name} is out of range; {order_name}. Fix the line; "
                           "compound-expression labels belong to a different release")
    return order[int(code)]


def _split_of(where: str, name: str) -> str:
    split = next((s for prefix, s in _PREFIX_SPLIT.items() if name.startswith(prefix)), None)
    if split is None:
        raise DatasetError(f"{where}: image name {name!r} must start with train_ or test_ (that is how RAF-DB "
                           "marks the split); rename it or use data.name=folder")
    return split


def _entries(label_file: Path, root: Path, cfg: DataConfig, split: str | None, order: str | None):
    """(record or exclusion, where) per line; ``split`` None takes it from the name's prefix."""
    table = CLASS_ORDERS[order] if order else RAFDB_LABELS
    meaning = describe_order(order) if order else "RAF-DB basic uses 1..7 (" + ", ".join(
        f"{k} {v}" for k, v in RAFDB_LABELS.items()) + ")"
    for lineno, line in enumerate(label_file.read_text(encoding="utf-8-sig").splitlines(), start=1):
        where = f"{label_file.name} line {lineno}"
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:  # does not parse: left out and named, the rest of the file still loads
            yield malformed(where, split or "unknown", f"expected '<name> <label>', got {line[:80]!r}"), where
            continue
        name, code = parts
        full_where = f"{label_file}, line {lineno}"
        label = _label(full_where, name, code, table, meaning)
        path = _image_path(root, name, cfg.rafdb_images)
        yield Record(path.relative_to(root).as_posix(), label, split or _split_of(full_where, name), path), where


def _image_dir(root: Path, cfg: DataConfig) -> None:
    image_dir = root / "Image" / cfg.rafdb_images
    if not image_dir.is_dir():
        other = "original" if cfg.rafdb_images == "aligned" else "aligned"
        raise DatasetError(f"{image_dir} does not exist (data.rafdb_images={cfg.rafdb_images}); "
                           f"set data.rafdb_images={other} if that is the folder you have")


def listing(cfg: DataConfig) -> Listing:
    root = dataset_root(cfg, LAYOUT)
    label_file = first_file(root, LABEL_FILES, "RAF-DB label file", LAYOUT)
    _image_dir(root, cfg)
    records, excluded = drop_repeats(list(_entries(label_file, root, cfg, None, None)))
    return Listing(cfg.name, root, LAYOUT, BASIC7, records, excluded, sources=[label_file],
                   options={"rafdb_images": cfg.rafdb_images})


def lists_listing(cfg: DataConfig) -> Listing:
    root = dataset_root(cfg, LISTS_LAYOUT)
    if cfg.class_order not in CLASS_ORDERS:  # never assume RAF-DB's 1..7: these lists are anyone's numbering
        raise DatasetError(f"data.name=rafdb_lists needs data.class_order to say what the labels in {root / 'EmoLabel'} "
                           "mean; choose one of: " + "; ".join(describe_order(o) for o in CLASS_ORDERS))
    pairs = [pair for pair in LIST_PAIRS if all((root / f).is_file() for f in pair)]
    if len(pairs) != 1:
        found = "both " + " and ".join("+".join(p) for p in pairs) if pairs else "neither pair"
        raise DatasetError(f"{root}: found {found} of the label lists; keep exactly one pair. Expected {LISTS_LAYOUT}")
    _image_dir(root, cfg)
    files = [root / f for f in pairs[0]]
    entries = [e for f, split in zip(files, ("train", "test")) for e in _entries(f, root, cfg, split, cfg.class_order)]
    records, excluded = drop_repeats(entries)
    classes = BASIC8 if any(r.label == "contempt" for r in records) else BASIC7  # an 8-class order was given
    return Listing(cfg.name, root, LISTS_LAYOUT, classes, records, excluded, sources=files,
                   options={"rafdb_images": cfg.rafdb_images, "class_order": cfg.class_order})
