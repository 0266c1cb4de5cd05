"""Small FER datasets in their official on-disk layouts, built from the synthetic generator.

RAF-DB and class-per-folder trees come from ``mfer.data.synthetic``'s writers; AffectNet's CSV
release and FERPlus's two CSVs are written here, exactly as the releases lay them out.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from mfer.config import DataConfig
from mfer.data.cache import cache_root
from mfer.data.pack import PackedDataset, pack
from mfer.data.registry import LISTINGS, load_dataset
from mfer.data.synthetic import SyntheticSpec, generate, write_ferplus_csvs, write_imagefolder, write_rafdb

AFFECTNET_HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                    "facial_landmarks", "expression", "valence", "arousal"]

# (Usage, Image name, votes: neutral happiness surprise sadness anger disgust fear contempt unknown NF)
FERPLUS_ROWS = [
    ("Training", "fer0000000.png", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),  # neutral
    ("Training", "fer0000001.png", [0, 8, 2, 0, 0, 0, 0, 0, 0, 0]),  # happiness
    ("Training", "fer0000002.png", [0, 0, 6, 0, 0, 0, 4, 0, 0, 0]),  # surprise
    ("Training", "fer0000003.png", [0, 0, 0, 7, 3, 0, 0, 0, 0, 0]),  # sadness
    ("Training", "fer0000004.png", [0, 0, 0, 0, 9, 1, 0, 0, 0, 0]),  # anger
    ("Training", "fer0000005.png", [0, 0, 0, 0, 2, 6, 2, 0, 0, 0]),  # disgust
    ("Training", "fer0000006.png", [0, 0, 0, 0, 0, 0, 7, 3, 0, 0]),  # fear
    ("Training", "fer0000007.png", [2, 0, 0, 0, 0, 0, 0, 8, 0, 0]),  # contempt
    ("Training", "fer0000008.png", [5, 1, 1, 1, 1, 1, 0, 0, 0, 0]),  # neutral: single votes dropped first
    ("Training", "fer0000009.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]),  # no majority (4 of 9)
    ("Training", "fer0000010.png", [0, 0, 0, 0, 0, 0, 0, 0, 7, 3]),  # majority unknown
    ("Training", "fer0000011.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # majority NF
    ("Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # removed by FERPlus: no image name
    ("Training", "fer0000013.png", [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]),  # tie: no majority
    ("PublicTest", "fer0000014.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]),  # happiness
    ("PublicTest", "fer0000015.png", [9, 0, 0, 0, 0, 0, 0, 0, 0, 1]),  # neutral
    ("PrivateTest", "fer0000016.png", [0, 0, 10, 0, 0, 0, 0, 0, 0, 0]),  # surprise
    ("PrivateTest", "fer0000017.png", [0, 0, 0, 0, 0, 0, 0, 10, 0, 0]),  # contempt
    ("PrivateTest", "fer0000018.png", [3, 3, 3, 1, 0, 0, 0, 0, 0, 0]),  # no majority
]


def faces(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, BASIC7 labels) from the synthetic generator."""
    return generate(SyntheticSpec(n, size, seed))


def write_affectnet(root: Path, rows: dict[str, list[tuple[str, int]]], size: int = 32) -> None:
    """``rows[csv stem]`` = [(subDirectory_filePath, expression code)]; every image is written as a JPEG."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    n = sum(len(r) for r in rows.values())
    images, _ = faces(n, size, seed=11)
    i = 0
    for stem, entries in rows.items():
        with open(lists / f"{stem}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(AFFECTNET_HEADER)
            for rel, code in entries:
                landmarks = ";".join(["10.5"] * 136)
                w.writerow([rel, 2, 2, size - 4, size - 4, landmarks, code, "0.1", "-0.2"])
                path = root / "Manually_Annotated_Images" / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(path, quality=95)
                i += 1


def write_ferplus(root: Path, rows: list[tuple[str, str, list[int]]], pixels: list[str] | None = None) -> np.ndarray:
    """``rows`` = [(Usage, Image name, ten vote counts)] -> fer2013.csv + fer2013new.csv; returns the
    (N, 48, 48) grey faces written (``pixels`` overrides a row's pixel string, e.g. a malformed one)."""
    rgb, emotions = faces(len(rows), 48, seed=5)
    grey = rgb.mean(-1).round().astype(np.uint8)
    usages, names, votes = zip(*rows)
    write_ferplus_csvs(root, list(usages), list(names), grey, [int(e) for e in emotions], list(votes), pixels)
    return grey


def config(name: str, root: Path, size: int = 32, **kw) -> DataConfig:
    return DataConfig(name=name, root=str(root), image_size=size, **kw)


def load(name: str, root: Path, size: int = 32, **kw):
    """The DatasetBundle the trainer would get."""
    return load_dataset(config(name, root, size, **kw))


def packed(name: str, root: Path, size: int = 32, **kw) -> PackedDataset:
    """The cache entry behind it (folder with arrays, index.parquet, report.json)."""
    cfg = config(name, root, size, **kw)
    return pack(LISTINGS[name](cfg), size, cache_root(None))


def report_of(entry: PackedDataset) -> dict:
    return json.loads((entry.folder / "report.json").read_text(encoding="utf-8"))


def index_of_entry(entry: PackedDataset) -> list[dict]:
    return pq.read_table(entry.folder / "index.parquet").to_pylist()


def imagefolder_tree(root: Path, n_train: int, n_test: int, seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """A class-per-folder train/test tree of synthetic faces (32 px): (root, train labels, test labels)."""
    labels = []
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = faces(n, 32, seed=s)
        write_imagefolder(root, x, y, split)
        labels.append(y)
    return root, labels[0], labels[1]


# --- the other layouts FER repositories use (mfer/data/formats; README "Datasets") ----------------------

def write_rafdb_lists(root: Path, train, test, files: tuple[str, str], names_with_aligned: bool) -> Path:
    """RAF-DB with per-split lists (APViT: train.txt/test.txt; SCAN-CCI: train_label.txt/test_label.txt)
    instead of list_patition_label.txt; APViT's names lack ``_aligned``, some copies keep it."""
    write_rafdb(root, train, test)
    lines = (root / "EmoLabel" / "list_patition_label.txt").read_text().splitlines()
    (root / "EmoLabel" / "list_patition_label.txt").unlink()
    for split, file in zip(("train", "test"), files):
        mine = [line for line in lines if line.startswith(split)]
        if names_with_aligned:
            mine = [line.replace(".jpg", "_aligned.jpg") for line in mine]
        (root / "EmoLabel" / file).write_text("\n".join(mine) + "\n")
    return root


def write_numbered_tree(root: Path, splits: dict[str, tuple[np.ndarray, list[int]]]) -> Path:
    """``root/<split>/<number>/<i>.jpg``: a class-per-folder tree whose folders are numbers (Kaggle's
    RAF-DB copy, DAN's AffectNet export)."""
    for split, (images, numbers) in splits.items():
        for i, (img, number) in enumerate(zip(images, numbers)):
            path = root / split / str(number) / f"{split}_{i:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path, quality=95)
    return root


def write_affectnet_npy(root: Path, sets: dict[str, tuple[np.ndarray, list[int]]]) -> Path:
    """AffectNet's npy release: ``<set>/images/<id>.jpg`` + ``<set>/annotations/<id>_exp.npy`` holding the
    code as a string array, as the release stores it, beside the other annotations (``_aro.npy``)."""
    for folder, (images, codes) in sets.items():
        (root / folder / "images").mkdir(parents=True, exist_ok=True)
        (root / folder / "annotations").mkdir(parents=True, exist_ok=True)
        for i, (img, code) in enumerate(zip(images, codes)):
            Image.fromarray(img).save(root / folder / "images" / f"{i}.jpg", quality=95)
            np.save(root / folder / "annotations" / f"{i}_exp.npy", np.array(str(code)))
            np.save(root / folder / "annotations" / f"{i}_aro.npy", np.array("0.25"))
    return root


def write_affectnet_photos(root: Path, rows: dict[str, list[tuple[str, int]]], seed: int = 12) -> dict[str, np.ndarray]:
    """AffectNet's CSV release with whole photos: each 32 px face pasted at its CSV face box into a larger
    noisy picture. Returns {subDirectory_filePath: the face} to compare the packed crops with."""
    rng = np.random.default_rng(seed)
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    n = sum(len(r) for r in rows.values())
    images, _ = faces(n, 32, seed=seed)
    placed, i = {}, 0
    for stem, entries in rows.items():
        with open(lists / f"{stem}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(AFFECTNET_HEADER)
            for rel, code in entries:
                x, y = (int(v) for v in rng.integers(0, 48, 2))
                photo = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
                photo[y:y + 32, x:x + 32] = images[i]
                w.writerow([rel, x, y, 32, 32, ";".join(["10.5"] * 136), code, "0.1", "-0.2"])
                path = root / "Manually_Annotated_Images" / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(photo).save(path)  # lossless (name it .png): the crop must match exactly
                placed[rel] = images[i]
                i += 1
    return placed


def write_ferplus_folders(root: Path, rows: list[tuple[str, str, list[int]]]) -> np.ndarray:
    """FERPlus as microsoft/FERPlus's scripts write it: FER2013{Train,Valid,Test}/ with 48x48 PNGs and a
    header-less label.csv '<name>,"(0, 0, 48, 48)",<10 votes>'; the same faces as ``write_ferplus``."""
    rgb, _ = faces(len(rows), 48, seed=5)
    grey = rgb.mean(-1).round().astype(np.uint8)
    folders = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
    for folder in folders.values():
        (root / folder).mkdir(parents=True, exist_ok=True)
    label_rows: dict[str, list] = {f: [] for f in folders.values()}
    for i, (usage, name, votes) in enumerate(rows):
        if not name:  # FERPlus generates no image for a row it removed
            continue
        Image.fromarray(grey[i], "L").save(root / folders[usage] / name)
        label_rows[folders[usage]].append([name, "(0, 0, 48, 48)", *votes])
    for folder, table in label_rows.items():
        with open(root / folder / "label.csv", "w", newline="") as fh:
            csv.writer(fh).writerows(table)
    return grey
