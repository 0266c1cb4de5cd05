"""AffectNet, the newer npy release: ``{train_set,val_set}/images/<id>.jpg`` and
``{train_set,val_set}/annotations/<id>_exp.npy`` holding the expression code.

As yaoing/DAN ``affectnet.py`` (``AffectNet.get_df``) and taylor-xy0827/Ada-DF read it: the code is
``int(np.load(<id>_exp.npy))``, 0..7 in the CSV release's order (``AFFECTNET_LABELS``); the other
annotation files (``_aro``, ``_val``, ``_lnd``) are not labels. ``val_set`` is the test set (500 per
class), as there; the validation split is carved from ``train_set``. The 7-class set leaves
contempt out, as DAN's 7-class run does. A label file that is not a readable integer npy is left
out and named in the report; a readable code outside 0..10 stops with an error.

Every trial lists the dataset to find its cache key, so the ~290k tiny npy files are parsed here
directly (magic, header, data; the header parsed once per distinct header), ~4x faster than
``np.load`` and never through pickle.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import numpy as np

from mfer.config import DataConfig
from mfer.data.classes import AFFECTNET_LABELS, AFFECTNET_NON_EXPRESSION
from mfer.data.formats.base import DatasetError, Exclusion, Listing, Record, dataset_root, drop_repeats, malformed

LAYOUT = ("AffectNet npy release: train_set/ and val_set/, each with images/<id>.jpg and "
          "annotations/<id>_exp.npy (the expression code)")
_SETS = {"train_set": "train", "val_set": "test"}


@lru_cache(maxsize=64)
def _header(raw: bytes) -> tuple[np.dtype, tuple]:
    d = ast.literal_eval(raw.decode("latin1"))
    return np.dtype(d["descr"]), tuple(d["shape"])


def read_code(path: Path) -> int:
    """The integer in a one-value .npy file; ValueError if it is not one (object arrays refused)."""
    data = path.read_bytes()
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise ValueError("not an .npy file")
    size_bytes = 2 if data[6] == 1 else 4  # format 1.0: uint16 header length; 2.0 and 3.0: uint32
    start = 8 + size_bytes
    end = start + int.from_bytes(data[8:start], "little")
    dtype, shape = _header(data[start:end])
    if dtype.hasobject or int(np.prod(shape)) != 1:
        raise ValueError(f"holds {dtype} of shape {shape}, not one code")
    value = np.frombuffer(data, dtype=dtype, count=1, offset=end)[0]
    return int(value)  # a str code ('3', DAN's files) or a number; int() rejects anything else


def _entry(split: str, root: Path, ann: Path, classes: tuple[str, ...]):
    image = ann.parent.parent / "images" / f"{ann.name.removesuffix('_exp.npy')}.jpg"
    name, where = image.relative_to(root).as_posix(), ann.relative_to(root).as_posix()
    try:
        code = read_code(ann)
    except (OSError, ValueError, SyntaxError, TypeError) as e:
        return malformed(where, split, f"unreadable label file ({e})"), where
    if code in AFFECTNET_NON_EXPRESSION:
        return Exclusion(name, split, "non-expression code", f"{code} {AFFECTNET_NON_EXPRESSION[code]}"), where
    if code not in AFFECTNET_LABELS:
        raise DatasetError(f"{root / where}: expression code {code} is out of range; AffectNet uses 0..7 for "
                           "expressions and 8..10 for none/uncertain/no-face. Fix or delete the file")
    if AFFECTNET_LABELS[code] not in classes:
        return Exclusion(name, split, "contempt (not in the 7-class set)", "data.name=affectnet8_npy keeps it"), where
    return Record(name, AFFECTNET_LABELS[code], split, image), where


def listing(cfg: DataConfig, classes: tuple[str, ...]) -> Listing:
    """``classes`` is BASIC7 (affectnet7_npy: contempt left out) or BASIC8 (affectnet8_npy)."""
    root = dataset_root(cfg, LAYOUT)
    entries, sources = [], []
    for folder, split in _SETS.items():
        annotations = root / folder / "annotations"
        if not annotations.is_dir():
            raise DatasetError(f"{annotations} not found. Point data.root at the folder holding {LAYOUT}")
        sources.append(annotations)
        entries += [_entry(split, root, ann, classes) for ann in sorted(annotations.glob("*_exp.npy"))]
    records, excluded = drop_repeats(entries)
    return Listing(cfg.name, root, LAYOUT, classes, records, excluded, sources)
