"""DNFER (mfer/schemes/dnfer.py): the dynamic class thresholds select exactly the samples they
should, the supervised loss sees only those, the thresholds follow the batches as the released
code computes them, a run trains and resumes exactly, and bad settings are refused by key."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from mfer.config import ConfigError, LossConfig, TrainConfig
from mfer.losses import MFERLoss
from mfer.model.output import ModelOutput
from mfer.schemes.dnfer import DNFER, clean_mask, symmetric_kl, updated_thresholds
from mfer.train import fit
from mfer.train.checkpoint import load_state

from .conftest import TINY, compose_train, fit_keeping

# Four samples, three classes. Batch means (the thresholds): [0.35, 0.325, 0.325].
PROBS = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]])
LABELS = torch.tensor([0, 1, 1, 1])


def test_the_batch_mean_thresholds_select_exactly_the_samples_reaching_their_class():
    thr = updated_thresholds(torch.full((3,), 1 / 3), PROBS, momentum=0.0)
    assert torch.allclose(thr, torch.tensor([0.35, 0.325, 0.325]))
    # p[y]: 0.6 ≥ 0.35, 0.5 ≥ 0.325, 0.1 < 0.325, 0.4 ≥ 0.325
    assert clean_mask(PROBS, LABELS, thr).tolist() == [True, True, False, True]
    assert clean_mask(PROBS, LABELS, torch.tensor([0.7, 0.45, 0.2])).tolist() == [False, True, False, False]


def test_thresholds_after_a_few_batches_equal_the_hand_computed_values():
    a = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.1, 0.8]])  # means [0.3, 0.3, 0.4]
    b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # [0.5, 0.25, 0.25]
    start = torch.full((3,), 0.2)
    released = start
    smoothed = start
    for batch in (a, b):
        released = updated_thresholds(released, batch, momentum=0.0)
        smoothed = updated_thresholds(smoothed, batch, momentum=0.5)
    assert torch.allclose(released, torch.tensor([0.5, 0.25, 0.25]))  # the last batch's means alone
    # 0.25·0.2 + 0.25·[0.3, 0.3, 0.4] + 0.5·[0.5, 0.25, 0.25]
    assert torch.allclose(smoothed, torch.tensor([0.375, 0.25, 0.275]))


def test_symmetric_kl_is_the_hand_computed_value_in_bits():
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.25, 0.75]])
    want = 0.25 * 1 + (-0.25) * (math.log2(0.5) - math.log2(0.75))  # Σ (p − q)(log2 p − log2 q)
    assert symmetric_kl(p, q).item() == pytest.approx(want) and symmetric_kl(p, p).item() == 0


def _scheme_and_run(momentum: float = 0.0):
    cfg = TrainConfig()
    cfg.scheme.dnfer.momentum = momentum
    scheme = DNFER(cfg, num_classes=3, feat_dim=2)
    criterion = MFERLoss(LossConfig(label_smoothing=0.0, feature="none"), 3, 2)
    return scheme, SimpleNamespace(criterion=criterion)


def _output(probs: torch.Tensor) -> ModelOutput:
    return ModelOutput(logits=[probs.log()], feature=torch.zeros(len(probs), 2))


def test_the_supervised_loss_is_the_criterion_on_the_selected_samples_only():
    scheme, run = _scheme_and_run()
    loss = scheme.supervised(run, 1, _output(PROBS), PROBS, LABELS, ())
    assert loss.item() == pytest.approx(-(math.log(0.6) + math.log(0.5) + math.log(0.4)) / 3, rel=1e-5)
    assert torch.allclose(scheme.thresholds[1], torch.tensor([0.35, 0.325, 0.325]))  # the strong view's row
    assert torch.allclose(scheme.thresholds[0], torch.full((3,), 1 / 3))  # the weak view's untouched
    # 3 of 4 selected; the thresholds of their labels: 0.35 + 3·0.325
    assert torch.allclose(scheme.epoch_sums, torch.tensor([3.0, 4.0, 1.325]))


def test_no_sample_selected_falls_back_to_all_of_them():
    scheme, run = _scheme_and_run()
    probs, labels = torch.tensor([[0.2, 0.8, 0.0], [0.8, 0.2, 0.0]]), torch.tensor([0, 1])  # own 0.2 < mean 0.5
    loss = scheme.supervised(run, 0, _output(probs.clamp_min(1e-6)), probs, labels, ())
    assert loss.item() == pytest.approx(-math.log(0.2), rel=1e-4)
    assert scheme.epoch_sums[:2].tolist() == [0.0, 2.0]  # reported as none selected


# Epoch 1 warms up, epochs 2-3 select; the resume from epoch 2's checkpoint replays epoch 3, whose
# thresholds start from the checkpointed ones (momentum > 0: with the released 0 each batch's are its own).
SMOKE = (*TINY, "data.batch_size=8", "scheme.name=dnfer", "scheme.dnfer.warmup_epochs=1",
         "scheme.dnfer.momentum=0.5", "trainer.epochs=3", "trainer.max_steps_per_epoch=1",
         "trainer.checkpoint_every=1", "trainer.checkpoint_every_s=0")


def test_a_dnfer_run_trains_selects_and_resumes_exactly(tmp_path):
    cfg = compose_train(*SMOKE)
    full, kept = fit_keeping(cfg, tmp_path, epochs=(1, 2))  # the resumable ones
    history = full["history"]
    k = len(full["classes"])
    assert all(math.isfinite(h["train_loss"]) for h in history)
    assert history[0]["scheme_selected"] == 1.0  # the warm-up trains on every sample
    assert history[0]["scheme_threshold"] == 0.0  # no selection yet
    assert all(0 < h["scheme_selected"] < 1 for h in history[1:])
    assert all(0 < h["scheme_threshold"] < 1 for h in history[1:])

    uniform = torch.full((2, k), 1 / k)
    assert torch.equal(load_state(kept[1])["scheme"]["thresholds"], uniform)  # the warm-up selects nothing
    thresholds = load_state(kept[2])["scheme"]["thresholds"]
    assert thresholds.shape == (2, k) and torch.allclose(thresholds.sum(1), torch.ones(2))  # mean posteriors
    assert not torch.allclose(thresholds, uniform)  # moved by the selecting epoch
    resumed = fit(cfg, tmp_path / "resumed", resume_from=kept[2])
    for key in ("train_loss", "scheme_selected", "scheme_threshold", "val_acc"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in history], key
    assert resumed["test_acc"] == full["test_acc"]


@pytest.mark.parametrize("override, key", [
    ("scheme.dnfer.alpha=1.5", "scheme.dnfer.alpha"),
    ("scheme.dnfer.warmup_epochs=-1", "scheme.dnfer.warmup_epochs"),
    ("scheme.dnfer.magnitude=11", "scheme.dnfer.magnitude"),
    ("scheme.dnfer.n_ops=-2", "scheme.dnfer.n_ops"),
    ("scheme.dnfer.momentum=1", "scheme.dnfer.momentum"),
])
def test_bad_settings_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        compose_train(*TINY, "scheme.name=dnfer", override)
