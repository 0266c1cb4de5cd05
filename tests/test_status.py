"""``mfer-status``: the sweeps under a storage path and one sweep's trials, from the ledger and the
result files (JSON only), within 100 columns — and, on real Ray, while a sweep runs."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfer_platform.results.status import format_sweeps, format_trials, list_sweeps, sweep_status

from .sweeps import sweep_cmd, wait_for

LONG = {"optim.lr": 0.000543127, "loss.feature": "dsf", "loss.weight": 0.000133512,
        "model.attn_variant": "ds", "model.msc_fractions": "json:[0.5, 0.75, 1.0]",
        "data.a_rather_long_parameter_name_for_augmentation": "random_erasing_with_a_long_value"}


def _trial(exp: Path, tid: str, config: dict, epochs: int, vals: list[float], partial: bool = False) -> str:
    d = exp / f"run_trial_{tid}_{'_'.join(f'{k}={v}' for k, v in config.items())}"[:120]
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps(config))
    rows = [json.dumps({"epoch": e + 1, "val_acc": v, "trial_id": tid}) for e, v in enumerate(vals[:epochs])]
    (d / "result.json").write_text("\n".join(rows) + ("\n{\"epoch\": 9, \"val_a" if partial else "\n"))
    return d.name


def _sweep(storage: Path, name: str, created: str, trials: list[tuple], extends=None) -> None:
    """``trials``: (trial id, config, epochs reported, values, ledger events after start)."""
    exp = storage / name
    exp.mkdir(parents=True)
    (exp / "mfer_sweep.json").write_text(json.dumps({
        "name": name, "search_space": "long_space", "metric": "val_acc", "mode": "max", "created": created,
        "base_config": {"trainer": {"epochs": 3}}, "extends": extends}))
    events = []
    for tid, config, epochs, vals, after in trials:
        dir_name = _trial(exp, tid, config, epochs, vals, partial=tid.endswith("p"))
        events.append({"trial_id": tid, "event": "start", "status": "RUNNING", "dir": dir_name, "config": config,
                       "failures": 0, "time": 1.0})
        events += [{"trial_id": tid, **e} for e in after]
    (exp / "mfer_trials.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (exp / "experiment_state-2026.json").write_bytes(b"\x80\x04not json: a pickle a reader must never open")


DONE = [{"event": "complete", "status": "TERMINATED"}]


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    cfg = lambda lr, seed: {**LONG, "optim.lr": lr, "trainer.seed": seed}  # noqa: E731
    _sweep(tmp_path, "long", "2026-01-02T00:00:00+00:00", [
        ("t1", cfg(1e-3, 0), 3, [0.5, 0.6, 0.7], DONE),   # completed: best 0.7
        ("t2", cfg(1e-3, 1), 3, [0.5, 0.9, 0.8], DONE),   # its second seed: best 0.9 -> mean 0.8, n=2
        ("t3", cfg(2e-3, 0), 1, [0.95], DONE),            # stopped early at epoch 1 of 3: 0.95, n=1
        ("t4p", cfg(3e-3, 0), 2, [0.1, 0.2], []),         # running, a partial last line skipped
        ("t5", cfg(4e-3, 0), 0, [], [{"event": "error", "status": "ERROR", "error": "RuntimeError: boom"}]),
    ])
    _sweep(tmp_path, "long-ext1", "2026-01-03T00:00:00+00:00",
           [("t6", cfg(5e-3, 0), 1, [0.3], [{"event": "recover", "status": "PENDING", "error": "node lost"}])],
           extends="long")
    _sweep(tmp_path, "older", "2026-01-01T00:00:00+00:00", [])
    return tmp_path


def test_a_sweeps_trials_with_states_epochs_and_metric(storage):
    s = sweep_status(str(storage), "long")
    assert s.experiments == ["long", "long-ext1"]
    got = [(t.number, t.trial_id, t.state, t.epochs, t.planned, t.value) for t in s.trials]
    assert got == [(1, "t1", "completed", 3, 3, 0.7), (2, "t2", "completed", 3, 3, 0.9),
                   (3, "t3", "stopped", 1, 3, 0.95), (4, "t4p", "running", 2, 3, 0.2),
                   (5, "t5", "error", 0, 3, None), (6, "t6", "pending", 1, 3, 0.3)]
    assert s.counts() == {"running": 1, "pending": 1, "completed": 2, "stopped": 1, "error": 1}
    mean, n, config = s.best()
    assert (round(mean, 6), n) == (0.95, 1) and config["optim.lr"] == 2e-3  # best by its seeds' mean


def test_the_listing_and_the_trial_table_fit_100_columns(storage):
    sweeps = list_sweeps(str(storage))
    assert [s.name for s in sweeps] == ["older", "long"]  # oldest first; the extension counts with its sweep
    listing, table = format_sweeps(sweeps), format_trials(sweep_status(str(storage), "long"))
    for text in (listing, table):
        assert max(len(line.encode()) for line in text.splitlines()) <= 100, text
    assert "6 trials: 1 running, 1 pending, 2 completed, 1 stopped, 1 error" in listing
    assert "best val_acc 0.9500 (n=1) lr=0.002" in listing and "no trials yet" in listing
    assert "RuntimeError: boom" in table and "lr=0.002 feature=dsf" in table
    wide = format_trials(sweep_status(str(storage), "long"), width=None)
    assert "msc_fractions=[0.5,0.75,1.0]" in wide and "a_rather_long_parameter_name_for_augmentation=random_erasing_with_a_long_value" in wide
    assert max(len(line) for line in wide.splitlines()) > 100


def _cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    import mfer_platform.cli.status as cli

    monkeypatch.setattr(sys, "argv", ["mfer-status", *argv])
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_lists_shows_and_refuses_in_one_line(storage, tmp_path, monkeypatch, capsys):
    code, out, _ = _cli(monkeypatch, capsys, f"storage_path={storage}")
    assert code == 0 and "long  (space long_space" in out
    code, out, _ = _cli(monkeypatch, capsys, f"storage_path={storage}", "name=long", "wide=true")
    assert code == 0 and "t6" in out and "random_erasing_with_a_long_value" in out
    code, _, err = _cli(monkeypatch, capsys, f"storage_path={storage}", "name=nope")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "name='nope'" in err and "older, long" in err
    code, _, err = _cli(monkeypatch, capsys, f"storage_path={tmp_path / 'missing'}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "storage_path=" in err and "not found" in err


@pytest.mark.slow
def test_mfer_status_from_another_process_shows_a_running_sweeps_trials(tmp_path):
    """A real sweep (the smoke space, 2 trials x 2 epochs, both at a time) runs in one process while
    ``mfer-status`` is called from another until it has shown a running trial and then both finished."""
    storage, log = tmp_path / "sweeps", tmp_path / "sweep.log"
    status = [sys.executable, "-m", "mfer_platform.cli.status", f"storage_path={storage}", "name=live"]
    seen: list[str] = []

    def shows(state: str, count: int) -> bool:
        out = subprocess.run(status, capture_output=True, text=True, timeout=120)
        seen.append(out.stdout + out.stderr)
        rows = [ln for ln in out.stdout.splitlines()[3:] if ln[:3].strip().isdigit()]
        return sum(ln.split()[2] == state for ln in rows) >= count

    with log.open("w") as f:
        sweep = subprocess.Popen(sweep_cmd(storage, "live", "search.num_samples=2"), stdout=f, stderr=f)
    try:
        shown = wait_for(lambda: sweep.poll() is None and shows("running", 1) or sweep.poll() is not None,
                         timeout=600, every=0.5)
        assert shown and sweep.poll() is None, "no running trial shown: " + log.read_text()[-3000:]
        running = seen[-1]
        assert sweep.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert "1 running" in running.splitlines()[1] or "2 running" in running.splitlines()[1], running
    assert shows("completed", 2), seen[-1]
    assert max(len(ln.encode()) for ln in seen[-1].splitlines()) <= 100
    for line in log.read_text().splitlines():  # the sweep's own output fits 100 columns too, but for
        # Ray's own log lines and a command to copy that carries the (test's long) storage path whole
        assert len(line.encode()) <= 100 or "WARNING" in line or "(raylet)" in line or str(storage) in line, line
