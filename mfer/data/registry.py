"""Dataset registry: ``data.name`` -> a loader returning a DatasetBundle.

Every loader ends in the same place — packed uint8 arrays with labels in the canonical class
vocabulary — and carves the validation split from train with the same seeded, stratified rule
(FERPlus and folder trees that ship an official validation split use theirs). Adding a dataset
is one adapter in ``mfer/data/formats`` and one entry here.
"""
from __future__ import annotations

import hashlib
import json
import logging
from functools import partial
from typing import Callable

import numpy as np

from mfer.config import ConfigError, DataConfig
from mfer.data.arrays import ArraySplit, DatasetBundle
from mfer.data.cache import cache_root, cached
from mfer.data.classes import BASIC7, BASIC8
from mfer.data.formats import affectnet, affectnet_npy, ferplus, ferplus_folders, folder, rafdb
from mfer.data.formats.base import Listing
from mfer.data.pack import pack
from mfer.data.splits import stratified_split
from mfer.data.synthetic import GENERATOR_VERSION, SyntheticSpec, generate

log = logging.getLogger(__name__)


def _missing_classes(classes, labels_by_split: dict[str, np.ndarray]) -> list[str]:
    """One sentence per split that lacks a class: "no validation images for class(es) ... (N in all)"."""
    out = []
    for split, labels in labels_by_split.items():
        counts = np.bincount(labels, minlength=len(classes))
        empty = [str(c) for c, n in zip(classes, counts) if n == 0]
        if empty:
            out.append(f"no {split} images for class(es) {', '.join(empty)} ({len(labels)} {split} images in all)")
    return out


def _require_every_class(classes, labels_by_split: dict[str, np.ndarray]) -> None:
    """A class with no train or no validation images trains or selects on nothing while every metric
    still prints (``data.val_fraction=0.99`` on a small set, a tiny synthetic set): refuse it by name."""
    missing = _missing_classes(classes, labels_by_split)
    if missing:
        raise ConfigError(f"data: {missing[0]}: add images (data.synthetic_train for synthetic data), or move "
                          "data.val_fraction towards 0.1")


def _warn_missing_classes(classes, labels_by_split: dict[str, np.ndarray]) -> None:
    """A release's own splits are used as published, so a class absent from them (FERPlus's contempt
    in a subset, an empty class folder in a val/ tree) is not ours to refuse: it is said by name,
    since that class's validation accuracy then means nothing."""
    for sentence in _missing_classes(classes, labels_by_split):
        log.warning(f"data: {sentence} in the release's own splits (used as published): that class's "
                    "accuracy means nothing")


def carve_validation(train: ArraySplit, test: ArraySplit, classes, fingerprint: str, cfg: DataConfig) -> DatasetBundle:
    tr, va = stratified_split(train.labels, cfg.val_fraction, cfg.split_seed)
    _require_every_class(classes, {"train": train.labels[tr], "validation": train.labels[va]})
    split_fp = hashlib.sha256(f"{fingerprint}:{cfg.val_fraction}:{cfg.split_seed}".encode()).hexdigest()[:16]
    return DatasetBundle(train.subset(tr), train.subset(va), test, tuple(classes), split_fp)


def load_synthetic(cfg: DataConfig) -> DatasetBundle:
    """The synthetic FER set at ``data.image_size``, generated once per node and memory-mapped."""
    specs = {
        "train": SyntheticSpec(cfg.synthetic_train, cfg.image_size, cfg.synthetic_seed * 2, cfg.synthetic_difficulty),
        "test": SyntheticSpec(cfg.synthetic_test, cfg.image_size, cfg.synthetic_seed * 2 + 1, cfg.synthetic_difficulty),
    }
    # The generator's version is part of the identity: a rendering change makes new arrays, a new
    # cache entry and a new dataset fingerprint, instead of silently reusing stale images.
    identity = {"generator_version": GENERATOR_VERSION, "specs": {k: repr(v) for k, v in specs.items()}}
    key = "synthetic-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def build():
        arrays = {}
        for split, spec in specs.items():
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = generate(spec)
        return arrays, {"dataset": "synthetic", **identity, "classes": BASIC7}

    arrays, _ = cached(cache_root(cfg.cache_dir), key, build)
    train = ArraySplit(arrays["train_images"], np.asarray(arrays["train_labels"]))
    test = ArraySplit(arrays["test_images"], np.asarray(arrays["test_labels"]))
    return carve_validation(train, test, BASIC7, key, cfg)


def load_packed(list_dataset: Callable[[DataConfig], Listing], cfg: DataConfig) -> DatasetBundle:
    """A real dataset: list it with its adapter, decode it once per node into the cache, memory-map it."""
    packed = pack(list_dataset(cfg), cfg.image_size, cache_root(cfg.cache_dir))
    s = packed.splits
    if "val" in s:  # the release's own validation split (FERPlus PublicTest, a folder tree's val/ beside test/)
        _warn_missing_classes(packed.classes, {"train": s["train"].labels, "validation": s["val"].labels})
        return DatasetBundle(s["train"], s["val"], s["test"], packed.classes, packed.content_hash)
    return carve_validation(s["train"], s["test"], packed.classes, packed.content_hash, cfg)


# Real datasets: data.name -> adapter, one per on-disk layout (the README's "Datasets" table maps
# each public layout to its data= preset). Each is decoded once per node into the packed cache.
LISTINGS: dict[str, Callable[[DataConfig], Listing]] = {
    "rafdb": rafdb.listing,
    "rafdb_lists": rafdb.lists_listing,
    "affectnet7": partial(affectnet.listing, classes=BASIC7),
    "affectnet8": partial(affectnet.listing, classes=BASIC8),
    "affectnet7_npy": partial(affectnet_npy.listing, classes=BASIC7),
    "affectnet8_npy": partial(affectnet_npy.listing, classes=BASIC8),
    "ferplus": ferplus.listing,
    "ferplus_folders": ferplus_folders.listing,
    "folder": folder.listing,
}
# Which layouts take which layout-specific options (checked by mfer.validation).
CLASS_ORDER_DATASETS = ("folder", "rafdb_lists")  # numbered labels: data.class_order says what they mean
FACE_BOX_DATASETS = ("affectnet7", "affectnet8")  # label files with face boxes: data.crop_face_box
VOTE_DATASETS = ("ferplus", "ferplus_folders")  # crowd votes: data.ferplus_labels
DATASETS: dict[str, Callable[[DataConfig], DatasetBundle]] = {
    "synthetic": load_synthetic,
    **{name: partial(load_packed, list_dataset) for name, list_dataset in LISTINGS.items()},
}


def load_dataset(cfg: DataConfig) -> DatasetBundle:
    return DATASETS[cfg.name](cfg)
