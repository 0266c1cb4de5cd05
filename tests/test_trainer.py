"""The training loop: metrics file, val-only selection, exact resume, NaN guard, config errors."""
import json

import pytest
import torch
from safetensors.torch import load_file

from mfer.config import ConfigError
from mfer.train import NonFiniteLossError, fit
from mfer.train.checkpoint import RESULT_KEYS, latest_checkpoint, load_state

from .conftest import TINY, compose_train


class Interrupt(Exception):
    pass


def test_fit_writes_metrics_and_selects_on_validation(tiny_cfg, tmp_path):
    seen = []
    m = fit(tiny_cfg, tmp_path, on_epoch=seen.append)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("val_acc", "val_mean_class_acc", "val_macro_f1", "test_acc", "selected_epoch", "params",
                "images_per_s", "wall_s", "history", "config_hash", "dataset_fingerprint", "git_commit"):
        assert key in on_disk, key
    assert len(m["history"]) == 2 and [e.epoch for e in seen] == [1, 2]
    assert "test_acc" not in seen[0].metrics and "test_acc" in seen[1].metrics  # test once, at the end
    best = max(m["history"], key=lambda r: r["val_acc"])
    assert m["selected_epoch"] == best["epoch"] and m["val_acc"] == best["val_acc"]
    assert sum(map(sum, m["test_confusion"])) == sum(m["split_counts"]["test"])
    final = tmp_path / "checkpoints" / "epoch_0002"  # the default policy: only the last epoch (15 min interval)
    assert [e.checkpoint_dir for e in seen] == [None, final] and latest_checkpoint(tmp_path) == final
    meta = json.loads((final / "meta.json").read_text())  # what sweeps keep of a run
    assert meta["test"] == {"per_class_acc": m["test_per_class_acc"], "confusion": m["test_confusion"], "n": m["test_n"],
                            **{k: m[f"test_{k}"] for k in ("acc", "mean_class_acc", "macro_f1", "loss", "compactness")}}
    assert set(meta["test"]) == set(RESULT_KEYS) and meta["epoch"] == 2
    assert meta["selected_val"] == {"per_class_acc": m["val_per_class_acc"], "confusion": m["val_confusion"],
                                    "n": sum(m["split_counts"]["val"]), "epoch": m["selected_epoch"],
                                    **{k: m[f"val_{k}"] for k in ("acc", "mean_class_acc", "macro_f1", "loss", "compactness")}}
    assert (final / "best_model.safetensors").is_file()
    # The hook saw the selected epoch's full validation result on the epochs that improved it.
    assert seen[0].selected_val is not None and seen[0].selected_val["epoch"] == 1
    improved = [e for e in seen if e.selected_val is not None]
    assert improved[-1].selected_val == meta["selected_val"]
    assert all(isinstance(v, (int, float)) for e in seen for v in e.metrics.values())  # metrics stay flat scalars


def test_each_checkpoint_is_a_fresh_folder_and_the_previous_goes_after_the_hook(tmp_path):
    cfg = compose_train(*TINY, "trainer.epochs=3", "trainer.checkpoint_every=1")
    listed = []

    def on_epoch(end):  # what the folder holds while the hook runs (Ray copies the checkpoint here)
        listed.append(sorted(p.name for p in (tmp_path / "checkpoints").iterdir()))

    fit(cfg, tmp_path, on_epoch=on_epoch)
    assert listed == [["epoch_0001"], ["epoch_0001", "epoch_0002"], ["epoch_0002", "epoch_0003"]]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch_0003"]
    assert [r["epoch"] for r in json.loads((tmp_path / "checkpoints" / "epoch_0003" / "meta.json").read_text())["history"]] == [1, 2, 3]


def test_resume_equals_uninterrupted(tmp_path):
    cfg = compose_train(*TINY, "trainer.epochs=3", "trainer.deterministic=true")
    full = fit(cfg, tmp_path / "full")

    def stop_after_two(end):
        if end.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(cfg, tmp_path / "cut", on_epoch=stop_after_two, checkpoint_epochs={2})  # as a PBT boundary asks
    cut = tmp_path / "cut" / "checkpoints" / "epoch_0002"
    assert load_state(cut)["epoch"] == 2 and latest_checkpoint(tmp_path / "cut") == cut
    resumed = fit(cfg, tmp_path / "resumed", resume_from=cut)
    assert [r["train_loss"] for r in resumed["history"]] == pytest.approx([r["train_loss"] for r in full["history"]])
    assert resumed["val_acc"] == full["val_acc"] and resumed["test_acc"] == full["test_acc"]
    a = load_file(str(latest_checkpoint(tmp_path / "full") / "best_model.safetensors"))
    b = load_file(str(latest_checkpoint(tmp_path / "resumed") / "best_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_the_final_checkpoint_is_weights_only_and_resuming_it_returns_the_stored_result(tmp_path):
    """After the last epoch nothing trains on: no state.pt (the AdamW moments are 3/4 of a ConvNeXt-B
    checkpoint). A trial restored at that moment resumes from it, trains nothing and returns the stored
    result — and evaluates the test split from the stored best weights if the crash beat the test."""
    cfg = compose_train(*TINY, "trainer.deterministic=true")
    full = fit(cfg, tmp_path / "run")
    final = latest_checkpoint(tmp_path / "run")
    assert sorted(p.name for p in final.iterdir()) == ["best_model.safetensors", "meta.json"]
    keys = ("val_acc", "val_confusion", "selected_epoch", "test_acc", "test_confusion", "test_per_class_acc",
            "history", "train_s", "images_per_s")
    seen = []
    again = fit(cfg, tmp_path / "again", on_epoch=seen.append, resume_from=final)
    assert {k: again[k] for k in keys} == {k: full[k] for k in keys}
    assert [e.epoch for e in seen] == [2] and seen[0].metrics["test_acc"] == full["test_acc"]  # reported once
    assert not (tmp_path / "again" / "checkpoints").exists()  # nothing trained, nothing saved
    meta = json.loads((final / "meta.json").read_text())
    del meta["test"]  # the driver died between the final checkpoint and its test
    (final / "meta.json").write_text(json.dumps(meta))
    retested = fit(cfg, tmp_path / "retested", resume_from=final)
    assert retested["test_acc"] == full["test_acc"] and retested["test_confusion"] == full["test_confusion"]
    with pytest.raises(RuntimeError, match="final checkpoint after 2 epochs"):
        fit(compose_train(*TINY, "trainer.epochs=3"), tmp_path / "longer", resume_from=final)


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    cfg = compose_train(*TINY, "optim.lr=1e30", "optim.grad_clip=0", "trainer.epochs=3")
    with pytest.raises(NonFiniteLossError, match="optim.lr"):
        fit(cfg, tmp_path)


@pytest.mark.parametrize("override, key", [
    ("model.attn_variant=sparse", "model.attn_variant"),
    ("model.msc_fractions=[0.5,1.5]", "model.msc_fractions"),
    ("optim.lr=-1", "optim.lr"),
    ("loss.feature=arcface", "loss.feature"),
    ("trainer.checkpoint_every=-1", "trainer.checkpoint_every"),
    ("trainer.checkpoint_every_s=-5", "trainer.checkpoint_every_s"),
])
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        compose_train(override)


def test_cli_rejects_bad_values_before_training(tmp_path, cli):
    out = cli("mfer.cli.train", "model.attn_variant=sparse", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2
    assert "model.attn_variant" in out.stderr and "'ds'" in out.stderr
