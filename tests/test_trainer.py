"""The training loop: metrics file, val-only selection, exact resume, NaN guard, config errors."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mfer.config import ConfigError
from mfer.train import NonFiniteLossError, fit
from mfer.train.checkpoint import load_state

from .conftest import TINY, compose_train


class Interrupt(Exception):
    pass


def test_fit_writes_metrics_and_selects_on_validation(tiny_cfg, tmp_path):
    seen = []
    m = fit(tiny_cfg, tmp_path, on_epoch=seen.append)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("val_acc", "val_mean_class_acc", "val_macro_f1", "test_acc", "selected_epoch", "params",
                "images_per_s", "wall_s", "history", "config_hash", "dataset_fingerprint", "git_commit"):
        assert key in on_disk, key
    assert len(m["history"]) == 2 and [e.epoch for e in seen] == [1, 2]
    assert "test_acc" not in seen[0].metrics and "test_acc" in seen[1].metrics  # test once, at the end
    best = max(m["history"], key=lambda r: r["val_acc"])
    assert m["selected_epoch"] == best["epoch"] and m["val_acc"] == best["val_acc"]
    assert sum(map(sum, m["test_confusion"])) == sum(m["split_counts"]["test"])
    meta = json.loads((tmp_path / "checkpoint" / "meta.json").read_text())  # what sweeps keep of a run
    assert meta["test"] == {"per_class_acc": m["test_per_class_acc"], "confusion": m["test_confusion"], "n": m["test_n"]}
    assert (tmp_path / "checkpoint" / "best_model.safetensors").is_file()


def test_resume_equals_uninterrupted(tmp_path):
    cfg = compose_train(*TINY, "trainer.epochs=3", "trainer.deterministic=true")
    full = fit(cfg, tmp_path / "full")

    def stop_after_two(end):
        if end.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(cfg, tmp_path / "cut", on_epoch=stop_after_two)
    assert load_state(tmp_path / "cut" / "checkpoint")["epoch"] == 2
    resumed = fit(cfg, tmp_path / "resumed", resume_from=tmp_path / "cut" / "checkpoint")
    assert [r["train_loss"] for r in resumed["history"]] == pytest.approx([r["train_loss"] for r in full["history"]])
    assert resumed["val_acc"] == full["val_acc"] and resumed["test_acc"] == full["test_acc"]
    a = load_file(str(tmp_path / "full" / "checkpoint" / "best_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoint" / "best_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    cfg = compose_train(*TINY, "optim.lr=1e30", "optim.grad_clip=0", "trainer.epochs=3")
    with pytest.raises(NonFiniteLossError, match="optim.lr"):
        fit(cfg, tmp_path)


@pytest.mark.parametrize("override, key", [
    ("model.attn_variant=sparse", "model.attn_variant"),
    ("model.msc_fractions=[0.5,1.5]", "model.msc_fractions"),
    ("optim.lr=-1", "optim.lr"),
    ("loss.feature=arcface", "loss.feature"),
])
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        compose_train(override)


def test_cli_rejects_bad_values_before_training(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mfer.cli.train", "model.attn_variant=sparse",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "model.attn_variant" in out.stderr and "'ds'" in out.stderr
