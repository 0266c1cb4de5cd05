"""GPU knobs, tested on the CPU where they can be: fused AdamW's selection and its portability
across devices on resume, mixed-precision dtype choice, and trainer.compile."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from mfer.train import fit
from mfer.train.build import autocast_factory, build_run, maybe_compile, optimizer_kwargs
from mfer.train.checkpoint import latest_checkpoint, match_optimizer_to_device

from .conftest import TINY, compose_train


@pytest.mark.parametrize("device, kwargs", [("cuda", {"fused": True}), ("cuda:1", {"fused": True}), ("cpu", {})])
def test_fused_adamw_is_chosen_on_cuda_only(device, kwargs):
    assert optimizer_kwargs(torch.device(device)) == kwargs


def test_a_cpu_run_builds_the_default_adamw_and_no_compiled_forward(tiny_cfg):
    run = build_run(tiny_cfg)
    assert isinstance(run.optimizer, torch.optim.AdamW) and not run.optimizer.defaults["fused"]
    assert run.compiled_forward is None and maybe_compile(run.model, tiny_cfg.trainer) is None


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("off", None)])
def test_mixed_precision_dtype_on_cuda_and_none_on_cpu(amp, dtype):
    assert autocast_factory(amp, torch.device("cuda"))[1] == dtype  # a factory only: no GPU needed
    assert autocast_factory(amp, torch.device("cpu"))[1] is None


def _stepped(fused: bool) -> tuple[list[torch.nn.Parameter], torch.optim.AdamW]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    opt = torch.optim.AdamW(params, lr=0.1, fused=fused or None)
    for _ in range(2):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    return params, opt


@pytest.mark.parametrize("saved_fused, now_fused", [(True, False), (False, True)])
def test_resumed_optimizer_state_takes_this_runs_implementation(saved_fused, now_fused):
    """A checkpoint from a fused (GPU) run resumes on a default (CPU) one and vice versa: the flags
    are the new optimizer's, and the next step matches the uninterrupted one."""
    _, saved = _stepped(saved_fused)
    params, reference = _stepped(now_fused)
    fresh = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = torch.optim.AdamW(fresh, lr=0.1, fused=now_fused or None)
    opt.load_state_dict(saved.state_dict())
    match_optimizer_to_device(opt)
    assert bool(opt.param_groups[0]["fused"]) == now_fused
    assert all(opt.state[p]["step"].dtype == torch.float32 for p in fresh)
    for group in (params, fresh):
        for p in group:
            p.grad = torch.ones_like(p)
    reference.step()
    opt.step()
    for a, b in zip(params, fresh):
        torch.testing.assert_close(a, b)


def test_compile_trains_and_keeps_checkpoint_names_plain(tmp_path, monkeypatch):
    """trainer.compile=true through fit. Inductor takes minutes to build its CPU kernels here, so
    the test compiles with the aot_eager backend: the same Dynamo capture and AOT autograd."""
    calls = []
    real_compile = torch.compile

    def aot_eager(fn, **kw):
        calls.append(fn)
        return real_compile(fn, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", aot_eager)
    cfg = compose_train(*TINY, "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "trainer.compile=true")
    m = fit(cfg, tmp_path)
    assert len(calls) == 1 and calls[0].__name__ == "forward_train"  # the training forward, not the module
    assert math.isfinite(m["history"][0]["train_loss"]) and m["test_acc"] >= 0
    ckpt = latest_checkpoint(tmp_path)
    names = list(load_file(str(ckpt / "best_model.safetensors")))
    assert names and not any("_orig_mod" in n for n in names)
    build_run(compose_train(*TINY)).model.load_state_dict(
        {k[6:]: v for k, v in load_file(str(ckpt / "best_model.safetensors")).items() if k.startswith("model.")})
    assert json.loads((ckpt / "meta.json").read_text())["config"]["trainer"]["compile"] is True
