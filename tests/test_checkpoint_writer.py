"""Interval checkpoints written off the training thread (``fit(background_save=True)``): the same folder as a
synchronous save, a snapshot training cannot reach, errors raised on the training thread, and an uploader
that reads nothing before the folder is complete."""
import json
import threading
import time
from concurrent.futures import Future

import pytest
import torch
from safetensors.torch import load_file

from mfer.train import checkpoint, fit
from mfer.train.build import build_run
from mfer.train.checkpoint import CheckpointWriter, fresh_progress, latest_checkpoint, load_state
from mfer.train.loop import train_and_validate
from mfer.validation import validate

from .conftest import TINY, compose_train, fit_keeping
from .test_checkpoint_policy import _end, _reporter, _settle

# Every epoch but the last is an interval checkpoint; two steps an epoch keep the runs short.
EVERY_EPOCH = ("trainer.checkpoint_every_s=1e-6", "trainer.max_steps_per_epoch=2", "trainer.deterministic=true")
# Wall-clock figures, which differ between any two runs; everything else in a checkpoint must not.
TIMINGS = frozenset({"epoch_s", "train_s", "eval_s", "train_images_per_s", "images_per_s", "train_seconds",
                     "background_save_s", "checkpoint_s", "setup_s"})


class Interrupt(Exception):
    pass


def assert_same(a, b, where: str = "") -> None:
    """Nested dicts/lists/tensors equal exactly, timings left out."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        keys = set(a) - TIMINGS
        assert keys == set(b) - TIMINGS, where
        for k in keys:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_a_background_checkpoint_equals_the_synchronous_one_and_resumes_the_run_exactly(tmp_path):
    cfg = compose_train(*TINY, "trainer.epochs=3", *EVERY_EPOCH)
    full, kept = fit_keeping(cfg, tmp_path, epochs=(2,))  # synchronous
    seen = []

    def stop_after_two(end):  # reads nothing: the folder may still be being written
        seen.append(end)
        if end.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(cfg, tmp_path / "cut", on_epoch=stop_after_two, background_save=True)
    assert [e.checkpoint_reason for e in seen] == ["interval", "interval"]
    assert all(isinstance(e.checkpoint_ready, Future) for e in seen)
    assert seen[1].checkpoint_ready.done() and seen[1].checkpoint_ready.result() > 0  # fit waited before raising
    assert seen[1].metrics["background_save_s"] == seen[0].checkpoint_ready.result()  # epoch 1's write
    cut = latest_checkpoint(tmp_path / "cut")
    assert cut == tmp_path / "cut" / "checkpoints" / "epoch_0002"
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in kept[2].iterdir())
    assert_same(load_state(cut), load_state(kept[2]), "state")
    assert_same(load_file(str(cut / "best_model.safetensors")), load_file(str(kept[2] / "best_model.safetensors")))
    assert_same(*(json.loads((f / "meta.json").read_text()) for f in (cut, kept[2])), "meta")

    resumed = fit(cfg, tmp_path / "resumed", resume_from=cut, background_save=True)
    assert [r["train_loss"] for r in resumed["history"]] == pytest.approx([r["train_loss"] for r in full["history"]])
    assert resumed["val_acc"] == full["val_acc"] and resumed["test_acc"] == full["test_acc"]
    assert_same(load_file(str(latest_checkpoint(tmp_path / "resumed") / "best_model.safetensors")),
                load_file(str(latest_checkpoint(tmp_path / "full") / "best_model.safetensors")))


def test_the_snapshot_is_isolated_from_the_training_that_goes_on(tmp_path, monkeypatch):
    release, real_save = threading.Event(), checkpoint.save_checkpoint
    monkeypatch.setattr(checkpoint, "save_checkpoint", lambda *a: (release.wait(30), real_save(*a))[1])
    run = build_run(validate(compose_train(*TINY, *EVERY_EPOCH)))
    progress = fresh_progress(run)
    train_and_validate(run, progress, 0)  # the optimizer now holds moments
    model_then = {k: v.clone() for k, v in run.model.state_dict().items()}
    moments_then = {i: s["exp_avg"].clone() for i, s in run.optimizer.state_dict()["state"].items()}
    folder = tmp_path / "epoch_0001"
    with CheckpointWriter() as writer:
        ready = writer.submit(run, progress, folder, {"epoch": 1})
        train_and_validate(run, progress, 1)  # in place: parameters, moments, history
        assert not folder.exists() and not ready.done()  # nothing to read before the write completes
        release.set()
    assert ready.result() > 0
    written = load_state(folder)
    assert written["epoch"] == 1 and len(written["history"]) == 1 and progress.epoch == 2
    assert not all(torch.equal(v, run.model.state_dict()[k]) for k, v in model_then.items())  # training moved on
    assert_same(written["model"], model_then, "model")
    assert_same({i: s["exp_avg"] for i, s in written["optimizer"]["state"].items()}, moments_then, "exp_avg")
    assert json.loads((folder / "meta.json").read_text())["history"] == written["history"]


def test_a_failed_background_write_is_raised_from_fit(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)  # state.pt: the final checkpoint, weights-only, needs none
    seen = []
    with pytest.raises(OSError, match="No space left on device"):
        fit(compose_train(*TINY, *EVERY_EPOCH), tmp_path, on_epoch=seen.append, background_save=True)
    assert [e.epoch for e in seen] == [1]  # epoch 2 collected epoch 1's write before its own checkpoint
    assert latest_checkpoint(tmp_path) is None


def test_an_upload_copies_a_folder_only_once_it_is_written_and_fails_with_its_write(tmp_path):
    reporter, uploads, _ = _reporter(tmp_path)
    remote = tmp_path / "exp" / "trial_0" / "uploads"
    end, written = _end(tmp_path, 1, "interval"), Future()
    end.checkpoint_ready = written
    reporter(end)
    time.sleep(0.2)
    assert uploads.in_flight() and not (remote / "epoch_0001").exists()
    written.set_result(0.1)
    _settle(uploads)
    assert sorted(p.name for p in (remote / "epoch_0001").iterdir()) == ["best_model.safetensors", "meta.json"]
    end, failed = _end(tmp_path, 2, "interval"), Future()
    end.checkpoint_ready = failed
    reporter(end)
    failed.set_exception(OSError("No space left on device"))
    _settle(uploads)
    with pytest.raises(RuntimeError, match="uploading a checkpoint .* failed: No space left on device"):
        reporter(_end(tmp_path, 3))
    assert not (remote / "epoch_0002").exists()
