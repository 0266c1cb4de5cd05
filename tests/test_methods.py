"""Method plug-ins (mfer.model.methods): each one's defining computation against a case worked out
by hand, the config key that selects it, and a smoke training run of each through ``fit``."""
import math

import pytest
import torch

from mfer.config import ConfigError, DANConfig, FDRLConfig, SCANConfig, SEConfig
from mfer.model.methods import METHODS
from mfer.model.methods.dan import DAN, affinity_loss, partition_loss
from mfer.model.methods.fdrl import FDRL, balance_loss, compactness_loss, distribution_loss, reconstruct
from mfer.model.methods.scan_cci import SCANCCI, patch_bounds
from mfer.model.methods.se import SqueezeExcitation
from mfer.train import fit

from .conftest import TINY, compose_train


def test_se_gates_channels_as_worked_out_by_hand():
    se = SqueezeExcitation(2, 3, SEConfig(reduction=2))  # hidden width 1
    with torch.no_grad():
        se.squeeze.weight.copy_(torch.tensor([[1.0, -1.0]]))
        se.squeeze.bias.zero_()
        se.excite.weight.copy_(torch.tensor([[1.0], [2.0]]))
        se.excite.bias.zero_()
    fmap = torch.stack([torch.full((2, 2), 3.0), torch.tensor([[0.0, 2.0], [2.0, 0.0]])])[None]  # means 3, 1
    # squeeze: relu(3 - 1) = 2; excite: sigmoid([2, 4])
    gate = torch.tensor([1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-4))])
    torch.testing.assert_close(se.pool(fmap), (torch.tensor([3.0, 1.0]) * gate)[None])


def test_dan_partition_loss_is_log_one_plus_k_over_head_variance():
    heads = torch.tensor([[[0.0, 0.0], [2.0, 2.0]]])  # B=1, K=2 heads: unbiased variance 2 per entry
    torch.testing.assert_close(partition_loss(heads), torch.tensor(math.log(1 + 2 / 2)))
    assert partition_loss(heads[:, :1]) == 0  # one head: nothing to partition


def test_dan_affinity_loss_on_known_centres():
    centres = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # Σ_d Var_k(c) = 2 + 0
    feature = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    # sample 0 (class 1): |(1,0)-(2,0)|² = 1; sample 1 (class 0): |(0,3)|² = 9; (1 + 9) / 2 / B=2
    torch.testing.assert_close(affinity_loss(feature, centres, torch.tensor([1, 0])), torch.tensor(2.5), atol=1e-9,
                               rtol=1e-6)


def test_dan_forward_returns_both_losses_only_affinity_needs_labels():
    torch.manual_seed(0)
    dan = DAN(8, 3, DANConfig(num_heads=2))
    fmap = torch.randn(4, 8, 3, 3)
    out = dan(fmap, torch.tensor([0, 1, 2, 0]))
    assert set(out.aux_losses) == {"dan_partition", "dan_affinity"}
    torch.testing.assert_close(out.aux_losses["dan_partition"], partition_loss(dan.attend(fmap)))
    assert set(dan(fmap).aux_losses) == {"dan_partition"}
    dan.eval()  # the evaluation path (pool, then classify) gives the training forward's logits
    torch.testing.assert_close(torch.stack(dan.classify(dan.pool(fmap))).sum(0), dan(fmap).logits[0])


def test_scan_patches_follow_scan_ccis_grid():
    # SCAN-CCI's 28x28 map with 6-pixel patches: 4 of 6 then the remainder 4 (25 patches in all)
    assert patch_bounds(28, 6) == [(0, 6), (6, 12), (12, 18), (18, 24), (24, 28)]
    assert patch_bounds(3, 2) == [(0, 2), (2, 3)]


def test_scan_cci_feature_with_a_constant_mask_as_worked_out_by_hand():
    scan = SCANCCI(1, 2, SCANConfig(patch=2, regions=4, eca_kernel=1)).eval()
    with torch.no_grad():  # mask = sigmoid(BN(PReLU(0))) = sigmoid(0) = 0.5 everywhere; ECA gate sigmoid(0)
        scan.mask[0].weight.zero_()
        scan.eca.conv.weight.zero_()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # patch means: 2.5, 4.5, 10.5, 12.5 -> max 12.5; global mean 7.5; both halved by the mask, then L2-normalised
    attention = torch.tensor([12.5, 7.5]) / math.hypot(12.5, 7.5)
    regions = 0.5 * torch.tensor([2.5, 4.5, 10.5, 12.5])  # the 2x2 regions' means under the ECA gate 0.5
    torch.testing.assert_close(scan.pool(x), torch.cat([attention, regions])[None])
    assert len(scan.classify(scan.pool(x))) == 5  # SCAN's head + one per region


def test_fdrl_losses_on_tiny_tensors():
    latent = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # B=1, M=2, d=2
    centres = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(compactness_loss(latent, centres), torch.tensor(2.0))  # 1 + 1
    w = torch.tensor([[0.2, 0.6], [0.4, 0.8]])  # batch mean (0.3, 0.7), uniform (0.5, 0.5)
    torch.testing.assert_close(balance_loss(w), torch.tensor(0.4))
    class_centres = torch.tensor([[0.0, 0.0], [0.5, 0.5]])
    # sample 0 (class 1): 0.09 + 0.01; sample 1 (class 0): 0.16 + 0.64; mean 0.45
    torch.testing.assert_close(distribution_loss(w, class_centres, torch.tensor([1, 0])), torch.tensor(0.45))


def test_fdrl_reconstruction_mixes_related_latent_features():
    same = torch.tensor([[[1.0, 2.0], [1.0, 2.0]]])  # identical latent features: g = f, y = Σ f
    torch.testing.assert_close(reconstruct(same, 0.5), torch.tensor([[2.0, 4.0]]))
    far = torch.tensor([[[100.0, 0.0], [0.0, 0.0]]])  # unrelated: each relates to itself only, g = f
    torch.testing.assert_close(reconstruct(far, 0.3), torch.tensor([[100.0, 0.0]]))
    fdrl = FDRL(4, 3, FDRLConfig(num_latent=3, latent_dim=5))
    out = fdrl(torch.randn(2, 4, 2, 2), torch.tensor([0, 2]))
    assert set(out.aux_losses) == {"fdrl_compactness", "fdrl_balance", "fdrl_distribution"}


@pytest.mark.parametrize("backbone", ["resnet18", "vit_tiny_patch16_224"])
def test_a_plug_in_trains_and_evaluates_alike_on_any_backbone(backbone):
    """The training forward (the map) and evaluation (pool, then classify; a ViT's tokens laid out
    as a map) give the same logits, and the plug-in's losses come back with them."""
    from mfer.config import ModelConfig
    from mfer.model import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, method="fdrl", msc_fractions=[], attn_variant="none", attn_stages=[])
    model = build_model(cfg, 7, 64).eval()
    x = torch.randn(2, 3, 64, 64)
    out = model.forward_train(x, targets=torch.tensor([1, 2]))
    logits = model.classify(model.forward_head(model.forward_features(x), pre_logits=True))
    torch.testing.assert_close(torch.stack(out.logits).sum(0), logits)
    assert set(out.aux_losses) == {"fdrl_compactness", "fdrl_balance", "fdrl_distribution"}


@pytest.mark.parametrize("overrides, key", [
    (["model.method=arcface"], "model.method"),
    (["model.method=dan"], "model.msc_fractions"),  # Msc heads are MFER's own
    (["model.method=dan", "model.msc_fractions=[]", "model.dan.num_heads=0"], "model.dan.num_heads"),
    (["model.method=scan_cci", "model.msc_fractions=[]", "model.scan_cci.regions=3"], "model.scan_cci.regions"),
    (["model.method=fdrl", "model.msc_fractions=[]", "model.fdrl.mu=2"], "model.fdrl.mu"),
])
def test_bad_method_settings_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        compose_train(*overrides)


def test_a_methods_section_is_checked_only_when_it_is_chosen():
    compose_train("model.dan.num_heads=0")  # MFER: DAN's section plays no part
    compose_train("model.method=se", "model.msc_fractions=[]", "model.dan.num_heads=0")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_trains_through_fit(method, tmp_path):
    # TINY's 32 px faces leave convnext_atto a 1x1 final map: one SCAN-CCI region
    cfg = compose_train(*TINY, "trainer=smoke", f"model.method={method}", "model.scan_cci.regions=1",
                        "model.msc_fractions=[]", "model.attn_variant=none", "loss.feature=none")
    m = fit(cfg, tmp_path)
    assert m["config"]["model"]["method"] == method and 0.0 <= m["test_acc"] <= 1.0
    assert len(m["history"]) == 2 and m["params_breakdown"]["attention"] == 0


def test_peers_paper_column_marks_what_differs_from_the_published_setup():
    from types import SimpleNamespace

    import pandas as pd

    from mfer_platform.keys import ROW_KEY
    from mfer_platform.report.published import NOT_PUBLISHED, paper_column

    rows = {"baseline": {"model.method": "baseline", "loss.feature": "none"},
            "dan": {"model.method": "dan", "model.backbone": "resnet18", "loss.feature": "none"}, "mfer": {}}
    record = {"search_space": "peers/methods", "dataset": "rafdb", "rows": rows,
              "base_config": {"model": {"backbone": "convnext_base", "pretrained": "convnext_base.fb_in22k_ft_in1k"},
                              "loss": {"feature": "dsf"}, "data": {"name": "rafdb"}}}
    groups = pd.DataFrame({"group": [f"row={r}" for r in rows], ROW_KEY: list(rows)})
    col = paper_column(SimpleNamespace(groups=groups), record)
    assert col.cells["row=baseline"] == NOT_PUBLISHED
    # the row's own backbone matches DAN's, its ImageNet weights and our validation split do not
    assert col.cells["row=dan"] == "89.70 (published: DAN); not comparable: pretraining, split"
    assert col.cells["row=mfer"].startswith("92.08 (published: MFER); not comparable: pretraining, split")
    assert "yaoing/DAN README table (setup: resnet18, MS-Celeb-1M" in col.note
    assert ("Not comparable, published with another setup (what differs): DAN: pretraining, split; "
            "MFER: pretraining, split.") in col.note
