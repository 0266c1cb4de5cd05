"""The results store: typed long-format tables, idempotent and atomic ingest, any pyarrow filesystem."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfer_platform.results import store
from mfer_platform.results.store import classify, ingest, load_epochs, load_trials

from .fake_sweep import CRASHED, EXPERIMENT, FACTOR, TRIALS, clone


@pytest.fixture
def storage(fake_sweep, tmp_path):
    return clone(fake_sweep, tmp_path / "sweeps")


def test_ingest_writes_typed_trial_and_epoch_tables(storage):
    summary = ingest(str(storage), EXPERIMENT)
    assert summary.trials == len(TRIALS) + 1
    assert summary.statuses == {"completed": 4, "early_stopped": 1, "error": 1}
    trials = pd.read_parquet(storage / "results" / "trials.parquet")  # plain pandas, no mfer code
    schema = pq.read_schema(storage / "results" / "trials.parquet")
    assert schema.field("loss.weight").type == pa.float64()
    assert schema.field("model.attn_stages").type == pa.list_(pa.int64())
    assert schema.field("model.attn_variant").type == pa.string()
    assert schema.field("data.hflip").type == pa.bool_()
    assert schema.field("trainer.seed").type == pa.int64()

    done = trials[trials["status"] == "completed"]
    assert sorted(zip(done[FACTOR], done["seed"])) == sorted((v, s) for v, s, stop in TRIALS if stop is None)
    assert done[["test_acc", "test_mean_class_acc", "test_macro_f1", "test_loss"]].notna().all().all()
    for _, row in done.iterrows():
        meta = json.loads(next((storage / EXPERIMENT / row["checkpoint"]).glob("meta.json")).read_text())
        cm = np.vstack(row["val_confusion"])
        assert list(cm.sum(1)) == meta["split_counts"]["val"]  # the selected epoch's full validation split
        np.testing.assert_allclose(row["val_per_class_acc"], np.diag(cm) / cm.sum(1))
        assert row["val_acc"] == pytest.approx(np.trace(cm) / cm.sum())
        test_cm = np.vstack(row["test_confusion"])  # evaluated once, with the selected weights
        assert list(test_cm.sum(1)) == meta["split_counts"]["test"] and meta["test"]["confusion"] == test_cm.tolist()
        assert row["test_acc"] == pytest.approx(np.trace(test_cm) / test_cm.sum())
        np.testing.assert_allclose(row["test_per_class_acc"], np.diag(test_cm) / test_cm.sum(1))
        assert list(row["classes"]) == meta["classes"] and row["git_commit"] == meta["git_commit"]
        assert row["config_hash"] == meta["config_hash"] and row["dataset_fingerprint"] == meta["dataset_fingerprint"]
        assert row["cpu_seconds"] == pytest.approx(row["wall_s"]) and row["gpu_seconds"] == 0
        assert row["epochs_run"] == row["epochs_planned"] == 2

    by_variant = done.groupby(FACTOR)
    assert (by_variant["group_hash"].nunique() == 1).all()  # seeds of one configuration share it
    assert done["group_hash"].nunique() == 2 and done["config_hash"].nunique() == 4

    stopped = trials[trials["status"] == "early_stopped"].iloc[0]
    assert (stopped["epochs_run"], stopped["epochs_planned"]) == (1, 2) and pd.isna(stopped["test_acc"])
    crashed = trials[trials["status"] == "error"].iloc[0]
    assert (crashed[FACTOR], crashed["seed"]) == CRASHED  # rebuilt from the base config + params.json
    assert "out of memory" in crashed["error"] and pd.isna(crashed["checkpoint"])
    assert crashed["group_hash"] in set(done.loc[done[FACTOR] == CRASHED[0], "group_hash"])

    epochs = load_epochs(str(storage), EXPERIMENT)
    assert len(epochs) == 4 * 2 + 1
    last = epochs.sort_values("epoch").groupby("trial_id").last()
    selected = epochs.merge(trials[["trial_id", "selected_epoch"]], left_on=["trial_id", "epoch"],
                            right_on=["trial_id", "selected_epoch"])
    assert dict(zip(selected["trial_id"], selected["val_acc"])) == dict(zip(done["trial_id"], done["val_acc"])) | {
        stopped["trial_id"]: stopped["val_acc"]}
    assert last.loc[done["trial_id"], "test_acc"].notna().all()


def test_reingest_replaces_rows_and_keeps_other_experiments(storage):
    clone(storage / EXPERIMENT, storage / "second")
    ingest(str(storage), EXPERIMENT)
    ingest(str(storage), "second")
    ingest(str(storage), EXPERIMENT)  # again: replaces, never duplicates
    trials, epochs = load_trials(str(storage)), load_epochs(str(storage))
    assert trials.groupby("experiment").size().to_dict() == {EXPERIMENT: 6, "second": 6}
    assert not trials.duplicated(["experiment", "trial_id"]).any()
    assert not epochs.duplicated(["experiment", "trial_id", "epoch"]).any() and len(epochs) == 18
    assert len(load_trials(str(storage), "second")) == 6


def test_crash_mid_write_leaves_the_previous_table_readable(storage, monkeypatch):
    ingest(str(storage), EXPERIMENT)
    path = storage / "results" / "trials.parquet"
    before = pq.read_table(path)

    def torn_write(table, where, **kwargs):
        where.write(b"PAR1 half a parquet file")
        raise OSError("disk full")

    monkeypatch.setattr(store.pq, "write_table", torn_write)
    clone(storage / EXPERIMENT, storage / "second")
    with pytest.raises(OSError, match="disk full"):
        ingest(str(storage), "second")
    assert pq.read_table(path).equals(before)
    assert sorted(p.name for p in path.parent.iterdir()) == [".ingest.lock", "epochs.parquet", "trials.parquet"]


def test_file_uri_storage(storage):
    uri = f"file://{storage}"
    assert ingest(uri, EXPERIMENT).trials == 6
    assert len(load_trials(uri, EXPERIMENT)) == 6


def test_missing_experiment_names_the_path(storage):
    with pytest.raises(store.StoreError, match="nope/mfer_sweep.json not found"):
        ingest(str(storage), "nope")


def test_an_extended_sweep_is_read_as_one(storage):
    """mfer-sweep grows a finished sweep as NAME-ext1, NAME-ext2, …: reports, figures and exports
    read them together (each trial's checkpoint under its own experiment)."""
    from mfer_platform.results.checkpoints import read_checkpoint
    from mfer_platform.results.summary import whole_sweep

    exp, ext = storage / EXPERIMENT, storage / f"{EXPERIMENT}-ext1"
    ext.mkdir()
    shutil.copy(exp / "mfer_sweep.json", ext)
    shutil.copytree(next(exp.glob("run_trial_00000000_*")), ext / "run_trial_00000000_0_copy")
    (storage / f"{EXPERIMENT}-ext3").mkdir()  # not a link of the chain: ext2 is missing
    shutil.copy(exp / "mfer_sweep.json", storage / f"{EXPERIMENT}-ext3")
    res = whole_sweep(str(storage), EXPERIMENT)
    assert res.experiments == [EXPERIMENT, f"{EXPERIMENT}-ext1"]
    assert len(res.trials) == len(TRIALS) + 2 and (res.trials["experiment"] == f"{EXPERIMENT}-ext1").sum() == 1
    extended = res.trials[res.trials["experiment"] == f"{EXPERIMENT}-ext1"].iloc[0]
    assert read_checkpoint(str(storage), extended).meta["classes"]


@pytest.mark.parametrize("ray_status, run, planned, error, expected", [
    ("TERMINATED", 4, 4, False, "completed"),
    ("TERMINATED", 2, 4, False, "early_stopped"),  # ASHA / HyperBand stop
    ("ERROR", 1, 4, True, "error"),
    ("RUNNING", 1, 4, False, "running"),  # an interrupted sweep, not an early stop
    (None, 4, 4, True, "completed"),  # no Ray state: retried after a crash, then finished
    (None, 1, 4, True, "error"),
    (None, 1, 4, False, "early_stopped"),
])
def test_status_vocabulary(ray_status, run, planned, error, expected):
    assert classify(ray_status, run, planned, error) == expected


def _tree(root) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_readers_never_write_the_storage_path(storage, tmp_path):
    """Reports, figures and exports read a sweep without writing under storage_path (read-only
    buckets work): with no store, or a stale one, they read the trial folders in memory."""
    from mfer_platform.results.summary import whole_sweep
    from mfer_platform.serving.export import export_best

    before = _tree(storage)
    res = whole_sweep(str(storage), EXPERIMENT)  # no store yet: read in memory
    export_best(str(storage), EXPERIMENT, tmp_path / "export")
    assert _tree(storage) == before and not (storage / "results").exists()
    assert len(res.trials) == len(TRIALS) + 1 and set(res.epochs["trial_id"]) <= set(res.trials["trial_id"])

    ingest(str(storage), EXPERIMENT)
    stored = whole_sweep(str(storage), EXPERIMENT)  # current store: read from it
    pd.testing.assert_frame_equal(stored.trials.drop(columns="ingested_at"), res.trials.drop(columns="ingested_at"),
                                  check_dtype=False)
    assert stored.cmp.best == res.cmp.best


def test_a_stale_store_is_not_served(storage):
    """A trial folder that changed after the last ingest (here: a trial's last epoch dropped, as if
    the store was ingested before it finished) makes readers read the folders again."""
    from mfer_platform.results.summary import whole_sweep

    done = next(p for p in sorted((storage / EXPERIMENT).iterdir())
                if (p / "result.json").is_file() and len((p / "result.json").read_text().splitlines()) == 2)
    rows = (done / "result.json").read_text().splitlines()
    (done / "result.json").write_text(rows[0] + "\n")
    ingest(str(storage), EXPERIMENT)
    (done / "result.json").write_text("\n".join(rows) + "\n")  # the trial reports its last epoch
    stale = load_trials(str(storage), EXPERIMENT)
    fresh = whole_sweep(str(storage), EXPERIMENT).trials
    trial = stale.loc[stale["trial_dir"] == done.name, "trial_id"].iloc[0]
    assert stale.set_index("trial_id").loc[trial, "epochs_run"] == 1
    assert fresh.set_index("trial_id").loc[trial, "epochs_run"] == len(rows)


def test_report_on_a_storage_path_it_cannot_write(storage, tmp_path, cli):
    """mfer-report runs ingest first; where the store cannot be written it says so and still reports."""
    (storage / "results").write_text("a file where the store's folder would go: nothing can be written")
    out = cli("mfer_platform.cli.report", f"storage_path={storage}", f"name={EXPERIMENT}",
              f"output_dir={tmp_path / 'r'}", "figures=false")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "not updated" in out.stderr and (tmp_path / "r" / "report.html").is_file()


def test_no_state_pt_is_needed_for_reports_and_exports(storage, tmp_path):
    """Every state.pt deleted (ingest never opens one): the store still has each trial's per-class
    validation result and confusion — the early-stopped trial's from its result rows —, and the
    report and export are written from it."""
    from mfer_platform.report.sweep_report import make_report
    from mfer_platform.serving.export import export_best

    for state in storage.rglob("state.pt"):
        state.unlink()
    ingest(str(storage), EXPERIMENT)
    trials = load_trials(str(storage), EXPERIMENT)
    ran = trials[trials["epochs_run"] > 0]
    assert set(ran["status"]) == {"completed", "early_stopped"}
    for _, row in ran.iterrows():
        cm = np.vstack(row["val_confusion"])
        np.testing.assert_allclose(row["val_per_class_acc"], np.diag(cm) / cm.sum(1))
        assert row["val_acc"] == pytest.approx(np.trace(cm) / cm.sum())
    assert set(ran["val_per_class_source"]) == {"result"}
    paths = make_report(str(storage), EXPERIMENT, tmp_path / "report")
    assert "Per-class validation accuracy" in paths["html"].read_text()
    assert (export_best(str(storage), EXPERIMENT, tmp_path / "export") / "model.safetensors").is_file()
