"""The layouts FER repositories use, each read into the one vocabulary and trained with trainer=smoke:
RAF-DB's per-split lists (APViT, SCAN-CCI), numbered class folders (Kaggle, DAN), train/ + val/ or
valid/ without test/ (MFER, POSTER_V2), AffectNet's npy release and raw photos cropped to their face
boxes, FERPlus's own folders; malformed rows left out and named, numbers never guessed.

Expected labels come from the generator and the literal code tables below, not from mfer/data/classes.py.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mfer.config import ConfigError
from mfer.data.classes import BASIC7, BASIC8
from mfer.data.formats.base import DatasetError
from mfer.train import fit

from .conftest import compose_train
from .fer_fixtures import (FERPLUS_ROWS, faces, imagefolder_tree, index_of_entry, load, packed, report_of, write_affectnet,
                           write_affectnet_npy, write_affectnet_photos, write_ferplus, write_ferplus_folders,
                           write_numbered_tree, write_rafdb_lists)

RAF_CODE = {"surprise": 1, "fear": 2, "disgust": 3, "happiness": 4, "sadness": 5, "anger": 6, "neutral": 7}
AFFECTNET_CODE = {"neutral": 0, "happiness": 1, "sadness": 2, "surprise": 3, "fear": 4, "disgust": 5, "anger": 6,
                  "contempt": 7}


def codes(labels, table: dict[str, int], offset: int = 0) -> list[int]:
    return [table[BASIC7[y]] + offset for y in labels]


def nearest_source(packed_images, sources) -> np.ndarray:
    """For each packed image, the index of the source image it is closest to (pixels in the right rows)."""
    d = np.abs(packed_images[:].astype(int)[:, None] - sources.astype(int)[None]).mean(axis=(2, 3, 4))
    return d.argmin(1)


@pytest.mark.parametrize("files, with_aligned, order, offset", [
    (("train.txt", "test.txt"), False, "rafdb_1to7", 0),  # youqingxiaozhua/APViT
    (("train_label.txt", "test_label.txt"), True, "rafdb_1to7", 0),  # 1980x/SCAN-CCI-FER, DNFER
    (("train.txt", "test.txt"), False, "rafdb_0to6", -1),  # a list someone wrote 0-based
])
def test_rafdb_lists_follow_the_stated_class_order(tmp_path, files, with_aligned, order, offset):
    train, test = faces(21, 32, seed=1), faces(14, 32, seed=2)
    root = write_rafdb_lists(tmp_path / "raf", train, test, files, with_aligned)
    if offset:
        for f in files:
            path = root / "EmoLabel" / f
            path.write_text("".join(f"{n} {int(c) + offset}\n" for n, c in (ln.split() for ln in path.read_text().splitlines())))
    b = load("rafdb_lists", root, class_order=order)
    assert b.classes == BASIC7 and b.test.labels.tolist() == test[1].tolist()
    assert (nearest_source(b.test.images, test[0]) == np.arange(14)).all()
    assert sorted(np.concatenate([b.train.labels, b.val.labels]).tolist()) == sorted(train[1].tolist())
    with pytest.raises(ConfigError, match="data.class_order.*is required for data.name=rafdb_lists"):
        compose_train("data=rafdb_lists", f"data.root={root}", "data.class_order=null")


def test_numbered_folders_without_class_order_stop_naming_the_choices(tmp_path):
    x, y = faces(14, 32, seed=3)
    root = write_numbered_tree(tmp_path / "kaggle", {"train": (x, codes(y, RAF_CODE)), "test": (x, codes(y, RAF_CODE))})
    with pytest.raises(DatasetError) as e:
        load("folder", root)
    for words in ("numbered class folders need data.class_order", "rafdb_1to7 (1 surprise, 2 fear",
                  "affectnet_0to7 (0 neutral", "fer2013_0to6"):
        assert words in str(e.value)
    with pytest.raises(DatasetError, match=r"folder 7 is not a class of data.class_order=rafdb_0to6"):
        load("folder", root, class_order="rafdb_0to6")


def test_kaggle_rafdb_numbered_folders(tmp_path):
    (tx, ty), (sx, sy) = faces(21, 32, seed=4), faces(14, 32, seed=5)
    root = write_numbered_tree(tmp_path / "kaggle", {"train": (tx, codes(ty, RAF_CODE)), "test": (sx, codes(sy, RAF_CODE))})
    b = load("folder", root, class_order="rafdb_1to7")
    assert b.classes == BASIC7 and sorted(b.test.labels.tolist()) == sorted(sy.tolist())
    assert (b.test.labels == sy[nearest_source(b.test.images, sx)]).all()  # each image under its own label


def _dan_tree(root, contempt: int = 3):
    """DAN's AffectNet export: train/0..7 + val/0..7, no test/ (val/ is the test set there)."""
    (tx, ty), (vx, vy), (cx, _) = faces(21, 32, seed=6), faces(14, 32, seed=7), faces(2 * contempt, 32, seed=8)
    write_numbered_tree(root, {"train": (np.concatenate([tx, cx[:contempt]]), codes(ty, AFFECTNET_CODE) + [7] * contempt),
                               "val": (np.concatenate([vx, cx[contempt:]]), codes(vy, AFFECTNET_CODE) + [7] * contempt)})
    return ty, vy


def test_dan_affectnet_folders_val_is_the_test_split(tmp_path):
    ty, vy = _dan_tree(tmp_path / "dan")
    b8 = load("folder", tmp_path / "dan", class_order="affectnet_0to7")
    assert b8.classes == BASIC8
    assert sorted(b8.test.labels.tolist()) == sorted([BASIC8.index(BASIC7[y]) for y in vy] + [BASIC8.index("contempt")] * 3)
    assert len(b8.train) + len(b8.val) == 24 and len(b8.val) >= 7  # validation carved from train
    report = report_of(packed("folder", tmp_path / "dan", class_order="affectnet_0to7"))
    assert report["notes"] and "val/ read as the test split" in report["notes"][0] and report["listed"]["test"] == 17
    b7 = load("folder", tmp_path / "dan", class_order="affectnet_0to6")
    assert b7.classes == BASIC7 and sorted(b7.test.labels.tolist()) == sorted(vy.tolist())
    report7 = report_of(packed("folder", tmp_path / "dan", class_order="affectnet_0to6"))
    assert report7["excluded_by_rules"] == {"contempt (not in the 7-class set)": 6}


def test_poster_v2_train_and_valid_without_test(tmp_path):
    root, tr_y, te_y = imagefolder_tree(tmp_path / "poster", 21, 14, seed=9)
    (root / "test").rename(root / "valid")
    b = load("folder", root)
    assert sorted(b.test.labels.tolist()) == sorted(te_y.tolist()) and len(b.train) + len(b.val) == 21
    assert "valid/ read as the test split" in report_of(packed("folder", root))["notes"][0]
    shutil.copytree(root / "valid", root / "val")
    with pytest.raises(DatasetError, match="both val/ and valid/ exist"):
        load("folder", root)


def test_affectnet_npy_release(tmp_path):
    (tx, ty), (vx, vy) = faces(21, 32, seed=10), faces(14, 32, seed=11)
    root = write_affectnet_npy(tmp_path / "npy", {"train_set": (tx, codes(ty, AFFECTNET_CODE)),
                                                  "val_set": (vx, codes(vy, AFFECTNET_CODE))})
    for i in (98, 99):  # two contempt faces (code 7), images copied from the first ones
        np.save(root / "train_set" / "annotations" / f"{i}_exp.npy", np.array("7"))
        shutil.copy(root / "train_set" / "images" / f"{i - 98}.jpg", root / "train_set" / "images" / f"{i}.jpg")
    (root / "train_set" / "annotations" / "50_exp.npy").write_bytes(b"not numpy")
    b8 = load("affectnet8_npy", root)
    assert b8.classes == BASIC8 and sorted(b8.test.labels.tolist()) == sorted(BASIC8.index(BASIC7[y]) for y in vy)
    assert (b8.test.labels == [BASIC8.index(BASIC7[y]) for y in vy[nearest_source(b8.test.images, vx)]]).all()
    assert len(b8.train) + len(b8.val) == 23
    report = report_of(packed("affectnet8_npy", root))
    assert [(e["name"], e["kind"]) for e in report["excluded"]] == [("train_set/annotations/50_exp.npy", "malformed row")]
    assert report_of(packed("affectnet7_npy", root))["excluded_by_rules"] == {
        "malformed row": 1, "contempt (not in the 7-class set)": 2}
    np.save(root / "val_set" / "annotations" / "3_exp.npy", np.array("11"))
    with pytest.raises(DatasetError, match=r"3_exp.npy: expression code 11 is out of range"):
        load("affectnet8_npy", root)


def test_affectnet_photos_are_cropped_to_their_face_boxes(tmp_path):
    rows = {"training": [(f"{i % 3}/tr{i}.png", c) for i, c in enumerate([0, 1, 2, 3, 4, 5, 6, 7] * 2)],
            "validation": [(f"5/va{i}.png", c) for i, c in enumerate([7, 6, 5, 4, 3, 2, 1, 0])]}
    placed = write_affectnet_photos(tmp_path / "raw", rows)
    cropped, whole = packed("affectnet8", tmp_path / "raw", crop_face_box=True), packed("affectnet8", tmp_path / "raw")
    assert cropped.folder != whole.folder  # the option is part of the cache key
    for entry, close in ((cropped, True), (whole, False)):
        for row in index_of_entry(entry):
            face = placed[row["path"].removeprefix("Manually_Annotated_Images/")]
            diff = np.abs(entry.splits[row["split"]].images[row["row"]].astype(int) - face.astype(int)).mean()
            assert (diff < 3) == close, (row["path"], diff)
    with pytest.raises(ConfigError, match="data.crop_face_box.*needs face boxes"):
        compose_train("data=rafdb", "data.root=/x", "data.crop_face_box=true")


def test_affectnet_row_that_does_not_parse_is_left_out_and_named(tmp_path):
    write_affectnet(tmp_path, {"training": [(f"1/{i}.jpg", i % 8) for i in range(16)], "validation": [("2/v.jpg", 1)]})
    csv_file = tmp_path / "Manually_Annotated_file_lists" / "training.csv"
    lines = csv_file.read_text().splitlines()
    lines.insert(4, "1/x.jpg,1,2,3,4,5,6,7,8,9,10,11")  # 12 fields under a 9-field header: pandas' ParserError
    csv_file.write_text("\n".join(lines) + "\n")
    report = report_of(packed("affectnet8", tmp_path))
    assert {"name": "training.csv line 5", "split": "train", "kind": "malformed row",
            "detail": "12 fields, expected 9"} in report["excluded"]
    assert report["packed"] == {"train": 16, "test": 1}


def test_ferplus_folders_read_as_the_csv_release_does(tmp_path):
    write_ferplus(tmp_path / "csv", FERPLUS_ROWS)
    write_ferplus_folders(tmp_path / "folders", FERPLUS_ROWS)
    with open(tmp_path / "folders" / "FER2013Train" / "label.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["fer9999999.png", "(0, 0, 48, 48)", 10, 0])  # a truncated row
    a, b = load("ferplus", tmp_path / "csv", size=48), load("ferplus_folders", tmp_path / "folders", size=48)
    for split in ("train", "val", "test"):
        sa, sb = getattr(a, split), getattr(b, split)
        assert sa.labels.tolist() == sb.labels.tolist() and np.array_equal(sa.images[:], sb.images[:]), split
    report = report_of(packed("ferplus_folders", tmp_path / "folders", size=48))
    assert report["excluded_by_rules"] == {"FERPlus: no majority label": 3, "FERPlus: top class unknown": 1,
                                           "FERPlus: top class NF": 1, "malformed row": 1}
    soft = load("ferplus_folders", tmp_path / "folders", size=48, ferplus_labels="crossentropy")
    assert soft.train.targets is not None and np.allclose(soft.train.targets[:].sum(1), 1)


# --- every new layout trains, as mfer-train data=<layout> data.root=... trainer=smoke runs it ----------------

def _build(layout: str, root):
    """A small fake dataset in ``layout``; returns (data= preset and extra overrides, expected test count)."""
    if layout == "rafdb_lists":
        write_rafdb_lists(root, faces(21, 32, seed=1), faces(14, 32, seed=2), ("train.txt", "test.txt"), False)
        return ["data=rafdb_lists"], 14
    if layout == "rafdb_folders":
        (tx, ty), (sx, sy) = faces(21, 32, seed=4), faces(14, 32, seed=5)
        write_numbered_tree(root, {"train": (tx, codes(ty, RAF_CODE)), "test": (sx, codes(sy, RAF_CODE))})
        return ["data=rafdb_folders"], 14
    if layout in ("affectnet7_folders", "affectnet8_folders"):
        _dan_tree(root)
        return [f"data={layout}"], 14 if layout.startswith("affectnet7") else 17
    if layout == "folder_valid":
        (imagefolder_tree(root, 21, 14, seed=9)[0] / "test").rename(root / "valid")
        return ["data=folder"], 14
    if layout in ("affectnet7_npy", "affectnet8_npy"):  # 3 contempt faces per set: 8 classes need them
        (tx, ty), (vx, vy), (cx, _) = faces(21, 32, seed=10), faces(14, 32, seed=11), faces(6, 32, seed=8)
        write_affectnet_npy(root, {"train_set": (np.concatenate([tx, cx[:3]]), codes(ty, AFFECTNET_CODE) + [7] * 3),
                                   "val_set": (np.concatenate([vx, cx[3:]]), codes(vy, AFFECTNET_CODE) + [7] * 3)})
        return [f"data={layout}"], 14 if layout.startswith("affectnet7") else 17
    if layout == "affectnet8_photos":
        write_affectnet_photos(root, {"training": [(f"{i % 3}/t{i}.png", i % 8) for i in range(24)],
                                      "validation": [(f"9/v{i}.png", i % 8) for i in range(8)]})
        return ["data=affectnet8", "data.crop_face_box=true"], 8
    write_ferplus_folders(root, FERPLUS_ROWS)
    return ["data=ferplus_folders"], 2


LAYOUTS = ["rafdb_lists", "rafdb_folders", "affectnet7_folders", "affectnet8_folders", "folder_valid",
           "affectnet7_npy", "affectnet8_npy", "affectnet8_photos", "ferplus_folders"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_trains_with_the_smoke_trainer(tmp_path, layout):
    overrides, n_test = _build(layout, tmp_path / "data")
    cfg = compose_train(*overrides, f"data.root={tmp_path / 'data'}", "trainer=smoke", "data.image_size=32",
                        "data.batch_size=8", "data.val_fraction=0.2", "trainer.device=cpu")
    metrics = fit(cfg, tmp_path / "run")
    assert metrics["test_n"] == n_test and sum(map(sum, metrics["test_confusion"])) == n_test
    assert len(metrics["history"]) == 2 and 0.0 <= metrics["test_acc"] <= 1.0


def test_the_cli_reads_a_new_layout(tmp_path):
    overrides, n_test = _build("affectnet8_folders", tmp_path / "data")
    out = subprocess.run([sys.executable, "-m", "mfer.cli.train", *overrides, f"data.root={tmp_path / 'data'}",
                          "trainer=smoke", "data.image_size=32", "data.batch_size=8", "trainer.device=cpu",
                          f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "val/ read as the test split" in out.stdout + out.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_n"] == n_test
