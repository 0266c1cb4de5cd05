"""``mfer-prepare``'s engine: align every image of a tree into a mirror tree, resumably, with a report.

Each output keeps its image's relative path and extension, and other files (label files, CSVs)
are copied, so the output folder is a drop-in ``data.root`` for the same dataset adapter.
Outcomes are appended to a journal (``.prepare_journal.jsonl``) after every batch: an
interrupted run resumes where it stopped and a re-run skips finished images. The journal's
first line pins the alignment settings, so one tree never mixes crops made two ways
(fer_pitfalls #4). ``prepare_report.json`` counts everything and names every image that was not
aligned, with the reason: no face (a centre crop is written) or unreadable (nothing is written).
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf
from PIL import Image
from tqdm import tqdm

from mfer.config import ConfigError
from mfer.data.align import AlignSettings, FaceAligner
from mfer.data.decode import UnreadableImage, display_name, is_image_name, read_image
from mfer.device import resolve_device

JOURNAL = ".prepare_journal.jsonl"
REPORT = "prepare_report.json"
DONE = ("aligned", "no face")  # outcomes that wrote an output file; unreadable files are retried


@dataclass
class PrepareConfig(AlignSettings):
    input_dir: str = MISSING
    output_dir: str = MISSING
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    overwrite: bool = False  # redo every image, e.g. to change the alignment settings


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def to_prepare_config(cfg: Any) -> PrepareConfig:
    """Merge a (Hydra) mapping onto the schema and check it; errors name the key and the fix."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(PrepareConfig), cfg)
    except Exception as e:  # omegaconf names the key
        raise ConfigError(f"invalid configuration: {e}") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    _check(not missing, f"{', '.join(missing)} required: mfer-prepare input_dir=DIR output_dir=DIR")
    c: PrepareConfig = OmegaConf.to_object(merged)
    src, dst = Path(c.input_dir).resolve(), Path(c.output_dir).resolve()
    _check(src.is_dir(), f"input_dir={c.input_dir} is not a folder")
    _check(dst != src and src not in dst.parents, f"output_dir={c.output_dir} must lie outside input_dir")
    _check(c.image_size >= 32, f"image_size={c.image_size}: must be >= 32")
    _check(c.margin >= 0, f"margin={c.margin}: must be >= 0")
    _check(c.batch_size >= 1, f"batch_size={c.batch_size}: must be >= 1")
    _check(c.min_face_size >= 12, f"min_face_size={c.min_face_size}: MTCNN's smallest is 12")
    _check(c.device in ("auto", "cpu", "cuda") or c.device.startswith("cuda:"),
           f"device={c.device}: use auto, cpu, cuda or cuda:N")
    resolve_device(c.device, "device")
    _check(not dst.exists() or dst.is_dir(), f"output_dir={c.output_dir} is a file: name a folder")
    writable = dst if dst.exists() else next(p for p in dst.parents if p.exists())
    _check(os.access(writable, os.W_OK | os.X_OK), f"output_dir={c.output_dir}: {writable} is not writable "
           "by this user: choose a folder you can write")
    return c


def _settings(cfg: PrepareConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k in AlignSettings.__dataclass_fields__ and k != "batch_size"}


class Journal:
    """Per-image outcomes of this and earlier runs (last one wins), appended as JSON lines."""

    def __init__(self, path: Path, settings: dict, overwrite: bool) -> None:
        self.entries: dict[str, dict] = {}
        if path.is_file() and not overwrite:
            lines = path.read_text(encoding="utf-8").splitlines()
            before = json.loads(lines[0]).get("settings") if lines else None
            if before != settings:
                raise ConfigError(f"{path.parent} was prepared with other settings {before}, now {settings}: "
                                  "keep the same settings, use a new output_dir, or pass overwrite=true")
            for line in lines[1:]:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash: that image is redone
                    continue
                self.entries[entry["path"]] = entry
            self.fh = open(path, "a", encoding="utf-8")
        else:
            self.fh = open(path, "w", encoding="utf-8")
            self.fh.write(json.dumps({"settings": settings}) + "\n")

    def add(self, path: str, status: str, reason: str = "", probability: float = 0.0) -> None:
        entry = {"path": path, "status": status, "reason": reason, "probability": round(probability, 5)}
        self.entries[path] = entry
        self.fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def _save(img: Image.Image, path: Path) -> None:
    """Written under a temporary name and renamed, so a crash never leaves a half-written image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions()[path.suffix.lower()]
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    os.replace(tmp, path)


def _load(path: Path) -> Image.Image | UnreadableImage:
    try:
        return read_image(path)[0]
    except UnreadableImage as e:
        return e


def _copy_others(src: Path, dst: Path, others: list[Path], overwrite: bool) -> int:
    copied = 0
    for rel in others:
        target = dst / rel
        if overwrite or not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, target)
            copied += 1
    return copied


def prepare_tree(cfg: PrepareConfig) -> dict:
    """Align ``cfg.input_dir`` into ``cfg.output_dir``; returns (and writes) the report."""
    src, dst = Path(cfg.input_dir), Path(cfg.output_dir)
    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file() and p.name not in (JOURNAL, REPORT))
    images = [rel for rel in files if is_image_name(rel.name)]
    dst.mkdir(parents=True, exist_ok=True)
    copied = _copy_others(src, dst, [rel for rel in files if not is_image_name(rel.name)], cfg.overwrite)
    journal = Journal(dst / JOURNAL, _settings(cfg), cfg.overwrite)
    key = {rel: display_name(rel.as_posix()) for rel in images}
    pending = [rel for rel in images
               if journal.entries.get(key[rel], {}).get("status") not in DONE or not (dst / rel).is_file()]
    device = resolve_device(cfg.device)
    try:
        if pending:
            aligner = FaceAligner(cfg, device)
            with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool, tqdm(total=len(pending), unit="img",
                                                                             desc="mfer-prepare") as bar:
                step = cfg.batch_size * 4  # a few batches per round, so images of one size can batch together
                for lo in range(0, len(pending), step):
                    chunk = pending[lo : lo + step]
                    loaded = list(pool.map(_load, [src / rel for rel in chunk]))
                    ok = [(rel, img) for rel, img in zip(chunk, loaded) if isinstance(img, Image.Image)]
                    for rel, err in zip(chunk, loaded):
                        if isinstance(err, UnreadableImage):
                            journal.add(key[rel], "unreadable", str(err))
                    for (rel, _), face in zip(ok, aligner([img for _, img in ok])):
                        _save(face.image, dst / rel)
                        journal.add(key[rel], "aligned" if face.found else "no face",
                                    "" if face.found else "no face detected: centre crop written", face.probability)
                    journal.flush()
                    bar.update(len(chunk))
    finally:
        journal.close()
    outcomes = [journal.entries[key[rel]] for rel in images]
    report = {
        "input_dir": str(src), "output_dir": str(dst), "settings": _settings(cfg), "device": str(device),
        "counts": {"images": len(images), "aligned": sum(o["status"] == "aligned" for o in outcomes),
                   "no_face": sum(o["status"] == "no face" for o in outcomes),
                   "unreadable": sum(o["status"] == "unreadable" for o in outcomes),
                   "done_before": len(images) - len(pending), "other_files_copied": copied},
        "not_aligned": [{k: o[k] for k in ("path", "status", "reason")} for o in outcomes if o["status"] != "aligned"],
    }
    tmp = dst / f".{REPORT}.tmp"
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, dst / REPORT)
    return report
