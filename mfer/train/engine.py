"""The engine: one training step and one epoch of them, with no bookkeeping (ConvNeXt's
``engine.py`` split). Selection, checkpoints and the summary are ``mfer.train.loop``'s.

How a batch becomes a loss is the run's training scheme's (``mfer.schemes``; the standard one
relies only on the model-output contract, ``mfer.model.output``: the criterion sees
``(logits, feature, targets)`` and every auxiliary loss the model returns is added, so a method
with losses of its own trains through this step unchanged); the step owns the rest. ``benchmarks/trainer_throughput.py``
times ``train_step`` itself, so its numbers are the trainer's.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from mfer.data.batches import epoch_order, iterate_batches
from mfer.train.build import TrainingRun


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf: the run stops instead of producing garbage."""


@dataclass
class EpochStats:
    loss: float  # mean training loss over the epoch's steps
    seen: int  # training images the epoch drew
    seconds: float  # wall time of the epoch's steps, up to the one host sync at its end
    scheme: dict  # the training scheme's scalars for the epoch (DNFER's selected fraction, ...)


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of epoch ``epoch``: a resumed run's epoch draws what it would have drawn."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**63)


def train_step(run: TrainingRun, x_u8: torch.Tensor, y: torch.Tensor, *soft: torch.Tensor) -> torch.Tensor:
    """One optimiser step on a uint8 NHWC batch already on the device; returns the detached loss.

    The scheme normalises and augments on the device, runs the forward under autocast (compiled
    when trainer.compile is set) and returns the loss in float32; then scaled backward, optional
    global grad-norm clipping (after unscaling), step.
    """
    loss = run.scheme.batch_loss(run, x_u8, y, *soft)
    opt, scaler, clip = run.optimizer, run.scaler, run.cfg.optim.grad_clip
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip > 0:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(run.params, clip)
    scaler.step(opt)
    scaler.update()
    return loss.detach()


def train_one_epoch(run: TrainingRun, epoch: int) -> EpochStats:
    """Epoch ``epoch`` (0-based) of training steps, seeded by (seed, epoch) so a resume replays it.

    Raises NonFiniteLossError when the epoch's mean loss is NaN/inf, naming the settings to change.
    """
    tc, dc, train = run.cfg.trainer, run.cfg.data, run.data.train
    torch.manual_seed(epoch_seed(tc.seed, epoch))
    run.model.train()
    run.criterion.train()
    run.scheme.train()
    run.scheme.start_epoch(epoch)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=run.device)
    steps = seen = 0
    order = epoch_order(train.labels, tc.seed, epoch, shuffle=True, balanced=dc.balanced_sampler)
    drop_last = len(train) > dc.batch_size
    for x_u8, y, *soft in iterate_batches(train, dc.batch_size, run.device, order, drop_last, tc.max_steps_per_epoch):
        # soft: [(B, K) targets] under FERPlus's vote rules, else []
        loss_sum += train_step(run, x_u8, y, *soft)
        steps += 1
        seen += len(y)
    loss = (loss_sum / max(steps, 1)).item()  # one host sync per epoch
    seconds = time.perf_counter() - t0
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"training loss became {loss} in epoch {epoch + 1}; lower optim.lr "
            f"(now {run.cfg.optim.lr}) or loss.weight (now {run.cfg.loss.weight}), or enable optim.grad_clip"
        )
    return EpochStats(loss, seen, seconds, run.scheme.end_epoch())
