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

Usage: python examples/digits/prepare.py [--work DIR] [--epochs N] [--folds K]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

from ensemble.predict.cpu import choose_wait_policy

# Beside another busy process, torch's spinning OpenMP threads take each other's cores (one fold's
# training went from 2 s to over 2 min on 2 shared cores): they sleep instead, as in ens predict.
# Chosen before torch loads libgomp, which reads it once; the thread count, hence the numbers, unchanged.
if "OMP_WAIT_POLICY" not in os.environ and (policy := choose_wait_policy()):
    os.environ["OMP_WAIT_POLICY"] = policy

import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold, train_test_split

HERE = Path(__file__).resolve().parent
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
    arr = np.stack([np.asarray(Image.open(work / p).convert("RGB")) for p in frame["path"]])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255)
    return (x - MEAN) / STD


def train_one(
    arch: str, seed: int, x: torch.Tensor, y: torch.Tensor, epochs: int, snapshot: Callable[[torch.nn.Module, int], None]
) -> torch.nn.Module:
    """A few epochs of AdamW with random shifts; small and deterministic for the seed.

    `snapshot(model, epoch)` is called after each epoch (the SWA step averages the last ones).
    """
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
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    if layout == "plain":
        torch.save(state, tmp)
    elif layout == "lightning":
        torch.save({"epoch": 0, "global_step": 0, "state_dict": {f"model.{k}": v for k, v in state.items()}}, tmp)
    else:
        save_file(state, str(tmp))
    tmp.replace(path)  # a killed run leaves no half-written checkpoint behind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = args.work.resolve()
    build_data(work, args.folds)
    train = pd.read_csv(work / "train.csv", dtype={"id": str})
    x = load_images(work, train)
    y = torch.as_tensor(pd.Categorical(train["label"], categories=CLASSES).codes.astype(np.int64))
    for name in args.models.split(","):
        arch, seed, layout = MODELS[name]
        for k in range(args.folds):
            path = work / "checkpoints" / name / f"fold{k}{SUFFIX[layout]}"
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            tr = torch.from_numpy((train["fold"] != k).to_numpy(copy=True))

            def snapshot(model: torch.nn.Module, epoch: int) -> None:
                # the last epochs of the first model, plain state_dicts: what `ens swa` averages
                if name == SWA_SOURCE and epoch >= args.epochs - SWA_EPOCHS:
                    snap = work / "checkpoints" / f"{name}_epochs" / f"fold{k}_epoch{epoch}.pth"
                    snap.parent.mkdir(parents=True, exist_ok=True)
                    save(model, snap, "plain")

            model = train_one(arch, seed * 100 + k, x[tr], y[tr], args.epochs, snapshot)
            with torch.inference_mode():
                acc = (model(x[~tr]).argmax(1) == y[~tr]).float().mean().item()
            save(model, path, layout)
            print(f"trained {name} fold {k}: held-out accuracy {acc:.3f} ({time.time() - t0:.1f} s)", flush=True)
    print(f"data and checkpoints in {work}")


if __name__ == "__main__":
    main()
