"""A realistic sweep experiment on disk, built by really training — without paying for Ray.

Two configurations (``model.attn_variant`` none | ds) x two seeds are trained by
``mfer.train.fit`` with a tiny config and laid out as Ray Tune 2.60 leaves them: one folder per
trial with ``params.json``, ``result.json`` (one line per epoch: the trainer's metrics plus
Ray's bookkeeping, as the trainable's ``tune_result`` makes them) and the latest checkpoint as
``checkpoint_00000N/``, beside ``mfer_sweep.json``. Two more trials make it a sweep rather than a
demo: one stopped after its first epoch, as ASHA stops a trial (under the default checkpoint
policy it has no checkpoint, only result rows), and one that crashed before finishing an epoch
(``error.txt``, no checkpoint).
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from mfer.config import to_dict
from mfer.train import fit
from mfer.train.checkpoint import latest_checkpoint
from mfer_platform.overrides import apply_overrides
from mfer_platform.sweep.trainable import tune_result

from .conftest import TINY, compose_train

EXPERIMENT = "ablation"
FACTOR = "model.attn_variant"
BASE = (*TINY, "model.attn_groups=0", "trainer.max_steps_per_epoch=2")
# (attention variant, seed, epochs after which the scheduler stops the trial or None)
TRIALS = [("none", 0, None), ("none", 1, None), ("ds", 0, None), ("ds", 1, None), ("none", 2, 1)]
CRASHED = ("ds", 2)


class _Stopped(Exception):
    """Raised from the epoch hook, as a scheduler's stop arrives between two epochs."""


def _record(base: dict) -> dict:
    return {
        "name": EXPERIMENT, "search_space": "test_ablation", "factors": [FACTOR], "seed_key": "trainer.seed",
        "seeds": [0, 1, 2], "metric": "val_acc", "mode": "max", "objectives": {}, "base_config": base,
        "baseline": {FACTOR: "none"}, "searcher": {"algorithm": "grid", "first_seed": 0},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2}, "resources": {"cpu": 1, "gpu": 0},
        "created": "2026-01-01T00:00:00+00:00",
    }


def _trial_dir(exp: Path, index: int, trial_id: str, params: dict) -> Path:
    tag = ",".join(f"{k.replace('.', '_')}={v}" for k, v in params.items())
    d = exp / f"run_trial_{trial_id}_{index}_{tag}_2026-01-01_00-00-00"
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps(params, indent=2))
    return d


def _train_trial(exp: Path, base: dict, index: int, variant: str, seed: int, stop_after) -> None:
    trial_id = f"{index:08x}"
    params = {FACTOR: variant, "trainer.seed": seed}
    rows: list[dict] = []

    def on_epoch(end) -> None:
        total = (rows[-1]["time_total_s"] if rows else 0.0) + end.metrics["epoch_s"]
        rows.append({**tune_result(end), "trial_id": trial_id, "training_iteration": end.epoch, "time_total_s": total,
                     "timestamp": int(time.time()), "done": end.is_last, "config": params})
        if end.epoch == stop_after:
            raise _Stopped

    with tempfile.TemporaryDirectory() as run_dir:
        try:
            fit(apply_overrides(base, {**params, "trainer.threads": 1}), run_dir, on_epoch=on_epoch)
        except _Stopped:
            pass
        d = _trial_dir(exp, index, trial_id, params)
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        ckpt = latest_checkpoint(Path(run_dir))
        if ckpt is not None:
            shutil.copytree(ckpt, d / f"checkpoint_{len(rows) - 1:06d}")


def build(storage: Path) -> Path:
    """Train and lay out the experiment under ``storage``; returns ``storage``."""
    base = to_dict(compose_train(*BASE))
    exp = storage / EXPERIMENT
    exp.mkdir(parents=True)
    (exp / "mfer_sweep.json").write_text(json.dumps(_record(base), indent=1))
    for index, (variant, seed, stop_after) in enumerate(TRIALS):
        _train_trial(exp, base, index, variant, seed, stop_after)
    crashed = _trial_dir(exp, len(TRIALS), f"{len(TRIALS):08x}", {FACTOR: CRASHED[0], "trainer.seed": CRASHED[1]})
    (crashed / "result.json").write_text("")
    (crashed / "error.txt").write_text("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA error: out of memory\n")
    return storage


def clone(storage: Path, dest: Path) -> Path:
    """A private copy of the storage folder for a test that writes into it (hard links: instant)."""
    shutil.copytree(storage, dest, copy_function=os.link)
    return dest


# ---------------------------------------------------------------- a searched sweep, written without training
SEARCHED = "quickstart"
SEARCHED_PARAMS = {  # as search_spaces/quickstart.yaml varies them
    "optim.lr": {"loguniform": [3.0e-4, 3.0e-3]}, "loss.feature": {"choice": ["none", "center", "dsf"]},
    "loss.weight": {"loguniform": [1.0e-4, 1.0e-1]}, "model.attn_variant": {"choice": ["none", "ds"]},
    "model.msc_fractions": {"choice": [[1.0], [0.5, 0.75, 1.0]]},
}
SEARCHED_EPOCHS = 4


def _searched_trials(n: int, seed: int) -> list[tuple[dict, int, str]]:
    """(params as Tune wrote them, epochs run, ledger status) of ``n`` sampled trials: ASHA stops every
    other trial after 1 or 2 epochs; the last one errors after 1. One list value is written in the
    ``json:`` spelling of stores from before the one spelling, to be read back alike."""
    from mfer_platform.overrides import encode_choice

    rng = random.Random(seed)
    out = []
    for i in range(n):
        msc = [0.5, 0.75, 1.0] if i % 3 else [1.0]
        params = {"optim.lr": 10 ** rng.uniform(math.log10(3e-4), math.log10(3e-3)),
                  "loss.feature": rng.choice(["none", "center", "dsf"]),
                  "loss.weight": 10 ** rng.uniform(-4, -1), "model.attn_variant": rng.choice(["none", "ds"]),
                  "model.msc_fractions": "json:" + json.dumps(msc) if i == 1 else encode_choice(msc)}
        epochs, status = (SEARCHED_EPOCHS, "TERMINATED") if i % 2 == 0 else (1 + i % 3 // 2, "TERMINATED")
        out.append((params, 1 if i == n - 1 else epochs, "ERROR" if i == n - 1 else status))
    return out


def _curve(params: dict, epochs: int, trial_id: str, start: float) -> list[dict]:
    """Result rows whose accuracy grows with epochs and favours the DS variant and a mid learning rate."""
    quality = 0.15 * (params["model.attn_variant"] == "ds") - 0.1 * abs(math.log10(params["optim.lr"]) + 3)
    rows, best = [], (-1.0, 0)
    for e in range(1, epochs + 1):
        acc = min(0.95, 0.2 + 0.1 * e + quality)
        best = max(best, (acc, e))
        rows.append({"epoch": e, "val_acc": acc, "val_mean_class_acc": acc - 0.01, "val_macro_f1": acc - 0.02,
                     "val_loss": 2 - acc, "train_loss": 2.2 - acc, "selected_epoch": best[1], "trial_id": trial_id,
                     "time_total_s": 10.0 * e, "timestamp": int(start + 10 * e), "epoch_s": 10.0})
    if epochs == SEARCHED_EPOCHS:
        rows[-1].update(test_acc=best[0] - 0.03, test_mean_class_acc=best[0] - 0.04, test_macro_f1=best[0] - 0.05)
    return rows


def build_searched(storage: Path, n: int = 8, seed: int = 3) -> Path:
    """An Optuna-searched sweep shaped like the quickstart's (five factors, two log-uniform, a list
    choice; ASHA's early stops; a failed trial), with its trial ledger, written in well under a second."""
    base = to_dict(compose_train(*TINY, f"trainer.epochs={SEARCHED_EPOCHS}"))
    exp = storage / SEARCHED
    exp.mkdir(parents=True)
    record = {**_record(base), "name": SEARCHED, "search_space": "quickstart", "factors": list(SEARCHED_PARAMS),
              "params": SEARCHED_PARAMS, "baseline": None, "seeds": [0],
              "searcher": {"algorithm": "optuna_tpe", "first_seed": 0}}
    (exp / "mfer_sweep.json").write_text(json.dumps(record, indent=1))
    ledger, t0 = [], 1_800_000_000.0
    for i, (params, epochs, status) in enumerate(_searched_trials(n, seed)):
        trial_id, start = f"{i:08x}", t0 + 25 * i
        d = _trial_dir(exp, i, trial_id, params)
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in _curve(params, epochs, trial_id, start)))
        ledger.append({"trial_id": trial_id, "time": start, "event": "start", "status": "RUNNING", "dir": d.name,
                       "config": params, "failures": 0, "error": None})
        ledger.append({"trial_id": trial_id, "time": start + 10 * epochs, "event": "error" if status == "ERROR"
                       else "complete", "status": status, "failures": 0,
                       "error": "RuntimeError: CUDA error: out of memory" if status == "ERROR" else None})
    (exp / "mfer_trials.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ledger))
    return storage
