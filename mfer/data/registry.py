"""Dataset registry: ``data.name`` -> a loader returning a DatasetBundle.

Every loader ends in the same place — packed uint8 arrays with labels in the canonical class
vocabulary — and carves the validation split from train with the same seeded, stratified rule.
Adding a dataset is one function and one entry here.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

import numpy as np

from mfer.config import DataConfig
from mfer.data.arrays import ArraySplit, DatasetBundle
from mfer.data.cache import cache_root, cached
from mfer.data.classes import BASIC7
from mfer.data.splits import stratified_split
from mfer.data.synthetic import GENERATOR_VERSION, SyntheticSpec, generate


def carve_validation(train: ArraySplit, test: ArraySplit, classes, fingerprint: str, cfg: DataConfig) -> DatasetBundle:
    tr, va = stratified_split(train.labels, cfg.val_fraction, cfg.split_seed)
    split_fp = hashlib.sha256(f"{fingerprint}:{cfg.val_fraction}:{cfg.split_seed}".encode()).hexdigest()[:16]
    return DatasetBundle(train.subset(tr), train.subset(va), test, tuple(classes), split_fp)


def load_synthetic(cfg: DataConfig) -> DatasetBundle:
    """The synthetic FER set at ``data.image_size``, generated once per node and memory-mapped."""
    specs = {
        "train": SyntheticSpec(cfg.synthetic_train, cfg.image_size, cfg.synthetic_seed * 2, cfg.synthetic_difficulty),
        "test": SyntheticSpec(cfg.synthetic_test, cfg.image_size, cfg.synthetic_seed * 2 + 1, cfg.synthetic_difficulty),
    }
    identity = {"generator": GENERATOR_VERSION, **{k: repr(v) for k, v in specs.items()}}
    key = "synthetic-" + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]

    def build():
        arrays = {}
        for split, spec in specs.items():
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = generate(spec)
        return arrays, {"dataset": "synthetic", "specs": {k: repr(v) for k, v in specs.items()}, "classes": BASIC7}

    arrays, _ = cached(cache_root(cfg.cache_dir), key, build)
    train = ArraySplit(arrays["train_images"], np.asarray(arrays["train_labels"]))
    test = ArraySplit(arrays["test_images"], np.asarray(arrays["test_labels"]))
    return carve_validation(train, test, BASIC7, key, cfg)


DATASETS: dict[str, Callable[[DataConfig], DatasetBundle]] = {
    "synthetic": load_synthetic,
}


def load_dataset(cfg: DataConfig) -> DatasetBundle:
    return DATASETS[cfg.name](cfg)
