"""The results store: every sweep's trials and epochs in two Parquet tables, across experiments.

Ray Tune leaves one folder per trial (``params.json``, ``result.json`` lines, checkpoints);
researchers want one table they can query with pandas, pyarrow or duckdb across all their
sweeps. ``ingest(storage_path, name)`` reads experiment ``name`` and writes, under
``{storage_path}/results/``:

- ``trials.parquet``: one row per trial — experiment, trial id, every TrainConfig value as a
  typed column named by its dotted path (types come from the dataclass schema, so columns stay
  stable across experiments), seed, status, metrics at the validation-selected epoch and at the
  last epoch, test metrics, per-class validation and test accuracy and confusion matrices, parameters,
  reserved CPU/GPU-seconds, wall time, and provenance (git commit, config hash, a group hash
  that leaves out the seed, dataset fingerprint).
- ``epochs.parquet``: one row per trial x epoch with the per-epoch metrics.

Writes are atomic (a temporary file beside the target, then a rename: a crash mid-write leaves
the previous table readable) and idempotent (an experiment's rows are replaced, never appended
twice). Ingest is the one step that writes (``mfer-sweep`` and ``mfer-report`` run it);
``read_experiment`` never writes: it serves the store's rows when they carry the content stamp of
the experiment folder as it is now, and otherwise reads the trial folders in memory.
``storage_path`` is a local folder or any pyarrow filesystem URI (``file://``, ``s3://``…); every
read and write goes through that filesystem (``mfer_platform.layout``).
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import types
import typing
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mfer.config import TrainConfig, config_hash, flatten, to_dict
from mfer_platform.keys import EPOCH_METRICS, ROW_KEY, SEED_KEY, TEST_METRICS, VAL_METRICS
from mfer_platform.layout import (EPOCHS_FILE, RESULTS_DIR, TRIALS_FILE, StoreError, exists, open_storage,
                                  read_sweep_record)
from mfer_platform.overrides import apply_overrides, trial_values
from mfer_platform.results.trial_files import (TrialFiles, TrialState, content_stamp, files_of_unwritten, read_trial,
                                               trial_states)

# Keys that say where or how fast a trial ran, not what it learned: left out of the group hash.
PLACEMENT_KEYS = frozenset({SEED_KEY, "trainer.threads", "trainer.device", "data.cache_dir", "data.eval_batch_size"})
# Row order of both tables, on disk and in memory alike.
TRIAL_ORDER, EPOCH_ORDER = ["experiment", "trial_id"], ["experiment", "trial_id", "epoch"]
_READ_THREADS = 16  # trial folders are read concurrently: on object stores each read is a round trip


# ---------------------------------------------------------------- schema
_SCALARS = {float: pa.float64(), int: pa.int64(), str: pa.string(), bool: pa.bool_()}


def _arrow_type(tp: Any) -> pa.DataType:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:  # Optional[X]
        return _arrow_type(args[0])
    if origin is list:
        return pa.list_(_arrow_type(args[0]))
    if tp in _SCALARS:
        return _SCALARS[tp]
    raise TypeError(f"no Parquet column type for config annotation {tp!r}: extend store._arrow_type")


def config_fields(cls: type = TrainConfig, prefix: str = "") -> list[pa.Field]:
    """One typed column per TrainConfig leaf, named by its dotted path (``loss.weight``: double)."""
    hints = typing.get_type_hints(cls)
    out: list[pa.Field] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += config_fields(tp, f"{prefix}{f.name}.")
        else:
            out.append(pa.field(f"{prefix}{f.name}", _arrow_type(tp)))
    return out


_F64, _I64, _STR = pa.float64(), pa.int64(), pa.string()
CONFIG_FIELDS = config_fields()
TRIAL_SCHEMA = pa.schema([
    ("experiment", _STR), ("trial_id", _STR), ("trial_dir", _STR),
    ("checkpoint", _STR),  # the latest checkpoint folder, relative to the experiment folder
    ("status", _STR),  # completed | early_stopped | error | running | pending | paused
    ("ray_status", _STR), ("retries", _I64), ("error", _STR),
    ("started_at", pa.timestamp("ms", tz="UTC")),  # its first start (_started); ms: Parquet has no s unit
    ("seed", _I64), ("epochs_run", _I64), ("epochs_planned", _I64), ("selected_epoch", _I64),
    *[(m, _F64) for m in VAL_METRICS],  # at the selected epoch
    *[(f"last_{m}", _F64) for m in ("train_loss", *VAL_METRICS)],  # at the last epoch run
    *[(m, _F64) for m in TEST_METRICS],  # the selected epoch's weights, evaluated once at the end
    ("classes", pa.list_(_STR)), ("val_per_class_acc", pa.list_(_F64)), ("val_confusion", pa.list_(pa.list_(_I64))),
    ("val_per_class_source", _STR),  # result | checkpoint | null: not recorded (a trial written before it was)
    ("test_per_class_acc", pa.list_(_F64)), ("test_confusion", pa.list_(pa.list_(_I64))),  # from meta.json
    ("params", _I64), ("wall_s", _F64), ("cpu_seconds", _F64), ("gpu_seconds", _F64), ("images_per_s", _F64),
    ("git_commit", _STR), ("config_hash", _STR), ("group_hash", _STR), ("dataset_fingerprint", _STR),
    ("device", _STR), ("amp", _STR), ("ingested_at", pa.timestamp("s", tz="UTC")),
    ("source_stamp", _STR),  # trial_files.content_stamp of the experiment folder this row was read from
    (ROW_KEY, _STR),  # the named row of a study (spaces.ROW_KEY); not a TrainConfig field
    *CONFIG_FIELDS,
])
EPOCH_SCHEMA = pa.schema([("experiment", _STR), ("trial_id", _STR), ("epoch", _I64),
                          *[(m, _I64 if m == "selected_epoch" else _F64) for m in EPOCH_METRICS],
                          *[(m, _F64) for m in TEST_METRICS]])


# ---------------------------------------------------------------- one trial's rows
def classify(ray_status: Optional[str], epochs_run: int, epochs_planned: int, has_error: bool) -> str:
    """Our status vocabulary: Ray's TERMINATED splits into completed and early_stopped (ASHA,
    HyperBand stop a trial before ``trainer.epochs``). Without a ledger entry, files decide."""
    if ray_status is None:
        ray_status = "ERROR" if has_error and epochs_run < epochs_planned else "TERMINATED"
    if ray_status == "TERMINATED":
        return "completed" if epochs_run >= epochs_planned else "early_stopped"
    return ray_status.lower()


def group_hash(flat_config: dict[str, Any]) -> str:
    """Hash of the configuration without the seed and placement keys: equal for a config's seeds."""
    kept = {k: v for k, v in flat_config.items() if k not in PLACEMENT_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trial_config(files: TrialFiles, record: dict) -> tuple[dict, str]:
    """(full nested TrainConfig, its hash): the checkpoint's copy, or — for a trial that died before
    its first checkpoint — the base config with the trial's overrides, as the trainable built it."""
    if files.meta is not None:
        return files.meta["config"], files.meta["config_hash"]
    first_seed = int((record.get("searcher") or {}).get("first_seed", 0))
    cfg = apply_overrides(record["base_config"], trial_values(files.params, first_seed, record.get("rows")))
    return to_dict(cfg), config_hash(cfg)


def _started(results: list[dict], state: Optional[TrialState]) -> Optional[datetime]:
    """When the trial began: the ledger knows; without one (a store from before it), Ray's first result
    row does (``timestamp`` when reported, less ``time_total_s`` run until then)."""
    first = results[0] if results else {}
    if state is not None and state.started is not None:
        t = state.started
    elif isinstance(first.get("timestamp"), (int, float)) and isinstance(first.get("time_total_s"), (int, float)):
        t = first["timestamp"] - first["time_total_s"]
    else:
        return None
    return datetime.fromtimestamp(t, timezone.utc).replace(microsecond=0)


def _trial_row(experiment: str, files: TrialFiles, record: dict, state: Optional[TrialState],
               now: datetime, stamp: str) -> dict:
    nested, cfg_hash = trial_config(files, record)
    flat = flatten(nested)
    results, meta = files.results, files.meta or {}
    last = results[-1] if results else {}
    selected_epoch = last.get("selected_epoch")
    at_selected = next((r for r in results if r["epoch"] == selected_epoch), {})
    epochs_planned = int(flat["trainer.epochs"])
    wall = last.get("time_total_s")
    res = record.get("resources") or {}
    sel = files.selected_val or {}
    row = {
        "experiment": experiment,
        "trial_id": last.get("trial_id") or (state.trial_id if state else files.dir_name),
        "trial_dir": files.dir_name,
        "checkpoint": f"{files.dir_name}/{files.checkpoint}" if files.checkpoint else None,
        "status": classify(state.status if state else None, len(results), epochs_planned, files.error is not None),
        "ray_status": state.status if state else None,
        "retries": state.failures if state else None,
        "error": files.error or (state.error if state else None),  # the ledger has it where error.txt is not synced
        "started_at": _started(results, state),
        "seed": flat[SEED_KEY],
        "epochs_run": len(results),
        "epochs_planned": epochs_planned,
        "selected_epoch": selected_epoch,
        **{m: at_selected.get(m) for m in VAL_METRICS},
        **{f"last_{m}": last.get(m) for m in ("train_loss", *VAL_METRICS)},
        **{m: last.get(m) for m in TEST_METRICS},
        "classes": meta.get("classes"),
        "val_per_class_acc": sel.get("per_class_acc"),
        "val_confusion": sel.get("confusion"),
        "val_per_class_source": files.selected_val_source,
        "test_per_class_acc": (meta.get("test") or {}).get("per_class_acc"),
        "test_confusion": (meta.get("test") or {}).get("confusion"),
        "params": meta.get("params", last.get("params")),
        "wall_s": wall,
        # Reserved, not measured: what the trial held from the cluster for its whole run.
        "cpu_seconds": None if wall is None else wall * float(res.get("cpu", 1)),
        "gpu_seconds": None if wall is None else wall * float(res.get("gpu", 0)),
        "images_per_s": last.get("images_per_s"),
        "git_commit": meta.get("git_commit"),
        "config_hash": cfg_hash,
        "group_hash": group_hash(flat),
        "dataset_fingerprint": meta.get("dataset_fingerprint"),
        "device": meta.get("device"),
        "amp": meta.get("amp"),
        "ingested_at": now,
        "source_stamp": stamp,
        ROW_KEY: files.params.get(ROW_KEY),
    }
    row.update({f.name: flat.get(f.name) for f in CONFIG_FIELDS})
    return row


def _epoch_rows(experiment: str, trial_id: str, results: list[dict]) -> list[dict]:
    return [{"experiment": experiment, "trial_id": trial_id, "epoch": r["epoch"],
             **{m: r.get(m) for m in (*EPOCH_METRICS, *TEST_METRICS)}} for r in results]


@dataclass
class Collected:
    trials: pa.Table
    epochs: pa.Table


def collect(storage_path: str, name: str) -> Collected:
    """Read experiment ``name`` into the two tables' rows (nothing written)."""
    record = read_sweep_record(storage_path, name)
    fs, root = open_storage(storage_path)
    exp = f"{root}/{name}"
    stamp = content_stamp(fs, exp)  # before reading: a change while reading makes the rows stale, not wrong
    dirs = [i.path for i in fs.get_file_info(pafs.FileSelector(exp)) if i.type == pafs.FileType.Directory]
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        trials = [t for t in pool.map(lambda d: read_trial(fs, d), dirs) if t is not None]
    states = {s.dir_name: s for s in trial_states(fs, exp)}
    # A trial the ledger knows but whose folder holds no params.json died before writing it: listed too.
    trials += [files_of_unwritten(s) for d, s in states.items() if d not in {t.dir_name for t in trials}]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    rows, epochs = [], []
    for t in trials:
        row = _trial_row(name, t, record, states.get(t.dir_name), now, stamp)
        rows.append(row)
        epochs += _epoch_rows(name, row["trial_id"], t.results)
    return Collected(pa.Table.from_pylist(rows, schema=TRIAL_SCHEMA), pa.Table.from_pylist(epochs, schema=EPOCH_SCHEMA))


# ---------------------------------------------------------------- writing
@contextmanager
def _writer_lock(fs: pafs.FileSystem, results: str) -> Iterator[None]:
    """Serialise ingests on a local disk (two sweeps finishing together would otherwise each
    rewrite the table from their own read and one experiment's rows could vanish). Object
    stores have no lock: there each whole-file write is still atomic, and re-ingesting heals."""
    if not isinstance(fs, pafs.LocalFileSystem):
        yield
        return
    with open(f"{results}/.ingest.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def write_atomic(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """Write ``table`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_output_stream(tmp) as f:
            pq.write_table(table, f, compression="zstd")
        fs.move(tmp, path)
    finally:
        if exists(fs, tmp):
            fs.delete_file(tmp)


def replace_experiment(fs: pafs.FileSystem, path: str, experiment: str, rows: pa.Table, sort: list[str]) -> pa.Table:
    """The table at ``path`` with ``experiment``'s rows replaced by ``rows``, written atomically."""
    parts = [rows]
    if exists(fs, path):
        old = pq.read_table(path, filesystem=fs)
        parts.insert(0, old.filter(pc.not_equal(old["experiment"], experiment)))
    merged = pa.concat_tables(parts, promote_options="permissive").sort_by([(c, "ascending") for c in sort])
    write_atomic(fs, path, merged)
    return merged


@dataclass
class IngestSummary:
    experiment: str
    trials: int
    epochs: int
    statuses: dict[str, int]
    trials_path: str
    epochs_path: str


def ingest(storage_path: str, name: str) -> IngestSummary:
    """Read experiment ``name`` under ``storage_path`` into ``{storage_path}/results/``; safe to repeat."""
    data = collect(storage_path, name)
    fs, root = open_storage(storage_path)
    results = f"{root}/{RESULTS_DIR}"
    fs.create_dir(results, recursive=True)
    trials_path, epochs_path = f"{results}/{TRIALS_FILE}", f"{results}/{EPOCHS_FILE}"
    with _writer_lock(fs, results):
        replace_experiment(fs, epochs_path, name, data.epochs, EPOCH_ORDER)
        replace_experiment(fs, trials_path, name, data.trials, TRIAL_ORDER)
    return IngestSummary(name, data.trials.num_rows, data.epochs.num_rows,
                         dict(Counter(data.trials["status"].to_pylist())), trials_path, epochs_path)


# ---------------------------------------------------------------- reading the store
def _load(storage_path: str, file: str, experiment: Optional[str]) -> pd.DataFrame:
    fs, root = open_storage(storage_path)
    path = f"{root}/{RESULTS_DIR}/{file}"
    if not exists(fs, path):
        raise StoreError(f"{path} not found: ingest an experiment first (mfer-report runs ingest)")
    filters = [("experiment", "==", experiment)] if experiment else None
    return pq.read_table(path, filesystem=fs, filters=filters).to_pandas()


def load_trials(storage_path: str, experiment: Optional[str] = None) -> pd.DataFrame:
    return _load(storage_path, TRIALS_FILE, experiment)


def load_epochs(storage_path: str, experiment: Optional[str] = None) -> pd.DataFrame:
    return _load(storage_path, EPOCHS_FILE, experiment)


def _stored_if_current(storage_path: str, name: str) -> Optional[Collected]:
    """The store's rows of experiment ``name`` when they were ingested from the folder as it is now."""
    fs, root = open_storage(storage_path)
    trials_path, epochs_path = f"{root}/{RESULTS_DIR}/{TRIALS_FILE}", f"{root}/{RESULTS_DIR}/{EPOCHS_FILE}"
    if not (exists(fs, trials_path) and exists(fs, epochs_path)):
        return None
    only = [("experiment", "==", name)]
    trials = pq.read_table(trials_path, filesystem=fs, filters=only)
    stamps = set(trials.column("source_stamp").to_pylist()) if "source_stamp" in trials.column_names else set()
    if trials.num_rows == 0 or stamps != {content_stamp(fs, f"{root}/{name}")}:
        return None
    if set(TRIAL_SCHEMA.names) - set(trials.column_names):  # written by an older version: read the folders
        return None
    return Collected(trials, pq.read_table(epochs_path, filesystem=fs, filters=only))


def read_experiment(storage_path: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) of experiment ``name``, from the store when it is current, else read from
    the trial folders in memory: a reader never writes, so read-only buckets work, and a stale
    store never hides a trial that finished after the last ingest."""
    data = _stored_if_current(storage_path, name) or collect(storage_path, name)
    trials = data.trials.sort_by([(c, "ascending") for c in TRIAL_ORDER])
    return trials.to_pandas(), data.epochs.sort_by([(c, "ascending") for c in EPOCH_ORDER]).to_pandas()
