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
