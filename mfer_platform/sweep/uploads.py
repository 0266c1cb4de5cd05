"""The final checkpoint's upload, off the trial's critical path: the node's uploader finishes it while
the node's GPU runs the next trial.

Why. At paper scale a trial's final checkpoint is the best weights, 0.62 GB. Uploaded inside the last
``tune.report`` it holds the trial's GPU for the whole upload (22 s at 28 MB/s: 6 % of a RAF-DB
trial). Ray 2.60 has no asynchronous checkpoint upload for Tune functions, and a thread in the trial's
own actor cannot outlive the experiment: Tune stops the actors of a finished experiment and kills them
10 s later (``TuneController._cleanup_trials``), so the last trials' uploads would be cut short.

What happens instead. The trial moves its final folder out of its run directory into a staging
folder on the same disk, queues it with its node's ``Uploader`` and reports a *pending* pointer
(``layout.POINTER_FILE`` with ``"pending": true``, plus ``meta.json``, so the results store ingests the
trial at once). The uploader — a named, detached actor per (experiment, node), 0 CPUs, pinned to the
node whose disk holds the folder — copies it to ``<trial>/uploads/epoch_NNNN``, writes
``layout.UPLOAD_COMPLETE`` last, then deletes what the pointer superseded and the staged copy. The
driver drains and ends the experiment's uploaders when Tune returns, before ingest; detached actors
outlive a crashed driver, so a restarted one drains what its predecessor left queued. Readers take a
pending upload only once its marker exists; a trial resumed from a pending pointer whose upload never
completed resumes from the upload it superseded (``trainable.resume_folder``).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pyarrow.fs as pafs

from mfer_platform.layout import UPLOAD_COMPLETE

log = logging.getLogger(__name__)
NAMESPACE = "mfer-uploads"  # the uploaders' Ray namespace: a restarted driver (a new job) finds them there


def copy_folder(fs: pafs.FileSystem, folder: Path, dest: str) -> None:
    """Copy a local checkpoint folder to ``dest`` on ``fs``: one stream at a time in 64 MiB chunks, as
    Ray's own checkpoint copy does (pyarrow's S3 uploads are not thread-safe, apache/arrow#32372)."""
    fs.create_dir(dest)
    pafs.copy_files(str(folder), dest, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs,
                    chunk_size=64 * 2**20, use_threads=False)


def delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    """Remove an upload nothing points to any more (best effort, as Ray's own deletes)."""
    try:
        fs.delete_dir(path)
    except OSError as e:
        log.warning("could not delete the superseded upload %s: %s", path, e)


class Uploader:
    """One node's queue of staged final checkpoints, uploaded one at a time on a thread of its own."""

    def __init__(self, fs: pafs.FileSystem, experiment_path: str):
        self.fs, self.experiment_path = fs, experiment_path
        self.jobs: queue.Queue = queue.Queue()
        self.outcomes: list[dict] = []
        threading.Thread(target=self._work, daemon=True, name="final-uploads").start()

    def submit(self, staged: str, rel: str, supersedes: list[str]) -> None:
        """Queue ``staged`` (a folder this uploader deletes when done) for ``<experiment>/<rel>``."""
        self.jobs.put((Path(staged), rel, supersedes))

    def _work(self) -> None:
        while True:
            staged, rel, supersedes = self.jobs.get()
            self.outcomes.append(self._upload(staged, rel, supersedes))
            shutil.rmtree(staged.parent, ignore_errors=True)
            self.jobs.task_done()

    def _upload(self, staged: Path, rel: str, supersedes: list[str]) -> dict[str, Any]:
        t0, dest = time.perf_counter(), f"{self.experiment_path}/{rel}"
        try:
            copy_folder(self.fs, staged, dest)
            with self.fs.open_output_stream(f"{dest}/{UPLOAD_COMPLETE}") as f:
                f.write(b'{"complete": true}')
        except Exception as e:  # noqa: BLE001 - reported by drain(), by trial
            delete_quietly(self.fs, dest)
            return {"path": rel, "error": f"{type(e).__name__}: {e}"}
        for old in supersedes:
            delete_quietly(self.fs, f"{self.experiment_path}/{old}")
        return {"path": rel, "seconds": time.perf_counter() - t0}

    def drain(self) -> list[dict]:
        """Wait for every queued upload; their outcomes since the last drain."""
        self.jobs.join()
        done, self.outcomes = self.outcomes, []
        return done


def uploader_key(storage_path: str, experiment: str) -> str:
    """The driver's name for an experiment's uploaders, handed to its trials (``run_trial(uploader=…)``)
    so both sides agree on it however Ray spells the storage path."""
    return hashlib.sha1(f"{storage_path}\0{experiment}".encode()).hexdigest()[:16]


@functools.cache
def _actor_class():
    import ray

    return ray.remote(Uploader)


def node_uploader(key: str, fs: pafs.FileSystem, experiment_path: str):
    """This node's uploader for the experiment, started on first use (the call returns at once; Ray
    creates the actor in the background, so a trial calls this as it starts, long before it needs it)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return _actor_class().options(
        name=f"{key}-{node}", namespace=NAMESPACE, get_if_exists=True,
        lifetime="detached", num_cpus=0, max_concurrency=4,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(fs, experiment_path)


def hand_off(uploader, folder: Path, rel: str, supersedes: list[str]) -> None:
    """Move the local checkpoint ``folder`` to a staging folder (its run directory is deleted when the
    trial returns) and queue it with ``uploader``; returns once it is queued."""
    import ray

    staged = Path(tempfile.mkdtemp(prefix="mfer-final-upload-")) / Path(folder).name
    shutil.move(str(folder), staged)
    ray.get(uploader.submit.remote(str(staged), rel, supersedes))


def drain_uploaders(key: str) -> list[dict]:
    """Driver side, after Tune returned: wait for the experiment's uploaders (this driver's and any a
    crashed predecessor left) to finish, end them, and log what failed. Returns every outcome."""
    import ray

    outcomes: list[dict] = []
    try:
        actors = ray.util.list_named_actors(all_namespaces=True)
    except Exception as e:  # noqa: BLE001 - called from a finally: never mask the error that got us here
        log.warning("could not list the final-checkpoint uploaders (%s): readers will see their uploads as "
                    "unfinished until they complete", e)
        return outcomes
    for actor in actors:
        if actor["namespace"] != NAMESPACE or not actor["name"].startswith(f"{key}-"):
            continue
        handle = ray.get_actor(actor["name"], namespace=NAMESPACE)
        try:
            outcomes += ray.get(handle.drain.remote())
        except ray.exceptions.RayError as e:  # its node is gone: readers see those uploads as never completed
            log.warning("the final-checkpoint uploader %s was lost: %s", actor["name"], e)
        ray.kill(handle)
    for o in outcomes:
        if "error" in o:
            log.warning("uploading the final checkpoint %s failed: %s", o["path"], o["error"])
    return outcomes
