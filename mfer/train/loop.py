"""``fit``: one MFER training run, start to finish, with no orchestration framework inside.

The loop: AdamW over model + feature-loss centres, an epoch-level LR schedule, AMP and
channels_last on CUDA, gradient clipping, tensor-side augmentation. Model selection uses the
validation split carved from train; the test split is evaluated once, for the selected epoch,
after the last epoch (fer_pitfalls #2). After every epoch a full-state checkpoint is written
and ``on_epoch`` is called: the sweep platform reports to Ray Tune through that hook, so this
module never imports Ray.
"""
from __future__ import annotations

import contextlib
import json
import math
import resource
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch

from mfer.config import TrainConfig, config_hash, to_dict, validate
from mfer.data.augment import BatchAugment, to_model_input
from mfer.data.batches import epoch_order, iterate_batches
from mfer.data.registry import load_dataset
from mfer.device import resolve_device
from mfer.losses import MFERLoss
from mfer.model import build_model, parameter_breakdown
from mfer.provenance import environment, git_commit
from mfer.train.checkpoint import add_to_meta, load_state, save_checkpoint
from mfer.train.evaluate import evaluate
from mfer.train.schedule import SCHEDULERS, build_scheduler


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf: the run stops instead of producing garbage."""


@dataclass
class EpochEnd:
    """What the per-epoch hook receives."""

    epoch: int  # completed epochs, 1-based
    metrics: dict  # flat scalars: safe to hand to any tracker
    checkpoint_dir: Optional[Path]
    is_last: bool


def autocast_factory(amp: str, device: torch.device) -> tuple[Callable, Optional[torch.dtype]]:
    """A context-manager factory for mixed precision (none on CPU), and the dtype it uses."""
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext, None
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return partial(torch.autocast, device_type="cuda", dtype=dtype), dtype


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63)


def _param_groups(model: torch.nn.Module, criterion: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices/kernels only; not on norms, biases or class centres."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    no_decay += list(criterion.parameters())
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _apply_optim_config(opt: torch.optim.Optimizer, sched, cfg: TrainConfig) -> None:
    """After loading optimizer state, the config's lr and weight decay win over the saved ones.

    For a plain resume they are equal; for PBT's exploit step (another trial's checkpoint with a
    mutated config) this is what makes the mutation take effect.
    """
    sched.base_lrs = [cfg.optim.lr] * len(opt.param_groups)
    factor = SCHEDULERS[cfg.optim.scheduler](cfg.optim, cfg.trainer.epochs)(sched.last_epoch)
    for group in opt.param_groups:
        group["initial_lr"] = cfg.optim.lr
        group["lr"] = cfg.optim.lr * factor
    opt.param_groups[0]["weight_decay"] = cfg.optim.weight_decay  # group 0 is the decayed one


def _weights(model: torch.nn.Module, criterion: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    out.update({f"loss.{k}": v.detach().to("cpu", copy=True) for k, v in criterion.state_dict().items()})
    return out


def _load_weights(model: torch.nn.Module, criterion: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    model.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("model.")})
    criterion.load_state_dict({k[5:]: v for k, v in weights.items() if k.startswith("loss.")})


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def fit(
    cfg: TrainConfig,
    run_dir: str | Path,
    on_epoch: Optional[Callable[[EpochEnd], None]] = None,
    resume_from: Optional[str | Path] = None,
) -> dict:
    """Train, select on validation, test once; write ``run_dir/metrics.json``; return its content."""
    t_start = time.perf_counter()
    cfg = validate(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tc, dc = cfg.trainer, cfg.data
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    device = resolve_device(tc.device)
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not tc.deterministic
    channels_last = tc.channels_last and device.type == "cuda"
    autocast, amp_dtype = autocast_factory(tc.amp, device)

    data = load_dataset(dc)
    k = len(data.classes)
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model, k).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = MFERLoss(cfg.loss, k, model.num_features, dc.ferplus_labels).to(device)
    params = [p for group in _param_groups(model, criterion, cfg.optim.weight_decay) for p in group["params"]]
    opt = torch.optim.AdamW(
        _param_groups(model, criterion, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas)
    )
    sched = build_scheduler(opt, cfg.optim, tc.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    augment = BatchAugment(dc.hflip, dc.random_erasing, tuple(dc.erasing_scale), dc.multires)
    run_eval = partial(evaluate, num_classes=k, batch_size=dc.eval_batch_size, device=device,
                       size=dc.image_size, channels_last=channels_last, autocast=autocast)

    breakdown = parameter_breakdown(model)
    static = {
        "params": breakdown["total"],
        "params_breakdown": breakdown,
        "classes": list(data.classes),
        "split_counts": data.counts(),
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "dataset_fingerprint": data.fingerprint,
        "weights_sha256": model.weights_sha256,
        "git_commit": git_commit(),
        "environment": environment(),
        "device": str(device),
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
    }
    history: list[dict] = []
    best = {"score": -math.inf, "epoch": 0, "val": None}
    best_weights = _weights(model, criterion)
    train_images, train_seconds, start_epoch = 0, 0.0, 0
    if resume_from is not None:
        st = load_state(Path(resume_from))
        model.load_state_dict(st["model"])
        criterion.load_state_dict(st["loss"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st["scaler"])
        _apply_optim_config(opt, sched, cfg)
        start_epoch, history, best = st["epoch"], st["history"], st["best"]
        train_images, train_seconds = st["train_images"], st["train_seconds"]
        from safetensors.torch import load_file

        best_weights = load_file(str(Path(resume_from) / "best_model.safetensors"))

    ckpt_dir = run_dir / "checkpoint"
    train = data.train
    drop_last = len(train) > dc.batch_size
    result: dict = {}
    for epoch in range(start_epoch, tc.epochs):
        is_last = epoch + 1 == tc.epochs
        torch.manual_seed(epoch_seed(tc.seed, epoch))
        model.train()
        criterion.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        steps = seen = 0
        order = epoch_order(train.labels, tc.seed, epoch, shuffle=True, balanced=dc.balanced_sampler)
        batches = iterate_batches(train, dc.batch_size, device, order, drop_last, tc.max_steps_per_epoch)
        for x_u8, y, *soft in batches:  # soft: [(B, K) targets] under FERPlus's vote rules, else []
            x = augment(to_model_input(x_u8, dc.image_size, channels_last))
            with autocast():
                head_logits, feature = model.forward_train(x)
            loss = criterion(head_logits, feature, y, *soft)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.detach()
            steps += 1
            seen += len(y)
        train_loss = (loss_sum / max(steps, 1)).item()  # one host sync per epoch
        epoch_train_s = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(
                f"training loss became {train_loss} in epoch {epoch + 1}; lower optim.lr "
                f"(now {cfg.optim.lr}) or loss.weight (now {cfg.loss.weight}), or enable optim.grad_clip"
            )
        train_images += seen
        train_seconds += epoch_train_s
        lr = opt.param_groups[0]["lr"]
        sched.step()

        val = run_eval(model, data.val)
        score = val[tc.selection_metric.removeprefix("val_")]
        if score > best["score"]:
            best = {"score": score, "epoch": epoch + 1, "val": val}
            best_weights = _weights(model, criterion)
        row = {
            "epoch": epoch + 1, "train_loss": train_loss, "val_acc": val["acc"],
            "val_mean_class_acc": val["mean_class_acc"], "val_macro_f1": val["macro_f1"],
            "val_loss": val["loss"], "val_compactness": val["compactness"], "lr": lr,
            "epoch_s": time.perf_counter() - t0, "train_images_per_s": seen / max(epoch_train_s, 1e-9),
        }
        history.append(row)
        result = {
            **row,
            "selected_epoch": best["epoch"],
            "best_" + tc.selection_metric: best["score"],
            "images_per_s": train_images / max(train_seconds, 1e-9),
            "params": breakdown["total"],
        }
        saved = None
        if is_last or (epoch + 1) % max(1, tc.checkpoint_every) == 0:
            state = {
                "model": model.state_dict(), "loss": criterion.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch + 1,
                "history": history, "best": best, "train_images": train_images, "train_seconds": train_seconds,
            }
            saved = save_checkpoint(ckpt_dir, state, best_weights, {**static, "history": history, "last": result})
        if is_last and tc.evaluate_test:
            _load_weights(model, criterion, best_weights)
            test = run_eval(model, data.test)
            result.update({f"test_{m}": test[m] for m in ("acc", "mean_class_acc", "macro_f1", "loss", "compactness")})
            # The checkpoint carries the test split's per-class view too, so reports need no re-run.
            add_to_meta(saved, {"test": {k2: test[k2] for k2 in ("per_class_acc", "confusion", "n")}})
        if on_epoch is not None:
            on_epoch(EpochEnd(epoch + 1, dict(result), saved, is_last))

    if not history:
        raise RuntimeError(f"nothing to train: the checkpoint already holds {start_epoch} of {tc.epochs} epochs")
    sel = best["val"]
    summary = {
        "val_acc": sel["acc"], "val_mean_class_acc": sel["mean_class_acc"], "val_macro_f1": sel["macro_f1"],
        "val_loss": sel["loss"], "val_compactness": sel.get("compactness"),  # absent from older checkpoints
        "val_per_class_acc": sel["per_class_acc"], "val_confusion": sel["confusion"],
        "selected_epoch": best["epoch"], "epochs_run": len(history),
        "images_per_s": train_images / max(train_seconds, 1e-9),
        "wall_s": time.perf_counter() - t_start, "train_s": train_seconds,
        "peak_memory_mb": _peak_memory_mb(device),
    }
    if tc.evaluate_test:
        summary.update({k2: v for k2, v in result.items() if k2.startswith("test_")})
        summary.update({"test_per_class_acc": test["per_class_acc"], "test_confusion": test["confusion"],
                        "test_n": test["n"]})
    metrics = {**summary, **static, "history": history}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    return metrics
