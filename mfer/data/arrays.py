"""The in-memory form every dataset reaches before training: packed uint8 arrays + labels.

Images are (N, H, W, 3) uint8 in NHWC order — often a read-only ``np.memmap`` of the packed
cache, so that several trials on one node share a single copy through the page cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ArraySplit:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64, indices into DatasetBundle.classes

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "ArraySplit":
        index = np.sort(index)  # sorted reads of a memmap are sequential
        return ArraySplit(self.images[index], self.labels[index])


@dataclass
class DatasetBundle:
    """Train/val/test splits of one dataset, its class names, and a content fingerprint."""

    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    classes: tuple[str, ...]
    fingerprint: str  # identifies the exact images and labels (provenance in every result)

    def counts(self) -> dict[str, list[int]]:
        k = len(self.classes)
        return {
            name: np.bincount(split.labels, minlength=k).tolist()
            for name, split in (("train", self.train), ("val", self.val), ("test", self.test))
        }
