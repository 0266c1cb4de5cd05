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
import os
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
