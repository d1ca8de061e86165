"""Any PIL image mode to 8-bit RGB, as the models were trained on; modes with no fixed scale refused.

`Image.convert("RGB")` is right for the 8-bit modes but clips the wide ones: a 16-bit PNG (mode
`I;16`) keeps only values up to 255, so most pixels become white. Here each mode has its own
converter in `MODES` (a registry): the 8-bit modes go through PIL (palettes via RGBA when they
carry transparency, alpha dropped as PIL drops it), 16- and 32-bit integer modes are scaled to
0..255, and a mode without a converter (floats, signed or packed layouts) is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from ensemble._registry import Registry
from ensemble.errors import DataError

MAX_16 = 65535
MAX_32 = 2**31 - 1  # mode "I" holds int32

MODES: Registry[Callable[[Image.Image], Image.Image]] = Registry("image mode")


def _pil(img: Image.Image) -> Image.Image:
    return img.convert("RGB")


def _palette(img: Image.Image) -> Image.Image:
    # a palette with transparency goes through RGBA (PIL warns when converting it straight to RGB)
    return img.convert("RGBA").convert("RGB") if "transparency" in img.info or img.mode == "PA" else img.convert("RGB")


def _gray(values: np.ndarray, full_scale: int) -> Image.Image:
    """Integer gray levels on 0..full_scale -> RGB, rounded to the nearest 8-bit level."""
    v = values.astype(np.int64)
    level = ((v * 255 + full_scale // 2) // full_scale).astype(np.uint8)  # (H, W)
    return Image.fromarray(np.repeat(level[..., None], 3, axis=2), "RGB")


def _uint16(img: Image.Image) -> Image.Image:
    return _gray(np.asarray(img), MAX_16)


def _int32(img: Image.Image) -> Image.Image:
    """Mode "I": 16-bit content (how PIL may open 16-bit PNG/TIFF files) or 32-bit content."""
    v = np.asarray(img)
    lo, hi = (int(v.min()), int(v.max())) if v.size else (0, 0)
    if lo < 0:
        raise DataError(f"image mode 'I' with negative pixel values (down to {lo}) has no 0..255 scale; "
                        "save the image as 8- or 16-bit")
    return _gray(v, MAX_16 if hi <= MAX_16 else MAX_32)


MODES.add("RGB", lambda img: img)
for _mode in ("RGBA", "RGBX", "RGBa", "L", "LA", "1", "CMYK", "YCbCr", "LAB", "HSV"):
    MODES.add(_mode, _pil)
for _mode in ("P", "PA"):
    MODES.add(_mode, _palette)
for _mode in ("I;16", "I;16L", "I;16B", "I;16N"):
    MODES.add(_mode, _uint16)
MODES.add("I", _int32)


def to_rgb(img: Image.Image) -> Image.Image:
    """`img` as 8-bit RGB (an RGB image is returned as is).

    Raises:
        DataError: a mode without a fixed 0..255 scale (e.g. "F", floats) or one PIL cannot read
            as RGB; the message names the mode and the modes that are read.
    """
    if img.mode not in MODES:
        why = "32-bit float pixels have no fixed 0..255 scale" if img.mode == "F" else "no conversion to RGB is defined"
        raise DataError(f"image mode {img.mode!r} is not read ({why}); save the image in one of the modes "
                        f"{', '.join(MODES.names())}")
    return MODES.get(img.mode)(img)
