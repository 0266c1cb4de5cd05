"""DNFER: clean-sample selection by dynamic class-specific thresholds, plus weak/strong consistency
(Gera, Badveeti, Kumar & Balasubramanian, "Dynamic Adaptive Threshold based Learning for Noisy
Annotations Robust Facial Expression Recognition", arXiv 2208.10221, 2022; released code github
1980x/DNFER, ``algorithm/noisyfer_aug.py``, ``algorithm/loss.py``, ``main_rafdb.py``).

Why a scheme: FER labels are noisy, and a network memorises them. DNFER trains the supervised loss
only on the samples it judges clean — a sample is clean when the model's probability of its label
is at least that class's threshold, the batch's mean posterior of the class — and learns from all
samples through a consistency loss between a weakly and a strongly augmented view of each image.

Per step, each image gives two views made here on the device from the uint8 batch
(``mfer.data.randaugment``): weak = random reflect-pad crop, strong = the same + RandAugment(2, 10)
+ cutout (main_rafdb.py ``trans_weak`` / ``trans_strong``); both then go through the run's
normalisation and configured augmentation chain (its horizontal flip is the released transforms'
flip). Each view gets its own forward pass, as in the released code. In the first
``warmup_epochs`` epochs the loss is the criterion on all samples, averaged over the views; after
that it is (1 − α)·(the criterion on each view's selected samples, averaged over the views) +
α·(symmetric KL between the views' posteriors, batch mean).

How it composes here: the supervised term is the run's criterion (label smoothing, MFER's feature
loss, FERPlus vote rules) on the selected samples — the model output indexed, so any backbone or
method plug-in trains unchanged; the model's own losses (DAN's affinity…) are computed inside its
forward on the whole batch and join the supervised term (our reading). With several heads (MFER's
Msc), posteriors are the softmax of the summed logits, the model's prediction (our reading; the
released model has one head). Selection uses a boolean index, one host sync per view and step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from mfer.config import TrainConfig
from mfer.data.randaugment import MAX_LEVEL, cutout, pad_crop, rand_augment
from mfer.model.output import ModelOutput
from mfer.schemes.base import Requirement, TrainingScheme, training_loss

if TYPE_CHECKING:
    from mfer.train.build import TrainingRun

EPS = 1e-8  # loss.py's clamp of the posteriors


def posteriors(out: ModelOutput) -> torch.Tensor:
    """(B, K) softmax of the model's prediction, the sum of its heads' logits, in float32."""
    return F.softmax(torch.stack([z.float() for z in out.logits]).sum(0), dim=1)


def updated_thresholds(thresholds: torch.Tensor, probs: torch.Tensor, momentum: float) -> torch.Tensor:
    """(K,) class thresholds after a batch of posteriors ``probs`` (B, K): the batch's mean posterior
    per class, over all its samples whatever their label (read from the released code: loss.py DCE
    ``avg = torch.mean(y_pred, dim=0)``, recomputed every batch: momentum 0). ``momentum`` > 0 keeps
    that share of the previous thresholds (our extension)."""
    return momentum * thresholds + (1.0 - momentum) * probs.mean(0)


def clean_mask(probs: torch.Tensor, labels: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(B,) True where the posterior of the sample's own label reaches its class's threshold,
    p_i[y_i] ≥ thr[y_i] (read from the released code: loss.py DCE ``pred_tmp >= avg_ref``)."""
    own = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    return own >= thresholds[labels]


def symmetric_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(B,) KL(p‖q) + KL(q‖p) in bits (read from the released code: loss.py ``symmetric_kl_div``,
    log2); probabilities clamped at 1e-8 so a zero never gives NaN (our reading)."""
    log_p, log_q = p.clamp_min(EPS).log2(), q.clamp_min(EPS).log2()
    return ((p - q) * (log_p - log_q)).sum(1)


def selected(out: ModelOutput, mask: torch.Tensor) -> ModelOutput:
    """The model output of the samples in ``mask``: every head's logits and the pooled feature
    indexed; the model's own (batch-level) losses kept as they are."""
    return ModelOutput(logits=[z[mask] for z in out.logits], feature=out.feature[mask],
                       aux_losses=out.aux_losses)


class DNFER(TrainingScheme):
    """Dynamic-threshold clean-sample selection + weak/strong consistency (module docstring).
    Buffer ``thresholds`` (2, K): the current class thresholds of the weak and the strong view,
    checkpointed. Per-epoch scalars: the fraction of samples selected, the mean threshold they faced."""

    config_key = "dnfer"

    def __init__(self, cfg: TrainConfig, num_classes: int, feat_dim: int) -> None:
        super().__init__(cfg, num_classes, feat_dim)
        # A uniform posterior before the first selection (our reading: the released code has no state).
        self.register_buffer("thresholds", torch.full((2, num_classes), 1.0 / num_classes))
        # The epoch's sums (selected, candidates, Σ threshold of each candidate's label); zero at
        # every epoch boundary, where checkpoints are written.
        self.register_buffer("epoch_sums", torch.zeros(3), persistent=False)

    @classmethod
    def requirements(cls, cfg: TrainConfig) -> list[Requirement]:
        s = cfg.scheme.dnfer
        key = "scheme.dnfer."
        return [
            (key + "warmup_epochs", s.warmup_epochs >= 0, "must be >= 0 epochs", s.warmup_epochs),
            (key + "alpha", 0 <= s.alpha <= 1, "must be in [0, 1] (the consistency loss's weight)", s.alpha),
            (key + "n_ops", s.n_ops >= 0, "must be >= 0 RandAugment operations per image", s.n_ops),
            (key + "magnitude", 0 <= s.magnitude <= MAX_LEVEL, f"must be in [0, {MAX_LEVEL}]", s.magnitude),
            (key + "momentum", 0 <= s.momentum < 1, "must be in [0, 1) (0: the batch's means alone)", s.momentum),
        ]

    def views(self, x_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weak, strong) uint8 views of the batch (main_rafdb.py trans_weak / trans_strong)."""
        weak, strong = pad_crop(x_u8), pad_crop(x_u8)
        return weak, cutout(rand_augment(strong, self.settings.n_ops, self.settings.magnitude))

    def batch_loss(self, run: "TrainingRun", x_u8: torch.Tensor, y: torch.Tensor, *soft: torch.Tensor) -> torch.Tensor:
        outs = []
        for view in self.views(x_u8):
            x = self.model_input(run, view)
            with run.autocast():
                outs.append(run.forward_train(x, y))
        if self.epoch < self.settings.warmup_epochs:  # noisyfer_aug.py: (CE(view 1) + CE(view 2)) / 2
            self.epoch_sums[:2] += len(y)
            return sum(training_loss(run.criterion, out, y, *soft) for out in outs) / 2
        probs = [posteriors(out) for out in outs]
        supervised = sum(self.supervised(run, v, out, p, y, soft) for v, (out, p) in enumerate(zip(outs, probs))) / 2
        alpha = self.settings.alpha  # noisyfer_aug.py: (1 − α)·loss_c + α·loss_o
        return (1 - alpha) * supervised + alpha * symmetric_kl(probs[0], probs[1]).mean()

    def supervised(self, run: "TrainingRun", view: int, out: ModelOutput, probs: torch.Tensor,
                   y: torch.Tensor, soft: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The criterion on view ``view``'s clean samples after updating its thresholds from this batch.
        No sample selected: all of them (read from the released code: DCE's ``else`` branch)."""
        probs = probs.detach()
        self.thresholds[view] = updated_thresholds(self.thresholds[view], probs, self.settings.momentum)
        mask = clean_mask(probs, y, self.thresholds[view])
        self.epoch_sums += torch.stack([mask.sum().float(), probs.new_tensor(float(len(y))),
                                        self.thresholds[view][y].sum()])
        mask = mask | ~mask.any()
        return training_loss(run.criterion, selected(out, mask), y[mask], *(s[mask] for s in soft))

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        self.epoch_sums.zero_()

    def end_epoch(self) -> dict[str, float]:
        """The fraction of samples judged clean (1 in the warm-up, which trains on all; a batch with
        none counts none, though it then trains on all) and the mean threshold their labels set them
        (0 in the warm-up). Not the mean over classes: that is 1/K for thresholds that are mean posteriors."""
        chosen, candidates, threshold_sum = self.epoch_sums.tolist()
        selecting = self.epoch >= self.settings.warmup_epochs
        return {"selected": chosen / max(candidates, 1.0),
                "threshold": threshold_sum / max(candidates, 1.0) if selecting else 0.0}
