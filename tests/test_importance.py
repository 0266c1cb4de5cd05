"""Parameter importance from the trials table (report.importance) and the one spelling of list values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfer_platform.overrides import choice_text, decode_choice, encode_choice
from mfer_platform.report.importance import MIN_TRIALS, eta_squared, importance, is_log

PARAMS = {"optim.lr": {"loguniform": [1e-4, 1e-2]}, "loss.feature": {"choice": ["none", "center", "dsf"]},
          "model.msc_fractions": {"choice": [[1.0], [0.5, 1.0]]}}


def _table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """val_acc driven by log10(lr) alone; feature and msc_fractions are noise-free decoys."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, -2, n)
    return pd.DataFrame({"optim.lr": lr, "loss.feature": rng.choice(["none", "center", "dsf"], n),
                         "model.msc_fractions": [[1.0] if b else [0.5, 1.0] for b in rng.integers(0, 2, n)],
                         "val_acc": 0.5 + 0.1 * (np.log10(lr) + 3) ** 2 * -1 + 0.001 * rng.standard_normal(n)})


def test_fanova_finds_the_one_factor_that_matters_whatever_the_direction():
    table = _table()
    factors = list(PARAMS)
    up = importance(table, factors, "val_acc", "completed", PARAMS)
    down = importance(table.assign(val_acc=-table["val_acc"]), factors, "val_acc", "completed", PARAMS)
    assert up.method == "fANOVA" and up.n == 40 and sum(up.shares.values()) == pytest.approx(1)
    assert next(iter(up.shares)) == "optim.lr" and up.shares["optim.lr"] > 0.8
    assert down.shares == pytest.approx(up.shares)  # variance has no direction: max and min agree


def test_one_factor_gets_eta_squared_and_small_samples_a_reason():
    table = pd.DataFrame({"model.attn_variant": ["none", "none", "ds", "ds"], "val_acc": [0.5, 0.6, 0.7, 0.8]})
    # group means 0.55, 0.75; grand mean 0.65: SS_between = 4 x 0.01 = 0.04, SS_total = 0.05
    assert eta_squared(table, "model.attn_variant", "val_acc") == pytest.approx(0.8)
    assert importance(table, ["model.attn_variant"], "val_acc", "x").shares == {"model.attn_variant": pytest.approx(0.8)}
    few = importance(table.head(MIN_TRIALS - 1), ["model.attn_variant"], "val_acc", "x")
    assert not few.shares and f"at least {MIN_TRIALS}" in few.note
    once = importance(table.assign(**{"model.attn_variant": list("abcd")}), ["model.attn_variant"], "val_acc", "x")
    assert not once.shares and "seed noise" in once.note


def test_log_scale_comes_from_the_record_and_else_from_the_values():
    assert is_log("optim.lr", [3e-4, 5e-4], PARAMS)  # the record says loguniform, however narrow the values
    assert not is_log("optim.lr", [1e-4, 1e-1], {"optim.lr": {"uniform": [1e-4, 1e-1]}})
    assert is_log("optim.lr", [1e-4, 1e-1], None) and not is_log("optim.lr", [0.1, 0.5], None)  # old records


def test_lists_have_one_spelling_and_old_stores_still_decode():
    assert encode_choice([0.5, 0.75, 1.0]) == choice_text([0.5, 0.75, 1.0]) == "[0.5,0.75,1.0]"
    assert decode_choice("[0.5,0.75,1.0]") == decode_choice("json:[0.5, 0.75, 1.0]") == [0.5, 0.75, 1.0]
    assert decode_choice(encode_choice([])) == [] and decode_choice("[not json") == "[not json"
    assert encode_choice("ds") == "ds" and decode_choice(0.1) == 0.1
