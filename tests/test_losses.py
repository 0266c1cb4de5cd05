"""Loss values on hand-checkable cases, and gradients reaching the learnable centres."""
import math

import pytest
import torch
import torch.nn.functional as F

from mfer.config import LossConfig
from mfer.losses import FEATURE_LOSSES, CenterLoss, DSFStandInLoss, LGMLoss, MFERLoss


def _set_centres(loss, centres):
    with torch.no_grad():
        loss.centres.copy_(torch.tensor(centres))
    return loss


def test_center_loss_value():
    loss = _set_centres(CenterLoss(2, 2), [[0.0, 0.0], [3.0, 4.0]])
    f = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    # ½·1 for sample 0 (class 0), ½·4 for sample 1 (class 1) -> mean 1.25
    assert loss(f, torch.tensor([0, 1])).item() == pytest.approx(1.25)


def test_lgm_loss_value():
    loss = _set_centres(LGMLoss(2, 1, alpha=1.0, likelihood_weight=0.5), [[0.0], [2.0]])
    f, y = torch.tensor([[1.0]]), torch.tensor([0])
    # d = [0.5, 0.5]; margin logits = [-0.5*2, -0.5] ; CE = -log(e^-1 / (e^-1 + e^-0.5)); + 0.5 * 0.5
    ce = -math.log(math.exp(-1) / (math.exp(-1) + math.exp(-0.5)))
    assert loss(f, y).item() == pytest.approx(ce + 0.25, rel=1e-6)


def test_dsf_stand_in_value():
    loss = _set_centres(DSFStandInLoss(2, 1, smoothing=0.1), [[0.0], [2.0]])
    f, y = torch.tensor([[0.0]]), torch.tensor([0])
    # d = [0, 2]; p = softmax([0, -2]); smoothed CE + ½‖f − c_y‖² (= 0)
    logp = torch.log_softmax(torch.tensor([0.0, -2.0]), 0)
    want = 0.9 * -logp[0] + 0.1 * -logp.mean()
    assert loss(f, y).item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["center", "lgm", "dsf"])
def test_gradients_reach_the_centres(name):
    torch.manual_seed(0)
    crit = MFERLoss(LossConfig(feature=name, weight=1.0), num_classes=3, feat_dim=4)
    feature = torch.randn(6, 4, requires_grad=True)
    logits = [torch.randn(6, 3, requires_grad=True)]
    crit(logits, feature, torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    g = crit.feature_loss.centres.grad
    assert g is not None and g.abs().sum() > 0 and feature.grad.abs().sum() > 0


def test_total_is_sum_of_head_lsce_plus_weighted_feature_loss():
    torch.manual_seed(0)
    crit = MFERLoss(LossConfig(feature="center", weight=0.01, label_smoothing=0.1), 3, 4)
    feature, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    heads = [torch.randn(5, 3), torch.randn(5, 3)]
    want = sum(F.cross_entropy(h, y, label_smoothing=0.1) for h in heads) + 0.01 * crit.feature_loss(feature, y)
    torch.testing.assert_close(crit(heads, feature, y), want)
    assert MFERLoss(LossConfig(feature="none"), 3, 4).feature_loss is None
    assert set(FEATURE_LOSSES) == {"none", "center", "lgm", "dsf"}
