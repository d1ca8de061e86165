"""The eval resize and crop of `ens predict`, in PIL alone: timm's eval transform without importing it.

Importing torchvision (which timm's data module does) costs seconds at start-up: it loads its model
zoo and, through its detection ops, torch._dynamo. The geometry here is the one
`timm.data.create_transform(img_size, crop_pct=..., interpolation=..., crop_mode="center")` and
`torchvision.transforms.functional.resize` compute on PIL images (which call `Image.resize`), so
the pixels are the same bytes (tests/predict/test_data.py compares them with timm/torchvision).
"""

from __future__ import annotations

import math

from PIL import Image

# the card's interpolation names (`_card_fields.INTERPOLATIONS`) -> PIL filters, as torchvision maps them
PIL_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def eval_resize(img: Image.Image, img_size: tuple[int, int], crop_pct: float, interpolation: str,
                resize_mode: str) -> Image.Image:
    """Resize (and for "crop", center-crop) a PIL image to `img_size` (height, width).

    "crop": a square target resizes the shorter side to floor(size / crop_pct) (the longer side
    truncated as torchvision does); a non-square one scales keeping the aspect ratio until the
    image covers floor(img_size / crop_pct) (timm's `ResizeKeepRatio`); then the central img_size.
    "squash": both sides straight to img_size.
    """
    th, tw = img_size
    resample = PIL_FILTERS[interpolation]
    if resize_mode == "squash":
        return _resize(img, (tw, th), resample)
    sh, sw = (math.floor(s / crop_pct) for s in img_size)
    w, h = img.size
    if sh == sw:
        new_long = int(sh * max(w, h) / min(w, h))
        size = (sh, new_long) if w <= h else (new_long, sh)
    else:
        ratio = min(h / sh, w / sw)
        size = (round(w / ratio), round(h / ratio))
    return center_crop(_resize(img, size, resample), (th, tw))


def center_crop(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The central (height, width) of an image, zero-padded where it is smaller (torchvision's rounding)."""
    th, tw = size
    w, h = img.size
    top, left = _offset(h, th), _offset(w, tw)
    return img.crop((left, top, left + tw, top + th))  # PIL fills outside the image with zeros


def _offset(have: int, want: int) -> int:
    # torchvision pads (want - have) // 2 before a side that is too short, else rounds half to even
    return -((want - have) // 2) if want > have else int(round((have - want) / 2.0))


def _resize(img: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    return img if img.size == size else img.resize(size, resample)
