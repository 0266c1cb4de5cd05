"""The in-memory form every dataset reaches before training: packed uint8 arrays + labels.

Images are (N, H, W, 3) uint8 in NHWC order — often a read-only ``np.memmap`` of the packed
cache, so that several trials on one node share a single copy through the page cache. A subset
(the train/val carve) keeps the shared array and a row index instead of copying the rows:
fancy-indexing a memmap would load a private copy of the whole split into every trial.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class ArraySplit:
    images: np.ndarray  # (M, H, W, 3) uint8; with ``rows`` set, possibly shared with other splits
    labels: np.ndarray  # (N,) int64, indices into DatasetBundle.classes
    rows: Optional[np.ndarray] = None  # (N,) rows of ``images`` in this split; None: all M == N rows
    targets: Optional[np.ndarray] = None  # (N, K) float32 soft training targets (vote rules); None: labels only

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        n_rows = len(self.images) if self.rows is None else len(self.rows)
        if n_rows != len(self.labels):
            raise ValueError(f"{n_rows} images but {len(self.labels)} labels")
        if self.targets is not None and (self.targets.ndim != 2 or len(self.targets) != len(self.labels)):
            raise ValueError(f"targets must be (N={len(self.labels)}, K), got {self.targets.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The images at split positions ``index``, as an in-memory (len(index), H, W, 3) array."""
        return np.ascontiguousarray(self.images[index if self.rows is None else self.rows[index]])

    def subset(self, index: np.ndarray) -> "ArraySplit":
        index = np.sort(index)  # sorted reads of a memmap are sequential
        rows = index if self.rows is None else self.rows[index]
        return ArraySplit(self.images, self.labels[index], rows,
                          None if self.targets is None else np.asarray(self.targets[index]))


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
