"""The sweep's Optuna study (``mfer_platform.sweep.study``): how Tune's trial ends become Optuna trial
states in a real journal file, one Optuna trial per suggestion under seeds, the study an extension
continues, what optuna-dashboard reads back, and ``search.storage`` validation; last, one real sweep
(slow) whose journal is read while it runs and after."""
from __future__ import annotations

import json
import math
import subprocess
import time
import wsgiref.util
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from mfer_platform.sweep.spaces import SpaceError, load_space

OPTUNA_ASHA = Path(__file__).parent / "fixtures" / "spaces" / "optuna_asha.yaml"
EPOCHS = 3  # the fixture's trainer.epochs


def _searcher(journal: Path, seeds: int = 1):
    from ray import tune

    from mfer_platform.sweep.study import StudyRepeater, StudySearch

    search = StudySearch(epochs=EPOCHS, sampler=optuna.samplers.RandomSampler(seed=0), study_name="sw",
                         storage=JournalStorage(JournalFileBackend(str(journal))))
    searcher = StudyRepeater(search, repeat=seeds) if seeds > 1 else search
    searcher.set_search_properties("val_acc", "max", {"optim.lr": tune.loguniform(1e-4, 1e-2)})
    return searcher


def _trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    """The study as a fresh reader (another process, optuna-dashboard) loads it from the file."""
    return optuna.load_study(study_name="sw", storage=JournalStorage(JournalFileBackend(str(journal)))).trials


def _end(epoch: int, acc: float) -> dict:
    """The flat last result Tune hands ``on_trial_complete``."""
    return {"val_acc": acc, "epoch": epoch, "training_iteration": epoch, "done": True}


def test_tune_trial_ends_become_optuna_states(tmp_path):
    journal = tmp_path / "optuna.journal"
    s = _searcher(journal)
    for tid in ("done", "stopped", "crashed", "nan", "never_ran"):
        s.suggest(tid)
    s.on_trial_result("stopped", {"val_acc": 0.30, "training_iteration": 1})
    s.on_trial_complete("done", _end(EPOCHS, 0.61))
    s.on_trial_complete("stopped", _end(2, 0.35))  # ASHA stopped it after epoch 2 of 3
    s.on_trial_complete("crashed", error=True)
    s.on_trial_complete("nan", _end(EPOCHS, math.nan))
    s.on_trial_complete("never_ran")  # stopped while pending (time budget): Tune gives no result
    by_id = {t.user_attrs["tune_trial_ids"][0]: t for t in _trials(journal)}
    assert {k: t.state for k, t in by_id.items()} == {
        "done": TrialState.COMPLETE, "stopped": TrialState.PRUNED, "crashed": TrialState.FAIL,
        "nan": TrialState.FAIL, "never_ran": TrialState.PRUNED}
    assert by_id["done"].value == 0.61 and by_id["done"].intermediate_values == {EPOCHS: 0.61}
    # the result that made ASHA stop it is its last intermediate value, and the pruned trial's value
    assert by_id["stopped"].intermediate_values == {1: 0.30, 2: 0.35} and by_id["stopped"].value == 0.35
    assert by_id["stopped"].user_attrs["outcomes"] == ["early_stopped"] and by_id["stopped"].user_attrs["epochs"] == [2]


def test_one_optuna_trial_stands_for_its_seeds(tmp_path):
    journal = tmp_path / "optuna.journal"
    s = _searcher(journal, seeds=2)
    ids = [f"t{i}" for i in range(6)]
    configs = [s.suggest(t) for t in ids]
    assert configs[0]["optim.lr"] == configs[1]["optim.lr"] != configs[2]["optim.lr"]  # pairs share a suggestion
    s.on_trial_complete("t0", _end(EPOCHS, 0.5))
    s.on_trial_complete("t1", _end(EPOCHS, 0.7))
    s.on_trial_complete("t3", _end(1, 0.2))  # one repeat stopped early...
    s.on_trial_complete("t2", _end(EPOCHS, 0.9))
    s.on_trial_complete("t4", _end(EPOCHS, 0.9))
    assert len(_trials(journal)[2].user_attrs) == 0  # ...the third suggestion waits for both its repeats
    s.on_trial_complete("t5", error=True)
    trials = _trials(journal)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert trials[0].value == pytest.approx(0.6)  # the mean over its seeds
    assert trials[0].user_attrs["tune_trial_ids"] == ["t0", "t1"]
    assert trials[1].user_attrs["outcomes"] == ["completed", "early_stopped"]
    assert trials[2].user_attrs["outcomes"] == ["completed", "error"]


def test_checkpoint_paths_are_recorded_per_repeat(tmp_path):
    from mfer_platform.sweep.study import TrialCheckpoints

    class _Trial:
        trial_id = "c1"

    class _Checkpoint:
        path = "bucket/sweeps/sw/trial_c1/checkpoint_000002"

    TrialCheckpoints("s3://bucket/sweeps").on_checkpoint(0, [], _Trial(), _Checkpoint())
    s = _searcher(tmp_path / "optuna.journal")
    s.suggest("c1")
    s.on_trial_complete("c1", _end(EPOCHS, 0.4))
    assert _trials(tmp_path / "optuna.journal")[0].user_attrs["checkpoints"] == [
        "s3://bucket/sweeps/sw/trial_c1/checkpoint_000002"]


def test_an_extension_continues_the_study_and_fails_what_a_killed_driver_left_running(tmp_path):
    from mfer_platform.sweep import plan
    from mfer_platform.sweep.study import journal_path, study_exists

    space = load_space(str(OPTUNA_ASHA))
    storage = str(tmp_path / "store")
    assert not study_exists(space, storage, "sw")
    first = plan.search_algorithm(space, storage, "sw")
    first.set_search_properties(space.search.metric, space.search.mode, plan.param_space(space))
    first.suggest("a")
    first.on_trial_complete("a", {"train_loss": 1.5, "epoch": EPOCHS, "training_iteration": EPOCHS})
    first.suggest("b")  # the driver dies here: b is RUNNING in the journal, and no one will tell it
    assert journal_path(storage, "sw") == tmp_path / "store" / "sw" / "optuna.journal"
    assert study_exists(space, storage, "sw")
    again = plan.search_algorithm(space, storage, "sw")
    again.set_search_properties(space.search.metric, space.search.mode, plan.param_space(space))
    again.suggest("c")
    again.on_trial_complete("c", {"train_loss": 1.2, "epoch": EPOCHS, "training_iteration": EPOCHS})
    journal = JournalStorage(JournalFileBackend(str(journal_path(storage, "sw"))))
    study = optuna.load_study(study_name="sw", storage=journal)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert study.best_value == 1.2  # one study, direction minimize from the space's mode


def test_an_old_sweep_without_a_study_warm_starts_from_completed_trials_only(tmp_path):
    from mfer_platform.sweep import plan
    from mfer_platform.sweep.runner import SweepRequest, _warm_start

    space = load_space(str(OPTUNA_ASHA))
    req = SweepRequest(space, "old", str(tmp_path / "store"))
    history = [({"optim.lr": 1e-3}, {"train_loss": 1.0, "epoch": EPOCHS}),
               ({"optim.lr": 2e-3}, {"train_loss": 0.1, "epoch": 1}),  # stopped early: not a finished run
               ({"optim.lr": 3e-3}, {})]  # errored before any result
    assert _warm_start(req, history) == [({"optim.lr": 1e-3}, 1.0)]
    ext = plan.search_algorithm(space, req.storage_path, "old", warm_start=_warm_start(req, history))
    ext.set_search_properties(space.search.metric, space.search.mode, plan.param_space(space))  # Tune's first call
    from mfer_platform.sweep.study import journal_path

    study = optuna.load_study(study_name="old", storage=JournalStorage(JournalFileBackend(str(journal_path(
        req.storage_path, "old")))))
    assert [(t.state, t.value, t.params) for t in study.trials] == [(TrialState.COMPLETE, 1.0, {"optim.lr": 1e-3})]
    assert _warm_start(req, history) == []  # the extension's study now exists: the next one continues it


def test_optuna_dashboard_reads_the_journal(tmp_path):
    from optuna_dashboard import wsgi

    journal = tmp_path / "optuna.journal"
    s = _searcher(journal)
    s.suggest("done"), s.suggest("stopped")
    s.on_trial_complete("done", _end(EPOCHS, 0.61))
    s.on_trial_complete("stopped", _end(1, 0.2))
    app = wsgi(str(journal))  # what `optuna-dashboard <journal>` serves

    def get(path: str):
        env: dict = {"PATH_INFO": path}
        wsgiref.util.setup_testing_defaults(env)
        status: list = []
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (path, status)
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    assert [st["study_name"] for st in studies] == ["sw"]
    detail = get(f"/api/studies/{studies[0]['study_id']}")
    assert sorted(t["state"] for t in detail["trials"]) == ["Complete", "Pruned"]


@pytest.mark.parametrize("url, says", [
    ("redis://host:6379", "not a database Optuna's RDBStorage runs on"),
    ("optuna.db", "must be a database URL or null"),
    ("postgresql://me:secret@db.lab/optuna", "holds a password"),
])
def test_bad_study_storage_is_refused_naming_the_key(url, says):
    with pytest.raises(SpaceError, match="search.storage") as e:
        load_space(str(OPTUNA_ASHA), {"search.storage": url})
    assert says in str(e.value)


def test_study_storage_needs_an_optuna_search_and_takes_a_database_url(tmp_path):
    with pytest.raises(SpaceError, match="search.storage: only Optuna searches keep a study"):
        load_space(str(OPTUNA_ASHA), {"search.storage": "sqlite:///x.db", "search.algorithm": "random"})
    from mfer_platform.sweep.study import study_storage

    url = f"sqlite:///{tmp_path}/study.db"
    space = load_space(str(OPTUNA_ASHA), {"search.storage": url})
    storage, where = study_storage(space, str(tmp_path / "store"), "sw")
    assert where == url and isinstance(storage, optuna.storages.RDBStorage)
    assert not (tmp_path / "store").exists()  # no journal when a database holds the study


@pytest.mark.slow
def test_a_real_sweeps_journal_holds_asha_stops_as_pruned_while_it_runs(tmp_path, ray_env):
    """Optuna TPE + ASHA, 4 trials one at a time: the journal, read by another process while the
    sweep runs, already holds finished trials; at the end each Optuna trial's state is its Tune
    trial's outcome — stopped before the last epoch: PRUNED with its last epoch's value, else COMPLETE."""
    from .sweeps import sweep_cmd, trial_results

    storage, journal = tmp_path / "store", tmp_path / "store" / "asha" / "optuna.journal"
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        proc = subprocess.Popen(sweep_cmd(storage, "asha", space=OPTUNA_ASHA), env=ray_env, stdout=out,
                                stderr=subprocess.STDOUT)
        live: list = []
        deadline = time.monotonic() + 600
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                storage_now = JournalStorage(JournalFileBackend(str(journal))) if journal.is_file() else None
                if not live and storage_now and "asha" in optuna.get_all_study_names(storage_now):
                    finished = [t for t in optuna.load_study(study_name="asha", storage=storage_now).trials
                                if t.state.is_finished()]
                    live = finished if proc.poll() is None else []
                time.sleep(1)
            proc.wait(timeout=60)
        finally:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert live, "no finished trial in the journal while the sweep ran"
    assert f"optuna-dashboard {journal}" in text
    rows = trial_results(storage / "asha")
    study = optuna.load_study(study_name="asha", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert len(study.trials) == len(rows) == 4
    for t in study.trials:
        (tid,) = t.user_attrs["tune_trial_ids"]
        epochs = [r["epoch"] for r in rows[tid]]
        assert t.state == (TrialState.COMPLETE if epochs[-1] == EPOCHS else TrialState.PRUNED), (tid, epochs, t)
        assert t.value == pytest.approx(rows[tid][-1]["train_loss"])
        assert t.intermediate_values.get(len(epochs)) == pytest.approx(rows[tid][-1]["train_loss"])
        if t.state == TrialState.COMPLETE:
            (checkpoint,) = t.user_attrs["checkpoints"]
            assert Path(checkpoint).is_dir() and tid in Path(checkpoint).parent.name, checkpoint
    states = {t.state for t in study.trials}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED}, states  # ASHA (eta 4) stopped some, not all
