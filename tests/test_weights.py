"""Initial weights: timm names from an offline hub cache (fast, and at paper scale), the download hint when
the cache is empty and there is no network, every checkpoint layout FER researchers hold, the released
attention init, and the weights never reaching export or prediction."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hub_constants
from safetensors.torch import load_file, save_file

from mfer.config import ConfigError, ModelConfig
from mfer.model import build_model
from mfer.model import hub
from mfer.model.attention import DSAttention
from mfer.model.backbone import WeightsError
from mfer.model.hub import HubUnavailable, weights_file

from .conftest import compose_train
from .hub_cache import build_hub_cache, hub_env

ATTO = "convnext_atto.d2_in1k"
SMOKE = ["trainer=smoke", "data=synthetic", "data.image_size=32", "data.synthetic_train=140", "data.synthetic_test=70",
         "data.batch_size=16", "trainer.device=cpu"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mfer_train(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mfer.cli.train", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture
def hub_home(tmp_path, monkeypatch):
    """In-process hub settings pointed at an empty cache under tmp_path, offline."""
    home = tmp_path / "hf"
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(home))
    hub._resolve.cache_clear()
    yield home
    hub._resolve.cache_clear()


def test_named_weights_load_from_the_hub_cache_classifier_dropped(hub_home):
    cached = build_hub_cache(hub_home, ATTO, seed=3)
    model = build_model(ModelConfig(pretrained=ATTO), 7)
    source = load_file(str(cached))
    mine = model.backbone.state_dict()
    assert set(mine) == set(source) - {"head.fc.weight", "head.fc.bias"}
    assert all(torch.equal(mine[k], source[k]) for k in mine)
    assert model.weights_sha256 == sha256(cached)


def test_cli_trains_from_a_populated_hub_cache_offline(tmp_path):
    """mfer-train model.pretrained=convnext_atto.d2_in1k trainer=smoke, HF_HUB_OFFLINE=1."""
    cached = build_hub_cache(tmp_path / "hf", ATTO)
    out = mfer_train([f"model.pretrained={ATTO}", *SMOKE, f"hydra.run.dir={tmp_path / 'run'}"],
                     hub_env(dict(os.environ), tmp_path / "hf"), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["weights_sha256"] == sha256(cached) and metrics["config"]["model"]["pretrained"] == ATTO


@pytest.mark.parametrize("endpoint", [None, "closed_port"])
def test_empty_cache_without_network_stops_at_once_with_the_download_command(hub_home, monkeypatch, endpoint):
    if endpoint:  # online mode, but the endpoint refuses connections: the probe fails, no retries
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        monkeypatch.setattr(hub_constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.delenv(var, raising=False)
    t0 = time.perf_counter()
    with pytest.raises(HubUnavailable) as e:
        weights_file(ATTO)
    assert time.perf_counter() - t0 < hub.PROBE_TIMEOUT_S + 1  # huggingface_hub's own retries take ~25 s
    message = str(e.value)
    assert f"hf download timm/{ATTO} model.safetensors" in message and "model.pretrained_file=PATH" in message
    assert f"HF_HOME={hub_home}" in message and str(hub_home / "hub") in message


def test_cli_with_an_empty_cache_exits_with_the_hint_before_any_data(tmp_path, hub_home, cli):
    out = cli("mfer.cli.train", f"model.pretrained={ATTO}", *SMOKE, f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2 and f"hf download timm/{ATTO}" in out.stderr, out.stderr[-2000:]
    assert "packing" not in out.stdout + out.stderr and not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_paper_preset_loads_imagenet_convnext_base_by_name(tmp_path):
    """experiment=paper_rafdb names convnext_base.fb_in22k_ft_in1k; at 32 px, batch 8 it trains on CPU
    (one step of one epoch: what is checked is the weights loaded by name, not the learning)."""
    name = "convnext_base.fb_in22k_ft_in1k"
    cached = build_hub_cache(tmp_path / "hf", name)
    args = ["experiment=paper_rafdb", *SMOKE, "data.batch_size=8", "data.synthetic_train=70",
            "data.synthetic_test=35", "model.attn_groups=0", "trainer.epochs=1", "trainer.max_steps_per_epoch=1",
            f"hydra.run.dir={tmp_path / 'run'}"]
    out = mfer_train(args, hub_env(dict(os.environ), tmp_path / "hf"), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["weights_sha256"] == sha256(cached)
    assert (metrics["config"]["model"]["backbone"], metrics["config"]["model"]["pretrained"]) == ("convnext_base", name)
    empty = mfer_train(args, hub_env(dict(os.environ), tmp_path / "empty"), tmp_path)
    assert empty.returncode == 2 and f"hf download timm/{name}" in empty.stderr, empty.stderr[-2000:]


@pytest.mark.parametrize("overrides, words", [
    (["model.backbone=convnext_base.fb_in22k_ft_in1k"], "model.backbone=convnext_base model.pretrained=convnext_base"),
    ([f"model.pretrained={ATTO}", "model.pretrained_file=w.pth"], "both set"),
    (["model.pretrained=convnext_atto.in22k"], "timm has no such pretrained weights"),
    (["model.pretrained=convnext_base.fb_in22k_ft_in1k"], "set model.backbone=convnext_base"),
])
def test_bad_weight_names_fail_at_start_naming_the_fix(overrides, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        compose_train(*overrides)


def test_scale_smoke_and_exports_never_reach_for_the_hub(hub_home, tmp_path):
    """scale=smoke clears the paper recipe's weights; a trial checkpoint trained from named weights is read
    back (for export, figures, prediction) with them cleared: the hub cache here is empty and offline."""
    import pandas as pd
    import yaml

    from mfer.config import to_dict
    from mfer_platform.results.checkpoints import read_checkpoint

    smoke = yaml.safe_load(Path(__file__).parents[1].joinpath("mfer_platform/conf/scale/smoke.yaml").read_text())
    cfg = compose_train("experiment=paper_rafdb", "data.root=/data/RAF-DB", *smoke["overrides"])
    assert cfg.model.pretrained is None and cfg.model.backbone == "convnext_atto"
    trained = build_model(cfg.model, 7)
    cfg.model.pretrained = ATTO
    ckpt = tmp_path / "sweeps" / "exp" / "trial_0" / "checkpoint_0001"
    ckpt.mkdir(parents=True)
    save_file({f"model.{k}": v for k, v in trained.state_dict().items()}, str(ckpt / "best_model.safetensors"))
    (ckpt / "meta.json").write_text(json.dumps({"config": to_dict(cfg), "classes": list("abcdefg")}))
    trial = pd.Series({"experiment": "exp", "checkpoint": "trial_0/checkpoint_0001", "trial_id": "t0"})
    read = read_checkpoint(str(tmp_path / "sweeps"), trial)
    assert read.cfg.model.pretrained is None and read.pretrained_file == ATTO and _same(read.model, trained)


# --- local checkpoint files -------------------------------------------------------------------------------

def _cfg(**kw) -> ModelConfig:
    return ModelConfig(backbone="convnext_atto", **kw)


def _model(seed: int, **kw):
    torch.manual_seed(seed)
    return build_model(_cfg(**kw), 7)


def _meta_keys(timm_sd: dict) -> dict:
    """timm ConvNeXt keys in Meta's original layout (facebookresearch/ConvNeXt), as MFER's model.py names them."""
    out = {}
    for k, v in timm_sd.items():
        k = k.replace("stem.", "downsample_layers.0.").replace("head.norm.", "norm.")
        k = re.sub(r"stages\.(\d)\.downsample\.(\d)", r"downsample_layers.\1.\2", k)
        k = re.sub(r"stages\.(\d)\.blocks\.(\d+)", r"stages.\1.\2", k)
        out[k.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")] = v
    return out


def _mfer_attention_keys(model) -> dict:
    """This model's DS attention under XuJ1E/MFER model.py's names: the block after each stage's last."""
    names = {"k": "key", "v": "value", "q_conv": "attn", "q_norm": "norm"}
    depths = [len(s.blocks) for s in model.backbone.stages]
    out = {}
    for k, v in model.attn.state_dict().items():
        stage, part, rest = k.split(".", 2)
        out[f"stages.{int(stage) - 1}.{depths[int(stage) - 1]}.{names[part]}.{rest}"] = v
    return out


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def source():
    return _model(seed=1)


@pytest.mark.parametrize("wrap", ["plain", "module.", "model.", "backbone.", "state_dict", "model", "model_state",
                                  "module"])
def test_timm_checkpoints_load_under_every_known_wrapper(source, tmp_path, wrap):
    sd = {k: v for k, v in source.backbone.state_dict().items()}
    if wrap.endswith("."):
        sd = {wrap + k: v for k, v in sd.items()}
    path = tmp_path / "w.pth"
    torch.save(sd if wrap == "plain" or wrap.endswith(".") else {wrap: sd, "epoch": 7}, path)
    model = build_model(_cfg(pretrained_file=str(path)), 7)
    assert _same(model.backbone, source.backbone) and model.weights_sha256 == sha256(path)


def test_mfer_train_py_checkpoint_loads_backbone_and_attention(source, tmp_path):
    """MFER's train.py saves {'iter', 'model_state_dict', 'optimizer_state_dict'}: Meta ConvNeXt keys
    with the DS attention appended to stages 3 and 4 (XuJ1E/MFER train.py, model.py)."""
    state = {**_meta_keys(source.backbone.state_dict()), **_mfer_attention_keys(source)}
    path = tmp_path / "rafdb_epoch12_acc0.9211.pth"
    torch.save({"iter": 12, "model_state_dict": state,
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}}, path)
    model = build_model(_cfg(pretrained_file=str(path)), 7)
    assert _same(model.backbone, source.backbone) and _same(model.attn, source.attn)
    assert not _same(model.head, source.head)  # MFER's train.py keeps its Msc heads out of the file


def test_faer_net_checkpoint_with_extra_keys(source, tmp_path, caplog):
    """FAER/MFTN-FER pretrain files: a timm ConvNeXt under 'net.', beside a classifier and FAER's attention
    after stage 4 (XUJ1Er/FAER models/convnext.py); the attention lands where its shapes fit."""
    faer = _model(seed=2, attn_stages=[4], attn_groups=4, attn_k_gate="pooled")
    names = {"k": "mlp", "v": "value", "q_conv": "depthwise", "q_norm": "norm"}
    attention = {f"attention.{names[k.split('.')[1]]}.{k.split('.', 2)[2]}": v for k, v in faer.attn.state_dict().items()}
    sd = {**{f"net.{k}": v for k, v in faer.backbone.state_dict().items()}, **attention,
          "net.head.fc.weight": torch.zeros(1000, 320), "fc.weight": torch.zeros(7, 320), "fc.bias": torch.zeros(7)}
    path = tmp_path / "convnext_base.pth"
    torch.save({"state_dict": sd}, path)
    loaded = build_model(_cfg(pretrained_file=str(path), attn_stages=[4], attn_groups=4, attn_k_gate="pooled"), 7)
    assert _same(loaded.backbone, faer.backbone) and _same(loaded.attn, faer.attn)
    with caplog.at_level(logging.WARNING, logger="mfer.model.weights"):
        mismatched = build_model(_cfg(pretrained_file=str(path), attn_groups=1), 7)  # dense conv: no fit
    assert _same(mismatched.backbone, faer.backbone)
    assert "attn.4 not loaded (attn.4.q_conv.weight: (320, 80, 7, 7) in the file, (320, 320, 7, 7)" in caplog.text
    assert "fc.weight (class layer" in caplog.text


def test_unknown_keys_are_refused_in_one_error_naming_the_file(source, tmp_path):
    sd = {**{f"net.{k}": v for k, v in source.backbone.state_dict().items()},
          "projector.0.weight": torch.zeros(3, 3), "centers": torch.zeros(7, 320)}
    path = tmp_path / "ssl.safetensors"
    save_file(sd, str(path))
    with pytest.raises(WeightsError) as e:
        build_model(_cfg(pretrained_file=str(path)), 7)
    assert str(path) in str(e.value) and "2 key(s) of no known layout: centers, projector.0.weight" in str(e.value)


def test_a_checkpoint_of_another_backbone_size_fails_loudly(tmp_path):
    path = tmp_path / "femto.safetensors"
    torch.manual_seed(0)
    save_file(build_model(ModelConfig(backbone="convnext_femto"), 7).backbone.state_dict(), str(path))
    with pytest.raises(WeightsError, match=r"femto.safetensors: does not match model.backbone=convnext_atto"):
        build_model(_cfg(pretrained_file=str(path)), 7)


def test_attention_starts_as_the_released_code_initialises_it():
    """trunc_normal_(std=0.02) weights and zero biases on every Linear and Conv2d, LayerNorm at (1, 0):
    PyTorch's own default would give the 7x7 conv a std of ~0.004 and non-zero biases."""
    torch.manual_seed(0)
    block = DSAttention(512, kernel_size=7)
    for name, p in block.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        elif "q_norm" in name:
            assert torch.equal(p, torch.ones_like(p)), name
        else:
            assert abs(p.std().item() - 0.02) < 0.001 and p.abs().max() < 0.2, name
