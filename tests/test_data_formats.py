"""Adapters on fixtures in each official layout: exact labels, official splits, pixels in the right rows.

Expected labels are written out literally here (not taken from mfer/data/classes.py), so a wrong
mapping table fails a test instead of agreeing with itself.
"""
import csv
import shutil
from collections import Counter

import numpy as np
import pytest

from mfer.config import ConfigError
from mfer.data.classes import BASIC7, BASIC8
from mfer.data.formats.base import DatasetError
from mfer.data.synthetic import write_rafdb

from .conftest import LONDON_FACES, compose_train
from .fer_fixtures import (FERPLUS_ROWS, faces, imagefolder_tree, index_of_entry, load, packed, report_of,
                           write_affectnet, write_ferplus)

RAF_CODES = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
AFFECTNET_CODES = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust",
                   6: "anger", 7: "contempt"}


def raf_lines(root):
    label_file = next((root / "EmoLabel").glob("list_*_label.txt"))
    return [line.split() for line in label_file.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def raf_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("raf")
    train, test = faces(28, 32, seed=1), faces(14, 32, seed=2)
    write_rafdb(root, train, test)
    return root, train, test


def test_rafdb_labels_pixels_and_carved_val(raf_root):
    root, (tr_x, tr_y), (te_x, te_y) = raf_root
    b = load("rafdb", root)
    expected_test = [BASIC7.index(RAF_CODES[int(code)]) for name, code in raf_lines(root) if name.startswith("test_")]
    assert b.classes == BASIC7 and b.test.labels.tolist() == expected_test == te_y.tolist()
    # Pixels land in the row of their label: each packed image is nearest to its own source.
    dist = np.abs(b.test.images[:].astype(int)[:, None] - te_x.astype(int)[None]).mean(axis=(2, 3, 4))
    assert (dist.argmin(1) == np.arange(len(te_y))).all() and dist.diagonal().max() < 15  # JPEG noise; others are > 40
    assert len(b.train) + len(b.val) == 28 and len(b.val) == 7  # one per class carved (10 % of 4, at least 1)
    assert sorted(np.concatenate([b.train.labels, b.val.labels]).tolist()) == sorted(tr_y.tolist())


def test_rafdb_accepts_both_label_file_spellings_and_original_images(raf_root, tmp_path):
    src, _, (_, te_y) = raf_root
    root = tmp_path / "raf"
    shutil.copytree(src, root)
    (root / "EmoLabel" / "list_patition_label.txt").rename(root / "EmoLabel" / "list_partition_label.txt")
    original = root / "Image" / "original"
    original.mkdir()
    for f in (root / "Image" / "aligned").iterdir():
        shutil.copy(f, original / f.name.replace("_aligned", ""))
    shutil.rmtree(root / "Image" / "aligned")
    assert load("rafdb", root, rafdb_images="original").test.labels.tolist() == te_y.tolist()
    with pytest.raises(DatasetError, match="data.rafdb_images=original"):
        load("rafdb", root)


def test_rafdb_adapter_on_real_faces():
    """London faces in RAF-DB layout (tests/fixtures): real photos, labels 4 happiness / 7 neutral."""
    root = LONDON_FACES / "raf_format"
    entry = packed("rafdb", root, size=48)
    by_path = {r["path"]: r for r in index_of_entry(entry)}
    lines = raf_lines(root)
    assert len(by_path) == len(lines) == 24
    for name, code in lines:
        row = by_path[f"Image/aligned/{name.replace('.jpg', '_aligned.jpg')}"]
        assert row["label"] == RAF_CODES[int(code)] and row["split"] == name.split("_")[0]
    with open(LONDON_FACES / "labels.csv") as fh:  # labels from the source folders (neutral/, smiling/)
        truth = {f"Image/aligned/{r['raf_name'].replace('.jpg', '_aligned.jpg')}": (r["split"], r["label_name"])
                 for r in csv.DictReader(fh)}
    assert {path: (row["split"], row["label"]) for path, row in by_path.items()} == truth
    # Two of the seven classes: packed, but too few classes to carve a validation split from.
    assert set(entry.splits["test"].labels.tolist()) == {BASIC7.index("happiness"), BASIC7.index("neutral")}
    assert entry.splits["train"].images.shape == (12, 48, 48, 3)


@pytest.fixture(scope="module")
def affectnet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("affectnet")
    train_codes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5, 6, 7]
    test_codes = [7, 6, 5, 4, 3, 2, 1, 0, 9]
    rows = {"training": [(f"{100 + i % 3}/tr{i:03d}.jpg", c) for i, c in enumerate(train_codes)],
            "validation": [(f"{200 + i % 2}/va{i:03d}.jpg", c) for i, c in enumerate(test_codes)]}
    write_affectnet(root, rows)
    return root, train_codes, test_codes


@pytest.mark.parametrize("name, classes", [("affectnet8", BASIC8), ("affectnet7", BASIC7)])
def test_affectnet_codes_variants_and_exclusions(affectnet_root, name, classes):
    root, train_codes, test_codes = affectnet_root
    b = load(name, root)
    keep = lambda c: c in AFFECTNET_CODES and AFFECTNET_CODES[c] in classes  # noqa: E731
    assert b.classes == classes
    assert b.test.labels.tolist() == [classes.index(AFFECTNET_CODES[c]) for c in test_codes if keep(c)]
    train_expected = Counter(classes.index(AFFECTNET_CODES[c]) for c in train_codes if keep(c))
    assert Counter(np.concatenate([b.train.labels, b.val.labels]).tolist()) == train_expected
    report = report_of(packed(name, root))
    expected = {"non-expression code": 4}  # 8, 9, 10 in training; 9 in validation
    if name == "affectnet7":
        expected["contempt (not in the 7-class set)"] = 3
    assert report["excluded_by_rules"] == expected
    assert {e["name"] for e in report["excluded"]} >= {"Manually_Annotated_Images/102/tr008.jpg"}  # code 8


def test_affectnet_preset_turns_the_balanced_sampler_on():
    for name in ("affectnet7", "affectnet8"):
        assert compose_train(f"data={name}", "data.root=/data/AffectNet").data.balanced_sampler
    assert not compose_train("data=rafdb", "data.root=/data/RAF").data.balanced_sampler


def test_ferplus_majority_votes_official_usages_and_exact_pixels(tmp_path):
    grey = write_ferplus(tmp_path, FERPLUS_ROWS)
    b = load("ferplus", tmp_path, size=48)
    ids = lambda *names: [BASIC8.index(n) for n in names]  # noqa: E731
    assert b.classes == BASIC8
    assert b.train.labels.tolist() == ids("neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                                          "fear", "contempt", "neutral")
    assert b.val.labels.tolist() == ids("happiness", "neutral")  # PublicTest is the validation split
    assert b.test.labels.tolist() == ids("surprise", "contempt")
    np.testing.assert_array_equal(b.test.images[1], np.repeat(grey[17][..., None], 3, axis=-1))
    np.testing.assert_array_equal(b.train.images[8], np.repeat(grey[8][..., None], 3, axis=-1))
    report = report_of(packed("ferplus", tmp_path, size=48))
    assert report["excluded_by_rules"] == {"FERPlus: no majority label": 3, "FERPlus: top class unknown": 1,
                                           "FERPlus: top class NF": 1, "FERPlus: no image name": 1}
    assert report["listed"] == {"train": 9, "val": 2, "test": 2}


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    root, tr_y, te_y = imagefolder_tree(tmp_path_factory.mktemp("folder"), 21, 14, seed=3)
    # Class folders under the names other releases use; labels must follow the names, not the order.
    for split, old, new in (("train", "happiness", "Happy"), ("train", "anger", "angry"), ("test", "happiness", "HA"),
                            ("test", "surprise", "surprised"), ("test", "sadness", "SA")):
        (root / split / old).rename(root / split / new)
    return root, tr_y, te_y


def _file_number(path: str) -> int:
    return int(path.rsplit("_", 1)[1].split(".")[0])


def test_folder_layout_maps_class_names_and_aliases(folder_root):
    root, tr_y, te_y = folder_root
    entry = packed("folder", root)
    for row in index_of_entry(entry):
        labels = tr_y if row["split"] == "train" else te_y
        assert row["label_id"] == labels[_file_number(row["path"])], row  # BASIC7 order, from the generator
    b = load("folder", root)
    assert b.classes == BASIC7 and sorted(b.test.labels.tolist()) == sorted(te_y.tolist())


def test_folder_contempt_makes_8_classes_and_official_val_is_used(folder_root, tmp_path):
    src, _, _ = folder_root
    root = tmp_path / "tree"
    shutil.copytree(src, root)
    for split in ("train", "test"):
        shutil.copytree(root / split / "neutral", root / split / "contempt")
    shutil.copytree(root / "test", root / "val")
    b = load("folder", root)
    assert b.classes == BASIC8 and len(b.val) == len(b.test) == 14 + 2  # val/ used as is, not carved
    rows = index_of_entry(packed("folder", root))
    assert {r["label_id"] for r in rows if "/contempt/" in r["path"]} == {BASIC8.index("contempt")}
    assert {r["label_id"] for r in rows if "/Happy/" in r["path"] or "/HA/" in r["path"]} == {BASIC8.index("happiness")}


def test_a_class_missing_from_the_official_val_split_is_named(folder_root, tmp_path, caplog):
    """A release's own val/ is used as published, so a class absent from it is named, not refused
    (carved splits are refused: tests/test_trust.py)."""
    src, _, _ = folder_root
    root = tmp_path / "tree"
    shutil.copytree(src, root)
    shutil.copytree(root / "test", root / "val")
    shutil.rmtree(root / "val" / "surprised")
    with caplog.at_level("WARNING", logger="mfer.data.registry"):
        b = load("folder", root)
    assert BASIC7.index("surprise") not in set(b.val.labels.tolist())
    assert "no validation images for class(es) surprise" in caplog.text and "own splits" in caplog.text


@pytest.mark.parametrize("name", ["rafdb", "affectnet7", "affectnet8", "ferplus", "folder"])
def test_presets_compose_and_require_a_root(name):
    cfg = compose_train(f"data={name}", "data.root=/data/x")
    assert cfg.data.name == name and cfg.data.root == "/data/x"
    with pytest.raises(ConfigError, match="data.root"):
        compose_train(f"data={name}")


def test_rafdb_images_is_validated():
    with pytest.raises(ConfigError, match="data.rafdb_images"):
        compose_train("data=rafdb", "data.root=/x", "data.rafdb_images=cropped")
