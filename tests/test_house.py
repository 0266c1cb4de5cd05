"""The architecture, checked: import layers (pyproject's import-linter contracts), short functions,
and the README's package map matching the tree."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mfer", "mfer_platform")
MAX_FUNCTION_LINES = 60


def test_imports_point_one_way():
    """mfer never imports mfer_platform or Ray; mfer.config imports no registry; mfer_platform's
    layers (cli > report > serving > results | sweep > overrides > layout | keys) only import down."""
    linter = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def test_a_layer_violation_is_caught(tmp_path):
    """The contracts bite: a copy of the tree where the results layer imports the sweep layer fails."""
    for pkg in PACKAGES:
        subprocess.run(["cp", "-r", str(ROOT / pkg), str(tmp_path / pkg)], check=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    bad = tmp_path / "mfer_platform" / "results" / "stats.py"
    bad.write_text(bad.read_text() + "\nfrom mfer_platform.sweep import plan  # noqa\n")
    linter = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(linter), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0 and "mfer_platform.results.stats -> mfer_platform.sweep.plan" in out.stdout, out.stdout


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_is_longer_than_60_lines(package):
    long = [f"{p.relative_to(ROOT)}:{line} {name} ({n} lines)"
            for p in sorted((ROOT / package).rglob("*.py")) for name, line, n in _functions(p) if n > MAX_FUNCTION_LINES]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_readme_package_map_matches_the_tree():
    """Every package folder is in the README's layout map, and every module the map names exists."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    section = section[:section.index("\n## ", 4)]
    named = set(re.findall(r"`((?:mfer|mfer_platform)/[\w/]*)`", section))
    packages = {f"{p.parent.relative_to(ROOT)}/" for pkg in PACKAGES for p in (ROOT / pkg).rglob("__init__.py")}
    assert packages - named == set(), f"packages missing from README's layout map: {sorted(packages - named)}"
    missing = {n for n in named if not (ROOT / n).exists() and not (ROOT / f"{n.rstrip('/')}.py").exists()}
    assert not missing, f"README's layout map names what the tree lacks: {sorted(missing)}"
