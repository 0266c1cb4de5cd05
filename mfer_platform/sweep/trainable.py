"""The Ray Tune trainable: one trial = one ``mfer.train.fit`` call, reporting through its hook.

This is the only module that calls ``tune.report``/``tune.get_checkpoint`` (Ray's API changed
four times; keep it behind one small adapter). A trial resumes from its latest checkpoint after
a failure or a driver restart; PBT's exploit step arrives the same way, with a mutated config.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mfer_platform.keys import VAL_CONFUSION, VAL_PER_CLASS
from mfer_platform.overrides import apply_overrides, trial_values


def tune_result(end) -> dict[str, Any]:
    """What Tune records for an epoch: the trainer's scalars plus, when the selection improved, the
    selected epoch's per-class validation result (so an early-stopped trial, which gets no final
    checkpoint, still has it in its result rows; the store never needs the checkpoint for it)."""
    result = dict(end.metrics)
    if end.selected_val is not None:
        result[VAL_PER_CLASS] = end.selected_val["per_class_acc"]
        result[VAL_CONFUSION] = end.selected_val["confusion"]
    return result


def run_trial(config: dict[str, Any], base: dict, first_seed: int, threads: int,
              rows: dict[str, dict] | None = None, checkpoint_epochs: tuple[int, ...] = ()) -> None:
    """One trial. ``checkpoint_epochs``: where the scheduler pauses or exploits trials (PBT, HyperBand),
    which need a checkpoint at exactly that epoch on top of the trainer's own interval policy."""
    import ray
    from ray import tune

    from mfer.train import fit
    from mfer_platform.sweep.faults import maybe_fail

    values = trial_values(config, first_seed, rows)
    values.setdefault("trainer.threads", threads)
    cfg = apply_overrides(base, values)
    run_dir = Path(tempfile.mkdtemp(prefix="mfer-trial-"))
    node_id = ray.get_runtime_context().get_node_id()
    trial_id = tune.get_context().get_trial_id()

    def report(end) -> None:
        ckpt = tune.Checkpoint.from_directory(str(end.checkpoint_dir)) if end.checkpoint_dir else None
        # Uploads the checkpoint folder before returning; node_id shows where the epoch ran.
        tune.report({**tune_result(end), "node_id": node_id}, checkpoint=ckpt)
        maybe_fail(trial_id, end.epoch)

    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            fit(cfg, run_dir, on_epoch=report, checkpoint_epochs=checkpoint_epochs)
        else:
            with checkpoint.as_directory() as resume_dir:
                fit(cfg, run_dir, on_epoch=report, resume_from=resume_dir, checkpoint_epochs=checkpoint_epochs)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
