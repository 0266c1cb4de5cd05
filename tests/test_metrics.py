"""Metrics from the confusion matrix; evaluation independent of batch size and order."""
import numpy as np
import pytest
import torch

from mfer.data.arrays import ArraySplit
from mfer.metrics import confusion_matrix, feature_compactness, summarize
from mfer.train.evaluate import evaluate


def test_hand_computed_metrics():
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    p = torch.tensor([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y, p, 4).numpy()
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    m = summarize(cm)
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["mean_class_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # class 3 absent: excluded
    f1 = [2 * 2 / (3 + 2), 2 * 1 / (2 + 2), 2 * 1 / (1 + 2)]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["per_class_acc"][3] is None


def test_evaluation_does_not_depend_on_batch_size_or_order():
    from mfer.config import ModelConfig
    from mfer.model import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(attn_variant="ds"), 7)
    rng = np.random.default_rng(0)
    split = ArraySplit(rng.integers(0, 255, (23, 32, 32, 3), dtype=np.uint8), rng.integers(0, 7, 23))
    perm = rng.permutation(23)
    shuffled = ArraySplit(split.images[perm], split.labels[perm])
    import contextlib

    run = lambda s, bs: evaluate(model, s, 7, bs, torch.device("cpu"), 32, False, contextlib.nullcontext)  # noqa: E731
    ref = run(split, 1)
    for s, bs in ((split, 23), (split, 4), (shuffled, 5)):
        out = run(s, bs)
        assert out["confusion"] == ref["confusion"]
        assert out["acc"] == ref["acc"] and out["macro_f1"] == ref["macro_f1"]
        assert out["compactness"] == pytest.approx(ref["compactness"], rel=1e-5)


def test_compactness_ranks_separated_classes_above_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    centres = rng.normal(0, 4, (5, 32))
    features = centres[labels] + rng.normal(0, 1, (len(labels), 32))
    separated = feature_compactness(features, labels)
    shuffled = feature_compactness(features, rng.permutation(labels))
    assert separated < 0.5 < 2 < shuffled  # shuffled centroids nearly coincide: inter-class distance collapses
    assert feature_compactness(10 * features + 3, labels) == pytest.approx(separated)  # scale and shift free
    assert np.isnan(feature_compactness(features[:40], labels[:40]))  # one class: undefined
