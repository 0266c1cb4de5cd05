"""Batches straight from packed uint8 arrays to the device — no per-image decode, no workers.

Each epoch's order is a pure function of (seed, epoch), so a resumed run draws the same
batches. ``balanced`` draws with replacement with probability ∝ 1/class-count (the
class-balanced sampler AffectNet recipes use; fer_pitfalls #7). On CUDA the next batch is
gathered and copied from pinned memory in a background thread while the GPU works.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np
import torch

from mfer.data.arrays import ArraySplit


def epoch_order(labels: np.ndarray, seed: int, epoch: int, shuffle: bool, balanced: bool) -> np.ndarray:
    n = len(labels)
    if not shuffle:
        return np.arange(n)
    rng = np.random.default_rng([seed, epoch])
    if balanced:
        counts = np.bincount(labels)
        p = 1.0 / counts[labels]
        return rng.choice(n, size=n, replace=True, p=p / p.sum())
    return rng.permutation(n)


def _gather(split: ArraySplit, idx: np.ndarray, pin: bool) -> tuple[torch.Tensor, ...]:
    parts = [torch.from_numpy(split.take(idx)), torch.from_numpy(np.asarray(split.labels[idx], dtype=np.int64))]
    if split.targets is not None:
        parts.append(torch.from_numpy(np.asarray(split.targets[idx], dtype=np.float32)))
    return tuple(t.pin_memory() for t in parts) if pin else tuple(parts)


def iterate_batches(
    split: ArraySplit,
    batch_size: int,
    device: torch.device,
    order: np.ndarray,
    drop_last: bool = False,
    max_batches: int = 0,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yields (uint8 NHWC images, int64 labels) on ``device`` in ``order``, plus (B, K) float32
    soft targets for a split that has them."""
    stops = range(0, len(order) - (batch_size - 1 if drop_last else 0), batch_size)
    chunks = [order[i : i + batch_size] for i in stops]
    if max_batches:
        chunks = chunks[:max_batches]
    if device.type != "cuda":
        for idx in chunks:
            yield _gather(split, idx, pin=False)
        return
    q: queue.Queue = queue.Queue(maxsize=3)

    def produce() -> None:
        for idx in chunks:
            q.put(_gather(split, idx, pin=True))
        q.put(None)

    threading.Thread(target=produce, daemon=True).start()
    while (item := q.get()) is not None:
        yield tuple(t.to(device, non_blocking=True) for t in item)
