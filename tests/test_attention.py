"""DS attention: exact semantics of the released code (spec §1.2)."""
import torch
import torch.nn.functional as F

from mfer.model.attention import ATTENTION_VARIANTS, DSAttention, build_attention


def test_matches_the_released_formula_step_by_step():
    torch.manual_seed(0)
    a = DSAttention(16, kernel_size=3)
    x = torch.randn(2, 16, 5, 4)
    xp = x.permute(0, 2, 3, 1)
    k = a.k[2](F.gelu(a.k[0](xp))) * xp
    q = F.layer_norm(F.gelu(F.conv2d(x, a.q_conv.weight, a.q_conv.bias, padding=1)).permute(0, 2, 3, 1),
                     (16,), a.q_norm.weight, a.q_norm.bias)
    v = xp @ a.v.weight.T + a.v.bias
    s = (q + k).reshape(2, 20, 16)
    attn = torch.exp(s) / torch.exp(s).sum(dim=1, keepdim=True)  # softmax over the 20 positions
    want = (attn.reshape(2, 5, 4, 16) * v).permute(0, 3, 1, 2) + x
    torch.testing.assert_close(a(x), want)


def test_softmax_is_over_spatial_positions_per_channel():
    torch.manual_seed(0)
    a = DSAttention(8, kernel_size=3)
    x = torch.randn(3, 8, 4, 4)
    b, c, h, w = x.shape
    weights = torch.softmax(a.scores(x).reshape(b, h * w, c), dim=1)
    torch.testing.assert_close(weights.sum(1), torch.ones(b, c))


def test_variants_drop_branches_and_none_builds_nothing():
    assert build_attention("none", 32, 7, 1, "input") is None
    g = build_attention("global", 32, 7, 1, "input")
    loc = build_attention("local", 32, 7, 1, "input")
    assert g.q_conv is None and g.k is not None
    assert loc.k is None and loc.q_conv is not None
    assert set(ATTENTION_VARIANTS) == {"none", "global", "local", "ds"}


def test_groups_and_pooled_gate():
    dense = DSAttention(64, 7, groups=1)
    depthwise = DSAttention(64, 7, groups=0)
    assert depthwise.q_conv.groups == 64
    assert sum(p.numel() for p in depthwise.parameters()) < sum(p.numel() for p in dense.parameters())
    pooled = DSAttention(16, 3, k_gate="pooled")
    x = torch.randn(2, 16, 4, 4)
    assert pooled(x).shape == x.shape


def test_paper_block_parameter_counts():
    """Spec §1.2: 13.18 M at stage 3 (C=512), 52.70 M at stage 4 (C=1024)."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert round(count(DSAttention(512)) / 1e6, 2) == 13.18
    assert round(count(DSAttention(1024)) / 1e6, 2) == 52.70
