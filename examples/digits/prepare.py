"""Build the bundled real example: scikit-learn's handwritten digits as a small competition.

Writes, under examples/digits/work/ (cached: a second run skips what exists):
  images/<id>.png      32x32 RGB PNGs upscaled from the 8x8 digits (no download)
  train.csv            id, path, label (class name), fold (5 stratified folds, seed 42)
  test.csv             id, path                        (what the competition gives you)
  test_labels.csv      id, label                       (the held-back "private leaderboard")
  checkpoints/...      tiny timm models trained per fold on CPU, saved in three real-world layouts
                       (plus the last epochs of resnet_s0, for `ens swa`):
                         resnet_s0: plain state_dict (.pth)
                         resnet_s1: a Lightning-style checkpoint ({"state_dict": {"model.*": ...}})
                         effnet_s0: safetensors
The model cards for them are in models/digits_*.toml.

Each model trains on ONE torch thread, several at once in worker processes (`--jobs`, default the
usable cores): a single-threaded training repeats bit for bit for its seed, so the checkpoints are
the same bytes whatever --jobs and however busy the machine is (two OpenMP threads in lockstep beside
a busy process trained at 15.2 s a model against 8.0 s on one thread, measured on 2 shared cores).

Usage: python examples/digits/prepare.py [--work DIR] [--epochs N] [--folds K] [--jobs N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from ensemble.predict.cpu import usable_cores

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/fold_training.py, shared with the mosaics example
from fold_training import sleep_idle_threads, start_pool, train_all  # noqa: E402

if TYPE_CHECKING:
    import torch

# torch, timm and safetensors are imported where they are used: with --jobs > 1 only the forkserver
# (which the workers fork from) imports them, once, while this process writes the data; their idle
# OpenMP threads sleep beside a busy process (chosen here, before any of them loads libgomp)
sleep_idle_threads()
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MEAN, STD = 0.5, 0.5
# name -> (timm arch, seed, checkpoint layout); two seeds of one config make a seed ensemble
MODELS = {
    "resnet_s0": ("test_resnet", 0, "plain"),
    "resnet_s1": ("test_resnet", 1, "lightning"),
    "effnet_s0": ("test_efficientnet", 0, "safetensors"),
}
SWA_SOURCE, SWA_EPOCHS = "resnet_s0", 3  # per-epoch snapshots kept for `ens swa`
SUFFIX = {"plain": ".pth", "lightning": ".ckpt", "safetensors": ".safetensors"}


def build_data(work: Path, n_folds: int) -> None:
    """Images, train.csv with folds, test.csv and the held-back test labels."""
    if (work / "test_labels.csv").exists():
        return
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold, train_test_split

    digits = load_digits()
    (work / "images").mkdir(parents=True, exist_ok=True)
    ids = np.array([f"{i:05d}" for i in range(len(digits.images))], dtype=object)
    for id_, img in zip(ids, digits.images):
        gray = Image.fromarray((img * (255 / 16)).astype(np.uint8), mode="L").resize((32, 32), Image.BICUBIC)
        gray.convert("RGB").save(work / "images" / f"{id_}.png")
    labels = np.array(CLASSES, dtype=object)[digits.target]
    paths = np.array([f"images/{i}.png" for i in ids], dtype=object)
    tr, te = train_test_split(np.arange(len(ids)), test_size=0.25, stratify=digits.target, random_state=42)
    folds = np.empty(len(tr), dtype=np.int64)
    for k, (_, val) in enumerate(StratifiedKFold(n_folds, shuffle=True, random_state=42).split(tr, digits.target[tr])):
        folds[val] = k
    pd.DataFrame({"id": ids[tr], "path": paths[tr], "label": labels[tr], "fold": folds}).to_csv(work / "train.csv", index=False)
    pd.DataFrame({"id": ids[te], "path": paths[te]}).to_csv(work / "test.csv", index=False)
    pd.DataFrame({"id": ids[te], "label": labels[te]}).to_csv(work / "test_labels.csv", index=False)


def load_images(work: Path, frame: pd.DataFrame) -> torch.Tensor:
    """Decode the PNGs once into normalised float tensors (N, 3, 32, 32)."""
    import torch

    arr = np.stack([np.asarray(Image.open(work / p).convert("RGB")) for p in frame["path"]])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255)
    return (x - MEAN) / STD


def train_one(
    arch: str, seed: int, x: torch.Tensor, y: torch.Tensor, epochs: int, snapshot: Callable[[torch.nn.Module, int], None]
) -> torch.nn.Module:
    """A few epochs of AdamW with random shifts; small and deterministic for the seed.

    `snapshot(model, epoch)` is called after each epoch (the SWA step averages the last ones).
    """
    import timm
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=len(CLASSES))
    steps_per_epoch = (len(x) + 63) // 64
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            xb = F.pad(x[idx], (2, 2, 2, 2), value=-MEAN / STD)  # pad with "black", then random 32x32 crop
            dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
            xb = xb[:, :, dy : dy + 32, dx : dx + 32]
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        snapshot(model, epoch)
    return model.eval()


def save(model: torch.nn.Module, path: Path, layout: str) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    if layout == "plain":
        torch.save(state, tmp)
    elif layout == "lightning":
        torch.save({"epoch": 0, "global_step": 0, "state_dict": {f"model.{k}": v for k, v in state.items()}}, tmp)
    else:
        save_file(state, str(tmp))
    tmp.replace(path)  # a killed run leaves no half-written checkpoint behind


# what a worker trains on: set once per process by `init_worker` (train.csv, its images and labels)
_DATA: dict[str, object] = {}


def init_worker(work: Path) -> None:
    """Load the training rows once per process, on one torch thread (the checkpoints' bytes depend on it)."""
    import torch

    torch.set_num_threads(1)
    train = pd.read_csv(work / "train.csv", dtype={"id": str})
    y = torch.as_tensor(pd.Categorical(train["label"], categories=CLASSES).codes.astype(np.int64))
    _DATA.update(work=work, folds=train["fold"].to_numpy(), x=load_images(work, train), y=y)


def train_fold(name: str, k: int, epochs: int) -> tuple[float, float]:
    """Train `name` on every fold but k, save its checkpoint (and SWA snapshots); (held-out accuracy, seconds)."""
    import torch

    t0 = time.time()
    work, x, y = _DATA["work"], _DATA["x"], _DATA["y"]
    arch, seed, layout = MODELS[name]
    path = work / "checkpoints" / name / f"fold{k}{SUFFIX[layout]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tr = torch.from_numpy(_DATA["folds"] != k)

    def snapshot(model: torch.nn.Module, epoch: int) -> None:
        # the last epochs of the first model, plain state_dicts: what `ens swa` averages
        if name == SWA_SOURCE and epoch >= epochs - SWA_EPOCHS:
            snap = work / "checkpoints" / f"{name}_epochs" / f"fold{k}_epoch{epoch}.pth"
            snap.parent.mkdir(parents=True, exist_ok=True)
            save(model, snap, "plain")

    model = train_one(arch, seed * 100 + k, x[tr], y[tr], epochs, snapshot)
    with torch.inference_mode():
        acc = (model(x[~tr]).argmax(1) == y[~tr]).float().mean().item()
    save(model, path, layout)
    return acc, time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--jobs", type=int, default=0, help="models trained at once, one thread each (default: usable cores)")
    args = ap.parse_args()
    work = args.work.resolve()
    pending = [
        (name, k) for name in args.models.split(",") for k in range(args.folds)
        if not (work / "checkpoints" / name / f"fold{k}{SUFFIX[MODELS[name][2]]}").exists()
    ]
    jobs = min(args.jobs or usable_cores(), len(pending))
    pool = start_pool(jobs, init_worker, (work,))  # its workers start on the first submit, after the data
    build_data(work, args.folds)
    train_all(pending, train_fold, args.epochs, pool, lambda: init_worker(work), "accuracy")
    print(f"data and checkpoints in {work}")


if __name__ == "__main__":
    main()
