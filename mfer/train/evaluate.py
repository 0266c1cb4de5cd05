"""Evaluation: summed-head predictions over a split into one confusion matrix, plus the
compactness of the pooled features (both computed once over the whole split). An optional
``transform`` of the normalised model input evaluates the same split under a degradation (MAFER's
low-resolution accuracies) without a second copy of this code."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from mfer.data.arrays import ArraySplit
from mfer.data.augment import to_model_input
from mfer.data.batches import iterate_batches
from mfer.metrics import confusion_matrix, feature_compactness, summarize


@dataclass
class Predictions:
    """A split's model outputs, in the split's order, float32 on the CPU."""

    logits: torch.Tensor  # (N, K) summed logits of all heads: what MFER predicts with
    features: torch.Tensor  # (N, D) pooled normalised feature (``forward_head(pre_logits=True)``)
    labels: torch.Tensor  # (N,)


# A function of the normalised NCHW model input, applied before the forward (None: the input as is).
InputTransform = Optional[Callable[[torch.Tensor], torch.Tensor]]


@torch.no_grad()
def predict(model, split: ArraySplit, batch_size: int, device: torch.device, size: int,
            channels_last: bool, autocast, transform: InputTransform = None) -> Predictions:
    """Logits and pooled features from one pass of the backbone (timm contract: features, then head)."""
    model.eval()
    logits, features, labels = [], [], []
    for x, y, *_ in iterate_batches(split, batch_size, device, np.arange(len(split))):
        with autocast():
            x = to_model_input(x, size, channels_last)
            fmap = model.forward_features(x if transform is None else transform(x))
            feature = model.forward_head(fmap, pre_logits=True)
            out = model.classify(feature)
        logits.append(out.float().cpu())
        features.append(feature.float().cpu())
        labels.append(y.cpu())
    return Predictions(torch.cat(logits), torch.cat(features), torch.cat(labels))


def evaluate(model, split: ArraySplit, num_classes: int, batch_size: int, device: torch.device, size: int,
             channels_last: bool, autocast, transform: InputTransform = None) -> dict:
    p = predict(model, split, batch_size, device, size, channels_last, autocast, transform)
    cm = confusion_matrix(p.labels, p.logits.argmax(1), num_classes).numpy()
    loss = torch.nn.functional.cross_entropy(p.logits, p.labels).item()
    return {**summarize(cm), "loss": loss, "compactness": feature_compactness(p.features, p.labels),
            "confusion": cm.tolist()}
