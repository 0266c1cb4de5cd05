"""End-to-end sweeps on real Ray: a crash and every trial's worker process SIGKILLed mid-trial, each
retried from its checkpoint, a killed driver resumed,
a real two-node local cluster, a worker node killed mid-sweep, a NaN trial, and trials errored to
exhaustion re-run with ``retry_errored=true``. Each fault test
ends by checking the results store holds every trial exactly once. Each test stops only the Ray
processes it started."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mfer_platform.results.summary import whole_sweep

from .sweeps import (SMOKE, alive_nodes, assert_store_holds_each_trial_once, epoch_nodes, free_port, kill_group,
                     kill_processes_mentioning, sweep_cmd, sweep_through_fault, trial_epochs, trial_nodes,
                     trial_results, wait_for, worker_node_ids)

pytestmark = pytest.mark.slow


def _assert_each_trial_once(exp: Path, n_trials: int, epochs: int) -> None:
    """Ray's own files (every epoch reported once, a checkpoint kept) and our results store agree."""
    done = trial_epochs(exp)
    assert len(done) == n_trials, done
    for trial, eps in done.items():
        assert eps == list(range(1, epochs + 1)), (trial, eps)  # every epoch exactly once
        assert list((exp.glob(f"*{trial}*/checkpoint_*"))), trial
    assert_store_holds_each_trial_once(exp.parent, exp.name, n_trials, epochs)


def test_crashed_trial_is_retried_from_its_checkpoint(tmp_path, ray_env):
    env = {**ray_env, "MFER_FAULTS": "raise@1", "MFER_FAULTS_DIR": str(tmp_path / "faults")}
    out = subprocess.run(sweep_cmd(tmp_path / "store", "crash", "search.num_samples=2"), env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert len(list((tmp_path / "faults").iterdir())) == 2  # the fault fired once in every trial
    _assert_each_trial_once(tmp_path / "store" / "crash", 2, 2)  # ...and each resumed at epoch 2
    status_lines = [line for line in out.stdout.splitlines() if "errored |" in line]
    assert status_lines and " 0 errored |" in status_lines[-1]  # retried, not failed


def test_a_trial_killed_between_checkpoints_loses_at_most_the_interval(tmp_path, ray_env):
    """Checkpoints every 2 epochs; each trial's worker is SIGKILLed after epoch 3, between two
    checkpoints: the retry resumes from epoch 2's checkpoint, so only epoch 3 runs again."""
    env = {**ray_env, "MFER_FAULTS": "kill@3", "MFER_FAULTS_DIR": str(tmp_path / "faults")}
    cmd = sweep_cmd(tmp_path / "store", "interval", "search.num_samples=2",
                    'overrides=["trainer.epochs=4","trainer.checkpoint_every=2"]')
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert len(list((tmp_path / "faults").iterdir())) == 2  # the kill landed in both trials
    for trial, rows in trial_results(tmp_path / "store" / "interval").items():
        by_worker: dict[int, list[int]] = {}
        for row in rows:
            by_worker.setdefault(row["pid"], []).append(row["epoch"])
        first, retry = by_worker.values()  # one worker killed, one retry
        # The SIGKILL can beat epoch 3's report to the driver, so the killed worker shows 2 or 3
        # epochs; either way the retry resumed from epoch 2's checkpoint, not from the start.
        assert first in ([1, 2], [1, 2, 3]) and retry == [3, 4], (trial, by_worker)
    assert_store_holds_each_trial_once(tmp_path / "store", "interval", 2, 4)


def test_a_trial_killed_after_interval_checkpoints_uploaded_in_the_background_resumes_from_the_last_complete(
        tmp_path, ray_env):
    """Wall-clock interval checkpoints after every epoch, uploaded off the training thread; each is handed
    to Ray (as a pointer) with the report after its upload completed. The worker is SIGKILLed after
    epoch 3: the retry resumes from the newest complete upload and reports each epoch once, the final
    checkpoint is weights-only, and no upload is left that Ray does not point to."""
    exp = tmp_path / "store" / "background"
    env = {**ray_env, "MFER_FAULTS": "kill@3", "MFER_FAULTS_DIR": str(tmp_path / "faults")}
    cmd = sweep_cmd(tmp_path / "store", "background", "search.num_samples=1", 'overrides=["trainer.epochs=4",'
                    '"trainer.checkpoint_every=0","trainer.checkpoint_every_s=0.001"]')
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (trial, rows), = trial_results(exp).items()
    by_worker: dict[int, list[int]] = {}
    for row in rows:
        by_worker.setdefault(row["pid"], []).append(row["epoch"])
    first, retry = by_worker.values()
    # Epoch 3's report carried the pointer to epoch 2's upload, unless the SIGKILL beat it to the driver
    # (then epoch 2's report, to epoch 1's): the retry trains on from there and reports only new epochs.
    assert (first, retry) in (([1, 2, 3], [4]), ([1, 2], [3, 4])), by_worker
    assert any("background_upload_s" in row for row in rows)
    # The final checkpoint reached Ray as a pending pointer; the node's uploader made its upload whole
    # before mfer-sweep returned, and dropped every upload it superseded.
    final = sorted(exp.glob("*/checkpoint_*"))[-1]
    assert sorted(p.name for p in final.iterdir()) == ["meta.json", "uploaded.json"]
    pointer = json.loads((final / "uploaded.json").read_text())
    assert pointer["pending"] and pointer["epoch"] == 4
    assert [p.name for p in exp.glob("*/uploads/*")] == ["epoch_0004"]
    assert sorted(p.name for p in (exp / pointer["path"]).iterdir()) == [
        "best_model.safetensors", "meta.json", "upload_complete.json"]  # weights-only: nothing trains on from it
    assert_store_holds_each_trial_once(tmp_path / "store", "background", 1, 4)
    from mfer_platform.serving.export import export_best  # the export follows the pointer to those weights

    assert (export_best(str(tmp_path / "store"), "background", tmp_path / "export") / "model.safetensors").is_file()


def test_killed_trial_worker_process_is_retried_from_its_checkpoint(tmp_path, ray_env):
    """SIGKILL from outside, as the OOM killer does: no exception, no goodbye. Every trial stalls
    after epoch 1 (``hang@1``) until the test kills its worker process, so each of the two kills
    lands mid-trial however fast or slow the machine runs."""
    import pandas as pd

    exp, faults = tmp_path / "store" / "workerkill", tmp_path / "faults"
    env = {**ray_env, "MFER_FAULTS": "hang@1", "MFER_FAULTS_DIR": str(faults)}
    killed: set[str] = set()

    def kill_stalled_trials() -> bool:  # Tune records each trial's worker pid in its results
        for trial, rows in trial_results(exp).items():
            if trial not in killed and (faults / f"{trial}.hang").exists():
                os.kill(rows[-1]["pid"], signal.SIGKILL)
                killed.add(trial)
        return len(killed) == 2

    sweep_through_fault(sweep_cmd(tmp_path / "store", "workerkill", "search.num_samples=2",
                                  'overrides=["trainer.epochs=3"]'), env,
                        tmp_path / "sweep.log", ready=kill_stalled_trials, fault=lambda: None)
    _assert_each_trial_once(exp, 2, 3)
    trials = pd.read_parquet(tmp_path / "store" / "results" / "trials.parquet")
    assert (trials["retries"] >= 1).all(), trials[["trial_id", "retries"]]  # each killed trial was retried...
    log = (tmp_path / "sweep.log").read_text()
    assert " 0 errored |" in [line for line in log.splitlines() if "errored |" in line][-1]  # ...and finished


def test_killed_driver_resumes_without_losing_or_repeating_trials(tmp_path, ray_env):
    exp, two = tmp_path / "store" / "resume", "search.num_samples=2"
    first = subprocess.Popen(sweep_cmd(tmp_path / "store", "resume", two), env=ray_env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(trial_epochs(exp)) >= 1, timeout=600), "no trial reported in time"
    finally:
        kill_group(first)
    kill_processes_mentioning(ray_env["RAY_TMPDIR"])  # the driver's local Ray dies with it
    assert len(trial_epochs(exp)) < 2 or any(len(e) < 2 for e in trial_epochs(exp).values())
    second = subprocess.run(sweep_cmd(tmp_path / "store", "resume", two), env=ray_env, capture_output=True,
                            text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming" in second.stdout + second.stderr
    _assert_each_trial_once(exp, 2, 2)
    # A finished sweep asked for more samples grows by a linked experiment with only the extra trials.
    more = subprocess.run(sweep_cmd(tmp_path / "store", "resume", "search.num_samples=4"), env=ray_env,
                          capture_output=True, text=True, timeout=900)
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    _assert_each_trial_once(tmp_path / "store" / "resume-ext1", 2, 2)
    again = subprocess.run(sweep_cmd(tmp_path / "store", "resume", "search.num_samples=4"), env=ray_env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "nothing to run" in again.stdout + again.stderr
    res = whole_sweep(str(tmp_path / "store"), "resume")  # what reports, figures and exports read
    assert res.experiments == ["resume", "resume-ext1"] and len(res.trials) == 4


def test_driver_killed_after_a_trials_last_checkpoint_counts_it_once_as_completed(tmp_path, ray_env):
    """The driver dies after a trial's final checkpoint, before Ray marks the trial done: resumed, the
    trial trains nothing, reports its stored result once, and is completed (it used to end in error)."""
    exp, faults = tmp_path / "store" / "last", tmp_path / "faults"
    hang = {**ray_env, "MFER_FAULTS": "hang@2", "MFER_FAULTS_DIR": str(faults)}  # stall after the last epoch
    cmd = sweep_cmd(tmp_path / "store", "last", "search.num_samples=2")
    first = subprocess.Popen(cmd, env=hang, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: list(faults.glob("*.hang")) and list(exp.glob("*/checkpoint_*")), timeout=600)
    finally:
        kill_group(first)
    kill_processes_mentioning(ray_env["RAY_TMPDIR"])
    second = subprocess.run(cmd, env=ray_env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # Ray's result.json holds the re-reported last epoch twice; the store counts it once, completed.
    assert len(trial_epochs(exp)) == 2 and all(sorted(set(e)) == [1, 2] for e in trial_epochs(exp).values())
    assert_store_holds_each_trial_once(tmp_path / "store", "last", 2, 2)
    assert "2 completed" in second.stdout


@contextlib.contextmanager
def local_cluster(ray_env: dict, worker_env: dict | None = None):
    """A real local cluster: a head and one worker node (1 CPU each, token auth), each its own
    process group so a test can kill one; ``worker_env`` is added to the worker node's environment
    only. Yields (address, env, worker process)."""
    port = free_port()
    env = {**ray_env, "RAY_AUTH_MODE": "token"}
    ray_bin = Path(os.sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=1", "--block",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        assert wait_for(lambda: list(Path(env["RAY_TMPDIR"]).glob("ray/session_*/logs/gcs_server.out")), 120)
        worker = subprocess.Popen([str(ray_bin), "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--block",
                                   "--disable-usage-stats"], env={**env, **(worker_env or {})},
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Launch only once the worker has joined, or every trial could land on the head alone.
        assert wait_for(lambda: alive_nodes(f"127.0.0.1:{port}", env) == 2, timeout=180, every=3), "worker never joined"
        yield f"127.0.0.1:{port}", env, worker
    finally:
        for proc in (worker, head):
            if proc is not None:
                kill_group(proc)


def test_sweep_spreads_over_a_real_two_node_cluster(tmp_path, ray_env):
    with local_cluster(ray_env) as (address, env, _):
        # Two trials at a time, one CPU per node: the second can only run on the other node.
        out = subprocess.run(sweep_cmd(tmp_path / "store", "twonode", f"cluster.address={address}",
                                       "search.num_samples=2"), env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    exp = tmp_path / "store" / "twonode"
    _assert_each_trial_once(exp, 2, 2)
    assert len(trial_nodes(exp)) == 2  # trials ran on both nodes


def test_killed_worker_node_moves_its_trials_to_the_surviving_node(tmp_path, ray_env):
    exp = tmp_path / "store" / "nodekill"
    # The worker node's trials stall after epoch 1 (and only there), so the kill always lands
    # mid-trial however fast or slow the machine runs: no race between the test and the trial.
    stall = {"MFER_FAULTS": "hang@1", "MFER_FAULTS_DIR": str(tmp_path / "faults")}
    with local_cluster(ray_env, worker_env=stall) as (address, env, worker):
        (worker_id,) = worker_node_ids(address, env)
        sweep_through_fault(sweep_cmd(tmp_path / "store", "nodekill", f"cluster.address={address}",
                                      "search.num_samples=2", 'overrides=["trainer.epochs=4"]'), env,
                            tmp_path / "sweep.log", ready=lambda: [worker_id] in epoch_nodes(exp).values(),
                            fault=lambda: kill_group(worker))
    _assert_each_trial_once(exp, 2, 4)
    began_on_worker = [nodes for nodes in epoch_nodes(exp).values() if nodes[0] == worker_id]
    # One trial began on the dead node; it finished on the survivor from its epoch-1 checkpoint.
    assert len(began_on_worker) == 1, epoch_nodes(exp)
    (nodes,) = began_on_worker
    assert nodes[1] != worker_id and nodes[1:] == [nodes[1]] * 3, nodes


def test_nan_trial_is_marked_failed_with_its_reason_not_retried_forever(tmp_path, ray_env):
    import pandas as pd

    cmd = sweep_cmd(tmp_path / "store", "nan", "max_failures=1", space=SMOKE.with_name("nan.yaml"))
    out = subprocess.run(cmd, env=ray_env, capture_output=True, text=True, timeout=900)
    # The sweep ends (one retry from the checkpoint, then the trial is failed) and says why.
    assert "errored" in out.stdout and "loss became" in out.stdout + out.stderr
    trials = pd.read_parquet(tmp_path / "store" / "results" / "trials.parquet")
    assert len(trials) == 1 and trials.loc[0, "status"] == "error"
    assert "loss became" in trials.loc[0, "error"] and trials.loc[0, "retries"] <= 2  # failure + 1 retry, no more
    assert_store_holds_each_trial_once(tmp_path / "store", "nan", 1)


def test_errored_trials_are_rerun_from_their_checkpoints_with_retry_errored(tmp_path, ray_env):
    """Trials that exhausted their retries (``max_failures=0`` and a raise after epoch 1, as in a storage
    outage) stay errored when the sweep is re-run as it was, which says how to retry them;
    ``retry_errored=true`` re-runs them from epoch 1's checkpoint, and the store lists each once, completed."""
    exp = tmp_path / "store" / "outage"
    env = {**ray_env, "MFER_FAULTS": "raise@1", "MFER_FAULTS_DIR": str(tmp_path / "faults")}
    cmd = sweep_cmd(tmp_path / "store", "outage", "search.num_samples=2", "max_failures=0")
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    # With every trial errored there is nothing to compare (exit 2, said in one line); the retry is said first.
    assert first.returncode in (0, 2), first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 trial(s) errored" in first.stdout and "retry_errored=true" in first.stdout, first.stdout[-3000:]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert "all 2 trials already finished; nothing to run (2 errored" in again.stdout + again.stderr
    retry = subprocess.run([*cmd, "retry_errored=true"], env=env, capture_output=True, text=True, timeout=900)
    assert retry.returncode == 0, retry.stdout[-3000:] + retry.stderr[-3000:]
    assert "trial(s) errored" not in retry.stdout, retry.stdout[-3000:]
    _assert_each_trial_once(exp, 2, 2)
    for trial, rows in trial_results(exp).items():
        by_worker: dict[int, list[int]] = {}
        for row in rows:
            by_worker.setdefault(row["pid"], []).append(row["epoch"])
        assert list(by_worker.values()) == [[1], [2]], (trial, by_worker)  # resumed at epoch 2, not redone
