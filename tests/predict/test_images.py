"""Every PIL mode to 8-bit RGB against a reference: numpy scaling of the raw values for the wide
modes, PIL's own convert("RGB") for the 8-bit ones; modes without a 0..255 scale refused by name."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from ensemble.errors import DataError
from ensemble.predict.data import ImageDataset, Preprocess
from ensemble.predict.images import MODES, to_rgb

RNG = np.random.default_rng(0)
GRAY16 = RNG.integers(0, 65536, size=(9, 7), dtype=np.uint16)


def scaled(raw: np.ndarray, full_scale: int) -> np.ndarray:
    """The oracle: raw gray levels on 0..full_scale to 0..255 (float arithmetic, rounded), as RGB."""
    level = np.rint(raw.astype(np.float64) / full_scale * 255).astype(np.uint8)
    return np.stack([level] * 3, axis=-1)


def rgb(img: Image.Image) -> np.ndarray:
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == img.size
    return np.asarray(out)


@pytest.mark.parametrize("mode", ["I;16", "I;16L", "I;16B"])
def test_16_bit_modes_are_scaled_not_clipped(mode):
    dtype = ">u2" if mode == "I;16B" else "<u2"
    img = Image.frombytes(mode, (7, 9), GRAY16.astype(dtype).tobytes())
    np.testing.assert_array_equal(np.asarray(img), GRAY16)  # the image holds what we think it does
    got = rgb(img)
    np.testing.assert_array_equal(got, scaled(GRAY16, 65535))
    assert (got == 255).mean() < 0.01  # PIL's convert("RGB") clips: nearly every pixel 255


def test_16_bit_png_reads_as_its_8_bit_original(tmp_path):
    eight = RNG.integers(0, 256, size=(12, 10), dtype=np.uint8)
    Image.fromarray((eight.astype(np.uint16) * 257)).save(tmp_path / "wide.png")  # 0..255 -> 0..65535
    with Image.open(tmp_path / "wide.png") as img:
        assert img.mode.startswith("I")
        np.testing.assert_array_equal(rgb(img), np.stack([eight] * 3, axis=-1))


def test_32_bit_mode_i_scales_16_bit_content_and_wider_content():
    img = Image.fromarray(GRAY16.astype(np.int32))
    assert img.mode == "I"
    np.testing.assert_array_equal(rgb(img), scaled(GRAY16, 65535))
    wide = RNG.integers(0, 2**31 - 1, size=(5, 6), dtype=np.int64).astype(np.int32)
    wide[0, 0] = 2**31 - 1
    np.testing.assert_array_equal(rgb(Image.fromarray(wide)), scaled(wide, 2**31 - 1))


def test_32_bit_mode_i_with_negative_values_is_refused_by_name():
    with pytest.raises(DataError, match=r"^image mode 'I' with negative pixel values \(down to -5\) has no 0..255 scale"):
        to_rgb(Image.fromarray(np.array([[-5, 10]], dtype=np.int32)))


def _eight_bit(mode: str) -> Image.Image:
    base = Image.fromarray(RNG.integers(0, 256, size=(9, 7, 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        return base.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if mode == "PA":
        return base.convert("PA")
    if mode == "P+transparency":
        img = base.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        img.info["transparency"] = 3
        return img
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "1", "P", "PA", "P+transparency", "CMYK", "YCbCr", "HSV"])
def test_8_bit_modes_match_pil_convert(mode):
    img = _eight_bit(mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns on a palette with transparency; the oracle is PIL anyway
        want = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(rgb(img), want)


def test_float_mode_is_refused_by_name():
    with pytest.raises(DataError) as e:
        to_rgb(Image.fromarray(np.full((3, 3), 0.5, np.float32)))
    assert str(e.value).startswith("image mode 'F' is not read (32-bit float pixels have no fixed 0..255 scale); "
                                   "save the image in one of the modes RGB, RGBA")
    assert "F" not in MODES


def test_a_refused_mode_is_a_decode_error_naming_the_file(tmp_path):
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "float.tiff")
    Image.fromarray(GRAY16).save(tmp_path / "wide.png")
    ds = ImageDataset([str(tmp_path / "float.tiff"), str(tmp_path / "wide.png")], np.arange(2), Preprocess((4, 4)))
    row, image, error = ds[0]
    assert row == 0 and error.startswith("DataError: image mode 'F' is not read") and image.shape == (3, 4, 4)
    assert ds[1][2] == ""


def test_predict_on_16_bit_pngs_equals_predict_on_their_8_bit_originals(tmp_path):
    from ensemble.predict import predict
    from tests.predict._data_helpers import make_config

    for i in range(4):
        eight = RNG.integers(0, 256, size=(40, 36), dtype=np.uint8)
        Image.fromarray(eight).save(tmp_path / f"g{i}.png")
        Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / f"w{i}.png")
    for kind in ("g", "w"):
        (tmp_path / f"{kind}.csv").write_text("id,path\n" + "".join(f"{i},{kind}{i}.png\n" for i in range(4)))
    cfg = make_config(tmp_path, [0])
    narrow = predict(cfg, tmp_path / "g.csv", split="test", out_dir=tmp_path / "g", workers=0)["m/test"]
    wide = predict(cfg, tmp_path / "w.csv", split="test", out_dir=tmp_path / "w", workers=0)["m/test"]
    np.testing.assert_array_equal(wide.probs, narrow.probs)
