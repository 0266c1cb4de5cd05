"""Export the best model of a really-trained sweep, predict with it, and refuse unsafe files."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load, load_file, save_file

from mfer.validation import to_train_config
from mfer.data.augment import to_model_input
from mfer.data.registry import load_dataset
from mfer.model import build_model
from mfer_platform.layout import read_sweep_record
from mfer_platform.results import store
from mfer_platform.serving.export import CARD, CONFIG, METRICS_FILE, WEIGHTS, ExportError, export_best, load_exported
from mfer.data.decode import list_images
from mfer_platform.serving.predict import PredictOptions, predict_files
from mfer_platform.results.stats import best_trial, compare, spec_from_record

from .fake_sweep import EXPERIMENT, clone

N_IMAGES = 6


@pytest.fixture(scope="module")
def exported(fake_sweep, tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    storage = clone(fake_sweep, work / "sweeps")
    return storage, export_best(str(storage), EXPERIMENT, work / "model")


@pytest.fixture(scope="module")
def images(exported, tmp_path_factory):
    """Test-split images of the sweep's dataset as PNG files, plus two files that are not images."""
    model_dir = exported[1]
    cfg = to_train_config(json.loads((model_dir / CONFIG).read_text())["train_config"])
    pixels = load_dataset(cfg.data).test.take(np.arange(N_IMAGES))
    folder = tmp_path_factory.mktemp("images")
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(folder / f"face_{i}.png")
    (folder / "broken.jpg").write_bytes(b"<html>not an image</html>")
    (folder / "empty.png").write_bytes(b"")
    return folder, pixels


def _copy(model_dir: Path, dest: Path) -> Path:
    shutil.copytree(model_dir, dest)
    return dest


def test_export_is_the_best_validation_group_and_seed(exported):
    storage, model_dir = exported
    assert {p.name for p in model_dir.iterdir()} == {WEIGHTS, CONFIG, METRICS_FILE, CARD}
    assert not list(storage.rglob("state.pt"))  # exported from final checkpoints, which are weights-only
    trials = store.read_experiment(str(storage), EXPERIMENT)[0]
    cmp = compare(trials, spec_from_record(read_sweep_record(str(storage), EXPERIMENT)))
    metrics = json.loads((model_dir / METRICS_FILE).read_text())
    assert metrics["trial"]["trial_id"] == best_trial(cmp, trials)["trial_id"] and metrics["group"] == cmp.best
    members = trials[trials["trial_id"].isin(cmp.groups.loc[cmp.groups["is_best"], "trial_ids"].iloc[0])]
    assert metrics["trial"]["val_acc"] == members["val_acc"].max()
    assert metrics["group_stats"]["val_acc"]["n"] == 2
    assert metrics["group_stats"]["test_acc"]["mean"] == pytest.approx(members["test_acc"].mean())
    config = json.loads((model_dir / CONFIG).read_text())
    row = trials.set_index("trial_id").loc[metrics["trial"]["trial_id"]]
    card = (model_dir / CARD).read_text()
    for needle in (row["git_commit"], row["config_hash"], row["dataset_fingerprint"], "95% CI", "(n=2)",
                   "never take part in the selection", config["weights_sha256"]):
        assert needle in card, needle
    assert set(load_file(str(model_dir / WEIGHTS))) == set(build_model(
        to_train_config(config["train_config"]).model, len(config["classes"])).state_dict())  # plain names


def test_predictions_equal_the_in_memory_model(exported, images):
    storage, model_dir = exported
    folder, pixels = images
    metrics = json.loads((model_dir / METRICS_FILE).read_text())
    ckpt = storage / EXPERIMENT / store.read_experiment(str(storage), EXPERIMENT)[0].set_index("trial_id").loc[
        metrics["trial"]["trial_id"], "checkpoint"]
    meta = json.loads((ckpt / "meta.json").read_text())
    model = build_model(to_train_config(meta["config"]).model, len(meta["classes"]))
    weights = load_file(str(ckpt / "best_model.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("model.")})
    size = meta["config"]["data"]["image_size"]
    with torch.no_grad():
        expected = torch.softmax(model.eval()(to_model_input(torch.from_numpy(pixels), size, False)), 1)

    records = list(predict_files(load_exported(model_dir), list_images([folder]), PredictOptions(batch_size=4)))
    assert [Path(r["path"]).name for r in records] == ["broken.jpg", "empty.png", *[f"face_{i}.png" for i in range(N_IMAGES)]]
    assert "not an image" in records[0]["error"] and "empty file" in records[1]["error"]
    got = torch.tensor([[r["probabilities"][c] for c in meta["classes"]] for r in records[2:]])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert [r["label"] for r in records[2:]] == [meta["classes"][i] for i in expected.argmax(1)]


def test_predict_cli_streams_json_lines_and_reports_bad_files(exported, images):
    folder, _ = images
    script = Path(sys.executable).with_name("mfer-predict")
    out = subprocess.run([str(script), f"model_dir={exported[1]}", f"inputs={folder}"], cwd=folder.parent,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1  # some images failed; the others were still predicted
    good = [json.loads(line) for line in out.stdout.splitlines()]
    bad = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert len(good) == N_IMAGES and all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in good)
    assert sorted(Path(r["path"]).name for r in bad) == ["broken.jpg", "empty.png"] and all("error" in r for r in bad)


def test_align_option_runs_mtcnn_first(exported, images):
    pytest.importorskip("facenet_pytorch", reason="alignment needs facenet-pytorch (installed --no-deps)")
    folder, pixels = images
    big = folder.parent / "big_face.png"  # larger than MTCNN's smallest face (40 px)
    Image.fromarray(pixels[0]).resize((160, 160), Image.Resampling.BICUBIC).save(big)
    records = list(predict_files(load_exported(exported[1]), [big], PredictOptions(align=True)))
    assert "label" in records[0] and isinstance(records[0]["face_found"], bool)


def test_tampered_weights_are_refused(exported, tmp_path):
    model_dir = _copy(exported[1], tmp_path / "m")
    blob = bytearray((model_dir / WEIGHTS).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (model_dir / WEIGHTS).write_bytes(bytes(blob))
    with pytest.raises(ExportError, match="modified or replaced.*SHA-256"):
        load_exported(model_dir)


@pytest.mark.parametrize("key", ["weights_sha256", "classes", "image_size"])
def test_a_config_missing_a_field_is_refused_by_name(exported, tmp_path, key):
    model_dir = _copy(exported[1], tmp_path / "m")
    config = json.loads((model_dir / CONFIG).read_text())
    del config[key]
    (model_dir / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ExportError, match=f"config.json: missing or mistyped {key}; re-export"):
        load_exported(model_dir)


def test_a_pickle_is_refused_without_unpickling(exported, tmp_path):
    model_dir = _copy(exported[1], tmp_path / "m")
    torch.save(load((model_dir / WEIGHTS).read_bytes()), model_dir / WEIGHTS)  # in memory: no mmap to truncate
    with pytest.raises(ExportError, match="pickle.*refusing"):
        load_exported(model_dir)


def test_wrong_shapes_are_refused(exported, tmp_path):
    model_dir = _copy(exported[1], tmp_path / "m")
    state = load((model_dir / WEIGHTS).read_bytes())
    key = next(k for k, v in state.items() if v.ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    save_file(state, str(model_dir / WEIGHTS))
    config = json.loads((model_dir / CONFIG).read_text())
    config["weights_sha256"] = hashlib.sha256((model_dir / WEIGHTS).read_bytes()).hexdigest()  # consistent, but wrong
    (model_dir / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ExportError, match=f"1 wrong shapes.*{key}"):
        load_exported(model_dir)
