"""Classification metrics, all computed from one confusion matrix.

Because every number derives from the summed confusion matrix, results cannot depend on batch
size or order (fer_pitfalls #10). Mean class accuracy averages per-class recall over classes
present in the ground truth; macro-F1 averages F1 over classes present in truth or prediction
(scikit-learn's ``f1_score(average="macro")`` semantics).

``feature_compactness`` is the one metric not from the confusion matrix: it measures how tightly
the pooled features cluster by class, the property MFER's feature losses aim at.
"""
from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(target: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts, rows = true class, columns = predicted class."""
    flat = target.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarize(cm: np.ndarray) -> dict:
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(1)
    predicted = cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / support
        f1 = 2 * tp / (support + predicted)
    present = support > 0
    seen = present | (predicted > 0)
    total = cm.sum()
    return {
        "acc": float(tp.sum() / total) if total else float("nan"),
        "mean_class_acc": float(recall[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(f1[seen].mean()) if seen.any() else float("nan"),
        "per_class_acc": [float(r) if p else None for r, p in zip(recall, present)],
        "n": int(total),
    }


def feature_compactness(features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """How tightly features cluster by class: lower = more compact. Our measure, not the paper's.

    MFER shows compactness only as t-SNE pictures; to compare it across seeds we need a number.
    With classes k present and centroids mu_k = mean of class k's features::

        intra = mean_k mean_{i in k} ||f_i - mu_k||_2      (each class weighs the same)
        inter = mean_{k < l} ||mu_k - mu_l||_2
        compactness = intra / inter

    The ratio is scale-free (scaling the features leaves it unchanged), so it compares models
    whose features differ in norm. It is computed once over the whole split, in float64, so it
    does not depend on batch size or order. NaN with fewer than two classes present.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    centroids = np.stack([f[y == k].mean(0) for k in present])
    intra = np.mean([np.linalg.norm(f[y == k] - c, axis=1).mean() for k, c in zip(present, centroids)])
    i, j = np.triu_indices(len(present), 1)
    inter = np.linalg.norm(centroids[i] - centroids[j], axis=1).mean()
    return float(intra / inter) if inter > 0 else float("nan")
