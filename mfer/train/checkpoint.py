"""Full-state checkpoints that resume a run exactly where it stopped, and load without pickles.

A checkpoint is a folder:
- ``state.pt``: model, feature-loss centres, optimizer, scheduler, grad scaler, completed
  epochs, history and best-so-far bookkeeping — plain tensors and Python scalars, so it loads
  with ``torch.load(weights_only=True)``. Randomness needs no saved state: the trainer derives
  every epoch's seed from (seed, epoch), so epoch e after a resume draws what it would have.
  The final checkpoint has none: after the last epoch nothing trains on, so it is weights-only
  (``best_model.safetensors`` + ``meta.json``; at ConvNeXt-B 0.62 GB instead of 2.49 GB with the
  AdamW moments), and resuming it (a driver that died before marking the run done) rebuilds the
  bookkeeping from ``meta.json`` and returns the stored result. The weights are stored as the model
  holds them (fp32 under mixed precision): a smaller dtype would change the exported model.
- ``best_model.safetensors``: the selected epoch's model + centres (what export ships).
- ``meta.json``: the config, the metrics so far, the selected epoch's full validation result
  (``selected_val``) and, in the final checkpoint, the full test result (``test``): everything a
  results store needs, readable without torch and without opening ``state.pt``.
Every checkpoint is a fresh folder, ``run_dir/checkpoints/epoch_NNNN`` (completed epochs), written
beside its target and renamed into place, so a crash never leaves half a checkpoint and an
uploader never sees a folder change under it.

When to write one is ``CheckpointPolicy``'s decision: by wall-clock interval
(``trainer.checkpoint_every_s``), by epoch interval (``trainer.checkpoint_every``), after the last
epoch and at epochs the caller names (PBT perturbations, HyperBand pauses). ``Progress`` is the
loop's bookkeeping between epochs; ``save_progress`` writes it with the run's components, and
``resume`` restores both into a freshly built ``TrainingRun``. ``CheckpointWriter`` writes the same
folder on a thread instead: the training thread only copies the state into CPU memory (at ConvNeXt-B a
full-state ``torch.save`` costs the GPU 4–7 s of waiting), for callers that can wait for the folder.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Optional

import torch
from safetensors.torch import load_file, save_file

from mfer.config import TrainerConfig
from mfer.schedule import lr_factor
from mfer.train.build import TrainingRun

STATE = "state.pt"
BEST = "best_model.safetensors"
META = "meta.json"
CHECKPOINTS = "checkpoints"  # run_dir/checkpoints/epoch_NNNN, one folder per checkpoint
# The full result of one evaluation, as meta.json and EpochEnd.selected_val carry it.
RESULT_KEYS = ("acc", "mean_class_acc", "macro_f1", "loss", "compactness", "per_class_acc", "confusion", "n")


@dataclass
class CheckpointPolicy:
    """When a resumable checkpoint is due: pure bookkeeping, no I/O, with an injectable clock.

    Due after epoch ``e`` (completed epochs, 1-based) when ``e`` is the last epoch, when ``e`` is in
    ``at_epochs``, when ``every_epochs > 0`` divides ``e`` (absolute epochs, so a resumed run keeps
    the same boundaries), or when ``every_s > 0`` seconds have passed since the last checkpoint this
    process wrote (``saved``) or, before it wrote any, since the policy was made. ``fit`` makes it
    when training starts, fresh or resumed: the checkpoint a resume starts from is the state of that
    moment, so the interval counts from there.
    """

    epochs: int
    every_epochs: int = 0
    every_s: float = 0.0
    at_epochs: Collection[int] = frozenset()
    clock: Callable[[], float] = time.monotonic
    last_saved: float = field(init=False)

    def __post_init__(self) -> None:
        self.at_epochs = frozenset(self.at_epochs)
        self.last_saved = self.clock()

    @classmethod
    def from_config(cls, tc: TrainerConfig, at_epochs: Collection[int] = (),
                    clock: Callable[[], float] = time.monotonic) -> "CheckpointPolicy":
        return cls(tc.epochs, tc.checkpoint_every, tc.checkpoint_every_s, at_epochs, clock)

    def reason(self, epoch: int) -> Optional[str]:
        """Why a checkpoint is due after ``epoch`` (last | requested | epochs | interval), or None."""
        if epoch >= self.epochs:
            return "last"
        if epoch in self.at_epochs:
            return "requested"
        if self.every_epochs > 0 and epoch % self.every_epochs == 0:
            return "epochs"
        if self.every_s > 0 and self.clock() - self.last_saved >= self.every_s:
            return "interval"
        return None

    def saved(self) -> None:
        """A checkpoint was just written: the wall-clock interval starts again."""
        self.last_saved = self.clock()


def checkpoint_folder(run_dir: Path, epoch: int) -> Path:
    """The folder of the checkpoint after ``epoch`` completed epochs."""
    return Path(run_dir) / CHECKPOINTS / f"epoch_{epoch:04d}"


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    """The newest complete checkpoint folder under ``run_dir``, or None (in-flight ``.tmp`` and
    ``.old`` folders are not checkpoints)."""
    folders = [p for p in (Path(run_dir) / CHECKPOINTS).glob("epoch_*")
               if p.is_dir() and p.name.removeprefix("epoch_").isdigit()]
    return max(folders, key=lambda p: int(p.name.removeprefix("epoch_")), default=None)


def save_checkpoint(folder: Path, state: Optional[dict[str, Any]], best_weights: dict[str, torch.Tensor],
                    meta: dict) -> Path:
    """Write a checkpoint folder atomically; ``state`` None: a weights-only (final) checkpoint."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if state is not None:
        torch.save(state, tmp / STATE)
    save_file({k: v.contiguous() for k, v in best_weights.items()}, str(tmp / BEST))
    (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def add_to_meta(folder: Path, extra: dict) -> None:
    """Merge ``extra`` into a saved checkpoint's ``meta.json`` (atomically: a reader sees the old
    file or the new one), for what is known only after saving, such as the final test evaluation."""
    path = Path(folder) / META
    meta = {**json.loads(path.read_text()), **extra}
    tmp = path.with_name(META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, path)


def load_state(folder: Path) -> dict[str, Any]:
    return torch.load(Path(folder) / STATE, map_location="cpu", weights_only=True)


@dataclass
class Progress:
    """What the loop carries from epoch to epoch; ``state.pt`` holds it beside the components."""

    best_weights: dict[str, torch.Tensor]  # the selected epoch's model + centres, on the CPU
    epoch: int = 0  # completed epochs
    history: list[dict] = field(default_factory=list)  # one metrics row per completed epoch
    best: dict = field(default_factory=lambda: {"score": -math.inf, "epoch": 0, "val": None})
    train_images: int = 0
    train_seconds: float = 0.0


def snapshot_weights(model: torch.nn.Module, criterion: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the model's and the criterion's tensors, as ``best_model.safetensors`` names them."""
    out = {f"model.{k}": v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    out.update({f"loss.{k}": v.detach().to("cpu", copy=True) for k, v in criterion.state_dict().items()})
    return out


def load_weights(model: torch.nn.Module, criterion: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    model.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("model.")})
    criterion.load_state_dict({k[5:]: v for k, v in weights.items() if k.startswith("loss.")})


def fresh_progress(run: TrainingRun) -> Progress:
    return Progress(snapshot_weights(run.model, run.criterion))


def selected_val(progress: Progress) -> Optional[dict]:
    """The selected epoch's full validation result with its ``epoch``; None before any selection."""
    val = progress.best["val"]
    if val is None:
        return None
    return {**{k: val[k] for k in RESULT_KEYS if k in val}, "epoch": progress.best["epoch"]}


def progress_payload(run: TrainingRun, progress: Progress, last: dict,
                     resumable: bool) -> tuple[Optional[dict[str, Any]], dict]:
    """(``state.pt``'s content or None, ``meta.json``'s) of the checkpoint after ``progress.epoch`` epochs:
    the live objects themselves, which training goes on mutating (``cpu_copy`` them to keep them)."""
    state = {
        "model": run.model.state_dict(), "loss": run.criterion.state_dict(), "scheme": run.scheme.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "epoch": progress.epoch,
        "history": progress.history, "best": progress.best, "train_images": progress.train_images,
        "train_seconds": progress.train_seconds,
    } if resumable else None
    meta = {**run.static, "epoch": progress.epoch, "history": progress.history, "last": last,
            "selected_val": selected_val(progress), "resumable": resumable,
            "train_images": progress.train_images, "train_seconds": progress.train_seconds}
    return state, meta


def save_progress(run: TrainingRun, progress: Progress, folder: Path, last: dict, resumable: bool = True) -> Path:
    """The checkpoint after ``progress.epoch`` epochs; ``last`` is that epoch's metrics. The best-so-far
    weights, snapshotted in memory on improvement, travel with it; ``resumable=False`` (the final
    checkpoint) leaves out ``state.pt``: ``meta.json`` then holds what ``final_progress`` needs."""
    state, meta = progress_payload(run, progress, last, resumable)
    return save_checkpoint(folder, state, progress.best_weights, meta)


def cpu_copy(obj: Any) -> Any:
    """A copy of nested dicts, lists and tuples whose tensors are fresh CPU copies, so that neither the
    optimizer's in-place steps nor the loop's appends to ``history`` reach it; scalars and strings are
    immutable and shared."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def _timed_save(folder: Path, state: dict[str, Any], best_weights: dict[str, torch.Tensor], meta: dict) -> float:
    t0 = time.perf_counter()
    save_checkpoint(folder, state, best_weights, meta)
    return time.perf_counter() - t0


class CheckpointWriter:
    """Writes resumable checkpoints on one thread, one at a time, from CPU snapshots, so the training
    thread pays for the copy to CPU memory and not for ``torch.save``. ``collect`` before the next
    checkpoint keeps one write in flight and re-raises a failed one on the training thread; leaving the
    ``with`` block waits for the last one, so no folder is still being written once ``fit`` is over."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending: Optional[Future] = None

    def submit(self, run: TrainingRun, progress: Progress, folder: Path, last: dict) -> Future:
        """Snapshot the resumable checkpoint after ``progress.epoch`` epochs and write it to ``folder`` on
        the thread; the Future resolves to the write's seconds once ``folder`` is complete."""
        if self._pending is not None:
            raise RuntimeError("a checkpoint write is still in flight: collect it first")
        state, meta = progress_payload(run, progress, last, resumable=True)
        # best_weights is rebound on improvement, never changed in place: the dict itself is a snapshot.
        self._pending = self._pool.submit(_timed_save, folder, cpu_copy(state), progress.best_weights, cpu_copy(meta))
        return self._pending

    def collect(self, wait: bool) -> Optional[float]:
        """The seconds of a finished write not collected yet (waiting for one in flight if ``wait``), or
        None; re-raises the error of a failed write."""
        pending = self._pending
        if pending is None or (not wait and not pending.done()):
            return None
        self._pending = None
        return pending.result()

    def __enter__(self) -> "CheckpointWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.collect(wait=True)
        finally:
            self._pool.shutdown(wait=True)


def final_progress(folder: Path, selection_metric: str) -> Progress:
    """The progress stored in a weights-only (final) checkpoint: ``meta.json``'s history, selection and
    counters beside ``best_model.safetensors`` — all a finished run needs to return its result."""
    meta = json.loads((Path(folder) / META).read_text())
    val = meta["selected_val"]
    best = {"score": val[selection_metric.removeprefix("val_")], "epoch": val["epoch"], "val": val}
    return Progress(load_file(str(Path(folder) / BEST)), meta["epoch"], meta["history"], best,
                    meta["train_images"], meta["train_seconds"])


def apply_optim_config(run: TrainingRun) -> None:
    """After loading optimizer state, the config's lr and weight decay win over the saved ones; the LR
    is set for the epoch to come as the schedule sets it (``lr_factor``, the scheme's phase factor included).

    For a plain resume they are equal; for PBT's exploit step (another trial's checkpoint with a
    mutated config) this is what makes the mutation take effect.
    """
    o, opt, sched = run.cfg.optim, run.optimizer, run.scheduler
    sched.base_lrs = [o.lr] * len(opt.param_groups)
    factor = lr_factor(o, run.cfg.trainer.epochs, sched.last_epoch, run.scheme.lr_multiplier)
    for group in opt.param_groups:
        group["initial_lr"] = o.lr
        group["lr"] = o.lr * factor
    opt.param_groups[0]["weight_decay"] = o.weight_decay  # group 0 is the decayed one


def match_optimizer_to_device(opt: torch.optim.Optimizer) -> None:
    """After loading optimizer state, the implementation flags (fused, foreach, capturable) are the
    ones this run's optimizer was built with, not the saved ones: a checkpoint written on a GPU
    (fused) resumes on a CPU and vice versa. Fused and capturable steps keep ``step`` on the
    parameter's device, the others on the CPU."""
    flags = ("fused", "foreach", "capturable")
    for group in opt.param_groups:
        group.update({k: opt.defaults[k] for k in flags if k in opt.defaults})
        on_device = bool(group.get("fused") or group.get("capturable"))
        for p in group["params"]:
            state = opt.state.get(p, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(dtype=torch.float32, device=p.device if on_device else "cpu")


def resume(run: TrainingRun, folder: Path) -> Progress:
    """Restore a checkpoint into a freshly built run (the config's optimiser settings win); its progress.
    A weights-only (final) checkpoint restores only the bookkeeping: it can finish the run, not train on."""
    if not (Path(folder) / STATE).exists():
        progress = final_progress(folder, run.cfg.trainer.selection_metric)
        if progress.epoch < run.cfg.trainer.epochs:
            raise RuntimeError(f"{folder} is a final checkpoint after {progress.epoch} epochs (weights only, no "
                               f"{STATE}): it cannot train on to trainer.epochs={run.cfg.trainer.epochs}; "
                               f"resume it with trainer.epochs={progress.epoch} or start afresh")
        return progress
    st = load_state(folder)
    run.model.load_state_dict(st["model"])
    run.criterion.load_state_dict(st["loss"])
    run.scheme.load_state_dict(st.get("scheme", {}))  # checkpoints from before schemes hold none
    run.optimizer.load_state_dict(st["optimizer"])
    match_optimizer_to_device(run.optimizer)
    run.scheduler.load_state_dict(st["scheduler"])
    run.scaler.load_state_dict(st["scaler"])
    apply_optim_config(run)
    return Progress(load_file(str(Path(folder) / BEST)), st["epoch"], st["history"], st["best"],
                    st["train_images"], st["train_seconds"])
