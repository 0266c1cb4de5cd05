"""The Ray Tune trainable: one trial = one ``mfer.train.fit`` call, reporting through its hook.

This is the only module that calls ``tune.report``/``tune.get_checkpoint`` (Ray's API changed
four times; keep it behind one small adapter). A trial resumes from its latest checkpoint after
a failure or a driver restart; PBT's exploit step arrives the same way, with a mutated config.

Uploads. ``tune.report(metrics, checkpoint=…)`` copies the folder to ``storage_path`` before it
returns (``persist_current_checkpoint`` in ``ray/train/_internal/session.py``); Ray 2.60's
asynchronous ``checkpoint_upload_mode`` belongs to ``ray.train.report`` in Ray Train workers, which
errors inside a Tune function, so Tune functions have nothing built in. The ones PBT and HyperBand
asked for (the scheduler exploits or resumes exactly that report) and ``trainer.checkpoint_every``
ones (a user's explicit epochs) stay synchronous. The final one goes to the node's uploader
(``sweep.uploads``): the trial reports a pending pointer to it and its GPU moves on to the next
trial while the upload finishes; the driver waits for it before it reads. A wall-clock interval checkpoint is insurance
against a crash, so ``BackgroundUpload`` copies it to ``<trial>/uploads/epoch_NNNN`` on a thread
while training goes on, and the first report after the copy completed carries a small pointer
checkpoint (``uploaded.json`` + ``meta.json``) for Ray to keep. Ray thus only ever holds complete
checkpoints: an upload in flight when a worker dies was never reported, and the retry resumes from
the previous complete one, losing at most the interval plus one upload. The pointer reaches Ray a
report or more after its epoch and Ray restores the iteration count of the report that carried it,
so a trial resumed from a pointer trains those epochs again without reporting them a second time
(Ray holds their rows): one report per epoch, as ASHA's and PBT's ``training_iteration`` assume.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Optional

import pyarrow.fs as pafs

from mfer.train.checkpoint import META
from mfer.train.loop import BACKGROUND_SAVE
from mfer_platform.keys import VAL_CONFUSION, VAL_PER_CLASS
from mfer_platform.layout import POINTER_FILE, UPLOAD_COMPLETE, UPLOADS_DIR, exists
from mfer_platform.overrides import apply_overrides, trial_values
from mfer_platform.sweep.uploads import copy_folder, delete_quietly, hand_off, node_uploader

log = logging.getLogger(__name__)
# The CheckpointPolicy reasons uploaded off the training thread: the ones fit also writes off it.
BACKGROUND = BACKGROUND_SAVE


def tune_result(end) -> dict[str, Any]:
    """What Tune records for an epoch: the trainer's scalars plus, when the selection improved, the
    selected epoch's per-class validation result (so an early-stopped trial, which gets no final
    checkpoint, still has it in its result rows; the store never needs the checkpoint for it)."""
    result = dict(end.metrics)
    if end.selected_val is not None:
        result[VAL_PER_CLASS] = end.selected_val["per_class_acc"]
        result[VAL_CONFUSION] = end.selected_val["confusion"]
    return result


class BackgroundUpload:
    """Copies one checkpoint folder at a time to ``<experiment>/<trial>/uploads/<folder name>`` on a
    thread, once the folder is complete (``ready``: fit's ``EpochEnd.checkpoint_ready`` for a folder
    still being written); ``finished`` hands each completed copy over once, and re-raises a failed one,
    a failed write included (the trial then fails and is retried from its last complete checkpoint, as
    a failed synchronous upload would)."""

    def __init__(self, fs: pafs.FileSystem, experiment_path: str, trial_dir: str):
        self.fs, self.experiment_path, self.trial_dir = fs, experiment_path, trial_dir
        self._thread: Optional[threading.Thread] = None
        self._outcome: Any = None  # {"path", "epoch", "folder", "seconds"} or the copy's exception

    def start(self, folder: Path, epoch: int, ready: Optional[Future] = None) -> None:
        if self._thread is not None:
            raise RuntimeError("an upload is still in flight: collect it with finished(wait=True) first")
        rel = self.rel(folder)
        self._thread = threading.Thread(target=self._copy, args=(Path(folder), rel, epoch, ready), daemon=True,
                                        name=f"upload-{Path(folder).name}")
        self._thread.start()

    def _copy(self, folder: Path, rel: str, epoch: int, ready: Optional[Future] = None) -> None:
        t0, dest = time.perf_counter(), f"{self.experiment_path}/{rel}"
        try:
            if ready is not None:  # fit's thread is still writing the folder: read nothing before it is whole
                ready.result()  # raises the write's error, which then fails the upload
            copy_folder(self.fs, folder, dest)
            self._outcome = {"path": rel, "epoch": epoch, "folder": str(folder), "seconds": time.perf_counter() - t0}
        except Exception as e:  # noqa: BLE001 - handed to the training thread by finished()
            self.delete(rel)
            self._outcome = e

    def rel(self, folder: Path) -> str:
        """Where this trial's upload of a local checkpoint folder goes, relative to the experiment."""
        return f"{self.trial_dir}/{UPLOADS_DIR}/{Path(folder).name}"

    def in_flight(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def finished(self, wait: bool) -> Optional[dict]:
        """The completed upload not handed over yet, or None (none, or still in flight and not ``wait``)."""
        if self._thread is None or (self.in_flight() and not wait):
            return None
        self._thread.join()
        outcome, self._thread, self._outcome = self._outcome, None, None
        if isinstance(outcome, Exception):
            raise RuntimeError(f"uploading a checkpoint to {self.experiment_path}/{self.trial_dir} failed: "
                               f"{outcome}") from outcome
        return outcome

    def download(self, rel: str, into: Path) -> Path:
        into.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(f"{self.experiment_path}/{rel}", str(into), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return into

    def prune(self, keep: Optional[str]) -> None:
        """Delete this trial's uploads other than ``keep`` (the one its Ray checkpoint points to): a worker
        that died with an upload in flight, or done but not yet reported, left it behind."""
        top = f"{self.trial_dir}/{UPLOADS_DIR}"
        for info in self.fs.get_file_info(pafs.FileSelector(f"{self.experiment_path}/{top}", allow_not_found=True)):
            if info.type == pafs.FileType.Directory and f"{top}/{info.base_name}" != keep:
                self.delete(f"{top}/{info.base_name}")

    def delete(self, rel: Optional[str]) -> None:
        """Remove an upload no checkpoint of Ray's points to any more (best effort, as Ray's own deletes)."""
        if rel:
            delete_quietly(self.fs, f"{self.experiment_path}/{rel}")


def write_pointer(done: dict, reported_at: int, into: Path, pending: Optional[dict] = None) -> Path:
    """A pointer checkpoint to an upload — completed, or ``pending`` ({"pending": True, "fallback": …}: a
    final one its node's uploader is finishing); its meta.json copy lets the store read the trial from
    its latest checkpoint folder as from any other."""
    into.mkdir(parents=True)
    pointer = {"path": done["path"], "epoch": done["epoch"], "reported_at": reported_at, **(pending or {})}
    (into / POINTER_FILE).write_text(json.dumps(pointer))
    shutil.copyfile(Path(done["folder"]) / META, into / META)
    return into


class Reporter:
    """fit's per-epoch hook: one ``tune.report`` per epoch, carrying a synchronous checkpoint, a pointer
    to a completed background upload, a pending pointer to the final checkpoint ``defer`` handed to the
    node's uploader, or none (see the module docstring for which and why). ``defer(folder, rel,
    superseded)``: ``uploads.hand_off`` bound to the node's uploader; None: the final checkpoint is
    uploaded inside its report. ``skip_through``: the last epoch Ray already holds a report of (a resume
    from a pointer)."""

    def __init__(self, uploads: BackgroundUpload, report: Callable, extra: dict, skip_through: int = 0,
                 after: Callable[[int], None] = lambda epoch: None,
                 defer: Optional[Callable[[Path, str, list[str]], None]] = None):
        self.uploads, self.report, self.extra, self.skip_through, self.after = uploads, report, extra, skip_through, after
        self.defer = defer
        self.kept: Optional[str] = None  # the upload Ray's latest checkpoint points to

    def __call__(self, end) -> None:
        if end.epoch <= self.skip_through:
            return
        background = end.checkpoint_dir is not None and end.checkpoint_reason in BACKGROUND
        deferred = end.checkpoint_dir is not None and end.checkpoint_reason == "last" and self.defer is not None
        t0 = time.perf_counter()
        # One upload at a time: a new checkpoint's predecessor must be complete before fit deletes it locally.
        done = self.uploads.finished(wait=end.checkpoint_dir is not None)
        metrics = {**tune_result(end), **self.extra, "upload_wait_s": time.perf_counter() - t0}
        if background:
            self.uploads.start(end.checkpoint_dir, end.epoch, ready=end.checkpoint_ready)
        if done is not None:
            metrics["background_upload_s"] = done["seconds"]
        with tempfile.TemporaryDirectory(prefix="mfer-pointer-") as tmp:
            folder, kept = None, None  # what this report hands Ray, and the upload it points to
            if deferred:
                folder, kept = self._defer_final(end, done, Path(tmp) / "pointer")
            elif end.checkpoint_dir is not None and not background:
                folder = end.checkpoint_dir
            elif done is not None:
                folder, kept = write_pointer(done, end.epoch, Path(tmp) / "pointer"), done["path"]
            self.report(metrics, folder)  # Ray copies ``folder`` (if any) before returning
        if folder is not None:  # Ray's latest checkpoint changed: uploads it no longer points to go
            for rel in set() if deferred else {self.kept, done and done["path"]} - {kept}:
                self.uploads.delete(rel)  # (a deferred final's uploader deletes them once it is whole)
            self.kept = kept
        self.after(end.epoch)

    def _defer_final(self, end, done: Optional[dict], into: Path) -> tuple[Path, str]:
        """Hand the final checkpoint to the node's uploader; the pending pointer to report, and the upload
        it names. The newest upload it supersedes stays until it is whole: the fallback of a resume."""
        rel = self.uploads.rel(end.checkpoint_dir)
        superseded = [p for p in (self.kept, done and done["path"]) if p]
        pointer = write_pointer({"path": rel, "epoch": end.epoch, "folder": end.checkpoint_dir}, end.epoch, into,
                                pending={"pending": True, "fallback": superseded[-1] if superseded else None})
        self.defer(end.checkpoint_dir, rel, superseded)
        return pointer, rel


def resume_folder(checkpoint_dir: Path, uploads: BackgroundUpload,
                  into: Path) -> tuple[Optional[Path], int, Optional[str]]:
    """(the folder fit resumes from — None: from scratch —, the last epoch Ray holds a report of — 0: from
    the folder on —, the upload Ray's checkpoint points to if it is this trial's own — PBT may hand over
    another trial's, which that trial deletes when it supersedes it, never this one).

    A pending pointer (a final checkpoint reported while its node's uploader held it): the run ends with
    its last epoch reported again (a duplicate row, which readers deduplicate by epoch), and if the upload
    never completed — the node or the driver died first — it resumes from the upload that one superseded,
    or from scratch."""
    pointer = Path(checkpoint_dir) / POINTER_FILE
    if not pointer.exists():
        return Path(checkpoint_dir), 0, None
    p = json.loads(pointer.read_text())
    path, reported_at = p["path"], int(p["reported_at"])
    if p.get("pending"):
        reported_at -= 1
        if not exists(uploads.fs, f"{uploads.experiment_path}/{path}/{UPLOAD_COMPLETE}"):
            log.warning("the final checkpoint %s never finished uploading: resuming from %s", path,
                        p.get("fallback") or "scratch")
            path = p.get("fallback")
            if path is None:
                return None, reported_at, None
    own = path if path.startswith(f"{uploads.trial_dir}/") else None
    return uploads.download(path, into), reported_at, own


def run_trial(config: dict[str, Any], base: dict, first_seed: int, threads: int,
              rows: dict[str, dict] | None = None, checkpoint_epochs: tuple[int, ...] = (),
              uploader: Optional[str] = None) -> None:
    """One trial. ``checkpoint_epochs``: where the scheduler pauses or exploits trials (PBT, HyperBand),
    which need a checkpoint at exactly that epoch on top of the trainer's own interval policy.
    ``uploader``: the driver's key for the experiment's final-checkpoint uploaders (``sweep.uploads``),
    which it drains when Tune returns; None: the final checkpoint is uploaded inside its report."""
    import ray
    from ray import tune

    from mfer.train import fit
    from mfer_platform.sweep.faults import maybe_fail

    values = trial_values(config, first_seed, rows)
    values.setdefault("trainer.threads", threads)
    cfg = apply_overrides(base, values)
    run_dir = Path(tempfile.mkdtemp(prefix="mfer-trial-"))
    storage, trial_id = tune.get_context().get_storage(), tune.get_context().get_trial_id()
    uploads = BackgroundUpload(storage.storage_filesystem, storage.experiment_fs_path, storage.trial_dir_name)

    def report(metrics: dict, folder: Optional[Path]) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)) if folder else None)

    # Started now, so the node's uploader is up long before the final checkpoint needs it.
    defer = functools.partial(hand_off, node_uploader(uploader, uploads.fs, uploads.experiment_path)) if uploader else None
    # node_id shows where the epoch ran.
    reporter = Reporter(uploads, report, {"node_id": ray.get_runtime_context().get_node_id()},
                        after=lambda epoch: maybe_fail(trial_id, epoch), defer=defer)
    checkpoint = tune.get_checkpoint()
    try:
        with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as ray_dir:
            resume_dir = None
            if ray_dir is not None:
                resume_dir, reporter.skip_through, reporter.kept = resume_folder(Path(ray_dir), uploads, run_dir / "resume")
            uploads.prune(keep=reporter.kept)
            fit(cfg, run_dir, on_epoch=reporter, resume_from=resume_dir, checkpoint_epochs=checkpoint_epochs,
                background_save=True)
    finally:
        # A trial stopped or failed with an upload in flight: let it end before its folder goes (an error is moot now).
        try:
            reporter.uploads.delete((uploads.finished(wait=True) or {}).get("path"))
        except RuntimeError:
            pass
        shutil.rmtree(run_dir, ignore_errors=True)
