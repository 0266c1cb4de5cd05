"""The build step: everything one training run works with, made once from a validated TrainConfig.

``build_run`` sets torch up (threads, determinism, device, mixed precision), loads the dataset
and builds model, criterion, training scheme, optimizer, LR schedule, grad scaler and batch augmentation, in a
fixed order under a fixed seed, so two builds of one config start from identical weights. The
``TrainingRun`` it returns is what the engine (``train_one_epoch``), evaluation and checkpoints
take, instead of a dozen loose arguments; it also holds the run's static provenance, the part of
every artefact that does not change from epoch to epoch.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import torch
from torch import nn

from mfer.config import TrainConfig, TrainerConfig, config_hash, to_dict
from mfer.data.arrays import ArraySplit, DatasetBundle
from mfer.data.augment import BatchAugment
from mfer.data.registry import load_dataset
from mfer.device import resolve_device
from mfer.losses import MFERLoss
from mfer.model import build_model, parameter_breakdown
from mfer.model.output import ModelOutput
from mfer.provenance import environment, git_commit
from mfer.schedule import build_lr_schedule
from mfer.schemes import TrainingScheme, build_scheme
from mfer.train.evaluate import InputTransform, evaluate


@dataclass
class TrainingRun:
    cfg: TrainConfig
    data: DatasetBundle
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]  # mixed precision, or a null context
    amp_dtype: Optional[torch.dtype]
    channels_last: bool
    model: nn.Module
    criterion: nn.Module  # owns the feature loss's class centres, optimised with the model
    scheme: TrainingScheme  # how a batch becomes a loss (mfer.schemes); its parameters are optimised too
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    augment: BatchAugment
    params: list[nn.Parameter]  # model + criterion + scheme parameters: what gradient clipping bounds
    static: dict  # provenance and sizes, identical in every epoch's metrics and checkpoint
    # ``torch.compile``d ``model.forward_train`` (trainer.compile), else None: eager. Only the
    # training forward is compiled; ``model`` stays the plain module, so evaluation, state dicts
    # and checkpoints keep unprefixed names.
    compiled_forward: Optional[Callable[..., ModelOutput]] = None

    def forward_train(self, x: torch.Tensor, targets: Optional[torch.Tensor] = None) -> ModelOutput:
        """The training forward: the compiled one when there is one. ``targets`` reach the model for
        the method plug-ins whose own losses need labels (DAN's affinity, FDRL's distribution)."""
        return (self.compiled_forward or self.model.forward_train)(x, targets=targets)

    def evaluate(self, split: ArraySplit, transform: InputTransform = None) -> dict:
        """Metrics of the current weights on ``split`` (``mfer.train.evaluate.evaluate``), the model
        input passed through ``transform`` first when one is given (a scheme's degraded evaluation)."""
        d = self.cfg.data
        return evaluate(self.model, split, len(self.data.classes), d.eval_batch_size, self.device, d.image_size,
                        self.channels_last, self.autocast, transform)


def autocast_factory(amp: str, device: torch.device) -> tuple[Callable, Optional[torch.dtype]]:
    """A context-manager factory for mixed precision (none on CPU), and the dtype it uses."""
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext, None
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return partial(torch.autocast, device_type="cuda", dtype=dtype), dtype


def configure_torch(tc: TrainerConfig) -> torch.device:
    """Process-wide torch settings of the run (threads, determinism, cuDNN autotuning); its device."""
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    device = resolve_device(tc.device)
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not tc.deterministic
    return device


def optimizer_kwargs(device: torch.device) -> dict:
    """AdamW's implementation for ``device``: the fused kernel on CUDA (one launch per step for
    all parameters), torch's default elsewhere."""
    return {"fused": True} if device.type == "cuda" else {}


def maybe_compile(model: nn.Module, tc: TrainerConfig) -> Optional[Callable[[torch.Tensor], ModelOutput]]:
    """``torch.compile(model.forward_train)`` when ``trainer.compile`` is set, else None (eager).

    The bound method is compiled, not the module, so ``model.state_dict()`` keeps its names (no
    ``_orig_mod.`` prefix) and checkpoints load into an eager model. Compilation happens lazily, at
    the first training step."""
    return torch.compile(model.forward_train) if tc.compile else None


def param_groups(model: nn.Module, criterion: nn.Module, weight_decay: float,
                 scheme: Optional[nn.Module] = None) -> list[dict]:
    """Weight decay on weight matrices/kernels only (the model's and a scheme's own branch); not on
    norms, biases or class centres."""
    decay, no_decay = [], []
    for p in [*model.parameters(), *(scheme.parameters() if scheme is not None else ())]:
        (decay if p.ndim >= 2 else no_decay).append(p)
    no_decay += list(criterion.parameters())
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def static_provenance(cfg: TrainConfig, data: DatasetBundle, model: nn.Module, device: torch.device,
               amp_dtype: Optional[torch.dtype]) -> dict:
    """Where the run's results come from: config, dataset, weights, code, environment, hardware."""
    breakdown = parameter_breakdown(model)
    return {
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


def build_run(cfg: TrainConfig, data: Optional[DatasetBundle] = None) -> TrainingRun:
    """Everything ``cfg`` trains with. ``data`` defaults to ``cfg.data``'s dataset; the trainer
    benchmark passes its own in-memory batch instead."""
    tc, dc = cfg.trainer, cfg.data
    device = configure_torch(tc)
    channels_last = tc.channels_last and device.type == "cuda"
    autocast, amp_dtype = autocast_factory(tc.amp, device)
    data = load_dataset(dc) if data is None else data
    k = len(data.classes)
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model, k, dc.image_size).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = MFERLoss(cfg.loss, k, model.num_features, dc.ferplus_labels).to(device)
    scheme = build_scheme(cfg, k, model.num_features).to(device)
    groups = param_groups(model, criterion, cfg.optim.weight_decay, scheme)
    params = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), **optimizer_kwargs(device))
    return TrainingRun(
        cfg=cfg, data=data, device=device, autocast=autocast, amp_dtype=amp_dtype, channels_last=channels_last,
        model=model, criterion=criterion, scheme=scheme, optimizer=optimizer,
        scheduler=build_lr_schedule(optimizer, cfg.optim, tc.epochs, scheme.lr_multiplier),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        augment=BatchAugment(dc.hflip, dc.random_erasing, tuple(dc.erasing_scale), dc.multires),
        params=params,
        static=static_provenance(cfg, data, model, device, amp_dtype),
        compiled_forward=maybe_compile(model, tc),
    )
