"""The model-output contract: MFER's forward_train returns a ModelOutput, and the training step
adds whatever auxiliary losses a model returns to the criterion, so non-MFER methods train as is."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from mfer.config import LossConfig, ModelConfig
from mfer.data.augment import to_model_input
from mfer.losses import MFERLoss
from mfer.model import build_model
from mfer.model.output import ModelOutput
from mfer.train.build import build_run
from mfer.train.engine import train_step

from .conftest import TINY, compose_train


class TinyWithAux(nn.Module):
    """A linear classifier whose forward_train adds ``3 w²``, a loss only ``w`` feeds."""

    def __init__(self, in_dim: int, feat_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Linear(in_dim, feat_dim)
        self.head = nn.Linear(feat_dim, num_classes)
        self.w = nn.Parameter(torch.tensor(0.7))

    def forward_train(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> ModelOutput:
        feature = self.body(x.flatten(1))
        return ModelOutput([self.head(feature)], feature, aux_losses={"reg": 3.0 * self.w**2})


def test_mfer_forward_train_follows_the_contract():
    torch.manual_seed(0)
    model = build_model(ModelConfig(), 7).eval()
    x = torch.randn(2, 3, 64, 64)
    out = model.forward_train(x, maps=("stage3",))
    assert isinstance(out, ModelOutput) and out.aux_losses == {}
    assert list(out.feature_maps) == ["stage3"] and out.feature_maps["stage3"].shape == (2, 160, 4, 4)
    torch.testing.assert_close(out.feature, model.forward_head(model.forward_features(x), pre_logits=True))
    with pytest.raises(KeyError, match="stage9"):
        model.forward_train(x, maps=("stage9",))


def test_training_step_adds_the_models_auxiliary_losses():
    cfg = compose_train(*TINY, "data.hflip=false", "data.random_erasing=0", "optim.grad_clip=0")
    run = build_run(cfg)
    k, size = len(run.data.classes), cfg.data.image_size
    model = TinyWithAux(3 * size * size, 16, k)
    criterion = MFERLoss(LossConfig(feature="center", weight=0.5), k, 16)
    params = [*model.parameters(), *criterion.parameters()]
    run = dataclasses.replace(run, model=model, criterion=criterion, params=params,
                              optimizer=torch.optim.SGD(params, lr=0.1))
    x_u8 = torch.from_numpy(run.data.train.take(np.arange(8)))
    y = torch.from_numpy(np.asarray(run.data.train.labels[:8], dtype=np.int64))
    with torch.no_grad():
        out = model.forward_train(to_model_input(x_u8, size, False))
        expected = criterion(out.logits, out.feature, y) + 3.0 * 0.7**2
    loss = train_step(run, x_u8, y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert model.w.grad.item() == pytest.approx(2 * 3.0 * 0.7)  # d(3 w²)/dw: the aux loss was backpropagated
    assert model.w.item() == pytest.approx(0.7 - 0.1 * 4.2)  # and the optimiser stepped on it
