"""Any timm backbone behind one feature contract: ResNet and ViT train end to end like ConvNeXt, the
contract's maps are timm's own, ConvNeXt keeps MFER's exact walk, and ViT refuses stage attention."""
from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys

import pytest
import timm
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed

from mfer.config import ConfigError, ModelConfig
from mfer.data.registry import load_dataset
from mfer.model import build_model
from mfer.model.backbone import FeatureContract, create_backbone, load_named_weights
from mfer.train import fit
from mfer.train.checkpoint import BEST
from mfer.train.evaluate import evaluate
from mfer_platform.report.figures.gradcam import cam_layers
from mfer_platform.sweep.cost import forward_flop

from .conftest import TINY, compose_train
from .hub_cache import build_hub_cache

VIT = "vit_tiny_patch16_224"


@pytest.mark.parametrize("name", ["convnext_atto", "resnet18", "resnet50", VIT])
def test_contract_stages_are_timm_feature_info_and_maps_have_their_widths(name):
    size = 64
    backbone = create_backbone(name, 0.0, size).eval()
    contract = FeatureContract(backbone)
    info = [f for f in backbone.feature_info if f["reduction"] >= 4]  # ResNet's stride-2 stem tap is no stage
    assert [(s.module, s.channels, s.reduction) for s in contract.stages] == [
        (f["module"], f["num_chs"], f["reduction"]) for f in info]
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        f = contract.forward(x, keep=[s.name for s in contract.stages])
        pooled = contract.pool(f.final)
        reference = backbone(x)  # timm's own forward without classifier: the pooled pre-logits feature
    for s in contract.stages:
        assert f.stages[s.name].shape == (2, s.channels, size // s.reduction, size // s.reduction), s
    assert f.map.shape[1] == contract.num_features == pooled.shape[1]
    torch.testing.assert_close(pooled, reference)
    assert contract.hierarchical == (name != VIT)


def test_vit_map_is_the_final_norm_patch_tokens_on_the_grid_class_token_dropped():
    backbone = create_backbone(VIT, 0.0, 64).eval()
    contract = FeatureContract(backbone)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f = contract.forward(x)
        tokens = backbone.forward_features(x)  # (B, 1 + 16, 192): class token first, then the 4x4 grid
    assert backbone.pos_embed.shape[1] == 1 + 16  # built for 64 px, not 224
    grid = tokens[:, 1:].reshape(2, 4, 4, 192)
    torch.testing.assert_close(f.map[:, :, 1, 2], grid[:, 1, 2])  # row 1, column 2 of the patch grid
    torch.testing.assert_close(contract.pool(f.final), tokens[:, 0])  # ViT pools its class token


def test_convnext_keeps_mfers_stem_stages_attention_norm_walk():
    """The contract's one forward_intermediates pass with attention hooks equals MFER's explicit walk."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(), 7).eval()
    bb, x = model.backbone, torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h, walked = bb.stem(x), {}
        for i, stage in enumerate(bb.stages, start=1):
            h = stage.blocks(stage.downsample(h))  # ConvNeXtStage.forward, without the model's attention hook
            h = model.attn[str(i)](h) if str(i) in model.attn else h
            walked[f"stage{i}"] = h
        fmap, maps = model.feature_maps(x, ["stage2", "stage3", "stage4"])
        out = model.forward_train(x)
    assert list(model.attn) == ["3", "4"]
    torch.testing.assert_close(fmap, bb.norm_pre(h))
    for name in maps:
        torch.testing.assert_close(maps[name], walked[name])
    torch.testing.assert_close(out.feature, bb.forward_head(bb.norm_pre(h), pre_logits=True))


def test_attention_defaults_follow_the_backbone_and_vit_refuses_stage_attention():
    assert compose_train(*TINY).model.attn_stages == [3, 4]
    assert compose_train(*TINY, "model.backbone=resnet18").model.attn_stages == [3, 4]
    vit = compose_train(*TINY, f"model.backbone={VIT}")
    assert vit.model.attn_stages == [] and len(build_model(vit.model, 7, 32).attn) == 0
    with pytest.raises(ConfigError) as e:
        compose_train(*TINY, f"model.backbone={VIT}", "model.attn_stages=[3]")
    msg = str(e.value)
    assert "\n" not in msg and "model.attn_stages=[3]" in msg and "not hierarchical" in msg
    assert "model.attn_stages=[]" in msg  # the fix
    with pytest.raises(ConfigError, match=r"model.attn_stages\[\]=5 .* stages 1 … 4"):
        compose_train(*TINY, "model.backbone=resnet18", "model.attn_stages=[5]")
    compose_train(*TINY, f"model.backbone={VIT}", "model.attn_stages=[3]", "model.attn_variant=none")  # nothing asked


@pytest.mark.parametrize("name, extra", [("resnet18", ()), ("resnet50", ("model.attn_groups=0",)),
                                         (VIT, ("data.image_size=64",))])
def test_backbone_trains_with_attention_and_msc_and_its_checkpoint_reloads(name, extra, tmp_path):
    cfg = compose_train(*TINY, "trainer=smoke", f"model.backbone={name}", *extra)
    m = fit(cfg, tmp_path)
    losses = [r["train_loss"] for r in m["history"]]
    assert all(math.isfinite(v) for v in losses) and math.isfinite(m["val_acc"]) and math.isfinite(m["test_acc"])
    data = load_dataset(cfg.data)
    model = build_model(cfg.model, len(data.classes), cfg.data.image_size).eval()
    best = load_file(str(next(tmp_path.glob(f"checkpoints/*/{BEST}"))))
    model.load_state_dict({k[6:]: v for k, v in best.items() if k.startswith("model.")})  # strict: every key fits
    again = evaluate(model, data.test, len(data.classes), 64, torch.device("cpu"), cfg.data.image_size, False,
                     contextlib.nullcontext)
    assert again["acc"] == pytest.approx(m["test_acc"])  # the reloaded selected model is the one tested
    assert len(model.head.heads) == 3 and len(model.attn) == (0 if name == VIT else 2)


def test_mfer_train_cli_trains_a_vit_at_64_px(tmp_path):
    args = ["trainer=smoke", "data=synthetic", "data.image_size=64", "data.synthetic_train=140",
            "data.synthetic_test=70", "data.batch_size=16", "trainer.device=cpu", f"model.backbone={VIT}",
            f"hydra.run.dir={tmp_path / 'run'}"]
    out = subprocess.run([sys.executable, "-m", "mfer.cli.train", *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["model"]["attn_stages"] == [] and math.isfinite(metrics["test_acc"])
    assert metrics["config"]["model"]["backbone"] == VIT and metrics["config"]["data"]["image_size"] == 64


def test_named_vit_weights_are_resampled_to_the_configured_size_by_timms_filter(tmp_path):
    name = f"{VIT}.augreg_in21k_ft_in1k"
    path = build_hub_cache(tmp_path, name, seed=4)
    backbone = create_backbone(VIT, 0.0, 64)
    load_named_weights(backbone, name, path)
    saved = load_file(str(path))
    assert torch.equal(backbone.blocks[3].attn.qkv.weight, saved["blocks.3.attn.qkv.weight"])
    expected = resample_abs_pos_embed(saved["pos_embed"], (4, 4), num_prefix_tokens=1)  # 14x14 grid -> 4x4
    torch.testing.assert_close(backbone.pos_embed, expected)


def test_gradcam_on_a_vit_explains_the_patch_grid():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=VIT, msc_fractions=[]), 7, 64).eval()
    layers = cam_layers(model)
    assert list(layers) == ["stage12"] and layers["stage12"].module is model.backbone.blocks[11].norm1
    x = torch.randn(2, 3, 64, 64)
    with GradCAM(model=model, target_layers=[layers["stage12"].module], reshape_transform=layers["stage12"].reshape) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(1)])
    assert maps.shape == (2, 64, 64) and maps.std() > 0  # patch tokens do reach the class token's logit


def test_flops_are_counted_for_any_backbone_at_its_size():
    paper = forward_flop(ModelConfig(backbone="convnext_base", drop_path_rate=0.25), 224)
    assert paper == pytest.approx(41.04e9, rel=1e-3)  # model=mfer_paper, as the cost model documents
    bare = timm.create_model("resnet18", num_classes=0)
    with torch.device("meta"), torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        bare.to("meta")(torch.empty(1, 3, 64, 64))
    assert forward_flop(ModelConfig(backbone="resnet18", attn_variant="none", msc_fractions=[]), 64) == \
        pytest.approx(counter.get_total_flops() + 2 * 512 * 7, rel=1e-6)  # + the linear head's MACs x 2
    assert forward_flop(ModelConfig(backbone=VIT), 64) < forward_flop(ModelConfig(backbone=VIT), 224) / 10
