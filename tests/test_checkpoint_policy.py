"""When the trainer writes a resumable checkpoint: CheckpointPolicy, on a fake clock."""
from mfer.config import TrainerConfig
from mfer.train.checkpoint import CheckpointPolicy


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def due_epochs(policy: CheckpointPolicy, clock: FakeClock, seconds_per_epoch: float, epochs: range) -> list[int]:
    """Run epochs of ``seconds_per_epoch`` each; the epochs after which a checkpoint was written."""
    saved = []
    for e in epochs:
        clock.t += seconds_per_epoch
        if policy.reason(e) is not None:
            policy.saved()
            saved.append(e)
    return saved


def test_the_default_writes_by_wall_clock_and_after_the_last_epoch():
    clock = FakeClock()
    policy = CheckpointPolicy.from_config(TrainerConfig(epochs=100), clock=clock)
    assert (policy.every_epochs, policy.every_s) == (0, 900.0)
    # 100 s epochs: every 9th epoch reaches 900 s since the last checkpoint; the last always.
    assert due_epochs(policy, clock, 100.0, range(1, 101)) == [*range(9, 100, 9), 100]


def test_the_interval_counts_from_the_last_checkpoint_not_the_epoch_grid():
    clock = FakeClock()
    policy = CheckpointPolicy(epochs=10, every_s=60.0, clock=clock)
    clock.t += 59.9
    assert policy.reason(1) is None
    clock.t += 0.1
    assert policy.reason(2) == "interval"
    clock.t += 30.0  # serialising took 30 s: the next interval starts when the write ended
    policy.saved()
    clock.t += 59.0
    assert policy.reason(3) is None
    clock.t += 1.0
    assert policy.reason(4) == "interval"


def test_epoch_interval_last_epoch_and_requested_epochs():
    clock = FakeClock()
    policy = CheckpointPolicy(epochs=10, every_epochs=4, every_s=0.0, at_epochs=[3, 5], clock=clock)
    reasons = {}
    for e in range(1, 11):
        clock.t += 10_000.0  # no wall-clock interval: time never triggers
        reasons[e] = policy.reason(e)
        if reasons[e]:
            policy.saved()
    assert reasons == {1: None, 2: None, 3: "requested", 4: "epochs", 5: "requested", 6: None, 7: None,
                       8: "epochs", 9: None, 10: "last"}


def test_both_intervals_disabled_leaves_the_last_epoch_and_requested_ones():
    clock = FakeClock()
    policy = CheckpointPolicy.from_config(TrainerConfig(epochs=6, checkpoint_every=0, checkpoint_every_s=0.0),
                                          at_epochs={2}, clock=clock)
    assert due_epochs(policy, clock, 1e6, range(1, 7)) == [2, 6]


def test_either_interval_triggers():
    clock = FakeClock()
    policy = CheckpointPolicy(epochs=20, every_epochs=5, every_s=250.0, clock=clock)
    # 100 s epochs: time triggers at 3 (300 s), the epoch interval at 5, time again at 8 (300 s after 5)...
    assert due_epochs(policy, clock, 100.0, range(1, 21)) == [3, 5, 8, 10, 13, 15, 18, 20]


def test_a_resumed_run_starts_its_interval_at_the_resume_and_keeps_the_epoch_grid():
    clock = FakeClock()
    first = CheckpointPolicy(epochs=20, every_epochs=4, every_s=250.0, clock=clock)
    assert due_epochs(first, clock, 100.0, range(1, 7)) == [3, 4]
    clock.t += 3600.0  # crashed after epoch 6, restarted an hour later from the epoch-4 checkpoint
    resumed = CheckpointPolicy(epochs=20, every_epochs=4, every_s=250.0, clock=clock)  # as fit makes it
    # The downtime does not make the first resumed epoch due (its state is the checkpoint's); the
    # interval runs from the resume, and the epoch grid stays on absolute epochs (8, 12).
    assert due_epochs(resumed, clock, 100.0, range(5, 13)) == [7, 8, 11, 12]


# Background uploads of interval checkpoints (mfer_platform.sweep.trainable): the real uploader on a
# local "storage_path", with Ray's part — tune.report copying a checkpoint into the trial folder
# before it returns, the latest one kept — played by FakeRay.
import json  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pyarrow.fs as pafs  # noqa: E402
import pytest  # noqa: E402

from mfer.train.loop import EpochEnd  # noqa: E402
from mfer_platform.sweep import trainable  # noqa: E402
from mfer_platform.layout import POINTER_FILE as POINTER  # noqa: E402
from mfer_platform.sweep.trainable import BackgroundUpload, Reporter, resume_folder  # noqa: E402


class FakeRay:
    def __init__(self, trial: Path) -> None:
        self.trial, self.reports, self.latest = trial, [], None

    def __call__(self, metrics: dict, folder) -> None:
        ckpt = None
        if folder is not None:
            ckpt = self.trial / f"checkpoint_{len(self.reports):06d}"
            shutil.copytree(folder, ckpt)
            self.latest = ckpt
        self.reports.append((metrics, ckpt))


def _end(tmp_path: Path, epoch: int, reason=None) -> EpochEnd:
    folder = None
    if reason is not None:
        folder = tmp_path / "run" / "checkpoints" / f"epoch_{epoch:04d}"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"epoch": epoch}))
        (folder / "best_model.safetensors").write_bytes(bytes(range(256)) * 40 * epoch)
    return EpochEnd(epoch, {"epoch": epoch}, folder, reason == "last", None, reason)


def _reporter(tmp_path: Path):
    uploads = BackgroundUpload(pafs.LocalFileSystem(), str(tmp_path / "exp"), "trial_0")
    ray = FakeRay(tmp_path / "exp" / "trial_0")
    return Reporter(uploads, ray, {}), uploads, ray


def _settle(uploads: BackgroundUpload) -> None:
    while uploads.in_flight():
        time.sleep(0.01)


def test_an_interval_checkpoint_uploads_in_the_background_and_a_later_report_points_to_it(tmp_path):
    reporter, uploads, ray = _reporter(tmp_path)
    remote = tmp_path / "exp" / "trial_0" / "uploads"
    reporter(_end(tmp_path, 1, "interval"))
    assert ray.reports[0][1] is None  # the report did not wait for the copy
    _settle(uploads)
    assert sorted(p.name for p in (remote / "epoch_0001").iterdir()) == ["best_model.safetensors", "meta.json"]
    reporter(_end(tmp_path, 2))  # the first report after the copy completed carries a pointer to it
    pointer = ray.reports[1][1]
    assert json.loads((pointer / POINTER).read_text()) == {"path": "trial_0/uploads/epoch_0001", "epoch": 1,
                                                           "reported_at": 2}
    assert json.loads((pointer / "meta.json").read_text()) == {"epoch": 1}  # the store reads it like any checkpoint
    assert "background_upload_s" in ray.reports[1][0]
    # A resume from the pointer gets the uploaded folder, and skips the epochs Ray already has.
    folder, skip, kept = resume_folder(pointer, uploads, tmp_path / "resume")
    assert skip == 2 and (folder / "best_model.safetensors").read_bytes() == bytes(range(256)) * 40
    assert kept == "trial_0/uploads/epoch_0001"  # this trial's own: deleted once superseded
    other = BackgroundUpload(pafs.LocalFileSystem(), str(tmp_path / "exp"), "trial_1")  # PBT exploiting trial_0
    assert resume_folder(pointer, other, tmp_path / "exploit")[2] is None  # trial_0's to delete, not trial_1's
    reporter(_end(tmp_path, 3, "interval"))
    reporter(_end(tmp_path, 4, "last"))  # synchronous: waits for epoch 3's upload, then supersedes it
    assert ray.latest == ray.reports[3][1] and (ray.latest / "best_model.safetensors").is_file()
    assert not uploads.in_flight() and list(remote.iterdir()) == []  # no upload left that Ray does not point to


def test_an_upload_in_flight_is_never_taken_as_a_checkpoint(tmp_path, monkeypatch):
    release, real_copy = threading.Event(), pafs.copy_files
    monkeypatch.setattr(trainable.pafs, "copy_files", lambda *a, **k: (release.wait(10), real_copy(*a, **k)))
    reporter, uploads, ray = _reporter(tmp_path)
    reporter(_end(tmp_path, 1, "requested"))  # a PBT boundary: persisted inside its report
    reporter(_end(tmp_path, 2, "interval"))
    reporter(_end(tmp_path, 3))
    assert uploads.in_flight() and ray.latest == ray.reports[0][1]  # a worker dying now resumes from epoch 1
    assert [c is not None for _, c in ray.reports] == [True, False, False]
    release.set()
    _settle(uploads)
    reporter(_end(tmp_path, 4))
    assert json.loads((ray.latest / POINTER).read_text())["epoch"] == 2
    # A worker killed with epoch 5's upload done but not reported: the retry removes it, keeps epoch 2's.
    reporter(_end(tmp_path, 5, "interval"))
    _settle(uploads)
    uploads.prune(keep=reporter.kept)
    assert [p.name for p in (tmp_path / "exp" / "trial_0" / "uploads").iterdir()] == ["epoch_0002"]


def test_a_failed_upload_fails_the_next_report_and_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(src, dest, **kwargs):
        Path(dest, "best_model.safetensors").write_bytes(b"half")
        raise OSError("connection reset")

    monkeypatch.setattr(trainable.pafs, "copy_files", broken)
    reporter, uploads, ray = _reporter(tmp_path)
    reporter(_end(tmp_path, 1, "interval"))
    _settle(uploads)
    with pytest.raises(RuntimeError, match="uploading a checkpoint to .*trial_0 failed: connection reset"):
        reporter(_end(tmp_path, 2))
    assert not (tmp_path / "exp" / "trial_0" / "uploads" / "epoch_0001").exists()


def test_reports_ray_already_holds_are_not_repeated_after_a_resume_from_a_pointer(tmp_path):
    reporter, _, ray = _reporter(tmp_path)
    reporter.skip_through = 3  # the pointer rode on epoch 3's report; the state is epoch 1's
    for epoch in (2, 3, 4):
        reporter(_end(tmp_path, epoch))
    assert [m["epoch"] for m, _ in ray.reports] == [4]  # one report per epoch, as training_iteration assumes
