"""Helpers for end-to-end sweep tests: run the real CLI, read what Ray left on disk, clean up."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

SMOKE = Path(__file__).parent / "fixtures" / "spaces" / "smoke.yaml"


def sweep_cmd(storage: Path, name: str, *extra: str, space: Path = SMOKE) -> list[str]:
    return [sys.executable, "-m", "mfer_platform.cli.sweep", f"search_space={space}", f"name={name}",
            f"storage_path={storage}", *extra]


def trial_results(exp_dir: Path) -> dict[str, list[dict]]:
    """{trial_id: the rows of its result.json (one per reported epoch), in order}."""
    out = {}
    for result in sorted(exp_dir.glob("*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def trial_epochs(exp_dir: Path) -> dict[str, list[int]]:
    """{trial_id: epochs reported, in order}."""
    return {trial: [r["epoch"] for r in rows] for trial, rows in trial_results(exp_dir).items()}


def epoch_nodes(exp_dir: Path) -> dict[str, list[str]]:
    """{trial_id: the node id each reported epoch ran on, in order}."""
    return {trial: [r["node_id"] for r in rows] for trial, rows in trial_results(exp_dir).items()}


def trial_nodes(exp_dir: Path) -> set[str]:
    return {node for nodes in epoch_nodes(exp_dir).values() for node in nodes}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive_nodes(address: str, env: dict) -> int:
    """Alive nodes of the Ray cluster at ``address`` (0 while it cannot be reached)."""
    code = f"import ray; ray.init(address={address!r}, logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        return int(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return 0


def worker_node_ids(address: str, env: dict) -> list[str]:
    """Ids of the alive non-head nodes of the Ray cluster at ``address``."""
    code = (f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
            "print(*[n['NodeID'] for n in ray.nodes() if n['Alive'] and 'node:__internal_head__' not in n['Resources']])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return out.stdout.strip().splitlines()[-1].split()


def assert_store_holds_each_trial_once(storage: Path, name: str, n_trials: int, epochs: Optional[int] = None) -> None:
    """The results store (what reports, tables and exports read) has each of the experiment's
    ``n_trials`` trials in one row and each trial's epochs once — ``1..epochs`` when given."""
    import pandas as pd

    trials = pd.read_parquet(storage / "results" / "trials.parquet", filters=[("experiment", "==", name)])
    assert len(trials) == n_trials and trials["trial_id"].is_unique, trials[["trial_id", "status"]]
    rows = pd.read_parquet(storage / "results" / "epochs.parquet", filters=[("experiment", "==", name)])
    assert not rows.duplicated(["trial_id", "epoch"]).any()
    assert set(rows["trial_id"]) <= set(trials["trial_id"])
    if epochs is not None:
        assert (trials["status"] == "completed").all(), trials[["trial_id", "status"]]
        for trial_id in trials["trial_id"]:
            assert sorted(rows.loc[rows["trial_id"] == trial_id, "epoch"]) == list(range(1, epochs + 1)), trial_id


def wait_for(predicate, timeout: float, every: float = 1.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return False


def sweep_through_fault(cmd: list[str], env: dict, log: Path, ready: Callable[[], bool],
                        fault: Callable[[], None]) -> None:
    """Run a sweep CLI; as soon as ``ready()`` holds mid-sweep, inject ``fault()``; then the sweep
    must still finish with exit status 0. Output goes to ``log`` (a file, not a pipe: a full pipe
    would stall the driver mid-test)."""
    with log.open("w") as out:
        sweep = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    try:
        wait_for(lambda: sweep.poll() is not None or ready(), timeout=600, every=0.2)
        assert sweep.poll() is None, "the sweep ended before the fault: " + log.read_text()[-4000:]
        fault()
        sweep.wait(timeout=900)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, log.read_text()[-4000:]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process started with start_new_session=True and everything in its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def kill_processes_mentioning(token: str) -> None:
    """Stop the Ray processes a test started (they carry its private temp dir on the command line)."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if token in cmdline:
            try:
                os.kill(int(pid_dir.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
