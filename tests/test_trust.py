"""Issue 14 ("Trust"): values that used to hang, crash with a traceback or pass silently are refused
with one line naming the key, before any work starts; names stay inside storage_path."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mfer.config import ConfigError, TrainConfig
from mfer.data.prepare import to_prepare_config
from mfer.data.registry import DATASETS
from mfer.device import resolve_device
from mfer.validation import validate
from mfer_platform.layout import StoreError, safe_name
from mfer_platform.sweep.spaces import SpaceError, load_space


@pytest.mark.parametrize("section, field, value, words", [
    ("optim", "betas", [2.0, 3.0], "[0, 1)"),
    ("optim", "betas", [0.9], "two AdamW coefficients"),
    ("optim", "warmup_epochs", -5, ">= 0 epochs"),
    ("optim", "min_lr_ratio", 1.5, "[0, 1]"),
    ("trainer", "max_steps_per_epoch", -1, ">= 0"),
    ("trainer", "threads", -2, ">= 0"),
    ("data", "synthetic_train", 0, ">= 1 images"),
    ("data", "eval_batch_size", 0, ">= 1"),
])
def test_bad_train_value_is_refused_naming_the_key(section, field, value, words):
    cfg = TrainConfig()
    setattr(getattr(cfg, section), field, value)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert f"{section}.{field}=" in str(e.value) and words in str(e.value)


@pytest.mark.parametrize("size, fraction", [(5, 0.1), (140, 0.99)])
def test_a_class_without_train_or_validation_images_is_named(size, fraction, tmp_path):
    cfg = TrainConfig()
    cfg.data.synthetic_train, cfg.data.synthetic_test, cfg.data.val_fraction = size, 70, fraction
    cfg.data.cache_dir = str(tmp_path)
    with pytest.raises(ConfigError, match=r"no (train|validation) images for class\(es\) \w+"):
        DATASETS["synthetic"](cfg.data)


def test_cuda_without_a_gpu_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name, key in (("cuda", "trainer.device"), ("cuda:1", "device")):
        with pytest.raises(ConfigError, match=f"{key}='{name}'.*0 CUDA GPU"):
            resolve_device(name, key)
    assert resolve_device("auto").type == "cpu"


def test_prepare_refuses_cuda_without_gpu_and_an_unusable_output_dir(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        to_prepare_config({"input_dir": str(src), "output_dir": str(blocker), "device": "cpu"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device='cuda'"):
        to_prepare_config({"input_dir": str(src), "output_dir": str(tmp_path / "out"), "device": "cuda"})
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root writes everywhere: nothing to show
        pytest.skip("running as a user who can write read-only folders")
    with pytest.raises(ConfigError, match="not writable"):
        to_prepare_config({"input_dir": str(src), "output_dir": str(locked / "out"), "device": "cpu"})


@pytest.mark.parametrize("key, value, words", [
    ("scheduler.reduction_factor", 1, "> 1"),
    ("scheduler.reduction_factor", 0, "> 1"),
    ("scheduler.reduction_factor", -2, "> 1"),
    ("scheduler.grace_period", 0, ">= 1"),
    ("resources.cpu", "abc", "a number > 0"),
    ("resources.gpu", -1, ">= 0"),
    ("search.seeds", 0, "integer >= 1"),
    ("search.max_concurrent", 1.5, "integer >= 1"),
    ("search.time_budget_s", 0, "> 0"),
])
def test_bad_sweep_setting_is_refused_before_any_plan(key, value, words):
    with pytest.raises(SpaceError) as e:
        load_space("quickstart", {key: value})
    assert f"quickstart.yaml: {key}: must be" in str(e.value) and words in str(e.value)


def test_pbt_and_hyperband_edges_are_checked(tmp_path):
    space = tmp_path / "pbt.yaml"
    space.write_text("base: [model=mfer_atto, data=synthetic, trainer=smoke]\n"
                     "params: {optim.lr: {loguniform: [1.0e-4, 1.0e-2]}}\n"
                     "search: {algorithm: random, num_samples: 2}\n"
                     "scheduler: {name: pbt, perturbation_interval: 0}\n")
    with pytest.raises(SpaceError, match="scheduler.perturbation_interval: must be an integer >= 1"):
        load_space(str(space))
    with pytest.raises(SpaceError, match="scheduler.reduction_factor"):
        load_space(str(space), {"scheduler.name": "hyperband", "scheduler.reduction_factor": 1})


def test_params_as_a_list_and_identical_trials_are_refused(tmp_path):
    listed = tmp_path / "listed.yaml"
    listed.write_text("base: [model=mfer_atto, data=synthetic]\nparams: [loss.weight]\n")
    with pytest.raises(SpaceError, match="listed.yaml: params: must map dotted TrainConfig paths"):
        load_space(str(listed))
    same = tmp_path / "same.yaml"
    same.write_text("base: [model=mfer_atto, data=synthetic]\nsearch: {algorithm: random, num_samples: 3}\n"
                    "scheduler: {name: none}\n")
    with pytest.raises(SpaceError, match="3 trials with no params, no rows and one seed"):
        load_space(str(same))
    assert load_space(str(same), {"search.num_samples": 1}).trial_count() == 1  # one run stays allowed


def test_reduction_factor_one_dry_run_exits_2_without_hanging(tmp_path, cli):
    out = cli("mfer_platform.cli.sweep", "search_space=quickstart", "scheduler.reduction_factor=1", "dry_run=true",
              f"storage_path={tmp_path}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "scheduler.reduction_factor: must be a number > 1, got 1" in out.stderr


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "results", ".hidden", "a..b", "x" * 129])
def test_unsafe_names_are_refused(name):
    with pytest.raises(StoreError, match="name="):
        safe_name(name)


def test_safe_names_pass():
    for name in ("quickstart", "paper-component_ablation", "demo.v2", "1"):
        assert safe_name(name) == name


@pytest.mark.parametrize("command", ["sweep", "report", "export", "figures"])
def test_every_cli_taking_a_name_refuses_an_unsafe_one(command, tmp_path, cli):
    extra = ["search_space=quickstart", "dry_run=true"] if command == "sweep" else [f"output_dir={tmp_path / 'out'}"]
    argv = ["name=../escape", f"storage_path={tmp_path / 'store'}", *extra]
    if command == "export":  # mfer-export's one run as the installed script (it refuses before torch loads)
        out = subprocess.run([str(Path(sys.executable).with_name("mfer-export")), *argv], capture_output=True,
                             text=True, timeout=120)
    else:
        out = cli(f"mfer_platform.cli.{command}", *argv)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "name='../escape'" in out.stderr
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("args, words", [
    (["batch_size=0"], "batch_size=0: must be an integer >= 1"),
    (["batch_size=-1"], "batch_size=-1: must be an integer >= 1"),
    ([], "no image files there"),
])
def test_predict_refuses_bad_batch_sizes_and_an_empty_folder(args, words, tmp_path, cli):
    (tmp_path / "empty").mkdir()
    out = cli("mfer_platform.cli.predict", f"model_dir={tmp_path / 'none'}", f"inputs={tmp_path / 'empty'}", *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert words in out.stderr


def test_fit_on_a_checkpoint_holding_every_epoch_returns_the_stored_result(tmp_path):
    """The driver died after the last epoch's checkpoint, before Ray marked the trial done: the resumed
    trial trains nothing, reports the final result once, and returns what the first run returned."""
    from mfer.train import fit
    from mfer.train.checkpoint import latest_checkpoint

    from .conftest import TINY, compose_train

    cfg = compose_train(*TINY)
    first = fit(cfg, tmp_path / "first")
    final = latest_checkpoint(tmp_path / "first")
    seen = []
    again = fit(cfg, tmp_path / "again", on_epoch=seen.append, resume_from=final)
    assert [(e.epoch, e.is_last, e.checkpoint_dir) for e in seen] == [(2, True, None)]
    assert seen[0].metrics["test_acc"] == first["test_acc"] and seen[0].metrics["epoch"] == 2
    for key in ("val_acc", "test_acc", "test_confusion", "val_confusion", "selected_epoch", "history"):
        assert again[key] == first[key], key
    assert not (tmp_path / "again" / "checkpoints").exists()  # nothing trained, nothing written


def test_fit_tests_a_final_checkpoint_whose_test_never_ran(tmp_path):
    from mfer.train import fit
    from mfer.train.checkpoint import latest_checkpoint

    from .conftest import TINY, compose_train

    cfg = compose_train(*TINY)
    first = fit(cfg, tmp_path / "first")
    final = latest_checkpoint(tmp_path / "first")
    meta = json.loads((final / "meta.json").read_text())
    del meta["test"]  # killed between the checkpoint and the test
    (final / "meta.json").write_text(json.dumps(meta))
    again = fit(cfg, tmp_path / "again", resume_from=final)
    assert again["test_acc"] == pytest.approx(first["test_acc"]) and "test" in json.loads((final / "meta.json").read_text())


HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def _no_markup_from_user(page: str) -> None:
    assert "alert(" in page  # the hostile text is on the page, as text
    assert "<script>alert" not in page and "<img src=x" not in page


def test_every_html_page_escapes_user_strings(fake_sweep, tmp_path):
    """Names, the record's description fields and plotly's embedded JSON carry a hostile string as text."""
    from mfer_platform.report.figures.sweep import FigureOptions, write_sweep_figures
    from mfer_platform.report.sweep_report import make_report

    from .fake_sweep import EXPERIMENT, clone

    storage = clone(fake_sweep, tmp_path / "sweeps")
    hostile_name = "<b>x<"  # a folder name can hold markup (no '/'); the CLIs refuse it, the pages escape it
    os.rename(storage / EXPERIMENT, storage / hostile_name)
    record_path = storage / hostile_name / "mfer_sweep.json"
    record = json.loads(record_path.read_text())
    record.update(name=hostile_name, search_space=HOSTILE, created=HOSTILE, description=HOSTILE)
    os.remove(record_path)  # a hard link to the shared fixture: replace, never write through
    record_path.write_text(json.dumps(record))
    page = make_report(str(storage), hostile_name, tmp_path / "report")["html"].read_text()
    _no_markup_from_user(page)
    assert "<b>x<" not in page and "&lt;b&gt;x&lt;" in page
    figures = write_sweep_figures(str(storage), hostile_name, tmp_path / "figures",
                                  FigureOptions(max_points=40, per_class=1, top_k=2))["html"].read_text()
    assert "<h1>Figures: &lt;b&gt;x&lt;</h1>" in figures


def test_plotly_json_cannot_close_its_script(tmp_path):
    import plotly.graph_objects as go

    from mfer_platform.report.pages import plotly_sections, write_page

    fig = go.Figure(go.Bar(x=[HOSTILE, "</script><script>alert(3)</script>"], y=[1, 2], name=HOSTILE),
                    layout=dict(title=HOSTILE))
    page = write_page(tmp_path / "p.html", HOSTILE, "".join(plotly_sections({HOSTILE: fig}))).read_text()
    assert "<script>alert" not in page and "</script><script>" not in page
    assert page.count("<title>&lt;script&gt;") == 1


def _replace(path, data: bytes) -> None:
    """Write a file of a hard-linked clone without writing through to the shared fixture."""
    os.remove(path)
    path.write_bytes(data)


def test_one_corrupt_file_leaves_out_its_trial_or_epoch_and_names_it(fake_sweep, tmp_path, caplog):
    from mfer_platform.results import store

    from .fake_sweep import EXPERIMENT, clone

    storage = clone(fake_sweep, tmp_path / "sweeps")
    trials = sorted((storage / EXPERIMENT).glob("run_trial_*"))
    bad_meta = next(trials[0].glob("checkpoint_*")) / "meta.json"
    _replace(bad_meta, b'{"config": {')  # invalid JSON
    results = trials[1] / "result.json"
    lines = results.read_bytes().splitlines(keepends=True)
    _replace(results, b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the driver died mid-line
    got = store.collect(str(storage), EXPERIMENT)
    ids = got.trials.column("trial_id").to_pylist()
    assert len(ids) == len(trials) - 1 and "00000000" not in ids
    epochs = [r["epoch"] for r in got.epochs.to_pylist() if r["trial_id"] == "00000001"]
    assert epochs == list(range(1, len(lines)))  # the partial last epoch only is gone
    assert f"{bad_meta} is not valid JSON" in caplog.text and f"{results}:{len(lines)}: not a JSON line" in caplog.text


def test_export_goes_on_past_a_truncated_checkpoint(fake_sweep, tmp_path, caplog):
    from mfer_platform.serving.export import export_best

    from .fake_sweep import EXPERIMENT, clone

    storage = clone(fake_sweep, tmp_path / "sweeps")
    first = export_best(str(storage), EXPERIMENT, tmp_path / "first")
    best_id = json.loads((first / "metrics.json").read_text())["trial"]["trial_id"]
    weights = next((storage / EXPERIMENT).glob(f"run_trial_{best_id}_*/checkpoint_*/best_model.safetensors"))
    _replace(weights, weights.read_bytes()[:1000])
    second = export_best(str(storage), EXPERIMENT, tmp_path / "second")
    assert json.loads((second / "metrics.json").read_text())["trial"]["trial_id"] != best_id
    assert "best_model.safetensors is corrupt or truncated" in caplog.text and str(weights.parent) in caplog.text


class _FakeTrial:
    """What the ledger reads of a Ray Trial."""

    def __init__(self, trial_id: str, path: str, config: dict, error: str = ""):
        from types import SimpleNamespace

        self.trial_id, self.path, self.config, self._error = trial_id, path, config, error
        self.status = "TERMINATED"
        self.run_metadata = SimpleNamespace(num_failures=0)
        self.last_result = {"val_acc": 0.5, "config": config, "epoch": 2}

    def get_error(self):
        return self._error


def test_the_store_reads_the_ledger_never_rays_pickled_state(fake_sweep, tmp_path):
    """A trial that died before params.json is listed with its reason; an experiment_state file (Ray's
    cloudpickle) beside it is never opened."""
    from mfer_platform.results import store
    from mfer_platform.sweep.ledger import TrialLedger

    from .fake_sweep import CRASHED, EXPERIMENT, FACTOR, clone

    storage = clone(fake_sweep, tmp_path / "sweeps")
    exp = storage / EXPERIMENT
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_bytes(b"\x80\x04not json, a pickle")
    ledger = TrialLedger(str(storage), EXPERIMENT)
    ledger.setup()
    lost = _FakeTrial("lost0001", str(exp / "run_trial_lost0001_9"), {FACTOR: CRASHED[0], "trainer.seed": 7},
                      "Traceback ...\nRuntimeError: worker died: node lost\n")
    ledger.on_trial_start(0, [], lost)
    ledger.on_trial_error(0, [], lost)
    got = {r["trial_id"]: r for r in store.collect(str(storage), EXPERIMENT).trials.to_pylist()}
    assert len(got) == len(list(exp.glob("run_trial_*"))) + 1
    assert got["lost0001"]["status"] == "error" and got["lost0001"]["error"] == "RuntimeError: worker died: node lost"
    assert got["lost0001"]["seed"] == 7


def test_extending_a_sweep_reads_the_ledger(tmp_path):
    from mfer_platform.sweep.ledger import TrialLedger
    from mfer_platform.sweep.runner import finished_trials

    ledger = TrialLedger(str(tmp_path), "s")
    ledger.setup()
    a, b = _FakeTrial("a", str(tmp_path / "s" / "a"), {"x": 1}), _FakeTrial("b", str(tmp_path / "s" / "b"), {"x": 2})
    ledger.on_trial_start(0, [], a)
    ledger.on_trial_complete(0, [], a)
    ledger.on_trial_start(0, [], b)
    assert finished_trials(str(tmp_path), "s") == []  # b still running
    ledger.on_trial_complete(0, [], b)
    assert finished_trials(str(tmp_path), "s") == []  # the driver died before Tune's run returned
    resumed = TrialLedger(str(tmp_path), "s")
    resumed.setup()  # a resumed driver continues the same ledger
    resumed.on_experiment_end([a, b])
    done = finished_trials(str(tmp_path), "s")
    assert [c for c, _ in done] == [{"x": 1}, {"x": 2}] and all(r["val_acc"] == 0.5 for _, r in done)
    with open(tmp_path / "s" / "mfer_trials.jsonl", "ab") as f:
        f.write(b'{"trial_id": "c", "ev')  # a partial line from a dying driver is skipped
    assert len(finished_trials(str(tmp_path), "s")) == 2
    b.status = "RUNNING"
    resumed.on_experiment_end([a, b])  # SIGINT: Tune returned with b unfinished
    assert finished_trials(str(tmp_path), "s") == []


def test_an_interrupted_sweep_exits_130_with_the_command_that_resumes_it(tmp_path, monkeypatch, capsys):
    import mfer_platform.cli.sweep as cli
    from mfer_platform.sweep.runner import SweepInterrupted

    def interrupted(req):
        raise SweepInterrupted(f"sweep {req.name!r} interrupted")

    monkeypatch.setattr("mfer_platform.sweep.runner.run_sweep", interrupted)  # the CLI imports it when it runs
    argv = ["search_space=quickstart", "name=demo", f"storage_path={tmp_path}", "search.num_samples=2"]
    monkeypatch.setattr(sys, "argv", ["mfer-sweep", *argv])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 130 and "sweep 'demo' interrupted" in err
    assert f"resume with: mfer-sweep {' '.join(argv)}" in err
