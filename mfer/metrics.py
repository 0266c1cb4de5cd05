"""Classification metrics, all computed from one confusion matrix.

Because every number derives from the summed confusion matrix, results cannot depend on batch
size or order (fer_pitfalls #10). Mean class accuracy averages per-class recall over classes
present in the ground truth; macro-F1 averages F1 over classes present in truth or prediction
(scikit-learn's ``f1_score(average="macro")`` semantics).
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
