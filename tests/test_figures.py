"""The paper's figures: a seeded t-SNE, mfer-figures on a really-trained sweep, Grad-CAM on a real face."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mfer.data.decode import square_pixels
from mfer_platform.layout import read_sweep_record
from mfer_platform.results import store
from mfer_platform.serving.export import export_best
from mfer_platform.report.figures.embedding import tsne
from mfer_platform.report.figures.features import from_export
from mfer_platform.report.figures.gradcam import cam_layers, grad_cams, gradcam_files
from mfer_platform.results.stats import best_trial, compare, spec_from_record

from .conftest import LONDON_FACES
from .fake_sweep import EXPERIMENT, clone

# Face Research Lab London Set (DeBruine & Jones 2017, doi:10.6084/m9.figshare.5047666.v5), CC BY 4.0;
# a cropped and resized copy shipped in tests/fixtures, see its README.md (face 001, smiling).
LONDON_FACE = LONDON_FACES / "raf_format" / "Image" / "aligned" / "test_0002_aligned.jpg"


def _blobs(n_per_class: int = 20, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), n_per_class)
    return rng.normal(0, 5, (4, dim))[labels] + rng.normal(0, 1, (len(labels), dim)), labels


def test_tsne_is_deterministic_for_a_seed():
    features, _ = _blobs()
    a, b = tsne(features, seed=0), tsne(features, seed=0)
    assert a.shape == (len(features), 2) and np.array_equal(a, b)


def test_figures_cli_writes_a_self_contained_page_and_gradcam_grids(fake_sweep, tmp_path):
    storage = clone(fake_sweep, tmp_path / "sweeps")
    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(face)
    script = Path(sys.executable).with_name("mfer-figures")
    out = subprocess.run([str(script), f"storage_path={storage}", f"name={EXPERIMENT}", "output_dir=out",
                          "per_class=2", f"images=[{face},{tmp_path / 'missing.jpg'}]"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "features + t-SNE" in out.stderr  # progress is shown
    page = (tmp_path / "out" / "figures.html").read_text()
    assert not re.search(r"<(script|img)[^>]+src=\"(?!data:)", page)  # everything inlined: opens offline
    assert page.count("Plotly.newPlot") == 2  # t-SNE panel, confusion matrices
    # Each panel is its group's best seed, embedded from the very features evaluation measured.
    trials = store.read_experiment(str(storage), EXPERIMENT)[0]
    cmp = compare(trials, spec_from_record(read_sweep_record(str(storage), EXPERIMENT)))
    for group in cmp.groups["group"]:
        assert f"compactness {best_trial(cmp, trials, group)['val_compactness']:.3f} (1 seed, 28 images)" in page
    grids = {p.stem for p in (tmp_path / "out" / "gradcam").glob("*.png")}
    assert "stage4" in grids  # plus one grid per attention block of the best model
    cams = {p.name for p in (tmp_path / "out" / "gradcam" / "images").iterdir()}
    assert cams == {f"face.{layer}.png" for layer in grids}
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == len(grids) + len(cams)
    assert "missing.jpg: missing file" in page


def test_gradcam_on_a_real_face_for_an_exported_model(fake_sweep, tmp_path):
    model_dir = export_best(str(clone(fake_sweep, tmp_path / "sweeps")), EXPERIMENT, tmp_path / "model")
    tm = from_export(model_dir)
    files = gradcam_files(tm, [LONDON_FACE], tmp_path / "cams")
    pngs = files.written[str(LONDON_FACE)]
    assert list(pngs) == list(cam_layers(tm.model)) == ["attn3", "stage4", "attn4"], "best model: DS attention at 3, 4"
    face = Image.open(LONDON_FACE).convert("RGB")
    for png in pngs.values():
        overlay = np.asarray(Image.open(png))
        assert overlay.shape == (face.height, face.width, 3) and overlay.std() > 0
    # The map itself varies over the face where its layer has more than one position (stage 3 of this
    # 32 px model is 2x2; stage 4 is 1x1, so its maps are flat).
    assert grad_cams(tm, square_pixels(face, tm.image_size)[None]).maps["attn3"].std() > 0
