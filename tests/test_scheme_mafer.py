"""MAFER's two steps as phases of one run (mfer/schemes/mafer.py): multi-resolution input in phase 1 only,
the fine-tune LR factor from the switch epoch on, a resume across the switch equal to the uninterrupted
run, low-resolution accuracies equal to evaluating down-up-sampled images, and bad settings refused."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mfer.config import ConfigError
from mfer.data.arrays import ArraySplit, DatasetBundle
from mfer.schemes import TrainingScheme
from mfer.train import fit
from mfer.train.build import build_run

from .conftest import TINY, compose_train, fit_keeping

MAFER = (*TINY, "scheme=mafer", "scheme.mafer.eval_resolutions=[8]")


def test_multires_input_in_phase_one_only():
    """Under one seed the model input equals the standard scheme's from the switch epoch on, and
    differs from it before: multires runs in phase 1 only, ahead of the configured flip/erasing."""
    run = build_run(compose_train(*MAFER, "trainer.epochs=4", "scheme.mafer.multires_epochs=2"))
    x_u8 = torch.from_numpy(run.data.train.take(np.arange(16)))
    same = []
    for epoch in range(4):
        run.scheme.start_epoch(epoch)
        torch.manual_seed(7)
        ours = run.scheme.model_input(run, x_u8)
        torch.manual_seed(7)
        plain = TrainingScheme.model_input(run.scheme, run, x_u8)
        same.append(torch.equal(ours, plain))
    assert same == [False, False, True, True]
    assert [run.scheme.lr_multiplier(e) for e in range(4)] == [1.0, 1.0, 0.1, 0.1]


def test_phase_switch_and_resume_across_it(tmp_path):
    """Phase and LR factor switch at scheme.mafer.multires_epochs; a run resumed from the checkpoint
    taken just before the switch trains the fine-tune epoch at the fine-tune LR, as the uninterrupted one."""
    cfg = compose_train(*MAFER, "trainer.epochs=3", "trainer.max_steps_per_epoch=2", "trainer.checkpoint_every=1",
                        "trainer.checkpoint_every_s=0", "scheme.mafer.multires_epochs=2",
                        "scheme.mafer.finetune_lr_factor=0.25")
    full, kept = fit_keeping(cfg, tmp_path, epochs=(2,))  # the checkpoint before the switch
    o = cfg.optim
    assert [h["scheme_phase"] for h in full["history"]] == [1.0, 1.0, 2.0]
    assert [h["lr"] for h in full["history"]] == pytest.approx([o.lr, o.lr * o.gamma, o.lr * o.gamma**2 * 0.25])

    resumed = fit(cfg, tmp_path / "resumed", resume_from=kept[2])
    keys = ("epoch", "lr", "scheme_phase", "train_loss", "val_acc", "val_loss", "val_acc_r8")
    assert [{k: h[k] for k in keys} for h in resumed["history"]] == [{k: h[k] for k in keys} for h in full["history"]]
    assert (resumed["test_acc"], resumed["test_acc_r8"]) == (full["test_acc"], full["test_acc_r8"])


class HighFrequency(nn.Module):
    """A hand-made classifier: "detailed" (class 1) when the mean absolute difference between
    horizontally adjacent input values exceeds a threshold, else "flat" (class 0)."""

    threshold = 0.1  # normalised units: a flat image scores 0, an 8 px 0/255 checkerboard ~0.4, a 1 px one ~4.4

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3))[:, None]

    def classify(self, detail: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.threshold - detail, detail - self.threshold], 1)


def checkerboard(cell: int, size: int = 32) -> np.ndarray:
    ij = np.indices((size, size)) // cell
    return np.repeat((((ij[0] + ij[1]) % 2) * 255).astype(np.uint8)[..., None], 3, -1)


def pil_down_up(image: np.ndarray, r: int) -> np.ndarray:
    """What the released code does to an evaluation image (datasets/affwild2.py: PIL BILINEAR down to
    ``valid_resolution`` and back up), independently of our tensor implementation."""
    small = Image.fromarray(image).resize((r, r), Image.BILINEAR)
    return np.asarray(small.resize(image.shape[:2][::-1], Image.BILINEAR))


def test_low_resolution_accuracy_equals_evaluating_down_up_sampled_images():
    """Flat images (class 0) and 1 px and 8 px checkerboards (class 1): at full resolution all are told
    apart; down to 16 or 8 px and back, the 1 px boards blur flat and are lost, the 8 px ones survive —
    2/3 correct, the same figure as evaluating the PIL-down-up-sampled images directly."""
    flat = [np.full((32, 32, 3), v, np.uint8) for v in (30, 90, 160, 220)]
    images = np.stack([*flat, *[checkerboard(1)] * 4, *[checkerboard(8)] * 4])
    split = ArraySplit(images, np.array([0] * 4 + [1] * 8))
    cfg = compose_train(*TINY, "scheme=mafer", "scheme.mafer.eval_resolutions=[8,16]", "data.eval_batch_size=5")
    run = build_run(cfg, DatasetBundle(split, split, split, ("flat", "detailed"), "hand-made"))
    run = dataclasses.replace(run, model=HighFrequency())

    assert run.evaluate(split)["acc"] == 1.0
    extra = run.scheme.evaluate_extra(run, split)
    assert extra == {"acc_r8": pytest.approx(8 / 12), "acc_r16": pytest.approx(8 / 12)}
    for r in (8, 16):
        direct = ArraySplit(np.stack([pil_down_up(im, r) for im in images]), split.labels)
        assert run.evaluate(direct)["acc"] == extra[f"acc_r{r}"]


def test_smoke_fit_reports_phases_and_low_resolution_figures(tmp_path):
    """trainer=smoke on synthetic data: half the run multi-resolution by default, the phase per epoch,
    val_acc_r*/test_acc_r* beside the standard figures in metrics.json and the final meta.json."""
    metrics = fit(compose_train(*MAFER, "trainer=smoke", "trainer.device=cpu"), tmp_path)
    assert [h["scheme_phase"] for h in metrics["history"]] == [1.0, 2.0]
    assert all(0.0 <= h["val_acc_r8"] <= 1.0 for h in metrics["history"])
    assert 0.0 <= metrics["test_acc_r8"] <= 1.0
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["test_acc_r8"] == metrics["test_acc_r8"]
    meta = json.loads(next((tmp_path / "checkpoints").glob("epoch_*/meta.json")).read_text())
    assert meta["test"]["extra"] == {"acc_r8": metrics["test_acc_r8"]}


@pytest.mark.parametrize("override, key", [
    ("scheme.mafer.multires_epochs=3", r"scheme\.mafer\.multires_epochs=3: must lie in \[0, trainer\.epochs=2\]"),
    ("scheme.mafer.multires_epochs=-1", r"scheme\.mafer\.multires_epochs=-1"),
    ("scheme.mafer.finetune_lr_factor=0", r"scheme\.mafer\.finetune_lr_factor=0\.0: must be > 0"),
    ("scheme.mafer.eval_resolutions=[4]", r"scheme\.mafer\.eval_resolutions=\[4\]: .*\[8, data\.image_size=32\)"),
    ("scheme.mafer.eval_resolutions=[32]", r"scheme\.mafer\.eval_resolutions=\[32\]"),
    ("scheme.mafer.eval_resolutions=[8,8]", r"scheme\.mafer\.eval_resolutions=\[8, 8\]: resolutions must not repeat"),
    ("data.multires=true", r"data\.multires=True: .*set data\.multires=false"),
])
def test_bad_settings_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        compose_train(*MAFER, override)
