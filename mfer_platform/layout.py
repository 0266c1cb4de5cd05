"""Where a sweep's files live under ``storage_path``, and how to reach them.

One module owns the layout so every layer agrees on it::

    {storage_path}/{name}/mfer_sweep.json       the sweep record mfer-sweep writes before launching
    {storage_path}/{name}/mfer_trials.jsonl     the driver's trial ledger (every trial Tune started)
    {storage_path}/{name}/<trial folders>       Ray Tune's (params.json, result.json, checkpoint_*/)
    {storage_path}/{name}-ext1/ …               a finished sweep grown by more trials (the chain)
    {storage_path}/results/{trials,epochs}.parquet   the results store

``storage_path`` is a local folder or any pyarrow filesystem URI (``file://``, ``s3://``, ``gs://``…);
every read and write goes through that filesystem. Readers parse JSON only: everything under a
``storage_path`` is untrusted input (teams share buckets).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

SWEEP_FILE = "mfer_sweep.json"
# The trial ledger: one JSON object per line, appended by the driver (``sweep.ledger``) as Tune starts,
# finishes, fails or retries a trial: {"trial_id", "time", "event": start|complete|error|recover, and
# "dir", "config" on start; "status" (Ray's: RUNNING TERMINATED ERROR PENDING), "failures", "error"
# (the reason's last line) and "result" (the last result's scalars) on the others}, and
# {"event": "end", "unfinished": [trial ids]} when Tune's run returned. Readers take it instead of Ray's experiment state, which is a cloudpickle.
LEDGER_FILE = "mfer_trials.jsonl"
RESULTS_DIR = "results"
TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
EXTENSION = "-ext"  # NAME-ext1, NAME-ext2, …: the experiments that extended sweep NAME
# Checkpoints the trainable uploads itself, not through ``tune.report`` (sweep/trainable.py, sweep/uploads.py):
# <trial>/uploads/epoch_NNNN, which a small Ray checkpoint holding POINTER_FILE names. POINTER_FILE:
# {"path": relative to the experiment, "epoch", "reported_at"} and, for a final checkpoint still uploading
# when it was reported, "pending": true and "fallback" (the upload it supersedes, kept until it completes).
UPLOADS_DIR = "uploads"
POINTER_FILE = "uploaded.json"
UPLOAD_COMPLETE = "upload_complete.json"  # written last into a pending upload: the upload is whole


class StoreError(RuntimeError):
    """A path under ``storage_path`` that is not what the platform wrote; the message names it."""


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def safe_name(name: str) -> str:
    """``name`` if it is one folder under ``storage_path``; else StoreError. A name is joined onto the
    storage path, so ``../x`` would write outside it, ``''`` into its root and ``results`` into the
    store: every CLI taking ``name=`` checks it first."""
    if not SAFE_NAME.fullmatch(name) or ".." in name or name == RESULTS_DIR:
        raise StoreError(f"name={name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or "
                         f"digit, without '..' and other than {RESULTS_DIR!r} (e.g. name=quickstart-v2)")
    return name


def is_uri(path: str) -> bool:
    return "://" in path


def normalize_storage(storage_path: str) -> str:
    """Absolute local path or a pyarrow filesystem URI (s3://, gs://, file://…)."""
    return storage_path if is_uri(storage_path) else str(Path(storage_path).expanduser().resolve())


def open_storage(storage_path: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local folder or a pyarrow URI."""
    if is_uri(storage_path):
        fs, path = pafs.FileSystem.from_uri(storage_path)
    else:
        fs, path = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(storage_path))
    return fs, path.rstrip("/") or "/"


def experiment_path(storage_path: str, name: str) -> str:
    return f"{storage_path.rstrip('/')}/{name}"


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.readall()


def read_json(fs: pafs.FileSystem, path: str) -> Any:
    return json.loads(read_bytes(fs, path))


def write_bytes(storage_path: str, relative: str, data: bytes) -> None:
    """Write ``data`` to ``{storage_path}/{relative}``, creating folders on the way."""
    fs, root = open_storage(storage_path)
    path = f"{root}/{relative}"
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def write_json(storage_path: str, relative: str, obj: Any) -> None:
    write_bytes(storage_path, relative, json.dumps(obj, indent=1).encode())


def read_json_lines(fs: pafs.FileSystem, path: str) -> list[dict]:
    """The JSON objects of a JSON-lines file in order; [] without the file. A line that is not a JSON
    object (its writer died mid-line, or is writing it now; an edit) is skipped."""
    if not exists(fs, path):
        return []
    rows = []
    for line in read_bytes(fs, path).decode(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def ledger_events(fs: pafs.FileSystem, exp_path: str) -> list[dict]:
    """The trial ledger's events in order; [] without a ledger."""
    return read_json_lines(fs, f"{exp_path}/{LEDGER_FILE}")


def read_ledger(fs: pafs.FileSystem, exp_path: str) -> dict[str, dict]:
    """{trial id: its ledger events merged, later over earlier}: what the driver knew of every trial it
    started, those that died before writing a file included."""
    trials: dict[str, dict] = {}
    for event in ledger_events(fs, exp_path):
        if isinstance(event.get("trial_id"), str):
            merged = trials.setdefault(event["trial_id"], {"status": "PENDING", "failures": 0})
            if event.get("event") == "start":  # the first start: when the trial began (a retry starts it again)
                merged.setdefault("started", event.get("time"))
            merged.update({k: v for k, v in event.items() if k != "event"})
    return trials


def check_writable(storage_path: str) -> None:
    """Raise ``StoreError`` naming the path when nothing could be written there."""
    try:
        fs, root = open_storage(storage_path)
        fs.create_dir(root, recursive=True)
        probe = f"{root}/.mfer-write-probe-{os.getpid()}"
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except Exception as e:
        raise StoreError(f"storage_path={storage_path!r} is not writable ({e}); "
                          "choose a folder or bucket this user can write") from None


def is_sweep(storage_path: str, name: str) -> bool:
    fs, root = open_storage(storage_path)
    return exists(fs, f"{root}/{name}/{SWEEP_FILE}")


def experiment_chain(storage_path: str, name: str) -> list[str]:
    """The sweep ``name`` and the experiments that extended it, oldest first: ``name``, then
    ``name-ext1``, ``name-ext2``… while each has its sweep record. [] when ``name`` is no sweep."""
    chain: list[str] = []
    while is_sweep(storage_path, f"{name}{EXTENSION}{len(chain)}" if chain else name):
        chain.append(f"{name}{EXTENSION}{len(chain)}" if chain else name)
    return chain


def read_sweep_record(storage_path: str, name: str) -> dict:
    """The ``mfer_sweep.json`` that ``mfer-sweep`` wrote before launching experiment ``name``."""
    fs, root = open_storage(storage_path)
    path = f"{root}/{name}/{SWEEP_FILE}"
    if not exists(fs, path):
        raise StoreError(f"{path} not found: {name!r} is not an mfer-sweep experiment under {storage_path} "
                          f"(check storage_path= and name=)")
    return read_json(fs, path)
