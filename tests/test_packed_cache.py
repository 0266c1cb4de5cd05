"""The packed cache: built once per node, one shared copy for concurrent trials, keyed by content."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from mfer.data.batches import iterate_batches
from mfer.data.synthetic import write_imagefolder, write_rafdb

from .conftest import LONDON_FACES
from .fer_fixtures import faces, index_of_entry, load, packed

RAF = LONDON_FACES / "raf_format"  # real faces in RAF-DB layout, shipped in the repository (2 classes)


@pytest.fixture(scope="module")
def raf7(tmp_path_factory):
    """RAF-DB layout with all seven classes, enough to carve a validation split as trials do."""
    return write_rafdb(tmp_path_factory.mktemp("raf7"), faces(28, 32, seed=1), faces(14, 32, seed=2))

# One "trial": load the dataset, read every train image, wait for its sibling, then measure the
# resident (RSS) and proportional (PSS) memory of its mapping of the packed train file.
TRIAL = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from mfer.config import DataConfig
    from mfer.data.memory import mapped_memory
    from mfer.data.registry import load_dataset
    root, barrier = sys.argv[1], Path(sys.argv[2])
    images = load_dataset(DataConfig(name="rafdb", root=root, image_size=64)).train.images
    checksum, mapped = int(images.sum()), str(images.filename)

    def wait(tag):
        (barrier / f"{tag}-{os.getpid()}").touch()
        while len(list(barrier.glob(tag + "-*"))) < 2:
            time.sleep(0.02)

    wait("ready")
    print(json.dumps({"pid": os.getpid(), "file": mapped, "checksum": checksum, "nbytes": images.nbytes,
                      **mapped_memory(mapped)}))
    wait("measured")
""")


def test_two_concurrent_trials_build_once_and_share_one_copy(tmp_path, raf7):
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "MFER_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", TRIAL, str(raf7), str(barrier)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    a, b = (json.loads(out.strip().splitlines()[-1]) for out, _ in outs)
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert [p.name for p in entries] == [p.name for p in entries if not p.name.startswith(".")]  # no half-built
    assert len(entries) == 1
    built_by = json.loads((entries[0] / "meta.json").read_text())["built"]["pid"]
    assert built_by in (a["pid"], b["pid"])  # built by one of the two, loaded by both
    assert a["file"] == b["file"] and os.path.dirname(a["file"]) == str(entries[0]) and a["checksum"] == b["checksum"]
    for m in (a, b):  # every page resident, but each process accounts for about half of it: one copy
        assert m["rss_kb"] >= 0.9 * m["nbytes"] / 1024
        assert m["pss_kb"] <= 0.6 * m["rss_kb"]


def test_the_val_carve_shares_the_memmap_and_batches_read_the_right_rows(raf7):
    b = load("rafdb", raf7, size=48)
    assert isinstance(b.train.images, np.memmap) and b.train.images is b.val.images  # no copy per trial
    assert len(np.intersect1d(b.train.rows, b.val.rows)) == 0
    order = np.arange(len(b.train))[::-1]
    x, y = next(iterate_batches(b.train, 5, torch.device("cpu"), order))
    np.testing.assert_array_equal(x.numpy(), b.train.images[b.train.rows[order[:5]]])
    assert y.tolist() == b.train.labels[order[:5]].tolist()


def test_index_matches_arrays_and_source_bytes():
    entry = packed("rafdb", RAF, size=48)
    rows = index_of_entry(entry)
    for split, arr in entry.splits.items():
        mine = [r for r in rows if r["split"] == split]
        assert [r["row"] for r in mine] == list(range(len(arr)))
        assert [r["label_id"] for r in mine] == arr.labels.tolist()
    first = rows[0]
    assert first["source_hash"] == hashlib.sha1((RAF / first["path"]).read_bytes()).hexdigest()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    for split, seed in (("train", 1), ("test", 2)):
        write_imagefolder(root, *faces(14, 32, seed=seed), split)
    return root


def test_cache_key_follows_content_labels_and_size(tree):
    first = packed("folder", tree)
    built = json.loads((first.folder / "meta.json").read_text())["built"]
    again = packed("folder", tree)
    assert again.folder == first.folder and json.loads((again.folder / "meta.json").read_text())["built"] == built
    assert packed("folder", tree, size=48).folder != first.folder
    victim = next((tree / "train" / "happiness").iterdir())
    shutil.copy(next((tree / "train" / "anger").iterdir()), victim)  # new bytes in a file
    changed = packed("folder", tree)
    assert changed.folder != first.folder and changed.content_hash != first.content_hash
    (tree / "test" / "fear").rename(tree / "test" / "surprised")  # same bytes, other labels
    relabelled = packed("folder", tree)
    assert relabelled.content_hash not in (first.content_hash, changed.content_hash)


def test_touching_files_rebuilds_but_keeps_the_fingerprint(tree):
    first = packed("folder", tree)
    later = time.time() + 10
    for f in tree.rglob("*.png"):
        os.utime(f, (later, later))
    touched = packed("folder", tree)
    assert touched.folder != first.folder and touched.content_hash == first.content_hash
    assert load("folder", tree).fingerprint == load("folder", tree).fingerprint


def test_the_synthetic_generator_version_is_part_of_the_fingerprint(tmp_path, monkeypatch):
    """A rendering change (a bumped GENERATOR_VERSION) is a new cache entry and a new fingerprint."""
    from mfer.config import DataConfig
    from mfer.data import registry

    cfg = DataConfig(image_size=32, synthetic_train=40, synthetic_test=20, cache_dir=str(tmp_path))
    before = registry.load_synthetic(cfg).fingerprint
    monkeypatch.setattr(registry, "GENERATOR_VERSION", registry.GENERATOR_VERSION + 1)
    assert registry.load_synthetic(cfg).fingerprint != before
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
