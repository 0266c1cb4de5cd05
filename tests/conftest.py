"""Shared fixtures: a private packed-data cache, tiny configs composed from the real Hydra tree, and a
guard that keeps every test inside the repository.

The guard is an audit hook on ``open``, ``os.listdir`` and ``os.scandir``: a test that reads a path
*beside* the clone (under its parent folder, outside the repository, the temporary folder and the
Python installation; hidden folders such as ``~/.cache`` excepted) fails there, naming the path,
because a user's clone has nothing beside it. Real faces come from ``tests/fixtures/london_faces``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LONDON_FACES = ROOT / "tests" / "fixtures" / "london_faces"  # CC BY 4.0 crops and photos, see its README.md
_GUARDED_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})
_BESIDE = str(ROOT.parent)
_allowed = [str(ROOT), os.path.realpath(tempfile.gettempdir()), tempfile.gettempdir(), sys.prefix,
            sys.base_prefix, sys.exec_prefix, *(p for p in sys.path if p and not ROOT.is_relative_to(p))]
outside_reads: list[str] = []  # every guarded path seen, kept even if the test swallowed the error


class OutsideRepository(PermissionError):
    """A test read a file beside the repository, which a user's clone does not have."""


def beside_repository(path: str) -> bool:
    if not path.startswith(_BESIDE + os.sep) or path[len(_BESIDE) + 1:].startswith("."):
        return False
    return not any(path == a or path.startswith(a.rstrip(os.sep) + os.sep) for a in _allowed)


def _guard(event: str, args: tuple) -> None:
    if event not in _GUARDED_EVENTS or not args or isinstance(args[0], int) or args[0] is None:
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    if beside_repository(path):
        outside_reads.append(path)
        raise OutsideRepository(f"{path}: tests must not read outside the repository ({ROOT}); ship what the "
                                "test needs under tests/fixtures (with its licence) or generate it")


if ROOT.parent != Path(ROOT.anchor):  # a clone at the filesystem root has nothing "beside" it to guard
    sys.addaudithook(_guard)


def pytest_configure(config) -> None:
    if config.option.basetemp:  # tmp_path lives there instead of the system temporary folder
        _allowed.append(os.path.abspath(str(config.option.basetemp)))


@pytest.fixture(autouse=True)
def _reads_stay_in_the_repository():
    start = len(outside_reads)
    yield
    if len(outside_reads) > start:
        pytest.fail(f"read outside the repository: {outside_reads[start:][:3]}", pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the packed-array cache of the test session away from the user's ~/.cache/mfer."""
    os.environ["MFER_CACHE"] = str(tmp_path_factory.mktemp("mfer-cache"))
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def compose_train(*overrides: str):
    """A TrainConfig composed from mfer/conf exactly as ``mfer-train`` would, plus overrides."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from mfer.validation import to_train_config

    with initialize_config_module("mfer.conf", version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    return to_train_config(OmegaConf.to_container(cfg, resolve=True))


def fit_keeping(cfg, tmp_path: Path, epochs) -> tuple[dict, dict[int, Path]]:
    """``fit(cfg)`` into ``tmp_path/full``, keeping a copy of the checkpoint of each epoch in ``epochs``
    (fit deletes older ones as it goes) to resume from: (metrics, {epoch: copied folder})."""
    import shutil

    from mfer.train import fit

    kept: dict[int, Path] = {}

    def keep(end) -> None:
        if end.epoch in epochs:
            kept[end.epoch] = Path(shutil.copytree(end.checkpoint_dir, tmp_path / f"epoch_{end.epoch}"))

    return fit(cfg, tmp_path / "full", on_epoch=keep), kept


TINY = (
    "data.image_size=32", "data.synthetic_train=140", "data.synthetic_test=70", "data.batch_size=16",
    "data.val_fraction=0.2", "trainer.epochs=2", "trainer.device=cpu",
)


@pytest.fixture
def tiny_cfg():
    return compose_train(*TINY)


@pytest.fixture(scope="session")
def fake_sweep(tmp_path_factory, _private_cache):
    """A storage folder holding one really-trained sweep experiment (tests/fake_sweep.py), built once.
    Tests that write into it work on ``fake_sweep.clone(...)``."""
    from .fake_sweep import build

    return build(tmp_path_factory.mktemp("sweeps"))


@pytest.fixture
def ray_env(tmp_path):
    """A private Ray temp dir (short: it holds unix sockets) and the cleanup of its processes."""
    from .sweeps import kill_processes_mentioning

    token = f"/tmp/rt{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "RAY_TMPDIR": token, "PYTHONUNBUFFERED": "1"}
    yield env
    kill_processes_mentioning(token)


@pytest.fixture
def cli(monkeypatch, capsys, caplog) -> Callable[..., subprocess.CompletedProcess]:
    """Run a command's ``main`` in this process: ``cli("mfer_platform.cli.sweep", "name=x")`` gives the
    exit code, stdout and stderr as ``subprocess.run`` would, without a new interpreter importing torch and
    timm again (8-12 s a run) — for tests of what a command refuses. Warnings logged are added to stderr,
    where the platform's commands (no log handler: logging's last resort) print them; the handlers Hydra's
    job logging adds to the root logger are taken off again. The console scripts stay tested as subprocesses by test_cli_help
    and one real run of each command."""
    import importlib
    import logging

    def run(module: str, *argv: str) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", [module, *argv])
        caplog.clear()
        root = logging.getLogger()
        handlers, level, code = root.handlers[:], root.level, 0
        try:
            importlib.import_module(module).main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        finally:
            for added in set(root.handlers) - set(handlers):
                added.close()
            root.handlers[:] = handlers
            root.setLevel(level)
        out = capsys.readouterr()
        logged = "".join(f"{r.getMessage()}\n" for r in caplog.records if r.levelno >= logging.WARNING)
        return subprocess.CompletedProcess([module, *argv], code, out.out, out.err + logged)

    return run
