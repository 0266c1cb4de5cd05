"""DS attention: dynamic global (K) + static local (Q) attention of MFER.

Follows the released code (XuJ1E/MFER ``model/attention.py``, class ``Attention``; spec §1.2),
not Fig. 2 of the paper where the two disagree (the code applies GELU before LayerNorm, as
FAER's Eq. (1) does). With X (B, C, H, W) and Xp = X in channels-last layout::

    V = Linear_C→C(Xp)
    K = Linear_C/8→C(GELU(Linear_C→C/8(Xp))) ⊙ Xp            dynamic global
    Q = LayerNorm_C(GELU(Conv_k×k(X)))                         static local
    out = Softmax_{over the H·W positions}(Q + K) ⊙ V + X

One channel-wise spatial softmax: no heads, no 1/√d scaling, no output projection.
Variants drop one branch (``global``: K only, ``local``: Q only). ``k_gate="pooled"`` is FAER's
CC-attention gate (MLP(X) ⊙ AvgPool(X)); ``groups`` trades the dense conv's cost (≈51 M params
at C=1024, k=7) for a grouped or depthwise one. Weights start as the released code starts them:
its ConvNeXt's ``_init_weights`` runs over the appended attention blocks too, so every Linear and
Conv2d gets ``trunc_normal_(std=0.02)`` and a zero bias (LayerNorm keeps 1 and 0).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn


class DSAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        kernel_size: int = 7,
        groups: int = 1,
        use_global: bool = True,
        use_local: bool = True,
        k_gate: str = "input",
    ) -> None:
        super().__init__()
        if not (use_global or use_local):
            raise ValueError("DSAttention needs at least one of the global (K) or local (Q) branches")
        self.k_gate = k_gate
        self.v = nn.Linear(dim, dim)
        self.k = (
            nn.Sequential(nn.Linear(dim, dim // 8), nn.GELU(), nn.Linear(dim // 8, dim)) if use_global else None
        )
        if use_local:
            self.q_conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups or dim)
            self.q_norm = nn.LayerNorm(dim)
        else:
            self.q_conv = self.q_norm = None
        self.apply(_released_init)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Q + K in channels-last layout (B, H, W, C), before the spatial softmax."""
        xp = x.permute(0, 2, 3, 1)
        s: Optional[torch.Tensor] = None
        if self.k is not None:
            gate = xp if self.k_gate == "input" else xp.mean(dim=(1, 2), keepdim=True)
            s = self.k(xp) * gate
        if self.q_conv is not None:
            q = self.q_norm(F.gelu(self.q_conv(x)).permute(0, 2, 3, 1))
            s = q if s is None else s + q
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        v = self.v(x.permute(0, 2, 3, 1))
        a = torch.softmax(self.scores(x).reshape(b, h * w, c), dim=1).reshape(b, h, w, c)
        return (a * v).permute(0, 3, 1, 2) + x


def _released_init(m: nn.Module) -> None:
    """XuJ1E/MFER ``model.py`` ``ConvNeXt._init_weights``, which ``self.apply`` runs over the attention too."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def _variant(use_global: bool, use_local: bool) -> Callable[..., nn.Module]:
    def make(dim: int, kernel_size: int, groups: int, k_gate: str) -> nn.Module:
        return DSAttention(dim, kernel_size, groups, use_global=use_global, use_local=use_local, k_gate=k_gate)

    return make


# Registry of attention variants: name -> factory(dim, kernel_size, groups, k_gate), or None for "no block".
ATTENTION_VARIANTS: dict[str, Optional[Callable[..., nn.Module]]] = {
    "none": None,
    "global": _variant(True, False),
    "local": _variant(False, True),
    "ds": _variant(True, True),
}


def build_attention(variant: str, dim: int, kernel_size: int, groups: int, k_gate: str) -> Optional[nn.Module]:
    factory = ATTENTION_VARIANTS[variant]
    return None if factory is None else factory(dim, kernel_size, groups, k_gate)
