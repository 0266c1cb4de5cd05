"""The training-scheme contract (mfer/schemes/base.py): a scheme's parameters are optimised, its
state travels in the resumable checkpoint, its per-epoch scalars and extra evaluation figures land
in the metrics, and ``scheme.name`` is validated like every registry key."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mfer.config import ConfigError
from mfer.schemes import SCHEMES, TrainingScheme
from mfer.train import fit
from mfer.train.checkpoint import load_state

from .conftest import TINY, compose_train, fit_keeping


class Counting(TrainingScheme):
    """The standard loss plus ``w²`` (so ``w`` is trained), a buffer counting the steps taken, the
    epoch's step count as a scalar and a constant extra figure per evaluated split."""

    def __init__(self, cfg, num_classes: int, feat_dim: int) -> None:
        super().__init__(cfg, num_classes, feat_dim)
        self.w = nn.Parameter(torch.tensor(2.0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.epoch_steps = 0

    def batch_loss(self, run, x_u8, y, *soft):
        self.steps += 1
        self.epoch_steps += 1
        return super().batch_loss(run, x_u8, y, *soft) + self.w ** 2

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        self.epoch_steps = 0

    def end_epoch(self) -> dict[str, float]:
        return {"steps": float(self.epoch_steps), "total_steps": float(self.steps)}

    def evaluate_extra(self, run, split) -> dict[str, float]:
        return {"n_twice": 2.0 * len(split)}


@pytest.fixture
def counting(monkeypatch):
    monkeypatch.setitem(SCHEMES, "counting", Counting)


def test_unknown_scheme_is_refused_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"scheme\.name='nope'.*standard"):
        compose_train(*TINY, "scheme.name=nope")


def test_scheme_group_selects_the_standard_scheme_by_default():
    assert compose_train(*TINY).scheme.name == "standard"


def test_a_schemes_parameters_state_and_figures_flow_through_fit_and_resume(counting, tmp_path):
    cfg = compose_train(*TINY, "scheme.name=counting", "trainer.epochs=3", "trainer.max_steps_per_epoch=2",
                        "trainer.checkpoint_every=1", "trainer.checkpoint_every_s=0")
    full, kept = fit_keeping(cfg, tmp_path, epochs=(1,))
    history = full["history"]
    assert [h["scheme_steps"] for h in history] == [2.0, 2.0, 2.0]
    assert [h["scheme_total_steps"] for h in history] == [2.0, 4.0, 6.0]
    assert history[0]["val_n_twice"] == 2.0 * sum(full["split_counts"]["val"])
    assert full["test_n_twice"] == 2.0 * full["test_n"]

    state = load_state(kept[1])
    assert int(state["scheme"]["steps"]) == 2
    assert float(state["scheme"]["w"]) < 2.0  # the optimiser moved the scheme's own parameter
    resumed = fit(cfg, tmp_path / "resumed", resume_from=kept[1])
    assert [h["scheme_total_steps"] for h in resumed["history"]] == [2.0, 4.0, 6.0]  # the buffer went on from 2
    assert resumed["val_acc"] == full["val_acc"] and resumed["test_acc"] == full["test_acc"]
