"""Trackers (``tracking=[tensorboard, mlflow, wandb]``): refused up front when they cannot work, off by
default (Ray's own TensorBoard logger included), and — in one real sweep — a TensorBoard event file, an
MLflow run read back through MLflow's client and a W&B offline run for every trial."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mfer_platform.sweep.spaces import SpaceError
from mfer_platform.sweep.tracking import TrackingSettings, callbacks, check

from .sweeps import sweep_cmd


@pytest.mark.parametrize("settings, storage, words", [
    (TrackingSettings(["tensorboard", "neptune"]), "/tmp/s", "unknown tracker 'neptune'; choose from tensorboard"),
    (TrackingSettings(["mlflow"]), "s3://bucket/sweeps", "set tracking_uri="),
])
def test_a_tracker_that_cannot_work_is_refused_in_one_line(settings, storage, words):
    with pytest.raises(SpaceError) as e:
        check(settings, storage)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_tracking_off_means_no_tensorboard_logger_but_the_json_results_the_store_reads(tmp_path, monkeypatch):
    from ray.tune.logger import JsonLoggerCallback, TBXLoggerCallback
    from ray.tune.utils.callback import _create_default_callbacks  # what Tune's run adds to ours

    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    for trackers, tbx in (([], 0), (["tensorboard"], 1)):
        final = _create_default_callbacks(callbacks(TrackingSettings(trackers), str(tmp_path), "s"))
        assert sum(isinstance(c, TBXLoggerCallback) for c in final) == tbx, final
        assert sum(isinstance(c, JsonLoggerCallback) for c in final) == 1, final


def test_no_tracker_integration_is_imported_unless_asked_for(tmp_path):
    before = set(sys.modules)
    callbacks(TrackingSettings(), str(tmp_path), "s")
    callbacks(TrackingSettings(["tensorboard"]), str(tmp_path), "s")
    new = {m for m in set(sys.modules) - before
           if m.split(".")[0] in ("mlflow", "wandb") or m.startswith(("ray.air.integrations.mlflow", "ray.air.integrations.wandb"))}
    assert not new, sorted(new)


@pytest.mark.slow
def test_a_sweep_tracks_every_trial_in_tensorboard_mlflow_and_wandb(tmp_path, ray_env):
    from mlflow.tracking import MlflowClient

    storage, exp = tmp_path / "store", tmp_path / "store" / "tracked"
    env = {**ray_env, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = subprocess.run([*sweep_cmd(storage, "tracked", "search.num_samples=2"), "tracking=[tensorboard,mlflow,wandb]"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = sorted(p for p in exp.glob("run_trial_*") if p.is_dir())
    assert len(trials) == 2
    for trial in trials:
        assert list(trial.glob("events.out.tfevents.*")), f"no TensorBoard event file in {trial.name}"
        assert len(list(trial.glob("wandb/offline-run-*"))) == 1, f"no W&B offline run in {trial.name}"
    client = MlflowClient(f"sqlite:///{exp}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert {"optim.lr", "model.attn_variant"} <= set(run.data.params)  # the trial's config
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2], history  # every epoch of the 2
