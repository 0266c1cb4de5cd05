"""Every command answers ``--help`` in under 3 s with its own options and their comments, and a
missing required key is one line naming it (exit 2) — both before Hydra, torch or Ray is imported."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

# module -> keys its --help must mention (its own options, from its YAML / the schema)
COMMANDS = {
    "mfer_platform.cli.sweep": ["search_space", "storage_path", "dry_run", "max_failures", "wide", "scale"],
    "mfer_platform.cli.report": ["storage_path", "name", "output_dir", "baseline", "top_k", "figures", "wide"],
    "mfer_platform.cli.figures": ["name", "images", "max_points", "perplexity", "per_class", "device"],
    "mfer_platform.cli.export": ["storage_path", "name", "output_dir", "baseline"],
    "mfer_platform.cli.predict": ["model_dir", "inputs", "align", "batch_size", "device"],
    "mfer_platform.cli.status": ["storage_path", "name", "wide"],
    "mfer.cli.train": ["model.{backbone", "attn_variant", "optim.{lr", "trainer.{epochs", "paper_rafdb"],
    "mfer.cli.prepare": ["input_dir", "output_dir", "image_size", "margin"],
}
HEAVY = ("hydra", "torch", "ray", "omegaconf")


def _run(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    return time.perf_counter() - t0, out


@pytest.mark.parametrize("module", COMMANDS)
def test_help_is_fast_and_names_the_commands_own_options(module):
    # best of 2: the machine is shared, a single slow start is not the command's doing
    timings = [_run("-m", module, "--help") for _ in range(2)]
    seconds, out = min(timings, key=lambda t: t[0])
    assert out.returncode == 0, out.stderr
    assert seconds < 3.0, f"{module} --help took {seconds:.1f} s"
    for key in COMMANDS[module]:
        assert key in out.stdout, f"{module} --help does not mention {key!r}:\n{out.stdout}"
    assert "#" in out.stdout and "hydra:" not in out.stdout  # the YAML's comments, not Hydra's plumbing


@pytest.mark.parametrize("module", COMMANDS)
def test_help_imports_neither_hydra_nor_torch_nor_ray(module):
    code = (f"import sys; sys.argv = ['x', '--help']\nimport {module} as m\ntry:\n    m.main()\nexcept SystemExit:\n"
            f"    pass\nprint('LOADED', *sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r})))")
    _, out = _run("-c", code)
    assert out.stdout.strip().splitlines()[-1] == "LOADED", out.stdout[-500:] + out.stderr[-2000:]


BAD_SPACES = Path(__file__).parent / "fixtures" / "bad_spaces"


@pytest.mark.parametrize("argv, words", [
    (["search_space=quickstart", "name=../escape"], "name='../escape'"),
    ([f"search_space={BAD_SPACES / 'unknown_param.yaml'}", "name=x"], "did you mean loss.weight"),
    ([f"search_space={BAD_SPACES / 'unknown_section_key.yaml'}", "name=x"], "did you mean algorithm"),
    (["search_space=quickstart", "scheduler.reduction_factor=1", "dry_run=true"], "scheduler.reduction_factor"),
])
def test_a_refused_sweep_imports_neither_torch_nor_scipy(argv, words, tmp_path):
    """Bad arguments and a space's bad keys or numbers are refused before the model and the statistics
    load (10-20 s): only the space's values need the registries."""
    code = (f"import sys; sys.argv = ['mfer-sweep', *{[*argv, f'storage_path={tmp_path}']!r}]\n"
            f"import mfer_platform.cli.sweep as m\ntry:\n    m.main()\nexcept SystemExit as e:\n"
            f"    print('EXIT', e.code, *sorted({{n.split('.')[0] for n in sys.modules}} & {{'torch', 'scipy', 'ray'}}))")
    _, out = _run("-c", code)
    assert out.stdout.strip().splitlines()[-1] == "EXIT 2", out.stdout[-500:] + out.stderr[-2000:]
    assert words in out.stderr, out.stderr


@pytest.mark.parametrize("module, given, missing", [
    ("mfer_platform.cli.report", ["storage_path=sweeps"], ["name="]),
    ("mfer_platform.cli.export", [], ["name="]),
    ("mfer_platform.cli.figures", ["output_dir=x"], ["name="]),
    ("mfer_platform.cli.predict", ["inputs=a.jpg"], ["model_dir="]),
    ("mfer.cli.prepare", [], ["input_dir=", "output_dir="]),
])
def test_a_missing_required_key_is_one_line_naming_it(module, given, missing):
    seconds, out = _run("-m", module, *given)
    assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert all(key in lines[0] for key in missing) and "required" in lines[0]
    assert seconds < 10  # answered before the stack is imported


def test_a_given_key_is_not_reported_missing(tmp_path):
    """``+name=``/``name=`` both count as given: the command goes on to its own check (no such sweep)."""
    _, out = _run("-m", "mfer_platform.cli.status", f"storage_path={tmp_path}", "name=nothing-here")
    assert out.returncode == 2 and "required" not in out.stderr and "nothing-here" in out.stderr
