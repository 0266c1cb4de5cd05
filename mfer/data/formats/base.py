"""What every adapter returns: records in the canonical vocabulary, plus what its rules left out.

Adapters stay cheap (label files only), because every trial lists the dataset to find its cache
key; decoding happens once per node in ``mfer.data.pack``. Problems an adapter can see — a
missing label file, a label id out of range, a name listed twice, an empty split — raise
``DatasetError`` naming the file, the line and the fix; rows the format's own rules drop
(AffectNet's non-expression codes, FERPlus rows without a majority) are kept as ``Exclusion``s
so the report can say exactly what was left out. So are rows that do not parse at all (a wrong
field count, an unreadable label file): one broken line of a 300k-row CSV must not cost the
dataset, while a row that parses to an impossible label still stops the run — that is a wrong
mapping or a wrong file, not a damaged line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from mfer.config import ConfigError, DataConfig

SPLITS = ("train", "val", "test")
TableReader = Callable[[Path], Callable[[int], np.ndarray]]  # table file -> (row -> grey uint8 image)


class DatasetError(ConfigError):
    """The dataset on disk cannot be used as configured; the message names the file and the fix."""


@dataclass(frozen=True)
class Record:
    name: str  # unique within the dataset, as reports show it: path relative to data.root, or an image name
    label: str  # canonical class name (mfer/data/classes.py)
    split: str  # train | val | test — the official split; val only where the release defines one
    path: Path  # the file holding the pixels: an image file, or a pixel table (FER2013's CSV)
    row: Optional[int] = None  # row of that table; None for image files
    # A soft training target over the listing's classes (sums to 1; ``label`` is its top class),
    # for labels made from votes (FERPlus's crossentropy/probability/multi_target rules); else None.
    target: Optional[tuple[float, ...]] = None
    # (x, y, width, height) to crop before resizing, for releases whose images are whole photos
    # (AffectNet's CSV face boxes with data.crop_face_box); None packs the whole image.
    box: Optional[tuple[int, int, int, int]] = None


@dataclass(frozen=True)
class Exclusion:
    name: str
    split: str
    kind: str  # what the report counts by, e.g. "non-expression code", "corrupt or truncated"
    detail: str = ""


@dataclass
class Listing:
    dataset: str  # data.name
    root: Path
    layout: str  # the expected layout, in words, for error messages
    classes: tuple[str, ...]
    records: list[Record]
    excluded: list[Exclusion] = field(default_factory=list)  # left out by the format's own rules
    sources: list[Path] = field(default_factory=list)  # label files: their size/mtime join the cache key
    options: dict = field(default_factory=dict)  # settings that change the content (e.g. rafdb_images)
    read_table: Optional[TableReader] = None  # for records with a ``row``
    notes: list[str] = field(default_factory=list)  # how the layout's folders were read, for report.json

    def __post_init__(self) -> None:
        present = {r.split for r in self.records}
        for split in ("train", "test"):
            if split not in present:
                raise DatasetError(
                    f"{self.dataset} at {self.root}: the {split} split lists no images "
                    f"({sum(e.split == split for e in self.excluded)} excluded by the format's rules). "
                    f"Expected layout: {self.layout}"
                )


def dataset_root(cfg: DataConfig, layout: str) -> Path:
    if not cfg.root:
        raise DatasetError(f"data.root is not set for data.name={cfg.name}: pass data.root=DIR, DIR holding {layout}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"data.root={cfg.root} is not a folder; it should hold {layout}")
    return root


def first_file(root: Path, candidates: tuple[str, ...], what: str, layout: str) -> Path:
    """The first of ``candidates`` (paths relative to root) that exists, or an error naming them all."""
    for rel in candidates:
        if (root / rel).is_file():
            return root / rel
    tried = ", ".join(str(root / rel) for rel in candidates)
    raise DatasetError(f"{what} not found (looked for {tried}). Point data.root at the folder holding {layout}")


MALFORMED = "malformed row"


def malformed(where: str, split: str, detail: str) -> Exclusion:
    """A label-file row that does not parse, named by file and line (it has no trustworthy image name)."""
    return Exclusion(where, split, MALFORMED, detail)


def _identity(item: Record | Exclusion) -> tuple:
    return (type(item), item.split, item.label if isinstance(item, Record) else item.kind)


def drop_repeats(entries: list[tuple[Record | Exclusion, str]]) -> tuple[list[Record], list[Exclusion]]:
    """Records and exclusions from (item, where it is listed) pairs, each name once.

    A name listed again with the same label and split is kept once and the repeat is reported;
    listed again with another label or split it is an error, since either choice could be wrong.
    """
    first: dict[str, tuple[Record | Exclusion, str]] = {}
    records: list[Record] = []
    excluded: list[Exclusion] = []
    for item, where in entries:
        if item.name in first:
            prev, prev_where = first[item.name]
            if _identity(prev) != _identity(item):
                raise DatasetError(f"{item.name!r} is listed twice with different labels or splits ({prev_where}; "
                                   f"{where}): keep the right line and delete the other")
            excluded.append(Exclusion(item.name, item.split, "repeated row", f"{where} repeats {prev_where}"))
            continue
        first[item.name] = (item, where)
        (records if isinstance(item, Record) else excluded).append(item)
    return records, excluded
