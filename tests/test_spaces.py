"""Search spaces: every shipped file compiles; each class of bad file fails before launch, naming its key."""
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mfer_platform.sweep import plan
from mfer_platform.overrides import decode_choice, encode_choice
from mfer_platform.sweep.spaces import SearchSpace, SpaceError, load_space, spaces_root

BAD = Path(__file__).parent / "fixtures" / "bad_spaces"


@pytest.mark.parametrize("name, key, words", [
    ("unknown_param", "params.loss.wieght", "did you mean loss.weight"),
    ("impossible_range", "params.optim.lr.loguniform", "impossible range"),
    ("nonpositive_log", "params.loss.weight.loguniform", "low > 0"),
    ("unknown_variant", "params.model.attn_variant", "'sparse'"),
    ("bad_fraction", "params.model.msc_fractions", "(0, 1]"),
    ("scheduler_mismatch", "scheduler.name", "pbt"),
    ("grid_with_optuna", "search.algorithm", "grid"),
    ("unknown_section_key", "search.algoritm", "did you mean algorithm"),
    ("bad_base", "base", "mfer_huge"),
    ("unknown_objective", "search.objectives.val_compactnes", "did you mean val_compactness"),
])
def test_bad_space_fails_naming_the_key(name, key, words):
    with pytest.raises(SpaceError) as e:
        load_space(str(BAD / f"{name}.yaml"))
    assert f"{name}.yaml: {key}" in str(e.value) and words in str(e.value)


@pytest.fixture(scope="module")
def shipped() -> dict[str, SearchSpace]:
    """Every shipped space by name, compiled once (about 20 s): the tests taking it only read them."""
    names = sorted(str(p.relative_to(spaces_root()).with_suffix("")) for p in spaces_root().rglob("*.yaml"))
    return {name: load_space(name) for name in names}


def test_every_shipped_space_compiles(shipped):
    assert "quickstart" in shipped
    for space in shipped.values():
        ps = plan.param_space(space)
        assert set(space.factors) <= set(ps)
        assert space.trial_count() >= 1


def _documented_commands() -> list[tuple[str, str]]:
    """(file, command) for every ``mfer-sweep ...`` line the shipped spaces document in comments."""
    return [(p.name, line.lstrip("# ")) for p in sorted(spaces_root().rglob("*.yaml"))
            for line in p.read_text().splitlines() if line.lstrip("# ").startswith("mfer-sweep ")]


def test_every_documented_sweep_command_parses_and_compiles():
    """The commands the spaces' comments show are what users paste: Hydra must parse them (list
    overrides need quoted elements) and the space they ask for must compile."""
    from hydra import compose, initialize_config_module

    from mfer_platform.cli.sweep import requested_space

    commands = _documented_commands()
    assert len(commands) >= 17, commands  # 3 per paper study, 2 for ferplus_labels
    with initialize_config_module("mfer_platform.conf", version_base="1.3"):
        composed = [compose("sweep", overrides=shlex.split(command)[1:]) for _, command in commands]
    for (file, command), cfg in zip(commands, composed):  # compiling composes mfer/conf: outside the block
        assert requested_space(cfg).trial_count() >= 1, (file, command)


def test_relative_paths_in_base_are_the_users_not_the_trials(tmp_path, monkeypatch):
    """Ray runs trials in another working directory: data=... data.root=data/x must still mean the
    folder beside the user, so the sweep makes it absolute before launch (URIs stay as they are)."""
    monkeypatch.chdir(tmp_path)
    space = load_space("quickstart", extra_base=["++data.cache_dir=cache", "model.pretrained_file=w.safetensors"])
    assert space.base_dict["data"]["cache_dir"] == str(tmp_path / "cache")
    assert space.base_dict["model"]["pretrained_file"] == str(tmp_path / "w.safetensors")
    assert space.base_config.data.cache_dir == str(tmp_path / "cache")
    assert load_space("quickstart", extra_base=["++data.cache_dir=s3://b/c"]).base_dict["data"]["cache_dir"] == "s3://b/c"


def test_list_choices_survive_optuna_encoding():
    v = [0.5, 0.75, 1.0]
    assert decode_choice(encode_choice(v)) == v and encode_choice("ds") == "ds"


def test_live_progress_counts_every_trial_tune_launches(shipped):
    """The live table's "of N": a grid study's rows and seeds multiply Tune's num_samples (1)."""
    for name, space in shipped.items():
        assert plan.trials_launched(space, plan.num_samples(space)) == space.trial_count(), name
    assert plan.trials_launched(shipped["ferplus_labels"], 1) == 12  # 4 rows x 3 seeds


def test_asha_estimate_is_below_the_upper_bound():
    space = load_space("quickstart")
    upper, expected = plan.estimated_trial_epochs(space)
    assert upper == space.trial_count() * space.epochs() and expected < upper


def test_unsatisfiable_resources_fail_before_any_trial(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mfer_platform.cli.sweep", f"search_space={BAD / 'unsatisfiable_resources.yaml'}",
         "name=never", f"storage_path={tmp_path}", "cluster.num_cpus=1"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "resources" in out.stderr and "GPU" in out.stderr
    assert not (tmp_path / "never").exists()  # nothing launched, nothing written


def test_dry_run_prints_the_plan(tmp_path, cli):
    out = cli("mfer_platform.cli.sweep", "search_space=quickstart", "dry_run=true", f"storage_path={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert "8 trials" in out.stdout and "trial-epochs" in out.stdout and "dry run" in out.stdout


def test_unwritable_storage_path_fails_before_launch(tmp_path, cli):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = cli("mfer_platform.cli.sweep", "search_space=quickstart", f"storage_path={blocker / 'sweeps'}",
              "cluster.num_cpus=1")
    assert out.returncode == 2, out.stderr
    assert "storage_path=" in out.stderr and "not writable" in out.stderr


def test_unreadable_dataset_fails_before_anything_is_written(tmp_path, ray_env):
    out = subprocess.run([sys.executable, "-m", "mfer_platform.cli.sweep", "search_space=ferplus_labels", "scale=smoke",
                          "name=noroot", f"storage_path={tmp_path / 'sweeps'}", "cluster.num_cpus=1",
                          f'overrides=["data.name=ferplus","data.root={tmp_path / "missing"}"]'],
                         env=ray_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert f"data.root={tmp_path / 'missing'} is not a folder" in out.stderr
    assert not (tmp_path / "sweeps" / "noroot").exists()  # no half-made experiment to trip a re-run
