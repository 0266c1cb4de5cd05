"""Ada-DF (mfer/schemes/ada_df.py): its defining computations on hand-computed cases, a smoke fit
on synthetic data that updates the class distributions and resumes exactly, and its settings refused
by name."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mfer.config import ConfigError
from mfer.schemes.ada_df import (AdaDF, fused_target, fusion_weights, initial_distributions, loss_weights,
                                 rank_regularisation)
from mfer.train import fit
from mfer.train.checkpoint import load_state

from .conftest import TINY, compose_train, fit_keeping

ADA_DF = (*TINY, "scheme.name=ada_df")


def test_fused_target_mixes_the_class_distribution_and_the_auxiliary_prediction_by_the_weight():
    class_dist = torch.tensor([[0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    aux = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    target = fused_target(aux, class_dist, torch.tensor([1, 2]), torch.tensor([0.25, 1.0]))
    # 0.75·[0.5, 0.3, 0.2] + 0.25·[0.1, 0.8, 0.1]; weight 1 takes class 2's distribution alone
    assert torch.allclose(target, torch.tensor([[0.4, 0.425, 0.175], [0.25, 0.25, 0.5]]))


def test_fusion_weights_rescale_the_batch_attention_to_the_configured_range():
    w = fusion_weights(torch.tensor([0.3, 0.5, 0.7]), min_weight=0.2, max_weight=1.0)
    assert torch.allclose(w, torch.tensor([0.2, 0.6, 1.0]))
    assert torch.allclose(fusion_weights(torch.full((3,), 0.4), 0.2, 1.0), torch.full((3,), 0.2))


def test_rank_regularisation_is_the_margin_left_between_the_high_and_low_groups():
    assert float(rank_regularisation(torch.tensor([0.9, 0.8, 0.5, 0.45]), 0.5, 0.07)) == 0.0
    # high group mean 0.51, low 0.48: 0.48 − 0.51 + 0.07
    rr = rank_regularisation(torch.tensor([0.49, 0.52, 0.47, 0.5]), 0.5, 0.07)
    assert float(rr) == pytest.approx(0.04)


def test_loss_weights_ramp_the_kl_term_in_then_decay_the_ce_term():
    assert loss_weights(1, 3) == (1.0, pytest.approx(math.exp(-4 / 9)))
    assert loss_weights(3, 3) == (1.0, 1.0)
    assert loss_weights(6, 3) == (pytest.approx(math.exp(-0.25)), 1.0)


def test_class_distributions_are_the_confident_classes_mean_auxiliary_softmax():
    cfg = compose_train(*ADA_DF, "scheme.ada_df.threshold=0.5")
    scheme = AdaDF(cfg, num_classes=3, feat_dim=4)
    assert torch.allclose(scheme.class_dist, torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]]))
    scheme.start_epoch(0)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.5, 0.3, 0.2], [0.4, 0.5, 0.1]])
    scheme.accumulate(probs, torch.tensor([0, 1, 0, 1]), torch.tensor([0.2, 0.4, 0.6, 0.8]))
    scalars = scheme.end_epoch()
    # class 0: mean [0.6, 0.25, 0.15], 0.6 >= 0.5, kept; class 1: mean gives it 0.4 < 0.5 and class 2
    # has no sample: both fall back to the initial distribution
    expected = torch.tensor([[0.6, 0.25, 0.15], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
    assert torch.allclose(scheme.class_dist, expected)
    assert scalars["confident_classes"] == 1.0 and scalars["attention"] == pytest.approx(0.5)
    scheme.start_epoch(1)  # the sums start again from zero each epoch
    assert float(scheme.counts.sum()) == 0.0


def test_initial_distributions_sum_to_one():
    assert torch.allclose(initial_distributions(7, 0.7).sum(1), torch.ones(7))


def test_the_target_branch_is_the_models_head_trained_towards_the_class_distributions():
    """On the methods study's row (plain backbone + linear head): the KL term reads the class
    distributions, and the gradient reaches the model's head and the scheme's own branch."""
    from mfer.train.build import build_run

    cfg = compose_train(*ADA_DF, "model.method=baseline", "model.attn_variant=none", "model.msc_fractions=[]",
                        "loss.feature=none", "data.hflip=false", "data.random_erasing=0")
    run = build_run(cfg)
    run.scheme.start_epoch(0)
    first = np.arange(8)
    x, y = torch.from_numpy(run.data.train.take(first)), torch.from_numpy(run.data.train.labels[first]).long()
    torch.manual_seed(0)  # the same stochastic depth in both forwards
    loss = run.scheme.batch_loss(run, x, y)
    loss.backward()
    assert math.isfinite(loss.item())
    for name, module in (("model", run.model), ("scheme", run.scheme)):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters() if p.ndim == 2), name
    run.scheme.class_dist.copy_(torch.eye(len(run.scheme.class_dist)) * 0.9 + 0.1 / len(run.scheme.class_dist))
    torch.manual_seed(0)
    with torch.no_grad():
        assert run.scheme.batch_loss(run, x, y).item() != pytest.approx(loss.item())


def test_ada_df_trains_updates_its_class_distributions_and_resumes_exactly(tmp_path):
    cfg = compose_train(*ADA_DF, "scheme.ada_df.threshold=0.1", "scheme.ada_df.beta=2", "trainer.epochs=2",
                        "trainer.max_steps_per_epoch=2", "trainer.checkpoint_every=1", "trainer.checkpoint_every_s=0")
    full, kept = fit_keeping(cfg, tmp_path, epochs=(1,))
    history = full["history"]
    assert all(math.isfinite(h["train_loss"]) for h in history)
    assert [h["scheme_kl_weight"] for h in history] == [pytest.approx(math.exp(-0.25)), 1.0]  # β = 2: ramped in
    assert all(0 < h["scheme_attention"] < 1 and h["scheme_confident_classes"] > 0 for h in history)

    dist = load_state(kept[1])["scheme"]["class_dist"]
    k = dist.shape[0]
    assert not torch.allclose(dist, initial_distributions(k, 0.1))  # replaced by the auxiliary means
    assert torch.allclose(dist.sum(1), torch.ones(k))

    resumed = fit(cfg, tmp_path / "resumed", resume_from=kept[1])
    assert resumed["val_acc"] == full["val_acc"] and resumed["test_acc"] == full["test_acc"]
    assert [h["scheme_attention"] for h in resumed["history"]] == [h["scheme_attention"] for h in history]


@pytest.mark.parametrize("override, key", [
    ("scheme.ada_df.threshold=1.5", r"scheme\.ada_df\.threshold=1\.5"),
    ("scheme.ada_df.beta=0", r"scheme\.ada_df\.beta=0"),
    ("scheme.ada_df.min_weight=0.9 scheme.ada_df.max_weight=0.5",
     r"scheme\.ada_df\.min_weight=0\.9.*max_weight=0\.5"),
    ("scheme.ada_df.tops=1.0", r"scheme\.ada_df\.tops=1\.0"),
    ("scheme.ada_df.margin=-0.1", r"scheme\.ada_df\.margin=-0\.1"),
])
def test_bad_ada_df_settings_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        compose_train(*ADA_DF, *override.split())
