"""The data side of `ens predict`: the data CSV, image decoding and batching.

Workers decode with PIL and resize/crop to the model input (timm's eval transform, redone in PIL by
`resize.py` so that neither timm nor torchvision is imported for it), then ship
uint8 tensors; normalisation happens on the device (`normalise`), so the batches crossing process
boundaries and the host-to-device copy are 4x smaller than float32. Models whose
`ModelConfig.preprocess_key()` match share one decode of every image.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ensemble.errors import DataError, preview
from ensemble.labels import Columns, Labels, read_labels
from ensemble.predict._card_fields import FIELDS
from ensemble.predict.config import ModelConfig
from ensemble.predict.cpu import usable_cores
from ensemble.predict.images import to_rgb
from ensemble.predict.options import check_workers
from ensemble.predict.resize import eval_resize

if TYPE_CHECKING:  # torch loads when a DataLoader or a tensor is made: the ONNX path (`lite.py`) runs without it
    import torch
    from torch.utils.data import DataLoader

# The label column plays no part in prediction; reading it could only fail on values we never use.
_NO_COLUMN = "\x00unused"


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes a uint8 (3, H, W) tensor; models with equal ones share a decode.

    Attributes:
        img_size: output (height, width).
        crop_pct: "crop" mode resizes to img_size / crop_pct, then center-crops img_size.
        interpolation: PIL resampling name.
        resize_mode: "crop" or "squash".
    """

    img_size: tuple[int, int]
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    resize_mode: str = "crop"

    @classmethod
    def of(cls, cfg: ModelConfig) -> Preprocess:
        """The preprocessing of a model config (checked)."""
        pre = cls(tuple(cfg.img_size), float(cfg.crop_pct), str(cfg.interpolation), str(cfg.resize_mode))
        pre.check(cfg.name)
        return pre

    def check(self, model: str) -> None:
        """Raise ConfigError for a resize mode, interpolation or crop fraction that cannot work.

        The card's own checks (`_card_fields.FIELDS`), applied to a config that may have been
        built without a card (a `ModelConfig` given to the API).
        """
        for key in ("resize_mode", "interpolation", "crop_pct"):
            FIELDS[key](getattr(self, key), f"model {model!r}: {key}")

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """Resize/crop a PIL RGB image (`resize.eval_resize`); returns a uint8 tensor (3, H, W)."""
        import torch

        return torch.from_numpy(self.array(img))

    def array(self, img: Image.Image) -> np.ndarray:
        """Resize/crop a PIL RGB image (`resize.eval_resize`); returns uint8 (3, H, W), a view of (H, W, 3)."""
        out = eval_resize(img, self.img_size, self.crop_pct, self.interpolation, self.resize_mode)
        return np.array(out, dtype=np.uint8).transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def read_data(
    path: str | os.PathLike,
    *,
    columns: Columns = Columns(),
    root: str | os.PathLike | None = None,
    need_folds: bool = False,
) -> Labels:
    """Read the data CSV: ids, image paths and (for OOF) folds.

    Args:
        path: the CSV (`id`, `path`, optionally `fold`, `label`).
        columns: column names; the label column is ignored.
        root: folder the image paths are relative to (default: the CSV's folder).
        need_folds: require the fold column (OOF prediction); otherwise it is not read.

    Raises:
        LabelError: missing file or columns, empty/duplicate ids, empty paths, bad folds.
    """
    cols = Columns(
        id=columns.id, path=columns.path, label=_NO_COLUMN, fold=columns.fold if need_folds else _NO_COLUMN
    )
    return read_labels(path, columns=cols, root=root, require=("path", "fold") if need_folds else ("path",))


def check_files(data: Labels, rows: np.ndarray) -> np.ndarray:
    """Indices (into `rows`) of rows whose image file does not exist (cheap; before any work)."""
    return np.flatnonzero([not os.path.isfile(p) for p in data.paths[rows]])


def missing_error(data: Labels, rows: np.ndarray) -> DataError:
    """The error for rows whose image files are missing."""
    first = rows[0]
    return DataError(
        f"{data.source}: {len(rows)} image files are missing, e.g. {data.paths[first]} (id {data.ids[first]!r}; "
        f"ids {preview(data.ids[rows])}); fix the paths (relative to the CSV's folder unless --root) "
        "or pass --skip-bad to predict without them"
    )


def decode_error(data: Labels, row: int, reason: str) -> DataError:
    return DataError(
        f"{data.paths[row]}: cannot decode the image of id {data.ids[row]!r} ({reason}); "
        "replace the file or pass --skip-bad to predict without it"
    )


def decode(path: str, preprocess: Preprocess) -> tuple[np.ndarray, str]:
    """One image file decoded and resized: uint8 (3, H, W) and "", or zeros and why it could not be read."""
    try:
        with Image.open(path) as img:
            return preprocess.array(to_rgb(img)), ""
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, DataError) as e:
        h, w = preprocess.img_size
        return np.zeros((3, h, w), np.uint8), f"{type(e).__name__}: {e}".splitlines()[0]


def batch_indices(n: int, batch_size: int, blocks: Sequence[int] | None = None) -> list[list[int]]:
    """Positions 0..n-1 cut into batches of at most `batch_size` that straddle no block.

    Args:
        blocks: lengths of consecutive blocks (summing to n) that no batch straddles, so the
            batches of a block are the same whatever else is loaded with it (what keeps a
            distributed run's numbers identical to a single process's).
    """
    bounds = np.cumsum([0, *(blocks if blocks is not None else [n])])
    if bounds[-1] != n:
        raise ValueError(f"blocks sum to {bounds[-1]}, not to the {n} rows")
    return [list(range(s, min(s + batch_size, e))) for b, e in zip(bounds[:-1], bounds[1:]) for s in range(b, e, batch_size)]


class ImageDataset:
    """Images of some rows of the data, decoded and resized; bad files reported, not raised.

    Items are `(row, image, error)`: the row index into the data, uint8 (3, H, W), and "" or the
    reason the file could not be read (the image is then zeros). Errors travel as values because
    an exception raised in a DataLoader worker reaches the main process as a multi-line traceback.
    A map-style dataset for torch's DataLoader (which needs no `Dataset` base class).
    """

    def __init__(self, paths: Sequence[str], rows: np.ndarray, preprocess: Preprocess) -> None:
        self.paths = paths
        self.rows = np.asarray(rows, dtype=np.int64)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, str]:
        import torch

        row = int(self.rows[i])
        image, error = decode(self.paths[row], self.preprocess)
        return row, torch.from_numpy(image), error


def make_loader(
    data: Labels, rows: np.ndarray, preprocess: Preprocess, *, batch_size: int, workers: int, device: torch.device,
    blocks: Sequence[int] | None = None,
) -> DataLoader:
    """A DataLoader over `rows` in the order given; yields (rows int64 (B,), images uint8 (B, 3, H, W), errors).

    Args:
        blocks: lengths of consecutive blocks of `rows` that no batch straddles (`batch_indices`).
    """
    from torch.utils.data import DataLoader

    dataset = ImageDataset(list(data.paths), rows, preprocess)
    batches = batch_indices(len(rows), batch_size, blocks)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], device: torch.device,
              *, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, 3, H, W) on any device -> normalised float32 (B, 3, H, W) on `device`.

    `channels_last` lays the result out NHWC by moving the uint8 bytes (a quarter of the float
    traffic of converting afterwards); the values are the same either way.
    """
    import torch

    x = images.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def rows_fingerprint(data: Labels, rows: np.ndarray, path_col: str) -> str:
    """A hash of the ids and (as written in the CSV) paths of `rows`: what a resumable part depends on."""
    raw = data.frame[path_col].to_numpy(dtype=object)[rows] if path_col in data.frame else data.paths[rows]
    h = hashlib.sha256()
    for i, p in zip(data.ids[rows], raw):
        h.update(f"{i}\t{p}\n".encode())
    return h.hexdigest()


def resolve_workers(workers: int | str, device: Any) -> int:
    """Decoding processes for `workers` ("auto" or a count) on `device`.

    "auto": on a GPU, up to 8 per process, leaving a core to the main process; on the CPU, one per
    8 cores and none below 8 (decoding in the main process): the decode processes and the compute
    threads share the cores there, and on 2 cores a worker made `ens predict` 15% slower than
    decoding in-process (bench_predict.py). Cores are shared between the processes a launcher
    starts on one machine (`LOCAL_WORLD_SIZE`). `device` is a torch.device or anything with its
    `type` ("cpu", "cuda").

    Raises:
        ConfigError: neither "auto" nor a count >= 0.
    """
    count = check_workers(workers)
    if count is not None:
        return count
    cores = usable_cores()
    cores = max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    if device.type == "cuda":
        return max(0, min(8, cores - 1))
    return cores // 8
