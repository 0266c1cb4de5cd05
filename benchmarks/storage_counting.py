"""A pyarrow filesystem that counts the bytes going through it, and a local S3-compatible server.

``counting_filesystem(inner, counts_dir)`` wraps any pyarrow filesystem; every stream opened
through it appends ``{"op": "write"|"read", "path", "bytes"}`` to ``counts_dir/<pid>.jsonl`` when
it closes, so bytes moved by Ray's trial processes (checkpoint uploads) and by the driver
(experiment state, ingest) are all counted, whichever process moved them.

``moto_s3()`` starts moto's S3 server as its own process on 127.0.0.1 (a free port) and yields a
pyarrow S3FileSystem for it; moto keeps objects in RAM, so each measurement gets a fresh process.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.fs as pafs


class _CountingStream:
    """A file-like view of a pyarrow stream that records how many bytes crossed it."""

    def __init__(self, inner, op: str, path: str, counts_dir: str) -> None:
        self._inner, self._op, self._path, self._counts_dir = inner, op, path, counts_dir
        self._bytes = 0

    def write(self, data) -> int:
        n = self._inner.write(data)
        self._bytes += len(data)
        return n

    def read(self, nbytes: int = -1):
        data = self._inner.read() if nbytes is None or nbytes < 0 else self._inner.read(nbytes)
        self._bytes += len(data)
        return data

    def read_buffer(self, nbytes: int = -1):
        return pa.py_buffer(self.read(nbytes))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def size(self) -> int:
        return self._inner.size()

    def flush(self) -> None:
        self._inner.flush()

    def readable(self) -> bool:
        return self._op == "read"

    def writable(self) -> bool:
        return self._op == "write"

    def seekable(self) -> bool:
        return self._inner.seekable()

    @property
    def closed(self) -> bool:
        return self._inner.closed

    def close(self) -> None:
        if not self._inner.closed:
            self._inner.close()
        self._record()

    def __del__(self) -> None:  # readers (Parquet's) may drop a file without closing it
        self._record()

    def _record(self) -> None:
        if self._bytes:
            with open(Path(self._counts_dir) / f"{os.getpid()}.jsonl", "a") as f:
                f.write(json.dumps({"op": self._op, "path": self._path, "bytes": self._bytes}) + "\n")
            self._bytes = 0


class CountingHandler(pafs.FileSystemHandler):
    """Delegates every call to ``inner``; streams are wrapped in ``_CountingStream``."""

    def __init__(self, inner: pafs.FileSystem, counts_dir: str) -> None:
        self.inner, self.counts_dir = inner, counts_dir

    def __eq__(self, other) -> bool:
        return isinstance(other, CountingHandler) and self.inner.equals(other.inner)

    def __ne__(self, other) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return f"counting+{self.inner.type_name}"

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def get_file_info(self, paths):
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.inner.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self.inner.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path: str) -> None:
        self.inner.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.inner.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.inner.copy_file(src, dest)

    def _wrap(self, stream, op: str, path: str, mode: str):
        return pa.PythonFile(_CountingStream(stream, op, path, self.counts_dir), mode=mode)

    def open_input_stream(self, path: str):
        return self._wrap(self.inner.open_input_stream(path), "read", path, "r")

    def open_input_file(self, path: str):
        return self._wrap(self.inner.open_input_file(path), "read", path, "r")

    def open_output_stream(self, path: str, metadata):
        return self._wrap(self.inner.open_output_stream(path, metadata=metadata), "write", path, "w")

    def open_append_stream(self, path: str, metadata):
        return self._wrap(self.inner.open_append_stream(path, metadata=metadata), "write", path, "w")


def counting_filesystem(inner: pafs.FileSystem, counts_dir: str | Path) -> pafs.PyFileSystem:
    Path(counts_dir).mkdir(parents=True, exist_ok=True)
    return pafs.PyFileSystem(CountingHandler(inner, str(counts_dir)))


def counted(counts_dir: str | Path, path_contains: str = "") -> Counter:
    """Bytes by op ("write", "read") recorded under ``counts_dir``, for paths containing ``path_contains``."""
    total: Counter = Counter()
    for f in Path(counts_dir).glob("*.jsonl"):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            if path_contains in row["path"]:
                total[row["op"]] += row["bytes"]
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[pafs.S3FileSystem]:
    """A fresh moto S3 server process on 127.0.0.1 with ``bucket`` created; the process (and every
    object it holds in RAM) is gone on exit, so each measurement starts empty."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"moto's S3 server did not start on 127.0.0.1:{port}")
            time.sleep(0.2)
        fs = pafs.S3FileSystem(access_key="bench", secret_key="bench", region="us-east-1", scheme="http",
                               endpoint_override=f"127.0.0.1:{port}", allow_bucket_creation=True)
        fs.create_dir(bucket)
        yield fs
    finally:
        server.terminate()
        server.wait(timeout=30)
