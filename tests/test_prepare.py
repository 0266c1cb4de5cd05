"""``mfer-prepare`` on real photos: aligned crops, a report naming every file not aligned, resume."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mfer.config import ConfigError
from mfer.data.align import AlignSettings, FaceAligner, similarity, template
from mfer.data.prepare import JOURNAL, REPORT, prepare_tree, to_prepare_config

from .conftest import LONDON_FACES

PHOTOS = LONDON_FACES / "photos"  # four uncropped originals, 450x450


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The real CLI, as a user runs it, on the photos + a same-size face-less image + a corrupt file."""
    tmp = tmp_path_factory.mktemp("prepare")
    src, out = tmp / "in", tmp / "out"
    shutil.copytree(PHOTOS, src / "faces")
    # Same size as the photos, so it shares their MTCNN batch: a batch mixing face and no-face
    # images is the case that breaks facenet-pytorch's own box selection.
    with Image.open(next(PHOTOS.iterdir())) as photo:
        Image.new("RGB", photo.size, (120, 130, 140)).save(src / "faces" / "wall.jpg")
    (src / "broken").mkdir()
    (src / "broken" / "cut.jpg").write_bytes((PHOTOS / "neutral_front__001_03.jpg").read_bytes()[:3000])
    (src / "labels.txt").write_text("neutral_front__001_03.jpg 7\n")
    run = subprocess.run([sys.executable, "-m", "mfer.cli.prepare", f"input_dir={src}", f"output_dir={out}",
                          "image_size=112", "device=cpu"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return src, out, run.stdout


def test_crops_and_report(prepared):
    src, out, stdout = prepared
    for photo in PHOTOS.iterdir():
        with Image.open(out / "faces" / photo.name) as crop:
            assert crop.size == (112, 112) and crop.mode == "RGB"
    assert (out / "faces" / "wall.jpg").is_file() and not (out / "broken" / "cut.jpg").exists()
    assert (out / "labels.txt").read_text() == "neutral_front__001_03.jpg 7\n"  # drop-in data.root
    report = json.loads((out / REPORT).read_text())
    assert report["counts"] == {"images": 6, "aligned": 4, "no_face": 1, "unreadable": 1, "done_before": 0,
                                "other_files_copied": 1}
    not_aligned = {item["path"]: item["status"] for item in report["not_aligned"]}
    assert not_aligned == {"faces/wall.jpg": "no face", "broken/cut.jpg": "unreadable"}
    assert "4 aligned" in stdout and "broken/cut.jpg" in stdout


def test_crops_are_aligned_to_the_template(prepared):
    """Detected again on the crops, the landmarks sit where the template puts them (eyes level)."""
    _, out, _ = prepared
    crops = [Image.open(out / "faces" / p.name).convert("RGB") for p in sorted(PHOTOS.iterdir())]
    mtcnn = FaceAligner(AlignSettings(min_face_size=20)).mtcnn
    _, _, points = mtcnn.detect(crops, landmarks=True)
    target = template(112, AlignSettings().margin)
    for pts in points:
        assert np.abs(pts[0] - target).max() < 112 * 0.06
        assert abs(pts[0][0][1] - pts[0][1][1]) < 2.5  # eyes level


def test_rerun_resumes_and_keeps_the_report(prepared):
    src, out, _ = prepared
    report = prepare_tree(to_prepare_config({"input_dir": str(src), "output_dir": str(out), "image_size": 112,
                                             "device": "cpu"}))
    assert report["counts"]["done_before"] == 5  # only the unreadable file is tried again
    assert {item["path"] for item in report["not_aligned"]} == {"faces/wall.jpg", "broken/cut.jpg"}
    assert len((out / JOURNAL).read_text().splitlines()) == 1 + 6 + 1


def test_other_settings_need_overwrite(prepared):
    src, out, _ = prepared
    with pytest.raises(ConfigError, match="prepared with other settings.*overwrite=true"):
        prepare_tree(to_prepare_config({"input_dir": str(src), "output_dir": str(out), "image_size": 96}))


@pytest.mark.parametrize("override, match", [({"output_dir": "IN/sub"}, "must lie outside input_dir"),
                                             ({"input_dir": "IN/none"}, "is not a folder"),
                                             ({"margin": -1}, "margin"), ({"output_dir": None}, "output_dir required")])
def test_config_errors(tmp_path, override, match):
    cfg = {"input_dir": str(tmp_path), "output_dir": str(tmp_path.parent / "elsewhere")}
    cfg.update({k: (v.replace("IN", str(tmp_path)) if isinstance(v, str) else v) for k, v in override.items()})
    cfg = {k: v for k, v in cfg.items() if v is not None}
    with pytest.raises(ConfigError, match=match):
        to_prepare_config(cfg)


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity(src, src @ (scale * rot).T + shift)
    np.testing.assert_allclose(m, np.hstack([scale * rot, shift[:, None]]), atol=1e-9)


def test_images_smaller_than_mtcnn_min_face_fall_back_to_a_centre_crop():
    tiny, normal = Image.new("RGB", (30, 20)), Image.new("RGB", (100, 100))
    faces = FaceAligner(AlignSettings(image_size=64))([tiny, normal])
    assert [f.found for f in faces] == [False, False]
    assert all(f.image.size == (64, 64) for f in faces)
