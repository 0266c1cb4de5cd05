"""``fit``: one MFER training run, start to finish, with no orchestration framework inside.

``fit`` composes named steps: build the run (``mfer.train.build``), start or resume its progress
(``mfer.train.checkpoint``), then per epoch train (``mfer.train.engine.train_one_epoch``), step
the LR schedule, validate and select, checkpoint when ``CheckpointPolicy`` says so, and after the
last epoch test once; finally the summary. Model selection uses the validation split carved from
train; the test split is evaluated once, for the selected epoch, after the last epoch
(fer_pitfalls #2). After every epoch ``on_epoch`` is called with the metrics — among them where
the time outside the training steps went (``eval_s``, ``checkpoint_s``, ``setup_s``, and ``test_s``
at the end), the figures a GPU duty cycle is judged by —, the selected
epoch's full validation result when the selection improved, and the checkpoint folder when the
epoch wrote one: the sweep platform reports to Ray Tune through that hook, so this module never
imports Ray. Once the hook has returned for a new checkpoint (the tracker has copied it, or — when
it uploads in the background — has finished copying the previous one), the previous local
checkpoint is deleted: the run directory holds one checkpoint, the newest. With ``background_save``
an interval checkpoint is written on a thread (``CheckpointWriter``) and handed over while still
being written, with a Future that says when its folder is complete; the write must be complete before
the next checkpoint is written, so the previous folder that the hand-over deletes never is in flight.
"""
from __future__ import annotations

import json
import resource
import shutil
import time
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Optional

import torch

from mfer.config import TrainConfig
from mfer.train.build import TrainingRun, build_run
from mfer.train.checkpoint import (META, RESULT_KEYS, CheckpointPolicy, CheckpointWriter, Progress, add_to_meta,
                                   checkpoint_folder, fresh_progress, load_weights, resume, save_progress,
                                   selected_val, snapshot_weights)
from mfer.train.engine import train_one_epoch
from mfer.validation import validate

# The scalar metrics of one evaluation, reported per epoch for val and once for test.
SPLIT_METRICS = ("acc", "mean_class_acc", "macro_f1", "loss", "compactness")
# The CheckpointPolicy reasons written off the training thread with background_save: insurance against a
# crash, not due at their epoch (the Ray trainable uploads the same ones in the background).
BACKGROUND_SAVE = frozenset({"interval"})


@dataclass
class EpochEnd:
    """What the per-epoch hook receives."""

    epoch: int  # completed epochs, 1-based
    metrics: dict  # flat scalars: safe to hand to any tracker
    checkpoint_dir: Optional[Path]  # run_dir/checkpoints/epoch_NNNN when this epoch wrote one, else None
    is_last: bool
    # The selected epoch's full validation result (RESULT_KEYS + "epoch") when this epoch became the
    # selected one, else None: an early-stopped trial, which gets no final checkpoint, keeps it.
    selected_val: Optional[dict] = None
    # Why checkpoint_dir was written (CheckpointPolicy.reason: last | requested | epochs | interval):
    # a tracker may upload an interval checkpoint in the background; the others are due at that epoch.
    checkpoint_reason: Optional[str] = None
    # None: checkpoint_dir was complete when handed over. Else (fit's background_save) it is still being
    # written: a Future that resolves to the writer's seconds once the folder is in place, or raises its error.
    checkpoint_ready: Optional[Future] = None


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train_and_validate(run: TrainingRun, progress: Progress, epoch: int) -> tuple[dict, bool]:
    """Train epoch ``epoch``, step the LR schedule, score the validation split and keep the weights
    (a CPU copy, written with the next checkpoint) if the epoch is the best so far; returns the flat
    metrics the hook receives and whether the selection moved to this epoch."""
    t0 = time.perf_counter()
    stats = train_one_epoch(run, epoch)
    progress.train_images += stats.seen
    progress.train_seconds += stats.seconds
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    t_eval = time.perf_counter()
    val = run.evaluate(run.data.val)
    extra_val = {f"val_{k}": v for k, v in run.scheme.evaluate_extra(run, run.data.val).items()}
    eval_s = time.perf_counter() - t_eval
    metric = run.cfg.trainer.selection_metric
    score = val[metric.removeprefix("val_")]
    improved = score > progress.best["score"]
    if improved:
        progress.best = {"score": score, "epoch": epoch + 1, "val": val}
        progress.best_weights = snapshot_weights(run.model, run.criterion)
    row = {
        "epoch": epoch + 1, "train_loss": stats.loss, **{f"val_{m}": val[m] for m in SPLIT_METRICS}, "lr": lr,
        "epoch_s": time.perf_counter() - t0, "train_images_per_s": stats.seen / max(stats.seconds, 1e-9),
        "train_s": stats.seconds, "eval_s": eval_s, **extra_val,
        **{f"scheme_{k}": v for k, v in stats.scheme.items()},
    }
    progress.history.append(row)
    progress.epoch = epoch + 1
    return {
        **row,
        "selected_epoch": progress.best["epoch"],
        "best_" + metric: progress.best["score"],
        "images_per_s": progress.train_images / max(progress.train_seconds, 1e-9),
        "params": run.static["params"],
    }, improved


def test_scalars(test: dict) -> dict:
    """The flat ``test_*`` scalars of a test evaluation, the scheme's extra figures included."""
    return {**{f"test_{m}": test[m] for m in SPLIT_METRICS},
            **{f"test_{k}": v for k, v in (test.get("extra") or {}).items()}}


def test_selected(run: TrainingRun, progress: Progress, checkpoint: Path) -> dict:
    """Evaluate the selected epoch's weights on the test split, once; the checkpoint's meta.json
    keeps the full result (scalars, per-class accuracy, confusion), so reports need no re-run."""
    load_weights(run.model, run.criterion, progress.best_weights)
    test = run.evaluate(run.data.test)
    extra = run.scheme.evaluate_extra(run, run.data.test)
    if extra:  # the scheme's own figures (MAFER's low-resolution accuracies) are kept beside the standard ones
        test["extra"] = extra
    add_to_meta(checkpoint, {"test": {k: test[k] for k in (*RESULT_KEYS, "extra") if k in test}})
    return test


def write_checkpoint(run: TrainingRun, progress: Progress, folder: Path, result: dict, reason: str,
                     writer: Optional[CheckpointWriter]) -> Optional[Future]:
    """Write the checkpoint due for ``reason`` into ``folder``: on ``writer``'s thread if it has one and the
    reason is in BACKGROUND_SAVE (returns the write's Future), else now (returns None)."""
    if writer is not None and reason in BACKGROUND_SAVE:
        return writer.submit(run, progress, folder, result)
    save_progress(run, progress, folder, result, resumable=reason != "last")
    return None


def run_epoch(run: TrainingRun, progress: Progress, epoch: int, policy: CheckpointPolicy, run_dir: Path,
              writer: Optional[CheckpointWriter] = None) -> tuple[EpochEnd, Optional[dict]]:
    """One epoch end to end: train and validate, checkpoint when the policy says so (always after
    the last epoch, weights-only: nothing trains on from it), and after the last epoch test; returns
    the hook's EpochEnd and the test evaluation (None before the last epoch). With a ``writer``, the
    write in flight is collected (its seconds reported as ``background_save_s``) as soon as it is done,
    and waited for before any checkpoint is written."""
    tc = run.cfg.trainer
    is_last = epoch + 1 == tc.epochs
    result, improved = train_and_validate(run, progress, epoch)
    saved, ready, t0 = None, None, time.perf_counter()
    reason = policy.reason(epoch + 1)
    written = writer.collect(wait=reason is not None) if writer is not None else None
    if written is not None:
        result["background_save_s"] = written
    if reason is not None:
        saved = checkpoint_folder(run_dir, epoch + 1)
        ready = write_checkpoint(run, progress, saved, result, reason, writer)
        policy.saved()
    # Seconds the device waits for it: serialisation, or the CPU snapshot (and any wait for the previous write).
    result["checkpoint_s"] = time.perf_counter() - t0
    test = None
    if is_last and tc.evaluate_test:
        t0 = time.perf_counter()
        test = test_selected(run, progress, saved)
        result.update(test_scalars(test), test_s=time.perf_counter() - t0)
    return EpochEnd(epoch + 1, dict(result), saved, is_last, selected_val(progress) if improved else None,
                    reason, ready), test


def finish_from_checkpoint(run: TrainingRun, progress: Progress, folder: Path) -> tuple[EpochEnd, Optional[dict]]:
    """The end of a run whose checkpoint already holds every epoch — a driver that died after the last
    epoch's checkpoint, before its tracker marked the trial done, resumes it so. Nothing is trained:
    the result is the stored one (meta.json holds the full test result), and the test split is
    evaluated now only if the crash came between that checkpoint and its test. The checkpoint is
    normally the weights-only final one (``resume`` rebuilt the progress from its meta.json)."""
    meta = json.loads((folder / META).read_text())
    test = None
    if run.cfg.trainer.evaluate_test:
        test = meta.get("test") or test_selected(run, progress, folder)
    metrics = {**meta["last"], **(test_scalars(test) if test else {})}
    return EpochEnd(progress.epoch, metrics, None, True, None), test


def hand_over(end: EpochEnd, on_epoch: Optional[Callable[[EpochEnd], None]], previous: Optional[Path]) -> Optional[Path]:
    """Call the hook; once it has returned (a tracker has copied the new checkpoint), delete the
    previous local checkpoint. Returns the folder that is now the newest. ``previous`` is complete even
    with background saves: ``run_epoch`` waited for its write before writing ``end``'s."""
    if on_epoch is not None:
        on_epoch(end)
    if end.checkpoint_dir is None:
        return previous
    if previous is not None and previous != end.checkpoint_dir:
        shutil.rmtree(previous, ignore_errors=True)
    return end.checkpoint_dir


def summarize(run: TrainingRun, progress: Progress, test: Optional[dict], wall_s: float) -> dict:
    """metrics.json: the selected epoch's validation metrics, the test evaluation, throughput,
    the static provenance and the per-epoch history."""
    sel = progress.best["val"]
    summary = {
        **{f"val_{m}": sel[m] for m in ("acc", "mean_class_acc", "macro_f1", "loss")},
        "val_compactness": sel.get("compactness"),  # absent from older checkpoints
        "val_per_class_acc": sel["per_class_acc"], "val_confusion": sel["confusion"],
        "selected_epoch": progress.best["epoch"], "epochs_run": len(progress.history),
        "images_per_s": progress.train_images / max(progress.train_seconds, 1e-9),
        "wall_s": wall_s, "train_s": progress.train_seconds,
        "peak_memory_mb": _peak_memory_mb(run.device),
    }
    if test is not None:
        summary.update(test_scalars(test))
        summary.update({"test_per_class_acc": test["per_class_acc"], "test_confusion": test["confusion"],
                        "test_n": test["n"]})
    return {**summary, **run.static, "history": progress.history}


def fit(
    cfg: TrainConfig,
    run_dir: str | Path,
    on_epoch: Optional[Callable[[EpochEnd], None]] = None,
    resume_from: Optional[str | Path] = None,
    checkpoint_epochs: Collection[int] = (),
    background_save: bool = False,
) -> dict:
    """Train, select on validation, test once; write ``run_dir/metrics.json``; return its content.

    Checkpoints go to ``run_dir/checkpoints/epoch_NNNN`` (``CheckpointPolicy``: the config's
    intervals, the last epoch, and every epoch in ``checkpoint_epochs``, completed epochs counted
    from 1); ``resume_from`` is such a folder. ``background_save``: write interval checkpoints on a
    thread, for an ``on_epoch`` that waits for ``EpochEnd.checkpoint_ready`` before it reads the folder;
    every write has completed (a failed one re-raised here) before fit returns or raises."""
    t_start = time.perf_counter()
    cfg = validate(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = build_run(cfg)
    progress = fresh_progress(run) if resume_from is None else resume(run, Path(resume_from))
    if progress.epoch > cfg.trainer.epochs:
        raise RuntimeError(f"the checkpoint {resume_from} holds {progress.epoch} epochs, more than "
                           f"trainer.epochs={cfg.trainer.epochs}: resume it with its own trainer.epochs")
    finished = progress.epoch == cfg.trainer.epochs  # nothing left to train: the stored result stands
    policy = CheckpointPolicy.from_config(cfg.trainer, checkpoint_epochs)  # the interval starts now
    test = newest = None
    setup_s = time.perf_counter() - t_start  # build (data, model) and resume: before the first step
    with CheckpointWriter() if background_save else nullcontext() as writer:
        for epoch in range(progress.epoch, cfg.trainer.epochs):
            end, test = run_epoch(run, progress, epoch, policy, run_dir, writer)
            end.metrics["setup_s"] = setup_s
            newest = hand_over(end, on_epoch, newest)
    if finished:
        end, test = finish_from_checkpoint(run, progress, Path(resume_from))
        hand_over(end, on_epoch, None)  # once, so a tracker marks the run finished
    metrics = summarize(run, progress, test, time.perf_counter() - t_start)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    return metrics
