"""A sweep's identity: a re-run under a stored name with a space that changes what its trials compute is
refused with the differences shown; more samples, resources, concurrency and the time budget may change;
records written by an older version compare on what both hold. No Ray: the record is a JSON file."""
from __future__ import annotations

import json

import pytest

from mfer_platform.layout import SWEEP_FILE
from mfer_platform.sweep import identity
from mfer_platform.sweep.runner import SweepRequest, _write_sweep_record, check_same_space, sweep_record
from mfer_platform.sweep.spaces import SpaceError, load_space

from .sweeps import SMOKE

NAME = "ident"
ADDED = "model.attn_variant: {choice: [none, ds]}\n  loss.weight: {choice: [0.001, 0.01]}"  # one parameter more


def _request(storage, settings=None, extra_base=None, space=SMOKE) -> SweepRequest:
    return SweepRequest(load_space(str(space), settings, extra_base=extra_base), NAME, str(storage))


def _stored(storage) -> dict:
    return json.loads((storage / NAME / SWEEP_FILE).read_text())


@pytest.fixture
def stored(tmp_path):
    """A sweep record as mfer-sweep writes it before launching the smoke space (then read back: JSON)."""
    _write_sweep_record(_request(tmp_path), NAME, extends=None)
    return tmp_path


def test_the_same_space_read_back_from_json_is_the_same(stored):
    diffs, unchecked = identity.compare(_stored(stored), sweep_record(_request(stored), extends=None))
    assert diffs == [] and unchecked == []
    check_same_space(_request(stored))  # no error


@pytest.mark.parametrize("settings, extra_base", [
    ({"search.num_samples": 16}, None),  # more samples: the documented extension
    ({"resources.cpu": 2, "resources.gpu": 0.5}, None),
    ({"search.max_concurrent": 1, "search.time_budget_s": 600}, None),
    (None, ["trainer.checkpoint_every_s=60", "++data.cache_dir=/tmp/elsewhere"]),
])
def test_allowed_changes_pass(stored, settings, extra_base):
    diffs, _ = identity.compare(_stored(stored), sweep_record(_request(stored, settings, extra_base), extends=None))
    assert diffs == []
    check_same_space(_request(stored, settings, extra_base))


@pytest.mark.parametrize("settings, extra_base, key, old, new", [
    (None, ["trainer.epochs=3"], "base trainer.epochs", "2", "3"),
    (None, ["data.image_size=48"], "base data.image_size", "32", "48"),
    ({"search.seeds": 2}, None, "search.seeds", "1", "2"),
    ({"search.first_seed": 5}, None, "search.first_seed", "0", "5"),
    ({"search.metric": "val_loss", "search.mode": "min"}, None, "search.metric", '"val_acc"', '"val_loss"'),
    ({"search.algorithm": "optuna_tpe"}, None, "search.algorithm", '"random"', '"optuna_tpe"'),
    ({"scheduler.name": "asha"}, None, "scheduler.name", '"none"', '"asha"'),
])
def test_a_change_of_what_trials_compute_is_refused_with_old_and_new(stored, settings, extra_base, key, old, new):
    with pytest.raises(SpaceError) as e:
        check_same_space(_request(stored, settings, extra_base))
    msg = str(e.value)
    assert f"{key}: {old} → {new}" in msg and "name=" in msg and NAME in msg, msg
    assert "\n" not in msg


def test_changed_params_and_rows_are_named_with_their_ranges(stored, tmp_path):
    changed = tmp_path / "changed.yaml"
    changed.write_text(SMOKE.read_text().replace("3.0e-4, 3.0e-3", "1.0e-3, 1.0e-2")
                       .replace("model.attn_variant: {choice: [none, ds]}", ADDED))
    diffs, _ = identity.compare(_stored(stored), sweep_record(_request(stored, space=changed), extends=None))
    shown = {d.key: str(d) for d in diffs}
    assert set(shown) == {"params.optim.lr", "params.loss.weight"}, shown  # factors: said by the params
    assert "[0.0003, 0.003]" in shown["params.optim.lr"] and "[0.001, 0.01]" in shown["params.optim.lr"]
    assert "(absent) →" in shown["params.loss.weight"]
    rows = {"rows": {"a": {"loss.weight": 0.1}, "b": {"loss.weight": 0.2}}}
    diffs, _ = identity.compare(rows, {**rows, "rows": {"a": {"loss.weight": 0.1}, "b": {"loss.weight": 0.3}}})
    assert [d.key for d in diffs] == ["rows.b"]


def test_json_types_compare_equal_to_the_new_records():
    stored = {"base_config": {"optim": {"betas": [0.9, 0.999], "lr": 1}}, "searcher": {"time_budget_s": None}}
    new = {"base_config": {"optim": {"betas": (0.9, 0.999), "lr": 1.0}}, "searcher": {"time_budget_s": None}}
    assert identity.compare(stored, new) == ([], [])


def test_a_record_from_an_older_version_compares_on_what_both_hold(stored):
    old = _stored(stored)
    del old["params"]  # records before params were stored: the varied keys (factors) stand in
    del old["base_config"]["trainer"]["compile"]  # a field the code gained since
    same, _ = identity.compare(old, sweep_record(_request(stored), extends=None))
    assert same == []
    (stored / NAME / SWEEP_FILE).write_text(json.dumps(old))
    check_same_space(_request(stored))  # allowed (a warning lists what was not compared)
    _, unchecked = identity.compare(old, sweep_record(_request(stored), extends=None))
    assert set(unchecked) == {"params", "base trainer.compile"}
    with pytest.raises(SpaceError, match="factors: "):  # a parameter more still shows, by the factors
        check_same_space(_request(stored, extra_base=None, space=_with_param(stored)))


def _with_param(folder):
    path = folder / "more.yaml"
    path.write_text(SMOKE.read_text().replace("model.attn_variant: {choice: [none, ds]}", ADDED))
    return path


def test_the_cli_refuses_a_changed_space_in_one_line_even_in_a_dry_run(stored, cli):
    out = cli("mfer_platform.cli.sweep", f"search_space={SMOKE}", f"name={NAME}", f"storage_path={stored}",
              'overrides=["trainer.epochs=3"]', "dry_run=true")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "base trainer.epochs: 2 → 3" in out.stderr and "name=" in out.stderr
