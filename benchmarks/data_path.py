"""Images/s delivered to the model by three data paths, as ratios in one run, plus the memory of
two concurrent trials reading one packed cache.

Paths, all ending in the same place — a normalised float NCHW batch on the device, ready for
``model(x)`` (no model runs, so each figure is the most that path can feed):

  packed   the cache trials use: memory-mapped uint8 arrays -> ``iterate_batches`` -> ``to_model_input``
  jpeg     the usual loop: a torch DataLoader whose workers decode each JPEG with PIL and apply
           torchvision transforms (Resize, ToTensor, Normalize)
  memory   the ceiling: a uint8 tensor already on the device, indexed per batch -> ``to_model_input``

each twice: as delivered, and with the train augmentation (flip + random erasing: ``BatchAugment``
on the device for packed/memory, torchvision's per-image transforms in the workers for jpeg).
On a GPU the tensor augmentation is nearly free, so the first column is what a GPU waits for.

The images are the synthetic FER set written as JPEGs in RAF-DB's layout, decoded by the real
adapter. Memory: two processes load the packed train split and read every image; RSS/PSS of
each trial, and the memory the data adds to each (PSS delta), for the memory-mapped entry and for
a private in-RAM copy per trial (what loading the split into every trial costs).

    .venv/bin/python benchmarks/data_path.py                  # defaults below
    .venv/bin/python benchmarks/data_path.py --threads 1      # the README's figures (2 shared CPU cores)
    .venv/bin/python benchmarks/data_path.py --n 20000 --src 256 --size 224 --batch 128 --workers 8
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from mfer.config import DataConfig
from mfer.data.augment import IMAGENET_MEAN, IMAGENET_STD, BatchAugment, to_model_input
from mfer.data.batches import epoch_order, iterate_batches
from mfer.data.memory import mapped_memory
from mfer.data.registry import load_dataset
from mfer.data.synthetic import SyntheticSpec, generate, write_rafdb


class JpegFiles(Dataset):
    """The per-image loop packed arrays replace: open, decode, transform, every epoch."""

    def __init__(self, paths: list[Path], transform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), 0


def fixture(n: int, src: int, seed: int) -> tuple:
    """n images at ``src`` px: up to 256 distinct synthetic faces rendered at 128 px, upscaled and
    repeated (each is its own JPEG file, so decoding costs the same; rendering stays quick)."""
    faces, labels = generate(SyntheticSpec(min(n, 256), 128, seed))
    big = np.stack([np.asarray(Image.fromarray(f).resize((src, src), Image.Resampling.BICUBIC)) for f in faces])
    return (big[i % len(big)] for i in range(n)), np.resize(labels, n)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(batches, deliver, device: torch.device) -> float:
    """Images/s over ``batches`` (iterable of (x, y)), the first batch excluded as warm-up."""
    n, t0 = 0, None
    for x, _ in batches:
        out = deliver(x)
        if t0 is None:
            sync(device)
            t0 = time.perf_counter()
            continue
        n += len(out)
    sync(device)
    return n / (time.perf_counter() - t0)


def run_paths(args, data_cfg: DataConfig, root: Path, device: torch.device) -> dict:
    t0 = time.perf_counter()
    bundle = load_dataset(data_cfg)  # builds the cache: once per node
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bundle = load_dataset(data_cfg)  # what every later trial pays
    res = {"build_s": build_s, "load_ms": (time.perf_counter() - t0) * 1000, "images": len(bundle.train)}
    train = bundle.train
    order = epoch_order(train.labels, 0, 0, shuffle=True, balanced=False)
    resident = torch.from_numpy(train.take(np.arange(len(train)))).to(device)
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    chunks = [perm[i : i + args.batch].to(device) for i in range(0, len(perm) - args.batch + 1, args.batch)]
    names = [line.split()[0] for line in (root / "EmoLabel" / "list_patition_label.txt").read_text().splitlines()]
    paths = [root / "Image" / "aligned" / n.replace(".jpg", "_aligned.jpg") for n in names if n.startswith("train_")]
    resize, to_tensor = T.Resize((args.size, args.size)), [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    transforms = {False: T.Compose([resize, *to_tensor]),
                  True: T.Compose([resize, T.RandomHorizontalFlip(), *to_tensor,
                                   T.RandomErasing(0.25, (0.02, 0.1), value="random")])}
    for _ in range(args.repeats):  # rounds interleave the paths; each keeps its best (others share this machine)
        for aug in (False, True):
            augment = BatchAugment(True, 0.25, (0.02, 0.1), False) if aug else (lambda x: x)
            deliver = lambda x: augment(to_model_input(x.to(device, non_blocking=True), args.size, False))  # noqa: E731
            tag = "+aug" if aug else ""
            memory = ((resident.index_select(0, idx), None) for idx in chunks)
            packed = iterate_batches(train, args.batch, device, order, drop_last=True)
            loader = DataLoader(JpegFiles(paths, transforms[aug]), batch_size=args.batch, shuffle=True,
                                drop_last=True, num_workers=args.workers, pin_memory=device.type == "cuda")
            for key, batches, fn in (("memory", memory, deliver), ("packed", packed, deliver),
                                     ("jpeg", loader, lambda x: x.to(device, non_blocking=True))):
                res[key + tag] = max(res.get(key + tag, 0.0), timed(batches, fn, device))
    return res


def trial(root: str, barrier: str, mode: str, size: int) -> None:
    """One process of the memory test (run as a subprocess of this script)."""
    cfg = DataConfig(name="rafdb", root=root, image_size=size)
    load_dataset(cfg)  # warm-up: imports and first-load allocations are not the data's memory
    before = mapped_memory()
    images = load_dataset(cfg).train.images
    nbytes = images.nbytes
    if mode == "copy":  # what loading the split into RAM in every trial costs
        images = np.array(images)
    checksum = int(images.sum())  # reads every image
    mine = Path(barrier) / f"{mode}-{os.getpid()}"
    mine.touch()
    while len(list(Path(barrier).glob(f"{mode}-*"))) < 2:
        time.sleep(0.02)
    after = mapped_memory()
    print(json.dumps({"mode": mode, "bytes": nbytes, "checksum": checksum, "rss_kb": after["rss_kb"],
                      "data_pss_kb": after["pss_kb"] - before["pss_kb"]}), flush=True)
    time.sleep(1.0)  # stay mapped while the sibling measures


def run_memory(root: Path, size: int, tmp: Path) -> dict:
    out = {}
    for mode in ("memmap", "copy"):
        barrier = tmp / f"barrier-{mode}"
        barrier.mkdir()
        procs = [subprocess.Popen([sys.executable, __file__, "--trial", str(root), str(barrier), mode, str(size)],
                                  stdout=subprocess.PIPE, text=True, env=os.environ) for _ in range(2)]
        out[mode] = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="train images")
    ap.add_argument("--src", type=int, default=256, help="side of the JPEGs on disk")
    ap.add_argument("--size", type=int, default=112, help="data.image_size delivered to the model")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each figure is its best round")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads in the main process (0: torch's default); 1 gives stable figures "
                         "on a shared machine, where OpenMP threads stall whenever a core is taken")
    ap.add_argument("--trial", nargs=4, metavar=("ROOT", "BARRIER", "MODE", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.trial:
        root, barrier, mode, size = args.trial
        return trial(root, barrier, mode, int(size))
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="mfer-bench-") as tmp:
        tmp = Path(tmp)
        os.environ["MFER_CACHE"] = str(tmp / "cache")
        root = tmp / "rafdb"
        t0 = time.perf_counter()
        write_rafdb(root, fixture(args.n, args.src, 0), fixture(max(7, args.n // 10), args.src, 1))
        print(f"fixture: {args.n} train JPEGs at {args.src}px in RAF-DB layout ({time.perf_counter() - t0:.0f}s); "
              f"device {device}, {torch.get_num_threads()} torch threads, {args.workers} DataLoader workers, "
              f"best of {args.repeats} rounds")
        r = run_paths(args, DataConfig(name="rafdb", root=str(root), image_size=args.size), root, device)
        mem = run_memory(root, args.size, tmp)
    print(f"\ncache build (once per node): {r['build_s']:.1f}s; later loads {r['load_ms']:.0f} ms\n")
    print(f"| data path ({args.size}px, batch {args.batch}, {r['images']} images) | delivered img/s | ratio | "
          f"+ augmentation img/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for key, label in (("memory", "tensor already in memory"), ("packed", "packed cache (memmap)"),
                       ("jpeg", f"JPEG + DataLoader ({args.workers} workers)")):
        print(f"| {label} | {r[key]:.0f} | {r[key] / r['memory']:.2f}x | {r[key + '+aug']:.0f} | "
              f"{r[key + '+aug'] / r['memory+aug']:.2f}x |")
    mb = mem["memmap"][0]["bytes"] / 2**20
    print(f"\n| 2 concurrent trials, train split = {mb:.1f} MiB | RSS each (MiB) | data PSS each (MiB) | "
          "data PSS sum (MiB) |")
    print("|---|---:|---:|---:|")
    for mode, label in (("memmap", "memory-mapped cache"), ("copy", "private copy per trial")):
        rss = " / ".join(f"{m['rss_kb'] / 1024:.0f}" for m in mem[mode])
        pss = [m["data_pss_kb"] / 1024 for m in mem[mode]]
        print(f"| {label} | {rss} | {pss[0]:.1f} / {pss[1]:.1f} | {sum(pss):.1f} |")
    print(json.dumps({"paths": r, "memory": mem}))


if __name__ == "__main__":
    main()
