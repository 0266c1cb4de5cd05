"""Ada-DF: a dual-branch adaptive distribution fusion framework (Liu et al., ICASSP 2023;
released code github taylor-xy0827/Ada-DF, ``train.py``, ``model.py``, ``utils.py``).

Why a scheme: Ada-DF changes how a network is trained, not what it computes at test time. An
auxiliary branch learns from the hard labels; the per-class means of its softmax over an epoch give
one label distribution per class (the *class distributions*); a per-sample attention weight
decides how much of the sample's target is its class's distribution and how much the auxiliary
branch's own prediction for it; the target branch learns that fused distribution by KL divergence.
Ambiguous labels so become soft targets, without a label-distribution dataset.

How it composes here (an honest deviation from the released network): the released code splits a
ResNet-18 after ``layer1`` into two copies of ``layer2..fc`` (the stem frozen), each with its own
sigmoid attention that also scales its branch's logits. Here the *target branch* is the model's own
head(s) (MFER's Msc heads or a method plug-in, whatever ``run.model`` is), and the auxiliary
classifier and the two attention modules are this scheme's parameters on the model's pooled
feature ``out.feature``: one shared backbone instead of a layer-4 split. Evaluation runs
``run.model``, i.e. the target branch, as the released code tests ``out_2``; scaling logits by a
positive attention does not change their argmax, so its predictions are the released ones'.

The class distributions are a buffer (checkpointed). The released code recomputes them after each
epoch from a separate eval-mode pass over the training set; here they are updated in ``end_epoch``
from the auxiliary softmax sums of the epoch's own (augmented, train-mode) steps, so no second pass
over the data is needed (our reading).

Not ported from the released options: ``--sharpen``/``--T`` (off by default there), the fixed
``--alpha`` loss weights (unset by default), the frozen stem and ``--drop_rate`` (the backbone's
concern here: ``model.*``) and SFEW's ten-crop batches.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from mfer.config import TrainConfig
from mfer.model.output import ModelOutput
from mfer.schemes.base import Requirement, TrainingScheme

if TYPE_CHECKING:
    from mfer.train.build import TrainingRun


def initial_distributions(num_classes: int, threshold: float) -> torch.Tensor:
    """(K, K): ``threshold`` on the diagonal, the rest spread evenly over the other classes (read
    from the released code: train.py's ``LD`` initialisation)."""
    off = (1.0 - threshold) / (num_classes - 1)
    return torch.full((num_classes, num_classes), off).fill_diagonal_(threshold)


def updated_distributions(prob_sums: torch.Tensor, counts: torch.Tensor,
                          threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, K) distributions and the (K,) mask of the classes replaced. Class i's distribution is the
    mean auxiliary softmax of the samples labelled i when that mean gives class i at least
    ``threshold``, else the initial distribution (read from the released
    code: utils.py ``generate_adaptive_LD``; its fallback hard-codes 0.4/(K-1) off the diagonal, which
    sums to 1 only when threshold = 0.6 — our reading falls back to the initial one, which sums to 1).
    A class with no sample this epoch falls back as well (the released mean is NaN there)."""
    means = prob_sums / counts.clamp_min(1).unsqueeze(1)
    confident = (counts > 0) & (means.diagonal() >= threshold)
    fallback = initial_distributions(len(counts), threshold).to(means)
    return torch.where(confident.unsqueeze(1), means, fallback), confident


def fusion_weights(attention: torch.Tensor, min_weight: float, max_weight: float) -> torch.Tensor:
    """The batch's attention min-max rescaled to [min_weight, max_weight] (read from the released
    code: train.py, "label fusion"); a batch of equal attentions gets min_weight (our reading: the
    released division by max - min has no guard)."""
    span = (attention.max() - attention.min()).clamp_min(1e-12)
    return (attention - attention.min()) / span * (max_weight - min_weight) + min_weight


def fused_target(aux_probs: torch.Tensor, class_dist: torch.Tensor, labels: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
    """t_i = (1 − w_i)·p_aux,i + w_i·LD[y_i] (read from the released code: train.py ``targets``): a
    high weight trusts the class distribution, a low one the auxiliary branch's own prediction."""
    w = weights.unsqueeze(1)
    return (1 - w) * aux_probs + w * class_dist[labels]


def rank_regularisation(attention: torch.Tensor, tops: float, margin: float) -> torch.Tensor:
    """max(0, mean(low group) − mean(high group) + margin) over the batch's ``tops`` fraction of
    highest attentions vs the rest (read from the released code: train.py "Rank Regularization",
    after SCN, Wang et al., CVPR 2020); zero when either group would be empty."""
    n_high = int(len(attention) * tops)
    if n_high == 0 or n_high == len(attention):
        return attention.new_zeros(())
    ranked = attention.sort(descending=True).values
    return F.relu(ranked[n_high:].mean() - ranked[:n_high].mean() + margin)


def loss_weights(epoch: int, beta: int) -> tuple[float, float]:
    """(CE weight, KL weight) in 1-based epoch ``epoch``: the KL term ramps in as exp(−(1−e/β)²)
    over the first β epochs, then the CE term decays as exp(−(1−β/e)²) (read from the released
    code: train.py ``alpha_2``, ``alpha_1`` with ``--alpha`` unset)."""
    if epoch <= beta:
        return 1.0, math.exp(-(1 - epoch / beta) ** 2)
    return math.exp(-(1 - beta / epoch) ** 2), 1.0


def sigmoid_attention(feat_dim: int) -> nn.Module:
    """One attention weight in (0, 1) per sample from the pooled feature (model.py ``alpha_1``/``alpha_2``)."""
    return nn.Sequential(nn.Linear(feat_dim, 1), nn.Sigmoid())


class AdaDF(TrainingScheme):
    """Auxiliary branch + class distributions + attention-weighted fusion training the model's
    heads (module docstring). Per-epoch scalars: the mean attention, the two loss weights and how
    many classes' distributions the auxiliary branch was confident enough to replace."""

    config_key = "ada_df"

    def __init__(self, cfg: TrainConfig, num_classes: int, feat_dim: int) -> None:
        super().__init__(cfg, num_classes, feat_dim)
        self.aux_head = nn.Linear(feat_dim, num_classes)
        self.aux_attention = sigmoid_attention(feat_dim)
        self.target_attention = sigmoid_attention(feat_dim)
        self.register_buffer("class_dist", initial_distributions(num_classes, self.settings.threshold))
        # The epoch's running sums; zero at every epoch boundary, where checkpoints are written.
        self.register_buffer("prob_sums", torch.zeros(num_classes, num_classes), persistent=False)
        self.register_buffer("counts", torch.zeros(num_classes), persistent=False)
        self.register_buffer("attention_sum", torch.zeros(2), persistent=False)  # (Σ attention, n)

    @classmethod
    def requirements(cls, cfg: TrainConfig) -> list[Requirement]:
        s = cfg.scheme.ada_df
        key = "scheme.ada_df."
        return [
            (key + "threshold", 0 < s.threshold < 1, "must be in (0, 1)", s.threshold),
            (key + "beta", s.beta >= 1, "must be >= 1 epoch", s.beta),
            (key + "min_weight", 0 <= s.min_weight <= s.max_weight,
             f"must be in [0, scheme.ada_df.max_weight={s.max_weight}]", s.min_weight),
            (key + "max_weight", 0 < s.max_weight <= 1, "must be in (0, 1]", s.max_weight),
            (key + "tops", 0 < s.tops < 1, "must be in (0, 1)", s.tops),
            (key + "margin", s.margin >= 0, "must be >= 0", s.margin),
            (key + "label_smoothing", 0 <= s.label_smoothing < 1, "must be in [0, 1)", s.label_smoothing),
            ("data.ferplus_labels", cfg.data.ferplus_labels == "majority",
             "scheme.name=ada_df learns from hard labels: use majority", cfg.data.ferplus_labels),
        ]

    def batch_loss(self, run: "TrainingRun", x_u8: torch.Tensor, y: torch.Tensor, *soft: torch.Tensor) -> torch.Tensor:
        x = self.model_input(run, x_u8)
        with run.autocast():
            out = run.forward_train(x, y)
            a_aux = self.aux_attention(out.feature).float().squeeze(1)
            a_target = self.target_attention(out.feature).float().squeeze(1)
            aux_logits = a_aux.unsqueeze(1) * self.aux_head(out.feature).float()  # model.py ``out_1``
        s = self.settings
        attention = (a_aux + a_target) / 2  # model.py: the mean of the two branches' attentions
        aux_probs = F.softmax(aux_logits, dim=1)
        # Not detached, as in the released code: the KL term also trains the auxiliary branch and the attention.
        target = fused_target(aux_probs, self.class_dist, y, fusion_weights(attention, s.min_weight, s.max_weight))
        ce_weight, kl_weight = loss_weights(self.epoch + 1, s.beta)
        loss = (ce_weight * F.cross_entropy(aux_logits, y, label_smoothing=s.label_smoothing)
                + kl_weight * self.target_kl(out, a_target, target)
                + rank_regularisation(attention, s.tops, s.margin)
                + self.model_terms(run, out, y))
        self.accumulate(aux_probs.detach(), y, attention.detach())
        return loss

    @staticmethod
    def target_kl(out: ModelOutput, a_target: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """KL(target ‖ softmax(α_target·z)) per head, batch mean, summed over the model's heads as
        the criterion sums its per-head CE (train.py ``loss_kld`` on ``out_2``; one head there)."""
        scale = a_target.unsqueeze(1)
        return sum(F.kl_div(F.log_softmax(scale * z.float(), dim=1), target, reduction="batchmean")
                   for z in out.logits)

    @staticmethod
    def model_terms(run: "TrainingRun", out: ModelOutput, y: torch.Tensor) -> torch.Tensor:
        """What MFER's parts add beside the heads' CE, which Ada-DF replaces: the criterion's feature
        loss (the criterion given no head logits is that term alone) and the model's own losses."""
        loss = run.criterion([], out.feature, y)
        for aux in out.aux_losses.values():
            loss = loss + aux.float()
        return torch.as_tensor(loss, dtype=torch.float32, device=y.device)

    def accumulate(self, aux_probs: torch.Tensor, y: torch.Tensor, attention: torch.Tensor) -> None:
        """Add a batch to the epoch's per-class softmax sums and the attention sum (on the device)."""
        self.prob_sums.index_add_(0, y, aux_probs)
        self.counts.index_add_(0, y, torch.ones_like(y, dtype=self.counts.dtype))
        self.attention_sum += torch.stack([attention.sum(), attention.new_tensor(float(len(attention)))])

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        for sums in (self.prob_sums, self.counts, self.attention_sum):
            sums.zero_()

    def end_epoch(self) -> dict[str, float]:
        """The class distributions from this epoch's sums; the epoch's scalars."""
        dist, confident = updated_distributions(self.prob_sums, self.counts, self.settings.threshold)
        self.class_dist.copy_(dist)
        ce_weight, kl_weight = loss_weights(self.epoch + 1, self.settings.beta)
        total, n = self.attention_sum.tolist()
        return {"attention": total / max(n, 1.0), "ce_weight": ce_weight, "kl_weight": kl_weight,
                "confident_classes": float(confident.sum())}
