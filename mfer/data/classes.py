"""One canonical class vocabulary, and explicit per-dataset label tables into it.

Canonical order is alphabetical, as MFER's ImageFolder loader produced and as its confusion
matrices are drawn (AN, DI, FE, HA, NE, SA, SU; with CO for the 8-class sets). Each dataset
keeps its own label ids on disk; the tables below are the only place they are translated, so
RAF-DB's 1..7 order and AffectNet's codes cannot be confused (fer_pitfalls #9).
"""
from __future__ import annotations

BASIC7 = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
BASIC8 = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
ABBREVIATIONS = {
    "anger": "AN", "contempt": "CO", "disgust": "DI", "fear": "FE",
    "happiness": "HA", "neutral": "NE", "sadness": "SA", "surprise": "SU",
}

# RAF-DB basic, EmoLabel/list_patition_label.txt: 1..7.
RAFDB_LABELS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
# AffectNet `expression` codes; 8 None, 9 Uncertain, 10 No-Face are not expressions.
AFFECTNET_LABELS = {
    0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise",
    4: "fear", 5: "disgust", 6: "anger", 7: "contempt",
}
AFFECTNET_NON_EXPRESSION = {8: "none", 9: "uncertain", 10: "no-face"}
# FER2013 `emotion` codes (fer2013.csv).
FER2013_LABELS = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
# FERPlus vote columns of fer2013new.csv (in file order), and the non-emotion columns.
FERPLUS_VOTE_COLUMNS = {
    "neutral": "neutral", "happiness": "happiness", "surprise": "surprise", "sadness": "sadness",
    "anger": "anger", "disgust": "disgust", "fear": "fear", "contempt": "contempt",
}
FERPLUS_NON_EMOTION = ("unknown", "NF")
# What the numbers of a numeric class-folder tree or a per-split label list mean (data.class_order).
# Each name states the dataset whose order it is and where its numbering starts, so nothing is guessed
# from folder contents: Kaggle's RAF-DB copy numbers folders 1..7 in RAF-DB's order, DAN's AffectNet
# export (yaoing/DAN utils/convert_affectnet.py) numbers them 0..7 by expression code, APViT's and
# SCAN-CCI's EmoLabel lists keep RAF-DB's 1..7 (their loaders subtract 1).
_RAF_ORDER = [RAFDB_LABELS[i] for i in range(1, 8)]
_FERPLUS_ORDER = list(FERPLUS_VOTE_COLUMNS.values())
CLASS_ORDERS: dict[str, dict[int, str]] = {
    "rafdb_1to7": {i + 1: c for i, c in enumerate(_RAF_ORDER)},
    "rafdb_0to6": dict(enumerate(_RAF_ORDER)),
    "affectnet_0to7": dict(AFFECTNET_LABELS),
    "affectnet_0to6": {k: v for k, v in AFFECTNET_LABELS.items() if k < 7},
    "fer2013_0to6": dict(FER2013_LABELS),
    "ferplus_0to7": dict(enumerate(_FERPLUS_ORDER)),
}
# Numbers an order knows and leaves out by rule: AffectNet-7 is AffectNet without contempt (code 7), as
# DAN's 7-class loader drops folder 7; listed in the report, not an error.
CLASS_ORDER_LEFT_OUT: dict[str, dict[int, str]] = {"affectnet_0to6": {7: "contempt (not in the 7-class set)"}}


def describe_order(order: str) -> str:
    """``rafdb_1to7 (1 surprise, 2 fear, …)``: what an order means, for messages."""
    return f"{order} ({', '.join(f'{k} {v}' for k, v in CLASS_ORDERS[order].items())})"


# Class-folder names seen in class-per-folder releases (FER2013's ImageFolder exports, AffectNet and
# RAF-DB mirrors), compared case-insensitively; canonical names and abbreviations are accepted too.
FOLDER_ALIASES = {
    "angry": "anger", "contemptuous": "contempt", "disgusted": "disgust", "fearful": "fear",
    "happy": "happiness", "sad": "sadness", "surprised": "surprise",
}
_BY_ABBREVIATION = {abbr.lower(): name for name, abbr in ABBREVIATIONS.items()}


def index_of(vocabulary: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(vocabulary)}


def canonical_class(folder_name: str) -> str | None:
    """The canonical class a folder name stands for, or None if it names none."""
    key = folder_name.strip().lower()
    if key in BASIC8:
        return key
    return FOLDER_ALIASES.get(key) or _BY_ABBREVIATION.get(key)
