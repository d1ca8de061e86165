"""Build the bundled multi-label example: mosaics of scikit-learn's digits, labelled by the set shown.

Each image is a 32x32 mosaic: a 2x2 grid of 16x16 cells, 1 to 4 of them holding a digit (the 8x8
originals upscaled to 16x16), the others empty. Its label is the SET of distinct digits shown, as
a multi-label cell (`3|7`; classes "0".."9"). Train and test mosaics are built from disjoint pools
of the digits (3/4 and 1/4), so no test digit image is ever seen in training.

Two stages, so that the folds are made by the CLI between them (examples/mosaics/run.sh):

  python examples/mosaics/prepare.py data   writes, under examples/mosaics/work/ (cached):
      images/<id>.png      the mosaics (string ids, `00042`)
      mosaics.csv          id, path, label (`3|7`)        -> `ens folds --method multilabel-stratified`
      test.csv             id, path                        (what the competition gives you)
      test_labels.csv      id, label                       (the held-back "private leaderboard")
  python examples/mosaics/prepare.py train  reads train.csv (mosaics.csv + the CLI's fold column) and
      trains tiny timm models per fold on CPU (10 sigmoid outputs, BCEWithLogitsLoss), cached:
      checkpoints/<model>/fold<k>.safetensors
The model cards for them are in models/mosaic_*.toml (task = "multilabel").

Each model trains on ONE torch thread, several at once in worker processes (`--jobs`, default the
usable cores): a single-threaded training repeats bit for bit for its seed, so the checkpoints are
the same bytes whatever --jobs and however busy the machine is.

Usage: python examples/mosaics/prepare.py {data,train} [--work DIR] [--n-train N] [--n-test N]
       [--epochs N] [--models a,b] [--jobs N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ensemble.predict.cpu import usable_cores

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/fold_training.py, shared with the digits example
from fold_training import sleep_idle_threads, start_pool, train_all  # noqa: E402

if TYPE_CHECKING:  # torch loads in the train stage only: the data stage runs without it
    import torch

CLASSES = [str(d) for d in range(10)]
SEP = "|"
MEAN, STD = 0.5, 0.5
CELL, SIDE = 16, 32  # a 2x2 grid of 16x16 cells
# how many of the 4 cells hold a digit (1..4), with these probabilities
N_DIGITS_P = np.array([0.25, 0.30, 0.25, 0.20])
# name -> (timm arch, seed, peak learning rate); two seeds of one config make a seed ensemble.
# The efficientnet stays the weak, different member at this budget (its best of a few tried rates).
MODELS = {
    "resnet_s0": ("test_resnet", 0, 8e-3),
    "resnet_s1": ("test_resnet", 1, 8e-3),
    "effnet_s0": ("test_efficientnet", 0, 2e-2),
}


def make_mosaics(cells: np.ndarray, target: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` mosaics (n, 32, 32) uint8 drawn from the 16x16 digit `cells`, and their indicator labels (n, 10)."""
    k = rng.choice(4, size=n, p=N_DIGITS_P) + 1  # digits per mosaic
    occupied = np.argsort(rng.random((n, 4)), axis=1) < k[:, None]  # k random cells of the 4 per row
    pick = rng.integers(0, len(cells), size=(n, 4))  # which digit image goes into each cell
    grid = np.where(occupied[:, :, None, None], cells[pick], 0)  # (n, 4, 16, 16)
    mosaics = grid.reshape(n, 2, 2, CELL, CELL).transpose(0, 1, 3, 2, 4).reshape(n, SIDE, SIDE)
    y = np.zeros((n, len(CLASSES)), dtype=np.uint8)
    rows = np.repeat(np.arange(n), 4)[occupied.ravel()]
    y[rows, target[pick][occupied]] = 1
    return mosaics, y


def label_cells(y: np.ndarray) -> np.ndarray:
    """Indicator rows (n, 10) -> label cells like `3|7` (classes in index order)."""
    names = np.array(CLASSES, dtype=object)
    return np.array([SEP.join(names[row.astype(bool)]) for row in y], dtype=object)


def build_data(work: Path, n_train: int, n_test: int) -> None:
    """Images, mosaics.csv (no folds: the CLI makes them), test.csv and the held-back test labels."""
    if (work / "test_labels.csv").exists():
        return
    digits = load_digits()
    up = np.stack([  # 8x8 (0..16) -> 16x16 uint8, like the single-label example's 32x32 upscale
        np.asarray(Image.fromarray((img * (255 / 16)).astype(np.uint8), mode="L").resize((CELL, CELL), Image.BICUBIC))
        for img in digits.images
    ])
    # disjoint digit pools: a test mosaic never shows a digit image seen in training
    pool_tr, pool_te = train_test_split(np.arange(len(up)), test_size=0.25, stratify=digits.target, random_state=42)
    rng = np.random.default_rng(42)
    x_tr, y_tr = make_mosaics(up[pool_tr], digits.target[pool_tr], n_train, rng)
    x_te, y_te = make_mosaics(up[pool_te], digits.target[pool_te], n_test, rng)
    x, y = np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])
    ids = np.array([f"{i:05d}" for i in range(len(x))], dtype=object)
    paths = np.array([f"images/{i}.png" for i in ids], dtype=object)
    (work / "images").mkdir(parents=True, exist_ok=True)
    for id_, img in zip(ids, x):
        Image.fromarray(img, mode="L").convert("RGB").save(work / "images" / f"{id_}.png")
    labels = label_cells(y)
    tr, te = slice(0, n_train), slice(n_train, None)
    pd.DataFrame({"id": ids[tr], "path": paths[tr], "label": labels[tr]}).to_csv(work / "mosaics.csv", index=False)
    pd.DataFrame({"id": ids[te], "path": paths[te]}).to_csv(work / "test.csv", index=False)
    # written last: its presence marks the data stage as done
    pd.DataFrame({"id": ids[te], "label": labels[te]}).to_csv(work / "test_labels.csv", index=False)


def read_indicators(labels: pd.Series) -> np.ndarray:
    """Label cells (`3|7`, empty for none) -> an indicator matrix (n, 10) float32."""
    y = np.zeros((len(labels), len(CLASSES)), dtype=np.float32)
    for i, cell in enumerate(labels.fillna("").astype(str)):
        for name in filter(None, cell.split(SEP)):
            y[i, CLASSES.index(name)] = 1.0
    return y


def load_images(work: Path, frame: pd.DataFrame) -> torch.Tensor:
    """Decode the PNGs once into normalised float tensors (N, 3, 32, 32)."""
    import torch

    arr = np.stack([np.asarray(Image.open(work / p).convert("RGB")) for p in frame["path"]])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255)
    return (x - MEAN) / STD


def train_one(arch: str, seed: int, lr: float, x: torch.Tensor, y: torch.Tensor, epochs: int) -> torch.nn.Module:
    """A few epochs of AdamW on BCEWithLogitsLoss with random shifts; deterministic for the seed."""
    import timm
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=len(CLASSES))
    batch = 64
    steps_per_epoch = (len(x) + batch - 1) // batch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            xb = F.pad(x[idx], (2, 2, 2, 2), value=-MEAN / STD)  # pad with "black", then a random 32x32 crop
            dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
            loss = F.binary_cross_entropy_with_logits(model(xb[:, :, dy : dy + SIDE, dx : dx + SIDE]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def save(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)  # a killed run leaves no half-written checkpoint behind


# what a worker trains on: set once per process by `init_worker` (train.csv, its images and indicators)
_DATA: dict[str, object] = {}


def init_worker(work: Path) -> None:
    """Load the training rows once per process, on one torch thread (the checkpoints' bytes depend on it)."""
    import torch

    torch.set_num_threads(1)
    train = pd.read_csv(work / "train.csv", dtype={"id": str, "label": str}, keep_default_na=False)
    y = torch.from_numpy(read_indicators(train["label"]))
    _DATA.update(work=work, folds=train["fold"].to_numpy(), x=load_images(work, train), y=y)


def train_fold(name: str, k: int, epochs: int) -> tuple[float, float]:
    """Train `name` on every fold but k and save it; (held-out exact-set accuracy, seconds)."""
    import torch

    t0 = time.time()
    work, x, y = _DATA["work"], _DATA["x"], _DATA["y"]
    arch, seed, lr = MODELS[name]
    path = work / "checkpoints" / name / f"fold{k}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    tr = torch.from_numpy(_DATA["folds"] != k)
    model = train_one(arch, seed * 100 + int(k), lr, x[tr], y[tr], epochs)
    with torch.inference_mode():
        exact = ((model(x[~tr]) > 0) == y[~tr].bool()).all(1).float().mean().item()
    save(model, path)
    return exact, time.time() - t0


def train_models(work: Path, models: list[str], epochs: int, jobs: int = 0) -> None:
    """Train every (model, fold) whose checkpoint is missing, on the fold column the CLI wrote.

    `jobs` trainings at once (0: the usable cores), one torch thread each; 1 trains here, in turn.
    """
    sleep_idle_threads()  # read once, when torch loads OpenMP (here or in the forkserver)
    train = pd.read_csv(work / "train.csv", dtype={"id": str, "label": str}, keep_default_na=False)
    if "fold" not in train.columns:
        raise SystemExit(f"{work / 'train.csv'} has no fold column: run `ens folds --method multilabel-stratified` first")
    folds = sorted(int(k) for k in train["fold"].unique())
    pending = [(name, k) for name in models for k in folds if not (work / "checkpoints" / name / f"fold{k}.safetensors").exists()]
    jobs = min(jobs or usable_cores(), len(pending))
    pool = start_pool(jobs, init_worker, (work,))
    train_all(pending, train_fold, epochs, pool, lambda: init_worker(work), "exact-set accuracy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["data", "train"])
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--n-train", type=int, default=1600, help="train mosaics (data stage)")
    ap.add_argument("--n-test", type=int, default=800, help="test mosaics, all held back (data stage)")
    ap.add_argument("--epochs", type=int, default=5, help="training epochs (train stage)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--jobs", type=int, default=0, help="models trained at once, one thread each (default: usable cores)")
    args = ap.parse_args()
    work = args.work.resolve()
    if args.stage == "data":
        build_data(work, args.n_train, args.n_test)
        n_train, n_test = (len(pd.read_csv(work / f)) for f in ("mosaics.csv", "test.csv"))  # as cached
        print(f"mosaics in {work} ({n_train} train, {n_test} held-back test)")
    else:
        train_models(work, args.models.split(","), args.epochs, args.jobs)
        print(f"checkpoints in {work / 'checkpoints'}")


if __name__ == "__main__":
    main()
