"""Packed-array cache: build a dataset's uint8 arrays once per node, memory-map them everywhere.

A cache entry is a folder named by a content key, holding ``*.npy`` arrays (images
(N, H, W, 3) uint8, labels) and ``meta.json`` — plus, for real datasets, the Parquet index and
the exclusion report beside them. It is written to a temporary folder and renamed into place,
under a file lock, so concurrent trials on one node build it once and never read a half-written
entry; readers ``np.load(mmap_mode="r")`` it, so N trials share one copy via the page cache.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

Arrays = dict[str, np.ndarray]


def cache_root(configured: Optional[str]) -> Path:
    root = configured or os.environ.get("MFER_CACHE") or Path.home() / ".cache" / "mfer"
    return Path(root).expanduser()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_entry(folder: Path) -> tuple[Arrays, dict]:
    arrays = {p.stem: np.load(p, mmap_mode="r") for p in sorted(folder.glob("*.npy"))}
    return arrays, json.loads((folder / "meta.json").read_text())


def build_once(root: Path, key: str, write: Callable[[Path], dict]) -> Path:
    """The folder of entry ``key``; on first use ``write(tmp_folder)`` fills it and returns its meta.

    ``write`` may stream arrays to disk (``np.lib.format.open_memmap``), so a dataset larger
    than memory is packed without ever being held in RAM.
    """
    folder = root / key
    if (folder / "meta.json").is_file():
        return folder
    with _locked(root / f".{key}.lock"):
        if not (folder / "meta.json").is_file():  # another process may have built it meanwhile
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
            try:
                meta = write(tmp)
                (tmp / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
                os.replace(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return folder


def cached(root: Path, key: str, build: Callable[[], tuple[Arrays, dict]]) -> tuple[Arrays, dict]:
    """Memory-mapped arrays for ``key``, building them in memory with ``build()`` on first use."""

    def write(tmp: Path) -> dict:
        arrays, meta = build()
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr))
        return meta

    return load_entry(build_once(root, key, write))
