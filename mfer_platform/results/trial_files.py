"""Reading what Ray Tune leaves in one experiment folder: a trial folder's files, the driver's trial
ledger (each trial's state), and a stamp of the folder's content that tells whether the results store is current.

Ray Tune leaves one folder per trial (``params.json``, ``result.json`` lines, ``checkpoint_*/``
with our ``meta.json``); nothing here writes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from dataclasses import dataclass
from typing import Optional

import pyarrow.fs as pafs

from mfer_platform.keys import VAL_CONFUSION, VAL_PER_CLASS
from mfer_platform.layout import read_bytes, read_json, read_ledger

log = logging.getLogger(__name__)


@dataclass
class TrialFiles:
    """What one trial folder holds, read once."""

    dir_name: str
    params: dict
    results: list[dict]  # result.json rows, one per reported epoch, deduplicated by epoch
    checkpoint: Optional[str]  # latest checkpoint_* folder name
    meta: Optional[dict]  # its meta.json
    selected_val: Optional[dict]  # the selected epoch's per-class validation result and confusion
    selected_val_source: Optional[str]  # "result" | "checkpoint" | None (not recorded: a trial from before)
    error: Optional[str]  # last line of error.txt


def selected_validation(results: list[dict], meta: Optional[dict]) -> tuple[Optional[dict], Optional[str]]:
    """(the selected epoch's per-class validation result, where it was found), or (None, None).

    The trainer reports it with every epoch that improves the selection, so the result row of the
    selected epoch has it — early-stopped trials included, which get no final checkpoint — and each
    checkpoint's ``meta.json`` repeats it. Trials written before that have it only inside
    ``state.pt``, which is never opened (a pickle container of ~2 GB at paper scale): for them it
    stays missing, and the tables say so.
    """
    epoch = results[-1].get("selected_epoch") if results else None
    row = next((r for r in results if r["epoch"] == epoch and r.get(VAL_CONFUSION) is not None), None)
    if row is not None:
        return {"per_class_acc": row[VAL_PER_CLASS], "confusion": row[VAL_CONFUSION]}, "result"
    saved = (meta or {}).get("selected_val")
    if saved and saved.get("epoch") == epoch:
        return saved, "checkpoint"
    return None, None


class BadTrialFile(ValueError):
    """A file of one trial that is not what Ray or the trainer writes (truncated, edited, corrupt)."""


def _read_results(fs: pafs.FileSystem, path: str) -> list[dict]:
    """result.json rows by epoch; a line that is not a JSON object (a partial last line written as the
    driver died, an edit) loses that epoch only, with a warning naming the file and the line."""
    by_epoch: dict[int, dict] = {}
    for number, line in enumerate(read_bytes(fs, path).decode(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            log.warning(f"{path}:{number}: not a JSON line ({e}): that epoch is left out")
            continue
        if isinstance(row, dict) and "epoch" in row:  # a retried or PBT-restored trial may report an epoch again: keep the last
            by_epoch[int(row["epoch"])] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


def _json_object(fs: pafs.FileSystem, path: str) -> dict:
    try:
        obj = read_json(fs, path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadTrialFile(f"{path} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise BadTrialFile(f"{path} holds a {type(obj).__name__}, not a JSON object")
    return obj


def read_trial(fs: pafs.FileSystem, trial_path: str) -> Optional[TrialFiles]:
    """The files of one trial folder, or None when the folder is not a trial (no params.json) or one of
    its files is corrupt (a warning names it: one bad trial must not stop a report on the others).
    Reads JSON only: params.json, result.json, the latest checkpoint's meta.json and error.txt."""
    try:
        return _read_trial(fs, trial_path)
    except BadTrialFile as e:
        log.warning(f"{e}: trial left out")
        return None


def _read_trial(fs: pafs.FileSystem, trial_path: str) -> Optional[TrialFiles]:
    entries = {posixpath.basename(i.path): i for i in fs.get_file_info(pafs.FileSelector(trial_path))}
    if "params.json" not in entries:
        return None
    checkpoints = sorted(n for n, i in entries.items() if n.startswith("checkpoint_") and i.type == pafs.FileType.Directory)
    ckpt = checkpoints[-1] if checkpoints else None
    dir_name = posixpath.basename(trial_path)
    meta = _json_object(fs, f"{trial_path}/{ckpt}/meta.json") if ckpt is not None else None
    error = None
    if "error.txt" in entries:
        lines = [ln for ln in read_bytes(fs, f"{trial_path}/error.txt").decode(errors="replace").splitlines() if ln.strip()]
        error = lines[-1][:500] if lines else "error"
    results = _read_results(fs, f"{trial_path}/result.json") if "result.json" in entries else []
    selected, source = selected_validation(results, meta)
    return TrialFiles(dir_name, _json_object(fs, f"{trial_path}/params.json"), results, ckpt, meta, selected, source,
                      error)


@dataclass
class TrialState:
    """What the driver's trial ledger (``layout.LEDGER_FILE``) says of one trial."""

    trial_id: str
    dir_name: str  # the trial folder's name ("" when Tune never named one)
    status: str  # Ray's vocabulary: TERMINATED | ERROR | RUNNING | PENDING
    failures: int
    config: dict  # the trial's Tune config, as params.json would hold it
    error: Optional[str]  # the last error's last line
    started: Optional[float] = None  # Unix time of its first start


def trial_states(fs: pafs.FileSystem, exp_path: str) -> list[TrialState]:
    """Every trial of the ledger, those that died before writing params.json included.

    Files alone cannot tell an early-stopped trial from one an interrupted sweep left running, nor a
    retried-then-finished trial from a failed one; the ledger can, and it is JSON — Ray's own saved
    state is a cloudpickle, which reading a shared storage path must never load.
    """
    return [TrialState(tid, str(t.get("dir") or ""), str(t.get("status")), int(t.get("failures") or 0),
                       t.get("config") if isinstance(t.get("config"), dict) else {}, t.get("error"),
                       t["started"] if isinstance(t.get("started"), (int, float)) else None)
            for tid, t in read_ledger(fs, exp_path).items()]


def files_of_unwritten(state: TrialState) -> TrialFiles:
    """The files a trial that died before writing any would have had: its config and its error."""
    return TrialFiles(state.dir_name or state.trial_id, state.config, [], None, None, None, None,
                      state.error or "died before writing params.json")


def content_stamp(fs: pafs.FileSystem, exp_path: str) -> str:
    """A hash of every file's path, size and modification time under the experiment folder (one
    recursive listing, no reads): it changes whenever a trial reports, checkpoints, fails or Ray
    saves its state, so a store row carrying the stamp it was ingested from is current iff equal."""
    infos = fs.get_file_info(pafs.FileSelector(exp_path, recursive=True))
    listing = sorted((i.path[len(exp_path):], i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File)
    return hashlib.sha256(json.dumps(listing, default=str).encode()).hexdigest()[:16]
