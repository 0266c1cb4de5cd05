"""Decode a dataset listing once per node into a cache entry: uint8 arrays, Parquet index, report.

The entry key hashes the listing (names, labels, splits, the format's options), the size and
mtime of every source file, and the resolution: an edited label file or a replaced image gives a
new entry, an unchanged dataset is never decoded twice on a node. A thread pool decodes (Pillow
and hashlib release the GIL) and rows stream into ``np.lib.format.open_memmap`` files, so a
dataset larger than RAM packs fine; soft targets (FERPlus's vote rules) go beside the labels.
Beside the arrays: ``index.parquet`` (path, label, split, row, source hash per packed image) and
``report.json`` — every record left out, by rule or as unreadable, with the reason, and the
adapter's notes on how the layout was read (e.g. a ``val/`` folder taken as the test split). Exclusion
counts are logged at every load, never silently dropped, and a split left empty is an error that
points at the report.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from mfer.data.arrays import ArraySplit
from mfer.data.cache import build_once, load_entry
from mfer.data.classes import index_of
from mfer.data.decode import UnreadableImage, read_image, square_pixels
from mfer.data.formats.base import SPLITS, DatasetError, Exclusion, Listing, Record

log = logging.getLogger(__name__)
PACK_VERSION = 1  # bump when decoding changes what lands in the arrays: old entries are then rebuilt
CHUNK = 256  # records decoded per pool round: bounds the decoded images held in memory
INDEX_SCHEMA = pa.schema([("path", pa.string()), ("label", pa.string()), ("label_id", pa.int64()),
                          ("split", pa.string()), ("row", pa.int64()), ("source_hash", pa.string()),
                          ("mode", pa.string())])


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray  # (size, size, 3) uint8
    source_hash: str  # sha1 of the file's bytes (or of the table row's pixels)
    mode: str  # Pillow mode before conversion to RGB


@dataclass
class PackedDataset:
    folder: Path
    classes: tuple[str, ...]
    splits: dict[str, ArraySplit]  # the splits the release has (val only where official)
    content_hash: str  # of packed names, labels, splits and image bytes: independent of mtimes


def _stat(path: Path) -> tuple[str, int | None, int | None]:
    try:
        st = path.stat()
        return str(path), st.st_size, st.st_mtime_ns
    except OSError:
        return str(path), None, None


def cache_key(listing: Listing, size: int) -> str:
    files = sorted({r.path for r in listing.records} | set(listing.sources))
    blob = json.dumps({
        "pack_version": PACK_VERSION, "dataset": listing.dataset, "options": listing.options,
        "classes": listing.classes, "size": size,
        "records": [(r.name, r.label, r.split, r.row, r.target, r.box) for r in listing.records],
        "excluded": [(e.name, e.kind) for e in listing.excluded],
        "files": [_stat(p) for p in files],
    }, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return f"{listing.dataset}-{size}px-{hashlib.sha256(blob).hexdigest()[:16]}"


def decode_record(rec: Record, size: int, tables: dict[Path, Callable[[int], np.ndarray]]) -> Decoded | UnreadableImage:
    """One record at ``size`` px, or the reason it cannot be read (returned, so a pool keeps going)."""
    try:
        if rec.row is not None:
            grey = tables[rec.path](rec.row)
            img = Image.fromarray(grey, "L").convert("RGB")
            return Decoded(square_pixels(img, size), hashlib.sha1(grey.tobytes()).hexdigest(), "L")
        if rec.box is None:
            img, mode, data = read_image(rec.path, draft_size=size)
        else:  # decoded at full scale: a JPEG draft would shrink the photo under the box's coordinates
            img, mode, data = read_image(rec.path)
            img = face_crop(img, rec.box)
        return Decoded(square_pixels(img, size), hashlib.sha1(data).hexdigest(), mode)
    except UnreadableImage as e:
        return e


def face_crop(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The (x, y, width, height) box of ``img``; a box reaching past the photo is an unreadable record."""
    x, y, w, h = box
    if x + w > img.width or y + h > img.height:
        raise UnreadableImage("face box outside the image", f"box {box} on a {img.width}x{img.height} image")
    return img.crop((x, y, x + w, y + h))


def _finish_images(tmp: Path, split: str, partial_file: Path, n_ok: int, n_listed: int) -> None:
    """Rows were written compactly; if some failed, copy the first ``n_ok`` into a right-sized file."""
    final = tmp / f"{split}_images.npy"
    if n_ok == n_listed:
        os.replace(partial_file, final)
        return
    src = np.load(partial_file, mmap_mode="r")
    dst = np.lib.format.open_memmap(final, mode="w+", dtype=np.uint8, shape=(n_ok, *src.shape[1:]))
    for lo in range(0, n_ok, CHUNK):
        hi = min(lo + CHUNK, n_ok)
        dst[lo:hi] = src[lo:hi]
    dst.flush()
    del src, dst
    partial_file.unlink()


def _pack_split(tmp: Path, split: str, records: list[Record], size: int, decode: Callable, pool, bar,
                classes: tuple[str, ...]) -> tuple[list[dict], list[Exclusion], Counter]:
    partial_file = tmp / f"{split}_images.partial"  # not *.npy: never picked up as a finished array
    images = np.lib.format.open_memmap(partial_file, mode="w+", dtype=np.uint8, shape=(len(records), size, size, 3))
    class_id = index_of(classes)
    targets = {r.name: r.target for r in records}
    index, bad, modes = [], [], Counter()
    for lo in range(0, len(records), CHUNK):
        chunk = records[lo : lo + CHUNK]
        for rec, out in zip(chunk, pool.map(decode, chunk)):
            if isinstance(out, UnreadableImage):
                bad.append(Exclusion(rec.name, split, out.kind, out.detail))
                continue
            images[len(index)] = out.pixels
            modes[out.mode] += 1
            index.append({"path": rec.name, "label": rec.label, "label_id": class_id[rec.label], "split": split,
                          "row": len(index), "source_hash": out.source_hash, "mode": out.mode})
        bar.update(len(chunk))
    images.flush()
    del images
    _finish_images(tmp, split, partial_file, len(index), len(records))
    np.save(tmp / f"{split}_labels.npy", np.array([r["label_id"] for r in index], dtype=np.int64))
    if records[0].target is not None:  # soft targets: one rule per split, so all records have them or none do
        np.save(tmp / f"{split}_targets.npy", np.array([targets[r["path"]] for r in index], dtype=np.float32))
    return index, bad, modes


def _identical_across_splits(index: list[dict]) -> list[list[str]]:
    """Groups of packed images with identical bytes in more than one split (train/test leakage)."""
    by_hash: dict[str, list[dict]] = defaultdict(list)
    for row in index:
        by_hash[row["source_hash"]].append(row)
    groups = [rows for rows in by_hash.values() if len({r["split"] for r in rows}) > 1]
    return [[f"{r['split']}:{r['path']}" for r in rows] for rows in groups]


def _write_entry(listing: Listing, size: int, key: str, tmp: Path) -> dict:
    t0 = time.perf_counter()
    tables = {p: listing.read_table(p) for p in {r.path for r in listing.records if r.row is not None}}
    decode = partial(decode_record, size=size, tables=tables)
    index, unreadable, modes = [], [], Counter()
    workers = min(16, os.cpu_count() or 1)
    log.info(f"packing {listing.dataset} ({len(listing.records)} images) at {size}px with {workers} threads, "
             "once per node")
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(listing.records), unit="img", disable=None,
                                                   desc=f"packing {listing.dataset} {size}px") as bar:
        for split in SPLITS:
            records = [r for r in listing.records if r.split == split]
            if records:
                rows, bad, split_modes = _pack_split(tmp, split, records, size, decode, pool, bar, listing.classes)
                index += rows
                unreadable += bad
                modes += split_modes
    pq.write_table(pa.Table.from_pylist(index, schema=INDEX_SCHEMA), tmp / "index.parquet")
    content = json.dumps([listing.classes, [(r["split"], r["path"], r["label"], r["source_hash"]) for r in index]])
    listed = Counter(r.split for r in listing.records)
    packed = Counter(r["split"] for r in index)
    leaks = _identical_across_splits(index)
    meta = {
        "dataset": listing.dataset, "root": str(listing.root), "key": key, "image_size": size,
        "classes": list(listing.classes), "options": listing.options, "pack_version": PACK_VERSION,
        "content_hash": hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()[:16],
        "listed": dict(listed), "packed": dict(packed),
        "excluded_by_rules": dict(Counter(e.kind for e in listing.excluded)),
        "excluded_unreadable": dict(Counter(e.kind for e in unreadable)),
        "identical_images_across_splits": len(leaks), "notes": listing.notes,
        "built": {"host": platform.node(), "pid": os.getpid(), "seconds": round(time.perf_counter() - t0, 2),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
    report = {**{k: meta[k] for k in ("dataset", "root", "key", "image_size", "notes", "listed", "packed",
                                      "excluded_by_rules", "excluded_unreadable")},
              "converted_modes": {m: n for m, n in modes.items() if m != "RGB"},
              "identical_images_across_splits": leaks,
              "excluded": [asdict(e) for e in [*unreadable, *listing.excluded]]}
    (tmp / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    return meta


def _log_counts(meta: dict, folder: Path) -> None:
    packed = " / ".join(f"{s} {meta['packed'].get(s, 0)}" for s in SPLITS if s in meta["listed"])
    log.info(f"{meta['dataset']} at {meta['image_size']}px: {packed} images, memory-mapped from {folder}")
    for note in meta.get("notes", []):
        log.info(f"{meta['dataset']}: {note}")
    if meta["excluded_by_rules"]:
        log.info(f"{meta['dataset']}: left out by the format's rules: {meta['excluded_by_rules']}")
    if meta["excluded_unreadable"]:
        n = sum(meta["excluded_unreadable"].values())
        log.warning(f"{meta['dataset']}: {n} unreadable file(s) excluded {meta['excluded_unreadable']}; "
                    f"each is listed by name in {folder / 'report.json'}")
    if meta["identical_images_across_splits"]:
        log.warning(f"{meta['dataset']}: {meta['identical_images_across_splits']} identical image(s) appear in "
                    f"more than one split (leakage?); see {folder / 'report.json'}")


def pack(listing: Listing, size: int, root: Path) -> PackedDataset:
    """The listing decoded at ``size`` px — built on first use on this node, memory-mapped after."""
    key = cache_key(listing, size)
    folder = build_once(root, key, partial(_write_entry, listing, size, key))
    arrays, meta = load_entry(folder)
    _log_counts(meta, folder)
    splits = {s: ArraySplit(arrays[f"{s}_images"], np.asarray(arrays[f"{s}_labels"]),
                            targets=arrays.get(f"{s}_targets")) for s in SPLITS if f"{s}_images" in arrays}
    for split, arr in splits.items():
        if len(arr) == 0:
            raise DatasetError(f"{listing.dataset}: every image of the {split} split is unreadable "
                               f"({meta['listed'][split]} listed); the reasons are in {folder / 'report.json'}. "
                               "Fix or re-download those files (a new cache entry is built when they change)")
    return PackedDataset(folder, tuple(meta["classes"]), splits, meta["content_hash"])
