"""The final checkpoint handed to its node's uploader (mfer_platform/sweep/uploads.py): the trial reports
a pending pointer and goes on; the uploader makes the upload whole, then drops what it superseded;
readers and resumes take a pending upload only once it is whole. Ray's part is played by FakeRay, the
uploader's actor by the plain class (its Ray wiring runs in the sweep end-to-end tests)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from mfer_platform.layout import POINTER_FILE, UPLOAD_COMPLETE
from mfer_platform.results.checkpoints import CheckpointError, weights_folder
from mfer_platform.sweep.trainable import BackgroundUpload, Reporter, resume_folder
from mfer_platform.sweep.uploads import Uploader

from .test_checkpoint_policy import FakeRay, _end, _settle


def _deferring_reporter(tmp_path: Path):
    """A Reporter whose final checkpoint goes to a real Uploader (run by hand, without Ray)."""
    exp = tmp_path / "exp"
    uploads = BackgroundUpload(pafs.LocalFileSystem(), str(exp), "trial_0")
    uploader, ray, handed = Uploader(pafs.LocalFileSystem(), str(exp)), FakeRay(exp / "trial_0"), []

    def defer(folder: Path, rel: str, superseded: list[str]) -> None:
        staged = tmp_path / "staging" / Path(folder).name
        staged.parent.mkdir()
        Path(folder).rename(staged)  # as hand_off moves it out of the run directory
        handed.append((rel, superseded))
        uploader.submit(str(staged), rel, superseded)

    return Reporter(uploads, ray, {}, defer=defer), uploads, uploader, ray, handed


def test_the_final_checkpoint_is_reported_pending_and_made_whole_by_the_uploader(tmp_path):
    reporter, uploads, uploader, ray, handed = _deferring_reporter(tmp_path)
    remote = tmp_path / "exp" / "trial_0" / "uploads"
    reporter(_end(tmp_path, 1, "interval"))
    _settle(uploads)
    reporter(_end(tmp_path, 2))  # points to epoch 1's upload
    reporter(_end(tmp_path, 3, "last"))
    pointer = json.loads((ray.latest / POINTER_FILE).read_text())
    assert pointer == {"path": "trial_0/uploads/epoch_0003", "epoch": 3, "reported_at": 3, "pending": True,
                       "fallback": "trial_0/uploads/epoch_0001"}
    assert json.loads((ray.latest / "meta.json").read_text()) == {"epoch": 3}  # ingest needs no upload
    assert handed == [("trial_0/uploads/epoch_0003", ["trial_0/uploads/epoch_0001"])]
    assert [o["path"] for o in uploader.drain()] == ["trial_0/uploads/epoch_0003"]
    assert sorted(p.name for p in (remote / "epoch_0003").iterdir()) == [
        "best_model.safetensors", "meta.json", UPLOAD_COMPLETE]
    assert (remote / "epoch_0003" / "best_model.safetensors").read_bytes() == bytes(range(256)) * 40 * 3
    assert [p.name for p in remote.iterdir()] == ["epoch_0003"]  # the fallback went once the final was whole
    assert not (tmp_path / "staging").exists()  # the staged copy too
    # A trial resumed from the pending pointer (its driver died before Tune marked it done) finishes from the
    # final upload, and reports its last epoch again so the run ends with a report.
    folder, skip, kept = resume_folder(ray.latest, uploads, tmp_path / "resume")
    assert (folder / "best_model.safetensors").read_bytes() == bytes(range(256)) * 40 * 3
    assert (skip, kept) == (2, "trial_0/uploads/epoch_0003")


def test_a_final_upload_that_never_completed_resumes_from_what_it_superseded(tmp_path):
    reporter, uploads, uploader, ray, _ = _deferring_reporter(tmp_path)
    uploader.submit = lambda *a: None  # the node died with the upload queued
    reporter(_end(tmp_path, 1, "interval"))
    _settle(uploads)
    reporter(_end(tmp_path, 2, "last"))
    folder, skip, kept = resume_folder(ray.latest, uploads, tmp_path / "resume")
    assert json.loads((folder / "meta.json").read_text()) == {"epoch": 1} and (skip, kept) == (1, "trial_0/uploads/epoch_0001")
    # Without an earlier upload to fall back on, the trial starts again, skipping the reports Ray holds.
    reporter, uploads, uploader, ray, _ = _deferring_reporter(tmp_path / "second")
    uploader.submit = lambda *a: None
    reporter(_end(tmp_path / "second", 1, "last"))
    assert resume_folder(ray.latest, uploads, tmp_path / "resume2") == (None, 0, None)


def test_a_failed_final_upload_is_reported_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    def broken(src, dest, **kwargs):
        Path(dest, "best_model.safetensors").write_bytes(b"half")
        raise OSError("connection reset")

    reporter, _, uploader, ray, _ = _deferring_reporter(tmp_path)
    monkeypatch.setattr(pafs, "copy_files", broken)
    reporter(_end(tmp_path, 1, "last"))
    [outcome] = uploader.drain()
    assert outcome == {"path": "trial_0/uploads/epoch_0001", "error": "OSError: connection reset"}
    assert not (tmp_path / "exp" / "trial_0" / "uploads" / "epoch_0001").exists()


def _trial_checkpoint(tmp_path: Path, pointer: dict) -> str:
    ckpt = tmp_path / "exp" / "trial_0" / "checkpoint_000002"
    ckpt.mkdir(parents=True)
    (ckpt / POINTER_FILE).write_text(json.dumps(pointer))
    return str(ckpt)


def test_readers_follow_a_pointer_only_to_a_whole_upload_of_its_own_trial(tmp_path):
    fs, exp = pafs.LocalFileSystem(), str(tmp_path / "exp")
    ckpt = _trial_checkpoint(tmp_path, {"path": "trial_0/uploads/epoch_0002", "epoch": 2, "reported_at": 2,
                                        "pending": True, "fallback": None})
    with pytest.raises(CheckpointError, match="trial t0: its final checkpoint .*epoch_0002 is still uploading"):
        weights_folder(fs, exp, ckpt, "t0")
    done = tmp_path / "exp" / "trial_0" / "uploads" / "epoch_0002"
    done.mkdir(parents=True)
    (done / UPLOAD_COMPLETE).write_text("{}")
    assert weights_folder(fs, exp, ckpt, "t0") == str(done)
    for bad in ("trial_0/../trial_1/uploads/epoch_0002", "trial_1/uploads/epoch_0002", "/etc", 7):
        (Path(ckpt) / POINTER_FILE).write_text(json.dumps({"path": bad, "epoch": 2, "reported_at": 2}))
        with pytest.raises(CheckpointError, match="does not name an upload of its trial"):
            weights_folder(fs, exp, ckpt, "t0")
    plain = tmp_path / "exp" / "trial_0" / "checkpoint_000001"
    plain.mkdir()
    assert weights_folder(fs, exp, str(plain), "t0") == str(plain)  # a checkpoint Ray holds whole
