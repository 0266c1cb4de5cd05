"""Every bad-input case from issue 3, and the documented result for each.

One class-per-folder fixture holds all the files the loader must survive:

| file                         | result                                                        |
|------------------------------|---------------------------------------------------------------|
| empty.jpg (0 bytes)          | excluded, reported as "empty file"                            |
| truncated.jpg, cut_header.jpg | excluded, reported as "corrupt or truncated"                 |
| page.jpg (HTML saved as jpg) | excluded, reported as "not an image"                          |
| notes.txt                    | not read, reported as "not an image extension"                |
| grey.png (L)                 | packed: grey replicated to RGB                                |
| cmyk.jpg (CMYK)              | packed: converted to RGB (CMYK 0,0,0,0 -> white)              |
| sixteen.png (16-bit grey)    | packed: scaled by 1/257 (32896 -> 128), not clipped to 255    |
| alpha.png (RGBA), palette.png (P + transparency) | packed: composited on white             |
| 表情_ü.png, bad_\\xff.png (non-UTF-8 name) | packed; names kept readable in index and report |

Errors, each naming the file and the fix: label id out of range, missing label file, empty
split (nothing listed, or nothing readable), a name listed twice with different labels; a name
listed twice with the same label is kept once and reported; an image missing from disk is
excluded and reported.
"""
import io
import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from mfer.data.decode import to_rgb
from mfer.data.formats.base import DatasetError
from mfer.data.synthetic import write_imagefolder, write_rafdb

from .fer_fixtures import faces, imagefolder_tree, index_of_entry, load, packed, report_of, write_affectnet, write_ferplus


def _png(img: Image.Image, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory):
    root, _, _ = imagefolder_tree(tmp_path_factory.mktemp("bad"), 14, 7, seed=7)
    d = root / "train" / "happiness"
    (d / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(faces(1, 96, seed=9)[0][0]).save(buf, format="JPEG", quality=95)
    (d / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (d / "cut_header.jpg").write_bytes(buf.getvalue()[:300])
    (d / "page.jpg").write_text("<html><body>403 Forbidden</body></html>")
    (d / "notes.txt").write_text("not an image")
    _png(Image.new("L", (40, 30), 77), d / "grey.png")
    Image.new("CMYK", (32, 32), (0, 0, 0, 0)).save(d / "cmyk.jpg", quality=95)
    _png(Image.fromarray(np.full((32, 32), 32896, dtype=np.uint16)), d / "sixteen.png")
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :16] = (255, 0, 0, 255)  # left half opaque red, right half fully transparent black
    _png(Image.fromarray(rgba, "RGBA"), d / "alpha.png")
    pal = Image.new("P", (32, 32), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.info["transparency"] = 1  # every pixel uses the transparent index
    pal.save(d / "palette.png", transparency=1)
    _png(Image.new("RGB", (32, 32), (10, 200, 30)), d / "表情_ü.png")
    with open(os.fsencode(d) + b"/bad_\xff.png", "wb") as fh:
        Image.new("RGB", (32, 32), (1, 2, 3)).save(fh, format="PNG")
    return root


def _rows(entry) -> dict[str, dict]:
    return {r["path"].rsplit("/", 1)[1]: r for r in index_of_entry(entry)}


def test_bad_files_are_excluded_and_reported_by_name(bad_tree, caplog):
    with caplog.at_level(logging.INFO, logger="mfer.data.pack"):
        entry = packed("folder", bad_tree)
    report = report_of(entry)
    reasons = {e["name"].rsplit("/", 1)[1]: e["kind"] for e in report["excluded"]}
    assert reasons == {"empty.jpg": "empty file", "truncated.jpg": "corrupt or truncated", "page.jpg": "not an image",
                       "cut_header.jpg": "corrupt or truncated", "notes.txt": "not an image extension"}
    assert report["excluded_unreadable"] == {"empty file": 1, "corrupt or truncated": 2, "not an image": 1}
    assert report["excluded_by_rules"] == {"not an image extension": 1}
    assert report["packed"] == {"train": 14 + 7, "test": 7} and report["listed"] == {"train": 14 + 11, "test": 7}
    assert "4 unreadable file(s) excluded" in caplog.text and "report.json" in caplog.text


def test_modes_are_converted_to_rgb_properly(bad_tree):
    entry = packed("folder", bad_tree)
    rows, images = _rows(entry), entry.splits["train"].images

    def px(name):
        return images[rows[name]["row"]].astype(int)

    assert (px("grey.png") == 77).all()
    assert (px("cmyk.jpg") >= 250).all()  # CMYK 0,0,0,0 is white
    assert np.abs(px("sixteen.png") - 128).max() <= 1  # scaled, not clipped to 255
    alpha = px("alpha.png")
    assert (alpha[:, :14] == (255, 0, 0)).all() and (alpha[:, 18:] == 255).all()  # transparent -> white
    assert (px("palette.png") == 255).all()
    assert {rows[n]["mode"] for n in ("grey.png", "cmyk.jpg", "sixteen.png", "alpha.png", "palette.png")} >= {
        "L", "CMYK", "RGBA", "P"}


def test_non_ascii_and_non_utf8_names_are_packed_and_readable(bad_tree):
    rows = _rows(packed("folder", bad_tree))
    assert (rows["表情_ü.png"]["label"], rows["bad_\\xff.png"]["label"]) == ("happiness", "happiness")


@pytest.mark.parametrize("mode, values, expected", [("F", [[0.0, 0.5], [1.0, 0.25]], [[0, 128], [255, 64]]),
                                                    ("I", [[0, 65535], [32896, 257]], [[0, 255], [128, 1]]),
                                                    ("I", [[0, 255], [77, 1]], [[0, 255], [77, 1]])])
def test_float_and_32bit_grey_modes(mode, values, expected):
    img = Image.fromarray(np.array(values, dtype=np.float32 if mode == "F" else np.int32), mode)
    np.testing.assert_array_equal(np.asarray(to_rgb(img))[..., 0], expected)


@pytest.fixture
def raf(tmp_path):
    root = tmp_path / "raf"
    write_rafdb(root, faces(7, 32, seed=1), faces(7, 32, seed=2))
    return root


def _edit_labels(root, edit):
    f = root / "EmoLabel" / "list_patition_label.txt"
    f.write_text(edit(f.read_text()))


@pytest.mark.parametrize("bad_line, match", [
    ("train_00001.jpg 8", r"line 1: label '8' .* out of range; RAF-DB basic uses 1..7"),
    ("train_00001.jpg 0", "out of range"),
    ("train_00001.jpg happy", "out of range"),
    ("val_00001.jpg 3", "must start with train_ or test_"),
])
def test_rafdb_bad_label_lines_name_file_and_line(raf, bad_line, match):
    _edit_labels(raf, lambda text: bad_line + "\n" + text.split("\n", 1)[1])
    with pytest.raises(DatasetError, match=match) as e:
        load("rafdb", raf)
    assert "list_patition_label.txt" in str(e.value)


def test_missing_label_file_names_the_expected_paths(raf):
    (raf / "EmoLabel" / "list_patition_label.txt").unlink()
    with pytest.raises(DatasetError, match="list_patition_label.txt.*list_partition_label.txt.*EmoLabel"):
        load("rafdb", raf)


def test_empty_split_is_an_error(raf, tmp_path):
    _edit_labels(raf, lambda text: "\n".join(line for line in text.splitlines() if line.startswith("train_")))
    with pytest.raises(DatasetError, match="the test split lists no images"):
        load("rafdb", raf)
    tree = tmp_path / "tree"
    write_imagefolder(tree, *faces(7, 32, seed=1), "train")
    with pytest.raises(DatasetError, match="test split lists no images"):
        load("folder", tree)


def test_split_with_only_unreadable_files_is_an_error_pointing_at_the_report(raf):
    for f in (raf / "Image" / "aligned").glob("test_*"):
        f.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"every image of the test split is unreadable \(7 listed\).*report.json"):
        load("rafdb", raf)


def test_repeated_names_same_label_kept_once_different_label_rejected(raf):
    _edit_labels(raf, lambda text: text + text.splitlines()[0] + "\n")
    entry = packed("rafdb", raf)
    assert entry.splits["train"].labels.shape == (7,)
    assert [e["kind"] for e in report_of(entry)["excluded"]] == ["repeated row"]
    name, code = (raf / "EmoLabel" / "list_patition_label.txt").read_text().splitlines()[0].split()
    _edit_labels(raf, lambda text: text + f"{name} {int(code) % 7 + 1}\n")
    with pytest.raises(DatasetError, match=r"listed twice with different labels.*line 1.*line 16"):
        load("rafdb", raf)


def test_image_missing_from_disk_is_excluded_and_reported(raf):
    (raf / "Image" / "aligned" / "train_00003_aligned.jpg").unlink()
    report = report_of(packed("rafdb", raf))
    excluded = [(e["name"], e["kind"]) for e in report["excluded"]]
    assert excluded == [("Image/aligned/train_00003_aligned.jpg", "missing file")]


def test_unknown_class_folder_and_missing_root(tmp_path):
    tree = tmp_path / "tree"
    for split in ("train", "test"):
        write_imagefolder(tree, *faces(7, 32, seed=1), split)
    (tree / "test" / "neutral").rename(tree / "test" / "calm")
    with pytest.raises(DatasetError, match=r"\['calm'\] name no known class"):
        load("folder", tree)
    with pytest.raises(DatasetError, match="is not a folder"):
        load("folder", tmp_path / "nowhere")


def test_affectnet_code_out_of_range_and_missing_csv(tmp_path):
    write_affectnet(tmp_path, {"training": [("1/a.jpg", 0), ("1/b.jpg", 11)], "validation": [("2/c.jpg", 1)]})
    with pytest.raises(DatasetError, match=r"training.csv, line 3: expression code 11 is out of range"):
        load("affectnet8", tmp_path)
    shutil.rmtree(tmp_path)
    write_affectnet(tmp_path, {"training": [("1/a.jpg", 0)]})
    with pytest.raises(DatasetError, match="AffectNet validation.csv not found"):
        load("affectnet8", tmp_path)


def test_ferplus_malformed_row_is_excluded_and_mismatched_files_rejected(tmp_path):
    rows = [("Training", f"fer{i:07d}.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]) for i in range(3)]
    rows += [("PrivateTest", "fer0000003.png", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0])]
    write_ferplus(tmp_path, rows, pixels=[None, "1 2 3", None, None])
    report = report_of(packed("ferplus", tmp_path, size=48))
    assert [(e["name"], e["kind"]) for e in report["excluded"]] == [("fer0000001.png", "malformed pixel row")]
    with open(tmp_path / "fer2013new.csv", "a") as fh:
        fh.write("PrivateTest,fer0000004.png," + ",".join(["10"] + ["0"] * 9) + "\n")
    with pytest.raises(DatasetError, match="has 4 rows but fer2013new.csv has 5"):
        load("ferplus", tmp_path, size=48)
