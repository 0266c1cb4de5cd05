"""Msc heads: nested prefixes, per-head logits, summed prediction (spec §1.3)."""
import pytest
import torch

from mfer.config import ModelConfig
from mfer.model import build_model, parameter_breakdown
from mfer.model.msc import LinearClassifier, MultiscaleClassifier, prefix_widths


def test_prefix_widths_of_the_paper():
    assert prefix_widths(1024, [0.5, 0.75, 1.0]) == [512, 768, 1024]
    with pytest.raises(ValueError):
        prefix_widths(4, [0.5, 0.6])


def test_heads_read_nested_prefixes_only():
    torch.manual_seed(0)
    msc = MultiscaleClassifier(8, 3, [0.5, 1.0])
    f = torch.randn(4, 8)
    g = f.clone()
    g[:, 4:] += 100.0  # channels beyond the first head's prefix
    out_f, out_g = msc(f), msc(g)
    torch.testing.assert_close(out_f[0], out_g[0])  # head 0 sees only f[:, :4]
    assert not torch.allclose(out_f[1], out_g[1])
    head = msc.heads[0]
    torch.testing.assert_close(out_f[0], head.fc2(torch.nn.functional.gelu(head.fc1(f[:, :4]))))


def test_prediction_is_sum_of_head_logits():
    torch.manual_seed(0)
    model = build_model(ModelConfig(attn_variant="none"), 7).eval()
    x = torch.randn(2, 3, 32, 32)
    out = model.forward_train(x)
    heads, feature = out.logits, out.feature
    assert len(heads) == 3 and feature.shape == (2, model.num_features)
    torch.testing.assert_close(model(x), heads[0] + heads[1] + heads[2])


def test_msc_off_is_a_single_linear_head():
    model = build_model(ModelConfig(attn_variant="none", msc_fractions=[]), 7)
    assert isinstance(model.head, LinearClassifier)


def test_paper_configuration_parameter_count():
    """ConvNeXt-B + DS after stages 3 and 4 + Msc 512/768/1024: ≈88 M + ≈66 M + ≈1.9 M."""
    model = build_model(ModelConfig(backbone="convnext_base", drop_path_rate=0.25), 7)
    p = parameter_breakdown(model)
    assert round(p["backbone"] / 1e6) == 88
    assert round(p["attention"] / 1e6) == 66
    assert round(p["head"] / 1e6, 1) == 1.9
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
