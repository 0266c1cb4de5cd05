"""The suite passes on any clone: no test reads beside the repository (the audit guard in conftest.py
fails such a read where it happens), and no test names a path outside it."""
from __future__ import annotations

import re

import pytest

from . import conftest
from .conftest import ROOT, OutsideRepository, beside_repository

# What a path out of the clone looks like in a test's source: the folder above the repository root, the
# workspace folder this project was developed beside, or an absolute path into it.
OUTSIDE = re.compile(r"parents\[1\]\.parent|ROOT\.parent\s*/|\.\./shared|\bshared/data\b|[\"']/work/")


def test_no_test_names_a_path_outside_the_repository():
    offenders = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in sorted((ROOT / "tests").rglob("*.py"))
                 if p.name != "test_portable.py"
                 for i, line in enumerate(p.read_text().splitlines(), start=1) if OUTSIDE.search(line)]
    assert not offenders, "tests must use what the repository ships (tests/fixtures) or generates:\n" + "\n".join(offenders)


def test_the_guard_fails_a_read_beside_the_repository():
    probe = ROOT.parent / "not-in-the-repository" / "faces.csv"
    if ROOT.parent == ROOT.parent.parent or not beside_repository(str(probe)):
        pytest.skip("this clone sits at the filesystem root or inside the temporary folder or the Python "
                    "installation: nothing beside it can be told from what tests may read")
    start = len(conftest.outside_reads)
    with pytest.raises(OutsideRepository, match="tests must not read outside the repository"):
        open(probe)  # refused before the file system is even asked
    assert conftest.outside_reads[start:] == [str(probe)]
    del conftest.outside_reads[start:]  # this test's own probe is not a failure of it
    assert beside_repository(str(probe)) and not beside_repository(str(ROOT / "tests" / "fixtures"))
    assert not beside_repository(str(ROOT.parent / ".cache" / "x"))  # hidden folders: caches, configs
