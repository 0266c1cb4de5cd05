"""FERPlus's four vote rules (data.ferplus_labels): the targets each makes, the loss each trains
with, and a real training run under a soft rule. Expected values are worked out by hand from
Barsoum et al. (ICMI 2016) and microsoft/FERPlus ``src/ferplus.py``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mfer.config import ConfigError, DataConfig, LossConfig, TrainConfig
from mfer.data.classes import BASIC8
from mfer.data.formats.ferplus import LABEL_RULES, vote_distribution
from mfer.data.synthetic import SyntheticSpec, crowd_votes, generate
from mfer.data.synthetic import write_ferplus as write_synthetic_ferplus
from mfer.losses import HEAD_LOSSES, MFERLoss
from mfer.train import fit
from mfer.validation import validate

from .conftest import compose_train
from .fer_fixtures import FERPLUS_ROWS, load, packed, report_of, write_ferplus

# votes: neutral happiness surprise sadness anger disgust fear contempt unknown NF
CASES = [
    # (votes, rule, expected distribution as {column index: share}, or None for "no label")
    ([0, 8, 2, 0, 0, 0, 0, 0, 0, 0], "crossentropy", {1: 1.0}),  # 8 of 10 covers 75 %
    ([0, 0, 6, 0, 0, 0, 4, 0, 0, 0], "crossentropy", {2: 0.6, 6: 0.4}),  # 6 < 7.5: the next class joins
    ([4, 0, 0, 1, 3, 2, 0, 0, 0, 0], "crossentropy", {0: 4 / 7, 4: 3 / 7}),  # the 1 is dropped; 7 of 9 >= 75 %
    ([4, 0, 0, 1, 3, 2, 0, 0, 0, 0], "majority", None),  # 4 of 9 is no majority
    ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], "probability", {0: 0.5, 1: 0.5}),  # a tie is taken together
    ([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], "crossentropy", None),  # five tied classes: more than 3
    ([3, 3, 0, 0, 0, 0, 0, 0, 3, 1], "crossentropy", {0: 0.5, 1: 0.5}),  # unknown tied after emotions: left out
    ([0, 0, 0, 0, 0, 0, 0, 0, 7, 3], "crossentropy", {8: 1.0}),  # unknown on top (the adapter drops the face)
    ([4, 0, 0, 1, 3, 2, 0, 0, 0, 0], "multi_target", {0: 4 / 7, 4: 3 / 7}),  # >= 30 % of 9: 4 and 3, not 2
    ([0, 0, 0, 0, 2, 6, 2, 0, 0, 0], "multi_target", {5: 1.0}),  # 2 < 30 % of 10
    ([3, 3, 3, 1, 0, 0, 0, 0, 0, 0], "multi_target", {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}),
    ([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], "multi_target", None),  # no class reaches 30 %
]


@pytest.mark.parametrize("votes, rule, expected", CASES)
def test_vote_rules_match_ferplus(votes, rule, expected):
    dist = vote_distribution(votes, rule)
    if expected is None:
        assert dist is None
    else:
        assert dist == pytest.approx([expected.get(i, 0.0) for i in range(10)])


def test_every_rule_has_a_head_loss():
    assert set(LABEL_RULES) == set(HEAD_LOSSES)


@pytest.mark.parametrize("rule", ["crossentropy", "probability", "multi_target"])
def test_soft_rules_shape_train_only_and_pack_targets(tmp_path, rule):
    write_ferplus(tmp_path, FERPLUS_ROWS)
    b = load("ferplus", tmp_path, size=48, ferplus_labels=rule)
    # val and test keep the majority rule: every rule is scored on the same images and labels
    assert b.val.targets is None and b.test.targets is None
    assert b.val.labels.tolist() == [BASIC8.index("happiness"), BASIC8.index("neutral")]
    t = b.train.targets
    assert t is not None and t.shape == (len(b.train), 8) and t.dtype == np.float32
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    assert (t.argmax(1) == b.train.labels).all()  # the label is the target's top class (first of ties)
    # Row 2 (surprise 6, fear 4) keeps both classes under every soft rule
    row = t[2]
    assert row[BASIC8.index("surprise")] == pytest.approx(0.6) and row[BASIC8.index("fear")] == pytest.approx(0.4)
    excluded = report_of(packed("ferplus", tmp_path, size=48, ferplus_labels=rule))["excluded_by_rules"]
    assert excluded.get("FERPlus: top class unknown") == 1 and excluded.get("FERPlus: top class NF") == 1
    assert excluded.get("FERPlus: no majority label") == 1  # the test split's row, under majority


def test_rows_without_a_majority_join_train_under_crossentropy(tmp_path):
    write_ferplus(tmp_path, FERPLUS_ROWS)
    hard = load("ferplus", tmp_path, size=48)
    soft = load("ferplus", tmp_path, size=48, ferplus_labels="crossentropy")
    assert len(soft.train) == len(hard.train) + 2  # rows 9 (4-3 split) and 13 (5-5 tie) get a label
    assert soft.test.labels.tolist() == hard.test.labels.tolist()


def _logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 8, generator=g), torch.randint(0, 8, (6,), generator=g)


def test_soft_cross_entropy_on_one_hot_targets_is_the_hard_loss():
    logits, y = _logits()
    one_hot = F.one_hot(y, 8).float()
    for rule in ("crossentropy", "probability"):
        loss = MFERLoss(LossConfig(feature="none", label_smoothing=0.1), 8, 4, rule)
        hard = MFERLoss(LossConfig(feature="none", label_smoothing=0.1), 8, 4)
        assert loss([logits], torch.zeros(6, 4), y, one_hot) == pytest.approx(hard([logits], torch.zeros(6, 4), y).item())


def test_multi_target_counts_the_best_voted_class():
    logits, y = _logits(1)
    soft = torch.zeros(6, 8)
    soft[:, 0], soft[:, 3] = 0.6, 0.4
    loss = MFERLoss(LossConfig(feature="none", label_smoothing=0.0), 8, 4, "multi_target")
    p = logits.softmax(1)  # voted classes weigh (1 - 1e-3) + 1e-3 = 1, the others 1e-3
    expected = -torch.log(torch.maximum(torch.maximum(p[:, 0], p[:, 3]), 1e-3 * p.max(1).values)).mean()
    assert loss([logits], torch.zeros(6, 4), y, soft).item() == pytest.approx(expected.item(), rel=1e-5)


def test_probability_rule_draws_labels_from_the_votes_reproducibly():
    soft = torch.tensor([[0.0, 1.0] + [0.0] * 6, [0.5, 0.5] + [0.0] * 6]).repeat(200, 1)
    loss = MFERLoss(LossConfig(feature="center", weight=1.0, label_smoothing=0.0), 8, 4, "probability")
    logits, feature, y = torch.zeros(400, 8), torch.zeros(400, 4), soft.argmax(1)
    torch.manual_seed(3)
    first = loss([logits], feature, y, soft)
    torch.manual_seed(3)
    assert loss([logits], feature, y, soft) == first  # the epoch seed fixes the draws: resume is exact
    drawn = torch.multinomial(soft, 1).squeeze(1)
    assert set(drawn[0::2].tolist()) == {1} and set(drawn[1::2].tolist()) == {0, 1}


def test_soft_rules_are_refused_where_they_mean_nothing():
    with pytest.raises(ConfigError, match="data.ferplus_labels.*one label per image"):
        validate(TrainConfig(data=DataConfig(ferplus_labels="crossentropy")))  # the synthetic set
    with pytest.raises(ConfigError, match="data.ferplus_labels.*one of"):
        compose_train("data=ferplus", "data.root=/x", "data.ferplus_labels=soft")
    with pytest.raises(ConfigError, match="loss.label_smoothing"):
        compose_train("data=ferplus", "data.root=/x", "data.ferplus_labels=multi_target")
    compose_train("data=ferplus", "data.root=/x", "data.ferplus_labels=multi_target", "loss.label_smoothing=0")


@pytest.mark.parametrize("rule", ["crossentropy", "multi_target"])
def test_training_under_a_soft_rule_runs_end_to_end(tmp_path, rule):
    write_ferplus(tmp_path / "ferplus", FERPLUS_ROWS)
    cfg = compose_train("data=ferplus", f"data.root={tmp_path / 'ferplus'}", f"data.ferplus_labels={rule}",
                        "data.image_size=32", "data.batch_size=4", "trainer.epochs=2", "trainer.device=cpu",
                        "loss.label_smoothing=0")
    m = fit(cfg, tmp_path / "run")
    assert m["config"]["data"]["ferplus_labels"] == rule and np.isfinite(m["history"][-1]["train_loss"])
    assert m["test_n"] == 2 and 0.0 <= m["test_acc"] <= 1.0  # scored on the majority-labelled test split


def test_synthetic_crowd_votes_split_like_a_crowd():
    spec = SyntheticSpec(700, 48, 3, 0.7)
    votes = crowd_votes(spec)
    assert votes.shape == (700, 8) and (votes.sum(1) == 10).all() and (crowd_votes(spec) == votes).all()
    drawn = generate(SyntheticSpec(700, 32, 3, 0.7))[1]  # the classes the faces were drawn from
    top = votes[:, :7].max(1)
    assert 0.9 < (votes[:, :7].argmax(1) == drawn).mean() < 1.0  # the crowd mostly agrees with the drawing...
    assert 0.05 < (top <= 5).mean() < 0.3  # ...but splits on ambiguous faces


def test_synthetic_ferplus_is_read_by_the_ferplus_adapter_under_every_rule(tmp_path):
    write_synthetic_ferplus(tmp_path, {"Training": SyntheticSpec(210, 48, 1), "PublicTest": SyntheticSpec(70, 48, 2),
                                       "PrivateTest": SyntheticSpec(70, 48, 3)})
    by_rule = {rule: load("ferplus", tmp_path, size=48, ferplus_labels=rule) for rule in LABEL_RULES}
    majority = by_rule["majority"]
    assert majority.classes == BASIC8 and BASIC8.index("contempt") not in majority.train.labels
    for rule, b in by_rule.items():
        assert b.test.labels.tolist() == majority.test.labels.tolist(), rule  # scored on the same labels
    soft = by_rule["crossentropy"]
    assert len(soft.train) > len(majority.train)  # split faces without a majority still train
    assert (soft.train.targets.max(1) < 1).mean() > 0.2  # and carry their split votes
