"""Evaluation: summed-head predictions over a split into one confusion matrix."""
from __future__ import annotations

import numpy as np
import torch

from mfer.data.arrays import ArraySplit
from mfer.data.augment import to_model_input
from mfer.data.batches import iterate_batches
from mfer.metrics import confusion_matrix, summarize


@torch.no_grad()
def predict_logits(model, split: ArraySplit, batch_size: int, device: torch.device, size: int,
                   channels_last: bool, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed logits (N, K) float32 on CPU, labels (N,)) in the split's order."""
    model.eval()
    logits, labels = [], []
    for x, y in iterate_batches(split, batch_size, device, np.arange(len(split))):
        with autocast():
            out = model(to_model_input(x, size, channels_last))
        logits.append(out.float().cpu())
        labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def evaluate(model, split: ArraySplit, num_classes: int, batch_size: int, device: torch.device, size: int,
             channels_last: bool, autocast) -> dict:
    logits, labels = predict_logits(model, split, batch_size, device, size, channels_last, autocast)
    cm = confusion_matrix(labels, logits.argmax(1), num_classes).numpy()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return {**summarize(cm), "loss": loss, "confusion": cm.tolist()}
